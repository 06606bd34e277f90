"""Putting messages in the outbox: a row per email, written in the caller's transaction.

Nothing is sent here. The dispatcher picks rows up only once the transaction that wrote them has
committed, so an email never leaves for a change that was rolled back (the outbox pattern)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.delivery.compliance import check_marketing_email
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.suppression import suppression_reasons
from nurture.errors import NotFound, ValidationError
from nurture.leads.emails import InvalidEmail, normalise_email
from nurture.leads.models import Lead


def _require(value: str, name: str, max_length: int) -> str:
    value = value.strip()
    if not value:
        raise ValidationError("must not be empty", where=name)
    if len(value) > max_length:
        raise ValidationError(f"is longer than {max_length} characters", where=name)
    return value


def find_message(session: Session, idempotency_key: str) -> Message | None:
    return session.scalar(select(Message).where(Message.idempotency_key == idempotency_key))


def queue_message(
    session: Session,
    clock: Clock,
    email: OutgoingEmail,
    *,
    template: str,
    template_version: str | int,
    idempotency_key: str,
    links: Any = None,
) -> Message:
    """Add ``email`` to the outbox and return its row.

    Idempotent: if a message with ``idempotency_key`` exists, that row is returned unchanged (its
    id then differs from ``email.message_id``). A lead who is already suppressed gets a row in
    status ``suppressed`` that is never sent. Raises ``MarketingComplianceError`` for an email
    without its unsubscribe link or postal address, ``ValidationError`` for a bad address."""
    idempotency_key = _require(idempotency_key, "idempotency_key", 200)
    existing = find_message(session, idempotency_key)
    if existing is not None:
        return existing
    template = _require(template, "template", 100)
    version = _require(str(template_version), "template_version", 64)
    if email.campaign is not None:
        _require(email.campaign, "campaign", 100)
    try:
        normalise_email(email.to_address)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), where="to_address") from None
    check_marketing_email(email, where=f"template {template} v{version}")

    if session.scalar(select(Lead.id).where(Lead.id == email.lead_id)) is None:
        raise NotFound(f"no lead with id {email.lead_id}")
    reason = suppression_reasons(session, [(email.lead_id, email.to_address)]).get(0)
    message = Message(
        id=email.message_id,
        lead_id=email.lead_id,
        to_address=email.to_address,
        template=template,
        template_version=version,
        subject=email.subject,
        status=MessageStatus.SUPPRESSED if reason else MessageStatus.QUEUED,
        idempotency_key=idempotency_key,
        campaign=email.campaign,
        created_at=clock.now(),
        error=reason,
        links=links,
    )
    message.content = MessageContent(html=email.html, text=email.text, envelope=email.envelope())
    try:
        # A savepoint, so that losing a race on the idempotency key leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        existing = find_message(session, idempotency_key)
        if existing is None:
            raise
        return existing
    return message
