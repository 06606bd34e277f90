"""SendGrid's Event Webhook: verify a request, store its events raw, and map them to engagement events later.

The endpoint answers quickly: it checks the ECDSA signature (``sendgrid.helpers.eventwebhook.EventWebhook``
over the timestamp header followed by the raw body), refuses timestamps more than five minutes from the
injected clock, and stores each event once (keyed by ``sg_event_id``; SendGrid retries deliveries). The
worker's ``process_pending_events`` then maps each stored event to our message through the custom argument
the SendGrid backend puts on every message (``nurture_message_id``) and records the engagement event.

Mapping: delivered -> delivered; bounce -> bounced (hard, or soft when SendGrid says ``blocked`` or the
status is 4.x.x); blocked -> bounced (soft); dropped for a bounced, spam-reporting or unsubscribed address
-> bounced / complained / unsubscribed; open -> opened; click -> clicked; spamreport -> complained;
unsubscribe and group_unsubscribe -> unsubscribed. processed, deferred, other drops and group_resubscribe
are kept with an outcome and change nothing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.delivery.models import Message
from nurture.delivery.outgoing import MESSAGE_ID_ARG
from nurture.errors import NurtureError, ValidationError
from nurture.inputs import load_json
from nurture.leads.emails import email_key
from nurture.tracking.events import HARD, SOFT, NewEvent, insert_events
from nurture.tracking.machine import classify_request
from nurture.tracking.models import EventSource, EventType, ProviderEvent

PROVIDER = "sendgrid"
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
MAX_SKEW = timedelta(minutes=5)
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_EVENTS = 10_000
_DROPPED = {
    "Bounced Address": (EventType.BOUNCED, {"bounce": HARD}),
    "Spam Reporting Address": (EventType.COMPLAINED, {}),
    "Unsubscribed Address": (EventType.UNSUBSCRIBED, {}),
}
_DETAILS = ("reason", "status", "type", "bounce_classification", "response", "attempt", "asm_group_id")


class WebhookRejected(NurtureError):
    """A request that is not from SendGrid, or not well formed; ``status`` is the HTTP answer and ``field``
    what it is about (the signature, the body, or the JSON path of a bad value in it)."""

    def __init__(self, message: str, status: int = 401, field: str = "signature") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class SignatureVerifier:
    """Checks requests with the public key SendGrid shows for the Event Webhook (base64 DER)."""

    def __init__(self, public_key: str) -> None:
        self._webhook = EventWebhook(public_key)

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: datetime) -> None:
        if not signature or not timestamp:
            raise WebhookRejected("unsigned request: the signature and timestamp headers are required")
        try:
            signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise WebhookRejected("the timestamp header is not a Unix time") from None
        if abs(now - signed_at) > MAX_SKEW:
            raise WebhookRejected("stale request: the timestamp is more than 5 minutes from now")
        try:
            payload = body.decode("utf-8")
            base64.b64decode(signature, validate=True)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            raise WebhookRejected("the signature does not match the request") from None
        try:
            valid = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise WebhookRejected("the signature does not match the request")


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The events of a verified body: strict JSON that can be stored as it is (``load_json``: no NUL or lone
    surrogate, no NaN, integers within 64 bits, nested at most ``MAX_JSON_DEPTH``), an array of objects."""
    try:
        data = load_json(body, "body")
    except ValidationError as exc:
        raise WebhookRejected(exc.message, 400, exc.where or "body") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise WebhookRejected("the body is not a JSON array of events", 400, "body")
    if len(data) > MAX_EVENTS:
        raise WebhookRejected(f"more than {MAX_EVENTS} events in one request", 413, "body")
    return data


def event_key(event: Mapping[str, Any]) -> str:
    """SendGrid's ``sg_event_id``; for an event without one, a digest of the event itself."""
    raw = event.get("sg_event_id")
    if isinstance(raw, str) and raw and len(raw) <= 200:
        return raw
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"sha256:{digest}"


def store_batch(session: Session, now: datetime, events: list[dict[str, Any]]) -> tuple[int, int]:
    """Store each event not stored before; (stored, duplicates)."""
    if not events:
        return 0, 0
    rows = {event_key(event): event for event in events}
    insert = pg_insert if is_postgresql(session) else sqlite_insert
    stored = session.execute(
        insert(ProviderEvent)
        .values(
            [
                {"provider": PROVIDER, "provider_event_id": key, "payload": event, "received_at": now}
                for key, event in rows.items()
            ]
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(ProviderEvent.id)
    ).all()
    return len(stored), len(events) - len(stored)


# --- mapping (in the worker) ------------------------------------------------------------------------------------


def _message_id(event: Mapping[str, Any]) -> int | None:
    raw = event.get(MESSAGE_ID_ARG)
    if isinstance(raw, bool):
        return None
    try:
        value = int(raw) if isinstance(raw, int | str) else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < 2**63 else None


def _occurred_at(event: Mapping[str, Any], now: datetime) -> datetime:
    raw = event.get("timestamp")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, UTC)
        except (ValueError, OverflowError, OSError):
            return now
    return now


def classify(event: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | str:
    """Our event type and properties for a SendGrid event, or why it records nothing."""
    name = event.get("event")
    details = {key: event[key] for key in _DETAILS if key in event and isinstance(event[key], str | int)}
    if name == "delivered":
        return EventType.DELIVERED, details
    if name in ("bounce", "blocked"):
        status = str(event.get("status") or "")
        soft = name == "blocked" or event.get("type") == "blocked" or status.startswith("4")
        return EventType.BOUNCED, {**details, "bounce": SOFT if soft else HARD}
    if name == "dropped":
        found = _DROPPED.get(str(event.get("reason") or ""))
        if found is None:
            return f"dropped ({event.get('reason') or 'no reason'}): nothing to record"
        kind, extra = found
        return kind, {**details, **extra}
    if name == "open":
        return EventType.OPENED, details
    if name == "click":
        return EventType.CLICKED, details
    if name == "spamreport":
        return EventType.COMPLAINED, details
    if name in ("unsubscribe", "group_unsubscribe"):
        return EventType.UNSUBSCRIBED, details
    if name in ("processed", "deferred", "group_resubscribe"):
        return f"{name}: nothing to record"
    return f"unknown event {str(name)[:50]!r}: nothing to record"


def _machine_reason(event: Mapping[str, Any], kind: EventType) -> str | None:
    if kind not in (EventType.OPENED, EventType.CLICKED):
        return None
    if event.get("sg_machine_open") is True:
        return "Apple Mail Privacy Protection (SendGrid)"
    agent = event.get("useragent")
    ip = event.get("ip")
    return classify_request("GET", agent if isinstance(agent, str) else None, ip if isinstance(ip, str) else None)


def to_new_event(session: Session, now: datetime, stored: ProviderEvent) -> NewEvent | str:
    """The engagement event for one stored SendGrid event, or why there is none."""
    event = stored.payload
    classified = classify(event)
    if isinstance(classified, str):
        return classified
    kind, properties = classified
    message_id = _message_id(event)
    if message_id is None:
        return f"no {MESSAGE_ID_ARG} custom argument: not one of our messages"
    message = session.execute(
        select(Message.lead_id, Message.campaign, Message.to_address).where(Message.id == message_id)
    ).first()
    if message is None:
        return f"message {message_id} does not exist"
    address = event.get("email")
    if not isinstance(address, str) or email_key(address) != email_key(message.to_address):
        return f"the event's email does not match message {message_id}"
    url = event.get("url") if kind is EventType.CLICKED and isinstance(event.get("url"), str) else None
    return NewEvent(
        lead_id=message.lead_id,
        type=kind.value,
        occurred_at=_occurred_at(event, now),
        source=EventSource.SENDGRID,
        dedupe_key=f"{PROVIDER}:{stored.provider_event_id}",
        message_id=message_id,
        campaign=message.campaign,
        url=url,
        properties=properties,
        raw=dict(event),
        machine_reason=_machine_reason(event, kind),
    )


def map_pending_provider_events(session: Session, clock: Clock, *, limit: int = 500) -> int:
    """Turn stored provider events into pending engagement events; how many were handled."""
    now = clock.now()
    query = select(ProviderEvent).where(ProviderEvent.processed_at.is_(None)).order_by(ProviderEvent.id).limit(limit)
    if is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    stored = session.scalars(query).all()
    for row in stored:
        mapped = to_new_event(session, now, row)
        if isinstance(mapped, str):
            row.outcome = mapped
        else:
            event_id = insert_events(session, now, [mapped])[0]
            row.outcome = f"{mapped.type} event {event_id}" if event_id is not None else "already recorded"
        row.processed_at = now
    session.flush()
    return len(stored)
