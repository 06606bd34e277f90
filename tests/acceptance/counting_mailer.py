"""A mail backend for the multi-process tests: each message becomes a file named by its id, created with
O_EXCL, so a message handed over twice, by any process, is caught (and logged to ``duplicates``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from nurture.delivery.mailer import DeliveryResult, MailConnection, Mailer, Outcome
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.suppression import ClearedEmail


class CountingConnection(MailConnection):
    def __init__(self, mailer: CountingMailer) -> None:
        self.mailer = mailer

    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        results = []
        for email in emails:
            path = self.mailer.outbox / str(email.message_id)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                with open(self.mailer.outbox / "duplicates", "a") as log:
                    log.write(f"{email.message_id}\n")
                results.append(DeliveryResult(email.message_id, Outcome.SENT, provider_message_id="duplicate"))
                continue
            os.write(descriptor, f"{email.to_address}\n{email.subject}\n".encode())
            os.close(descriptor)
            self.mailer.handed += 1
            if self.mailer.kill_after and self.mailer.handed >= self.mailer.kill_after:
                # Cut off mid-call: this message reached the "provider", the process dies before the answer.
                os.kill(os.getpid(), signal.SIGKILL)
            results.append(DeliveryResult(email.message_id, Outcome.SENT, provider_message_id=path.name))
        return results


class CountingMailer(Mailer):
    name = "counting"

    def __init__(self, outbox: Path, *, send_rate: float = 100_000.0, kill_after: int | None = None) -> None:
        self.outbox = outbox
        self.send_rate = send_rate
        self.kill_after = kill_after
        self.handed = 0
        outbox.mkdir(parents=True, exist_ok=True)

    def plan(self, batch: Sequence[ClearedEmail]) -> list[list[ClearedEmail]]:
        # Provider batches of 100, as an API backend would make.
        items = list(batch)
        return [items[start : start + 100] for start in range(0, len(items), 100)]

    def connect(self) -> CountingConnection:
        return CountingConnection(self)
