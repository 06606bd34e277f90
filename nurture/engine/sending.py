"""The emails of a batch of send steps, written to the outbox in the batch's transaction, in bulk.

This is ``nurture.delivery.outbox.queue_message`` for many messages at once, with the same contract:
idempotent on the key, the database assigns each id, the email is composed with its id (tracking links
carry it), nothing is sent before the caller commits. Where queue_message does a handful of statements per
message, this does a few per batch: one INSERT ... RETURNING of every row, one UPDATE of their subjects
and links, one INSERT of their contents. A message whose email cannot be made (a template problem, a
compliance problem) stays as a ``failed`` row that names the problem; the step tries again later with
the next attempt number.

A step's ``subject`` (and ``preheader``) is a one-line Jinja template of the campaign, rendered in the
template sandbox with the same variables as the email, and replaces the template's own subject. The
rendered values are also given to the template as ``campaign.subject`` and ``campaign.preheader``."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from nurture.campaigns.definition import template_file
from nurture.db import is_postgresql
from nurture.delivery.bulk import (
    driver_connection,
    insert_rows,
    insert_rows_postgresql,
    prefer_lz4,
    update_rows,
)
from nurture.delivery.compose import compose_email
from nurture.delivery.handoff import Composed, publish_after_commit
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.delivery.outgoing import OutgoingEmail
from nurture.engine.context import EngineContext, LoadedCampaign, reading_stored_templates
from nurture.errors import NurtureError
from nurture.leads.models import Lead
from nurture.rendering import CompiledEmail, LeadView, LinkOptions, RenderedEmail, lead_view
from nurture.rendering.context import SpecialUrls, build_context
from nurture.rendering.footer import FooterProof
from nurture.rendering.links import TrackingUrls, unescape_text
from nurture.rendering.sandbox import BudgetedTemplate

log = logging.getLogger(__name__)

STEP_ARG = "nurture_step"
VARIANT_ARG = "nurture_variant"
MAX_LINE_CHARS = 998  # a header line's limit (RFC 5322)
# Emails composed per chunk written while the next chunk is composed (PostgreSQL).
WRITE_CHUNK = 100

messages_table = Message.__table__
contents_table = MessageContent.__table__


def idempotency_key(enrollment_id: int, step_id: str, attempt: int) -> str:
    return f"enrollment:{enrollment_id}:step:{step_id}:attempt:{attempt}"


def ab_roll(enrollment_id: int, step_id: str) -> float:
    """A uniform draw in [0, 1) fixed by the enrollment and step: a rerun picks the same variant."""
    digest = hashlib.sha256(f"{enrollment_id}:{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class OwnerAlertUrls:
    """URLs for an alert to a lead's owner: nothing tracked (the owner's clicks are not the lead's), and
    the footer's unsubscribe and preferences links open the lead in nurture instead of acting on the lead's
    subscription, which the owner must never change by accident."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _lead_page(self, lead_id: int) -> str:
        return f"{self.base_url}/leads/{lead_id}"

    def click_prefix(self, message_id: int) -> str:
        raise AssertionError("owner alerts are not tracked")

    def open_url(self, message_id: int) -> str:
        raise AssertionError("owner alerts are not tracked")

    def view_url(self, message_id: int) -> str:
        return ""

    def unsubscribe_url(self, lead_id: int) -> str:
        return self._lead_page(lead_id)

    def preferences_url(self, lead_id: int) -> str:
        return self._lead_page(lead_id)


UNTRACKED = LinkOptions(track_clicks=False, track_opens=False)


@dataclass(frozen=True)
class EmailOrder:
    """One email to write: to the lead itself, or (``owner_alert``) to its owner about it."""

    key: str
    campaign: LoadedCampaign
    step_id: str
    lead: Lead
    # The lead's effective zone, for ``now`` and dates in the template.
    timezone: str
    template: str
    subject: str | None
    preheader: str | None = None
    variant: str | None = None
    to_address: str | None = None
    owner_alert: bool = False

    @property
    def address(self) -> str:
        return self.to_address or self.lead.email


@dataclass(frozen=True)
class EmailResult:
    message_id: int | None
    # Why no email could be made (the message row is ``failed`` with this error); None on success.
    error: str | None = None
    # The key had a message already: this step was written before, nothing new was made.
    existing: bool = False


class _WithSubject:
    """A rendered email under the step's own subject line (what ``compose_email`` reads), without copying it."""

    __slots__ = ("_rendered", "subject")

    def __init__(self, rendered: RenderedEmail, subject: str) -> None:
        self._rendered = rendered
        self.subject = subject

    @property
    def html(self) -> str:
        return self._rendered.html

    @property
    def text(self) -> str:
        return self._rendered.text

    @property
    def links(self) -> tuple[str, ...]:
        return self._rendered.links

    @property
    def footer(self) -> FooterProof | None:
        return self._rendered.footer


class LineTemplates:
    """Subjects and preheaders of campaign steps, compiled once in the renderer's text sandbox."""

    def __init__(self, ctx: EngineContext) -> None:
        self._environment = ctx.renderer.text_environment
        self._compiled: dict[str, BudgetedTemplate] = {}

    def render(self, source: str, context: dict[str, Any]) -> str:
        template = self._compiled.get(source)
        if template is None:
            compiled = self._environment.from_string(source)
            assert isinstance(compiled, BudgetedTemplate)
            template = self._compiled[source] = compiled
        # The sandbox escapes what it prints (its markers stay unforgeable); a header line is plain text.
        text = unescape_text(template.render(context))
        return " ".join(text.split())[:MAX_LINE_CHARS]


class MessageWriter:
    """Writes a batch's emails to the outbox; one per batch (it caches compiled templates)."""

    def __init__(self, session: Session, ctx: EngineContext, now: datetime) -> None:
        self.session = session
        self.ctx = ctx
        self.now = now
        self.lines = LineTemplates(ctx)
        self._templates: dict[str, CompiledEmail | NurtureError] = {}
        self._owner_urls = OwnerAlertUrls(ctx.settings.base_url)
        self._composed: list[Composed] = []

    def compiled(self, template: str) -> CompiledEmail | NurtureError:
        name = template_file(template)
        found = self._templates.get(name)
        if found is None:
            try:
                with reading_stored_templates(self.session):
                    found = self.ctx.renderer.compile(name)
            except NurtureError as problem:
                found = problem
            self._templates[name] = found
        return found

    def write(self, orders: Sequence[EmailOrder]) -> list[EmailResult]:
        """Write ``orders``; the results come in the same order."""
        if not orders:
            return []
        results: list[EmailResult | None] = [None] * len(orders)
        self._composed = []
        ready: list[tuple[int, CompiledEmail]] = []
        for index, order in enumerate(orders):
            compiled = self.compiled(order.template)
            if isinstance(compiled, NurtureError):
                # Nothing to version a row with; the step fails and tries again later.
                results[index] = EmailResult(None, f"template {order.template}: {compiled}")
            else:
                ready.append((index, compiled))
        if is_postgresql(self.session):
            prefer_lz4(self.session)
            self._write_with_reserved_ids(orders, ready, results)
        else:
            self._write_then_fill(orders, ready, results)
        # Once committed, the dispatcher of this process takes these emails as they are (see handoff).
        publish_after_commit(self.session, self._composed)
        return [result for result in results if result is not None]

    def _row(self, order: EmailOrder, compiled: CompiledEmail) -> dict[str, Any]:
        return {
            "lead_id": order.lead.id,
            "to_address": order.address,
            "template": order.template,
            "template_version": compiled.version,
            "subject": "",
            "status": MessageStatus.QUEUED,
            "idempotency_key": order.key,
            "campaign": order.campaign.slug,
            "created_at": self.now,
        }

    def _made(
        self, order: EmailOrder, message_id: int
    ) -> tuple[dict[str, Any], dict[str, Any] | None, str | None, OutgoingEmail | None]:
        """Compose the email of ``message_id``: (column values, content row or None, error or None, email)."""
        try:
            email = self._compose(order, message_id)
        except NurtureError as problem:
            error = str(problem)
            log.warning("message %s (%s) not made: %s", message_id, order.key, error)
            failed = {"subject": "", "links": None, "status": MessageStatus.FAILED, "error": f"not sent: {error}",
                      "retryable": True}  # fmt: skip
            return failed, None, error, None
        filled = {"subject": email.subject, "links": list(email.links) or None, "status": MessageStatus.QUEUED,
                  "error": None, "retryable": None}  # fmt: skip
        content = {"message_id": message_id, "html": email.html, "text": email.text, "envelope": email.envelope()}
        return filled, content, None, email

    def _write_with_reserved_ids(
        self, orders: Sequence[EmailOrder], ready: list[tuple[int, CompiledEmail]], results: list[EmailResult | None]
    ) -> None:
        """PostgreSQL: take the ids from the table's sequence first, so that each row is written once, whole.

        The rows go in chunks: while a helper thread writes one chunk's rows and contents on the transaction's
        connection (the server compressing and storing the bodies), this thread composes the next chunk, which
        needs no database. The session is not used meanwhile; ``write`` returns once every chunk is in."""
        ids = self.session.scalars(
            text("SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, :count)"),
            {"count": len(ready)},
        ).all()
        connection = driver_connection(self.session)
        dialect = self.session.get_bind().dialect
        errors: dict[int, str | None] = {}
        composed: dict[int, Composed] = {}
        chunks: list[Future[dict[str, int]]] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer") as writer:
            try:
                for start in range(0, len(ready), WRITE_CHUNK):
                    rows, contents = [], {}
                    for (index, compiled), message_id in zip(
                        ready[start : start + WRITE_CHUNK], ids[start : start + WRITE_CHUNK], strict=True
                    ):
                        filled, content, error, email = self._made(orders[index], message_id)
                        rows.append({**self._row(orders[index], compiled), **filled, "id": message_id})
                        if content is not None:
                            contents[message_id] = content
                        errors[message_id] = error
                        if email is not None:
                            composed[message_id] = Composed(orders[index].key, compiled.version, email)
                    chunks.append(writer.submit(_write_chunk, connection, dialect, rows, contents))
            finally:
                # Every chunk written (or failed) before the transaction goes on; the first failure is raised.
                wait(chunks)
        inserted: dict[str, int] = {}
        for chunk in chunks:
            inserted |= chunk.result()
        for (index, _), message_id in zip(ready, ids, strict=True):
            order = orders[index]
            if inserted.get(order.key) != message_id:
                results[index] = EmailResult(self._existing_id(order.key), existing=True)
            else:
                results[index] = EmailResult(message_id, errors[message_id])
                if message_id in composed:
                    self._composed.append(composed[message_id])

    def _write_then_fill(
        self, orders: Sequence[EmailOrder], ready: list[tuple[int, CompiledEmail]], results: list[EmailResult | None]
    ) -> None:
        """SQLite: insert the rows to learn their ids, compose, then fill the rows in."""
        inserted = self._insert([self._row(orders[index], compiled) for index, compiled in ready])
        fills: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for index, compiled in ready:
            order = orders[index]
            message_id = inserted.get(order.key)
            if message_id is None:
                results[index] = EmailResult(self._existing_id(order.key), existing=True)
                continue
            filled, content, error, email = self._made(order, message_id)
            fills.append({"id": message_id, **filled})
            if content is not None:
                contents.append(content)
            if email is not None:
                self._composed.append(Composed(order.key, compiled.version, email))
            results[index] = EmailResult(message_id, error)
        update_rows(self.session, messages_table, fills)
        insert_rows(self.session, contents_table, contents)

    def _insert(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert the rows whose key is new; key -> id of those inserted."""
        inserted = insert_rows(
            self.session,
            messages_table,
            rows,
            skip_conflicts_on=["idempotency_key"],
            returning=["id", "idempotency_key"],
        )
        return {key: message_id for message_id, key in inserted}

    def _existing_id(self, key: str) -> int | None:
        return self.session.scalar(select(Message.id).where(Message.idempotency_key == key))

    def _compose(self, order: EmailOrder, message_id: int) -> OutgoingEmail:
        lead = order.lead
        view = lead_view(lead)
        if view.timezone != order.timezone:
            # The template's ``now`` and date filters follow the zone the engine schedules the lead in.
            view = dataclasses.replace(view, timezone=order.timezone)
        urls: TrackingUrls = self._owner_urls if order.owner_alert else self.ctx.urls
        campaign = {
            "slug": order.campaign.slug,
            "name": order.campaign.name,
            "step": order.step_id,
            "variant": order.variant,
        }
        campaign |= self._lines(order, view, campaign)
        compiled = self.compiled(order.template)
        assert isinstance(compiled, CompiledEmail)
        rendered: RenderedEmail = self.ctx.renderer.render(
            compiled,
            lead=view,
            sender=self.ctx.sender,
            now=self.now,
            campaign=campaign,
            message_id=message_id,
            urls=urls,
            options=UNTRACKED if order.owner_alert else None,
        )
        content: RenderedEmail | _WithSubject = rendered
        if campaign.get("subject"):
            content = _WithSubject(rendered, campaign["subject"])
        args = {STEP_ARG: order.step_id}
        if order.variant:
            args[VARIANT_ARG] = order.variant
        return compose_email(
            content,
            settings=self.ctx.settings.delivery,
            message_id=message_id,
            lead_id=lead.id,
            to_address=order.address,
            to_name=None if order.owner_alert else (lead.full_name or None),
            # The URL the body links to, as the renderer signed it: List-Unsubscribe announces the same one.
            unsubscribe_url=rendered.unsubscribe_url,
            campaign=order.campaign.slug,
            custom_args=args,
        )

    def _lines(self, order: EmailOrder, view: LeadView, campaign: dict[str, Any]) -> dict[str, str]:
        return render_step_lines(
            self.lines, self.ctx, view, self.now, campaign, order.step_id, subject=order.subject,
            preheader=order.preheader,
        )  # fmt: skip


def render_step_lines(
    lines: LineTemplates,
    ctx: EngineContext,
    view: LeadView,
    now: datetime,
    campaign: dict[str, Any],
    step_id: str,
    *,
    subject: str | None,
    preheader: str | None,
) -> dict[str, str]:
    """A send step's own subject and preheader lines for ``view`` (the given ones only), as header lines."""
    given = {"subject": subject, "preheader": preheader}
    if not any(_is_template(line) for line in given.values()):
        return {name: " ".join(line.split())[:MAX_LINE_CHARS] for name, line in given.items() if line}
    # A subject line has no use for the special URLs: leave them empty rather than sign them.
    context = build_context(
        view,
        sender=ctx.sender,
        now=now,
        urls=NO_URLS,
        campaign=campaign,
        default_timezone=ctx.settings.default_timezone,
    )
    rendered: dict[str, str] = {}
    for name, line in given.items():
        if not line:
            continue
        try:
            rendered[name] = lines.render(line, context) if _is_template(line) else line
        except NurtureError:
            raise
        except Exception as error:  # Jinja's own errors (syntax, undefined, sandbox) in a campaign's line
            raise NurtureError(f"step {step_id} {name}: {type(error).__name__}: {error}") from None
    return rendered


def _write_chunk(
    connection: Any, dialect: Dialect, rows: list[dict[str, Any]], contents: dict[int, dict[str, Any]]
) -> dict[str, int]:
    """Insert the message rows whose key is new, then the contents of those inserted; key -> id inserted."""
    inserted = insert_rows_postgresql(
        connection,
        dialect,
        messages_table,
        rows,
        skip_conflicts_on=["idempotency_key"],
        returning=["id", "idempotency_key"],
    )
    by_key = {key: message_id for message_id, key in inserted}
    new_ids = set(by_key.values())
    insert_rows_postgresql(
        connection, dialect, contents_table, [row for message_id, row in contents.items() if message_id in new_ids]
    )
    return by_key


def _is_template(line: str | None) -> bool:
    return line is not None and any(mark in line for mark in ("{{", "{%", "{#"))


NO_URLS = SpecialUrls("", "", "")
