"""What every marketing email must carry before it may leave: a working one-click unsubscribe
(RFC 8058 headers plus a visible link) and the sender's postal address in the body.

A message that fails is refused before any send, with every problem named."""

from __future__ import annotations

import html as html_lib
import ipaddress
import re
from urllib.parse import urlsplit

from nurture.delivery.outgoing import NURTURE_MESSAGE_ID_HEADER, ONE_CLICK, OutgoingEmail
from nurture.errors import ValidationError

_TAG = re.compile(r"<[^>]*>")
_STYLE_OR_SCRIPT = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(?:^|\s)href\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)


class MarketingComplianceError(ValidationError):
    """A marketing email lacks something the law or the mailbox providers require."""


def _collapse(text: str) -> str:
    return " ".join(text.split())


def visible_text(html: str) -> str:
    """The text a reader sees, roughly: markup, comments, styles and scripts removed, entities decoded."""
    without_hidden = _STYLE_OR_SCRIPT.sub(" ", _COMMENT.sub(" ", html))
    return _collapse(html_lib.unescape(_TAG.sub(" ", without_hidden)))


def link_targets(html: str) -> set[str]:
    """The href of every anchor in ``html``, entities decoded."""
    targets = set()
    for tag in _ANCHOR.findall(html):
        found = _HREF.search(tag)
        if found:
            targets.add(html_lib.unescape(found.group(2)).strip())
    return targets


def unsubscribe_url_problem(url: str) -> str | None:
    """RFC 8058 asks for an HTTPS URI; plain http is accepted only for a server on this machine."""
    parts = urlsplit(url)
    if not url.isascii() or any(c.isspace() for c in url) or not parts.hostname:
        return f"unsubscribe URL {url!r} is not an absolute ASCII URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http":
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return None
        except ValueError:
            if parts.hostname == "localhost":
                return None
    return f"unsubscribe URL {url!r} must use https"


def marketing_problems(email: OutgoingEmail) -> list[str]:
    problems: list[str] = []
    url = email.unsubscribe_url
    url_problem = unsubscribe_url_problem(url)
    if url_problem:
        problems.append(url_problem)
    header = email.headers.get("List-Unsubscribe", "")
    if f"<{url}>" not in header:
        problems.append("List-Unsubscribe header does not announce the unsubscribe URL")
    if email.headers.get("List-Unsubscribe-Post") != ONE_CLICK:
        problems.append(f"List-Unsubscribe-Post header must be {ONE_CLICK!r}")
    for name in ("List-Id", "Message-ID", NURTURE_MESSAGE_ID_HEADER):
        if not email.headers.get(name):
            problems.append(f"{name} header is missing")
    if url not in link_targets(_COMMENT.sub(" ", email.html)):
        problems.append("HTML body has no link to its unsubscribe URL")
    if url not in email.text:
        problems.append("text body does not show its unsubscribe URL")
    address = _collapse(email.postal_address)
    if not address:
        problems.append("no postal address configured (NURTURE_POSTAL_ADDRESS)")
    else:
        if address not in visible_text(email.html):
            problems.append(f"HTML body does not show the postal address {address!r}")
        if address not in _collapse(email.text):
            problems.append(f"text body does not show the postal address {address!r}")
    return problems


def check_marketing_email(email: OutgoingEmail, where: str | None = None) -> None:
    """Raise ``MarketingComplianceError`` naming every problem of ``email``."""
    problems = marketing_problems(email)
    if problems:
        raise MarketingComplianceError("; ".join(problems), where=where or f"message {email.message_id}")
