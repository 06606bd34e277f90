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
from nurture.delivery.outgoing import OutgoingEmail
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
def make_email(delivery_settings: DeliverySettings) -> Callable[..., OutgoingEmail]:
    """Compose an email for a lead; without ``message_id``, one that no row has (for gate tests)."""
    unused_ids = iter(range(900_000_000, 1_000_000_000))

    def make(
        lead: Lead,
        *,
        message_id: int | None = None,
        subject: str = "Your weekly tips",
        greeting: str | None = None,
        to_address: str | None = None,
        campaign: str | None = "welcome",
        settings: DeliverySettings | None = None,
    ) -> OutgoingEmail:
        message_id = next(unused_ids) if message_id is None else message_id
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
    """Queue a composed message for a lead; commits so dispatchers (other sessions) see it."""
    counter = iter(range(1, 1_000_000))

    def add(
        lead: Lead,
        *,
        template: str = "tips",
        version: str = "1",
        to_address: str | None = None,
        campaign: str | None = "welcome",
        commit: bool = True,
        **kwargs: Any,
    ) -> Message:
        address = to_address or lead.email
        message = queue_message(
            session,
            clock,
            lead_id=lead.id,
            to_address=address,
            template=template,
            template_version=version,
            idempotency_key=f"test:{lead.id}:{next(counter)}",
            campaign=campaign,
            compose=lambda message_id: make_email(
                lead, message_id=message_id, to_address=address, campaign=campaign, **kwargs
            ),
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
