"""The plain-text part of an email, written from its HTML once per template version.

The converter walks the inlined template with its tag tokens still in place and writes a text *template*:
``{{ lead.first_name }}`` stays where the name was, links become ``text (url)``, paragraphs are separated by a
blank line, table cells by a space, list items start with ``- ``. A ``{% %}`` tag that starts a line is put on
a line of its own, which the text environment (trim_blocks, lstrip_blocks) drops when rendering, so a
conditional paragraph leaves no stray blank lines. Per recipient, the text part is one more (small) render.

Hidden content (``<head>``, ``display:none`` such as the preheader, the open pixel) is left out, but the
``{% %}`` tags inside it are kept so that every ``{% if %}`` still meets its ``{% endif %}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lxml import etree

from nurture.rendering.links import is_http
from nurture.rendering.protect import TokenTable
from nurture.rendering.scanner import Origin, Tag, TagKind

_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "pre", "dl", "hr"}
_LINE = {
    "div", "tr", "li", "section", "header", "footer", "article", "center", "address", "dt", "dd",
    "thead", "tbody", "tfoot", "caption", "form", "nav", "main", "aside", "figure", "figcaption",
}  # fmt: skip
_SKIPPED = {"head", "style", "script", "title", "template", "noscript"}
_CELLS = {"td", "th"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\n\f\xa0]+")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u034f\ufeff\u00ad]")


class _Writer:
    def __init__(
        self, tokens: TokenTable | None, skipped_tokens: set[str], origin: Origin, literal_hrefs: Mapping[str, str]
    ) -> None:
        self.parts: list[str] = []
        self.literal_hrefs = literal_hrefs
        self.text_link_keys: set[str] = set()
        self.origin = origin
        self._keep_newline: str | None = None
        self.tokens = tokens
        self.pattern = tokens.pattern() if tokens else None
        self.skipped_tokens = skipped_tokens
        self.pending = 0  # line breaks owed before the next content: 1 newline, 2 blank line
        self.newlines = 2  # newlines written since the last content (2 at the start: no leading blank lines)

    def brk(self, level: int) -> None:
        self.pending = max(self.pending, level)

    def flush(self) -> None:
        if self.pending > self.newlines:
            self.parts.append("\n" * (self.pending - self.newlines))
            self.newlines = self.pending
        self.pending = 0

    def newline(self) -> None:
        self.parts.append("\n")
        self.newlines += 1

    def text(self, text: str) -> None:
        text = _INVISIBLE.sub("", _SPACES.sub(" ", text))
        if not text.strip():
            if text and self.newlines == 0 and self.parts and not self.parts[-1].endswith(" "):
                self.parts.append(" ")
            return
        if self.pending or self.newlines:
            text = text.lstrip()
        self.flush()
        self.parts.append(text)
        self.newlines = 0

    def token(self, token: str) -> None:
        if token in self.skipped_tokens or self.tokens is None:
            return
        pieces = self.tokens.entries[self.tokens.index(token)]
        tag = pieces[0] if len(pieces) == 1 and isinstance(pieces[0], Tag) else None
        if tag is None or tag.kind is TagKind.COMMENT:
            return  # a hidden <style>, or a {# comment #}
        if tag.kind is TagKind.VARIABLE:
            self.flush()
            self.parts.append(token)
            self.newlines = 0
            return
        if self.pending == 0 and self.newlines == 0:
            # Inside a sentence: stays inline, followed by an empty output so that trim_blocks cannot eat a
            # line break that follows.
            self.parts.append(token + self.keep_newline())
            return
        # Starts a line: on a line of its own, dropped at render by trim_blocks/lstrip_blocks.
        self.flush()
        if self.newlines == 0:
            self.newline()
        self.parts.append(token + "\n")

    def statements_only(self, element: Any) -> None:
        """Inside hidden content: keep the {% %} tags for balance, drop everything else."""
        statements = [
            token
            for node in element.iter(etree.Comment)
            for token in self._comment_tokens(node)
            if self.tokens is not None and self.tokens.is_statement(token)
        ]
        if statements:
            self.parts.append("".join(statements) + self.keep_newline())

    def keep_newline(self) -> str:
        assert self.tokens is not None
        if self._keep_newline is None:
            self._keep_newline = self.tokens.add_tag("{{ '' }}", self.origin)
        return self._keep_newline

    def _comment_tokens(self, node: Any) -> list[str]:
        if self.pattern is None:
            return []
        return [match.group(2) for match in self.pattern.finditer(node.text or "") if match.group(2)]

    def walk(self, element: Any) -> None:
        tag = element.tag
        if tag is etree.Comment:
            for token in self._comment_tokens(element):
                self.token(token)
            return
        if not isinstance(tag, str):
            return
        if tag in _SKIPPED or _HIDDEN_STYLE.search(element.get("style", "")):
            self.statements_only(element)
            return
        if tag == "br":
            self.newline()
            return
        if tag == "a" and self.is_duplicate_image_link(element):
            self.statements_only(element)
            return
        if tag == "img":
            alt = element.get("alt", "")
            if alt.strip():
                self.text(f" {alt} ")
            return
        if tag in _PARAGRAPH:
            self.brk(2)
        elif tag in _LINE:
            self.brk(1)
        elif tag in _CELLS and self.newlines == 0 and self.parts and not self.parts[-1].endswith((" ", "\n")):
            self.parts.append(" ")
        if tag == "li":
            self.flush()
            self.parts.append("- ")
            self.newlines = 0
        start = len(self.parts)
        if element.text:
            self.text(element.text)
        for child in element:
            self.walk(child)
            if child.tail:
                self.text(child.tail)
        if tag == "a":
            self.link(element, start)
        if tag in _PARAGRAPH:
            self.brk(2)
        elif tag in _LINE:
            self.brk(1)

    def href_key(self, href: str) -> str:
        """The href as the template spells it, so two links to ``{{ article.url }}`` compare equal."""
        href = href.strip()
        if self.pattern is None or self.tokens is None:
            return href
        tokens = self.tokens

        def spelled(match: re.Match[str]) -> str:
            token = match.group(2) or match.group(1)
            literal = self.literal_hrefs.get(token)
            if literal is not None:
                return literal
            return "".join(piece.text for piece in tokens.entries[tokens.index(token)])

        return self.pattern.sub(spelled, href)

    def is_duplicate_image_link(self, element: Any) -> bool:
        """A picture linking where a text link also goes (a product image and its name): once is enough."""
        if self.has_text(element) or element.find(".//img") is None:
            return False
        return self.href_key(element.get("href") or "") in self.text_link_keys

    def has_text(self, element: Any) -> bool:
        """Literal text, or a printed value (a token comment)."""
        if element.xpath("string()").strip():
            return True
        return any(self._comment_tokens(node) for node in element.iter(etree.Comment))

    def link(self, element: Any, start: int) -> None:
        href = (element.get("href") or "").strip()
        tokenised = bool(self.pattern and self.pattern.search(href))
        if not href or not (tokenised or is_http(href)):
            return
        label = "".join(self.parts[start:]).strip()
        if label == self.literal_hrefs.get(href, href):
            return
        self.flush()
        if self.parts and self.parts[-1].endswith(" "):
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append(f" ({href})" if label else href)
        self.newlines = 0


def html_to_text(
    root: Any,
    tokens: TokenTable | None = None,
    skipped_tokens: set[str] | None = None,
    origin: Origin | None = None,
    literal_hrefs: Mapping[str, str] | None = None,
) -> str:
    """Plain text of a parsed document; with ``tokens``, a text template with the tag tokens kept.
    ``literal_hrefs``: the URL behind each static link's token, so a link whose text is its URL is written
    once."""
    writer = _Writer(tokens, skipped_tokens or set(), origin or Origin("", 1), literal_hrefs or {})
    links = root.iter("a")
    writer.text_link_keys = {writer.href_key(link.get("href") or "") for link in links if writer.has_text(link)}
    writer.walk(root)
    return tidy_text("".join(writer.parts))


def tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row. Plain string searches: this runs for every email,
    and on text with non-ASCII characters Python's regex engine and even ``str.replace`` take several times
    longer than ``find`` and slicing. The trailing-space test is ``rfind``: in CPython the forward search for a
    needle starting with a space stops at every space and takes about twice as long (``\t`` alone is a fast
    one-character search, so the tab case is only looked for when there is a tab)."""
    if text.rfind(" \n") >= 0 or ("\t" in text and text.rfind("\t\n") >= 0):
        text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    start = text.find("\n\n\n")
    if start >= 0:
        pieces = []
        position = 0
        while start >= 0:
            end = start + 3
            while end < len(text) and text[end] == "\n":
                end += 1
            pieces.append(text[position : start + 2])
            position = end
            start = text.find("\n\n\n", end)
        pieces.append(text[position:])
        text = "".join(pieces)
    return text.strip()


def text_from_html(html: str) -> str:
    """Plain text of a finished HTML email."""
    return html_to_text(etree.fromstring(html or "<html></html>", etree.HTMLParser()))
