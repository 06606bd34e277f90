"""Composed emails handed from the transaction that wrote them to the dispatcher of the same process, so that
dispatch neither reads their content back from the outbox nor checks it again.

The campaign engine composes each email (and compliance checks it, cheaply, on the renderer's proof of the
footer) in the transaction that writes its message row. Once that transaction has committed, the very
``OutgoingEmail`` objects wait here, by message id, for the dispatcher's claim. A claim still decides which
rows go out (the status change, committed before any send, is what makes each email go at most once) and the
suppression gate still re-reads lead status in that claim; only the content comes from memory when it is here,
and from ``message_contents`` otherwise: after a restart, in another process, or once this bounded store
dropped it. An entry is used only for the row it was composed for (same idempotency key, template version,
lead, address, subject and campaign), so an id written again after a rollback can never pick up someone else's email.

Nothing is published for a transaction that rolled back: the entries wait on the session until it commits."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from nurture.delivery.outgoing import OutgoingEmail

# About 25 KB each: a few claims' worth, bounded whatever the backlog.
DEFAULT_CAPACITY = 2000
_PENDING = "nurture.delivery.handoff.pending"


@dataclass(frozen=True, slots=True)
class Composed:
    idempotency_key: str
    template_version: str
    email: OutgoingEmail


@dataclass(frozen=True, slots=True)
class StoredRow:
    """The message columns a composed email must agree with to stand for the row."""

    id: int
    idempotency_key: str
    template_version: str
    lead_id: int
    to_address: str
    subject: str
    campaign: str | None


class ComposedEmails:
    """Committed, composed emails by message id; the oldest dropped beyond ``capacity``. Thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._emails: OrderedDict[int, Composed] = OrderedDict()

    def __len__(self) -> int:
        return len(self._emails)

    def publish(self, composed: Iterable[Composed]) -> None:
        with self._lock:
            for item in composed:
                self._emails[item.email.message_id] = item
            while len(self._emails) > self.capacity:
                self._emails.popitem(last=False)

    def take(self, rows: Sequence[StoredRow]) -> dict[int, OutgoingEmail]:
        """The emails composed for these rows, removed from the store; rows without one are left out."""
        found: dict[int, OutgoingEmail] = {}
        with self._lock:
            for row in rows:
                item = self._emails.pop(row.id, None)
                if item is None:
                    continue
                email = item.email
                composed_for = StoredRow(
                    email.message_id,
                    item.idempotency_key,
                    item.template_version,
                    email.lead_id,
                    email.to_address,
                    email.subject,
                    email.campaign,
                )
                if composed_for == row:
                    found[row.id] = email
        return found

    def clear(self) -> None:
        with self._lock:
            self._emails.clear()


# The store of this process: the engine's writer publishes to it, dispatch_queued takes from it.
COMPOSED = ComposedEmails()


def _publish(session: Session) -> None:
    pending: list[Composed] = session.info.pop(_PENDING, [])
    if pending:
        COMPOSED.publish(pending)


def _discard_unless_committed(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended (after ``_publish`` when it committed): what is left was rolled back
    or closed without a commit."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def publish_after_commit(session: Session, composed: Sequence[Composed]) -> None:
    """Publish ``composed`` once ``session``'s transaction commits; forget them if it rolls back."""
    if not composed:
        return
    session.connection()  # the transaction they belong to has begun, so its end is seen whatever it is
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        if not event.contains(session, "after_commit", _publish):
            event.listen(session, "after_commit", _publish)
            event.listen(session, "after_transaction_end", _discard_unless_committed)
    pending.extend(composed)
