"""Tables of tracking: the normalised engagement events, the raw provider events waiting to be mapped, the
preferences a lead sets on the public preferences page, and the API keys of the events API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.db import Base, BigId, JSONDocument


class EventType(StrEnum):
    """The built-in engagement types; any other event name (``form_submitted``, ``deal_won``) is custom."""

    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    REPLIED = "replied"


class EventSource(StrEnum):
    TRACKING = "tracking"
    SENDGRID = "sendgrid"
    API = "api"
    PREFERENCES = "preferences"
    SYSTEM = "system"


_PENDING = text("processed_at IS NULL")


class EngagementEvent(Base):
    """One thing a lead did or that happened to its email: the only way engagement reaches scoring, stages,
    branches and ``wait_for``.

    Rows written by the public tracking endpoints are ``pending`` (``processed_at`` is NULL): the hit stores
    the event in one statement and the worker applies it (``process_pending_events``). Every other writer
    applies it in the same transaction."""

    __tablename__ = "engagement_events"
    __table_args__ = (
        # The worker's queue: pending rows in arrival order. Partial, so it stays as small as the backlog.
        Index("ix_engagement_events_pending", "id", postgresql_where=_PENDING, sqlite_where=_PENDING),
        Index("ix_engagement_events_lead_id_occurred_at", "lead_id", "occurred_at"),
        # Scanner detection (the clicks on one message) and per-message reports.
        Index("ix_engagement_events_message_id_type", "message_id", "type"),
        # Human/machine reports over a period.
        Index("ix_engagement_events_type_occurred_at", "type", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("messages.id", ondelete="SET NULL"))
    campaign: Mapped[str | None] = mapped_column(String(100))
    # An EventType value or a custom event name (lowercase letters, digits, _ . : -).
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))
    # Privacy proxies and security scanners: kept, shown apart in reports, ignored by scoring and branches.
    machine: Mapped[bool] = mapped_column(Boolean, default=False)
    machine_reason: Mapped[str | None] = mapped_column(String(200))
    # The clicked link's target, as stored with the message.
    url: Mapped[str | None] = mapped_column(Text)
    # Normalised details: bounce kind and reason, a deal's loss reason, an API event's properties.
    properties: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # What the source sent, as it sent it (a provider event, a request's method, agent and address).
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # Unique: a provider event id, an API idempotency key, or a random key per tracking hit.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    processed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"EngagementEvent({self.id!r}, {self.type!r}, lead={self.lead_id}, machine={self.machine})"


class ProviderEvent(Base):
    """A raw event of a provider's webhook, stored as received (after its signature was checked) and mapped
    to an engagement event by the worker. ``outcome`` says what came of it."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_provider_events_pending", "id", postgresql_where=_PENDING, sqlite_where=_PENDING),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The provider's own event id (SendGrid's sg_event_id), or a digest of the event when it has none.
    provider_event_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)


class LeadPreferences(Base):
    """What a lead chose on its preferences page: topics it does not want, and a pause."""

    __tablename__ = "lead_preferences"

    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    topics_off: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    paused_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ApiKey(Base):
    """A key of the events API. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, so people can tell keys apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
