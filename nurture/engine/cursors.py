"""Durable cursors: the last row id an engine job has read from a growing table (activities, stage
changes), so each row is read once however often the job runs, and its cost follows the new rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.engine.models import EngineCursor


def read_cursor(session: Session, name: str, start: int, now: datetime) -> int:
    """The cursor's position; a new cursor starts at ``start``."""
    position = session.scalar(select(EngineCursor.position).where(EngineCursor.name == name))
    if position is not None:
        return position
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(EngineCursor).values(name=name, position=start, updated_at=now).on_conflict_do_nothing()
    )
    stored = session.scalar(select(EngineCursor.position).where(EngineCursor.name == name))
    return start if stored is None else stored


def move_cursor(session: Session, name: str, position: int, now: datetime) -> None:
    """Move forward only: two passes racing leave the furthest position."""
    session.execute(
        update(EngineCursor)
        .where(EngineCursor.name == name, EngineCursor.position < position)
        .values(position=position, updated_at=now)
        .execution_options(synchronize_session=False)
    )
