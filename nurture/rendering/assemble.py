"""Resolves an email's layout chain and partials into one self-contained Jinja source.

CSS can only be inlined on a whole document: a child template holds blocks, the layout holds the ``<style>``
and the skeleton, partials hold the footer. So before inlining, ``{% extends %}`` and ``{% include %}`` are
resolved here, the way Jinja would resolve them, into one document whose tags still carry the template and
line they were written on (for error messages):

- the layout's blocks are filled with the most derived definition; ``{{ super() }}`` is replaced by the
  parent's body;
- blocks that no layout places (``subject``, usually) are kept, defined but never output, so
  ``{{ self.subject() }}`` keeps working and the subject can be compiled on its own;
- ``{% include "x" %}`` is replaced by the partial inside ``{% with %}``, which keeps the partial's
  assignments to itself as Jinja's include does;
- top-level ``{% set %}`` and ``{% macro %}`` of child templates run before the document, as in Jinja.

Only literal template names can be resolved before rendering, so ``{% extends var %}``, ``{% include var %}``,
``{% include ... without context %}``, ``{% import %}`` and ``{% from ... import %}`` are reported as problems.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import jinja2
from jinja2 import nodes

from nurture.rendering.errors import TemplateProblem
from nurture.rendering.scanner import Data, Origin, Piece, Tag, TagKind, scan
from nurture.rendering.sources import LoadedTemplate

MAX_DEPTH = 10

_EXTENDS = re.compile(r"extends\s+(['\"])([^'\"]+)\1\s*$")
_INCLUDE = re.compile(r"include\s+(['\"])([^'\"]+)\1(\s+ignore\s+missing)?(\s+with\s+context)?\s*$")
_BLOCK = re.compile(r"block\s+([A-Za-z_][A-Za-z0-9_]*)\b")
_BLOCK_SET = re.compile(r"set\s+[^=]+$")
_PAIRED = {"for", "if", "macro", "call", "filter", "with", "autoescape", "block", "trans"}

Loader = Callable[[str], LoadedTemplate | None]


@dataclass
class Assembled:
    name: str
    prelude: list[Piece]
    document: list[Piece]
    hidden: list[Piece]
    # The resolved body of every block, for compiling the subject and preheader on their own.
    blocks: dict[str, list[Piece]]
    # (name, version) of every template read, in the order read: the compiled email's cache key.
    versions: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Block:
    name: str
    open: Tag
    body: list[Piece]
    close: Tag


def _synthetic(text: str, origin: Origin) -> Tag:
    return Tag(text, TagKind.STATEMENT, origin)


def check_syntax(environment: jinja2.Environment, source: str, name: str) -> None:
    """Jinja's parser on the source as written, plus what assembling supports; raises ``TemplateProblem``."""
    try:
        tree = environment.parse(source, name=name)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateProblem(error.message or "syntax error", name, error.lineno, kind="syntax") from None
    for node in tree.find_all((nodes.Import, nodes.FromImport)):
        raise TemplateProblem(
            "{% import %} is not available in email templates: use {% include %} for partials "
            "and define macros in the template that uses them",
            name,
            node.lineno,
            kind="structure",
        )
    for node in tree.find_all((nodes.Extends, nodes.Include)):
        tag = "extends" if isinstance(node, nodes.Extends) else "include"
        if not isinstance(node.template, nodes.Const) or not isinstance(node.template.value, str):
            raise TemplateProblem(
                f'{{% {tag} %}} needs a quoted template name such as "layout.html"', name, node.lineno, "structure"
            )
        if isinstance(node, nodes.Include) and not node.with_context:
            raise TemplateProblem(
                "{% include ... without context %} is not supported in email templates", name, node.lineno, "structure"
            )


class _Assembler:
    def __init__(self, environment: jinja2.Environment, load: Loader) -> None:
        self.environment = environment
        self.load = load
        self.versions: list[tuple[str, str]] = []
        self.definitions: dict[str, list[_Block]] = {}
        self.placed: set[str] = set()

    def read(self, name: str, wanted_by: Origin | None, optional: bool = False) -> list[Piece] | None:
        loaded = self.load(name)
        if loaded is None:
            if optional:
                return None
            where = (wanted_by.template, wanted_by.line) if wanted_by else (name, None)
            raise TemplateProblem(f"template {name!r} not found", *where, kind="missing")
        self.versions.append((name, loaded.version))
        check_syntax(self.environment, loaded.source, name)
        return scan(loaded.source, name)

    def assemble(self, name: str) -> Assembled:
        chain: list[list[Piece]] = []
        current: str | None = name
        wanted_by: Origin | None = None
        while current is not None:
            if len(chain) >= MAX_DEPTH or any(p and p[0].origin.template == current for p in chain):
                raise TemplateProblem(
                    f"layouts extend each other in a loop through {current!r}", name, kind="structure"
                )
            pieces = self.read(current, wanted_by)
            assert pieces is not None
            chain.append(pieces)
            current, wanted_by = _extended(pieces)
        for pieces in chain:
            for block in _find_blocks(pieces):
                self.definitions.setdefault(block.name, []).append(block)
        document = self.expand(chain[-1], None, 0, ())
        prelude: list[Piece] = []
        for pieces in chain[:-1]:
            prelude += self.expand(_top_level_definitions(pieces), None, 0, ())
        blocks: dict[str, list[Piece]] = {}
        nested: set[str] = set()
        for block_name, definitions in self.definitions.items():
            placed = set(self.placed)
            blocks[block_name] = self.expand(definitions[0].body, block_name, 0, ())
            nested |= self.placed - placed
            self.placed = placed
        hidden: list[Piece] = []
        for block_name, definitions in self.definitions.items():
            # A block no layout places is defined but never output; one nested in another such block comes
            # with it (defining it twice would be an error).
            if block_name not in self.placed and block_name not in nested:
                block = definitions[0]
                hidden += [_synthetic("{% if false %}", block.open.origin), block.open, *blocks[block_name]]
                hidden += [block.close, _synthetic("{% endif %}", block.close.origin)]
        versions = list(dict.fromkeys(self.versions))
        return Assembled(name, prelude, document, hidden, blocks, versions)

    def expand(self, pieces: list[Piece], block: str | None, level: int, including: tuple[str, ...]) -> list[Piece]:
        out: list[Piece] = []
        index = 0
        while index < len(pieces):
            piece = pieces[index]
            index += 1
            if not isinstance(piece, Tag) or piece.kind is TagKind.COMMENT:
                out.append(piece)
                continue
            if piece.keyword == "block":
                end = _matching_end(pieces, index - 1)
                name = _block_name(piece)
                if including:
                    # A partial's blocks belong to the partial: output in place, never overridden.
                    out += self.expand(pieces[index:end], None, 0, including)
                else:
                    self.placed.add(name)
                    out.append(piece)
                    out += self.expand(self.definitions[name][0].body, name, 0, including)
                    out.append(pieces[end])
                index = end + 1
            elif piece.kind is TagKind.VARIABLE and piece.body == "super()":
                out += self.expand_super(piece, block, level, including)
            elif "super(" in piece.body:
                raise TemplateProblem(
                    "super() is only supported on its own, as {{ super() }}", *_where(piece), kind="structure"
                )
            elif piece.keyword == "include":
                out += self.expand_include(piece, including)
            else:
                out.append(piece)
        return out

    def expand_super(self, tag: Tag, block: str | None, level: int, including: tuple[str, ...]) -> list[Piece]:
        if block is None or including:
            raise TemplateProblem("{{ super() }} can only be used inside a block", *_where(tag), kind="structure")
        parents = self.definitions[block]
        if level + 1 >= len(parents):
            raise TemplateProblem(f"block {block!r} has no parent block to call", *_where(tag), kind="structure")
        return self.expand(parents[level + 1].body, block, level + 1, including)

    def expand_include(self, tag: Tag, including: tuple[str, ...]) -> list[Piece]:
        match = _INCLUDE.match(tag.body)
        if match is None:
            raise TemplateProblem(
                '{% include %} needs a quoted template name, optionally "ignore missing"', *_where(tag), "structure"
            )
        name = match.group(2)
        if name in including or len(including) >= MAX_DEPTH:
            raise TemplateProblem(f"partial {name!r} includes itself", *_where(tag), kind="structure")
        pieces = self.read(name, tag.origin, optional=bool(match.group(3)))
        if pieces is None:
            return []
        if _extended(pieces)[0] is not None:
            raise TemplateProblem("a partial cannot extend a layout", name, _extended(pieces)[1].line, "structure")
        body = self.expand(pieces, None, 0, (*including, name))
        return [_synthetic("{% with %}", tag.origin), *body, _synthetic("{% endwith %}", tag.origin)]


def _where(tag: Tag) -> tuple[str, int]:
    return tag.origin.template, tag.origin.line


def _extended(pieces: list[Piece]) -> tuple[str | None, Origin]:
    """The layout a template extends, which must be its first tag."""
    for piece in pieces:
        if isinstance(piece, Data):
            if piece.text.strip():
                break
            continue
        if piece.kind is TagKind.COMMENT:
            continue
        if piece.keyword == "extends":
            match = _EXTENDS.match(piece.body)
            if match is None:
                raise TemplateProblem(
                    '{% extends %} needs a quoted template name such as "layout.html"', *_where(piece), "structure"
                )
            return match.group(2), piece.origin
        break
    for piece in pieces:
        if isinstance(piece, Tag) and piece.keyword == "extends":
            raise TemplateProblem("{% extends %} must be the first thing in a template", *_where(piece), "structure")
    return None, Origin("", 0)


def _block_name(tag: Tag) -> str:
    match = _BLOCK.match(tag.body)
    if match is None:
        raise TemplateProblem("a block needs a name", *_where(tag), kind="syntax")
    return match.group(1)


def _opens(tag: Tag) -> bool:
    keyword = tag.keyword
    if keyword == "set":
        return bool(_BLOCK_SET.match(tag.body))
    return keyword in _PAIRED


def _matching_end(pieces: list[Piece], start: int) -> int:
    depth = 0
    for index in range(start, len(pieces)):
        piece = pieces[index]
        if not isinstance(piece, Tag) or piece.kind is not TagKind.STATEMENT:
            continue
        if _opens(piece):
            depth += 1
        elif piece.keyword.startswith("end"):
            depth -= 1
            if depth == 0:
                return index
    opener = pieces[start]
    assert isinstance(opener, Tag)
    raise TemplateProblem(f"{{% {opener.keyword} %}} is never closed", *_where(opener), kind="syntax")


def _find_blocks(pieces: list[Piece]) -> list[_Block]:
    blocks = []
    for index, piece in enumerate(pieces):
        if isinstance(piece, Tag) and piece.keyword == "block":
            end = _matching_end(pieces, index)
            close = pieces[end]
            assert isinstance(close, Tag)
            blocks.append(_Block(_block_name(piece), piece, pieces[index + 1 : end], close))
    return blocks


def _top_level_definitions(pieces: list[Piece]) -> list[Piece]:
    """The ``{% set %}`` and ``{% macro %}`` statements outside blocks of a child template."""
    out: list[Piece] = []
    index = 0
    while index < len(pieces):
        piece = pieces[index]
        if isinstance(piece, Tag) and piece.kind is TagKind.STATEMENT:
            if piece.keyword in {"set", "macro"}:
                end = _matching_end(pieces, index) if _opens(piece) else index
                out += pieces[index : end + 1]
                index = end + 1
                continue
            if _opens(piece):
                index = _matching_end(pieces, index) + 1
                continue
        index += 1
    return out


def assemble(environment: jinja2.Environment, load: Loader, name: str) -> Assembled:
    return _Assembler(environment, load).assemble(name)
