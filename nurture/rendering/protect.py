"""Jinja tags hidden from an HTML parser and put back afterwards, exactly where they were.

Before the CSS inliner parses an email, each tag becomes a token the parser carries through untouched:

- between elements, ``{% if %}``, ``{{ x }}`` and ``{# #}`` become HTML comments, which a parser keeps in
  place even between ``<tr>`` rows, where text would be moved out of the table;
- inside attribute values, ``<title>``, ``<textarea>`` and HTML comments they become opaque lowercase
  alphanumeric words, which survive URL escaping of ``href`` and the CSS parser of ``style``;
- a ``<style>`` or ``<script>`` element that holds tags is hidden whole: it is kept as written, not inlined;
- tags between the attributes of an element (``<td {% if x %}class="a"{% endif %}>``) cannot survive a
  parser at all and are reported as a problem, with a suggestion.

``restore`` puts the tags back, checks that every one came back once and in order, and records where each
lands in the new source. Runtime errors report a line of that new source; the line map turns it back into the
template and line the author wrote. Each restored tag is moved onto lines of its own (by a Jinja comment
holding newlines, which outputs nothing), so no two tags share a line and the map is exact.
"""

from __future__ import annotations

import bisect
import re
import secrets
import string
from dataclasses import dataclass, field

from nurture.rendering.errors import TemplateProblem
from nurture.rendering.scanner import Data, Origin, Piece, Tag, TagKind

_PLACEHOLDER = "\x00"
_RAWTEXT = {"style", "script"}
_RCDATA = {"title", "textarea"}
_OPENING = {"if", "for", "with", "filter", "macro", "call", "block", "autoescape", "trans", "raw"}
_BLOCK_SET = re.compile(r"set\s+[^=]+$")
_JINJA_OPENERS = re.compile(r"\{(?=[{%#])")


class HtmlContext:
    TEXT = "text"
    RCDATA = "rcdata"
    RAWTEXT = "rawtext"
    ATTRIBUTE = "attribute"
    COMMENT = "comment"
    TAG = "tag"


@dataclass
class TokenTable:
    """What each token stands for: pieces of the original source, or tags added while compiling."""

    nonce: str
    entries: list[list[Piece]] = field(default_factory=list)
    protected: int = 0  # tokens below this index come from the source and must all come back, in order
    between_elements: set[int] = field(default_factory=set)  # tokens that became HTML comments

    def add(self, pieces: list[Piece]) -> str:
        self.entries.append(pieces)
        return f"{self.nonce}{len(self.entries) - 1:05d}"

    def add_tag(self, text: str, origin: Origin) -> str:
        return self.add([Tag(text, TagKind.VARIABLE if text.startswith("{{") else TagKind.STATEMENT, origin)])

    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"<!--({self.nonce}\d{{5}})-->|({self.nonce}\d{{5}})")

    def index(self, token: str) -> int:
        return int(token[len(self.nonce) :])

    def is_statement(self, token: str | int) -> bool:
        pieces = self.entries[token if isinstance(token, int) else self.index(token)]
        return len(pieces) == 1 and isinstance(pieces[0], Tag) and pieces[0].kind is TagKind.STATEMENT


@dataclass(frozen=True)
class Protected:
    html: str
    tokens: TokenTable


def _new_nonce(source: str) -> str:
    lowered = source.lower()
    while True:
        nonce = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
        if nonce not in lowered:
            return nonce


@dataclass
class _Scan:
    contexts: list[str] = field(default_factory=list)  # per placeholder
    attribute_ids: list[int] = field(default_factory=list)  # per placeholder: which attribute value (or -1)
    elements: list[str] = field(default_factory=list)  # per placeholder: the element it sits in, if any
    raw_spans: list[tuple[int, int]] = field(default_factory=list)  # <style>/<script> elements, flat offsets


def _scan_html(flat: str) -> _Scan:
    """A small HTML tokenizer: enough to know, at each placeholder, what kind of place it is in."""
    result = _Scan()
    state = "data"
    element = ""
    raw_start = 0
    attribute_id = -1
    index = 0
    length = len(flat)

    def placeholder(context: str) -> None:
        result.contexts.append(context)
        result.attribute_ids.append(attribute_id if context == HtmlContext.ATTRIBUTE else -1)
        result.elements.append(element)

    while index < length:
        char = flat[index]
        if state == "data":
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.TEXT)
            elif char == "<":
                rest = flat[index + 1 : index + 4]
                if rest.startswith("!--"):
                    state = "comment"
                    index += 4
                    continue
                if rest[:1] in ("!", "?"):
                    state = "declaration"
                elif rest[:1] == "/" and rest[1:2].isalpha():
                    state = "endtag"
                    element = ""
                elif rest[:1].isalpha():
                    state = "tagname"
                    element = ""
                    raw_start = index
        elif state == "comment":
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.COMMENT)
            elif flat.startswith("-->", index):
                state = "data"
                index += 3
                continue
        elif state in ("declaration", "endtag"):
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.COMMENT if state == "declaration" else HtmlContext.TAG)
            elif char == ">":
                state = "data"
        elif state == "tagname":
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.TAG)
            elif char.isspace() or char == "/":
                state = "attributes"
            elif char == ">":
                state = _after_start_tag(element)
            else:
                element += char.lower()
        elif state in ("attributes", "attribute_name", "after_attribute_name"):
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.TAG)
            elif char == ">":
                state = _after_start_tag(element)
            elif char == "=" and state != "attributes":
                state = "before_value"
            elif char.isspace():
                state = "after_attribute_name" if state == "attribute_name" else state
            elif char != "/":
                if state != "attribute_name":
                    attribute_id += 1
                state = "attribute_name"
        elif state == "before_value":
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.ATTRIBUTE)
                state = "unquoted"
            elif char in "\"'":
                state = "double" if char == '"' else "single"
            elif char == ">":
                state = _after_start_tag(element)
            elif not char.isspace():
                state = "unquoted"
        elif state in ("double", "single", "unquoted"):
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.ATTRIBUTE)
            elif char == {"double": '"', "single": "'"}.get(state) or (state == "unquoted" and char.isspace()):
                state = "attributes"
            elif state == "unquoted" and char == ">":
                state = _after_start_tag(element)
        else:  # inside <style>, <script>, <title>, <textarea>
            if char == _PLACEHOLDER:
                placeholder(HtmlContext.RCDATA if element in _RCDATA else HtmlContext.RAWTEXT)
            elif char == "<" and flat[index + 1 : index + 2 + len(element)].lower() == "/" + element:
                if element in _RAWTEXT:
                    end = flat.find(">", index)
                    end = length if end < 0 else end + 1
                    result.raw_spans.append((raw_start, end))
                    index = end
                    state = "data"
                    continue
                state = "endtag"
        index += 1
    return result


def _after_start_tag(element: str) -> str:
    return "raw" if element in _RAWTEXT or element in _RCDATA else "data"


def opens_block(tag: Tag) -> bool:
    """A statement that a matching ``{% end... %}`` closes (a block ``set`` included)."""
    keyword = tag.keyword
    return keyword in _OPENING or (keyword == "set" and bool(_BLOCK_SET.match(tag.body)))


def _check_balanced(tags: list[Tag], where: str) -> None:
    """Statements opened in an attribute (or a hidden <style>) must close there: the parser may reorder
    attributes, and the plain-text part drops attributes."""
    depth: list[Tag] = []
    for tag in tags:
        if tag.kind is not TagKind.STATEMENT:
            continue
        if opens_block(tag):
            depth.append(tag)
        elif tag.keyword.startswith("end"):
            if not depth:
                raise TemplateProblem(
                    f"{{% {tag.keyword} %}} closes a statement opened outside {where}; open and close it inside",
                    tag.origin.template,
                    tag.origin.line,
                    kind="structure",
                )
            depth.pop()
    if depth:
        tag = depth[0]
        raise TemplateProblem(
            f"{{% {tag.keyword} %}} opened inside {where} must be closed inside it",
            tag.origin.template,
            tag.origin.line,
            kind="structure",
        )


def _without_comments(pieces: list[Piece]) -> list[Piece]:
    """``{# #}`` outputs nothing, so it need not survive the parser; its ``-`` marks still strip whitespace."""
    out: list[Piece] = []
    strip_next = False
    for piece in pieces:
        if isinstance(piece, Tag) and piece.kind is TagKind.COMMENT:
            if piece.text.startswith("{#-") and out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].text.rstrip(), out[-1].origin)
            strip_next = piece.text.endswith("-#}")
            continue
        if strip_next and isinstance(piece, Data):
            piece = Data(piece.text.lstrip(), piece.origin)
        strip_next = False
        out.append(piece)
    return out


def protect(pieces: list[Piece]) -> Protected:
    pieces = _without_comments(pieces)
    flat_parts: list[str] = []
    tags: list[Tag] = []
    for piece in pieces:
        if isinstance(piece, Data):
            if _PLACEHOLDER in piece.text:
                raise TemplateProblem("the template contains a NUL character", *_where(piece), kind="syntax")
            flat_parts.append(piece.text)
        else:
            flat_parts.append(_PLACEHOLDER)
            tags.append(piece)
    flat = "".join(flat_parts)
    scanned = _scan_html(flat)
    table = TokenTable(_new_nonce(flat))

    for tag, context, element in zip(tags, scanned.contexts, scanned.elements, strict=True):
        if context == HtmlContext.TAG:
            raise TemplateProblem(
                f"a Jinja tag between the attributes of <{element or '...'}> cannot survive CSS inlining; "
                'put it inside an attribute value instead, e.g. class="{% if x %}a{% else %}b{% endif %}"',
                *_where(tag),
                kind="structure",
            )
    groups: dict[int, list[Tag]] = {}
    for tag, attribute_id in zip(tags, scanned.attribute_ids, strict=True):
        if attribute_id >= 0:
            groups.setdefault(attribute_id, []).append(tag)
    for group in groups.values():
        _check_balanced(group, "an attribute value")

    # Placeholder offsets in the flat string, to map raw spans back to tags.
    offsets = [position for position, char in enumerate(flat) if char == _PLACEHOLDER]
    hidden_spans = [
        (start, end)
        for start, end in scanned.raw_spans
        if bisect.bisect_left(offsets, start) < bisect.bisect_left(offsets, end)
    ]

    out: list[str] = []
    tag_index = 0
    position = 0
    for start, end in hidden_spans:
        first = bisect.bisect_left(offsets, start)
        last = bisect.bisect_left(offsets, end)
        out.append(_tokenise(flat[position:start], tags, tag_index, scanned.contexts, table))
        hidden = _unflatten(flat[start:end], tags[first:last], tags[first].origin)
        _check_balanced(tags[first:last], "a <style> or <script> element")
        out.append(f"<!--{table.add(hidden)}-->")
        tag_index = last
        position = end
    out.append(_tokenise(flat[position:], tags, tag_index, scanned.contexts, table))
    table.protected = len(table.entries)
    return Protected("".join(out), table)


def _tokenise(flat: str, tags: list[Tag], first: int, contexts: list[str], table: TokenTable) -> str:
    parts = flat.split(_PLACEHOLDER)
    out = [parts[0]]
    for offset, text in enumerate(parts[1:]):
        index = first + offset
        token = table.add([tags[index]])
        if contexts[index] == HtmlContext.TEXT:
            table.between_elements.add(len(table.entries) - 1)
            out.append(f"<!--{token}-->")
        else:
            out.append(token)
        out.append(text)
    return "".join(out)


def _unflatten(flat: str, tags: list[Tag], origin: Origin) -> list[Piece]:
    parts = flat.split(_PLACEHOLDER)
    pieces: list[Piece] = [Data(parts[0], origin)]
    for tag, text in zip(tags, parts[1:], strict=True):
        pieces += [tag, Data(text, tag.origin)]
    return [piece for piece in pieces if not isinstance(piece, Data) or piece.text]


def _where(piece: Piece) -> tuple[str, int]:
    return piece.origin.template, piece.origin.line


# --- restoring ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineMap:
    """Maps a line of the compiled source back to the template and line it came from. A line inside a tag
    written over several lines maps to the line the tag starts on, where its author looks for it."""

    starts: tuple[int, ...] = ()
    origins: tuple[Origin, ...] = ()
    # The last line of each tag.
    ends: tuple[int, ...] = ()

    def origin(self, line: int) -> Origin | None:
        index = bisect.bisect_right(self.starts, line) - 1
        if index < 0:
            return None
        origin = self.origins[index]
        if line <= self.ends[index]:
            return origin
        return Origin(origin.template, origin.line + line - self.starts[index])


class SourceBuilder:
    """Writes Jinja source, putting each tag on lines of its own and recording where it came from."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.line = 1
        self.free_from = 1  # first line no tag has used yet
        self.starts: list[int] = []
        self.origins: list[Origin] = []
        self.ends: list[int] = []
        self.in_raw = False

    def data(self, text: str, *, parsed: bool = True) -> None:
        """``parsed``: text that went through the HTML parser, where ``&#123;&#123;`` became ``{{``."""
        if not text:
            return
        if parsed and not self.in_raw:
            text = _JINJA_OPENERS.sub("{{ '{' }}", text)
        self.parts.append(text)
        self.line += text.count("\n")

    def tag(self, tag: Tag) -> None:
        keyword = tag.keyword
        if tag.kind is not TagKind.COMMENT and not self.in_raw:
            if self.line < self.free_from:
                gap = self.free_from - self.line
                # A comment outputs nothing; its "-" keeps the whitespace control of a "{%-" tag after it.
                strip = "-" if tag.text[2:3] == "-" else ""
                self.parts.append("{#" + strip + "\n" * gap + "#}")
                self.line += gap
            self.starts.append(self.line)
            self.origins.append(tag.origin)
            self.ends.append(self.line + tag.text.count("\n"))
        self.parts.append(tag.text)
        self.line += tag.text.count("\n")
        self.free_from = self.line + 1
        if keyword == "raw":
            self.in_raw = True
        elif keyword == "endraw":
            self.in_raw = False

    def raw(self, text: str) -> None:
        """Source the compiler adds for itself and that cannot fail: written as is, outside the line map."""
        self.parts.append(text)
        self.line += text.count("\n")

    def pieces(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if isinstance(piece, Data):
                self.data(piece.text, parsed=False)
            else:
                self.tag(piece)

    def source(self) -> str:
        return "".join(self.parts)

    def line_map(self) -> LineMap:
        return LineMap(tuple(self.starts), tuple(self.origins), tuple(self.ends))


Item = str | int  # text, or the index of a token


def token_items(text: str, table: TokenTable, *, check: bool) -> list[Item]:
    """``text`` split into literal text and token indexes. With ``check`` (the HTML), every protected token
    must be there exactly once and in order."""
    items: list[Item] = []
    expected = 0
    position = 0
    for match in table.pattern().finditer(text):
        index = table.index(match.group(1) or match.group(2))
        if index >= len(table.entries):
            raise TemplateProblem("the CSS inliner produced an unknown tag marker", kind="structure")
        if check and index < table.protected:
            if index != expected:
                _lost_or_moved(table, min(index, expected))
            expected = index + 1
        if match.start() > position:
            items.append(text[position : match.start()])
        items.append(index)
        position = match.end()
    if position < len(text):
        items.append(text[position:])
    if check and expected != table.protected:
        _lost_or_moved(table, expected)
    return items


def write_items(items: list[Item], table: TokenTable, builder: SourceBuilder) -> None:
    for item in items:
        if isinstance(item, str):
            builder.data(item)
        else:
            builder.pieces(table.entries[item])


def restore(text: str, table: TokenTable, builder: SourceBuilder, *, check: bool) -> None:
    """Writes ``text`` into ``builder`` with every token replaced by what it stands for."""
    write_items(token_items(text, table, check=check), table, builder)


def _lost_or_moved(table: TokenTable, index: int) -> None:
    piece = table.entries[index][0]
    template, line = _where(piece)
    snippet = piece.text.strip()[:60]
    raise TemplateProblem(
        f"the CSS inliner could not keep {snippet!r} in place (is the HTML around it well formed?)",
        template,
        line,
        kind="structure",
    )
