"""The send rate of a backend, shared by every worker process through the database.

Each backend has one row holding its next free send slot. Reserving ``n`` messages is a single
``UPDATE ... RETURNING`` that moves the slot forward by ``n / rate`` seconds from
``max(now, next slot)``: PostgreSQL serialises concurrent updates of the row, SQLite has a single
writer, so two processes can never receive overlapping slots. Message ``k`` of all reservations
gets slot ``t0 + k / rate``; a reservation is sent once its last slot has come, so no process ever
gets ahead of the shared schedule. Waiting goes through an injected sleeper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from nurture.clock import Clock
from nurture.delivery.mailer import Sleeper
from nurture.delivery.models import SendRateSlot

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Reservation:
    count: int
    # Slot of the first and of the last message, microseconds since the epoch.
    first_slot_us: int
    last_slot_us: int

    @property
    def send_at(self) -> datetime:
        """When the whole reservation may go: its last message's slot."""
        return from_micros(self.last_slot_us)


def _interval_us(rate: float) -> float:
    return 1_000_000 / rate


def reserve_send_slots(session: Session, backend: str, count: int, rate: float, now: datetime) -> Reservation:
    """Reserve ``count`` consecutive slots of ``backend``. The caller commits, and should do so at
    once: the row stays locked until then."""
    if count < 1:
        raise ValueError("reserve at least one slot")
    interval = _interval_us(rate)
    cost = round(count * interval)
    now_us = to_micros(now)
    table = SendRateSlot.__table__
    column = table.c.next_slot_us
    advance = (
        update(table)
        .where(table.c.backend == backend)
        .values(next_slot_us=case((column > now_us, column), else_=now_us) + cost)
        .returning(column)
    )
    end = session.execute(advance).scalar_one_or_none()
    if end is None:
        _create_row(session, backend, now_us)
        end = session.execute(advance).scalar_one()
    first = end - cost
    return Reservation(count=count, first_slot_us=first, last_slot_us=first + round((count - 1) * interval))


def _create_row(session: Session, backend: str, now_us: int) -> None:
    """Insert the backend's row unless a concurrent process just did."""
    values = {"backend": backend, "next_slot_us": now_us}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(SendRateSlot).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(SendRateSlot).values(values).on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        session.execute(insert(SendRateSlot).values(values))


class SendRateLimiter:
    """Paces one backend's sends at ``rate`` messages per second across processes."""

    def __init__(
        self, session_factory: sessionmaker[Session], clock: Clock, backend: str, rate: float, sleeper: Sleeper
    ) -> None:
        if rate <= 0:
            raise ValueError("send rate must be positive")
        self._session_factory = session_factory
        self._clock = clock
        self.backend = backend
        self.rate = rate
        self._sleeper = sleeper

    def reserve(self, count: int) -> Reservation:
        with self._session_factory() as session:
            reservation = reserve_send_slots(session, self.backend, count, self.rate, self._clock.now())
            session.commit()
        return reservation

    def acquire(self, count: int) -> Reservation:
        """Reserve ``count`` slots and wait until the last of them has come."""
        reservation = self.reserve(count)
        wait = (reservation.send_at - self._clock.now()).total_seconds()
        if wait > 0:
            self._sleeper(wait)
        return reservation
