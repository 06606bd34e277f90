"""Fixtures for the delivery tests. Register with ``pytest_plugins = ["tests.support.fixtures"]`` in
tests/conftest.py, or import the ones a module uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from nurture.clock import FixedClock
from nurture.delivery.compose import compose_email
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.models import Message
from nurture.delivery.outbox import queue_message
from nurture.delivery.outgoing import OutgoingEmail, new_message_id
from nurture.delivery.settings import BackendName, DeliverySettings
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead
from tests.support.emails import POSTAL_ADDRESS, render, unsubscribe_url_for
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.smtp_server import RunningSmtpServer, start_smtp_server


@pytest.fixture
def delivery_settings(tmp_path: Any) -> DeliverySettings:
    return DeliverySettings(
        backend=BackendName.FILE,
        outbox_dir=tmp_path / "outbox",
        sender=Mailbox("news@nurture.test", "Zoë from Nurture"),
        reply_to=Mailbox("hello@nurture.test", "Nurture Team"),
        postal_address=POSTAL_ADDRESS,
        list_id="Nurture news <news.nurture.test>",
        unsubscribe_mailto="unsubscribe@nurture.test",
        send_rate=1000.0,
    )


@pytest.fixture
def session_factory(db_connection: Any) -> sessionmaker[Session]:
    """Sessions on the test's connection: their commits are savepoints, rolled back after the test."""
    return sessionmaker(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def make_lead(session: Session, clock: FixedClock) -> Callable[..., Lead]:
    def make(email: str, status: LeadStatus = LeadStatus.ACTIVE, **profile: str) -> Lead:
        lead = create_lead(session, clock, email, actor=Actor(ActorKind.SYSTEM, "test"), **profile)
        lead.status = status
        session.flush()
        return lead

    return make


@pytest.fixture
def make_email(delivery_settings: DeliverySettings, clock: FixedClock) -> Callable[..., OutgoingEmail]:
    def make(
        lead: Lead,
        *,
        subject: str = "Your weekly tips",
        greeting: str | None = None,
        to_address: str | None = None,
        campaign: str | None = "welcome",
        settings: DeliverySettings | None = None,
        message_id: int | None = None,
    ) -> OutgoingEmail:
        message_id = message_id or new_message_id(clock)
        url = unsubscribe_url_for(message_id)
        return compose_email(
            render(subject, greeting or f"Hello {lead.first_name or 'there'}", url),
            settings=settings or delivery_settings,
            message_id=message_id,
            lead_id=lead.id,
            to_address=to_address or lead.email,
            to_name=lead.full_name or None,
            unsubscribe_url=url,
            campaign=campaign,
        )

    return make


@pytest.fixture
def queue(session: Session, clock: FixedClock, make_email: Callable[..., OutgoingEmail]) -> Callable[..., Message]:
    """Compose and queue a message for a lead; commits so dispatchers (other sessions) see it."""
    counter = iter(range(1, 1_000_000))

    def add(lead: Lead, *, template: str = "tips", version: str = "1", commit: bool = True, **kwargs: Any) -> Message:
        email = make_email(lead, **kwargs)
        message = queue_message(
            session,
            clock,
            email,
            template=template,
            template_version=version,
            idempotency_key=f"test:{lead.id}:{next(counter)}",
        )
        if commit:
            session.commit()
        return message

    return add


@pytest.fixture
def smtp_server() -> Iterator[RunningSmtpServer]:
    server = start_smtp_server()
    yield server
    server.controller.stop()


@pytest.fixture
def sendgrid_server() -> Iterator[FakeSendGrid]:
    server = FakeSendGrid()
    yield server
    server.stop()
