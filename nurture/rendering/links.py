"""Links in emails: click tracking, the open pixel, UTM parameters, URL escaping.

At compile time, once per template version, every trackable ``<a href>`` is replaced by a marker (see
markers.py): one for each static link (its URL goes to the version's link table), or a pair around a href built
by Jinja (``https://shop.example/{{ lead.id }}``, one per row of a loop). As the rendered output streams out,
``MessageLinks`` puts the final hrefs in their place: a click URL, or the target with its UTM parameters. The
template render itself does no link work at all.

Left alone: links marked ``data-notrack``, the unsubscribe, preferences and view-in-browser links, and
anything that is not http(s) (``mailto:``, ``tel:``, ``#top``).

A click URL names the message (signed) and the link index; the target is looked up in the link list stored
with the message (``RenderedEmail.links``), so a tracked URL can never be turned into a redirect to a URL the
email did not contain. The index is not signed on its own: changing it only picks another link of the same
email, which its recipient could click anyway, and it saves an HMAC per link (about as long as rendering the
link itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Protocol
from urllib.parse import quote

from lxml import etree
from markupsafe import Markup, escape

from nurture.rendering.markers import DYNAMIC_LINK, DYNAMIC_LINK_END, STATIC_LINK, marker
from nurture.rendering.protect import TokenTable
from nurture.rendering.scanner import Marker, Origin, Tag, TagKind
from nurture.tracking.tokens import TokenPurpose, TokenSigner

PIXEL_VARIABLE = "_nurture_open_pixel"
URI_FILTER = "_nurture_uri"
# Context variables whose links are never tracked or rewritten.
UNTRACKED_URLS = ("unsubscribe_url", "preferences_url", "view_in_browser_url")
NOTRACK_ATTRIBUTE = "data-notrack"

_HTTP = re.compile(r"\s*https?://", re.IGNORECASE)
_URI_UNSAFE = re.compile(r"[\x00-\x20\x7f-\U0010ffff]+")


def is_http(url: str) -> bool:
    return bool(_HTTP.match(url))


def escape_uri(url: str) -> str:
    """Percent-encode what a URL attribute may not hold raw, as libxml2 does when it writes HTML: leading
    blanks go, bytes below ``!`` and above ``~`` are escaped, everything else is kept."""
    url = url.lstrip(" \t\n\r")
    if _URI_UNSAFE.search(url) is None:
        return url
    return _URI_UNSAFE.sub(lambda match: quote(match.group(), safe=""), url)


def unescape_html(text: str) -> str:
    return unescape(text) if "&" in text else text


_TEXT_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&#34;", '"'), ("&#39;", "'"), ("&amp;", "&"))


def unescape_text(text: str) -> str:
    """Undo what autoescape and the compiler did to a text part: the five escapes of markupsafe (``&amp;``
    last). Plain replaces: ``html.unescape`` is a regex with a callback per entity."""
    if "&" not in text:
        return text
    for escaped, character in _TEXT_ESCAPES:
        if escaped in text:
            text = text.replace(escaped, character)
    return text


class QueryAppender:
    """Appends parameters a URL does not already have (its own values win), before any fragment; the
    existing query is kept byte for byte. Encoded once per set of parameters."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.parts = [(name, f"{quote(name, safe='')}={quote(value, safe='')}") for name, value in parameters.items()]
        self.names = frozenset(name for name, _ in self.parts)
        self.encoded = "&".join(part for _, part in self.parts)

    def __call__(self, url: str) -> str:
        if not self.parts:
            return url
        base, hash_mark, fragment = url.partition("#")
        path, _, query = base.partition("?")
        added = self.encoded
        if query:
            present = {pair.partition("=")[0] for pair in query.split("&")}
            if not present.isdisjoint(self.names):
                added = "&".join(part for name, part in self.parts if name not in present)
                if not added:
                    return url
            query = f"{query}{added}" if query.endswith("&") else f"{query}&{added}"
        else:
            query = added
        return f"{path}?{query}{hash_mark}{fragment}"


def add_query_parameters(url: str, parameters: Mapping[str, str]) -> str:
    return QueryAppender(parameters)(url)


class TrackingUrls(Protocol):
    """Makes the signed URLs an email carries. Pluggable: the web layer that serves them decides the shape."""

    def click_prefix(self, message_id: int) -> str:
        """The tracked URL of link index ``i`` of this message is this prefix followed by ``i``."""
        ...

    def open_url(self, message_id: int) -> str: ...

    def view_url(self, message_id: int) -> str: ...

    def unsubscribe_url(self, lead_id: int) -> str: ...

    def preferences_url(self, lead_id: int) -> str: ...


class SignedTrackingUrls:
    """``{base}/t/c/<token>/<index>``, ``/t/o/<token>``, ``/t/v/<token>``, ``/u/<token>``, ``/p/<token>``:
    message tokens carry the message id, unsubscribe and preferences tokens the lead id (see
    nurture.tracking.tokens for verifying them)."""

    def __init__(self, base_url: str, signer: TokenSigner) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer

    def click_prefix(self, message_id: int) -> str:
        return f"{self.base_url}/t/c/{self.signer.sign(TokenPurpose.CLICK, message_id)}/"

    def open_url(self, message_id: int) -> str:
        return f"{self.base_url}/t/o/{self.signer.sign(TokenPurpose.OPEN, message_id)}"

    def view_url(self, message_id: int) -> str:
        return f"{self.base_url}/t/v/{self.signer.sign(TokenPurpose.VIEW, message_id)}"

    def unsubscribe_url(self, lead_id: int) -> str:
        return f"{self.base_url}/u/{self.signer.sign(TokenPurpose.UNSUBSCRIBE, lead_id)}"

    def preferences_url(self, lead_id: int) -> str:
        return f"{self.base_url}/p/{self.signer.sign(TokenPurpose.PREFERENCES, lead_id)}"


@dataclass(frozen=True)
class LinkOptions:
    """Per campaign: whether to track clicks and opens, and the query parameters (UTM) added to its links."""

    track_clicks: bool = True
    track_opens: bool = True
    utm: Mapping[str, str] = field(default_factory=dict)


# --- once per compiled version -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkTable:
    """The URL of each static link by index; dynamic links take the indexes after them, per render."""

    static: tuple[str, ...]
    pixel_token: str
    # The token that replaced each static href, and its URL (for the plain-text writer).
    static_tokens: dict[str, str] = field(default_factory=dict)


def rewrite_links(root: Any, table: TokenTable, origin: Origin) -> LinkTable:
    """Replaces trackable hrefs in the parsed, inlined email with link markers and adds the open pixel."""
    pattern = table.pattern()
    static: list[str] = []
    static_tokens: dict[str, str] = {}
    for element in root.iter(etree.Element):
        for attribute in ("href", "src"):
            value = element.get(attribute)
            if value is None:
                continue
            tokens = [match.group(2) for match in pattern.finditer(value) if match.group(2)]
            untracked = bool(tokens) and _is_untracked_variable(value, tokens, table)
            if element.tag == "a" and attribute == "href" and NOTRACK_ATTRIBUTE not in element.attrib:
                if not tokens and is_http(value):
                    link = marker(table.nonce, STATIC_LINK, str(len(static)))
                    token = table.add([Marker(link, origin)])
                    element.set("href", token)
                    static_tokens[token] = value
                    static.append(value)
                    continue
                if tokens and not untracked:
                    start = table.add([Marker(marker(table.nonce, DYNAMIC_LINK), origin)])
                    end = table.add([Marker(marker(table.nonce, DYNAMIC_LINK_END), origin)])
                    element.set("href", start + value + end)
                    continue
            if tokens and not untracked:
                # Built per recipient: escaped the way the HTML serializer escapes what it parsed.
                _filter(element, attribute, value, tokens, table)
    pixel = table.add_tag(f"{{{{ {PIXEL_VARIABLE} }}}}", origin)
    body = root.find("body")
    (body if body is not None else root).append(etree.Comment(pixel))
    return LinkTable(tuple(static), pixel, static_tokens)


def _filter(element: Any, attribute: str, value: str, tokens: list[str], table: TokenTable) -> None:
    """Pass an attribute value built by Jinja through the URI filter: the expression itself when the value is
    one ``{{ expression }}``, else the whole value in a ``{% filter %}`` block."""
    first = table.entries[table.index(tokens[0])][0]
    if len(tokens) == 1 and value.strip() == tokens[0] and isinstance(first, Tag) and first.kind is TagKind.VARIABLE:
        opening = "{{-" if first.text.startswith("{{-") else "{{"
        closing = "-}}" if first.text.endswith("-}}") else "}}"
        table.entries[table.index(tokens[0])] = [first.with_text(f"{opening} ({first.body})|{URI_FILTER} {closing}")]
        return
    opening_tag = table.add_tag(f"{{% filter {URI_FILTER} %}}", first.origin)
    element.set(attribute, opening_tag + value + table.add_tag("{% endfilter %}", first.origin))


def _is_untracked_variable(value: str, tokens: list[str], table: TokenTable) -> bool:
    """The href starts with ``{{ unsubscribe_url }}`` (or the preferences or view-in-browser URL)."""
    if not value.strip().startswith(tokens[0]):
        return False
    pieces = table.entries[table.index(tokens[0])]
    return len(pieces) == 1 and isinstance(pieces[0], Tag) and pieces[0].body in UNTRACKED_URLS


def uri_filter(value: Any) -> Markup:
    text = value.unescape() if isinstance(value, Markup) and "&" in value else str(value)
    return escape(escape_uri(text))


def open_pixel(url: str) -> Markup:
    return Markup(
        f'<img src="{escape(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
    )


@dataclass
class CampaignLinks:
    """What a version's links look like for one set of UTM parameters: shared by every recipient."""

    append: QueryAppender
    targets: tuple[str, ...]
    escaped_targets: tuple[str, ...]
    # Dynamic hrefs seen so far (rendered value -> (href to print if untracked, target or None)): campaign
    # data is the same for every recipient, so each product URL is escaped and tagged once.
    resolved: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @classmethod
    def build(cls, links: LinkTable, utm: Mapping[str, str]) -> CampaignLinks:
        append = QueryAppender(utm)
        targets = tuple(append(url) for url in links.static)
        return cls(append, targets, tuple(str(escape(url)) for url in targets))

    def resolve(self, rendered: str) -> tuple[str, str | None]:
        found = self.resolved.get(rendered)
        if found is None:
            url = escape_uri(rendered.strip())
            target = self.append(url) if is_http(url) else None
            found = (url, target)
            if len(self.resolved) < 10_000:
                self.resolved[rendered] = found
        return found


# --- per recipient -----------------------------------------------------------------------------------------


class MessageLinks:
    """One message's hrefs, for the markers of its HTML and text part alike (a dynamic URL seen in both gets
    one index)."""

    __slots__ = ("campaign", "click_prefix", "indexes", "targets", "untracked")

    def __init__(self, campaign: CampaignLinks, click_prefix: str | None, untracked: frozenset[str]) -> None:
        self.campaign = campaign
        self.click_prefix = None if click_prefix is None else str(escape(click_prefix))
        self.untracked = tuple(untracked)
        self.targets: list[str] | None = None  # copied from the static targets on the first dynamic link
        self.indexes: dict[str, int] | None = None

    def static_href(self, index: str) -> str:
        if self.click_prefix is None:
            return self.campaign.escaped_targets[int(index)]
        return self.click_prefix + index

    def dynamic_href(self, escaped_url: str) -> str:
        url, target = self.campaign.resolve(unescape_html(escaped_url))
        if target is None or url.startswith(self.untracked):
            return str(escape(url))
        if self.click_prefix is None:
            return str(escape(target))
        if self.targets is None or self.indexes is None:
            self.targets = list(self.campaign.targets)
            self.indexes = {target: index for index, target in enumerate(self.targets)}
        index = self.indexes.get(target)
        if index is None:
            index = self.indexes[target] = len(self.targets)
            self.targets.append(target)
        return self.click_prefix + str(index)

    def all_targets(self) -> tuple[str, ...]:
        return self.campaign.targets if self.targets is None else tuple(self.targets)
