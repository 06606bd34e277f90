"""The segments every installation starts with. Their slugs are stable: campaigns may refer to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.segments.models import Segment
from nurture.segments.service import create_segment

# Suppressed leads (unsubscribed, bounced, complained, erased) must never be mailed, so every
# built-in segment meant for sending starts with this condition.
ACTIVE: dict[str, Any] = {"field": "status", "op": "=", "value": "active"}


@dataclass(frozen=True)
class BuiltinSegment:
    slug: str
    name: str
    description: str
    rules: dict[str, Any]


BUILTIN_SEGMENTS: tuple[BuiltinSegment, ...] = (
    BuiltinSegment(
        "active",
        "All active leads",
        "Every lead that may be emailed: not unsubscribed, bounced, complained or erased.",
        {"all": [ACTIVE]},
    ),
    BuiltinSegment(
        "hot-leads",
        "Hot leads",
        "Active leads whose score has made them hot.",
        {"all": [ACTIVE, {"field": "temperature", "op": "=", "value": "hot"}]},
    ),
    BuiltinSegment(
        "mql-not-sql",
        "MQL, not yet SQL",
        "Active marketing-qualified leads that sales has not accepted yet.",
        {"all": [ACTIVE, {"field": "stage", "op": "=", "value": "mql"}]},
    ),
    BuiltinSegment(
        "lost-opportunities",
        "Lost opportunities",
        "Active leads closed as lost: a pool to win back.",
        {"all": [ACTIVE, {"field": "stage", "op": "=", "value": "lost"}]},
    ),
    BuiltinSegment(
        "inactive-90-days",
        "Inactive for 90 days",
        "Active leads known for at least 90 days who have not opened or clicked anything in that time.",
        {
            "all": [
                ACTIVE,
                # A lead added last week has had no chance to engage yet; it is new, not inactive.
                {"field": "created_at", "op": "<=", "value": {"days_ago": 90}},
                {"no_event": "opened", "within_days": 90},
                {"no_event": "clicked", "within_days": 90},
            ]
        },
    ),
)


def ensure_builtin_segments(session: Session, clock: Clock) -> None:
    """Create the built-in segments that are missing; existing ones, edited or not, are left alone."""
    existing = set(session.scalars(select(Segment.slug)))
    for builtin in BUILTIN_SEGMENTS:
        if builtin.slug not in existing:
            create_segment(
                session, clock, builtin.slug, builtin.name, builtin.rules, builtin.description, builtin=True
            )
