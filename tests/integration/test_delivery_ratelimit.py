"""The send rate is shared by every worker process: two real processes, one schedule."""

import itertools
import multiprocessing
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete

from nurture.delivery.models import SendRateSlot
from nurture.delivery.ratelimit import SendRateLimiter, from_micros, reserve_send_slots, to_micros
from tests.support.ratelimit_worker import reserve_slots


def test_reservations_follow_one_schedule_and_the_limiter_waits_for_its_slot(session_factory, clock):
    waits = []
    limiter = SendRateLimiter(session_factory, clock, "pacing", rate=2, sleeper=waits.append)
    first = limiter.acquire(1)
    second = limiter.acquire(1)
    third = limiter.acquire(3)
    assert from_micros(first.first_slot_us) == clock.now()
    assert second.first_slot_us - first.first_slot_us == 500_000
    # Three messages take the slots at 1.0, 1.5 and 2.0 s; the batch goes when its last slot comes.
    assert (third.first_slot_us, third.last_slot_us) == (first.first_slot_us + 1_000_000, first.first_slot_us
                                                           + 2_000_000)
    assert waits == [0.5, 2.0]


def test_an_idle_backend_does_not_bank_slots(session_factory, clock):
    limiter = SendRateLimiter(session_factory, clock, "idle", rate=10, sleeper=pytest.fail)
    limiter.acquire(1)
    clock.advance(timedelta(hours=1))
    # After an hour of silence the next slot is now, not an hour's worth of burst.
    assert from_micros(limiter.acquire(1).first_slot_us) == clock.now()
    with session_factory() as session:
        follow_up = reserve_send_slots(session, "idle", 1, 10, clock.now())
    assert follow_up.first_slot_us == to_micros(clock.now()) + 100_000


def test_rate_must_be_positive(session_factory, clock):
    with pytest.raises(ValueError, match="positive"):
        SendRateLimiter(session_factory, clock, "x", rate=0, sleeper=pytest.fail)


def test_two_processes_share_one_send_rate(engine, database_url):
    """Each process reserves as fast as the database lets it. Together their slots must still be
    spaced 1/rate apart: never two messages in one slot, never more than ``rate`` in a second."""
    rate = 50.0
    interval_us = 20_000
    backend = f"two-processes-{uuid.uuid4().hex[:8]}"
    batches = [1, 2, 3, 1, 5] * 16
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    out = context.Queue()
    workers = [
        context.Process(target=reserve_slots, args=(database_url, backend, rate, batches, barrier, out))
        for _ in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        results = [out.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
        with engine.begin() as connection:
            connection.execute(delete(SendRateSlot).where(SendRateSlot.backend == backend))

    reservations = sorted(
        (first, last, count, process) for process, result in enumerate(results) for first, last, count in result
    )
    assert len(reservations) == 2 * len(batches)
    for (first, last, count, _), (next_first, *_rest) in itertools.pairwise(reservations):
        assert last == first + (count - 1) * interval_us
        # The next reservation starts no earlier than the slot after this one's last message.
        assert next_first >= first + count * interval_us
    slots = sorted(first + k * interval_us for first, _, count, _ in reservations for k in range(count))
    assert len(slots) == 2 * sum(batches)
    # Sliding one-second windows: never more than `rate` slots in any of them.
    start = 0
    for end, slot in enumerate(slots):
        while slot - slots[start] >= 1_000_000:
            start += 1
        assert end - start + 1 <= rate
    # The processes really competed: their reservations interleave on the shared schedule.
    owners = [process for *_, process in reservations]
    assert sum(1 for a, b in itertools.pairwise(owners) if a != b) > 1
