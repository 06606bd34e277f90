"""The sales-process reports over a known stage history, on SQLite and PostgreSQL: exact counts, rates and
durations (open stays measured to now, plain UTC arithmetic across a DST change), lost reasons, re-engaged leads,
empty periods.

The history (period: March 2026; now: 2026-04-15 00:00 UTC; day n = March 1 + n days):

    a  subscriber d0 -> lead d2 -> mql d5 -> sql d9 -> opportunity d14 -> customer d20
    b  subscriber d0 -> lead d3 -> mql d4 -> lost d10 "deal lost: budget" -> lead Apr 10 (re-engaged)
    c  subscriber Feb 20 -> lead d4 (stays)
    d  subscriber d9 -> lead d10 + 1.5 s -> mql d11 -> sql d12 -> lost d13 "deal lost: timing" (stays)
    e  subscriber d24 -> lead Apr 5 (after the period; Europe's clocks change on Mar 29, UTC's do not)
    f  subscriber d1 -> mql d2 (skips lead) -> lead d5 (moved back, stays)
    g  subscriber Feb 1 -> lost Feb 10 "deal lost: price" (before the period)
    h  created as opportunity d0 -> lost d19 "deal lost" (no reason)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from nurture.leads.funnel import Period, funnel_report, lost_report, month_cohorts, velocity_report
from nurture.leads.lifecycle import FUNNEL, Stage
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, change_stage, create_lead

ACTOR = Actor(ActorKind.USER, "rep@example.com")
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 4, 15, tzinfo=UTC)
MARCH = Period.of_days(date(2026, 3, 1), date(2026, 3, 31))
S, L, M, Q, OPP, C, X = (*FUNNEL, Stage.LOST)


def day(n: float) -> datetime:
    return MARCH_1 + timedelta(days=n)


def make_history(session, clock, email: str, created: datetime, *moves, stage: Stage = S):
    """A lead created at ``created`` in ``stage``, then moved as ``(when, stage[, reason])`` says."""
    clock.set(created)
    lead = create_lead(session, clock, email, actor=ACTOR, stage=stage)
    session.flush()
    for when, to, *reason in moves:
        clock.set(when)
        change_stage(session, clock, lead, to, reason=reason[0] if reason else f"to {to.value}", actor=ACTOR)
    session.flush()
    return lead


@pytest.fixture
def history(session, clock):
    make_history(
        session, clock, "a@example.com", day(0), (day(2), L), (day(5), M), (day(9), Q), (day(14), OPP), (day(20), C)
    )
    make_history(
        session, clock, "b@example.com", day(0),
        (day(3), L), (day(4), M), (day(10), X, "deal lost: budget"), (datetime(2026, 4, 10, tzinfo=UTC), L),
    )
    make_history(session, clock, "c@example.com", datetime(2026, 2, 20, tzinfo=UTC), (day(4), L))
    make_history(
        session, clock, "d@example.com", day(9),
        (day(10) + timedelta(seconds=1.5), L), (day(11), M), (day(12), Q), (day(13), X, "deal lost: timing"),
    )
    make_history(session, clock, "e@example.com", day(24), (datetime(2026, 4, 5, tzinfo=UTC), L))
    make_history(session, clock, "f@example.com", day(1), (day(2), M), (day(5), L))
    make_history(
        session, clock, "g@example.com", datetime(2026, 2, 1, tzinfo=UTC),
        (datetime(2026, 2, 10, tzinfo=UTC), X, "deal lost: price"),
    )
    make_history(session, clock, "h@example.com", day(0), (day(19), X, "deal lost"), stage=OPP)
    clock.set(NOW)


def counts(report, stage):
    row = report.row(stage)
    return row.entered, row.moved_forward, row.lost, row.moved_back, row.still_here, row.reached_customer


def test_funnel_counts_the_period_followed_to_its_end(session, history):
    report = funnel_report(session, MARCH, NOW)

    assert report.horizon == datetime(2026, 4, 1, tzinfo=UTC)
    #                          entered fwd lost back still customer
    assert counts(report, S) == (5, 4, 0, 0, 1, 1)
    assert counts(report, L) == (5, 3, 0, 0, 2, 1)
    assert counts(report, M) == (4, 2, 1, 1, 0, 1)
    assert counts(report, Q) == (2, 1, 1, 0, 0, 1)
    assert counts(report, OPP) == (2, 1, 1, 0, 0, 1)
    assert counts(report, C) == (1, 0, 0, 0, 1, 1)
    assert report.new_customers == 1
    assert report.row(S).conversion_rate == pytest.approx(0.8)
    assert report.row(L).conversion_rate == pytest.approx(0.6)
    assert report.row(M).customer_rate == pytest.approx(0.25)
    assert report.row(C).conversion_rate is None
    # mql, sql and opportunity all move half on: the first of them is the biggest drop-off.
    assert report.biggest_drop_off is not None and report.biggest_drop_off.stage is M


def test_cohort_follows_the_same_entries_to_now(session, history):
    report = funnel_report(session, MARCH, NOW, cohort=True)

    assert report.horizon == NOW
    # e moved to lead on April 5: forward now; b's return to lead on April 10 is not a March entry.
    assert counts(report, S) == (5, 5, 0, 0, 0, 1)
    assert counts(report, L) == (5, 3, 0, 0, 2, 1)
    assert report.row(S).conversion_rate == 1.0


def test_lost_report_by_stage_and_reason_with_re_engaged_leads(session, history):
    report = lost_report(session, MARCH, NOW)

    assert (report.total, report.re_engaged) == (3, 1)
    assert report.re_engaged_rate == pytest.approx(1 / 3)
    assert [(stage, c.lost, c.re_engaged) for stage, c in report.by_stage] == [(M, 1, 1), (Q, 1, 0), (OPP, 1, 0)]
    assert [(c.label, c.lost, c.re_engaged) for c in report.by_reason] == [
        ("(no reason given)", 1, 0),
        ("budget", 1, 1),
        ("timing", 1, 0),
    ]


def test_re_engagement_after_now_does_not_count(session, history):
    report = lost_report(session, MARCH, datetime(2026, 4, 9, tzinfo=UTC))

    assert (report.total, report.re_engaged) == (3, 0)


def test_a_lead_created_lost_counts_as_lost_from_no_stage(session, clock):
    make_history(session, clock, "z@example.com", day(3), stage=X)

    report = lost_report(session, MARCH, NOW)

    assert [(stage, c.label, c.lost) for stage, c in report.by_stage] == [(None, "(created lost)", 1)]
    assert [c.label for c in report.by_reason] == ["created"]


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_velocity_of_closed_and_open_stays(session, history):
    report = velocity_report(session, MARCH, NOW)

    subscriber = report.stage(S)
    # a 2d, b 3d, d 1d 1.5s, e 11d (to April 5, across the DST change: UTC days), f 1d
    assert subscriber.closed.count == 5 and subscriber.open.count == 0
    assert subscriber.closed.median == days(2)
    assert subscriber.closed.mean == days(18 / 5) + timedelta(seconds=0.3)
    assert subscriber.closed.p75 == days(3)
    assert subscriber.closed.p90 == days(7.8)
    assert subscriber.all == subscriber.closed

    lead = report.stage(L)
    # closed: a 3d, b 1d, d 1d - 1.5s; open to now: c since March 5 (41d), f since March 6 (40d)
    assert (lead.closed.count, lead.open.count, lead.all.count) == (3, 2, 5)
    assert lead.closed.median == days(1)
    assert lead.closed.mean == (days(5) - timedelta(seconds=1.5)) / 3
    assert lead.closed.p90 == days(1) + days(2) * 0.8
    assert lead.open.median == days(40.5)
    assert lead.open.p90 == days(40.9)
    assert lead.all.median == days(3)

    assert report.stage(M).closed.median == days(3.5)
    assert report.stage(Q).closed.median == days(3)
    assert report.stage(OPP).all.median == days(12.5)
    customer = report.stage(C)
    assert (customer.closed.count, customer.open.count, customer.open.median) == (0, 1, days(25))
    lost = report.stage(X)
    # b lost for 30 days; d and h still lost, for 32 and 26 days.
    assert (lost.closed.count, lost.closed.median, lost.open.count, lost.open.median) == (1, days(30), 2, days(29))

    assert report.bottleneck is not None and report.bottleneck.stage is OPP


def test_velocity_counts_only_stays_begun_in_the_period(session, history):
    april = Period.of_days(date(2026, 4, 1), date(2026, 4, 30))

    report = velocity_report(session, april, NOW)

    # e's lead stay (April 5, open: 10 days) and b's (April 10, open: 5 days).
    lead = report.stage(L)
    assert (lead.closed.count, lead.open.count, lead.open.median) == (0, 2, days(7.5))
    assert report.stage(S).all.count == 0


def test_empty_period(session, history):
    empty = Period.of_days(date(2025, 1, 1), date(2025, 1, 31))

    funnel = funnel_report(session, empty, NOW)
    lost = lost_report(session, empty, NOW)
    velocity = velocity_report(session, empty, NOW)

    assert all(row.entered == 0 and row.conversion_rate is None for row in funnel.rows)
    assert funnel.biggest_drop_off is None and funnel.new_customers == 0
    assert (lost.total, lost.re_engaged, lost.by_stage, lost.by_reason, lost.re_engaged_rate) == (0, 0, (), (), None)
    assert all(row.all.count == 0 and row.all.median is None for row in velocity.stages)
    assert velocity.bottleneck is None


def test_empty_database(session):
    assert funnel_report(session, MARCH, NOW).new_customers == 0
    assert lost_report(session, MARCH, NOW).total == 0
    assert velocity_report(session, MARCH, NOW).bottleneck is None


def test_moves_at_the_same_instant_follow_the_order_they_were_made(session, clock):
    # Scoring promotes lead -> mql -> sql in one go: zero-length mql stay, ordered by id.
    make_history(session, clock, "fast@example.com", day(1), (day(2), L), (day(2), M), (day(2), Q))

    funnel = funnel_report(session, MARCH, NOW)
    velocity = velocity_report(session, MARCH, NOW)

    assert counts(funnel, M) == (1, 1, 0, 0, 0, 0)
    assert velocity.stage(M).closed.median == timedelta(0)
    assert velocity.stage(Q).open.median == NOW - day(2)


def test_month_cohorts_count_how_far_the_leads_of_each_month_got(session, history):
    cohorts = month_cohorts(session, Period.of_days(date(2026, 2, 1), date(2026, 3, 31)), NOW)

    assert [(c.month, c.created, c.lost) for c in cohorts] == [("2026-02", 2, 1), ("2026-03", 6, 3)]
    february, march = cohorts
    assert [february.reached[stage] for stage in FUNNEL] == [2, 1, 0, 0, 0, 0]
    # h was created as an opportunity: it reached every stage up to there.
    assert [march.reached[stage] for stage in FUNNEL] == [6, 6, 5, 3, 2, 1]
    assert march.rate(C) == pytest.approx(1 / 6)


def test_month_cohorts_only_see_changes_before_now(session, history):
    (march,) = month_cohorts(session, MARCH, datetime(2026, 3, 15, tzinfo=UTC))

    # Before March 15 00:00: e is not created yet, a is an sql (opportunity at 00:00 is not before), b and d are
    # lost (from mql and sql), h is an opportunity until March 20.
    assert (march.created, march.lost) == (5, 2)
    assert [march.reached[stage] for stage in FUNNEL] == [5, 5, 5, 3, 1, 0]
