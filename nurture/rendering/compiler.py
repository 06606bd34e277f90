"""From template sources to a compiled email, once per version; from a compiled email to a rendered one, per
recipient.

Compiling: assemble the layout chain and partials, protect the Jinja tags, inline the CSS with premailer,
replace the links by link filters, write the plain-text template from the same tree, merge it into the HTML
template (see channels.py) or keep it apart, restore the tags, compile in the sandbox. Rendering: the HTML
template, which also writes the text part when merged (its subject and preheader blocks in the same context),
else the text template after it; the link filters print each recipient's hrefs as they go, so both outputs are
final when the render returns.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SecurityError
from lxml import etree

from nurture.rendering.assemble import Loader, assemble
from nurture.rendering.channels import merge
from nurture.rendering.context import SenderView
from nurture.rendering.errors import TemplateProblem
from nurture.rendering.footer import (
    SENDER_VARIABLE,
    UNSUBSCRIBE_VARIABLE,
    FooterProof,
    document_shows_footer,
    template_cannot_hide_footer,
)
from nurture.rendering.inline import inline_tree, parse_document, serialize_document
from nurture.rendering.links import (
    LINK_FILTERS,
    PIXEL_VARIABLE,
    STATIC_LINK_FILTER,
    CampaignLinks,
    LinkTable,
    MessageLinks,
    is_http,
    open_pixel,
    rendering_links,
    rewrite_links,
    unescape_text,
)
from nurture.rendering.protect import LineMap, SourceBuilder, TokenTable, protect, restore, token_items, write_items
from nurture.rendering.sandbox import BudgetedTemplate, EmailSandbox, LimitExceeded, RenderLimits, render_budget
from nurture.rendering.scanner import Data, Origin, Piece, Tag, TagKind
from nurture.rendering.text import html_to_text, tidy_text

# Bump when the compiler's output changes, so cached compiled emails are not reused across versions of it.
PIPELINE_VERSION = "2"
SUBJECT_BLOCK = "subject"
PREHEADER_BLOCK = "preheader"
MAX_SUBJECT_CHARS = 998  # a header line's limit (RFC 5322)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str
    # Target URL of each link index: what a click on ``.../t/c/<token>/<index>`` redirects to. Store it with
    # the message.
    links: tuple[str, ...]
    template: str
    template_version: str
    # The signed unsubscribe URL the email links to, to announce in List-Unsubscribe ("" in previews).
    unsubscribe_url: str = ""
    # The compiled template's word that ``html`` links to ``unsubscribe_url`` and shows the postal address
    # (see footer.py); None when it cannot vouch for them and compliance must look.
    footer: FooterProof | None = None


@dataclass
class _Part:
    template: BudgetedTemplate
    filename: str
    line_map: LineMap
    source: str


@dataclass
class CompiledEmail:
    """One version of one email, ready to render for any number of recipients."""

    name: str
    version: str
    # (template name, version or None when absent) of every source this depends on: reuse while unchanged.
    dependencies: tuple[tuple[str, str | None], ...]
    # The HTML template; it also writes the text part unless ``text`` is set (see channels.py).
    html: _Part
    # The text template when it is rendered on its own: the hand-written .txt sibling, or the text written from
    # the HTML when the two could not be merged.
    text: _Part | None
    has_preheader: bool
    links: LinkTable
    has_unsubscribe_link: bool
    hand_written_text: bool
    # Every render links to its unsubscribe URL and shows the sender's postal address (see footer.py).
    proves_footer: bool
    limits: RenderLimits
    globals: dict[str, Any]
    _campaigns: dict[tuple[tuple[str, str], ...], CampaignLinks] = field(default_factory=dict)

    def campaign_links(self, utm: Mapping[str, str]) -> CampaignLinks:
        key = tuple(utm.items())
        found = self._campaigns.get(key)
        if found is None:
            if len(self._campaigns) > 64:
                self._campaigns.clear()
            found = self._campaigns[key] = CampaignLinks.build(self.links, utm)
        return found

    def render(
        self,
        context: Mapping[str, Any],
        *,
        click_prefix: str | None = None,
        open_url: str | None = None,
        utm: Mapping[str, str] | None = None,
        untracked: frozenset[str] = frozenset(),
        unsubscribe_url: str = "",
    ) -> RenderedEmail:
        """``click_prefix``: tracked links become this prefix followed by their index (``None``: links keep
        their targets); ``open_url``: the pixel's URL (``None``: no pixel); ``untracked``: URLs left alone
        wherever they appear (this recipient's unsubscribe, preferences and view-in-browser URLs);
        ``unsubscribe_url``: the one the context holds, returned with the email for its headers."""
        links = MessageLinks(self.campaign_links(utm or {}), click_prefix, untracked)
        variables = {**self.globals, **context}
        variables[PIXEL_VARIABLE] = open_pixel(open_url) if open_url else ""
        # Subject and preheader are blocks of the HTML template, rendered in its context.
        blocks = (SUBJECT_BLOCK, PREHEADER_BLOCK) if self.has_preheader else (SUBJECT_BLOCK,)
        chunks: list[str] = []
        with rendering_links(links):
            html, subject, *preheader = self._run(self.html, variables, blocks, chunks)
            if self.text is None:
                text = "".join(chunks)
            else:
                (text,) = self._run(self.text, variables, ())
        footer = None
        if self.proves_footer and unsubscribe_url:
            sender = variables.get(SENDER_VARIABLE)
            # The values the template printed, read where it read them.
            if type(sender) is SenderView and variables.get(UNSUBSCRIBE_VARIABLE) == unsubscribe_url:
                footer = FooterProof(html, unsubscribe_url, sender.postal_address)
        return RenderedEmail(
            subject=_one_line(subject)[:MAX_SUBJECT_CHARS],
            preheader=_one_line(preheader[0]) if preheader else "",
            html=html,
            text=tidy_text(text),
            links=links.all_targets(),
            template=self.name,
            template_version=self.version,
            unsubscribe_url=unsubscribe_url,
            footer=footer,
        )

    def _run(
        self, part: _Part, variables: dict[str, Any], blocks: tuple[str, ...], text: list[str] | None = None
    ) -> list[str]:
        """A template rendered on its own runs its own loops and prints its own values: it has the whole
        allowance."""
        try:
            with render_budget(self.limits):
                return part.template.render_shared(variables, blocks, text)
        except Exception as error:
            raise self.problem(error) from None

    def problem(self, error: Exception) -> TemplateProblem:
        """The error as a TemplateProblem pointing at the template and line the author wrote."""
        parts = {part.filename: part for part in (self.html, self.text) if part is not None}
        origin = None
        for frame, line in traceback.walk_tb(error.__traceback__):
            part = parts.get(frame.f_code.co_filename)
            if part is not None:
                origin = part.line_map.origin(line) or origin
        kind = "runtime"
        if isinstance(error, SecurityError):
            kind = "limit" if isinstance(error, LimitExceeded) else "sandbox"
        message = _message(error)
        if origin is None:
            return TemplateProblem(message, self.name, kind=kind)
        return TemplateProblem(message, origin.template, origin.line, kind=kind)


def _one_line(html: str) -> str:
    """A subject or preheader block: its HTML, as one line of plain text."""
    return " ".join(unescape_text(html).split())


def _message(error: Exception) -> str:
    if isinstance(error, jinja2.TemplateError) and error.message:
        return error.message
    text = str(error)
    if isinstance(error, jinja2.TemplateError | SecurityError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def text_sibling(name: str) -> str | None:
    return f"{name[: -len('.html')]}.txt" if name.endswith(".html") else None


class Compiler:
    """Turns sources into CompiledEmail objects with the sandboxed HTML environment and its plain-text twin."""

    def __init__(self, html_environment: EmailSandbox, text_environment: EmailSandbox, load: Loader) -> None:
        self.html_environment = html_environment
        self.text_environment = text_environment
        self.load = load
        for environment in (html_environment, text_environment):
            environment.filters.update(LINK_FILTERS)
            environment.final_output_filters.update(LINK_FILTERS)

    def compile(self, name: str) -> CompiledEmail:
        assembled = assemble(self.html_environment, self.load, name)
        origin = Origin(name, 1)

        protected = protect(assembled.document)
        tree, keep_doctype = parse_document(protected.html)
        inline_tree(tree)
        links = rewrite_links(tree.getroot(), protected.tokens, origin)
        unsubscribe = _has_link_to(tree.getroot(), protected.tokens, UNSUBSCRIBE_VARIABLE)
        generated_text = html_to_text(
            tree.getroot(), protected.tokens, {links.pixel_token}, origin, links.static_tokens
        )
        serialized = serialize_document(tree, keep_doctype)
        footer_shown = document_shows_footer(tree.getroot(), serialized, protected.tokens, assembled.prelude)
        html_items = token_items(serialized, protected.tokens, check=True)

        dependencies: list[tuple[str, str | None]] = list(assembled.versions)
        sibling = text_sibling(name)
        hand_written = self.load(sibling) if sibling else None
        if sibling and hand_written is None:
            dependencies.append((sibling, None))
        html_builder = SourceBuilder()
        html_builder.pieces(assembled.prelude)
        merged = (
            hand_written is None
            and not any(isinstance(piece, Tag) and piece.keyword == "macro" for piece in assembled.prelude)
            and merge(
                html_items,
                token_items(generated_text, protected.tokens, check=False),
                protected.tokens,
                html_builder,
                self.html_environment,
            )
        )
        if not merged:
            write_items(html_items, protected.tokens, html_builder)
        html_builder.pieces(assembled.hidden)

        static = list(links.static)
        text_builder = None
        if sibling and hand_written is not None:
            text_assembled = assemble(self.text_environment, self.load, sibling)
            dependencies += text_assembled.versions
            text_builder = SourceBuilder()
            text_builder.pieces(
                _track_text_urls([*text_assembled.prelude, *text_assembled.document, *text_assembled.hidden], static)
            )
        elif not merged:
            text_builder = SourceBuilder()
            self._text_fragment(assembled.prelude, text_builder)
            restore(generated_text, protected.tokens, text_builder, check=False)
            self._text_fragment(assembled.hidden, text_builder)
        links = LinkTable(tuple(static), links.pixel_token)

        version = _version(dependencies)
        if SUBJECT_BLOCK not in assembled.blocks:
            raise TemplateProblem(
                "an email needs a subject: add {% block subject %}...{% endblock %}", name, kind="structure"
            )
        # Parsed once, looked at before compiling (Jinja's optimizer may fold nodes of the tree it compiles).
        html_tree = self._parse(self.html_environment, html_builder, name, version, "html")
        footer_shown = footer_shown and template_cannot_hide_footer(html_tree)
        return CompiledEmail(
            name=name,
            version=version,
            dependencies=tuple(dict.fromkeys(dependencies)),
            html=self._part(self.html_environment, html_builder, name, version, "html", html_tree),
            text=self._part(self.text_environment, text_builder, name, version, "text") if text_builder else None,
            has_preheader=PREHEADER_BLOCK in assembled.blocks,
            links=links,
            has_unsubscribe_link=unsubscribe,
            hand_written_text=hand_written is not None,
            proves_footer=footer_shown,
            limits=self.html_environment.limits,
            globals=dict(self.html_environment.globals),
        )

    def _text_fragment(self, pieces: list[Piece], builder: SourceBuilder) -> None:
        """Prelude macros and hidden blocks hold HTML too: their text goes into the text template."""
        if not pieces:
            return
        protected = protect(pieces)
        root = etree.fromstring(f"<html><body>{protected.html}</body></html>", etree.HTMLParser())
        restore(html_to_text(root, protected.tokens), protected.tokens, builder, check=False)

    def _parse(
        self, environment: EmailSandbox, builder: SourceBuilder, name: str, version: str, kind: str
    ) -> nodes.Template:
        with _syntax_problems(builder, name):
            return environment.parse_assembled(builder.source(), name, _filename(name, version, kind))

    def _part(
        self,
        environment: EmailSandbox,
        builder: SourceBuilder,
        name: str,
        version: str,
        kind: str,
        tree: nodes.Template | None = None,
    ) -> _Part:
        """The part compiled from ``builder``'s source, or from ``tree`` when it was already parsed from it."""
        filename = _filename(name, version, kind)
        source = builder.source()
        with _syntax_problems(builder, name):
            if tree is None:
                tree = environment.parse_assembled(source, name, filename)
            code = environment.compile(tree, name=name, filename=filename)
        template = environment.template_class.from_code(environment, code, dict(environment.globals))
        assert isinstance(template, BudgetedTemplate)
        return _Part(template, filename, builder.line_map(), source)


def _filename(name: str, version: str, kind: str) -> str:
    return f"<email {name} {version} {kind}>"


@contextmanager
def _syntax_problems(builder: SourceBuilder, name: str) -> Iterator[None]:
    """A syntax error in ``builder``'s source, told at the line of the template it came from."""
    try:
        yield
    except jinja2.TemplateSyntaxError as error:
        origin = builder.line_map().origin(error.lineno)
        where = (origin.template, origin.line) if origin else (name, None)
        raise TemplateProblem(error.message or "syntax error", *where, kind="syntax") from None


def _version(dependencies: list[tuple[str, str | None]]) -> str:
    digest = hashlib.sha256(PIPELINE_VERSION.encode())
    for name, version in dependencies:
        digest.update(f"\0{name}\0{version}".encode())
    return digest.hexdigest()[:16]


def _has_link_to(root: Any, tokens: TokenTable, variable: str) -> bool:
    pattern = tokens.pattern()
    for element in root.iter("a"):
        for match in pattern.finditer(element.get("href", "")):
            pieces = tokens.entries[tokens.index(match.group(2))]
            if any(isinstance(piece, Tag) and variable in piece.body for piece in pieces):
                return True
    return False


def _track_text_urls(pieces: list[Piece], static: list[str]) -> list[Piece]:
    """In a hand-written text part, literal http(s) URLs become tracked links like those of the HTML."""
    out: list[Piece] = []
    in_raw = False
    for piece in pieces:
        if isinstance(piece, Tag):
            in_raw = piece.keyword == "raw" or (in_raw and piece.keyword != "endraw")
        if not isinstance(piece, Data) or in_raw:
            out.append(piece)
            continue
        position = 0
        for match in _TEXT_URL.finditer(piece.text):
            url = match.group()
            if not is_http(url):
                continue
            index = static.index(url) if url in static else len(static)
            if index == len(static):
                static.append(url)
            out.append(Data(piece.text[position : match.start()], piece.origin))
            line = piece.origin.line + piece.text.count("\n", 0, match.start())
            link = f"{{{{ {index} | {STATIC_LINK_FILTER} }}}}"
            out.append(Tag(link, TagKind.VARIABLE, Origin(piece.origin.template, line)))
            position = match.end()
        out.append(Data(piece.text[position:], piece.origin))
    return [piece for piece in out if not isinstance(piece, Data) or piece.text]
