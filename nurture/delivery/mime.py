"""The RFC 5322 form of an ``OutgoingEmail``: multipart/alternative (text, then HTML), UTF-8 bodies,
RFC 2047-encoded non-ASCII subjects and display names, CRLF line endings.

Used by the backends that speak MIME (file and SMTP); SendGrid builds its own from JSON."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, EmailPolicy
from email.utils import format_datetime

from nurture.delivery.outgoing import OutgoingEmail


class UriListHeader(UnstructuredHeader):
    """List-Unsubscribe holds URLs longer than a header line. The stock folder RFC 2047-encodes such
    long tokens, which breaks the URLs for every mail client; this one folds only between list items
    (RFC 2369 allows whitespace there) and never encodes: the URLs are ASCII by construction."""

    def fold(self, *, policy: EmailPolicy) -> str:  # type: ignore[override]
        items = [item.strip() for item in str(self).split(">,")]
        items = [item if item.endswith(">") else f"{item}>" for item in items]
        return f"{self.name}: " + f",{policy.linesep} ".join(items) + policy.linesep


def _policy(base: EmailPolicy) -> EmailPolicy:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", UriListHeader)
    return base.clone(header_factory=registry)  # type: ignore[no-any-return]


# 7bit: bodies go out quoted-printable or base64, never raw 8-bit, which servers without 8BITMIME mangle.
ASCII_POLICY = _policy(SMTP.clone(cte_type="7bit"))
# For internationalised addresses, sent only to servers announcing SMTPUTF8 (RFC 6531).
UTF8_POLICY = _policy(SMTPUTF8)


def needs_smtputf8(email: OutgoingEmail) -> bool:
    return not (email.to_address.isascii() and email.sender.address.isascii())


def build_mime(email: OutgoingEmail, date: datetime) -> EmailMessage:
    policy = UTF8_POLICY if needs_smtputf8(email) else ASCII_POLICY
    message = EmailMessage(policy=policy)
    message["From"] = email.sender.header_address()
    message["To"] = email.recipient.header_address()
    if email.reply_to:
        message["Reply-To"] = email.reply_to.header_address()
    message["Subject"] = email.subject
    message["Date"] = format_datetime(date)
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text, subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    for part in message.iter_parts():
        # add_alternative copies MIME-Version into the part; it belongs on the top level only.
        del part["MIME-Version"]
    return message


def mime_bytes(email: OutgoingEmail, date: datetime) -> bytes:
    return build_mime(email, date).as_bytes()
