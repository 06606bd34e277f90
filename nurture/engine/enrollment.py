"""Enrollment: leads matching an active campaign's entry triggers enter it, subject to its re-entry policy.

Every trigger is one ``INSERT ... SELECT`` that the database runs over its own rows: the segment's (or the
inline rules') compiled condition over ``leads``; or, for ``on_import``, ``on_event`` and ``on_stage``,
the ``activities`` or ``stage_changes`` rows recorded since the trigger's cursor. No lead is loaded into
Python. Each statement takes at most ``limit`` leads (the job runs again for the rest), skips suppressed
leads and leads the re-entry policy keeps out, and inserts with ``ON CONFLICT DO NOTHING``: the unique
indexes (one live enrollment per lead and campaign; one enrollment per event and campaign) make two
enrollers running at once harmless.

Event-like triggers fire only for what happens while they listen: a row enrols only when its time
(``occurred_at``, ``changed_at``) is at or after the moment its trigger started listening: the campaign's
activation, its resume after a pause, or the edit that added the trigger. Rows of a pause never enrol;
rows from before a pause that the engine had not read yet still do, at the first passes after the resume.

Each such trigger keeps a durable cursor (``engine_cursors``): ``position`` is the last row id read and,
for these cursors, ``updated_at`` is when the trigger started listening. A transaction that took an id
earlier may commit after a later one was read, so each pass also reads again the rows of the last
``LATE_COMMIT_WINDOW``, through the same time rule (the per-event unique index makes that second reading
enrol nothing twice). A campaign's own row ``campaign:<id>`` records the version its triggers were last
read under; when an edit changes the version, the cursors of the triggers it removed are dropped, so a
trigger put back listens afresh."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, cast, delete, exists, func, literal, null, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from nurture.campaigns.definition import (
    EntryTrigger,
    EventEntry,
    ImportEntry,
    RulesEntry,
    SegmentEntry,
    StageEntry,
)
from nurture.campaigns.models import Campaign, CampaignStatus, EntryExclusion
from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.engine.context import EngineContext, LoadedCampaign
from nurture.engine.cursors import move_cursor, read_cursor
from nurture.engine.journal import Journal
from nurture.engine.models import EngineCursor, Enrollment, EnrollmentState, is_live
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
        # Read when first needed (event-like triggers only); first_pass is set by read_under_version.
        self._times: _StatusTimes | None = None
        self.first_pass = False

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
            .where(
                compile_rules(rules, self.now),
                Lead.status == LeadStatus.ACTIVE,
                ~self.kept_out(Lead.id),
                ~exists(
                    select(EntryExclusion.lead_id).where(
                        EntryExclusion.campaign_id == self.campaign.id, EntryExclusion.lead_id == Lead.id
                    )
                ),
            )
            .order_by(Lead.id)
            .limit(limit)
        )
        return self.insert(leads, source)

    def from_rows(self, rows: _RowSource, limit: int) -> int:
        """Enrol from an append-only table (activities, stage changes) through the trigger's cursor: the rows
        recorded while the trigger listened."""
        position, since = self._cursor(rows)
        batch = (
            select(rows.row_id.label("row_id"))
            .where(*rows.match, rows.row_id > position)
            .order_by(rows.row_id)
            .limit(limit)
            .subquery()
        )
        upper, read = self.session.execute(select(func.max(batch.c.row_id), func.count()).select_from(batch)).one()
        base = (
            select(rows.lead_id.label("lead_id"), rows.row_id.label("source_id"))
            .join(Lead, Lead.id == rows.lead_id)
            .where(
                *rows.match,
                self._listened(rows.at, since),
                Lead.status == LeadStatus.ACTIVE,
                ~self.kept_out(rows.lead_id),
            )
        )
        # Read again: rows whose transaction committed after the cursor moved past their id.
        late = base.where(rows.row_id <= position, rows.at >= self.now - LATE_COMMIT_WINDOW)
        count = self.insert(late.order_by(rows.row_id).limit(limit), rows.source)
        if upper is not None:
            count += self.insert(base.where(rows.row_id > position, rows.row_id <= upper).order_by(rows.row_id),
                                 rows.source)
            self.session.execute(
                update(EngineCursor)
                .where(EngineCursor.name == rows.cursor, EngineCursor.position < upper)
                .values(position=upper)
                .execution_options(synchronize_session=False)
            )
        resumed = self.times.activated_at
        if since < resumed and read < limit:
            # Everything recorded before the pause is read: from now on the trigger listens from the resume.
            self.session.execute(
                update(EngineCursor)
                .where(EngineCursor.name == rows.cursor, EngineCursor.updated_at < resumed)
                .values(updated_at=resumed)
                .execution_options(synchronize_session=False)
            )
        return count

    @property
    def times(self) -> _StatusTimes:
        if self._times is None:
            activated, paused, changed, created = self.session.execute(
                select(Campaign.activated_at, Campaign.paused_at, Campaign.updated_at, Campaign.created_at).where(
                    Campaign.id == self.campaign.id
                )
            ).one()
            # A campaign made active without an activation time (by hand in the database) counts as active
            # since it was created: a stable time, unlike the pass's.
            self._times = _StatusTimes(activated or created, paused, changed)
        return self._times

    def read_under_version(self, cursors: Sequence[str]) -> None:
        """Note the campaign version this pass reads under. After an edit, the cursors of the triggers it
        removed go: a trigger put back later must not take the rows recorded while it was gone."""
        marker = _cursor_name(self.campaign)
        seen = self.session.scalar(select(EngineCursor.position).where(EngineCursor.name == marker))
        self.first_pass = seen is None
        if seen == self.campaign.version:
            return
        self.session.execute(
            delete(EngineCursor)
            .where(EngineCursor.name.startswith(f"{marker}:", autoescape=True), EngineCursor.name.not_in(cursors))
            .execution_options(synchronize_session=False)
        )
        if seen is None:
            read_cursor(self.session, marker, self.campaign.version, self.now)
        else:
            move_cursor(self.session, marker, self.campaign.version, self.now)

    def _cursor(self, rows: _RowSource) -> tuple[int, datetime]:
        """The trigger's cursor: the last row id read, and since when the trigger listens. A new trigger
        listens from the campaign's activation when this is the campaign's first pass, else from the edit
        that added it (the campaign's latest change); its cursor starts after the rows recorded before."""
        stored = select(EngineCursor.position, EngineCursor.updated_at).where(EngineCursor.name == rows.cursor)
        found = self.session.execute(stored).one_or_none()
        if found is None:
            since = self.times.activated_at
            if not self.first_pass:
                since = max(since, self.times.updated_at)
            start = self.session.scalar(select(func.max(rows.row_id)).where(*rows.match, rows.at < since)) or 0
            read_cursor(self.session, rows.cursor, start, since)
            found = self.session.execute(stored).one()
        return found.position, found.updated_at

    def _listened(self, at: Any, since: datetime) -> ColumnElement[bool]:
        """Rows recorded while the trigger listened: from ``since`` on, except, when the campaign was paused
        and resumed after ``since``, between its latest pause and that resume."""
        resumed, paused = self.times.activated_at, self.times.paused_at
        if since >= resumed:
            return at >= since
        if paused is None or paused <= since:
            return at >= resumed
        return or_(at >= resumed, and_(at >= since, at < paused))


@dataclass(frozen=True)
class _StatusTimes:
    """When the campaign was last activated (or resumed), paused, and changed in any way."""

    activated_at: datetime
    paused_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class _RowSource:
    """What an event-like trigger reads: its cursor's name, the rows that match and their columns."""

    cursor: str
    source: str
    row_id: Any
    lead_id: Any
    at: Any
    match: list[ColumnElement[bool]]


def _cursor_name(campaign: LoadedCampaign, *parts: str) -> str:
    return ":".join(("campaign", str(campaign.id), *parts))


def _row_source(campaign: LoadedCampaign, trigger: EntryTrigger) -> _RowSource | None:
    """The rows an event-like trigger reads; None for the rule-based ones (segment, rules)."""
    if isinstance(trigger, EventEntry):
        return _RowSource(
            _cursor_name(campaign, "event", trigger.event), "event",
            Activity.id, Activity.lead_id, Activity.occurred_at, [Activity.kind == trigger.event],
        )
    if isinstance(trigger, ImportEntry):
        match = [Activity.kind == IMPORTED]
        if trigger.tag is not None:
            match.append(
                exists().where(
                    lead_tags.c.lead_id == Activity.lead_id, lead_tags.c.tag_id == Tag.id, Tag.name == trigger.tag
                )
            )
        if trigger.source is not None:
            match.append(exists().where(Lead.id == Activity.lead_id, Lead.source == trigger.source))
        return _RowSource(
            _cursor_name(campaign, "import", trigger.tag or "", trigger.source or ""), "import",
            Activity.id, Activity.lead_id, Activity.occurred_at, match,
        )
    if isinstance(trigger, StageEntry):
        return _RowSource(
            _cursor_name(campaign, "stage", trigger.stage.value), "stage",
            StageChange.id, StageChange.lead_id, StageChange.changed_at, [StageChange.to_stage == trigger.stage],
        )
    return None


def enrol_campaign(
    session: Session, clock: Clock, campaign: LoadedCampaign, journal: Journal, *, limit: int = DEFAULT_LIMIT
) -> int:
    """One pass over every entry trigger of ``campaign``; how many leads entered."""
    now = clock.now()
    enroller = _Enroller(session, now, campaign, journal)
    row_sources = [(trigger, _row_source(campaign, trigger)) for trigger in campaign.definition.entry]
    enroller.read_under_version([rows.cursor for _, rows in row_sources if rows is not None])
    count = 0
    for trigger, rows in row_sources:
        if rows is not None:
            count += enroller.from_rows(rows, limit)
        elif isinstance(trigger, SegmentEntry):
            segment = find_segment(session, trigger.segment)
            if segment is None:
                raise NurtureError(f"campaign {campaign.slug}: segment {trigger.segment!r} does not exist")
            count += enroller.from_rules(segment_rules(segment), "segment", limit)
        elif isinstance(trigger, RulesEntry):
            count += enroller.from_rules(trigger.rules, "rules", limit)
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
