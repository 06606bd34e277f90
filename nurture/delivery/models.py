"""Tables of email delivery: the outbox of messages, their rendered content, and the send-rate slots
shared by every worker process."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.db import Base, BigId, JSONDocument, enum_column


class MessageStatus(StrEnum):
    QUEUED = "queued"
    # Claimed by a dispatcher and possibly handed to the backend: never sent again.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # The backend may or may not have accepted it (timeout after the request left, crash while sending).
    UNCERTAIN = "uncertain"
    SUPPRESSED = "suppressed"


class Message(Base):
    """One email to one lead. Rows are written in the caller's transaction and sent only after commit."""

    __tablename__ = "messages"
    __table_args__ = (
        # The dispatcher's queue scan and the recovery of interrupted sends.
        Index("ix_messages_status_created_at", "status", "created_at"),
        Index("ix_messages_lead_id_created_at", "lead_id", "created_at"),
    )

    # Assigned by the database when queue_message inserts the row, before the email is rendered.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(100))
    template_version: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[MessageStatus] = mapped_column(
        enum_column(MessageStatus, "status"), default=MessageStatus.QUEUED
    )
    # Callers make sends idempotent with it, e.g. "enrollment:{id}:step:{step}:attempt:{n}".
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    campaign: Mapped[str | None] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime]
    # When a dispatcher marked it sending: a row still sending long after this was interrupted.
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    # For failed messages: whether a new attempt may succeed (the campaign engine decides to make one).
    retryable: Mapped[bool | None]
    # Target URL of each tracked link index (RenderedEmail.links): where a click redirects.
    links: Mapped[list[str] | None] = mapped_column(JSONDocument)

    content: Mapped[MessageContent] = relationship(
        back_populates="message", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Message({self.id!r}, to={self.to_address!r}, status={self.status.value})"


class MessageContent(Base):
    """The rendered email, kept apart from ``messages`` so status scans stay narrow on SQLite too."""

    __tablename__ = "message_contents"

    message_id: Mapped[int] = mapped_column(BigId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # Sender, reply-to, recipient name, headers, provider metadata: see OutgoingEmail.envelope.
    envelope: Mapped[dict[str, Any]]

    message: Mapped[Message] = relationship(back_populates="content", lazy="raise")


class SendRateSlot(Base):
    """The next free send slot of one backend, shared by every worker process (see ratelimit)."""

    __tablename__ = "send_rate_slots"

    backend: Mapped[str] = mapped_column(String(50), primary_key=True)
    # Microseconds since the Unix epoch: integer arithmetic in one portable UPDATE.
    next_slot_us: Mapped[int] = mapped_column(BigInteger)
