"""The HTML and the plain-text part rendered by one template, in one pass.

The text template written from the HTML has the same statements (``{% if %}``, ``{% for %}``, ``{% block %}``
between elements) in the same order as the HTML template; only the literal text and the printed values
differ. So the two are merged: between two consecutive statements, the HTML of that stretch is followed by its
text, inside ``{% _nurture_text %}...{% _nurture_endtext %}``. One render then evaluates each condition and runs
each loop once. The HTML streams out of the render as usual; what the text tags enclose is printed without
escaping into the render's list of text chunks (``collecting_text``), one ``extend`` per stretch (the code
generator in sandbox.py writes it). A value printed in both parts of a stretch is computed once when it is the
same value in both (a lookup, a fallback, a date); anything whose result depends on escaping (``~``, ``join``,
a link) is computed in each part.

Templates where the statements differ, or where rendered output is captured and printed again (macros,
``{% call %}``, ``{% filter %}``, ``{% set %}`` blocks, ``self.block()``), keep a separate text template.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser

from nurture.rendering.protect import Item, SourceBuilder, TokenTable, write_items
from nurture.rendering.scanner import Tag, TagKind
from nurture.rendering.scoped import Scoped

TEXT_CHANNEL = "_nurture_text"
TEXT_CHANNEL_END = "_nurture_endtext"
TEXT_SINK = "_nurture_text_sink"
# Variables holding a value printed in both channels: set at the start of their stretch, read only in it.
SHARED_VALUE_PREFIX = "_nurture_v"
_SAME_IN_BOTH_CHANNELS_NODES = (nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Const, nodes.Keyword)
_SAME_IN_BOTH_CHANNELS_FILTERS = frozenset({"default", "d", "date", "time"})


class TextChannelExtension(Extension):
    """Parses the text tags into a ``{% autoescape false %}`` node that carries an option of its own, which
    the code generator recognises (Jinja has no custom node types)."""

    tags = {TEXT_CHANNEL}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements((f"name:{TEXT_CHANNEL_END}",), drop_needle=True)
        options = [nodes.Keyword("autoescape", nodes.Const(False)), nodes.Keyword(TEXT_CHANNEL, nodes.Const(True))]
        return nodes.ScopedEvalContextModifier(options, body, lineno=lineno)


def is_text_channel(node: nodes.ScopedEvalContextModifier) -> bool:
    return any(keyword.key == TEXT_CHANNEL for keyword in node.options)


class _Discarded:
    """Where the text channel goes outside ``collecting_text``: nowhere."""

    __slots__ = ()

    # Compiled templates write a stretch of one output with ``append``, of several with ``extend``.
    def append(self, chunk: str) -> None:
        pass

    def extend(self, chunks: Iterable[str]) -> None:
        pass


_DISCARDED = _Discarded()
_text: contextvars.ContextVar[list[str] | _Discarded] = contextvars.ContextVar("nurture_text_part", default=_DISCARDED)
# Where the text channel of the template being rendered goes (nowhere outside ``collecting_text``). The context
# variable's own ``get``: compiled templates call it once per stretch of text.
text_sink = _text.get


def collecting_text(chunks: list[str]) -> Scoped[list[str] | _Discarded]:
    return Scoped(_text, chunks)


_CAPTURING = {"macro", "call", "filter"}
_OPENING = {"if", "for", "with", "filter", "macro", "call", "block", "autoescape", "trans", "raw"}
_BLOCK_SET = re.compile(r"set\s+[^=]+$")


def _mergeable(table: TokenTable) -> bool:
    for pieces in table.entries[: table.protected]:
        for piece in pieces:
            if not isinstance(piece, Tag) or piece.kind is TagKind.COMMENT:
                continue
            body = piece.body
            if piece.keyword in _CAPTURING or (piece.keyword == "set" and _BLOCK_SET.match(body)):
                return False
            if "self." in body or "caller" in body:
                return False
    return True


def _statement(table: TokenTable, item: Item) -> Tag | None:
    if isinstance(item, int):
        pieces = table.entries[item]
        if len(pieces) == 1 and isinstance(pieces[0], Tag) and pieces[0].kind is TagKind.STATEMENT:
            return pieces[0]
    return None


def _as_text_environment_renders(items: list[Item], table: TokenTable) -> list[Item]:
    """Apply trim_blocks and lstrip_blocks, which the text environment would, to the text items."""
    out = list(items)
    for position, item in enumerate(out):
        tag = _statement(table, item)
        if tag is None:
            continue
        before = out[position - 1] if position else None
        if isinstance(before, str) and not tag.text.startswith("{%+"):
            head, newline, last_line = before.rpartition("\n")
            if not last_line.strip(" \t") and (newline or position == 1):
                out[position - 1] = head + newline
        after = out[position + 1] if position + 1 < len(out) else None
        if isinstance(after, str) and after.startswith("\n") and not tag.text.endswith("+%}"):
            out[position + 1] = after[1:]
    return out


def _depth_zero(items: list[Item], table: TokenTable) -> set[int]:
    """Tokens of a stretch that are not inside a statement of that stretch (an ``{% if %}`` in an attribute,
    a ``{% filter %}`` around a href): evaluated exactly once whenever the stretch is rendered."""
    depth = 0
    found = set()
    for item in items:
        tag = _statement(table, item)
        if tag is not None:
            if tag.keyword.startswith("end"):
                depth -= 1
            elif tag.keyword in _OPENING or (tag.keyword == "set" and _BLOCK_SET.match(tag.body)):
                depth += 1
        elif isinstance(item, int) and depth == 0:
            found.add(item)
    return found


def _variable(table: TokenTable, index: int) -> Tag | None:
    pieces = table.entries[index]
    if len(pieces) == 1 and isinstance(pieces[0], Tag) and pieces[0].kind is TagKind.VARIABLE:
        return pieces[0]
    return None


def _same_in_both_channels(environment: jinja2.Environment, body: str) -> bool:
    """The expression has the same value whether HTML is being escaped or not: names, attributes, items,
    constants and the fallback and date filters. (``~``, ``join``, ``escape``, the link filters... depend on it.)"""
    try:
        tree = environment.parse(f"{{{{ {body} }}}}")
    except jinja2.TemplateSyntaxError:
        return False
    [output] = tree.body
    assert isinstance(output, nodes.Output)
    [expression] = output.nodes
    for node in (expression, *expression.find_all(nodes.Node)):
        if isinstance(node, nodes.Filter):
            if node.name not in _SAME_IN_BOTH_CHANNELS_FILTERS:
                return False
        elif not isinstance(node, _SAME_IN_BOTH_CHANNELS_NODES):
            return False
    return True


def _share(
    html: list[Item], text: list[Item], table: TokenTable, builder: SourceBuilder, environment: jinja2.Environment
) -> dict[int, int]:
    """Values printed in both channels of a stretch are computed once, by a ``{% set %}`` at its start; the
    two prints read the variable. Returns the replacement token of each shared one."""
    shared = _depth_zero(html, table) & _depth_zero(text, table)
    replacements: dict[int, int] = {}
    for item in html:
        if not isinstance(item, int) or item not in shared or item in replacements:
            continue
        tag = _variable(table, item)
        if tag is None or tag.body == "''" or not _same_in_both_channels(environment, tag.body):
            continue
        name = f"{SHARED_VALUE_PREFIX}{item}"
        builder.tag(Tag(f"{{% set {name} = ({tag.body}) %}}", TagKind.STATEMENT, tag.origin))
        opening = "{{-" if tag.text.startswith("{{-") else "{{"
        closing = "-}}" if tag.text.endswith("-}}") else "}}"
        table.entries.append([tag.with_text(f"{opening} {name} {closing}")])
        replacements[item] = len(table.entries) - 1
    return replacements


def _apply_whitespace_control(items: list[Item], table: TokenTable, synchronised: set[int]) -> list[Item]:
    """``{%-`` and ``-%}`` on a statement strip the literal text next to it. In the merged template a
    statement's neighbours are markers and the other channel, so the stripping is done here, per channel."""
    out = list(items)
    for position, item in enumerate(out):
        if not isinstance(item, int) or item not in synchronised:
            continue
        tag = table.entries[item][0]
        assert isinstance(tag, Tag)
        if tag.text.startswith("{%-") and position and isinstance(out[position - 1], str):
            out[position - 1] = out[position - 1].rstrip()  # type: ignore[union-attr]
        if tag.text.endswith("-%}") and position + 1 < len(out) and isinstance(out[position + 1], str):
            out[position + 1] = out[position + 1].lstrip()  # type: ignore[union-attr]
    return out


def merge(
    html: list[Item], text: list[Item], table: TokenTable, builder: SourceBuilder, environment: jinja2.Environment
) -> bool:
    """Writes the merged template into ``builder``; ``False`` (and nothing written) if it cannot be merged."""
    if not _mergeable(table):
        return False
    synchronised = {index for index in table.between_elements if _statement(table, index) is not None}
    html_statements = [item for item in html if isinstance(item, int) and item in synchronised]
    text_statements = [item for item in text if isinstance(item, int) and item in synchronised]
    if html_statements != text_statements:
        return False
    html = _apply_whitespace_control(html, table, synchronised)
    text = _as_text_environment_renders(_apply_whitespace_control(text, table, synchronised), table)
    html_position = text_position = 0
    for statement in [*html_statements, None]:
        start = html_position
        while html_position < len(html) and html[html_position] != statement:
            html_position += 1
        html_stretch = html[start:html_position]
        start = text_position
        while text_position < len(text) and text[text_position] != statement:
            text_position += 1
        text_stretch = [item for item in text[start:text_position] if item != ""]
        replacements = _share(html_stretch, text_stretch, table, builder, environment)
        write_items([replacements.get(item, item) for item in html_stretch], table, builder)
        if text_stretch:
            builder.raw(f"{{% {TEXT_CHANNEL} %}}")
            write_items([replacements.get(item, item) for item in text_stretch], table, builder)
            builder.raw(f"{{% {TEXT_CHANNEL_END} %}}")
        if statement is not None:
            builder.pieces(table.entries[statement])
            html_position += 1
            text_position += 1
    return True
