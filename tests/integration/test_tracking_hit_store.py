"""``PostgresHitStore``, the hits' production path on PostgreSQL, on a committed database of its own: what it
stores and answers, its connections' settings, and hits from many threads at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from nurture.clock import SystemClock
from nurture.db import make_engine, make_session_factory
from nurture.tracking.events import Hit, PostgresHitStore
from nurture.tracking.models import EventType
from tests.acceptance.database import dedicated_database
from tests.integration.test_scoring import run_at_once
from tests.integration.test_tracking_support import LINKS, events_of, make_lead, make_message

RAW = {"method": "GET", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "ip": "203.0.113.9"}


@pytest.fixture
def database(dialect):
    if dialect != "postgresql":
        pytest.skip("the hit store is PostgreSQL's")
    with dedicated_database("nurture_hit_store") as url:
        engine = make_engine(url)
        store = PostgresHitStore(url)
        try:
            yield engine, store
        finally:
            store.close()
            engine.dispose()


def _message(engine, email: str, links: list[str]) -> tuple[int, int]:
    with make_session_factory(engine)() as session:
        lead = make_lead(session, SystemClock(), email)
        message = make_message(session, SystemClock(), lead, links=links)
        session.commit()
        return lead.id, message.id


def test_what_the_store_answers_and_stores(database):
    engine, store = database
    lead_id, message_id = _message(engine, "store@example.com", [*LINKS, "javascript:alert(1)"])
    now = SystemClock().now()

    assert store.store(now, Hit(EventType.OPENED, message_id, None, None, RAW)) == (True, None)
    assert store.store(now, Hit(EventType.CLICKED, message_id, 1, "HTTP library", RAW)) == (True, LINKS[1])
    # No such link, a link that is not http(s), no such message: nothing stored, nothing to follow.
    assert store.store(now, Hit(EventType.CLICKED, message_id, 7, None, RAW)) == (False, None)
    assert store.store(now, Hit(EventType.CLICKED, message_id, 3, None, RAW)) == (False, None)
    assert store.store(now, Hit(EventType.OPENED, message_id + 1000, None, None, RAW)) == (False, None)

    with make_session_factory(engine)() as session:
        events = events_of(session, lead_id)
    assert [(e.type, e.url, e.machine, e.machine_reason) for e in events] == [
        ("opened", None, False, None),
        ("clicked", LINKS[1], True, "HTTP library"),
    ]
    assert all(e.message_id == message_id and e.campaign == "welcome" and e.processed_at is None for e in events)
    assert events[0].raw == RAW
    assert abs(events[0].occurred_at - now) < timedelta(seconds=1)
    assert events[0].dedupe_key != events[1].dedupe_key


def test_its_connections_are_autocommit_without_waiting_for_the_wal(database):
    engine, store = database
    _lead_id, message_id = _message(engine, "settings@example.com", LINKS)
    store.store(SystemClock().now(), Hit(EventType.OPENED, message_id, None, None, RAW))
    with engine.connect() as connection:
        [(state,)] = connection.execute(
            text("SELECT state FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name"),
            {"name": PostgresHitStore.APPLICATION_NAME},
        ).all()
    assert state == "idle"  # not "idle in transaction": the statement was its whole transaction
    [connection] = list(store._idle)
    assert connection.execute("SHOW synchronous_commit").fetchone() == ("off",)


def test_hits_from_many_threads_at_once_are_all_stored(database):
    engine, store = database
    lead_id, message_id = _message(engine, "threads@example.com", LINKS)
    answers: list[tuple[bool, str | None]] = []

    def click(_thread: int) -> None:
        for _ in range(25):
            answers.append(store.store(SystemClock().now(), Hit(EventType.CLICKED, message_id, 0, None, RAW)))

    assert run_at_once(click, 8) == []
    assert answers == [(True, LINKS[0])] * 200
    with make_session_factory(engine)() as session:
        assert len(events_of(session, lead_id)) == 200
    assert len(store._idle) <= 8
