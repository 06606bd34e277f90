"""Segments: named rule trees, stored as JSON and evaluated live as one query each time they are used.

Callers own the session's transaction; nothing here commits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.errors import NotFound, NurtureError, ValidationError
from nurture.leads.models import Lead
from nurture.segments.compiler import compile_rules
from nurture.segments.models import Segment
from nurture.segments.rules import RuleNode, parse_rules, rules_to_data

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG_LENGTH = 100
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class SegmentCount:
    segment: Segment
    count: int | None
    error: str | None = None


def validate_slug(slug: str) -> str:
    cleaned = slug.strip()
    if not SLUG_PATTERN.match(cleaned) or len(cleaned) > MAX_SLUG_LENGTH:
        raise ValidationError(
            f"{slug!r} is not a valid slug: use lowercase letters, digits and single hyphens, such as 'hot-leads' "
            f"(at most {MAX_SLUG_LENGTH} characters)",
            where="slug",
        )
    return cleaned


def _validate_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationError("a segment needs a name", where="name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationError(f"longer than {MAX_NAME_LENGTH} characters", where="name")
    return cleaned


def find_segment(session: Session, slug: str) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.slug == slug.strip()))


def get_segment(session: Session, slug: str) -> Segment:
    segment = find_segment(session, slug)
    if segment is None:
        raise NotFound(f"no segment with slug {slug.strip()!r}")
    return segment


def list_segments(session: Session) -> list[Segment]:
    """Built-in segments first, then the others by name."""
    return list(session.scalars(select(Segment).order_by(Segment.builtin.desc(), Segment.name, Segment.slug)))


def create_segment(
    session: Session,
    clock: Clock,
    slug: str,
    name: str,
    rules: Any,
    description: str = "",
    *,
    builtin: bool = False,
) -> Segment:
    """Store a new segment; ``rules`` may be rule data, its JSON text or a parsed tree."""
    slug = validate_slug(slug)
    name = _validate_name(name)
    node = _as_node(rules)
    if find_segment(session, slug) is not None:
        raise ValidationError(f"a segment with slug {slug!r} already exists", where="slug")
    now = clock.now()
    segment = Segment(
        slug=slug,
        name=name,
        description=description.strip(),
        rules=rules_to_data(node),
        builtin=builtin,
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    session.flush()
    return segment


def update_segment(
    session: Session,
    clock: Clock,
    slug: str,
    *,
    name: str | None = None,
    rules: Any = None,
    description: str | None = None,
) -> Segment:
    """Change what is given and leave the rest; everything is validated before anything changes."""
    segment = get_segment(session, slug)
    new_name = _validate_name(name) if name is not None else segment.name
    new_rules = rules_to_data(_as_node(rules)) if rules is not None else segment.rules
    segment.name = new_name
    segment.rules = new_rules
    if description is not None:
        segment.description = description.strip()
    segment.updated_at = clock.now()
    session.flush()
    return segment


def segment_rules(segment_or_rules: Segment | RuleNode | Any) -> RuleNode:
    """The parsed tree of a segment, a tree, or raw rule data.

    A stored segment whose rules no longer parse reports the segment's slug before the rule path."""
    if isinstance(segment_or_rules, Segment):
        try:
            return parse_rules(segment_or_rules.rules)
        except ValidationError as exc:
            where = f"segment {segment_or_rules.slug!r}" + (f" {exc.where}" if exc.where else "")
            raise ValidationError(exc.message, where=where) from None
    return _as_node(segment_or_rules)


def _as_node(rules: Any) -> RuleNode:
    if isinstance(rules, RuleNode):
        return rules
    return parse_rules(rules)


def segment_query(session: Session, clock: Clock, segment_or_rules: Segment | RuleNode | Any) -> Select[tuple[Lead]]:
    """The leads matching now, oldest first; add ``.limit()`` or ``.order_by(None)`` as needed."""
    return select(Lead).where(compile_rules(segment_rules(segment_or_rules), clock.now())).order_by(Lead.id)


def count_segment(session: Session, clock: Clock, segment_or_rules: Segment | RuleNode | Any) -> int:
    condition = compile_rules(segment_rules(segment_or_rules), clock.now())
    return session.scalar(select(func.count()).select_from(Lead).where(condition)) or 0


def list_segments_with_counts(session: Session, clock: Clock) -> list[SegmentCount]:
    """Every segment with its live count; a segment whose rules are broken shows the error, not a crash."""
    results = []
    for segment in list_segments(session):
        try:
            results.append(SegmentCount(segment, count_segment(session, clock, segment)))
        except NurtureError as exc:
            results.append(SegmentCount(segment, None, str(exc)))
    return results
