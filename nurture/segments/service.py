"""TEMPORARY: replaced by the segments work (rules, compiler, CRUD). Keeps the home page importable."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.segments.models import Segment


@dataclass(frozen=True)
class SegmentCount:
    segment: Segment
    count: int | None
    error: str | None = None


def list_segments_with_counts(session: Session, clock: Clock) -> list[SegmentCount]:
    return [SegmentCount(s, None, "not computed yet") for s in session.scalars(select(Segment))]
