"""Delivery settings, read from environment variables and validated at start.

``load_delivery_settings`` raises ``ConfigError`` naming the variable at fault. The backend-specific
variables are only required by the backend that uses them, so the default ``file`` backend starts
with no mail configuration at all."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from nurture.delivery.mailbox import InvalidMailbox, Mailbox, parse_mailbox
from nurture.errors import ConfigError

DEFAULT_SENDGRID_API_HOST = "https://api.sendgrid.com"
DEFAULT_SEND_RATE = 10.0
MAX_SEND_RATE = 100_000.0
DEFAULT_SMTP_TIMEOUT = 30.0
# The file backend never leaves the machine, so it needs no real sender domain.
FILE_BACKEND_SENDER = Mailbox(address="nurture@localhost", name="Nurture")
FILE_BACKEND_POSTAL_ADDRESS = "Postal address not configured (set NURTURE_POSTAL_ADDRESS)"


class BackendName(StrEnum):
    FILE = "file"
    SMTP = "smtp"
    SENDGRID = "sendgrid"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: SmtpSecurity
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_SMTP_TIMEOUT


@dataclass(frozen=True)
class DeliverySettings:
    backend: BackendName = BackendName.FILE
    outbox_dir: Path = Path("instance/outbox")
    smtp: SmtpServer | None = None
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_api_host: str = DEFAULT_SENDGRID_API_HOST
    sender: Mailbox = FILE_BACKEND_SENDER
    reply_to: Mailbox | None = None
    # Shown in every marketing email (CAN-SPAM and similar laws); empty only for the file backend.
    postal_address: str = ""
    # RFC 2919 List-Id header value, e.g. "Acme news <news.acme.example>".
    list_id: str = "<nurture.localhost>"
    unsubscribe_mailto: str | None = None
    # Messages per second, per backend, shared by every worker process.
    send_rate: float = DEFAULT_SEND_RATE


def _is_loopback(host: str) -> bool:
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_backend(name: str, raw: str) -> BackendName:
    try:
        return BackendName(raw.strip().lower())
    except ValueError:
        choices = ", ".join(b.value for b in BackendName)
        raise ConfigError(f"{name}: must be one of {choices} (got {raw!r})") from None


def parse_smtp_url(name: str, raw: str) -> SmtpServer:
    """``smtp://user:pass@host:587?starttls=1``, ``smtps://host:465``, ``smtp://host:25``.

    Query options: ``starttls`` (1/0) and ``timeout`` (seconds). Credentials are refused on an
    unencrypted connection unless the server is on this machine."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ConfigError(f"{name}: must start with smtp:// or smtps:// (got {parts.scheme or 'no'} scheme)")
    if not parts.hostname:
        raise ConfigError(f"{name}: has no host name")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - {"starttls", "timeout"}
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; known: starttls, timeout")
    starttls = _parse_flag(name, "starttls", options.get("starttls", "0"))
    if parts.scheme == "smtps" and starttls:
        raise ConfigError(f"{name}: smtps:// is already encrypted; drop ?starttls=1 or use smtp://")
    security = SmtpSecurity.SSL if parts.scheme == "smtps" else SmtpSecurity.STARTTLS if starttls else SmtpSecurity.NONE
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: invalid port") from None
    if port is None:
        port = {SmtpSecurity.SSL: 465, SmtpSecurity.STARTTLS: 587, SmtpSecurity.NONE: 25}[security]
    timeout = _parse_positive(name, "timeout", options.get("timeout", str(DEFAULT_SMTP_TIMEOUT)))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username and password is None:
        raise ConfigError(f"{name}: user {username!r} has no password (smtp://user:password@host)")
    if username and security is SmtpSecurity.NONE and not _is_loopback(parts.hostname):
        raise ConfigError(f"{name}: credentials would travel unencrypted; use smtps:// or add ?starttls=1")
    return SmtpServer(parts.hostname, port, security, username, password, timeout)


def _parse_flag(name: str, option: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}: option {option} must be 1 or 0 (got {raw!r})")


def _parse_positive(name: str, option: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: option {option} must be a positive number of seconds (got {raw!r})")
    return value


def parse_api_host(name: str, raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name}: must be an https URL such as {DEFAULT_SENDGRID_API_HOST} (got {raw!r})")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(f"{name}: the API key would travel unencrypted; use https (http only for 127.0.0.1)")
    if parts.path.strip("/"):
        raise ConfigError(f"{name}: give only scheme, host and port; the client adds /v3/... (got {raw!r})")
    return f"{parts.scheme}://{parts.netloc}"


def parse_mailbox_setting(name: str, raw: str) -> Mailbox:
    try:
        return parse_mailbox(raw)
    except InvalidMailbox as exc:
        raise ConfigError(f"{name}: {exc} (expected 'Name <address>' or an address)") from None


def parse_list_id(name: str, raw: str) -> str:
    """RFC 2919: an optional ASCII description, then ``<label.namespace>``; a bare id gets its brackets."""
    value = raw.strip()
    if not value.isascii() or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{name}: must be printable ASCII (got {raw!r})")
    description, bracket, rest = value.partition("<")
    if not bracket:
        description, rest = "", f"{value}>"
    list_id = rest.removesuffix(">")
    if not rest.endswith(">"):
        raise ConfigError(f"{name}: missing '>' (expected 'Description <label.example.com>')")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
    if "." not in list_id or not set(list_id) <= allowed or list_id.startswith(".") or list_id.endswith("."):
        raise ConfigError(f"{name}: {list_id!r} is not a list id such as news.example.com")
    description = description.strip()
    return f"{description} <{list_id}>" if description else f"<{list_id}>"


def parse_send_rate(name: str, raw: str) -> float:
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or not 0 < rate <= MAX_SEND_RATE:
        raise ConfigError(f"{name}: must be a number of messages per second above 0 (got {raw!r})")
    return rate


def _mailto_address(name: str, raw: str) -> str:
    address = raw.strip().removeprefix("mailto:")
    return parse_mailbox_setting(name, address).address


def load_delivery_settings(environ: Mapping[str, str], instance_path: Path) -> DeliverySettings:
    """Every delivery setting from ``environ``; the file outbox lives in ``instance_path / 'outbox'``."""

    def get(name: str) -> str:
        return environ.get(name, "").strip()

    backend = parse_backend("NURTURE_MAIL_BACKEND", get("NURTURE_MAIL_BACKEND") or BackendName.FILE.value)
    smtp = parse_smtp_url("SMTP_URL", get("SMTP_URL")) if get("SMTP_URL") else None
    if backend is BackendName.SMTP and smtp is None:
        raise ConfigError("SMTP_URL: is required when NURTURE_MAIL_BACKEND=smtp (e.g. smtps://user:pass@host:465)")
    api_key = get("SENDGRID_API_KEY") or None
    if backend is BackendName.SENDGRID and api_key is None:
        raise ConfigError("SENDGRID_API_KEY: is required when NURTURE_MAIL_BACKEND=sendgrid")
    api_host = parse_api_host("SENDGRID_API_HOST", get("SENDGRID_API_HOST") or DEFAULT_SENDGRID_API_HOST)

    if get("NURTURE_MAIL_FROM"):
        sender = parse_mailbox_setting("NURTURE_MAIL_FROM", get("NURTURE_MAIL_FROM"))
    elif backend is BackendName.FILE:
        sender = FILE_BACKEND_SENDER
    else:
        raise ConfigError(f"NURTURE_MAIL_FROM: is required when NURTURE_MAIL_BACKEND={backend.value}")
    reply_to = parse_mailbox_setting("NURTURE_MAIL_REPLY_TO", get("NURTURE_MAIL_REPLY_TO")) if get(
        "NURTURE_MAIL_REPLY_TO"
    ) else None

    postal_address = " ".join(get("NURTURE_POSTAL_ADDRESS").split())
    if not postal_address and backend is BackendName.FILE:
        # Files never leave the machine; say plainly in each email what a real sender must configure.
        postal_address = FILE_BACKEND_POSTAL_ADDRESS
    if not postal_address:
        raise ConfigError(
            "NURTURE_POSTAL_ADDRESS: is required to send marketing email (the law asks for it in every message)"
        )
    list_id = parse_list_id("NURTURE_LIST_ID", get("NURTURE_LIST_ID") or f"nurture.{sender.domain}")
    mailto = _mailto_address("NURTURE_UNSUBSCRIBE_MAILTO", get("NURTURE_UNSUBSCRIBE_MAILTO")) if get(
        "NURTURE_UNSUBSCRIBE_MAILTO"
    ) else None
    rate = parse_send_rate("NURTURE_SEND_RATE", get("NURTURE_SEND_RATE") or str(DEFAULT_SEND_RATE))
    return DeliverySettings(
        backend=backend,
        outbox_dir=instance_path / "outbox",
        smtp=smtp,
        sendgrid_api_key=api_key,
        sendgrid_api_host=api_host,
        sender=sender,
        reply_to=reply_to,
        postal_address=postal_address,
        list_id=list_id,
        unsubscribe_mailto=mailto,
        send_rate=rate,
    )
