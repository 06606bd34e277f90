"""Splits a Jinja source into literal text and tags, keeping each tag's exact spelling and its line.

Jinja's own lexer gives tokens, not the tags as written; assembling layouts and protecting tags through the
CSS inliner need the written form. Syntax is checked by Jinja's parser before anything here runs, so this
only has to agree with Jinja on where tags start and end (string literals may hold ``}}`` or ``%}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nurture.rendering.errors import TemplateProblem

_TAG_START = re.compile(r"\{[{%#]")
_END_RAW = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TagKind(StrEnum):
    VARIABLE = "variable"
    STATEMENT = "statement"
    COMMENT = "comment"


@dataclass(frozen=True, slots=True)
class Origin:
    template: str
    line: int


@dataclass(frozen=True, slots=True)
class Data:
    text: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class Tag:
    text: str
    kind: TagKind
    origin: Origin

    @property
    def body(self) -> str:
        """What is between the delimiters and whitespace-control marks."""
        inner = self.text[2:-2]
        if inner[:1] in "-+":
            inner = inner[1:]
        if inner[-1:] in "-+":
            inner = inner[:-1]
        return inner.strip()

    @property
    def keyword(self) -> str:
        """The statement's first word (``if``, ``endfor``, ``block``); empty for variables and comments."""
        if self.kind is not TagKind.STATEMENT:
            return ""
        match = _KEYWORD.match(self.body)
        return match.group() if match else ""

    def with_text(self, text: str) -> Tag:
        return Tag(text, self.kind, self.origin)


Piece = Data | Tag


def _tag_end(source: str, start: int, closer: str) -> int:
    """Index just past the tag that starts at ``start``, skipping string literals."""
    position = start + 2
    length = len(source)
    while position < length:
        char = source[position]
        if char in "'\"":
            position += 1
            while position < length and source[position] != char:
                position += 2 if source[position] == "\\" else 1
            position += 1
            continue
        if source.startswith(closer, position):
            return position + 2
        position += 1
    return -1


def scan(source: str, template: str) -> list[Piece]:
    pieces: list[Piece] = []
    line = 1
    position = 0

    def add_data(text: str) -> None:
        nonlocal line
        if text:
            pieces.append(Data(text, Origin(template, line)))
            line += text.count("\n")

    while True:
        match = _TAG_START.search(source, position)
        if match is None:
            add_data(source[position:])
            return pieces
        add_data(source[position : match.start()])
        opener = match.group()
        if opener == "{#":
            end = source.find("#}", match.start() + 2)
            end = end + 2 if end >= 0 else -1
            kind = TagKind.COMMENT
        else:
            end = _tag_end(source, match.start(), "}}" if opener == "{{" else "%}")
            kind = TagKind.VARIABLE if opener == "{{" else TagKind.STATEMENT
        if end < 0:
            raise TemplateProblem("this tag is never closed", template, line, kind="syntax")
        tag = Tag(source[match.start() : end], kind, Origin(template, line))
        pieces.append(tag)
        line += tag.text.count("\n")
        position = end
        if tag.keyword == "raw":
            closing = _END_RAW.search(source, position)
            if closing is None:
                raise TemplateProblem("{% raw %} is never closed", template, tag.origin.line, kind="syntax")
            add_data(source[position : closing.start()])
            pieces.append(Tag(closing.group(), TagKind.STATEMENT, Origin(template, line)))
            line += closing.group().count("\n")
            position = closing.end()


def join(pieces: list[Piece]) -> str:
    return "".join(piece.text for piece in pieces)
