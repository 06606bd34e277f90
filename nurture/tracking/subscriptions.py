"""What a lead decides about its own email: unsubscribing (one click, or from its pages) and its preferences
(topics it does not want, a pause of some days). Reached through signed links, never through a login."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.engine.context import EngineContext
from nurture.errors import ValidationError
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Lead
from nurture.leads.service import record_activity
from nurture.tracking.events import NewEvent, random_key, record_event
from nurture.tracking.models import EventSource, EventType, LeadPreferences
from nurture.tracking.settings import MAX_PAUSE_DAYS


def unsubscribe(
    session: Session,
    clock: Clock,
    ctx: EngineContext,
    lead_id: int,
    *,
    via: str,
    cause: str | None = None,
    source: EventSource = EventSource.PREFERENCES,
) -> bool:
    """Unsubscribe the lead (suppressed at once, its enrollments ended); False when there was nothing to do
    (no such lead, or already unsubscribed or otherwise suppressed). ``via`` says how (the one-click header, the
    page, a campaign step), ``cause`` why when it was not the lead's own wish (e.g. ``inactive``), ``source``
    who recorded it (the lead's own pages, or the system)."""
    lead = session.get(Lead, lead_id)
    if lead is None or lead.status is not LeadStatus.ACTIVE:
        return False
    event = NewEvent(
        lead_id=lead_id,
        type=EventType.UNSUBSCRIBED.value,
        occurred_at=clock.now(),
        source=source,
        dedupe_key=random_key("unsubscribe"),
        properties={"via": via} if cause is None else {"via": via, "cause": cause},
    )
    return record_event(session, clock, ctx, event) is not None


@dataclass(frozen=True)
class Preferences:
    topics_off: tuple[str, ...]
    paused_until: datetime | None
    subscribed: bool


def get_preferences(session: Session, lead_id: int, now: datetime) -> Preferences | None:
    lead = session.get(Lead, lead_id)
    if lead is None:
        return None
    stored = session.get(LeadPreferences, lead_id)
    paused = stored.paused_until if stored is not None and stored.paused_until and stored.paused_until > now else None
    return Preferences(tuple(stored.topics_off) if stored else (), paused, lead.status is LeadStatus.ACTIVE)


def save_preferences(
    session: Session,
    clock: Clock,
    lead_id: int,
    *,
    topics_off: Sequence[str],
    pause_days: int | None,
    known_topics: Iterable[str],
) -> None:
    """Store the lead's topics and pause (0 days lifts a pause, None keeps it); recorded on its timeline."""
    known = set(known_topics)
    unknown = sorted(set(topics_off) - known)
    if unknown:
        raise ValidationError(f"unknown topic(s): {', '.join(unknown)}", where="topics")
    if pause_days is not None and not 0 <= pause_days <= MAX_PAUSE_DAYS:
        raise ValidationError(f"a pause is 0 to {MAX_PAUSE_DAYS} days", where="pause_days")
    lead = session.get(Lead, lead_id)
    if lead is None:
        return
    now = clock.now()
    stored = session.get(LeadPreferences, lead_id)
    if stored is None:
        stored = LeadPreferences(lead_id=lead_id, topics_off=[], updated_at=now)
        session.add(stored)
    stored.topics_off = sorted(set(topics_off))
    if pause_days is not None:
        stored.paused_until = now + timedelta(days=pause_days) if pause_days else None
    stored.updated_at = now
    record_activity(
        session,
        lead,
        "preferences_updated",
        now,
        {
            "topics_off": stored.topics_off,
            "paused_until": stored.paused_until.isoformat() if stored.paused_until else None,
        },
    )
