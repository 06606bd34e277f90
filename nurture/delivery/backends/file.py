"""The file backend: each message becomes ``<outbox>/<message id>.eml``, the default of the embedded
setup. Writes are atomic (temporary file, fsync, rename), so a reader never sees half a message."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nurture.clock import Clock
from nurture.delivery.mailer import DeliveryResult, MailConnection, Mailer, Outcome
from nurture.delivery.mime import mime_bytes
from nurture.delivery.outgoing import OutgoingEmail


def write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class FileConnection(MailConnection):
    def __init__(self, outbox: Path, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock

    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        try:
            self._outbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return DeliveryResult.for_all(emails, Outcome.FAILED_RETRYABLE, f"cannot create {self._outbox}: {exc}")
        results = []
        for email in emails:
            path = self._outbox / f"{email.message_id}.eml"
            try:
                write_atomically(path, mime_bytes(email, self._clock.now()))
            except OSError as exc:
                reason = f"cannot write {path}: {exc}"
                results.append(DeliveryResult(email.message_id, Outcome.FAILED_RETRYABLE, reason))
            else:
                results.append(DeliveryResult(email.message_id, Outcome.SENT, provider_message_id=path.name))
        return results


class FileMailer(Mailer):
    name = "file"

    def __init__(self, outbox: Path, clock: Clock, send_rate: float) -> None:
        self.outbox = outbox
        self._clock = clock
        self.send_rate = send_rate

    def connect(self) -> FileConnection:
        return FileConnection(self.outbox, self._clock)
