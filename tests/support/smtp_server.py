"""A real SMTP server on 127.0.0.1 (aiosmtpd in a thread) that records what it receives."""

from __future__ import annotations

import email
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    data: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Accepts everything, except recipients told to answer otherwise (``reply_to_rcpt``)."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    reply_to_rcpt: dict[str, str] = field(default_factory=dict)
    reply_to_mail: str | None = None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.reply_to_mail:
            return self.reply_to_mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reply_to_rcpt:
            return self.reply_to_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.messages.append(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                data=data,
                peer=session.peer,
            )
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    @property
    def connections(self) -> int:
        """Distinct client connections that delivered a message."""
        return len({message.peer for message in self.messages})


class LoopbackController(Controller):
    """Binds port 0 and learns the port the system picked before the readiness probe."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class PasswordAuthenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()
        self.logins: list[bytes] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username,
            self.password,
        ):
            self.logins.append(auth_data.login)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass
class RunningSmtpServer:
    controller: LoopbackController
    handler: RecordingHandler

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages


def start_smtp_server(
    handler: RecordingHandler | None = None,
    *,
    tls_context: ssl.SSLContext | None = None,
    authenticator: PasswordAuthenticator | None = None,
    require_starttls: bool = False,
) -> RunningSmtpServer:
    handler = handler or RecordingHandler()
    controller = LoopbackController(
        handler,
        hostname="127.0.0.1",
        port=0,
        enable_SMTPUTF8=True,
        tls_context=tls_context,
        require_starttls=require_starttls,
        authenticator=authenticator,
        auth_require_tls=tls_context is not None,
        ready_timeout=10,
    )
    controller.start()
    return RunningSmtpServer(controller, handler)
