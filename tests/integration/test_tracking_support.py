"""Fixtures and helpers shared by the tracking, webhook, events API, scoring and lifecycle tests (no tests here).

Import what a module uses: ``from tests.integration.test_tracking_support import ...``."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.config import Settings
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.engine.context import EngineContext
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead
from nurture.scoring.config import read_config
from nurture.scoring.store import store_config
from nurture.tracking.models import EngagementEvent
from nurture.tracking.settings import TrackingSettings
from nurture.tracking.tokens import TokenPurpose, TokenSigner
from nurture.web import api, tracking
from tests.acceptance.engine_support import engine_settings, make_context
from tests.conftest import TEST_SECRET

LINKS = ["https://example.com/pricing?plan=pro", "https://example.com/docs", "https://shop.example/item/7"]


class WebhookKeys:
    """A real ECDSA P-256 key pair, signing as SendGrid does: base64 DER over timestamp + body."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def headers(self, body: bytes, at: datetime) -> dict[str, str]:
        timestamp = str(int(at.timestamp()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(body, timestamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="session")
def webhook_keys() -> WebhookKeys:
    return WebhookKeys()


@pytest.fixture
def ctx(nurture_settings: Settings, tmp_path: Any) -> EngineContext:
    return make_context(engine_settings(nurture_settings, tmp_path / "outbox"))


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner([TEST_SECRET])


@pytest.fixture
def tracking_app(app: Flask, ctx: EngineContext, webhook_keys: WebhookKeys) -> Flask:
    """The test app, its tracking extension made with the test's engine context and webhook key."""
    app.config["NURTURE_ENGINE_CONTEXT"] = ctx
    app.config["NURTURE_TRACKING"] = TrackingSettings(sendgrid_public_key=webhook_keys.public_key)
    if "tracking" not in app.blueprints:
        tracking.init_app(app)
        api.init_app(app)
    app.extensions["nurture.tracking"] = tracking.TrackingExtension(app, app.config["NURTURE_TRACKING"])
    return app


def make_lead(session: Session, clock: Clock, email: str = "ada@example.com", **profile: Any) -> Lead:
    lead = create_lead(session, clock, email, actor=Actor(ActorKind.SYSTEM, "test"), **profile)
    session.flush()
    return lead


_keys = iter(range(10**9))


def make_message(
    session: Session,
    clock: Clock,
    lead: Lead,
    *,
    links: list[str] | None = None,
    campaign: str | None = "welcome",
    sent_at: datetime | None = None,
    html: str = "<p>Hello</p>",
) -> Message:
    """A sent message with its stored links and content, as the engine writes them."""
    now = clock.now()
    message = Message(
        lead_id=lead.id,
        to_address=lead.email,
        template="welcome.html",
        template_version="v1",
        subject="Hi",
        status=MessageStatus.SENT,
        idempotency_key=f"test:{next(_keys)}",
        campaign=campaign,
        created_at=now,
        sent_at=sent_at or now - timedelta(hours=1),
        links=list(LINKS if links is None else links),
    )
    session.add(message)
    session.flush()
    session.add(MessageContent(message_id=message.id, html=html, text="Hello", envelope={}))
    session.flush()
    return message


@dataclass
class Urls:
    signer: TokenSigner

    def click(self, message_id: int, index: int) -> str:
        return f"/t/c/{self.signer.sign(TokenPurpose.CLICK, message_id)}/{index}"

    def open(self, message_id: int) -> str:
        return f"/t/o/{self.signer.sign(TokenPurpose.OPEN, message_id)}"

    def unsubscribe(self, lead_id: int) -> str:
        return f"/u/{self.signer.sign(TokenPurpose.UNSUBSCRIBE, lead_id)}"

    def preferences(self, lead_id: int) -> str:
        return f"/p/{self.signer.sign(TokenPurpose.PREFERENCES, lead_id)}"

    def view(self, message_id: int) -> str:
        return f"/v/{self.signer.sign(TokenPurpose.VIEW, message_id)}"


@pytest.fixture
def urls(signer: TokenSigner) -> Urls:
    return Urls(signer)


def events_of(session: Session, lead_id: int) -> list[EngagementEvent]:
    session.expire_all()
    return list(
        session.scalars(select(EngagementEvent).where(EngagementEvent.lead_id == lead_id).order_by(EngagementEvent.id))
    )


def load_scoring(session: Session, clock: Clock, text: str) -> None:
    """Make the scoring file ``text`` the one in force (in the test's transaction)."""
    _config, data = read_config(text, "test.yaml")
    store_config(session, clock, data, "test.yaml")
    session.flush()
