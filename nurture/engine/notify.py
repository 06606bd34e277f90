"""Handing a lead to sales: signed webhooks, written to an outbox with the step and POSTed after commit,
retried with backoff; and alerts to the lead's owner (emails, written with the step's other emails).

A webhook is a JSON POST with these headers:

- ``X-Nurture-Delivery``: the delivery's key, the same on every retry (receivers deduplicate on it);
- ``X-Nurture-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Nurture-Signature``: ``v1=`` and the hex HMAC-SHA256 of ``"{timestamp}." + body`` with the
  campaign's webhook secret (``webhook_secret``, shown by ``nurture campaigns webhook-secret SLUG``).

Delivery is at least once: a deliverer that dies after the POST left but before it recorded the answer
leaves the row ``sending``; ``release_stale_webhooks`` puts it back to ``pending`` and it is sent again.
2xx is delivered; 408, 429, 5xx and network errors are retried (1 minute, doubling, at most 6 hours
apart, 10 attempts in all); any other answer fails the delivery at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from nurture.campaigns.models import Campaign
from nurture.clock import Clock
from nurture.config import Settings
from nurture.db import is_postgresql
from nurture.engine.context import LoadedCampaign
from nurture.engine.models import WebhookDelivery, WebhookStatus
from nurture.leads.models import Lead

log = logging.getLogger(__name__)

DELIVERY_HEADER = "X-Nurture-Delivery"
TIMESTAMP_HEADER = "X-Nurture-Timestamp"
SIGNATURE_HEADER = "X-Nurture-Signature"
MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)
STALE_AFTER = timedelta(minutes=5)
TIMEOUT_SECONDS = 10.0
_RETRYABLE_STATUSES = frozenset({408, 429})


def webhook_secret(settings: Settings, campaign_slug: str) -> str:
    """The campaign's own signing secret, derived from NURTURE_SECRET_KEY: a receiver holding it can verify
    that campaign's webhooks and nothing else."""
    return hmac.new(settings.secret_key.encode(), f"nurture.webhook.{campaign_slug}".encode(), "sha256").hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (plus refusing old timestamps, to stop replays)."""
    try:
        expected = signature(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, header)


def webhook_payload(campaign: LoadedCampaign, step_id: str, lead: Lead, key: str, at: datetime) -> dict[str, Any]:
    return {
        "event": "campaign.notify",
        "delivery": key,
        "occurred_at": at.isoformat(),
        "campaign": {"slug": campaign.slug, "name": campaign.name, "step": step_id},
        "lead": {
            "id": lead.id,
            "email": lead.email,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "company": lead.company,
            "job_title": lead.job_title,
            "phone": lead.phone,
            "country": lead.country,
            "timezone": lead.timezone,
            "owner": lead.owner,
            "source": lead.source,
            "stage": lead.stage.value,
            "score": lead.score,
            "temperature": lead.temperature.value,
            "tags": lead.tag_names,
            "attributes": dict(lead.attributes or {}),
        },
    }


def queue_webhook(
    session: Session,
    now: datetime,
    *,
    key: str,
    enrollment_id: int,
    campaign: LoadedCampaign,
    lead: Lead,
    url: str,
    step_id: str,
) -> None:
    """Add a delivery to the outbox in the caller's transaction (idempotent on ``key``)."""
    insert = pg_insert if is_postgresql(session) else sqlite_insert
    session.execute(
        insert(WebhookDelivery)
        .values(
            idempotency_key=key,
            enrollment_id=enrollment_id,
            campaign_id=campaign.id,
            lead_id=lead.id,
            url=url,
            payload=webhook_payload(campaign, step_id, lead, key, now),
            status=WebhookStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


class WebhookTransport(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """POST and return the HTTP status; raise OSError when no answer came."""
        ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibTransport:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(65536)
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


@dataclass
class WebhookReport:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.delivered)} delivered, {len(self.retrying)} to retry, {len(self.failed)} failed"


def release_stale_webhooks(session: Session, now: datetime, stale_after: timedelta = STALE_AFTER) -> int:
    """Deliveries left ``sending`` by a deliverer that died: back to pending (sent again, at least once)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == WebhookStatus.SENDING, WebhookDelivery.claimed_at < now - stale_after)
        .values(status=WebhookStatus.PENDING, claimed_at=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


def _claim(session: Session, now: datetime, limit: int) -> list[WebhookDelivery]:
    due = (
        select(WebhookDelivery.id)
        # The status written out, not bound, so that the partial index serves cached plans too.
        .where(WebhookDelivery.status == literal_column("'pending'"), WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    mark = update(WebhookDelivery).values(status=WebhookStatus.SENDING, claimed_at=now)
    if is_postgresql(session):
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(mark.where(WebhookDelivery.id.in_(ids)).execution_options(synchronize_session=False))
    else:
        ids = list(
            session.scalars(
                mark.where(WebhookDelivery.id.in_(due)).returning(WebhookDelivery.id),
                execution_options={"synchronize_session": False},
            )
        )
    if not ids:
        return []
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))))


def retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def deliver_webhooks(
    session_factory: sessionmaker[Session],
    clock: Clock,
    settings: Settings,
    *,
    transport: WebhookTransport | None = None,
    limit: int = 100,
    timeout: float = TIMEOUT_SECONDS,
) -> WebhookReport:
    """POST up to ``limit`` due deliveries, each signed with its campaign's secret."""
    transport = transport or UrllibTransport()
    report = WebhookReport()
    with session_factory() as session:
        release_stale_webhooks(session, clock.now())
        claimed = _claim(session, clock.now(), limit)
        slugs = _campaign_slugs(session, {delivery.campaign_id for delivery in claimed})
        session.commit()
    outcomes: list[dict[str, Any]] = []
    for delivery in claimed:
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(clock.now().timestamp())
        slug = slugs.get(delivery.campaign_id) or delivery.payload.get("campaign", {}).get("slug", "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "nurture-webhooks/1",
            DELIVERY_HEADER: delivery.idempotency_key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(webhook_secret(settings, slug), timestamp, body),
        }
        status: int | None = None
        try:
            status = transport.post(delivery.url, body, headers, timeout)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = delivery.attempts + 1
        row: dict[str, Any] = {"id": delivery.id, "attempts": attempts, "response_status": status, "last_error": error}
        if error is None:
            row |= {"status": WebhookStatus.DELIVERED, "delivered_at": clock.now()}
            report.delivered.append(delivery.id)
        elif (status is None or status >= 500 or status in _RETRYABLE_STATUSES) and attempts < MAX_ATTEMPTS:
            row |= {"status": WebhookStatus.PENDING, "next_attempt_at": clock.now() + retry_delay(attempts)}
            report.retrying.append(delivery.id)
            log.warning("webhook %s to %s failed (%s); retrying", delivery.id, delivery.url, error)
        else:
            row |= {"status": WebhookStatus.FAILED}
            report.failed.append(delivery.id)
            log.error("webhook %s to %s failed for good: %s", delivery.id, delivery.url, error)
        outcomes.append(row)
    if outcomes:
        with session_factory() as session:
            session.execute(update(WebhookDelivery), outcomes)
            session.commit()
    return report


def _campaign_slugs(session: Session, campaign_ids: set[int | None]) -> dict[int | None, str]:
    ids = [campaign_id for campaign_id in campaign_ids if campaign_id is not None]
    if not ids:
        return {}
    return dict(session.execute(select(Campaign.id, Campaign.slug).where(Campaign.id.in_(ids))).all())
