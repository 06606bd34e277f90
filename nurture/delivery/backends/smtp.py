"""The SMTP backend: any SMTP server (SendGrid's relay included), over implicit TLS, STARTTLS or
plain, with optional AUTH. One connection carries every message of a dispatch round.

Each message is its own transaction (MAIL, RCPT, DATA) because each body is personalised. The
reply codes decide the result: 2xx sent, 4xx retryable, 5xx permanent for a recipient; a refused
sender or refused credentials concern every message, so the backend reports itself unavailable.
Only a connection lost after the message content went out leaves the result uncertain."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl

from nurture.clock import Clock
from nurture.delivery.mailer import DeliveryResult, MailBackendUnavailable, MailConnection, Mailer, Outcome
from nurture.delivery.mime import mime_bytes, needs_smtputf8
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.settings import SmtpSecurity, SmtpServer

_QUEUE_ID = re.compile(r"queued as\s+<?([^\s>]+)", re.IGNORECASE)
_LEADING_DOT = re.compile(rb"(?m)^\.")


class _NotSent(Exception):
    """The connection failed before the message content went out."""


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _rejected(email: OutgoingEmail, code: int, reply: bytes | str, command: str) -> DeliveryResult:
    outcome = Outcome.FAILED_RETRYABLE if 400 <= code < 500 else Outcome.FAILED_PERMANENT
    return DeliveryResult(email.message_id, outcome, f"SMTP {command} answered {code} {_reply_text(reply)}".strip())


class SmtpConnection(MailConnection):
    def __init__(
        self,
        server: SmtpServer,
        clock: Clock,
        ssl_context: ssl.SSLContext | None,
        local_hostname: str | None,
    ) -> None:
        self._server = server
        self._clock = clock
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        # How many connections were opened: reuse is observable in tests and logs.
        self.connections_opened = 0

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _open(self) -> smtplib.SMTP:
        server = self._server
        where = f"SMTP server {server.host}:{server.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if server.security is SmtpSecurity.SSL:
                smtp = smtplib.SMTP_SSL(
                    server.host,
                    server.port,
                    local_hostname=self._local_hostname,
                    timeout=server.timeout,
                    context=self._context(),
                )
            else:
                smtp = smtplib.SMTP(
                    server.host, server.port, local_hostname=self._local_hostname, timeout=server.timeout
                )
            smtp.ehlo()
            if server.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if server.username:
                smtp.login(server.username, server.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(smtp)
            raise MailBackendUnavailable(
                f"{where} refused the credentials of {server.username!r}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._discard(smtp)
            raise MailBackendUnavailable(f"cannot open a session with {where}: {exc}") from None
        self.connections_opened += 1
        return smtp

    @staticmethod
    def _discard(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            smtp.close()

    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        for email in emails:
            try:
                results.append(self._send_with_one_reconnect(email))
            except MailBackendUnavailable as exc:
                if not results:
                    raise
                # Part of the call went out already, so it cannot be put back as a whole.
                done = {result.message_id for result in results}
                rest = [e for e in emails if e.message_id not in done]
                return results + DeliveryResult.for_all(rest, Outcome.FAILED_RETRYABLE, str(exc))
        return results

    def _send_with_one_reconnect(self, email: OutgoingEmail) -> DeliveryResult:
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._open()
            try:
                return self._transaction(self._smtp, email)
            except _NotSent as exc:
                # Typically the server closed an idle connection; nothing of this message was accepted.
                self._drop()
                if attempt == 2:
                    raise MailBackendUnavailable(f"SMTP connection failed twice: {exc}") from None
        raise AssertionError("unreachable")

    def _transaction(self, smtp: smtplib.SMTP, email: OutgoingEmail) -> DeliveryResult:
        utf8 = needs_smtputf8(email)
        if utf8 and not smtp.has_extn("smtputf8"):
            return DeliveryResult(
                email.message_id,
                Outcome.FAILED_PERMANENT,
                "the SMTP server does not accept internationalised addresses (no SMTPUTF8)",
            )
        content = mime_bytes(email, self._clock.now())
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        try:
            code, reply = smtp.mail(email.sender.address, options)
            if code != 250:
                self._reset(smtp)
                raise MailBackendUnavailable(
                    f"SMTP server refused the sender {email.sender.address}: {code} {_reply_text(reply)}"
                )
            code, reply = smtp.rcpt(email.to_address)
            if code not in (250, 251):
                self._reset(smtp)
                return _rejected(email, code, reply, "RCPT TO")
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._reset(smtp)
                return _rejected(email, code, reply, "DATA")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise _NotSent(str(exc) or type(exc).__name__) from None
        try:
            smtp.send(_LEADING_DOT.sub(b"..", content) + b".\r\n")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            return DeliveryResult(
                email.message_id,
                Outcome.UNCERTAIN,
                f"connection lost after the message content was sent: {exc or type(exc).__name__}",
            )
        if code != 250:
            return _rejected(email, code, reply, "end of DATA")
        text = _reply_text(reply)
        queue_id = _QUEUE_ID.search(text)
        return DeliveryResult(
            email.message_id, Outcome.SENT, provider_message_id=(queue_id.group(1) if queue_id else text)[:200]
        )

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        if self._smtp is None:
            return
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self._smtp.quit()
        self._drop()


class SmtpMailer(Mailer):
    name = "smtp"

    def __init__(
        self,
        server: SmtpServer,
        clock: Clock,
        send_rate: float,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.server = server
        self._clock = clock
        self.send_rate = send_rate
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname

    def connect(self) -> SmtpConnection:
        return SmtpConnection(self.server, self._clock, self._ssl_context, self._local_hostname)
