"""The SendGrid backend: the v3 Mail Send API through the ``sendgrid`` package's SendGridAPIClient.

Batching. A Mail Send request has one subject and one body for all of its personalizations (up to
1,000). Our HTML is rendered per lead (its unsubscribe link alone differs), and SendGrid's
substitutions would move personalisation out of our sandboxed renderer, so only messages whose
content is byte-for-byte identical share a request, each as a personalization with its own headers
and ``custom_args``. In practice that is one personalization per request, so the requests of a
round share one keep-alive HTTP connection (see ``http_transport``).

Failures. 429 and 5xx are retried with exponential backoff, jitter and ``Retry-After``; a request
that could not be sent at all is retried too. Other 4xx are never retried: 400 fails the messages
permanently, 401/403 mean our key is wrong, so nothing is sent and the messages stay queued. A
request that timed out after leaving is uncertain and is not retried: a duplicate marketing email
is worse than a missing one."""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Sequence
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from nurture.clock import Clock
from nurture.delivery.http_transport import KeepAliveClient, KeepAliveConnection, RequestNotSent, ResponseLost
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.mailer import (
    DeliveryResult,
    MailBackendUnavailable,
    MailConnection,
    Mailer,
    Outcome,
    Sleeper,
)
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.retry import RetryPolicy, parse_retry_after
from nurture.delivery.settings import DEFAULT_SENDGRID_API_HOST
from nurture.delivery.suppression import ClearedEmail
from nurture.leads.emails import email_key

MAX_PERSONALIZATIONS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
DEFAULT_TIMEOUT = 30.0


def _address(mailbox: Mailbox) -> dict[str, str]:
    return {"email": mailbox.address, "name": mailbox.name} if mailbox.name else {"email": mailbox.address}


def custom_args_size(args: dict[str, str]) -> int:
    return len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())


def content_key(email: OutgoingEmail) -> tuple[object, ...]:
    """Messages with equal keys can share one request: everything outside a personalization."""
    return (email.sender, email.reply_to, email.subject, email.text, email.html, email.campaign)


def mail_send_payload(emails: Sequence[OutgoingEmail]) -> dict[str, Any]:
    """The Mail Send body for messages of identical content (see ``content_key``)."""
    first = emails[0]
    payload: dict[str, Any] = {
        "personalizations": [
            {
                "to": [_address(email.recipient)],
                "headers": dict(email.headers),
                "custom_args": dict(email.custom_args),
            }
            for email in emails
        ],
        "from": _address(first.sender),
        "subject": first.subject,
        "content": [{"type": "text/plain", "value": first.text}, {"type": "text/html", "value": first.html}],
        # Our own links are already tracked and our own unsubscribe is in the body: SendGrid's would
        # wrap or duplicate them.
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
            "subscription_tracking": {"enable": False},
        },
    }
    if first.reply_to:
        payload["reply_to"] = _address(first.reply_to)
    if first.campaign:
        payload["categories"] = [first.campaign]
    return payload


def plan_requests(batch: Sequence[ClearedEmail]) -> list[list[ClearedEmail]]:
    """Group identical content, at most 1,000 personalizations and each recipient once per request
    (SendGrid rejects a request naming an address twice)."""
    requests: list[list[ClearedEmail]] = []
    open_requests: dict[tuple[object, ...], list[tuple[list[ClearedEmail], set[str]]]] = {}
    for item in batch:
        key = email_key(item.email.to_address)
        candidates = open_requests.setdefault(content_key(item.email), [])
        for members, recipients in candidates:
            if len(members) < MAX_PERSONALIZATIONS and key not in recipients:
                members.append(item)
                recipients.add(key)
                break
        else:
            members = [item]
            candidates.append((members, {key}))
            requests.append(members)
    return requests


def _error_text(error: HTTPError) -> str:
    """SendGrid's error list, ``{"errors": [{"message", "field"}]}``, as one line."""
    try:
        errors = json.loads(error.body or b"{}").get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    parts = []
    for item in errors:
        if isinstance(item, dict) and item.get("message"):
            field = f" ({item['field']})" if item.get("field") else ""
            parts.append(f"{item['message']}{field}")
    return "; ".join(parts) or (error.reason or "")


class SendGridConnection(MailConnection):
    def __init__(
        self,
        api_key: str,
        api_host: str,
        clock: Clock,
        *,
        timeout: float,
        retry: RetryPolicy,
        sleeper: Sleeper,
        rng: random.Random,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.transport = KeepAliveConnection(api_host, timeout, ssl_context)
        self._client = SendGridAPIClient(api_key=api_key, host=api_host)
        # The package sets no timeout and opens a connection per request; keep its client, swap the transport.
        self._client.client = KeepAliveClient(api_host, connection=self.transport, version=3, timeout=timeout)
        self._client.reset_request_headers()
        self._clock = clock
        self._retry = retry
        self._sleeper = sleeper
        self._rng = rng
        # Set once SendGrid keeps failing: the rest of the round waits in the queue.
        self._halted: str | None = None

    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        if self._halted:
            raise MailBackendUnavailable(self._halted)
        results: list[DeliveryResult] = []
        sendable = []
        for email in emails:
            size = custom_args_size(dict(email.custom_args))
            if size > MAX_CUSTOM_ARGS_BYTES:
                reason = f"custom_args take {size} bytes; SendGrid allows {MAX_CUSTOM_ARGS_BYTES}"
                results.append(DeliveryResult(email.message_id, Outcome.FAILED_PERMANENT, reason))
            else:
                sendable.append(email)
        if sendable:
            results += self._request(sendable)
        return results

    def _request(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        payload = mail_send_payload(emails)
        retry = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._client.send(payload)
            except ResponseLost as exc:
                return DeliveryResult.for_all(emails, Outcome.UNCERTAIN, f"SendGrid: {exc}")
            except RequestNotSent as exc:
                reason = f"SendGrid unreachable: {exc}"
                unreachable = True
            except HTTPError as exc:
                status = exc.status_code
                detail = _error_text(exc)
                if status in (401, 403):
                    raise MailBackendUnavailable(f"SendGrid refused the API key ({status}): {detail}") from None
                if status != 429 and status < 500:
                    return DeliveryResult.for_all(emails, Outcome.FAILED_PERMANENT, f"SendGrid {status}: {detail}")
                reason = f"SendGrid {status}: {detail}"
                unreachable = False
                headers = exc.headers
                retry_after = parse_retry_after(headers.get("Retry-After") if headers else None, self._clock.now())
            else:
                if response.status_code == 202:
                    message_id = response.headers.get("X-Message-Id")
                    return DeliveryResult.for_all(emails, Outcome.SENT, provider_message_id=message_id)
                return DeliveryResult.for_all(
                    emails, Outcome.UNCERTAIN, f"SendGrid answered {response.status_code} instead of 202"
                )
            retry += 1
            delay = self._retry.delay(retry, retry_after, self._rng)
            if delay is None:
                self._halted = f"{reason} (gave up after {retry} attempt{'s' if retry > 1 else ''})"
                if unreachable:
                    # Nothing reached SendGrid: the messages can simply wait in the queue.
                    raise MailBackendUnavailable(self._halted)
                return DeliveryResult.for_all(emails, Outcome.FAILED_RETRYABLE, self._halted)
            self._sleeper(delay)

    def close(self) -> None:
        self.transport.close()


class SendGridMailer(Mailer):
    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        clock: Clock,
        send_rate: float,
        *,
        api_host: str = DEFAULT_SENDGRID_API_HOST,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleeper: Sleeper = time.sleep,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._api_key = api_key
        self._clock = clock
        self.send_rate = send_rate
        self.api_host = api_host
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleeper = sleeper
        self._rng = rng or random.Random()
        self._ssl_context = ssl_context

    def plan(self, batch: Sequence[ClearedEmail]) -> list[list[ClearedEmail]]:
        return plan_requests(batch)

    def connect(self) -> SendGridConnection:
        return SendGridConnection(
            self._api_key,
            self.api_host,
            self._clock,
            timeout=self.timeout,
            retry=self.retry,
            sleeper=self._sleeper,
            rng=self._rng,
            ssl_context=self._ssl_context,
        )
