"""Links in emails: click tracking, the open pixel, UTM parameters, URL escaping.

At compile time, once per template version, every trackable ``<a href>`` is replaced by a call of a link
filter: ``{{ 3 | _nurture_static_link }}`` for a static link (its URL goes to the version's link table, 3 is
its index), ``{{ (product.url) | _nurture_link }}`` (or a ``{% filter %}`` block around a href assembled from
several pieces) for a href built by Jinja, one per row of a loop. While the email renders, the filters print
the final href directly: a click URL, or the target with its UTM parameters. No pass over the rendered output
looks for links afterwards.

What a filter prints depends on the message being rendered (its click URL prefix, the links it has so far),
which the render makes current for the time of the render (``rendering_links``). The HTML environment's filters
print escaped hrefs, the plain-text environment's print them as they are.

Left alone: links marked ``data-notrack``, the unsubscribe, preferences and view-in-browser links, and
anything that is not http(s) (``mailto:``, ``tel:``, ``#top``).

A click URL names the message (signed) and the link index; the target is looked up in the link list stored
with the message (``RenderedEmail.links``), so a tracked URL can never be turned into a redirect to a URL the
email did not contain. The index is not signed on its own: changing it only picks another link of the same
email, which its recipient could click anyway, and it saves a MAC per link.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import pass_context, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from lxml import etree
from markupsafe import Markup, escape

from nurture.rendering.budget import DEFAULT_LIMITS, Budget, get_budget, printed_text
from nurture.rendering.protect import TokenTable
from nurture.rendering.scanner import Origin, Tag, TagKind
from nurture.rendering.scoped import Scoped
from nurture.tracking.tokens import TokenPurpose, TokenSigner

PIXEL_VARIABLE = "_nurture_open_pixel"
URI_FILTER = "_nurture_uri"
STATIC_LINK_FILTER = "_nurture_static_link"
LINK_FILTER = "_nurture_link"
# Context variables whose links are never tracked or rewritten.
UNTRACKED_URLS = ("unsubscribe_url", "preferences_url", "view_in_browser_url")
NOTRACK_ATTRIBUTE = "data-notrack"

_HTTP = re.compile(r"\s*https?://", re.IGNORECASE)
# Hrefs and URLs remembered from one recipient to the next (campaign data repeats) are at most this long: a
# cache of long ones would keep what a template made for each recipient.
MAX_REMEMBERED_URL_CHARS = 2048
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
    """Undo what autoescape did to text meant to be plain (a subject line): the five escapes of markupsafe
    (``&amp;`` last). Plain replaces: ``html.unescape`` is a regex with a callback per entity."""
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
    """Makes the signed URLs an email carries. Pluggable: the web layer that serves them decides the shape.

    An implementation may also offer ``for_message(message_id, lead_id) -> MessageUrls``, all of them at once
    (``SignedTrackingUrls`` does, from two MACs): the renderer uses it when it is there."""

    def click_prefix(self, message_id: int) -> str:
        """The tracked URL of link index ``i`` of this message is this prefix followed by ``i``."""
        ...

    def open_url(self, message_id: int) -> str: ...

    def view_url(self, message_id: int) -> str: ...

    def unsubscribe_url(self, lead_id: int) -> str: ...

    def preferences_url(self, lead_id: int) -> str: ...


@dataclass(frozen=True, slots=True)
class MessageUrls:
    """The signed URLs of one email; empty when there is no message id (or no lead id) to sign."""

    click_prefix: str = ""
    open_url: str = ""
    view_url: str = ""
    unsubscribe_url: str = ""
    preferences_url: str = ""


_MESSAGE_PURPOSES = (TokenPurpose.CLICK, TokenPurpose.OPEN, TokenPurpose.VIEW)
_LEAD_PURPOSES = (TokenPurpose.UNSUBSCRIBE, TokenPurpose.PREFERENCES)


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

    def for_message(self, message_id: int | None, lead_id: int | None) -> MessageUrls:
        """Every URL of one email: one MAC for the message's tokens, one for the lead's."""
        base = self.base_url
        click = open_url = view = unsubscribe = preferences = ""
        if message_id is not None:
            click, open_url, view = self.signer.sign_group(_MESSAGE_PURPOSES, message_id)
            click, open_url, view = f"{base}/t/c/{click}/", f"{base}/t/o/{open_url}", f"{base}/t/v/{view}"
        if lead_id is not None:
            unsubscribe, preferences = self.signer.sign_group(_LEAD_PURPOSES, lead_id)
            unsubscribe, preferences = f"{base}/u/{unsubscribe}", f"{base}/p/{preferences}"
        return MessageUrls(click, open_url, view, unsubscribe, preferences)


def message_urls(urls: TrackingUrls, message_id: int | None, lead_id: int | None, options: LinkOptions) -> MessageUrls:
    """The URLs a render needs: ``urls.for_message`` when the implementation has it, else its methods one by
    one, asking only for what ``options`` track."""
    for_message = getattr(urls, "for_message", None)
    if for_message is not None:
        found: MessageUrls = for_message(message_id, lead_id)
        return found
    click = open_url = view = unsubscribe = preferences = ""
    if message_id is not None:
        click = urls.click_prefix(message_id) if options.track_clicks else ""
        open_url = urls.open_url(message_id) if options.track_opens else ""
        view = urls.view_url(message_id)
    if lead_id is not None:
        unsubscribe, preferences = urls.unsubscribe_url(lead_id), urls.preferences_url(lead_id)
    return MessageUrls(click, open_url, view, unsubscribe, preferences)


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
    """Replaces trackable hrefs in the parsed, inlined email by link filters and adds the open pixel."""
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
                    token = table.add_tag(f"{{{{ {len(static)} | {STATIC_LINK_FILTER} }}}}", origin)
                    element.set("href", token)
                    static_tokens[token] = value
                    static.append(value)
                    continue
                if tokens and not untracked:
                    _filter(element, attribute, value, tokens, table, LINK_FILTER)
                    continue
            if tokens and not untracked:
                # Built per recipient: escaped the way the HTML serializer escapes what it parsed.
                _filter(element, attribute, value, tokens, table, URI_FILTER)
    pixel = table.add_tag(f"{{{{ {PIXEL_VARIABLE} }}}}", origin)
    body = root.find("body")
    (body if body is not None else root).append(etree.Comment(pixel))
    return LinkTable(tuple(static), pixel, static_tokens)


def _filter(element: Any, attribute: str, value: str, tokens: list[str], table: TokenTable, name: str) -> None:
    """Pass an attribute value built by Jinja through filter ``name``: the expression itself when the value is
    one ``{{ expression }}``, else the whole value in a ``{% filter %}`` block."""
    first = table.entries[table.index(tokens[0])][0]
    if len(tokens) == 1 and value.strip() == tokens[0] and isinstance(first, Tag) and first.kind is TagKind.VARIABLE:
        opening = "{{-" if first.text.startswith("{{-") else "{{"
        closing = "-}}" if first.text.endswith("-}}") else "}}"
        table.entries[table.index(tokens[0])] = [first.with_text(f"{opening} ({first.body}) | {name} {closing}")]
        return
    opening_tag = table.add_tag(f"{{% filter {name} %}}", first.origin)
    element.set(attribute, opening_tag + value + table.add_tag("{% endfilter %}", first.origin))


def _is_untracked_variable(value: str, tokens: list[str], table: TokenTable) -> bool:
    """The href starts with ``{{ unsubscribe_url }}`` (or the preferences or view-in-browser URL)."""
    if not value.strip().startswith(tokens[0]):
        return False
    pieces = table.entries[table.index(tokens[0])]
    return len(pieces) == 1 and isinstance(pieces[0], Tag) and pieces[0].body in UNTRACKED_URLS


def _raw(value: Any, budget: Budget | None = None) -> str:
    """A value as the URL it stands for: what a ``{% filter %}`` block rendered is HTML-escaped. A value that
    is not text is weighed before it is turned into text (it is printed)."""
    if isinstance(value, Markup):
        return value.unescape() if "&" in value else str(value)
    room = budget.output if budget is not None else DEFAULT_LIMITS.max_output_chars
    return printed_text(value, room, "a link")


def open_pixel(url: str) -> Markup:
    return Markup(
        f'<img src="{escape(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
    )


@dataclass(frozen=True, slots=True)
class _Href:
    """A dynamic href seen before: what to print when it is not tracked, and its target (None: not http)."""

    url: str
    url_html: str
    target: str | None
    target_html: str


@dataclass
class CampaignLinks:
    """What a version's links look like for one set of UTM parameters: shared by every recipient."""

    append: QueryAppender
    targets: tuple[str, ...]
    escaped_targets: tuple[str, ...]
    # "0", "1"...: a tracked static href is the message's click prefix followed by one of these.
    index_suffixes: tuple[str, ...]
    # The index of each static target (the last one where a URL is linked twice): a dynamic link to the same
    # target reuses it.
    static_indexes: dict[str, int]
    # The length of the longest escaped target: what an untracked static link prints at most.
    longest_target: int = 0
    # Dynamic hrefs seen so far, by rendered value: campaign data is the same for every recipient, so each
    # product URL is escaped and tagged once.
    resolved: dict[str, _Href] = field(default_factory=dict)

    @classmethod
    def build(cls, links: LinkTable, utm: Mapping[str, str]) -> CampaignLinks:
        append = QueryAppender(utm)
        targets = tuple(append(url) for url in links.static)
        escaped = tuple(str(escape(url)) for url in targets)
        return cls(
            append,
            targets,
            escaped,
            tuple(str(index) for index in range(len(targets))),
            {target: index for index, target in enumerate(targets)},
            max(map(len, escaped), default=0),
        )

    def resolve(self, rendered: str) -> _Href:
        found = self.resolved.get(rendered)
        if found is None:
            url = escape_uri(rendered.strip())
            target = self.append(url) if is_http(url) else None
            found = _Href(url, str(escape(url)), target, str(escape(target)) if target is not None else "")
            if len(self.resolved) < 10_000 and len(rendered) <= MAX_REMEMBERED_URL_CHARS:
                self.resolved[rendered] = found
        return found


# --- per recipient -----------------------------------------------------------------------------------------


class MessageLinks:
    """One message's hrefs, for its HTML and its text part alike (a dynamic URL seen in both gets one index)."""

    __slots__ = (
        "campaign", "click_prefix", "click_prefix_html", "dynamic_indexes", "dynamic_targets", "hrefs",
        "static_html_hrefs", "static_text_hrefs", "untracked",
    )  # fmt: skip

    def __init__(self, campaign: CampaignLinks, click_prefix: str | None, untracked: frozenset[str]) -> None:
        self.campaign = campaign
        self.click_prefix = click_prefix
        # What each static link prints, by index: the compiled template reads them directly (see sandbox.py).
        self.static_html_hrefs: tuple[str, ...] | list[str]
        self.static_text_hrefs: tuple[str, ...] | list[str]
        if click_prefix is None:
            self.click_prefix_html = None
            self.static_html_hrefs = campaign.escaped_targets
            self.static_text_hrefs = campaign.targets
        else:
            html_prefix = self.click_prefix_html = str(escape(click_prefix))
            self.static_text_hrefs = list(map(click_prefix.__add__, campaign.index_suffixes))
            # A prefix with nothing to escape (the usual base URL and token) prints the same in both parts.
            self.static_html_hrefs = (
                self.static_text_hrefs
                if html_prefix == click_prefix
                else list(map(html_prefix.__add__, campaign.index_suffixes))
            )
        self.untracked = tuple(untracked)
        # Targets of dynamic links that are not static targets, in order: indexes after the static ones.
        self.dynamic_targets: list[str] = []
        self.dynamic_indexes: dict[str, int] = {}
        # A product URL is linked from its picture and its name, in the HTML and the text: (HTML, text) worked
        # out once, by rendered value.
        self.hrefs: dict[str, tuple[str, str]] = {}

    # The href counts as printed output (the budget's test, written out: a call more per link shows).

    def dynamic_html(self, value: Any, budget: Budget | None = None) -> str:
        raw = value if type(value) is str else _raw(value, budget)
        href = (self.hrefs.get(raw) or self._dynamic(raw))[0]
        if budget is not None:
            budget.output -= len(href)
            if budget.output < 0:
                budget.spend_output(0)
        return href

    def dynamic_text(self, value: Any, budget: Budget | None = None) -> str:
        raw = value if type(value) is str else _raw(value, budget)
        href = (self.hrefs.get(raw) or self._dynamic(raw))[1]
        if budget is not None:
            budget.output -= len(href)
            if budget.output < 0:
                budget.spend_output(0)
        return href

    def longest_static_href(self) -> int:
        """The most characters a static link of this message prints (the loop guard counts them)."""
        if self.click_prefix_html is None:
            return self.campaign.longest_target
        suffixes = self.campaign.index_suffixes
        return len(self.click_prefix_html) + (len(suffixes[-1]) if suffixes else 0)

    def _dynamic(self, raw: str) -> tuple[str, str]:
        href = self.campaign.resolve(raw)
        target = href.target
        if target is None or href.url.startswith(self.untracked):
            found = (href.url_html, href.url)
        elif self.click_prefix is None:
            found = (href.target_html, target)
        else:
            index = self._index(target)
            found = (f"{self.click_prefix_html}{index}", f"{self.click_prefix}{index}")
        self.hrefs[raw] = found
        return found

    def _index(self, target: str) -> int:
        index = self.campaign.static_indexes.get(target)
        if index is None:
            index = self.dynamic_indexes.get(target)
            if index is None:
                index = self.dynamic_indexes[target] = len(self.campaign.targets) + len(self.dynamic_targets)
                self.dynamic_targets.append(target)
        return index

    def all_targets(self) -> tuple[str, ...]:
        if not self.dynamic_targets:
            return self.campaign.targets
        return self.campaign.targets + tuple(self.dynamic_targets)


class _NoMessageLinks:
    """What the link reads find outside a render: any use is a clear error."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("a compiled email's links are only printed while CompiledEmail.render runs")


_NO_LINKS: Any = _NoMessageLinks()
_current: contextvars.ContextVar[MessageLinks] = contextvars.ContextVar("nurture_message_links", default=_NO_LINKS)
# The message being rendered, read where compiled templates print a link: the code generator (sandbox.py)
# writes ``current_links().static_html_hrefs[3]`` for ``{{ 3 | _nurture_static_link }}`` and
# ``current_links().dynamic_html(...)`` for ``{{ (url) | _nurture_link }}``, which spares a filter call and its
# context argument per link. (The context variable's own ``get``: no Python frame per link.)
current_links = _current.get


def rendering_links(links: MessageLinks) -> Scoped[MessageLinks]:
    """Make ``links`` the one the link filters print from, for everything rendered inside."""
    return Scoped(_current, links)


# One filter for both parts: in the HTML (autoescape on) they print escaped hrefs, in the plain-text part
# (autoescape off, in its own environment or in the text channel of a merged template) the hrefs as they are.
# pass_context keeps Jinja from calling them at compile time on a constant index.
@pass_context
def _static_link(context: Context, index: int) -> str:
    links = current_links()
    return (links.static_html_hrefs if context.eval_ctx.autoescape else links.static_text_hrefs)[index]


@pass_context
def _link(context: Context, value: Any) -> str:
    links = current_links()
    budget = get_budget()
    return links.dynamic_html(value, budget) if context.eval_ctx.autoescape else links.dynamic_text(value, budget)


# Image and other URLs built from campaign data repeat from recipient to recipient: (text, HTML) by value.
_URIS: dict[str, tuple[str, str]] = {}
_URIS_MAX = 10_000


def _uri_pair(value: Any, budget: Budget | None) -> tuple[str, str]:
    raw = value if type(value) is str else _raw(value, budget)
    found = _URIS.get(raw)
    if found is None:
        url = escape_uri(raw)
        found = (url, str(escape(url)))
        if len(raw) <= MAX_REMEMBERED_URL_CHARS:
            if len(_URIS) >= _URIS_MAX:
                _URIS.clear()
            _URIS[raw] = found
    return found


def uri_html(value: Any, budget: Budget | None = None) -> str:
    """A URL built by Jinja, escaped for an HTML attribute (what ``_nurture_uri`` prints in HTML), counted as
    printed output."""
    uri = _uri_pair(value, budget)[1]
    if budget is not None:
        budget.output -= len(uri)
        if budget.output < 0:
            budget.spend_output(0)
    return uri


def uri_text(value: Any, budget: Budget | None = None) -> str:
    uri = _uri_pair(value, budget)[0]
    if budget is not None:
        budget.output -= len(uri)
        if budget.output < 0:
            budget.spend_output(0)
    return uri


@pass_eval_context
def _uri(eval_context: EvalContext, value: Any) -> str:
    budget = get_budget()
    return uri_html(value, budget) if eval_context.autoescape else uri_text(value, budget)


# What the compiler registers in both environments. Their results are final hrefs: printed as they are.
LINK_FILTERS = {STATIC_LINK_FILTER: _static_link, LINK_FILTER: _link, URI_FILTER: _uri}
