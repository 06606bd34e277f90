"""Sending the outbox: claim queued messages, clear them, pace them, hand them to the backend, record
what happened. The only code that calls a backend.

Every message is sent at most once. A claim marks rows ``sending`` and commits before anything goes
out; a row found still ``sending`` long after its claim belongs to a dispatcher that died mid-send,
and becomes ``uncertain`` rather than being sent again: for marketing email a missing message is
better than a duplicate.

Transactions, in order: recover interrupted sends; per claim, one transaction that claims rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer on SQLite), re-reads lead status and
marks suppressed ones; per provider call, a rate-limit reservation; per ~100 results, one
transaction recording them (one UPDATE of the rows, one INSERT of the timeline's ``email_sent``).

A lead who paused its emails on the preferences page (``lead_preferences.paused_until``) is not mailed
until the pause ends: its queued messages are not claimed meanwhile, and go out, in their turn, once it
has ended. Emails to others about the lead (alerts to its owner) are not held.

The content of a claimed message comes from the process's store of composed emails when the engine of this
process wrote it (``handoff``: the very email that compose checked, with the renderer's proof of its footer),
else from ``message_contents``, checked again by the gate."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.delivery.bulk import among, insert_rows, update_rows
from nurture.delivery.handoff import COMPOSED, StoredRow
from nurture.delivery.mailer import DeliveryResult, MailBackendUnavailable, MailConnection, Mailer, Outcome, Sleeper
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.ratelimit import SendRateLimiter
from nurture.delivery.suppression import ClearedEmail, clear_for_sending
from nurture.leads.models import Activity, Lead
from nurture.tracking.models import LeadPreferences

log = logging.getLogger(__name__)

# A claim covers about this many seconds of sending at the backend's rate, so claimed rows do not sit
# in ``sending`` for long, and is never larger than one SendGrid request.
CLAIM_SECONDS = 10
MAX_CLAIM = 1000
RECORD_EVERY = 100
# Longer than any claim can take to send (rate wait, timeouts and retries included).
DEFAULT_STALE_AFTER = timedelta(minutes=15)

_STATUS_FOR = {
    Outcome.SENT: MessageStatus.SENT,
    Outcome.FAILED_PERMANENT: MessageStatus.FAILED,
    Outcome.FAILED_RETRYABLE: MessageStatus.FAILED,
    Outcome.UNCERTAIN: MessageStatus.UNCERTAIN,
}


@dataclass
class DispatchReport:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)
    # Claimed but not sent because the backend was unavailable: back in the queue.
    requeued: list[int] = field(default_factory=list)
    # Found still ``sending`` from an earlier, interrupted dispatch: now ``uncertain``, never re-sent.
    interrupted: list[int] = field(default_factory=list)
    backend_error: str | None = None

    def summary(self) -> str:
        parts = [
            f"{len(self.sent)} sent",
            f"{len(self.failed)} failed",
            f"{len(self.uncertain)} uncertain",
            f"{len(self.suppressed)} suppressed",
        ]
        if self.requeued:
            parts.append(f"{len(self.requeued)} back in the queue")
        if self.interrupted:
            parts.append(f"{len(self.interrupted)} interrupted earlier, now uncertain")
        line = ", ".join(parts)
        return f"{line}; backend unavailable: {self.backend_error}" if self.backend_error else line


@dataclass(frozen=True)
class _Claimed:
    """What the result transaction needs to know about a message besides its result."""

    lead_id: int
    campaign: str | None
    template: str
    template_version: str
    subject: str


def mark_interrupted(session: Session, clock: Clock, stale_after: timedelta = DEFAULT_STALE_AFTER) -> list[int]:
    """Rows still ``sending`` long after their claim: their dispatcher died. Mark them uncertain."""
    cutoff = clock.now() - stale_after
    ids = session.scalars(
        update(Message)
        .where(Message.status == MessageStatus.SENDING, Message.claimed_at < cutoff)
        .values(
            status=MessageStatus.UNCERTAIN,
            error="interrupted while sending: the backend may or may not have accepted it; not sent again",
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()
    for message_id in ids:
        log.warning("message %s was interrupted while sending; marked uncertain", message_id)
    return list(ids)


def _claim(
    session: Session, clock: Clock, mailer: Mailer, size: int, report: DispatchReport
) -> tuple[list[ClearedEmail], dict[int, _Claimed]] | None:
    """Claim up to ``size`` queued rows in the caller's transaction; None when the queue is empty."""
    now = clock.now()
    # The lead's own emails wait while it has paused them; the claim re-reads the pause, like lead status.
    paused = (
        select(LeadPreferences.lead_id)
        .join(Lead, Lead.id == LeadPreferences.lead_id)
        .where(
            LeadPreferences.lead_id == Message.lead_id,
            LeadPreferences.paused_until > now,
            Lead.email == Message.to_address,
        )
    )
    pick = (
        select(Message.id)
        .where(Message.status == MessageStatus.QUEUED, ~exists(paused))
        .order_by(Message.created_at, Message.id)
        .limit(size)
    )
    mark_sending = (
        update(Message)
        .values(status=MessageStatus.SENDING, claimed_at=now, provider=mailer.name)
        .execution_options(synchronize_session=False)
    )
    ids: Sequence[int]
    if is_postgresql(session):
        # Lock first, then update: a LIMIT ... SKIP LOCKED subquery inside the UPDATE may be re-run
        # by the planner and claim more rows than asked for.
        ids = session.scalars(pick.with_for_update(skip_locked=True)).all()
        if ids:
            session.execute(mark_sending.where(among(session, Message.id, ids)))
    else:
        # SQLite: one statement, so the claim takes the single write lock before reading the queue.
        ids = session.scalars(mark_sending.where(Message.id.in_(pick)).returning(Message.id)).all()
    if not ids:
        return None
    rows = session.execute(
        select(
            # The fields of a StoredRow, in its order, then the template.
            Message.id,
            Message.idempotency_key,
            Message.template_version,
            Message.lead_id,
            Message.to_address,
            Message.subject,
            Message.campaign,
            Message.template,
        )
        .where(among(session, Message.id, ids))
        .order_by(Message.template, Message.template_version, Message.created_at, Message.id)
    ).all()
    composed = COMPOSED.take([StoredRow(*row[:7]) for row in rows])
    stored = _stored_contents(session, [row.id for row in rows if row.id not in composed])
    emails: list[OutgoingEmail] = []
    claimed: dict[int, _Claimed] = {}
    for row in rows:
        email = composed.get(row.id)
        if email is None:
            content = stored.get(row.id)
            if content is None:
                continue  # a message without content is never sent; it stays claimed and ends uncertain
            html, text, envelope = content
            email = OutgoingEmail.from_stored(
                message_id=row.id,
                lead_id=row.lead_id,
                to_address=row.to_address,
                subject=row.subject,
                html=html,
                text=text,
                campaign=row.campaign,
                envelope=envelope,
            )
        emails.append(email)
        claimed[row.id] = _Claimed(row.lead_id, row.campaign, row.template, row.template_version, row.subject)
    # The last gate: lead status re-read in the transaction that claims the rows.
    clearance = clear_for_sending(session, emails)
    blocked = [
        {"id": message_id, "status": MessageStatus.SUPPRESSED, "error": reason, "retryable": None}
        for message_id, reason in clearance.suppressed.items()
    ] + [
        {"id": message_id, "status": MessageStatus.FAILED, "error": reason, "retryable": False}
        for message_id, reason in clearance.refused.items()
    ]
    if blocked:
        session.execute(update(Message), blocked)
    report.suppressed.extend(clearance.suppressed)
    report.failed.extend(clearance.refused)
    return clearance.cleared, claimed


def _stored_contents(session: Session, message_ids: Sequence[int]) -> dict[int, tuple[str, str, Any]]:
    """message id -> (html, text, envelope) as stored in the outbox."""
    if not message_ids:
        return {}
    found = session.execute(
        select(MessageContent.message_id, MessageContent.html, MessageContent.text, MessageContent.envelope).where(
            among(session, MessageContent.message_id, message_ids)
        )
    )
    return {message_id: (html, text, envelope) for message_id, html, text, envelope in found}


def _record(session: Session, results: Sequence[tuple[DeliveryResult, datetime]], claimed: dict[int, _Claimed]) -> None:
    """Write results, each with the time the backend reported it."""
    rows: list[dict[str, Any]] = []
    activities: list[dict[str, Any]] = []
    for result, at in results:
        sent = result.outcome is Outcome.SENT
        rows.append(
            {
                "id": result.message_id,
                "status": _STATUS_FOR[result.outcome],
                "sent_at": at if sent else None,
                "provider_message_id": result.provider_message_id,
                "error": result.reason or None,
                "retryable": {Outcome.FAILED_RETRYABLE: True, Outcome.FAILED_PERMANENT: False}.get(result.outcome),
            }
        )
        if sent:
            about = claimed[result.message_id]
            activities.append(
                {
                    "lead_id": about.lead_id,
                    "kind": "email_sent",
                    "occurred_at": at,
                    "campaign": about.campaign,
                    "data": {
                        "message_id": result.message_id,
                        "template": about.template,
                        "template_version": about.template_version,
                        "subject": about.subject,
                    },
                }
            )
    update_rows(session, Message.__table__, rows)
    insert_rows(session, Activity.__table__, activities)


def _requeue(session: Session, message_ids: Sequence[int], reason: str) -> None:
    session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED, claimed_at=None, provider=None, error=reason)
        .execution_options(synchronize_session=False)
    )


class _Recorder:
    """Buffers results and writes them in batches: one commit per email would cap throughput."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock, claimed: dict[int, _Claimed]) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._claimed = claimed
        self._pending: list[tuple[DeliveryResult, datetime]] = []

    def add(self, results: Sequence[DeliveryResult], report: DispatchReport) -> None:
        at = self._clock.now()
        for result in results:
            if result.outcome is Outcome.SENT:
                report.sent.append(result.message_id)
            elif result.outcome is Outcome.UNCERTAIN:
                report.uncertain.append(result.message_id)
                log.warning("message %s is uncertain: %s", result.message_id, result.reason)
            else:
                report.failed.append(result.message_id)
        self._pending += [(result, at) for result in results]
        if len(self._pending) >= RECORD_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self._session_factory() as session:
            _record(session, self._pending, self._claimed)
            session.commit()
        self._pending = []


def _send_claimed(
    session_factory: sessionmaker[Session],
    clock: Clock,
    mailer: Mailer,
    connection: MailConnection,
    limiter: SendRateLimiter,
    cleared: list[ClearedEmail],
    claimed: dict[int, _Claimed],
    report: DispatchReport,
) -> None:
    recorder = _Recorder(session_factory, clock, claimed)
    not_handed = {item.email.message_id for item in cleared}
    in_flight: list[int] = []
    try:
        for call in mailer.plan(cleared):
            limiter.acquire(len(call))
            in_flight = [item.email.message_id for item in call]
            not_handed.difference_update(in_flight)
            try:
                results = connection.send(call)
            except MailBackendUnavailable as exc:
                # Nothing of this call went out: it waits in the queue with the rest.
                not_handed.update(in_flight)
                in_flight = []
                report.backend_error = str(exc)
                log.error("mail backend %s unavailable: %s", mailer.name, exc)
                break
            in_flight = []
            recorder.add(results, report)
    except BaseException as exc:
        # A bug or an interrupt while a call was out: its fate is unknown.
        if in_flight:
            reason = f"dispatch failed while sending: {exc!r}"
            recorder.add(
                [DeliveryResult(message_id, Outcome.UNCERTAIN, reason) for message_id in in_flight], report
            )
        raise
    finally:
        recorder.flush()
        if not_handed:
            requeued = sorted(not_handed)
            with session_factory() as session:
                _requeue(session, requeued, f"not sent: {report.backend_error or 'dispatch stopped'}")
                session.commit()
            report.requeued += requeued


def dispatch_queued(
    session_factory: sessionmaker[Session],
    clock: Clock,
    mailer: Mailer,
    limit: int = 500,
    *,
    sleeper: Sleeper = time.sleep,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> DispatchReport:
    """Send up to ``limit`` queued messages through ``mailer`` at its configured rate."""
    report = DispatchReport()
    with session_factory() as session:
        report.interrupted = mark_interrupted(session, clock, stale_after)
        session.commit()
    limiter = SendRateLimiter(session_factory, clock, mailer.name, mailer.send_rate, sleeper)
    claim_size = max(1, min(MAX_CLAIM, math.ceil(mailer.send_rate * CLAIM_SECONDS)))
    remaining = limit
    with mailer.connect() as connection:
        while remaining > 0 and report.backend_error is None:
            with session_factory() as session:
                claim = _claim(session, clock, mailer, min(remaining, claim_size), report)
                session.commit()
            if claim is None:
                break
            cleared, claimed = claim
            remaining -= len(claimed)
            _send_claimed(session_factory, clock, mailer, connection, limiter, cleared, claimed, report)
    return report
