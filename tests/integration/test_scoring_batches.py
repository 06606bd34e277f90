"""The events of one batch (``record_events``, a worker pass) score exactly as the same events applied one at a
time: caps count them in order, each event's score decides its promotions, soft bounces make a streak, and
several leads' batches on concurrent connections lose no update on PostgreSQL."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.clock import FixedClock
from nurture.config import Settings
from nurture.db import make_engine, make_session_factory
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Lead, StageChange
from nurture.scoring.models import LeadScore
from nurture.scoring.points import breakdown
from nurture.scoring.store import current_config
from nurture.tracking.events import NewEvent, random_key, record_event, record_events
from nurture.tracking.models import EngagementEvent, EventSource
from tests.acceptance.database import dedicated_database
from tests.acceptance.engine_support import engine_settings, make_context
from tests.conftest import EPOCH, TEST_SECRET
from tests.integration.test_scoring import run_at_once
from tests.integration.test_tracking_support import load_scoring, make_lead

pytest_plugins = ["tests.integration.test_tracking_support"]

RULES = """half_life_days: 30
lifecycle: {mql_at: 60, sql_at: 100}
rules:
  - {name: meeting, event: meeting_booked, points: 64}
  - {name: opens, event: opened, points: 2, cap: {points: 10, per: day}}
  - {name: clicks, event: clicked, points: 3, cap: {points: 7, per: week}}
  - {name: spam, event: complained, points: -50}
  - {name: vp, fit: {field: job_title, op: contains, value: VP}, points: 8}
"""


def new_event(lead_id: int, kind: str, at, **extra) -> NewEvent:
    return NewEvent(
        lead_id=lead_id, type=kind, occurred_at=at, source=EventSource.API, dedupe_key=random_key("t"), **extra
    )


def explained(session, lead_id, now):
    result = breakdown(session, current_config(session), lead_id, now)
    lines = [(line.rule, line.points, line.note, round(line.worth_now, 9)) for line in result.engagement_lines]
    return result.score, round(result.engagement, 9), result.fit, sorted(lines, key=str)


def history(session, lead_id):
    return [
        (change.to_stage, change.reason.split(" (")[0])
        for change in session.scalars(
            select(StageChange).where(StageChange.lead_id == lead_id, StageChange.from_stage.is_not(None))
        )
    ]


def test_a_batch_scores_as_its_events_one_at_a_time(session, clock, ctx):
    load_scoring(session, clock, RULES)
    one_by_one = make_lead(session, clock, "one@example.com", job_title="VP Ops")
    batched = make_lead(session, clock, "batch@example.com", job_title="VP Ops")
    other = make_lead(session, clock, "other@example.com")
    now = clock.now()
    # Opens over two days (the cap is per day), clicks (per week), a meeting that crosses mql, a complaint that
    # drops the score below it again and a meeting that crosses sql; some stamped in the past (decay), one in
    # the future.
    plan = [("opened", now - timedelta(days=1, hours=2))] * 6 + [("opened", now - timedelta(hours=1))] * 7
    plan += [("clicked", now - timedelta(days=2)), ("clicked", now), ("clicked", now), ("meeting_booked", now)]
    plan += [("complained", now), ("opened", now + timedelta(minutes=5)), ("meeting_booked", now)]
    for kind, at in plan:
        record_event(session, clock, ctx, new_event(one_by_one.id, kind, at))
    # The batch also holds another lead's events, interleaved.
    mixed = []
    for kind, at in plan:
        mixed += [new_event(batched.id, kind, at), new_event(other.id, "opened", at)]
    record_events(session, clock, ctx, mixed)
    session.commit()

    assert explained(session, batched.id, now) == explained(session, one_by_one.id, now)
    assert "capped: 10 points a day" in [line[2] for line in explained(session, batched.id, now)[3]]
    assert history(session, batched.id) == history(session, one_by_one.id)
    assert [stage for stage, _ in history(session, batched.id)] == [Stage.MQL, Stage.SQL]
    first_meeting = session.scalars(
        select(EngagementEvent.id)
        .where(EngagementEvent.lead_id == batched.id, EngagementEvent.type == "meeting_booked")
        .order_by(EngagementEvent.id)
    ).first()
    mql_reason = session.scalar(
        select(StageChange.reason).where(StageChange.lead_id == batched.id, StageChange.to_stage == Stage.MQL)
    )
    assert mql_reason.endswith(f"(meeting_booked event {first_meeting})")
    session.expire_all()
    first, second = session.get(Lead, one_by_one.id), session.get(Lead, batched.id)
    assert (second.score, second.temperature, second.last_engaged_at) == (
        first.score,
        first.temperature,
        first.last_engaged_at,
    )
    assert math.isclose(session.get(LeadScore, batched.id).engagement, session.get(LeadScore, one_by_one.id).engagement)


def test_soft_bounces_of_one_batch_make_a_streak(session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make_lead(session, clock)
    bounces = [
        new_event(lead.id, "bounced", clock.now() + timedelta(minutes=n), properties={"bounce": "soft"})
        for n in range(3)
    ]
    ids = record_events(session, clock, ctx, bounces)
    session.commit()
    session.expire_all()
    assert session.get(Lead, lead.id).status is LeadStatus.BOUNCED
    last = session.get(EngagementEvent, ids[-1])
    assert last.properties["note"] == "3 soft bounces in a row"
    assert session.get(EngagementEvent, ids[0]).properties == {"bounce": "soft"}
    assert all(session.get(EngagementEvent, event_id).processed_at is not None for event_id in ids)


def test_concurrent_batches_on_the_same_leads_lose_no_update_on_postgresql(dialect, tmp_path):
    if dialect != "postgresql":
        pytest.skip("real concurrent writers need PostgreSQL")
    threads_count, batches, per_batch = 6, 10, 8
    with dedicated_database("nurture_scoring_batches") as url:
        engine = make_engine(url, pool_size=threads_count + 2)
        try:
            factory = make_session_factory(engine)
            clock = FixedClock(EPOCH)
            settings = engine_settings(Settings(database_url=url, secret_key=TEST_SECRET), tmp_path / "outbox")
            context = make_context(settings)
            with factory() as session:
                load_scoring(session, clock, RULES.replace("mql_at: 60, sql_at: 100", "mql_at: null, sql_at: null"))
                lead_ids = [make_lead(session, clock, f"busy{n}@example.com").id for n in range(3)]
                session.commit()

            def work(n: int) -> None:
                for batch in range(batches):
                    # Each batch touches the leads in a different order; the lock order is the ids'.
                    order = lead_ids[(n + batch) % 3 :] + lead_ids[: (n + batch) % 3]
                    events = [
                        new_event(order[i % 3], "opened" if i % 4 == 0 else "meeting_booked", clock.now())
                        for i in range(per_batch)
                    ]
                    with factory() as session:
                        record_events(session, clock, context, events)
                        session.commit()

            assert run_at_once(work, threads_count) == []
            with factory() as session:
                meetings = {lead_id: 0 for lead_id in lead_ids}
                opens = {lead_id: 0 for lead_id in lead_ids}
                for n in range(threads_count):
                    for batch in range(batches):
                        order = lead_ids[(n + batch) % 3 :] + lead_ids[: (n + batch) % 3]
                        for i in range(per_batch):
                            (opens if i % 4 == 0 else meetings)[order[i % 3]] += 1
                for lead_id in lead_ids:
                    expected = meetings[lead_id] * 64 + min(opens[lead_id] * 2, 10)
                    assert math.isclose(session.get(LeadScore, lead_id).engagement, expected, abs_tol=1e-6)
                    assert session.get(Lead, lead_id).score == expected
        finally:
            engine.dispose()
