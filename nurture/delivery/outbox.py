"""Putting messages in the outbox: a row per email, written in the caller's transaction.

Nothing is sent here. The dispatcher picks rows up only once the transaction that wrote them has
committed, so an email never leaves for a change that was rolled back (the outbox pattern).

The database assigns the message id. Tracking links and headers carry it, so the email is composed
after the row exists: ``queue_message`` inserts the row, calls the caller's ``compose`` with the id,
and stores what comes back, all inside one savepoint of the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable

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

# Given the new message's id, render and compose its email (see compose.compose_email).
Composer = Callable[[int], OutgoingEmail]


def _require(value: str, name: str, max_length: int) -> str:
    value = value.strip()
    if not value:
        raise ValidationError("must not be empty", where=name)
    if len(value) > max_length:
        raise ValidationError(f"is longer than {max_length} characters", where=name)
    return value


def find_message(session: Session, idempotency_key: str) -> Message | None:
    return session.scalar(select(Message).where(Message.idempotency_key == idempotency_key))


def _fill(message: Message, email: OutgoingEmail) -> None:
    """Store the composed email on its row, after checking it is the email this row was made for."""
    expected = (message.id, message.lead_id, message.to_address, message.campaign)
    got = (email.message_id, email.lead_id, email.to_address, email.campaign)
    if got != expected:
        raise ValueError(f"compose returned an email for (id, lead, address, campaign) {got}, not {expected}")
    check_marketing_email(email, where=f"template {message.template} v{message.template_version}")
    message.subject = email.subject
    message.links = list(email.links) or None
    message.content = MessageContent(html=email.html, text=email.text, envelope=email.envelope())


def queue_message(
    session: Session,
    clock: Clock,
    *,
    lead_id: int,
    to_address: str,
    template: str,
    template_version: str | int,
    idempotency_key: str,
    compose: Composer,
    campaign: str | None = None,
) -> Message:
    """Add one email for ``lead_id`` to the outbox and return its row.

    Idempotent: when a message with ``idempotency_key`` exists, that row is returned unchanged and
    ``compose`` is not called. A suppressed lead (or an address belonging to one) gets a row in
    status ``suppressed`` that is never sent, and nothing is rendered for it. Raises
    ``MarketingComplianceError`` for an email without its unsubscribe link or postal address,
    ``ValidationError`` for bad input, ``NotFound`` for an unknown lead; whatever ``compose`` raises
    (a template problem) propagates. On any error nothing is left in the session."""
    idempotency_key = _require(idempotency_key, "idempotency_key", 200)
    existing = find_message(session, idempotency_key)
    if existing is not None:
        return existing
    template = _require(template, "template", 100)
    version = _require(str(template_version), "template_version", 64)
    if campaign is not None:
        campaign = _require(campaign, "campaign", 100)
    try:
        normalise_email(to_address)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), where="to_address") from None
    if session.scalar(select(Lead.id).where(Lead.id == lead_id)) is None:
        raise NotFound(f"no lead with id {lead_id}")

    reason = suppression_reasons(session, [(lead_id, to_address)]).get(0)
    message = Message(
        lead_id=lead_id,
        to_address=to_address,
        template=template,
        template_version=version,
        # Known once composed; a suppressed message is never composed.
        subject="",
        status=MessageStatus.SUPPRESSED if reason else MessageStatus.QUEUED,
        idempotency_key=idempotency_key,
        campaign=campaign,
        created_at=clock.now(),
        error=reason,
    )
    try:
        # A savepoint: a failed compose or a lost race on the idempotency key leaves the caller's
        # transaction as it was.
        with session.begin_nested():
            session.add(message)
            session.flush()
            if reason is None:
                _fill(message, compose(message.id))
    except IntegrityError:
        existing = find_message(session, idempotency_key)
        if existing is None:
            raise
        return existing
    return message
