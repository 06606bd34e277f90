"""Domain operations on leads. Callers own the session's transaction; nothing here commits.

Whatever the edge (web form, API, CSV, CLI), text that cannot be stored (``nurture.inputs``) is refused here too
with a ``ValidationError`` naming the field: nothing unstorable reaches the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.config import TemperatureThresholds
from nurture.errors import NotFound, ValidationError
from nurture.inputs import check_json, clean_text, unstorable_reason
from nurture.leads.emails import InvalidEmail, email_key, normalise_email
from nurture.leads.lifecycle import Stage, temperature_for
from nurture.leads.models import Activity, ActorKind, Lead, StageChange, Tag

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "job_title",
    "phone",
    "country",
    "timezone",
    "locale",
    "source",
    "owner",
    "consent_basis",
    "consent_source",
    "consent_ip",
)


@dataclass(frozen=True)
class Actor:
    """Who or what caused a change: shown in the stage history and the timeline."""

    kind: ActorKind
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}" if self.name else self.kind.value


def validate_timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {raw!r}; use an IANA name such as Europe/Paris") from None
    return raw


def find_lead(session: Session, email: str) -> Lead | None:
    if unstorable_reason(email) is not None:
        return None  # nothing stored can match it, and the database driver could not send it
    return session.scalar(select(Lead).where(Lead.email_key == email_key(email)))


def get_lead(session: Session, email: str) -> Lead:
    lead = find_lead(session, email)
    if lead is None:
        raise NotFound(f"no lead with email {email.strip()!r}")
    return lead


def create_lead(
    session: Session,
    clock: Clock,
    email: str,
    *,
    actor: Actor,
    stage: Stage = Stage.SUBSCRIBER,
    tags: Iterable[str] = (),
    attributes: dict[str, Any] | None = None,
    **profile: str | None,
) -> Lead:
    """Create one lead, recording its entry stage and a 'created' activity."""
    clean_text(email, "email")
    for name, value in profile.items():
        if value is not None:
            clean_text(value, name)
    check_json(attributes or {}, "attributes")
    try:
        normalised = normalise_email(email)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), where="email") from None
    if find_lead(session, normalised) is not None:
        raise ValidationError(f"a lead with email {normalised!r} already exists", where="email")
    unknown = set(profile) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationError(f"unknown lead field(s): {', '.join(sorted(unknown))}")
    if profile.get("timezone"):
        try:
            validate_timezone(profile["timezone"] or "")
        except ValueError as exc:
            raise ValidationError(str(exc), where="timezone") from None
    now = clock.now()
    lead = Lead(
        email=normalised,
        email_key=email_key(normalised),
        stage=stage,
        stage_entered_at=now,
        attributes=dict(attributes or {}),
        created_at=now,
        updated_at=now,
        **profile,
    )
    lead.tags = ensure_tags(session, tags)
    session.add(lead)
    session.flush()
    session.add(
        StageChange(
            lead_id=lead.id,
            from_stage=None,
            to_stage=stage,
            changed_at=now,
            reason="created",
            actor_kind=actor.kind,
            actor=actor.name,
        )
    )
    record_activity(session, lead, "created", now, {"by": str(actor)})
    return lead


def ensure_tags(session: Session, names: Iterable[str]) -> list[Tag]:
    """The Tag rows for ``names``, creating the missing ones."""
    wanted = sorted({clean_text(name, "tags").strip() for name in names if name and name.strip()})
    if not wanted:
        return []
    existing = {tag.name: tag for tag in session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        if name not in existing:
            if len(name) > 100:
                raise ValidationError(f"tag {name[:20]!r}… is longer than 100 characters", where="tags")
            tag = Tag(name=name)
            session.add(tag)
            existing[name] = tag
    session.flush()
    return [existing[name] for name in wanted]


def add_tag(session: Session, clock: Clock, lead: Lead, name: str, *, actor: Actor) -> bool:
    """Tag ``lead`` with ``name`` (created if new), recorded on the timeline; False when it has it already."""
    cleaned = clean_text(name, "tag").strip()
    if not cleaned:
        raise ValidationError("a tag needs a name", where="tag")
    if cleaned in lead.tag_names:
        return False
    lead.tags = ensure_tags(session, [*lead.tag_names, cleaned])
    now = clock.now()
    lead.updated_at = now
    record_activity(session, lead, "tag_added", now, {"tag": cleaned, "by": str(actor)})
    return True


def remove_tag(session: Session, clock: Clock, lead: Lead, name: str, *, actor: Actor) -> bool:
    """Take tag ``name`` off ``lead``, recorded on the timeline; False when it does not have it."""
    cleaned = name.strip()
    if cleaned not in lead.tag_names:
        return False
    lead.tags = [tag for tag in lead.tags if tag.name != cleaned]
    now = clock.now()
    lead.updated_at = now
    record_activity(session, lead, "tag_removed", now, {"tag": cleaned, "by": str(actor)})
    return True


def change_stage(
    session: Session,
    clock: Clock,
    lead: Lead,
    to: Stage,
    *,
    reason: str,
    actor: Actor,
) -> StageChange | None:
    """Move ``lead`` to stage ``to``: the only way a stage changes.

    Records the move in the stage history and the timeline. Returns ``None`` when the lead is already
    in that stage (nothing is recorded)."""
    clean_text(reason, "reason")
    if lead.stage == to:
        return None
    now = clock.now()
    change = StageChange(
        lead_id=lead.id,
        from_stage=lead.stage,
        to_stage=to,
        changed_at=now,
        reason=reason,
        actor_kind=actor.kind,
        actor=actor.name,
    )
    session.add(change)
    record_activity(
        session,
        lead,
        "stage_changed",
        now,
        {"from": lead.stage.value, "to": to.value, "reason": reason, "by": str(actor)},
    )
    lead.stage = to
    lead.stage_entered_at = now
    lead.updated_at = now
    return change


def set_score(lead: Lead, score: int, thresholds: TemperatureThresholds) -> None:
    """Store a new score; temperature always follows it."""
    lead.score = score
    lead.temperature = temperature_for(score, thresholds)


def record_activity(
    session: Session,
    lead: Lead,
    kind: str,
    at: datetime,
    data: dict[str, Any] | None = None,
    *,
    campaign: str | None = None,
) -> Activity:
    activity = Activity(lead_id=lead.id, kind=kind, occurred_at=at, data=data, campaign=campaign)
    session.add(activity)
    return activity


def timeline(session: Session, lead: Lead, limit: int = 50, offset: int = 0) -> list[Activity]:
    """The lead's activities, newest first: ``limit`` of them after skipping ``offset``."""
    return list(
        session.scalars(
            select(Activity)
            .where(Activity.lead_id == lead.id)
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )


def stage_history(session: Session, lead: Lead) -> list[StageChange]:
    return list(
        session.scalars(
            select(StageChange)
            .where(StageChange.lead_id == lead.id)
            .order_by(StageChange.changed_at, StageChange.id)
        )
    )
