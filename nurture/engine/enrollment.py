"""Enrollment: leads matching an active campaign's entry triggers enter it, subject to its re-entry policy.

Every trigger is one ``INSERT ... SELECT`` that the database runs over its own rows: the segment's (or the
inline rules') compiled condition over ``leads``; or, for ``on_import``, ``on_event`` and ``on_stage``,
the ``activities`` or ``stage_changes`` rows recorded since the trigger's cursor. No lead is loaded into
Python. Each statement takes at most ``limit`` leads (the job runs again for the rest), skips suppressed
leads and leads the re-entry policy keeps out, and inserts with ``ON CONFLICT DO NOTHING``: the unique
indexes (one live enrollment per lead and campaign; one enrollment per event and campaign) make two
enrollers running at once harmless.

Event-like triggers keep a durable cursor per campaign and trigger (the last row id read). A transaction
that took an id earlier may commit after a later one was read, so each pass also reads again the rows of
the last ``LATE_COMMIT_WINDOW``; the per-event unique index makes that second reading enrol nothing twice.
A new cursor starts at the last matching row from before the campaign was activated: activating a
campaign does not enrol everyone who ever had the event."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, cast, exists, func, literal, null, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from nurture.campaigns.definition import EventEntry, ImportEntry, RulesEntry, SegmentEntry, StageEntry
from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.engine.context import EngineContext, LoadedCampaign
from nurture.engine.cursors import move_cursor, read_cursor
from nurture.engine.journal import Journal
from nurture.engine.models import Enrollment, EnrollmentState, is_live
from nurture.errors import NurtureError
from nurture.leads.importer import IMPORTED
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Activity, Lead, StageChange, Tag, lead_tags
from nurture.segments.compiler import compile_rules
from nurture.segments.rules import RuleNode
from nurture.segments.service import find_segment, segment_rules

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000
LATE_COMMIT_WINDOW = timedelta(minutes=10)

enrollments_table = Enrollment.__table__
# Typed, so PostgreSQL does not read the NULL of an insert-select as text.
_NO_SOURCE = cast(null(), enrollments_table.c.source_id.type).label("source_id")


@dataclass
class EnrolReport:
    by_campaign: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_campaign.values())

    def add(self, slug: str, count: int) -> None:
        if count:
            self.by_campaign[slug] = self.by_campaign.get(slug, 0) + count

    def summary(self) -> str:
        parts = ", ".join(f"{slug} {count}" for slug, count in sorted(self.by_campaign.items()))
        return f"{self.total} enrolled" + (f" ({parts})" if parts else "")


class _Enroller:
    """The enrollments of one campaign in one transaction."""

    def __init__(self, session: Session, now: datetime, campaign: LoadedCampaign, journal: Journal) -> None:
        self.session = session
        self.now = now
        self.campaign = campaign
        self.journal = journal

    def kept_out(self, lead_id: ColumnElement[Any]) -> ColumnElement[bool]:
        """Leads the re-entry policy keeps out: any earlier enrollment (``never``), or a live one or one
        that entered within ``after``."""
        prior = aliased(Enrollment)
        earlier = select(prior.id).where(prior.campaign_id == self.campaign.id, prior.lead_id == lead_id)
        after = self.campaign.definition.reentry.after
        if after is not None:
            earlier = earlier.where(or_(is_live(prior.state), prior.entered_at > self.now - after.delta))
        return exists(earlier)

    def insert(self, leads: Select[Any], source: str) -> int:
        """Enrol the rows of ``leads`` (columns: lead_id, source_id); how many were enrolled."""
        definition = self.campaign.definition
        rows = leads.subquery()
        values = select(
            literal(self.campaign.id).label("campaign_id"),
            rows.c.lead_id,
            literal(EnrollmentState.ACTIVE.value).label("state"),
            literal(definition.first_step_id).label("step_id"),
            literal(self.now, enrollments_table.c.next_run_at.type).label("next_run_at"),
            literal(self.now, enrollments_table.c.step_started_at.type).label("step_started_at"),
            cast(literal("{}"), enrollments_table.c.attempts.type).label("attempts"),
            literal(0).label("failures"),
            literal(self.campaign.version).label("campaign_version"),
            literal(source).label("source"),
            rows.c.source_id,
            literal(self.now, enrollments_table.c.entered_at.type).label("entered_at"),
            literal(self.now, enrollments_table.c.updated_at.type).label("updated_at"),
        ).where(true())  # SQLite reads "FROM x ON CONFLICT" as a join without it
        columns = [
            "campaign_id", "lead_id", "state", "step_id", "next_run_at", "step_started_at", "attempts", "failures",
            "campaign_version", "source", "source_id", "entered_at", "updated_at",
        ]
        insert = pg_insert if is_postgresql(self.session) else sqlite_insert
        statement = (
            insert(enrollments_table)
            .from_select(columns, values)
            .on_conflict_do_nothing()
            .returning(enrollments_table.c.id, enrollments_table.c.lead_id)
        )
        entered = self.session.execute(statement).all()
        for enrollment_id, lead_id in entered:
            self.journal.entered(
                enrollment_id=enrollment_id, campaign=self.campaign, lead_id=lead_id, at=self.now, source=source
            )
        return len(entered)

    def from_rules(self, rules: RuleNode, source: str, limit: int) -> int:
        leads = (
            select(Lead.id.label("lead_id"), _NO_SOURCE)
            .where(compile_rules(rules, self.now), Lead.status == LeadStatus.ACTIVE, ~self.kept_out(Lead.id))
            .order_by(Lead.id)
            .limit(limit)
        )
        return self.insert(leads, source)

    def from_rows(
        self,
        name: str,
        source: str,
        *,
        row_id: Any,
        lead_id: Any,
        at: Any,
        match: list[ColumnElement[bool]],
        limit: int,
    ) -> int:
        """Enrol from an append-only table (activities, stage changes) read through cursor ``name``."""
        started = self.session.scalar(select(func.max(row_id)).where(*match, at < self._activated_at())) or 0
        position = read_cursor(self.session, name, started, self.now)
        batch = select(row_id.label("row_id")).where(*match, row_id > position).order_by(row_id).limit(limit).subquery()
        upper = self.session.scalar(select(func.max(batch.c.row_id)))
        eligible = [Lead.id == lead_id, Lead.status == LeadStatus.ACTIVE, ~self.kept_out(lead_id)]
        base = select(lead_id.label("lead_id"), row_id.label("source_id")).join(Lead, Lead.id == lead_id)
        count = 0
        # Read again: rows whose transaction committed after the cursor moved past their id.
        count += self.insert(
            base.where(*match, *eligible, row_id <= position, at >= self.now - LATE_COMMIT_WINDOW)
            .order_by(row_id)
            .limit(limit),
            source,
        )
        if upper is not None:
            count += self.insert(base.where(*match, *eligible, row_id > position, row_id <= upper).order_by(row_id),
                                 source)
            move_cursor(self.session, name, upper, self.now)
        return count

    def _activated_at(self) -> datetime:
        activated = self.session.scalar(select(Campaign.activated_at).where(Campaign.id == self.campaign.id))
        return activated or self.now


def _cursor_name(campaign: LoadedCampaign, *parts: str) -> str:
    return ":".join(("campaign", str(campaign.id), *parts))


def enrol_campaign(
    session: Session, clock: Clock, campaign: LoadedCampaign, journal: Journal, *, limit: int = DEFAULT_LIMIT
) -> int:
    """One pass over every entry trigger of ``campaign``; how many leads entered."""
    now = clock.now()
    enroller = _Enroller(session, now, campaign, journal)
    count = 0
    for trigger in campaign.definition.entry:
        if isinstance(trigger, SegmentEntry):
            segment = find_segment(session, trigger.segment)
            if segment is None:
                raise NurtureError(f"campaign {campaign.slug}: segment {trigger.segment!r} does not exist")
            count += enroller.from_rules(segment_rules(segment), "segment", limit)
        elif isinstance(trigger, RulesEntry):
            count += enroller.from_rules(trigger.rules, "rules", limit)
        elif isinstance(trigger, EventEntry):
            count += enroller.from_rows(
                _cursor_name(campaign, "event", trigger.event), "event",
                row_id=Activity.id, lead_id=Activity.lead_id, at=Activity.occurred_at,
                match=[Activity.kind == trigger.event], limit=limit,
            )
        elif isinstance(trigger, ImportEntry):
            match = [Activity.kind == IMPORTED]
            if trigger.tag is not None:
                match.append(
                    exists().where(
                        lead_tags.c.lead_id == Activity.lead_id, lead_tags.c.tag_id == Tag.id, Tag.name == trigger.tag
                    )
                )
            if trigger.source is not None:
                match.append(exists().where(Lead.id == Activity.lead_id, Lead.source == trigger.source))
            count += enroller.from_rows(
                _cursor_name(campaign, "import", trigger.tag or "", trigger.source or ""), "import",
                row_id=Activity.id, lead_id=Activity.lead_id, at=Activity.occurred_at, match=match, limit=limit,
            )
        elif isinstance(trigger, StageEntry):
            count += enroller.from_rows(
                _cursor_name(campaign, "stage", trigger.stage.value), "stage",
                row_id=StageChange.id, lead_id=StageChange.lead_id, at=StageChange.changed_at,
                match=[StageChange.to_stage == trigger.stage], limit=limit,
            )
    return count


def enrol_new_matches(session: Session, clock: Clock, ctx: EngineContext, *, limit: int = DEFAULT_LIMIT) -> EnrolReport:
    """One pass over every active campaign. A campaign that cannot enrol (its segment was deleted) is
    reported and skipped; the others go on."""
    report = EnrolReport()
    journal = Journal()
    for campaign in ctx.campaigns(session, statuses=[CampaignStatus.ACTIVE]).values():
        try:
            with session.begin_nested():
                report.add(campaign.slug, enrol_campaign(session, clock, campaign, journal, limit=limit))
        except NurtureError as problem:
            log.error("cannot enrol into %s: %s", campaign.slug, problem)
            report.problems.append(str(problem))
    journal.flush(session)
    return report


def enrol_lead(
    session: Session, clock: Clock, campaign: LoadedCampaign, lead_id: int, *, source: str = "manual"
) -> int | None:
    """Enrol one lead now, whatever the entry triggers say (re-entry policy and suppression still apply);
    the new enrollment's id, or None when the lead may not enter."""
    journal = Journal()
    enroller = _Enroller(session, clock.now(), campaign, journal)
    leads = select(Lead.id.label("lead_id"), _NO_SOURCE).where(
        Lead.id == lead_id, Lead.status == LeadStatus.ACTIVE, ~enroller.kept_out(Lead.id)
    )
    if not enroller.insert(leads, source):
        return None
    journal.flush(session)
    return session.scalar(
        select(Enrollment.id).where(
            Enrollment.campaign_id == campaign.id, Enrollment.lead_id == lead_id, is_live(Enrollment.state)
        )
    )


def enrollment_counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """campaign id -> state -> number of enrollments (converted ones are the campaign's conversions)."""
    counts: dict[int, dict[str, int]] = {campaign_id: {} for campaign_id in campaign_ids}
    rows = session.execute(
        select(Enrollment.campaign_id, Enrollment.state, func.count())
        .where(Enrollment.campaign_id.in_(list(campaign_ids)))
        .group_by(Enrollment.campaign_id, Enrollment.state)
    )
    for campaign_id, state, count in rows:
        counts[campaign_id][EnrollmentState(state).value] = count
    return counts
