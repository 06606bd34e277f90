"""Property: for random stage histories (skips, moves back, losses, re-engagements, several moves at one
instant), the SQL funnel, lost and velocity reports agree with a plain Python reading of docs/reports.md
(the oracle below), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.leads.funnel import (
    PERCENTILES,
    Period,
    funnel_report,
    lost_report,
    month_cohorts,
    percentile,
    velocity_report,
)
from nurture.leads.lifecycle import FUNNEL, Stage
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, change_stage, create_lead

BASE = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR = Actor(ActorKind.SYSTEM, "property")
STAGES = [*FUNNEL, Stage.LOST]

hours = st.integers(min_value=0, max_value=24 * 60)
moves = st.lists(st.tuples(st.sampled_from([0, 0, 1, 5, 24, 24 * 7, 24 * 20]), st.sampled_from(STAGES)), max_size=6)
histories = st.lists(
    st.tuples(hours, st.sampled_from([Stage.SUBSCRIBER, Stage.SUBSCRIBER, Stage.LEAD, Stage.LOST]), moves),
    max_size=8,
)


@dataclass(frozen=True)
class Row:
    at: datetime
    from_stage: Stage | None
    stage: Stage
    reason: str


def record(session, clock, histories) -> tuple[list[list[Row]], datetime]:
    """Write the histories through the lead service; returns each lead's rows (in the order made) and the last
    instant used."""
    leads_rows, last = [], BASE
    for index, (start, stage, steps) in enumerate(histories):
        at = BASE + timedelta(hours=start)
        clock.set(at)
        lead = create_lead(session, clock, f"p{index}@example.com", actor=ACTOR, stage=stage)
        session.flush()
        rows = [Row(at, None, stage, "created")]
        for gap, target in steps:
            at += timedelta(hours=gap)
            clock.set(at)
            reason = f"deal lost: r{gap % 3}" if target is Stage.LOST else "moved"
            if change_stage(session, clock, lead, target, reason=reason, actor=ACTOR) is not None:
                rows.append(Row(at, rows[-1].stage, target, reason))
        last = max(last, at)
        leads_rows.append(rows)
    session.flush()
    return leads_rows, last


def stays(rows: list[Row], since: datetime, until: datetime) -> list[tuple[Row, Row | None]]:
    """Each row in [since, until) with the next one in that window (the change that ended the stay)."""
    kept = [row for row in rows if since <= row.at < until]
    return [(row, kept[i + 1] if i + 1 < len(kept) else None) for i, row in enumerate(kept)]


def oracle_funnel(leads, period: Period, horizon: datetime) -> dict[Stage, tuple[int, int, int, int, int]]:
    tally: dict[Stage, Counter[str]] = {stage: Counter() for stage in FUNNEL}
    for rows in leads:
        window = stays(rows, period.start, horizon)
        for index, (row, following) in enumerate(window):
            if row.at >= period.end or row.stage is Stage.LOST:
                continue
            counts = tally[row.stage]
            counts["entered"] += 1
            if following is not None:
                if following.stage is Stage.LOST:
                    counts["lost"] += 1
                elif FUNNEL.index(following.stage) > FUNNEL.index(row.stage):
                    counts["forward"] += 1
                else:
                    counts["back"] += 1
            later = [later_row for later_row, _ in window[index + 1 :]]
            if row.stage is Stage.CUSTOMER or any(r.stage is Stage.CUSTOMER for r in later):
                counts["customer"] += 1
    return {s: (c["entered"], c["forward"], c["lost"], c["back"], c["customer"]) for s, c in tally.items()}


def oracle_lost(leads, period: Period, now: datetime) -> tuple[int, int, Counter[Stage | None], Counter[str]]:
    total = back = 0
    by_stage: Counter[Stage | None] = Counter()
    by_reason: Counter[str] = Counter()
    for rows in leads:
        for row, following in stays(rows, period.start, max(now, period.end)):
            if row.stage is Stage.LOST and row.at < period.end:
                total += 1
                back += following is not None
                by_stage[row.from_stage] += 1
                by_reason[row.reason.removeprefix("deal lost: ")] += 1
    return total, back, by_stage, by_reason


def oracle_durations(leads, period: Period, now: datetime) -> dict[Stage, tuple[list[float], list[float]]]:
    result: dict[Stage, tuple[list[float], list[float]]] = {stage: ([], []) for stage in STAGES}
    for rows in leads:
        for row, following in stays(rows, period.start, max(now, period.end)):
            if row.at < period.end:
                seconds = ((following.at if following else now) - row.at).total_seconds()
                result[row.stage][1 if following is None else 0].append(seconds)
    return result


def oracle_cohorts(leads, period: Period, now: datetime) -> dict[str, tuple[int, list[int], int]]:
    """Per month of creation: leads created, how many reached each funnel stage or a later one, how many lost."""
    months: dict[str, tuple[int, list[int], int]] = {}
    for rows in leads:
        created = rows[0].at
        seen = [row for row in rows if row.at < now]
        if not (period.start <= created < period.end) or not seen:
            continue
        furthest = max((FUNNEL.index(row.stage) for row in seen if row.stage is not Stage.LOST), default=-1)
        count, reached, lost = months.get(created.strftime("%Y-%m"), (0, [0] * len(FUNNEL), 0))
        reached = [n + (index <= furthest) for index, n in enumerate(reached)]
        months[created.strftime("%Y-%m")] = (count + 1, reached, lost + any(r.stage is Stage.LOST for r in seen))
    return months


def close(actual: timedelta | None, expected: float) -> bool:
    return actual is not None and abs(actual.total_seconds() - expected) < 0.01


periods = st.tuples(st.integers(min_value=-5, max_value=40), st.integers(min_value=0, max_value=60))


@settings(max_examples=30)
@given(histories=histories, period_days=periods, extra_hours=st.integers(min_value=0, max_value=24 * 90))
def test_reports_agree_with_the_oracle(session, clock, histories, period_days, extra_hours):
    savepoint = session.begin_nested()
    try:
        leads, last = record(session, clock, histories)
        first_day = (BASE + timedelta(days=period_days[0])).date()
        period = Period.of_days(first_day, first_day + timedelta(days=period_days[1]))
        now = last + timedelta(hours=extra_hours)

        for cohort in (False, True):
            report = funnel_report(session, period, now, cohort=cohort)
            expected = oracle_funnel(leads, period, max(now, period.end) if cohort else period.end)
            actual = {
                row.stage: (row.entered, row.moved_forward, row.lost, row.moved_back, row.reached_customer)
                for row in report.rows
            }
            assert actual == expected

        lost = lost_report(session, period, now)
        total, back, by_stage, by_reason = oracle_lost(leads, period, now)
        assert (lost.total, lost.re_engaged) == (total, back)
        assert {stage: count.lost for stage, count in lost.by_stage} == dict(by_stage)
        assert {count.label: count.lost for count in lost.by_reason} == {
            ("(no reason given)" if label == "deal lost" else label): n for label, n in by_reason.items()
        }

        velocity = velocity_report(session, period, now)
        for stage, (closed, open_) in oracle_durations(leads, period, now).items():
            row = velocity.stage(stage)
            for stats, values in ((row.closed, closed), (row.open, open_), (row.all, closed + open_)):
                assert stats.count == len(values)
                if values:
                    values.sort()
                    assert close(stats.mean, sum(values) / len(values))
                    for fraction, got in zip(PERCENTILES, (stats.median, stats.p75, stats.p90), strict=True):
                        assert close(got, percentile(values, fraction))
                else:
                    assert stats.median is None

        cohorts = {c.month: (c.created, [c.reached[stage] for stage in FUNNEL], c.lost) for c in month_cohorts(
            session, period, now
        )}
        assert cohorts == oracle_cohorts(leads, period, now)
    finally:
        savepoint.rollback()
