"""Counts behind the campaign pages: enrollments per state for every campaign, and per step of one campaign
the leads there now, the runs, the emails queued and sent, and the distinct emails opened and clicked by
people (machine opens and clicks, such as link scanners, are left out); and the runs that failed, with the
error of the latest (a template that cannot be rendered for a lead, an email that cannot be made)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign
from nurture.delivery.models import Message, MessageStatus
from nurture.engine.models import LIVE_STATES, Enrollment, EnrollmentState, StepRun, is_live
from nurture.tracking.models import EngagementEvent, EventType

FAILED_OUTCOME = "error"


@dataclass(frozen=True)
class EnrollmentCounts:
    by_state: dict[EnrollmentState, int] = field(default_factory=dict)

    def __getitem__(self, state: EnrollmentState) -> int:
        return self.by_state.get(state, 0)

    @property
    def live(self) -> int:
        return sum(self[state] for state in LIVE_STATES)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def converted(self) -> int:
        return self[EnrollmentState.CONVERTED]


def enrollment_counts(session: Session, campaign_ids: list[int] | None = None) -> dict[int, EnrollmentCounts]:
    """Campaign id -> its enrollments per state (campaigns without any are left out)."""
    statement = select(Enrollment.campaign_id, Enrollment.state, func.count()).group_by(
        Enrollment.campaign_id, Enrollment.state
    )
    if campaign_ids is not None:
        statement = statement.where(Enrollment.campaign_id.in_(campaign_ids))
    counts: dict[int, dict[EnrollmentState, int]] = defaultdict(dict)
    for campaign_id, state, count in session.execute(statement):
        counts[campaign_id][state] = count
    return {campaign_id: EnrollmentCounts(by_state) for campaign_id, by_state in counts.items()}


@dataclass
class StepCounts:
    here_now: int = 0
    runs: int = 0
    queued: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # The error of the step's latest failed run (the engine records a failed run with outcome "error").
    last_error: str | None = None

    @property
    def failed(self) -> int:
        return self.outcomes.get(FAILED_OUTCOME, 0)


@dataclass(frozen=True)
class StepView:
    """One step of the definition as the page shows it: its id, type, what else it says, and its counts."""

    id: str
    type: str
    settings: dict[str, Any]
    counts: StepCounts


def step_counts(session: Session, campaign: Campaign) -> dict[str, StepCounts]:
    """Step id -> its counts, for every step the campaign has or had (removed steps keep their history)."""
    counts: dict[str, StepCounts] = defaultdict(StepCounts)
    live = session.execute(
        select(Enrollment.step_id, func.count())
        .where(Enrollment.campaign_id == campaign.id, is_live(Enrollment.state))
        .group_by(Enrollment.step_id)
    ).all()
    for step_id, count in live:
        if step_id is not None:
            counts[step_id].here_now = count
    outcomes = session.execute(
        select(StepRun.step_id, StepRun.outcome, func.count(), func.count(StepRun.message_id))
        .where(StepRun.campaign_id == campaign.id)
        .group_by(StepRun.step_id, StepRun.outcome)
    ).all()
    for step_id, outcome, runs, messages in outcomes:
        step = counts[step_id]
        step.runs += runs
        step.queued += messages
        step.outcomes[outcome] = runs
    sent = session.execute(
        select(StepRun.step_id, func.count())
        .join(Message, Message.id == StepRun.message_id)
        .where(StepRun.campaign_id == campaign.id, Message.status == MessageStatus.SENT)
        .group_by(StepRun.step_id)
    ).all()
    for step_id, count in sent:
        counts[step_id].sent = count
    engaged = session.execute(
        select(StepRun.step_id, EngagementEvent.type, func.count(func.distinct(EngagementEvent.message_id)))
        .join(EngagementEvent, EngagementEvent.message_id == StepRun.message_id)
        .where(
            StepRun.campaign_id == campaign.id,
            EngagementEvent.type.in_([EventType.OPENED.value, EventType.CLICKED.value]),
            EngagementEvent.machine.is_(False),
        )
        .group_by(StepRun.step_id, EngagementEvent.type)
    ).all()
    for step_id, kind, count in engaged:
        if kind == EventType.OPENED.value:
            counts[step_id].opened = count
        else:
            counts[step_id].clicked = count
    latest_failures = (
        select(func.max(StepRun.id))
        .where(StepRun.campaign_id == campaign.id, StepRun.outcome == FAILED_OUTCOME)
        .group_by(StepRun.step_id)
    )
    for step_id, detail in session.execute(
        select(StepRun.step_id, StepRun.detail).where(StepRun.id.in_(latest_failures))
    ):
        counts[step_id].last_error = (detail or {}).get("error")
    return dict(counts)


def step_views(session: Session, campaign: Campaign) -> list[StepView]:
    """The steps of the stored definition in order, each with its counts."""
    counts = step_counts(session, campaign)
    views = []
    for data in campaign.definition.get("steps", ()):
        settings = {key: value for key, value in data.items() if key not in ("id", "type")}
        views.append(StepView(data["id"], data.get("type", ""), settings, counts.get(data["id"], StepCounts())))
    return views
