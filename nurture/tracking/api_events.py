"""Events sent by other systems (a website, a CRM) through ``POST /api/v1/events``: checked item by item,
the good ones recorded even when a neighbour is bad.

An item is ``{"email", "type", "properties", "occurred_at", "id"}``: ``email`` and ``type`` required;
``properties`` an object (``deal_lost`` needs a ``reason``); ``occurred_at`` an ISO 8601 instant with its
offset (default: now; at most 5 minutes ahead); ``id`` an optional idempotency key (the same id is recorded
once). Email delivery events (delivered, opened, clicked, bounced, complained) come from email tracking
and are refused here. An unknown email creates a lead (source ``api``) unless ``NURTURE_API_CREATE_LEADS``
is false, in which case that item is refused: the API is authenticated, so saying so leaks nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.engine.context import EngineContext
from nurture.errors import ValidationError
from nurture.leads.emails import InvalidEmail, normalise_email
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead, find_lead
from nurture.scoring.config import EVENT_NAME
from nurture.tracking.events import DEAL_LOST, NewEvent, random_key, record_events
from nurture.tracking.models import EventSource, EventType

MAX_ITEMS = 1000
MAX_PROPERTIES_BYTES = 8192
MAX_ID_CHARS = 150
MAX_REASON_CHARS = 500
FUTURE_SKEW = timedelta(minutes=5)
_FIELDS = frozenset({"email", "type", "properties", "occurred_at", "id"})
# Recorded from email tracking and provider webhooks, with the message they are about.
_EMAIL_EVENTS = frozenset(
    {
        EventType.DELIVERED.value,
        EventType.OPENED.value,
        EventType.CLICKED.value,
        EventType.BOUNCED.value,
        EventType.COMPLAINED.value,
    }
)


@dataclass(frozen=True)
class ItemError:
    index: int | None
    field: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class ItemResult:
    index: int
    status: str  # recorded, duplicate or invalid
    event_id: int | None = None
    lead_created: bool = False
    errors: list[ItemError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.event_id is not None:
            result["event_id"] = self.event_id
        if self.lead_created:
            result["lead_created"] = True
        if self.errors:
            result["errors"] = [error.as_json() for error in self.errors]
        return result


@dataclass(frozen=True)
class _Checked:
    email: str
    type: str
    properties: dict[str, Any]
    occurred_at: datetime
    id: str | None


def items_of(body: Any) -> list[Any]:
    """The items of a request body (one object or a list of them); ValidationError for anything else."""
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        if not body:
            raise ValidationError("expected at least one event", where="body")
        if len(body) > MAX_ITEMS:
            raise ValidationError(f"at most {MAX_ITEMS} events per request (got {len(body)})", where="body")
        return body
    raise ValidationError("expected an event object or a list of event objects", where="body")


def _check(index: int, item: Any, now: datetime) -> _Checked | list[ItemError]:
    if not isinstance(item, dict):
        return [ItemError(index, "item", "expected an object with email and type")]
    errors = [
        ItemError(index, key, "unknown field; expected email, type, properties, occurred_at, id")
        for key in sorted(set(item) - _FIELDS)
    ]
    email = item.get("email")
    normalised = ""
    if not isinstance(email, str):
        errors.append(ItemError(index, "email", "required: the lead's email address"))
    else:
        try:
            normalised = normalise_email(email)
        except InvalidEmail as exc:
            errors.append(ItemError(index, "email", str(exc)))
    kind = item.get("type")
    if not isinstance(kind, str) or not EVENT_NAME.match(kind):
        errors.append(
            ItemError(
                index, "type", "required: an event name of lowercase letters, digits, _ . : - such as form_submitted"
            )
        )
    elif kind in _EMAIL_EVENTS:
        errors.append(ItemError(index, "type", f"{kind} events come from email tracking, not from the API"))
    properties = item.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        errors.append(ItemError(index, "properties", "expected an object"))
        properties = {}
    elif len(json.dumps(properties, default=str)) > MAX_PROPERTIES_BYTES:
        errors.append(ItemError(index, "properties", f"larger than {MAX_PROPERTIES_BYTES} bytes of JSON"))
    if kind == DEAL_LOST:
        reason = properties.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
            errors.append(
                ItemError(
                    index, "properties.reason", f"deal_lost needs a reason: text of 1 to {MAX_REASON_CHARS} characters"
                )
            )
    occurred_at = now
    raw_at = item.get("occurred_at")
    if raw_at is not None:
        parsed = _instant(raw_at)
        if isinstance(parsed, str):
            errors.append(ItemError(index, "occurred_at", parsed))
        elif parsed > now + FUTURE_SKEW:
            errors.append(ItemError(index, "occurred_at", "is in the future"))
        else:
            occurred_at = parsed
    event_id = item.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_CHARS):
        errors.append(ItemError(index, "id", f"expected text of 1 to {MAX_ID_CHARS} characters"))
    if errors:
        return errors
    assert isinstance(kind, str)
    return _Checked(normalised, kind, properties, occurred_at, event_id)


_INSTANT_HINT = "expected an ISO 8601 instant with its offset, such as 2026-01-15T10:00:00Z"


def _instant(raw: Any) -> datetime | str:
    """The instant ``raw`` names, in UTC, or why it names none."""
    if not isinstance(raw, str):
        return _INSTANT_HINT
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return _INSTANT_HINT
    if parsed.tzinfo is None:
        return _INSTANT_HINT
    try:
        # 0001-01-01T00:00:00+14:00 is a valid spelling of an instant before year 1 in UTC.
        return parsed.astimezone(UTC)
    except OverflowError:
        return "out of range: the instant must fall within the years 1 to 9999 in UTC"


def record_api_events(
    session: Session, clock: Clock, ctx: EngineContext, items: Sequence[Any], *, key_name: str, create_leads: bool
) -> list[ItemResult]:
    """Check every item, record the good ones (in the caller's transaction), and say what became of each."""
    now = clock.now()
    results: list[ItemResult] = []
    events: list[tuple[ItemResult, NewEvent]] = []
    leads: dict[str, Lead] = {}
    actor = Actor(ActorKind.API, key_name)
    for index, item in enumerate(items):
        checked = _check(index, item, now)
        if isinstance(checked, list):
            results.append(ItemResult(index, "invalid", errors=checked))
            continue
        result = ItemResult(index, "recorded")
        lead = leads.get(checked.email) or find_lead(session, checked.email)
        if lead is None:
            if not create_leads:
                result.status = "invalid"
                result.errors.append(ItemError(index, "email", "no lead has this email"))
                results.append(result)
                continue
            lead = create_lead(session, clock, checked.email, actor=actor, source="api")
            result.lead_created = True
        leads[checked.email] = lead
        key = f"api:{key_name}:{checked.id}" if checked.id else random_key("api")
        events.append(
            (
                result,
                NewEvent(
                    lead_id=lead.id,
                    type=checked.type,
                    occurred_at=checked.occurred_at,
                    source=EventSource.API,
                    dedupe_key=key[:200],
                    properties=checked.properties,
                    raw=dict(item),
                ),
            )
        )
        results.append(result)
    ids = record_events(session, clock, ctx, [event for _, event in events])
    for (result, _event), event_id in zip(events, ids, strict=True):
        if event_id is None:
            result.status = "duplicate"
        else:
            result.event_id = event_id
    return results
