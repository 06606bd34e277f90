"""What a compiled email proves about every email it renders: a link to the recipient's unsubscribe URL and the
sender's postal address, both in the visible HTML body, whoever the recipient.

Delivery refuses a marketing email whose HTML body lacks either (``nurture.delivery.compliance``), and finding
them in a 20 KB body cost more than rendering it. The compiler can answer once per template version instead:
when the assembled document has ``<a href="{{ unsubscribe_url }}">`` and ``{{ sender.postal_address }}`` as
visible content (inside ``<body>``, not in a comment, ``<head>``, ``<style>``, ``<script>``, ``<title>``...),
outside any condition, loop, macro, call, filter or raw block, and nothing in the template can rebind those
names or print markup that could hide them (the ``safe`` filter, autoescape switched off, macros, ``caller()``,
``super()``, ``self.<block>()``, includes or imports), then every render prints both, escaped, where a reader
sees them. A render of such a template returns a ``FooterProof`` naming the URL and address it printed and the
very string it printed them in; compliance checks those cheap facts instead of scanning the body. Whatever
this analysis cannot vouch for gets no proof, and compliance scans the body as before.

The analysis is deliberately narrow: it accepts the footer every layout of this project writes, and nothing
clever."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from lxml import etree

from nurture.rendering.channels import is_text_channel
from nurture.rendering.protect import TokenTable, opens_block
from nurture.rendering.scanner import Piece, Tag, TagKind

UNSUBSCRIBE_VARIABLE = "unsubscribe_url"
SENDER_VARIABLE = "sender"
POSTAL_ADDRESS_EXPRESSION = "sender.postal_address"
# Elements whose content a reader does not see as body text.
_HIDDEN_ELEMENTS = {"head", "title", "style", "script", "template", "noscript", "textarea", "iframe", "object"}
# Blocks whose content is always rendered once, in place (``with`` cannot rebind the names: see below).
_UNCONDITIONAL_BLOCKS = {"block", "with"}
# Names whose call prints template output that the HTML parser did not see where it is printed.
_OUTPUT_CALLERS = {"caller", "super", "self", "varargs", "kwargs"}


@dataclass(frozen=True, slots=True, eq=False)
class FooterProof:
    """``html`` links to ``unsubscribe_url`` and shows ``postal_address``, by the compiled template's analysis.
    It vouches for that string object only: compliance compares by identity."""

    html: str
    unsubscribe_url: str
    postal_address: str


def _normalised(tag: Tag) -> str:
    return "".join(tag.body.split())


def _conditions_at_tokens(serialized: str, tokens: TokenTable, prelude: list[Piece]) -> dict[int, bool] | None:
    """For each token of the serialized document: True when no condition, loop or other block that may skip or
    capture its content is open there. None when the statements do not nest as expected."""
    open_blocks: list[str] = []
    for piece in prelude:
        if isinstance(piece, Tag) and piece.kind is TagKind.STATEMENT and opens_block(piece):
            return None  # the prelude holds definitions; a block it opens would wrap the whole document
    unconditional: dict[int, bool] = {}
    for match in tokens.pattern().finditer(serialized):
        index = tokens.index(match.group(1) or match.group(2))
        unconditional[index] = all(keyword in _UNCONDITIONAL_BLOCKS for keyword in open_blocks)
        for piece in tokens.entries[index]:
            if not isinstance(piece, Tag) or piece.kind is not TagKind.STATEMENT:
                continue
            if opens_block(piece):
                open_blocks.append(piece.keyword)
            elif piece.keyword.startswith("end"):
                if not open_blocks:
                    return None
                open_blocks.pop()
    return unconditional


def _sole_variable(value: str | None, tokens: TokenTable) -> tuple[int, str] | None:
    """(token index, normalised expression) when ``value`` is exactly one ``{{ expression }}`` token."""
    if value is None:
        return None
    match = tokens.pattern().fullmatch(value.strip())
    if match is None:
        return None
    index = tokens.index(match.group(1) or match.group(2))
    pieces = tokens.entries[index]
    if len(pieces) != 1 or not isinstance(pieces[0], Tag) or pieces[0].kind is not TagKind.VARIABLE:
        return None
    return index, _normalised(pieces[0])


def _visible(node: Any) -> bool:
    """Inside ``<body>`` and inside no element whose content is hidden from the reader."""
    in_body = False
    parent = node.getparent()
    while parent is not None:
        tag = parent.tag if isinstance(parent.tag, str) else ""
        if tag.lower() in _HIDDEN_ELEMENTS:
            return False
        in_body = in_body or tag.lower() == "body"
        parent = parent.getparent()
    return in_body


def document_shows_footer(root: Any, serialized: str, tokens: TokenTable, prelude: list[Piece]) -> bool:
    """The parsed, protected document (``root``, after the links were rewritten; ``serialized`` is its text) has
    an unconditional, visible unsubscribe link and postal address."""
    unconditional = _conditions_at_tokens(serialized, tokens, prelude)
    if unconditional is None:
        return False
    link = address = False
    for node in root.iter():
        if node.tag is etree.Comment:
            found = _sole_variable(node.text, tokens)
            if found and found[1] == POSTAL_ADDRESS_EXPRESSION:
                address = address or (unconditional.get(found[0], False) and _visible(node))
        elif node.tag == "a":
            found = _sole_variable(node.get("href"), tokens)
            if found and found[1] == UNSUBSCRIBE_VARIABLE:
                link = link or (unconditional.get(found[0], False) and _visible(node))
    return link and address


def template_cannot_hide_footer(template: nodes.Template) -> bool:
    """Nothing in the compiled HTML template can rebind the footer's names or print markup the compiler did not
    see in place (which could open a comment or a hidden element before the footer)."""
    for name in template.find_all(nodes.Name):
        if name.ctx in ("store", "param") and name.name in (UNSUBSCRIBE_VARIABLE, SENDER_VARIABLE):
            return False
        if name.name in _OUTPUT_CALLERS:
            return False
    if next(template.find_all((nodes.Macro, nodes.CallBlock, nodes.Include, nodes.Import, nodes.FromImport)), None):
        return False
    for modifier in template.find_all(nodes.EvalContextModifier):
        if not (isinstance(modifier, nodes.ScopedEvalContextModifier) and is_text_channel(modifier)):
            return False
    return not any(node.name == "safe" for node in template.find_all(nodes.Filter))
