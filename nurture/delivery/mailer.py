"""The one interface every backend implements, and the per-message result it reports.

A ``Mailer`` plans provider calls and opens a ``MailConnection``; the connection sends one provider
call at a time (one SMTP transaction, one API request) and reports a ``DeliveryResult`` per message.
Only the dispatcher calls them, with emails it cleared (see ``suppression``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.suppression import ClearedEmail, unwrap_cleared
from nurture.errors import NurtureError

# Waits go through this so tests never sleep (the rate limiter and backoff use it).
Sleeper = Callable[[float], None]


class Outcome(StrEnum):
    SENT = "sent"
    FAILED_PERMANENT = "failed_permanent"
    FAILED_RETRYABLE = "failed_retryable"
    # The request left but no answer came back: it may have been accepted. Never sent again.
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class DeliveryResult:
    message_id: int
    outcome: Outcome
    reason: str = ""
    provider_message_id: str | None = None

    @classmethod
    def for_all(
        cls, emails: Sequence[OutgoingEmail], outcome: Outcome, reason: str = "", provider_message_id: str | None = None
    ) -> list[DeliveryResult]:
        return [cls(email.message_id, outcome, reason, provider_message_id) for email in emails]


class MailBackendUnavailable(NurtureError):
    """The backend cannot take mail now (unreachable, credentials refused) and nothing of the current
    call was sent: the dispatcher puts the messages back in the queue and stops."""


class MailConnection(ABC):
    """One session with a backend, reused for every call of a dispatch round."""

    def send(self, batch: Sequence[ClearedEmail]) -> list[DeliveryResult]:
        emails = unwrap_cleared(batch)
        if not emails:
            return []
        results = self._deliver(emails)
        if sorted(r.message_id for r in results) != sorted(e.message_id for e in emails):
            raise RuntimeError(f"{type(self).__name__} must report exactly one result per message")
        return results

    @abstractmethod
    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        """Send one provider call. Expected failures become results; raise MailBackendUnavailable
        only when nothing was sent."""

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release the session (SMTP QUIT, HTTP connection close)."""

    def __enter__(self) -> MailConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Mailer(ABC):
    # The provider name stored on messages and used as the send-rate key.
    name: str
    # Messages per second for this backend, across every worker process.
    send_rate: float

    def plan(self, batch: Sequence[ClearedEmail]) -> list[list[ClearedEmail]]:
        """Split a batch into provider calls; one message per call unless the provider can do better."""
        return [[item] for item in batch]

    @abstractmethod
    def connect(self) -> MailConnection:
        """A session that connects lazily, on its first send."""
