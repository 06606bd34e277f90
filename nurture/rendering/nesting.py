"""How deeply a template may nest, checked before Jinja parses it and again before Python compiles it.

Jinja's parser and code generator recurse once per level of nesting, and Python refuses generated code that
nests too deeply (100 levels of indentation, 20 loops within each other in a function, 200 parentheses
within each other). Past those, a template would fail with a RecursionError or an IndentationError from deep
inside. The limits below leave real templates far inside and Python's limits far outside; a template past
one gets a syntax error naming the line where it goes past it.

- ``MAX_NESTED_BLOCKS``: tags with an end tag (``{% if %}``, ``{% for %}``, ``{% macro %}``, ``{% call %}``,
  ``{% filter %}``, ``{% with %}``, ``{% block %}``, ``{% set %}...{% endset %}``, ``{% autoescape %}``)
  within each other. An email is checked as assembled too: its layout's, its own and its partials' together
  (an include adds one).
- ``MAX_NESTED_LOOPS``: ``{% for %}`` within each other.
- ``MAX_NESTED_BRACKETS``: ``(``, ``[`` and ``{`` within each other in one expression (the parser's deepest
  recursion, some dozen frames per level).
- ``MAX_EXPRESSION_DEPTH``: operators, filters, tests, lookups and calls within each other in one expression:
  ``a + b + c`` is as deep as it is long, ``x|trim|upper`` is three deep.

The templates as written are held to these limits. The source the compiler assembles from them may go
``ASSEMBLY_MARGIN`` further in brackets and expression depth: it puts an expression in brackets to pass it to a
link filter, or to compute once a value both parts print. So a template that passes ``check`` compiles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from jinja2 import TemplateSyntaxError, nodes
from jinja2.lexer import Token

MAX_NESTED_BLOCKS = 40
MAX_NESTED_LOOPS = 15
MAX_NESTED_BRACKETS = 30
MAX_EXPRESSION_DEPTH = 40
ASSEMBLY_MARGIN = 2

TOO_DEEP = (
    f"the template nests too deeply (at most {MAX_NESTED_BLOCKS} blocks, {MAX_NESTED_LOOPS} loops, "
    f"{MAX_NESTED_BRACKETS} brackets and {MAX_EXPRESSION_DEPTH} operators or filters within each other)"
)

# Tags that open a block closed by an end tag (``set`` only in its block form, without ``=``).
_PAIRED = frozenset({"if", "for", "macro", "call", "filter", "with", "block", "autoescape", "trans"})
_OPENING_BRACKETS = frozenset({"lparen", "lbracket", "lbrace"})
_CLOSING_BRACKETS = frozenset({"rparen", "rbracket", "rbrace"})


def check_tokens(stream: Iterable[Token], name: str | None, filename: str | None, margin: int = 0) -> None:
    """Raises ``TemplateSyntaxError`` at the tag or bracket that nests past a limit (brackets: ``margin``
    more). Reads the lexer's tokens, which need no recursion, so it runs before the parser would recurse."""
    max_brackets = MAX_NESTED_BRACKETS + margin
    opened: list[str] = []
    loops = 0
    brackets = 0
    tag_name_next = False
    block_set_line: int | None = None

    def fail(message: str, line: int) -> None:
        raise TemplateSyntaxError(message, line, name, filename)

    for token in stream:
        kind = token.type
        if kind == "block_begin":
            tag_name_next = True
            continue
        if tag_name_next:
            tag_name_next = False
            if kind == "name":
                word = token.value
                if word in _PAIRED:
                    opened.append(word)
                    if len(opened) > MAX_NESTED_BLOCKS:
                        fail(_too_many(f"{{% {word} %}}", len(opened), MAX_NESTED_BLOCKS, "blocks"), token.lineno)
                    if word == "for":
                        loops += 1
                        if loops > MAX_NESTED_LOOPS:
                            fail(_too_many("{% for %}", loops, MAX_NESTED_LOOPS, "loops"), token.lineno)
                elif word == "set":
                    block_set_line = token.lineno
                elif word.startswith("end") and opened:
                    closed = opened.pop()
                    loops -= closed == "for"
            continue
        if block_set_line is not None:
            if kind == "assign":
                block_set_line = None
            elif kind == "block_end":
                opened.append("set")
                if len(opened) > MAX_NESTED_BLOCKS:
                    fail(_too_many("{% set %}", len(opened), MAX_NESTED_BLOCKS, "blocks"), block_set_line)
                block_set_line = None
        if kind in _OPENING_BRACKETS:
            brackets += 1
            if brackets > max_brackets:
                fail(_too_many(f"the bracket {token.value!r}", brackets, max_brackets, "brackets"), token.lineno)
        elif kind in _CLOSING_BRACKETS and brackets:
            brackets -= 1


def _too_many(what: str, depth: int, limit: int, things: str) -> str:
    return f"{what} is nested {depth} deep: at most {limit} {things} can be nested within each other"


def check_tree(tree: nodes.Template, name: str | None, filename: str | None, margin: int = 0) -> None:
    """Raises ``TemplateSyntaxError`` at the first part of an expression nested past ``MAX_EXPRESSION_DEPTH``
    (plus ``margin``). Walks the tree without recursion."""
    max_depth = MAX_EXPRESSION_DEPTH + margin
    pending: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while pending:
        node, depth = pending.pop()
        for child in node.iter_child_nodes():
            # Depth counts within one expression: a statement starts again from nothing; the parts of a dict
            # literal, keyword arguments and comparison operands are no level of their own.
            if isinstance(child, nodes.Stmt):
                child_depth = 0
            else:
                child_depth = depth if isinstance(child, nodes.Helper) else depth + 1
            if child_depth > max_depth:
                raise TemplateSyntaxError(
                    _too_many("an expression", child_depth, max_depth, "operators, filters or lookups"),
                    child.lineno,
                    name,
                    filename,
                )
            pending.append((child, child_depth))


def deepest_line(tree: nodes.Node) -> int:
    """The line of the most deeply nested node (where a recursion past Python's limit most likely went)."""
    deepest, line = -1, 1
    pending: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while pending:
        node, depth = pending.pop()
        if depth > deepest:
            deepest, line = depth, getattr(node, "lineno", line) or line
        pending.extend((child, depth + 1) for child in node.iter_child_nodes())
    return line


_DEBUG_INFO = re.compile(r"^debug_info = '([0-9=&]*)'$", re.MULTILINE)


def template_line(code: str, code_line: int | None) -> int:
    """The template line that generated line ``code_line`` of ``code`` (Jinja writes the map at its end);
    1 when it cannot tell."""
    found = _DEBUG_INFO.search(code)
    if code_line is None or found is None or not found.group(1):
        return 1
    line = 1
    for pair in found.group(1).split("&"):
        template, _, generated = pair.partition("=")
        if int(generated) > code_line:
            break
        line = int(template)
    return line
