"""Counts behind the campaign pages: enrollments per state for every campaign, totals per campaign for the
list (enrolled, in flight, converted, sent, opened and clicked), and per step of one campaign, over a period
or all time: the leads there now, the leads that entered it, the runs, the emails queued, sent and delivered,
the distinct emails opened and clicked by people, with machine opens and clicks (link scanners, privacy
proxies) counted apart, the yes/no split of branches, and the runs that failed, with the error of the latest
(a template that cannot be rendered for a lead, an email that cannot be made). Every figure is one grouped
query, whatever the number of steps."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
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


Period = tuple[datetime, datetime]


def _within(column: ColumnElement[Any], period: Period | None) -> ColumnElement[bool]:
    if period is None:
        return true()
    return (column >= period[0]) & (column < period[1])


@dataclass
class CampaignTotals:
    enrolled: int = 0
    live: int = 0
    converted: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    machine_opened: int = 0
    machine_clicked: int = 0


def campaign_totals(
    session: Session, campaigns: list[Campaign], period: Period | None = None
) -> dict[int, CampaignTotals]:
    """Campaign id -> its totals (enrollments entered in the period; emails sent and engaged with in it)."""
    totals = {campaign.id: CampaignTotals() for campaign in campaigns}
    if not campaigns:
        return totals
    ids = [campaign.id for campaign in campaigns]
    by_slug = {campaign.slug: totals[campaign.id] for campaign in campaigns}
    rows = session.execute(
        select(Enrollment.campaign_id, Enrollment.state, func.count())
        .where(Enrollment.campaign_id.in_(ids), _within(Enrollment.entered_at, period))
        .group_by(Enrollment.campaign_id, Enrollment.state)
    )
    for campaign_id, state, count in rows:
        row = totals[campaign_id]
        row.enrolled += count
        if state in LIVE_STATES:
            row.live += count
        if state is EnrollmentState.CONVERTED:
            row.converted += count
    sent = session.execute(
        select(Message.campaign, func.count())
        .where(
            Message.campaign.in_(list(by_slug)),
            Message.status == MessageStatus.SENT,
            _within(Message.created_at, period),
        )
        .group_by(Message.campaign)
    )
    for slug, count in sent:
        by_slug[slug].sent = count
    engaged = session.execute(
        select(
            EngagementEvent.campaign,
            EngagementEvent.type,
            EngagementEvent.machine,
            func.count(func.distinct(EngagementEvent.message_id)),
        )
        .where(
            EngagementEvent.campaign.in_(list(by_slug)),
            EngagementEvent.type.in_([EventType.OPENED.value, EventType.CLICKED.value]),
            _within(EngagementEvent.occurred_at, period),
        )
        .group_by(EngagementEvent.campaign, EngagementEvent.type, EngagementEvent.machine)
    )
    for slug, kind, machine, count in engaged:
        row = by_slug[slug]
        name = ("machine_" if machine else "") + ("opened" if kind == EventType.OPENED.value else "clicked")
        setattr(row, name, count)
    return totals


@dataclass
class StepCounts:
    here_now: int = 0
    # Distinct enrollments that ran the step (in the period).
    entered: int = 0
    runs: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    machine_opened: int = 0
    machine_clicked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # The error of the step's latest failed run (the engine records a failed run with outcome "error").
    last_error: str | None = None

    @property
    def failed(self) -> int:
        return self.outcomes.get(FAILED_OUTCOME, 0)

    @property
    def yes_share(self) -> float | None:
        """The share of decided branch or wait_for runs that went "yes" (None before any was decided)."""
        yes, no = self.outcomes.get("yes", 0), self.outcomes.get("no", 0)
        return yes / (yes + no) if yes + no else None


@dataclass(frozen=True)
class StepView:
    """One step of the definition as the page shows it: its id, type, what else it says, and its counts."""

    id: str
    type: str
    settings: dict[str, Any]
    counts: StepCounts


def step_counts(session: Session, campaign: Campaign, period: Period | None = None) -> dict[str, StepCounts]:
    """Step id -> its counts, for every step the campaign has or had (removed steps keep their history);
    "here now" is always now, the rest counts what happened in ``period`` (all time when None)."""
    counts: dict[str, StepCounts] = defaultdict(StepCounts)
    live = session.execute(
        select(Enrollment.step_id, func.count())
        .where(Enrollment.campaign_id == campaign.id, is_live(Enrollment.state))
        .group_by(Enrollment.step_id)
    ).all()
    for step_id, count in live:
        if step_id is not None:
            counts[step_id].here_now = count
    in_period = _within(StepRun.ran_at, period)
    outcomes = session.execute(
        select(StepRun.step_id, StepRun.outcome, func.count(), func.count(StepRun.message_id))
        .where(StepRun.campaign_id == campaign.id, in_period)
        .group_by(StepRun.step_id, StepRun.outcome)
    ).all()
    for step_id, outcome, runs, messages in outcomes:
        step = counts[step_id]
        step.runs += runs
        step.queued += messages
        step.outcomes[outcome] = runs
    entered = session.execute(
        select(StepRun.step_id, func.count(func.distinct(StepRun.enrollment_id)))
        .where(StepRun.campaign_id == campaign.id, in_period)
        .group_by(StepRun.step_id)
    ).all()
    for step_id, count in entered:
        counts[step_id].entered = count
    sent = session.execute(
        select(StepRun.step_id, func.count())
        .join(Message, Message.id == StepRun.message_id)
        .where(StepRun.campaign_id == campaign.id, in_period, Message.status == MessageStatus.SENT)
        .group_by(StepRun.step_id)
    ).all()
    for step_id, count in sent:
        counts[step_id].sent = count
    engaged = session.execute(
        select(
            StepRun.step_id,
            EngagementEvent.type,
            EngagementEvent.machine,
            func.count(func.distinct(EngagementEvent.message_id)),
        )
        .join(EngagementEvent, EngagementEvent.message_id == StepRun.message_id)
        .where(
            StepRun.campaign_id == campaign.id,
            in_period,
            EngagementEvent.type.in_([EventType.DELIVERED.value, EventType.OPENED.value, EventType.CLICKED.value]),
        )
        .group_by(StepRun.step_id, EngagementEvent.type, EngagementEvent.machine)
    ).all()
    for step_id, kind, machine, count in engaged:
        step = counts[step_id]
        if kind == EventType.DELIVERED.value:
            step.delivered += count
        elif kind == EventType.OPENED.value:
            step.opened, step.machine_opened = (step.opened, count) if machine else (count, step.machine_opened)
        else:
            step.clicked, step.machine_clicked = (step.clicked, count) if machine else (count, step.machine_clicked)
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


def step_views(session: Session, campaign: Campaign, period: Period | None = None) -> list[StepView]:
    """The steps of the stored definition in order, each with its counts."""
    counts = step_counts(session, campaign, period)
    views = []
    for data in campaign.definition.get("steps", ()):
        settings = {key: value for key, value in data.items() if key not in ("id", "type")}
        views.append(StepView(data["id"], data.get("type", ""), settings, counts.get(data["id"], StepCounts())))
    return views


@dataclass
class VariantCounts:
    step_id: str
    variant: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None


def variant_counts(session: Session, campaign: Campaign, period: Period | None = None) -> list[VariantCounts]:
    """Per A/B variant of each send step: emails sent, and distinct emails opened and clicked by people."""
    in_period = _within(StepRun.ran_at, period)
    found: dict[tuple[str, str], VariantCounts] = {}
    sent = session.execute(
        select(StepRun.step_id, StepRun.variant, func.count())
        .join(Message, Message.id == StepRun.message_id)
        .where(
            StepRun.campaign_id == campaign.id,
            StepRun.variant.is_not(None),
            in_period,
            Message.status == MessageStatus.SENT,
        )
        .group_by(StepRun.step_id, StepRun.variant)
    )
    for step_id, variant, count in sent:
        found[(step_id, variant)] = VariantCounts(step_id, variant, sent=count)
    engaged = session.execute(
        select(
            StepRun.step_id,
            StepRun.variant,
            EngagementEvent.type,
            func.count(func.distinct(EngagementEvent.message_id)),
        )
        .join(EngagementEvent, EngagementEvent.message_id == StepRun.message_id)
        .where(
            StepRun.campaign_id == campaign.id,
            StepRun.variant.is_not(None),
            in_period,
            EngagementEvent.type.in_([EventType.OPENED.value, EventType.CLICKED.value]),
            EngagementEvent.machine.is_(False),
        )
        .group_by(StepRun.step_id, StepRun.variant, EngagementEvent.type)
    )
    for step_id, variant, kind, count in engaged:
        row = found.setdefault((step_id, variant), VariantCounts(step_id, variant))
        if kind == EventType.OPENED.value:
            row.opened = count
        else:
            row.clicked = count
    return sorted(found.values(), key=lambda row: (row.step_id, row.variant))


def conversions_by_day(session: Session, campaign: Campaign, period: Period) -> list[tuple[date, int]]:
    """Every day of ``period`` with the enrollments of the campaign that converted on it (UTC days)."""
    finished_day = func.date(Enrollment.finished_at)
    rows = session.execute(
        select(finished_day, func.count())
        .where(
            Enrollment.campaign_id == campaign.id,
            Enrollment.state == EnrollmentState.CONVERTED,
            _within(Enrollment.finished_at, period),
        )
        .group_by(finished_day)
    )
    counts = {(value if isinstance(value, date) else date.fromisoformat(str(value))): count for value, count in rows}
    first, last = period[0].date(), (period[1] - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(day, counts.get(day, 0)) for day in days]
