"""Leaving a campaign early: the goal (converted), the exit conditions and the implicit exits (a lead
that unsubscribed, bounced, complained or was erased; a campaign archived).

Checked in two places. Before every step the engine runs, for the leads it is about to move (so no email
goes to a lead that has just met the goal). And by ``sweep_goals_and_exits``, for leads that are waiting:
it reads the activities and stage changes recorded since its last pass (two cursors), so its cost follows
what happened, not how many leads are enrolled. The same pass wakes ``wait_for`` steps whose event was
recorded by code that did not call ``on_engagement``.

Goal rules that change with time alone (``created more than 30 days ago``) are noticed at the lead's
next step, since nothing is recorded when time passes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session

from nurture.campaigns.definition import IMPLICIT_EXIT_STATUSES, CampaignDefinition, StageExit, TagExit
from nurture.campaigns.models import CampaignStatus
from nurture.clock import Clock
from nurture.engine.context import EngineContext, LoadedCampaign
from nurture.engine.cursors import move_cursor, read_cursor
from nurture.engine.engagement import wake_for_activities
from nurture.engine.journal import Journal
from nurture.engine.models import Enrollment, EnrollmentState, is_live
from nurture.leads.models import Activity, Lead, StageChange, Tag, lead_tags
from nurture.segments.compiler import compile_rules
from nurture.segments.rules import RuleNode

CHUNK = 1000
ACTIVITY_CURSOR = "goals:activities"
STAGE_CURSOR = "goals:stage_changes"


def leads_meeting(session: Session, now: datetime, rules: RuleNode, lead_ids: Iterable[int]) -> set[int]:
    """Which of ``lead_ids`` match ``rules`` now: the rules compiled once, tested in one query per chunk."""
    ids = sorted(set(lead_ids))
    condition = compile_rules(rules, now)
    found: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(session.scalars(select(Lead.id).where(Lead.id.in_(chunk), condition)))
    return found


def exit_reason(definition: CampaignDefinition, lead: Lead) -> str | None:
    """Why ``lead`` must leave now, judged on the loaded lead; None when it may go on."""
    if lead.status in IMPLICIT_EXIT_STATUSES:
        return f"lead is {lead.status.value}"
    tags: set[str] | None = None
    for condition in definition.exit_conditions:
        if isinstance(condition, StageExit) and lead.stage == condition.stage:
            return f"lead moved into stage {condition.stage.value}"
        if isinstance(condition, TagExit):
            tags = set(lead.tag_names) if tags is None else tags
            if condition.tag in tags:
                return f"tag {condition.tag!r} was added"
    return None


def _exit_condition_sql(definition: CampaignDefinition) -> list[tuple[ColumnElement[bool], str]]:
    """Each exit condition as a WHERE clause over leads, with its reason."""
    clauses: list[tuple[ColumnElement[bool], str]] = []
    for condition in definition.exit_conditions:
        if isinstance(condition, StageExit):
            clauses.append((Lead.stage == condition.stage, f"lead moved into stage {condition.stage.value}"))
        elif isinstance(condition, TagExit):
            has_tag = exists().where(
                lead_tags.c.lead_id == Lead.id, lead_tags.c.tag_id == Tag.id, Tag.name == condition.tag
            )
            clauses.append((has_tag, f"tag {condition.tag!r} was added"))
    return clauses


def finish_live(
    session: Session,
    now: datetime,
    journal: Journal,
    campaign: LoadedCampaign,
    enrollment_ids: Iterable[int],
    state: EnrollmentState,
    reason: str,
) -> int:
    """End the still-live enrollments among ``enrollment_ids`` of ``campaign``; how many ended."""
    ids = sorted(set(enrollment_ids))
    ended = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(chunk), is_live(Enrollment.state))
            .values(
                state=state,
                next_run_at=None,
                wait_until=None,
                waiting_for=None,
                finished_at=now,
                updated_at=now,
                exit_reason=reason,
            )
            .returning(Enrollment.id, Enrollment.lead_id, Enrollment.step_id)
            .execution_options(synchronize_session=False)
        ).all()
        for enrollment_id, lead_id, step_id in rows:
            outcome = "goal" if state is EnrollmentState.CONVERTED else "exit"
            journal.step(
                enrollment_id=enrollment_id,
                campaign=campaign,
                lead_id=lead_id,
                step_id=step_id or "-",
                step_type=outcome,
                outcome=state.value,
                at=now,
                detail={"reason": reason},
            )
            journal.finished(
                enrollment_id=enrollment_id, campaign=campaign, lead_id=lead_id, at=now, state=state, reason=reason
            )
        ended += len(rows)
    return ended


@dataclass
class SweepReport:
    converted: int = 0
    exited: int = 0
    woken: int = 0
    leads_checked: int = 0

    def summary(self) -> str:
        return (
            f"{self.converted} converted, {self.exited} exited, {self.woken} woken by events "
            f"({self.leads_checked} leads checked)"
        )


def settle_leads(
    session: Session, now: datetime, ctx: EngineContext, journal: Journal, lead_ids: Iterable[int]
) -> SweepReport:
    """Apply goals, exit conditions and implicit exits to the live enrollments of ``lead_ids``."""
    report = SweepReport()
    ids = sorted(set(lead_ids))
    report.leads_checked = len(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        live = session.execute(
            select(Enrollment.campaign_id, Enrollment.id, Enrollment.lead_id).where(
                Enrollment.lead_id.in_(chunk), is_live(Enrollment.state)
            )
        ).all()
        by_campaign: dict[int, dict[int, int]] = defaultdict(dict)
        for campaign_id, enrollment_id, lead_id in live:
            by_campaign[campaign_id][lead_id] = enrollment_id
        if not by_campaign:
            continue
        campaigns = ctx.campaigns(session, ids=by_campaign)
        for campaign_id, enrollments in by_campaign.items():
            campaign = campaigns[campaign_id]
            report.exited += _settle_campaign(session, now, journal, campaign, enrollments, report)
    return report


def _settle_campaign(
    session: Session,
    now: datetime,
    journal: Journal,
    campaign: LoadedCampaign,
    enrollments: dict[int, int],
    report: SweepReport,
) -> int:
    """Returns how many exited; adds the converted to ``report``."""
    lead_ids = list(enrollments)
    exited = 0
    # Implicit exits hold whatever the campaign's status: nobody stays enrolled after unsubscribing.
    suppressed = session.execute(
        select(Lead.id, Lead.status).where(Lead.id.in_(lead_ids), Lead.status.in_(IMPLICIT_EXIT_STATUSES))
    ).all()
    by_status: dict[str, list[int]] = defaultdict(list)
    for lead_id, status in suppressed:
        by_status[status.value].append(enrollments[lead_id])
    for status, ids in by_status.items():
        exited += finish_live(session, now, journal, campaign, ids, EnrollmentState.EXITED, f"lead is {status}")
    # A paused campaign moves nobody, not even out.
    if campaign.status is not CampaignStatus.ACTIVE:
        return exited
    gone = {lead_id for lead_id, _ in suppressed}
    remaining = [lead_id for lead_id in lead_ids if lead_id not in gone]
    definition = campaign.definition
    if definition.goal is not None and remaining:
        met = leads_meeting(session, now, definition.goal, remaining)
        report.converted += finish_live(
            session, now, journal, campaign, [enrollments[lead_id] for lead_id in met],
            EnrollmentState.CONVERTED, "met the campaign's goal",
        )
        remaining = [lead_id for lead_id in remaining if lead_id not in met]
    for condition, reason in _exit_condition_sql(definition):
        if not remaining:
            break
        hit = set(session.scalars(select(Lead.id).where(Lead.id.in_(remaining), condition)))
        exited += finish_live(
            session, now, journal, campaign, [enrollments[lead_id] for lead_id in hit], EnrollmentState.EXITED, reason
        )
        remaining = [lead_id for lead_id in remaining if lead_id not in hit]
    return exited


def exit_lead_enrollments(session: Session, clock: Clock, ctx: EngineContext, lead_id: int) -> int:
    """Settle one lead now (call it when a lead unsubscribes, bounces or complains); how many ended."""
    journal = Journal()
    report = settle_leads(session, clock.now(), ctx, journal, [lead_id])
    journal.flush(session)
    return report.converted + report.exited


def end_archived_campaigns(session: Session, now: datetime, ctx: EngineContext, limit: int = 5000) -> int:
    """Exit the live enrollments of archived campaigns, ``limit`` at a time; how many."""
    journal = Journal()
    ended = 0
    archived = ctx.campaigns(session, statuses=[CampaignStatus.ARCHIVED])
    for campaign in archived.values():
        ids = session.scalars(
            select(Enrollment.id)
            .where(Enrollment.campaign_id == campaign.id, is_live(Enrollment.state))
            .limit(limit)
        ).all()
        if ids:
            ended += finish_live(session, now, journal, campaign, ids, EnrollmentState.EXITED, "campaign archived")
    journal.flush(session)
    return ended


def sweep_goals_and_exits(session: Session, clock: Clock, ctx: EngineContext, *, limit: int = 20_000) -> SweepReport:
    """One incremental pass over what was recorded since the last one (at most ``limit`` rows of each)."""
    now = clock.now()
    max_activity = session.scalar(select(func.max(Activity.id))) or 0
    max_change = session.scalar(select(func.max(StageChange.id))) or 0
    activity_from = read_cursor(session, ACTIVITY_CURSOR, max_activity, now)
    change_from = read_cursor(session, STAGE_CURSOR, max_change, now)
    activities = session.execute(
        select(Activity.id, Activity.lead_id, Activity.kind)
        .where(Activity.id > activity_from)
        .order_by(Activity.id)
        .limit(limit)
    ).all()
    changes = session.execute(
        select(StageChange.id, StageChange.lead_id)
        .where(StageChange.id > change_from)
        .order_by(StageChange.id)
        .limit(limit)
    ).all()
    journal = Journal()
    woken = wake_for_activities(session, now, [(row.lead_id, row.kind) for row in activities])
    report = settle_leads(
        session, now, ctx, journal, [row.lead_id for row in activities] + [row.lead_id for row in changes]
    )
    report.woken = woken
    journal.flush(session)
    if activities:
        move_cursor(session, ACTIVITY_CURSOR, activities[-1].id, now)
    if changes:
        move_cursor(session, STAGE_CURSOR, changes[-1].id, now)
    return report

