"""What every marketing email must carry before it may leave: a working one-click unsubscribe
(RFC 8058 headers plus a visible link) and the sender's postal address in the body.

A message that fails is refused before any send, with every problem named.

The HTML body's link and address are the costly part. An email whose renderer vouches for them (the compiled
template proves every render prints both, see ``nurture.rendering.footer``) is checked on its cheap facts only:
the proof is for this very HTML string, names this URL and this postal address. Otherwise, for example for
content read back from the outbox, the checks look first for the link and the address where a rendered email
has them (an anchor's first href, text between tags) and scan the whole body only when that does not find them:
the answer is the same as a full scan, at a tenth of its cost."""

from __future__ import annotations

import html as html_lib
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from nurture.delivery.outgoing import NURTURE_MESSAGE_ID_HEADER, ONE_CLICK, OutgoingEmail
from nurture.errors import ValidationError

_TAG = re.compile(r"<[^>]*>")
_STYLE_OR_SCRIPT = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(?:^|\s)href\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
# An https URL whose host is plain letters, digits, dots and dashes, all printable ASCII: what urlsplit would
# accept below, told without it (it was most of the cost of checking an email that carries a footer proof).
_PLAIN_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(?:[/?#][\x21-\x7e]*)?")


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


def _spellings(text: str) -> list[str]:
    """How ``text`` can be written in HTML: as it is, escaped by markupsafe, escaped by html.escape."""
    markupsafe_escaped = (
        text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;").replace('"', "&#34;")
    )
    return list(dict.fromkeys((text, markupsafe_escaped, html_lib.escape(text))))


def _outside_tags(html: bytes, start: int, end: int) -> bool:
    """No tag (``<...>``, as _TAG removes them) covers ``html[start:end]``, which holds no ``<`` or ``>``."""
    return html.rfind(b">", 0, start) >= html.rfind(b"<", 0, start)


def _is_opener(lowered: bytes, position: int, name: bytes) -> bool:
    following = lowered[position + len(name) + 1 : position + len(name) + 2]
    return not (following.isalnum() or following == b"_")


def _is_closer(lowered: bytes, position: int, name: bytes) -> bool:
    rest = lowered[position + len(name) + 2 : position + len(name) + 66]
    return rest.lstrip().startswith(b">")


def _last(lowered: bytes, prefix: bytes, before: int, valid: Callable[[bytes, int, bytes], bool]) -> int:
    position = lowered.rfind(prefix, 0, before)
    while position >= 0 and not valid(lowered, position, prefix.lstrip(b"</")):
        position = lowered.rfind(prefix, 0, position)
    return position


def _outside_hidden_elements(lowered: bytes, position: int) -> bool:
    """No ``<head>``, ``<style>`` or ``<script>`` element (as _STYLE_OR_SCRIPT removes them) is open at
    ``position``: for each, its last opening tag before it was closed before it."""
    for name in (b"head", b"style", b"script"):
        opened = _last(lowered, b"<" + name, position, _is_opener)
        if opened >= 0 and _last(lowered, b"</" + name, position, _is_closer) < opened:
            return False
    return True


def links_to(html: str, url: str) -> bool:
    """``url in link_targets(html)``: first the anchors that contain the URL, then every anchor."""
    for spelling in _spellings(url):
        position = html.find(spelling)
        while position >= 0:
            start = html.rfind("<", 0, position)
            end = html.find(">", position)
            if start >= 0 and end >= 0 and html.find(">", start, position) < 0:
                tag = html[start : end + 1]
                found = _HREF.search(tag) if _ANCHOR.fullmatch(tag) and "<" not in tag[1:] else None
                # Where findall finds it too: no tag is open at its "<".
                if (
                    found
                    and html_lib.unescape(found.group(2)).strip() == url
                    and html.rfind(">", 0, start) >= html.rfind("<", 0, start)
                ):
                    return True
            position = html.find(spelling, position + 1)
    return url in link_targets(html)


def shows(html: str, text: str) -> bool:
    """``text in visible_text(html)`` for collapsed ``text``: first where it is written between tags, then the
    whole visible text."""
    if "\u017f" in html:  # the long s matches "s" case-insensitively: <ſtyle> is a style element to the regex
        return text in visible_text(html)
    raw = html.encode()
    lowered = raw.lower()
    for spelling in _spellings(text):
        if "<" in spelling or ">" in spelling or html_lib.unescape(spelling) != text:
            continue
        needle = spelling.encode()
        position = raw.find(needle)
        while position >= 0:
            before = raw[position - 1 : position]
            if (
                (not before or before.isspace() or before in (b">", b";"))
                and _outside_tags(raw, position, position + len(needle))
                and _outside_hidden_elements(lowered, position)
            ):
                return True
            position = raw.find(needle, position + 1)
    return text in visible_text(html)


def unsubscribe_url_problem(url: str) -> str | None:
    """RFC 8058 asks for an HTTPS URI; plain http is accepted only for a server on this machine."""
    if _PLAIN_HTTPS_URL.fullmatch(url):
        return None
    parts = urlsplit(url)
    if not url.isascii() or url.split() != [url] or not parts.hostname:
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
    address = _collapse(email.postal_address)
    footer = email.footer
    vouched = (
        footer is not None
        and footer.html is email.html
        and footer.unsubscribe_url == url
        and bool(address)
        and _collapse(footer.postal_address) == address
    )
    body = email.html
    if not vouched and "<!--" in body:
        body = _COMMENT.sub(" ", body)
    if not vouched and not links_to(body, url):
        problems.append("HTML body has no link to its unsubscribe URL")
    if url not in email.text:
        problems.append("text body does not show its unsubscribe URL")
    if not address:
        problems.append("no postal address configured (NURTURE_POSTAL_ADDRESS)")
    else:
        if not vouched and not shows(body, address):
            problems.append(f"HTML body does not show the postal address {address!r}")
        if address not in email.text and address not in _collapse(email.text):
            problems.append(f"text body does not show the postal address {address!r}")
    return problems


def check_marketing_email(email: OutgoingEmail, where: str | None = None) -> None:
    """Raise ``MarketingComplianceError`` naming every problem of ``email``."""
    problems = marketing_problems(email)
    if problems:
        raise MarketingComplianceError("; ".join(problems), where=where or f"message {email.message_id}")
