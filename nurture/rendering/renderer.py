"""The entry points: an EmailRenderer with its compile cache, rendering for a lead, previews and checks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import nodes

from nurture.leads.models import Lead
from nurture.rendering.assemble import check_syntax
from nurture.rendering.compiler import PREHEADER_BLOCK, SUBJECT_BLOCK, CompiledEmail, Compiler, RenderedEmail
from nurture.rendering.context import (
    CONTEXT_NAMES,
    PREVIEW_URLS,
    SAMPLE_SENDER,
    LeadView,
    SenderView,
    SpecialUrls,
    build_context,
    lead_view,
    sample_lead,
    sender_view,
)
from nurture.rendering.errors import TemplateProblem
from nurture.rendering.filters import FILTERS
from nurture.rendering.links import LinkOptions, TrackingUrls, message_urls
from nurture.rendering.sandbox import EmailSandbox, RenderLimits, make_environment
from nurture.rendering.sources import EmailTemplateLoader, FileTemplateSource, default_template_directory

# Folders of building blocks rather than emails.
NOT_EMAILS = ("layouts/", "partials/")
TRANSACTIONAL = "transactional/"


def is_email(name: str) -> bool:
    return name.endswith(".html") and not name.startswith(NOT_EMAILS)


def is_transactional(name: str) -> bool:
    """Transactional emails (receipts, password resets) need no unsubscribe link; they live in transactional/."""
    return name.startswith(TRANSACTIONAL)


class EmailRenderer:
    """Compiles each email once per version (of itself, its layouts and partials) and renders it per recipient.

    For a batch, call ``compile`` once and pass the CompiledEmail to ``render``: checking that the sources did
    not change reads them (a stat per file, a query for stored templates)."""

    def __init__(
        self,
        loader: EmailTemplateLoader,
        *,
        limits: RenderLimits | None = None,
        default_timezone: str = "UTC",
        cache_size: int = 128,
    ) -> None:
        self.loader = loader
        self.default_timezone = default_timezone
        self.html_environment: EmailSandbox = make_environment(html=True, limits=limits, loader=loader)
        # The subject and preheader the layout prints (in <title>, in a hidden <div>) are the email's.
        self.html_environment.captured_blocks.update((SUBJECT_BLOCK, PREHEADER_BLOCK))
        # Plain-text parts: values printed as they are.
        self.plain_text_environment: EmailSandbox = make_environment(
            html=False, escape_text=False, limits=limits, loader=loader
        )
        # One-line templates whose output the caller unescapes (campaign subject lines).
        self.text_environment: EmailSandbox = make_environment(html=False, limits=limits, loader=loader)
        for environment in (self.html_environment, self.plain_text_environment, self.text_environment):
            environment.filters.update(FILTERS)
        self.compiler = Compiler(self.html_environment, self.plain_text_environment, loader.find)
        self._cache: OrderedDict[str, CompiledEmail] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def compile(self, name: str) -> CompiledEmail:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self._unchanged(cached):
            return cached
        compiled = self.compiler.compile(name)
        with self._lock:
            self._cache[name] = compiled
            self._cache.move_to_end(name)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _unchanged(self, compiled: CompiledEmail) -> bool:
        for name, version in compiled.dependencies:
            loaded = self.loader.find(name)
            if (loaded.version if loaded is not None else None) != version:
                return False
        return True

    def render(
        self,
        template: str | CompiledEmail,
        *,
        lead: Lead | LeadView | Mapping[str, Any],
        sender: SenderView | Mapping[str, str],
        now: datetime,
        campaign: Mapping[str, Any] | None = None,
        message_id: int | None = None,
        urls: TrackingUrls | None = None,
        options: LinkOptions | None = None,
    ) -> RenderedEmail:
        """Render for one lead. With ``urls`` and the lead's id, the unsubscribe and preferences links are
        signed; with a ``message_id`` too, clicks and opens are tracked as ``options`` say. Without ``urls``
        (previews) those links are placeholders and nothing is tracked."""
        compiled = template if isinstance(template, CompiledEmail) else self.compile(template)
        options = options or LinkOptions()
        view = lead if isinstance(lead, LeadView) else lead_view(lead)
        special = PREVIEW_URLS
        click_prefix = None
        open_url = None
        if urls is not None:
            signed = message_urls(urls, message_id, view.id, options)
            if view.id is not None:
                special = SpecialUrls(signed.unsubscribe_url, signed.preferences_url, signed.view_url)
            if message_id is not None:
                click_prefix = signed.click_prefix if options.track_clicks else None
                open_url = signed.open_url if options.track_opens else None
        context = build_context(
            view,
            sender=sender_view(sender),
            now=now,
            urls=special,
            campaign=campaign,
            default_timezone=self.default_timezone,
        )
        return compiled.render(
            context,
            click_prefix=click_prefix,
            open_url=open_url,
            utm=options.utm,
            untracked=special.untracked(),
            unsubscribe_url="" if special is PREVIEW_URLS else special.unsubscribe_url,
        )

    def check(self, now: datetime, names: Iterable[str] | None = None) -> list[TemplateProblem]:
        return check_templates(self, now=now, names=names)


@lru_cache(maxsize=8)
def default_renderer(directory: Path | None = None) -> EmailRenderer:
    """Template files from ``directory`` (the ``NURTURE_EMAIL_TEMPLATES`` setting; by default the shipped
    ``nurture/email_templates/``), one renderer per directory and process. Stored templates need a session: see
    ``nurture.rendering.stored.template_loader``."""
    return EmailRenderer(EmailTemplateLoader(FileTemplateSource(directory or default_template_directory())))


def render_email(
    name: str,
    *,
    lead: Lead | LeadView | Mapping[str, Any],
    sender: SenderView | Mapping[str, str],
    now: datetime,
    campaign: Mapping[str, Any] | None = None,
    message_id: int | None = None,
    urls: TrackingUrls | None = None,
    options: LinkOptions | None = None,
    renderer: EmailRenderer | None = None,
) -> RenderedEmail:
    """Render template ``name`` for a lead; raises TemplateProblem (a NurtureError) if the template is broken."""
    return (renderer or default_renderer()).render(
        name,
        lead=lead,
        sender=sender,
        now=now,
        campaign=campaign,
        message_id=message_id,
        urls=urls,
        options=options,
    )


def preview_email(
    name: str,
    *,
    now: datetime,
    lead: Lead | LeadView | Mapping[str, Any] | None = None,
    sender: SenderView | Mapping[str, str] | None = None,
    campaign: Mapping[str, Any] | None = None,
    renderer: EmailRenderer | None = None,
) -> RenderedEmail:
    """Render without sending and without tracking, for a lead or a made-up one."""
    return (renderer or default_renderer()).render(
        name,
        lead=lead if lead is not None else sample_lead(),
        sender=sender if sender is not None else SAMPLE_SENDER,
        now=now,
        campaign=campaign if campaign is not None else {"name": "Preview"},
    )


_KNOWN_NAMES = CONTEXT_NAMES | {"range", "dict", "cycler", "joiner", "namespace", "self", "super", "loop", "caller"}


def check_templates(
    renderer: EmailRenderer | None = None,
    *,
    now: datetime,
    names: Iterable[str] | None = None,
    transactional: Callable[[str], bool] = is_transactional,
) -> list[TemplateProblem]:
    """Every problem of every template, with its location: syntax (all templates); for emails also assembly,
    inlining, unknown variables, a missing unsubscribe link (marketing emails) and a trial render for a
    made-up lead. An empty list means the templates are ready to send."""
    renderer = renderer or default_renderer()
    problems: list[TemplateProblem] = []
    names = sorted(names) if names is not None else renderer.loader.list_templates()
    for name in names:
        loaded = renderer.loader.find(name)
        if loaded is None:
            problems.append(TemplateProblem(f"template {name!r} not found", name, kind="missing"))
            continue
        environment = renderer.html_environment if name.endswith(".html") else renderer.plain_text_environment
        try:
            check_syntax(environment, loaded.source, name)
        except TemplateProblem as problem:
            problems.append(problem)
    syntax_failures = {problem.template for problem in problems}
    for name in names:
        if not is_email(name) or name in syntax_failures:
            continue
        try:
            compiled = renderer.compile(name)
        except TemplateProblem as problem:
            problems.append(problem)
            continue
        problems += _unknown_variables(renderer, compiled)
        if not transactional(name) and not compiled.has_unsubscribe_link:
            problems.append(
                TemplateProblem(
                    'a marketing email needs a visible unsubscribe link: <a href="{{ unsubscribe_url }}">',
                    name,
                    kind="unsubscribe",
                )
            )
        try:
            preview_email(name, now=now, renderer=renderer)
        except TemplateProblem as problem:
            problems.append(problem)
    return sorted(set(problems), key=lambda problem: (problem.template or "", problem.line or 0, problem.message))


def _unknown_variables(renderer: EmailRenderer, compiled: CompiledEmail) -> list[TemplateProblem]:
    problems = []
    parts = [(compiled.html, renderer.html_environment)]
    if compiled.text is not None:
        parts.append((compiled.text, renderer.plain_text_environment))
    for part, environment in parts:
        tree = environment.parse(part.source)
        assigned = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
        assigned |= {node.name for node in tree.find_all(nodes.Macro)}
        for node in tree.find_all(nodes.Name):
            if node.ctx != "load" or node.name in _KNOWN_NAMES or node.name in assigned:
                continue
            if node.name.startswith("_nurture_"):
                continue
            origin = part.line_map.origin(node.lineno)
            where = (origin.template, origin.line) if origin else (compiled.name, None)
            known = ", ".join(sorted(CONTEXT_NAMES))
            problems.append(
                TemplateProblem(f"unknown variable {node.name!r} (templates can use {known})", *where, "undefined")
            )
    return problems
