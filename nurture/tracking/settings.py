"""Settings of the public tracking endpoints and the provider webhook, read from environment variables.

Scoring behaviour (half-life, thresholds, machine engagement, soft bounces) is not here: it lives with the
scoring rules in the database (see nurture.scoring.config), so the worker and the web process agree on it."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nurture.errors import ConfigError
from nurture.tracking.tokens import TokenSigner

if TYPE_CHECKING:
    from nurture.config import Settings

DEFAULT_TOPICS = (("product", "Product news"), ("events", "Events and webinars"), ("tips", "Tips and guides"))
_TOPIC_ID = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MAX_PAUSE_DAYS = 365


@dataclass(frozen=True)
class TrackingSettings:
    # SendGrid's Event Webhook verification key (base64 DER, as the SendGrid console shows it); None refuses
    # every webhook request.
    sendgrid_public_key: str | None = None
    # Secrets that signed links in emails before NURTURE_SECRET_KEY was rotated: still accepted, never used to
    # sign.
    previous_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    # (id, label) of the topics a lead can turn off on its preferences page.
    topics: tuple[tuple[str, str], ...] = DEFAULT_TOPICS
    # Whether the events API creates a lead for an unknown email (else that item is refused).
    api_creates_leads: bool = True


def token_signer(secret_key: str, tracking: TrackingSettings) -> TokenSigner:
    """Signs with the current secret (NURTURE_SECRET_KEY), verifies with it and every previous one
    (NURTURE_PREVIOUS_SECRET_KEYS)."""
    return TokenSigner([secret_key, *tracking.previous_secret_keys])


def signer_from_settings(settings: Settings) -> TokenSigner:
    return token_signer(settings.secret_key, settings.tracking)


def _public_key(name: str, raw: str) -> str:
    body = "".join(raw.replace("-----BEGIN PUBLIC KEY-----", "").replace("-----END PUBLIC KEY-----", "").split())
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name}: not a base64 public key (copy it from SendGrid's Event Webhook settings)") from None
    from cryptography.hazmat.primitives.asymmetric import ec
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        verifier = EventWebhook(body)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a public key: {exc}") from None
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{name}: not an elliptic-curve (ECDSA) public key")
    return body


def _topics(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    topics: list[tuple[str, str]] = []
    for part in raw.split(","):
        topic_id, _, label = part.strip().partition(":")
        topic_id, label = topic_id.strip(), label.strip() or topic_id.strip()
        if not _TOPIC_ID.match(topic_id):
            raise ConfigError(f"{name}: topic id {topic_id!r} must be lowercase letters, digits, - or _ (id:Label,...)")
        if topic_id in {existing for existing, _ in topics}:
            raise ConfigError(f"{name}: topic {topic_id!r} is listed twice")
        topics.append((topic_id, label))
    return tuple(topics)


def load_tracking_settings(environ: Mapping[str, str]) -> TrackingSettings:
    def get(variable: str) -> str:
        return environ.get(variable, "").strip()

    key = (
        _public_key("SENDGRID_WEBHOOK_PUBLIC_KEY", get("SENDGRID_WEBHOOK_PUBLIC_KEY"))
        if get("SENDGRID_WEBHOOK_PUBLIC_KEY")
        else None
    )
    previous = tuple(part.strip() for part in get("NURTURE_PREVIOUS_SECRET_KEYS").split(",") if part.strip())
    if any(len(secret) < 32 for secret in previous):
        raise ConfigError("NURTURE_PREVIOUS_SECRET_KEYS: each key must be at least 32 characters (comma-separated)")
    topics = (
        _topics("NURTURE_PREFERENCE_TOPICS", get("NURTURE_PREFERENCE_TOPICS"))
        if get("NURTURE_PREFERENCE_TOPICS")
        else DEFAULT_TOPICS
    )
    creates = get("NURTURE_API_CREATE_LEADS").lower() or "true"
    if creates not in {"true", "false", "1", "0", "yes", "no"}:
        raise ConfigError(f"NURTURE_API_CREATE_LEADS: must be true or false (got {creates!r})")
    return TrackingSettings(key, previous, topics, creates in {"true", "1", "yes"})
