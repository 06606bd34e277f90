"""Scoring in the database: decay over simulated months, caps, fit points, refresh, breakdown, adjustments,
the scoring CLI, and no lost update under concurrent connections on PostgreSQL."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from nurture.cli.scoring import scoring_group
from nurture.clock import FixedClock
from nurture.config import Settings, TemperatureThresholds
from nurture.db import make_engine, make_session_factory
from nurture.leads.lifecycle import Stage, Temperature
from nurture.leads.models import Lead
from nurture.scoring.models import LeadScore, ScoreEntry
from nurture.scoring.points import add_engagement, breakdown
from nurture.scoring.service import adjust_score
from nurture.scoring.store import current_config
from nurture.tracking.events import NewEvent, random_key, record_event
from nurture.tracking.jobs import score_refresh_job
from nurture.tracking.models import EngagementEvent, EventSource
from tests.acceptance.database import dedicated_database
from tests.acceptance.engine_support import engine_settings, make_context
from tests.conftest import EPOCH, TEST_SECRET
from tests.integration.test_tracking_support import load_scoring, make_lead

pytest_plugins = ["tests.integration.test_tracking_support"]

RULES = """half_life_days: 30
lifecycle: {mql_at: null, sql_at: null}
rules:
  - {name: meeting, event: meeting_booked, points: 64}
  - {name: opens, event: opened, points: 2, cap: {points: 10, per: day}}
  - {name: spam, event: complained, points: -50}
  - {name: vp, fit: {field: job_title, op: contains, value: VP}, points: 8}
  - {name: big, fit: {field: attributes.company_size, op: ">=", value: 50}, points: 6}
"""


def event(lead, kind, clock, **extra):
    return NewEvent(
        lead_id=lead.id,
        type=kind,
        occurred_at=extra.pop("at", clock.now()),
        source=EventSource.API,
        dedupe_key=random_key("t"),
        **extra,
    )


def stored(session, lead):
    session.expire_all()
    found = session.get(Lead, lead.id)
    return found.score, found.temperature


def test_a_quiet_lead_cools_from_hot_to_warm_to_cold_over_simulated_months(session, session_factory, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    record_event(session, clock, ctx, event(lead, "meeting_booked", clock))
    session.commit()
    assert stored(session, lead) == (64, Temperature.HOT)

    expected = {
        30: (32, Temperature.WARM),
        60: (16, Temperature.COLD),
        90: (8, Temperature.COLD),
        180: (1, Temperature.COLD),
        365: (0, Temperature.COLD),
    }
    for day in range(1, 366):
        clock.set(EPOCH + timedelta(days=day))
        if day % 15 == 0:
            score_refresh_job(session_factory, clock, ctx)
        if day in expected:
            score_refresh_job(session_factory, clock, ctx)
            assert stored(session, lead) == expected[day], day
    result = breakdown(session, current_config(session), lead.id, clock.now())
    assert result.engagement == pytest.approx(64 * 2 ** (-365 / 30))


def test_points_earned_in_the_past_are_worth_their_decayed_value(session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    record_event(session, clock, ctx, event(lead, "meeting_booked", clock, at=clock.now() - timedelta(days=30)))
    assert stored(session, lead)[0] == 32
    record_event(session, clock, ctx, event(lead, "meeting_booked", clock, at=clock.now() + timedelta(minutes=2)))
    assert stored(session, lead)[0] == 96  # a future stamp earns no more than now


def test_the_stored_engagement_equals_the_sum_of_decayed_entries(session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    for day in (0, 3, 10, 41, 77):
        clock.set(EPOCH + timedelta(days=day, hours=day))
        record_event(session, clock, ctx, event(lead, "meeting_booked", clock))
    clock.set(EPOCH + timedelta(days=100))
    result = breakdown(session, current_config(session), lead.id, clock.now())
    assert result.engagement == pytest.approx(sum(line.worth_now for line in result.engagement_lines))
    assert [line.rule for line in result.engagement_lines] == ["meeting"] * 5


def test_a_cap_limits_the_points_per_period_and_says_so(session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    for _ in range(7):
        record_event(session, clock, ctx, event(lead, "opened", clock))
    entries = session.execute(
        select(ScoreEntry.points, ScoreEntry.note).where(ScoreEntry.lead_id == lead.id).order_by(ScoreEntry.id)
    ).all()
    assert [points for points, _ in entries] == [2, 2, 2, 2, 2, 0, 0]
    assert entries[-1].note == "capped: 10 points a day"
    assert stored(session, lead)[0] == 10

    clock.advance(timedelta(days=1))
    record_event(session, clock, ctx, event(lead, "opened", clock))
    assert stored(session, lead)[0] == round(10 * 2 ** (-1 / 30) + 2)


def test_negative_points_and_fit_points(session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock, job_title="VP Marketing", attributes={"company_size": 120})
    record_event(session, clock, ctx, event(lead, "meeting_booked", clock))
    assert stored(session, lead)[0] == 64 + 8 + 6
    record_event(session, clock, ctx, event(lead, "complained", clock))
    assert stored(session, lead)[0] == 64 + 8 + 6 - 50


def test_the_refresh_recomputes_fit_after_a_profile_change_and_promotes(session, session_factory, clock, ctx):
    load_scoring(session, clock, RULES.replace("mql_at: null", "mql_at: 10"))
    lead = make_lead(session, clock)
    session.commit()
    assert stored(session, lead) == (0, Temperature.COLD)

    lead.job_title = "VP Sales"
    lead.attributes = {"company_size": 50}
    session.commit()
    totals = score_refresh_job(session_factory, clock, ctx)

    assert totals.changed == 1
    assert stored(session, lead)[0] == 14
    assert session.get(Lead, lead.id).stage is Stage.MQL
    assert session.get(LeadScore, lead.id).fit == 14


def test_adjustments_are_engagement_points_in_the_breakdown(session, clock):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    score = adjust_score(session, clock, TemperatureThresholds(), lead, 25, "campaign onboarding, step qualified")
    assert score == 25 and lead.temperature is Temperature.WARM
    [line] = breakdown(session, current_config(session), lead.id, clock.now()).engagement_lines
    assert (line.rule, line.event_type, line.points) == ("campaign onboarding, step qualified", "adjustment", 25)


def test_scoring_cli_load_rules_explain(session, clock, ctx, tracking_app, tmp_path):
    lead = make_lead(session, clock, "cli@example.com", job_title="VP Ops")
    session.commit()
    runner = tracking_app.test_cli_runner()
    path = tmp_path / "scoring.yaml"
    path.write_text(RULES)

    loaded = runner.invoke(scoring_group, ["load", str(path)])
    assert loaded.exit_code == 0, loaded.output
    assert "5 added" in loaded.output
    rules = runner.invoke(scoring_group, ["rules"])
    assert "+2  opens: each opened (at most 10 a day)" in rules.output

    record_event(session, clock, ctx, event(lead, "meeting_booked", clock))
    record_event(session, clock, ctx, event(lead, "opened", clock))
    session.commit()
    explained = runner.invoke(scoring_group, ["explain", "CLI@example.com"])
    assert explained.exit_code == 0, explained.output
    assert "score 74 (fit 8 + engagement 66.0); stored 74" in explained.output
    assert "+8  vp" in explained.output
    assert "meeting  (meeting_booked event" in explained.output

    path.write_text("rules:\n  - {name: x, event: opened, points: 1, cap: {points: 1, per: year}}\n")
    broken = runner.invoke(scoring_group, ["load", str(path)])
    assert broken.exit_code == 2
    assert f"{path}:2:63: rules[0].cap.per: expected one of day, week, month" in broken.output
    assert runner.invoke(scoring_group, ["explain", "nobody@example.com"]).exit_code == 2


# --- concurrency -----------------------------------------------------------------------------------------------


def test_concurrent_events_on_one_lead_lose_no_update_on_postgresql(dialect, tmp_path):
    if dialect != "postgresql":
        pytest.skip("real concurrent writers need PostgreSQL")
    threads_count, per_thread = 8, 40
    with dedicated_database("nurture_scoring") as url:
        engine = make_engine(url, pool_size=threads_count + 2)
        try:
            _hammer(engine, url, tmp_path, threads_count, per_thread)
        finally:
            engine.dispose()


def run_at_once(work: Callable[[int], None], threads_count: int) -> list[BaseException]:
    """Run ``work(n)`` for n in range(threads_count) on threads released together; what they raised."""
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:  # returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _hammer(engine, url, tmp_path, threads_count, per_thread):
    """Threads x events on one lead, each in its own transaction on its own connection."""
    factory = make_session_factory(engine)
    clock = FixedClock(EPOCH)
    settings = engine_settings(Settings(database_url=url, secret_key=TEST_SECRET), tmp_path / "outbox")
    context = make_context(settings)
    with factory() as session:
        load_scoring(session, clock, RULES)
        lead_id = make_lead(session, clock, "busy@example.com").id
        session.commit()
    lead = Lead(id=lead_id)

    def work(n: int) -> None:
        for i in range(per_thread):
            with factory() as session:
                # The bare atomic update first, without the lead lock the events path takes; the
                # event then stores the score of everything committed before it and of this point.
                add_engagement(session, current_config(session).settings, lead_id, 1.0, clock.now())
                kind = "opened" if i % 4 == 0 else "meeting_booked"
                record_event(session, clock, context, event(lead, kind, clock))
                session.commit()

    assert run_at_once(work, threads_count) == []
    total = threads_count * per_thread
    meetings = total - total // 4
    with factory() as session:
        count = session.scalar(
            select(func.count()).select_from(EngagementEvent).where(EngagementEvent.lead_id == lead_id)
        )
        engagement = session.get(LeadScore, lead_id).engagement
        score = session.get(Lead, lead_id).score
    assert count == total
    assert math.isclose(engagement, meetings * 64 + 10 + total, abs_tol=1e-6)  # opens capped at 10 a day
    assert score == meetings * 64 + 10 + total
