"""The body of a worker process in the shared-rate-limit test (run with the spawn start method)."""

from __future__ import annotations

from typing import Any

from nurture.clock import SystemClock
from nurture.db import make_engine, make_session_factory
from nurture.delivery.ratelimit import SendRateLimiter


def reserve_slots(database_url: str, backend: str, rate: float, batches: list[int], barrier: Any, out: Any) -> None:
    """Acquire ``batches`` through the shared limiter as fast as it lets us; report every reservation.

    The sleeper only records the waits, so the process never really sleeps: the reservations
    themselves show whether the two processes kept to one schedule."""
    engine = make_engine(database_url)
    waits: list[float] = []
    limiter = SendRateLimiter(make_session_factory(engine), SystemClock(), backend, rate, waits.append)
    barrier.wait(timeout=60)
    reservations = [limiter.acquire(count) for count in batches]
    engine.dispose()
    out.put([(r.first_slot_us, r.last_slot_us, r.count) for r in reservations])
