"""Sales-process reports from the stage history: the funnel of a period (entries, moves forward, customers,
losses and conversion rates), the leads lost in a period (from which stage, why, and how many came back), and
time in each stage (median, p75, p90, mean; closed and still-open stays).

Everything is computed from ``stage_changes``: each row opens a *stay* of the lead in ``to_stage``; the lead's
next row (by ``changed_at``, then ``id``) closes it. ``LEAD()`` over the rows of each lead pairs them in SQL, so a
report is one aggregate query whatever the number of leads. Rows before the period's start never matter (a stay
is closed by a *later* row), so every query reads only the history from the period's start on.

The definitions are spelled out in docs/reports.md."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, String, Subquery, case, func, literal, select, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from nurture.db import UTCDateTime, is_postgresql
from nurture.errors import ValidationError
from nurture.leads.lifecycle import FUNNEL, Stage
from nurture.leads.models import StageChange

DEFAULT_PERIOD_DAYS = 90
# Stages where a long stay is a delay to act on; customer is where leads should stay, lost is outside the order.
FORWARD_STAGES: tuple[Stage, ...] = FUNNEL[:-1]
DEAL_LOST_PREFIX = "deal lost"
NO_REASON = "(no reason given)"
PERCENTILES = (0.5, 0.75, 0.9)


# --- the period -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The instants [start, end), in UTC; built from whole days, ``end`` is midnight after the last day."""

    start: datetime
    end: datetime

    @classmethod
    def of_days(cls, first_day: date, last_day: date) -> Period:
        start = datetime.combine(first_day, time(0), tzinfo=UTC)
        return cls(start, datetime.combine(last_day, time(0), tzinfo=UTC) + timedelta(days=1))

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()


def _parse_day(raw: str, where: str) -> date:
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationError(f"{raw.strip()[:40]!r} is not a date; use YYYY-MM-DD, e.g. 2026-01-31", where) from None
    if day >= date.max:
        raise ValidationError("a date before 9999-12-31, please", where)
    return day


def parse_period(
    raw_from: str | None, raw_to: str | None, today: date, default_days: int = DEFAULT_PERIOD_DAYS
) -> Period:
    """The period from two optional YYYY-MM-DD days, both included (UTC). ``to`` defaults to ``today``, ``from`` to
    ``default_days`` days before it. Bad input raises ``ValidationError`` naming ``from`` or ``to``."""
    last_day = _parse_day(raw_to, "to") if raw_to and raw_to.strip() else today
    if raw_from and raw_from.strip():
        first_day = _parse_day(raw_from, "from")
    else:
        days_back = timedelta(days=default_days - 1)
        first_day = last_day - days_back if last_day - date.min >= days_back else date.min
    if first_day > last_day:
        raise ValidationError(f"{first_day.isoformat()} is after the end of the period, {last_day.isoformat()}", "from")
    return Period.of_days(first_day, last_day)


# --- stays: one row per stage change, with the change that ended it ---------------------------------------------


def _stays(*, since: datetime, until: datetime, lead_ids: Any = None, with_customer_flag: bool = False) -> Subquery:
    """Every stay that began in [since, until), with the stage and time of the change that ended it before
    ``until`` (NULL: still in that stage at ``until``). ``reached_customer`` (when asked): a later change before
    ``until`` made the lead a customer."""
    order = (StageChange.changed_at, StageChange.id)
    stage_type = StageChange.__table__.c.to_stage.type
    columns: list[Any] = [
        StageChange.lead_id,
        StageChange.from_stage,
        StageChange.to_stage.label("stage"),
        StageChange.changed_at.label("entered_at"),
        StageChange.reason,
        func.lead(StageChange.to_stage, type_=stage_type).over(partition_by=StageChange.lead_id, order_by=order)
        .label("next_stage"),
        func.lead(StageChange.changed_at, type_=UTCDateTime()).over(partition_by=StageChange.lead_id, order_by=order)
        .label("left_at"),
    ]
    if with_customer_flag:
        later_customer = func.max(case((StageChange.to_stage == Stage.CUSTOMER, 1), else_=0)).over(
            partition_by=StageChange.lead_id, order_by=order, rows=(1, None)
        )
        columns.append(later_customer.label("reached_customer"))
    query = select(*columns).where(StageChange.changed_at >= since, StageChange.changed_at < until)
    if lead_ids is not None:
        query = query.where(StageChange.lead_id.in_(lead_ids))
    return query.subquery("stays")


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- funnel -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelRow:
    """The stays that began in ``stage`` during the period, and what had become of them by the horizon."""

    stage: Stage
    entered: int = 0
    moved_forward: int = 0
    lost: int = 0
    moved_back: int = 0
    reached_customer: int = 0

    @property
    def still_here(self) -> int:
        return self.entered - self.moved_forward - self.lost - self.moved_back

    @property
    def conversion_rate(self) -> float | None:
        """Share of the entries that moved on to a later stage; None when nobody entered, and for customer (the
        last stage: there is nowhere forward to go)."""
        return None if self.stage is Stage.CUSTOMER else _rate(self.moved_forward, self.entered)

    @property
    def customer_rate(self) -> float | None:
        return _rate(self.reached_customer, self.entered)


@dataclass(frozen=True)
class FunnelReport:
    period: Period
    # End of the follow-up: the period's end, or now for a cohort report.
    horizon: datetime
    cohort: bool
    rows: tuple[FunnelRow, ...]

    def row(self, stage: Stage) -> FunnelRow:
        return next(row for row in self.rows if row.stage is stage)

    @property
    def new_customers(self) -> int:
        return self.row(Stage.CUSTOMER).entered

    @property
    def biggest_drop_off(self) -> FunnelRow | None:
        """The stage before customer with the lowest share moving forward (the first of equals); None when no
        lead entered any of them."""
        candidates = [row for row in self.rows if row.stage in FORWARD_STAGES and row.entered]
        return min(candidates, key=lambda row: row.conversion_rate or 0.0, default=None)


def funnel_report(session: Session, period: Period, now: datetime, *, cohort: bool = False) -> FunnelReport:
    """Per funnel stage, the leads that entered it in ``period`` and, by the end of the period (or by ``now``
    with ``cohort``), how many moved forward, were lost from it, went back, or became customers."""
    horizon = max(now, period.end) if cohort else period.end
    stays = _stays(since=period.start, until=horizon, with_customer_flag=True)
    counts = session.execute(
        select(stays.c.stage, stays.c.next_stage, stays.c.reached_customer, func.count())
        .where(stays.c.entered_at < period.end, stays.c.stage != Stage.LOST)
        .group_by(stays.c.stage, stays.c.next_stage, stays.c.reached_customer)
    ).all()
    totals: dict[Stage, dict[str, int]] = {stage: defaultdict(int) for stage in FUNNEL}
    for stage, next_stage, reached_customer, count in counts:
        tally = totals[stage]
        tally["entered"] += count
        if next_stage is Stage.LOST:
            tally["lost"] += count
        elif next_stage is not None:
            tally["moved_forward" if _rank(next_stage) > _rank(stage) else "moved_back"] += count
        if reached_customer or stage is Stage.CUSTOMER:
            tally["reached_customer"] += count
    rows = tuple(FunnelRow(stage, **totals[stage]) for stage in FUNNEL)
    return FunnelReport(period, horizon, cohort, rows)


def _rank(stage: Stage) -> int:
    rank = stage.rank
    assert rank is not None, stage
    return rank


# --- cohorts by month of creation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthCohort:
    """The leads created in one calendar month (UTC), and how far each had got by now."""

    month: str
    created: int
    # Leads that reached the stage or a later one (skipping counts), per funnel stage.
    reached: dict[Stage, int]
    lost: int

    def rate(self, stage: Stage) -> float | None:
        return _rate(self.reached.get(stage, 0), self.created)


def month_cohorts(session: Session, period: Period, now: datetime) -> list[MonthCohort]:
    """Leads created in ``period``, by month of creation: how many reached each stage, and were ever lost, by
    ``now``. Comparing months shows whether the process gets faster or better (older months had more time)."""
    created = (
        select(StageChange.lead_id, StageChange.changed_at.label("created_at"))
        .where(
            StageChange.from_stage.is_(None),
            StageChange.changed_at >= period.start,
            StageChange.changed_at < period.end,
        )
        .subquery("created")
    )
    later = StageChange.__table__.alias("later")
    rank = case({stage.value: index for index, stage in enumerate(FUNNEL)}, value=later.c.to_stage, else_=-1)
    per_lead = (
        select(
            created.c.created_at,
            func.max(rank).label("furthest"),
            func.max(case((later.c.to_stage == Stage.LOST.value, 1), else_=0)).label("ever_lost"),
        )
        .join(later, later.c.lead_id == created.c.lead_id)
        .where(later.c.changed_at < now)
        .group_by(created.c.lead_id, created.c.created_at)
        .subquery("per_lead")
    )
    month = _month_of(session, per_lead.c.created_at).label("month")
    rows = session.execute(
        select(month, per_lead.c.furthest, per_lead.c.ever_lost, func.count())
        .group_by(month, per_lead.c.furthest, per_lead.c.ever_lost)
        .order_by(month)
    ).all()
    months: dict[str, dict[str, Any]] = {}
    for label, furthest, ever_lost, count in rows:
        tally = months.setdefault(label, {"created": 0, "lost": 0, "reached": defaultdict(int)})
        tally["created"] += count
        tally["lost"] += count if ever_lost else 0
        for stage in FUNNEL[: furthest + 1]:
            tally["reached"][stage] += count
    return [
        MonthCohort(label, tally["created"], {stage: tally["reached"][stage] for stage in FUNNEL}, tally["lost"])
        for label, tally in months.items()
    ]


def _month_of(session: Session, moment: Any) -> ColumnElement[str]:
    if is_postgresql(session):
        return func.to_char(func.timezone("UTC", moment), "YYYY-MM")
    return func.strftime("%Y-%m", moment)


# --- lost -------------------------------------------------------------------------------------------------------


def reason_label(reason: str | None) -> str:
    """The reason as shown: ``deal lost: budget`` is ``budget``, an empty one says so."""
    text = " ".join((reason or "").split())
    if text.lower().startswith(DEAL_LOST_PREFIX):
        text = text[len(DEAL_LOST_PREFIX) :].lstrip(" :").strip()
    return text or NO_REASON


@dataclass(frozen=True)
class LostCount:
    label: str
    lost: int
    re_engaged: int


@dataclass(frozen=True)
class LostReport:
    period: Period
    now: datetime
    total: int
    re_engaged: int
    # Stage the leads were lost from (None: created as lost), in funnel order.
    by_stage: tuple[tuple[Stage | None, LostCount], ...]
    # Most frequent first, then by label.
    by_reason: tuple[LostCount, ...]

    @property
    def re_engaged_rate(self) -> float | None:
        return _rate(self.re_engaged, self.total)


def lost_report(session: Session, period: Period, now: datetime) -> LostReport:
    """The moves to lost made in ``period``, by the stage left and by reason, and how many of those leads were
    re-engaged (moved out of lost again) by ``now``."""
    lost_in_period = select(StageChange.lead_id).where(
        StageChange.to_stage == Stage.LOST, StageChange.changed_at >= period.start, StageChange.changed_at < period.end
    )
    stays = _stays(since=period.start, until=max(now, period.end), lead_ids=lost_in_period)
    re_engaged = stays.c.next_stage.is_not(None)
    rows = session.execute(
        select(stays.c.from_stage, stays.c.reason, re_engaged, func.count())
        .where(stays.c.stage == Stage.LOST, stays.c.entered_at < period.end)
        .group_by(stays.c.from_stage, stays.c.reason, re_engaged)
    ).all()
    by_stage: dict[Stage | None, list[int]] = defaultdict(lambda: [0, 0])
    by_reason: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for from_stage, reason, came_back, count in rows:
        for tally in (by_stage[from_stage], by_reason[reason_label(reason)]):
            tally[0] += count
            tally[1] += count if came_back else 0
    stage_order = [None, *FUNNEL]
    return LostReport(
        period,
        now,
        total=sum(lost for lost, _ in by_stage.values()),
        re_engaged=sum(back for _, back in by_stage.values()),
        by_stage=tuple(
            (stage, LostCount(stage.value if stage else "(created lost)", *by_stage[stage]))
            for stage in sorted(by_stage, key=stage_order.index)
        ),
        by_reason=tuple(
            sorted((LostCount(label, *tally) for label, tally in by_reason.items()), key=lambda c: (-c.lost, c.label))
        ),
    )


# --- velocity ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DurationStats:
    """Durations of a set of stays; the percentiles interpolate linearly (as PostgreSQL's percentile_cont)."""

    count: int = 0
    mean: timedelta | None = None
    median: timedelta | None = None
    p75: timedelta | None = None
    p90: timedelta | None = None


@dataclass(frozen=True)
class StageVelocity:
    stage: Stage
    # Stays that ended (the lead moved on) by now.
    closed: DurationStats = field(default_factory=DurationStats)
    # Stays still going on now, measured to now.
    open: DurationStats = field(default_factory=DurationStats)
    # Both together: an open stay counts the time so far.
    all: DurationStats = field(default_factory=DurationStats)


@dataclass(frozen=True)
class VelocityReport:
    period: Period
    now: datetime
    stages: tuple[StageVelocity, ...]

    def stage(self, stage: Stage) -> StageVelocity:
        return next(row for row in self.stages if row.stage is stage)

    @property
    def bottleneck(self) -> StageVelocity | None:
        """The stage before customer with the longest median stay, open stays included (the first of equals)."""
        candidates = [row for row in self.stages if row.stage in FORWARD_STAGES and row.all.median is not None]
        return max(candidates, key=lambda row: row.all.median or timedelta(0), default=None)


def _seconds_between(session: Session, earlier: ColumnElement[Any], later: ColumnElement[Any]) -> ColumnElement[float]:
    if is_postgresql(session):
        # date_part gives float8 directly; EXTRACT gives numeric, several times slower to compute and sort.
        return func.date_part("epoch", later - earlier, type_=Float)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _duration(seconds: float | None) -> timedelta | None:
    # Millisecond rounding hides SQLite's julianday float noise; both databases then give the same figures.
    return None if seconds is None else timedelta(seconds=round(float(seconds), 3))


def velocity_report(session: Session, period: Period, now: datetime) -> VelocityReport:
    """Time spent in each stage by the stays that began in ``period``: closed stays to the change that ended
    them, open ones to ``now``."""
    stays = _stays(since=period.start, until=max(now, period.end))
    ended_at = func.coalesce(stays.c.left_at, literal(now, UTCDateTime()))
    seconds = _seconds_between(session, stays.c.entered_at, ended_at)
    is_open = stays.c.left_at.is_(None)
    in_period = stays.c.entered_at < period.end
    if is_postgresql(session):
        by_stage = _velocity_in_sql(session, stays.c.stage, seconds, is_open, in_period)
    else:
        by_stage = _velocity_streamed(session, stays.c.stage, seconds, is_open, in_period)
    stages = tuple(by_stage.get(stage, StageVelocity(stage)) for stage in (*FUNNEL, Stage.LOST))
    return VelocityReport(period, now, stages)


def _velocity_in_sql(
    session: Session, stage: Any, seconds: ColumnElement[float], is_open: Any, in_period: Any
) -> dict[Stage, StageVelocity]:
    """PostgreSQL: percentile_cont per stage, all three fractions from one sort; aggregates skip NULLs, so a CASE
    picks closed or open stays."""
    fractions = postgresql.array([literal(p, Float) for p in PERCENTILES])
    columns: list[Any] = []
    for picked in (case((~is_open, seconds)), case((is_open, seconds)), seconds):
        columns += [
            func.count(picked),
            func.avg(picked),
            func.percentile_cont(fractions, type_=postgresql.ARRAY(Float)).within_group(picked),
        ]
    result = {}
    for row in session.execute(select(stage, *columns).where(in_period).group_by(stage)):
        closed, open_, all_ = (_stats(row[1 + i * 3], row[2 + i * 3], row[3 + i * 3] or ()) for i in range(3))
        result[row[0]] = StageVelocity(row[0], closed, open_, all_)
    return result


def _stats(count: int, mean: float | None, percentiles: Sequence[float | None]) -> DurationStats:
    if not count:
        return DurationStats()
    median, p75, p90 = (_duration(value) for value in percentiles)
    return DurationStats(count, _duration(mean), median, p75, p90)


def _velocity_streamed(
    session: Session, stage: Any, seconds: ColumnElement[float], is_open: Any, in_period: Any
) -> dict[Stage, StageVelocity]:
    """SQLite has no percentile_cont: the lengths are streamed (plain values, no ORDER BY: sorting per stage in
    Python is cheaper than SQLite's temporary B-tree) and the percentiles read off the sorted lists."""
    closed: dict[str, list[float]] = defaultdict(list)
    still_open: dict[str, list[float]] = defaultdict(list)
    query = select(type_coerce(stage, String), is_open, seconds).where(in_period)
    for partition in session.connection().execute(query.execution_options(yield_per=10_000)).partitions():
        for stage_value, row_open, row_seconds in partition:
            (still_open if row_open else closed)[stage_value].append(row_seconds)
    result = {}
    for value in closed.keys() | still_open.keys():
        closed_values, open_values = sorted(closed[value]), sorted(still_open[value])
        result[Stage(value)] = StageVelocity(
            Stage(value),
            _stats_of_sorted(closed_values),
            _stats_of_sorted(open_values),
            _stats_of_sorted(sorted(closed_values + open_values)),
        )
    return result


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks, as percentile_cont does."""
    position = fraction * (len(sorted_values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def _stats_of_sorted(values: Sequence[float]) -> DurationStats:
    if not values:
        return DurationStats()
    return _stats(len(values), sum(values) / len(values), [percentile(values, p) for p in PERCENTILES])


def format_rate(rate: float | None) -> str:
    """``42.5%``, or ``—`` when there is nothing to divide by."""
    return "—" if rate is None else f"{rate * 100:.1f}%"
