"""What a marketer checks before activating a campaign, and what test mode shows: computed, never stored.

- ``review_campaign``: validation, every email of every send step (each A/B variant) rendered for a sample
  lead (one who matches the entry when there is one), how many leads match a segment or rules entry now,
  and the campaign's rules in words.
- ``preview_path``: the dated path one lead would take (the engine's own ``simulate``, in a transaction the
  caller rolls back), with each email rendered as that lead would get it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import (
    CampaignDefinition,
    Message,
    RulesEntry,
    SegmentEntry,
    SendStep,
    StageExit,
    TagExit,
    template_file,
)
from nurture.campaigns.describe import cap_in_words, reentry_in_words, window_in_words
from nurture.campaigns.models import Campaign, EntryExclusion
from nurture.campaigns.validation import Issue, TemplateCheck, check_data
from nurture.clock import Clock
from nurture.engine.context import EngineContext, reading_stored_templates
from nurture.engine.sending import LineTemplates, render_step_lines
from nurture.engine.simulate import Simulation, simulate
from nurture.errors import NurtureError
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Lead
from nurture.rendering.context import lead_view, sample_lead
from nurture.rendering.renderer import RenderedEmail
from nurture.segments.compiler import compile_rules
from nurture.segments.rules import AnyOf, RuleNode, describe_rules
from nurture.segments.service import find_segment, segment_rules


@dataclass(frozen=True)
class EmailPreview:
    step_id: str
    variant: str | None
    template: str
    subject: str
    html: str = ""
    text: str = ""
    # The template's problem, with its line: the send would fail for this lead.
    error: str | None = None


@dataclass(frozen=True)
class EntryCount:
    trigger: str
    # Leads matching now; None for triggers that fire on events (nobody "matches" them in advance).
    matching: int | None
    # Why the leads cannot be counted (a segment gone or whose rules no longer parse).
    problem: str | None = None


@dataclass
class Review:
    issues: tuple[Issue, ...]
    sample: str
    # The lead the emails were rendered for; None for the made-up one.
    sample_lead: Lead | None = None
    # Whether the sample lead matches a segment or rules entry (else it is just the first active lead).
    sample_matches: bool = False
    emails: list[EmailPreview] = field(default_factory=list)
    entries: list[EntryCount] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    # Active leads matching any segment or rules entry now, each counted once: who "also enrol" lets in.
    matching: int = 0

    @property
    def ready(self) -> bool:
        return not self.errors and not any(email.error for email in self.emails)


def review_campaign(
    session: Session,
    clock: Clock,
    campaign: Campaign,
    *,
    ctx: EngineContext,
    template_exists: TemplateCheck,
) -> Review:
    data = campaign.definition
    checked = check_data(data, template_exists=template_exists, session=session)
    review = Review(checked.issues, "", words=_words(data, checked.definition))
    definition = checked.definition
    if definition is None:
        return review
    now = clock.now()
    lead, review.sample_matches = _sample_lead(session, now, definition)
    review.sample_lead = lead
    review.sample = lead.email if lead is not None else "a made-up lead (there is no active lead yet)"
    with reading_stored_templates(session):  # a stored template overrides its file, as when the engine sends
        review.emails = [
            _render(ctx, campaign, step.id, message, lead, now)
            for step in definition.steps
            if isinstance(step, SendStep)
            for message in step.messages()
        ]
    review.entries = _entry_counts(session, now, definition)
    every_rules = [rules for trigger in definition.entry if (rules := _entry_rules(session, trigger)) is not None]
    review.matching = _matching(session, now, every_rules) if every_rules else 0
    return review


def _words(data: Mapping[str, Any], definition: CampaignDefinition | None) -> dict[str, str]:
    words = {
        "Send window": window_in_words(data.get("send_window")),
        "Frequency cap": cap_in_words(data.get("frequency_cap")),
        "Re-entry": reentry_in_words(data.get("reentry")),
    }
    if definition is None:  # invalid: the validation section says why; the rules cannot be read
        return words
    goal = definition.goal
    words["Goal"] = f"a lead who meets “{describe_rules(goal)}” leaves as converted" if goal else "none"
    exits = [
        _exit_in_words(condition)
        for condition in definition.exit_conditions
    ]
    always = "unsubscribes, bounces, complains or is erased"
    words["Exits"] = f"a lead leaves as exited when it {'; or '.join([*exits, always])}"
    return words


def _exit_in_words(condition: StageExit | TagExit) -> str:
    if isinstance(condition, StageExit):
        return f"moves into stage {condition.stage.value}"
    return f"gets the tag {condition.tag}"


def _sample_lead(session: Session, now: datetime, definition: CampaignDefinition) -> tuple[Lead | None, bool]:
    """The first active lead matching a segment or rules entry (and True), else the first active lead."""
    active = Lead.status == LeadStatus.ACTIVE
    for trigger in definition.entry:
        rules = _entry_rules(session, trigger)
        if rules is not None:
            found = session.scalar(select(Lead).where(compile_rules(rules, now), active).order_by(Lead.id).limit(1))
            if found is not None:
                return found, True
    return session.scalar(select(Lead).where(active).order_by(Lead.id).limit(1)), False


def _entry_rules(session: Session, trigger: object) -> RuleNode | None:
    """The rules of a segment or rules entry; None for other triggers and for a segment that is gone or
    broken (the validation section names it)."""
    if isinstance(trigger, RulesEntry):
        return trigger.rules
    if isinstance(trigger, SegmentEntry):
        segment = find_segment(session, trigger.segment)
        try:
            return segment_rules(segment) if segment is not None else None
        except NurtureError:
            return None
    return None


def _entry_counts(session: Session, now: datetime, definition: CampaignDefinition) -> list[EntryCount]:
    counts = []
    for data, trigger in zip(definition.to_data()["entry"], definition.entry, strict=True):
        ((kind, value),) = data.items()
        label = kind.replace("_", " ") + ("" if isinstance(value, dict | list) else f" {value}")
        if isinstance(trigger, RulesEntry):
            label += f" “{describe_rules(trigger.rules)}”"
        rules = _entry_rules(session, trigger)
        if rules is not None:
            counts.append(EntryCount(label, _matching(session, now, [rules])))
        elif isinstance(trigger, SegmentEntry):
            counts.append(EntryCount(label, None, "the segment is gone or its rules do not parse"))
        else:
            counts.append(EntryCount(label, None))
    return counts


def _matching(session: Session, now: datetime, rules: list[RuleNode]) -> int:
    """Active leads matching any of ``rules`` (the segments compiler's query): only active leads ever enter."""
    condition = compile_rules(AnyOf(tuple(rules)), now)
    query = select(func.count()).select_from(Lead).where(condition, Lead.status == LeadStatus.ACTIVE)
    return session.scalar(query) or 0


def _render(
    ctx: EngineContext, campaign: Campaign, step_id: str, message: Message, lead: Lead | None, now: datetime
) -> EmailPreview:
    """``message`` as the engine would make it for ``lead`` (a made-up lead when None), the step's own subject
    and preheader lines included, untracked: its links are placeholders."""
    view = lead_view(lead) if lead is not None else sample_lead()
    variables: dict[str, Any] = {"slug": campaign.slug, "name": campaign.name, "step": step_id}
    variables["variant"] = message.variant
    subject = message.subject or ""
    try:
        variables |= render_step_lines(
            LineTemplates(ctx), ctx, view, now, variables, step_id, subject=message.subject, preheader=message.preheader
        )
        subject = variables.get("subject", subject)
        # The variant in the lead's language when there is one, as the engine picks it.
        template = ctx.renderer.loader.localized(template_file(message.template), view.locale)
        rendered: RenderedEmail = ctx.renderer.render(
            template, lead=view, sender=ctx.sender, now=now, campaign=variables
        )
    except NurtureError as problem:  # a TemplateProblem names the template and its line
        return EmailPreview(step_id, message.variant, message.template, subject, error=str(problem))
    return EmailPreview(
        step_id, message.variant, message.template, subject or rendered.subject, rendered.html, rendered.text
    )


@dataclass
class PathPreview:
    simulation: Simulation
    emails: dict[int, EmailPreview]  # by the index of the step in the simulation's path


def preview_path(
    session: Session,
    clock: Clock,
    ctx: EngineContext,
    campaign: Campaign,
    lead: Lead,
    *,
    days: int,
    definition: CampaignDefinition | None = None,
) -> PathPreview:
    """The path ``lead`` would take over ``days``, run in the caller's transaction, which the caller must roll
    back; each email rendered for the lead as it is now. With ``definition`` (a draft that passed the
    validator), the path is that definition's instead of the published one's."""
    walked = definition or campaign.parsed
    if definition is not None:
        # The draft stands in for the published definition, in the transaction that is rolled back, and is
        # parsed into a cache of its own: the engine's cache must never hold it under a published version.
        campaign.definition = definition.to_data()
        session.flush()
        ctx = dataclasses.replace(ctx, _definitions=OrderedDict(), _lock=Lock())
    now = clock.now()
    simulation = simulate(session, clock, ctx, campaign.slug, lead.email, days=days)
    emails = {}
    with reading_stored_templates(session):
        for index, step in enumerate(simulation.steps):
            message = find_message(walked, step.step_id, step.variant) if step.step_type == "send" else None
            if message is not None:
                emails[index] = _render(ctx, campaign, step.step_id, message, lead, now)
    return PathPreview(simulation, emails)


def render_message(
    session: Session,
    clock: Clock,
    ctx: EngineContext,
    campaign: Campaign,
    definition: CampaignDefinition,
    step_id: str,
    variant: str | None,
    lead: Lead | None,
) -> EmailPreview | None:
    """One email of a send step (``variant`` of an A/B step) as ``lead`` (a made-up lead when None) would get
    it, untracked; None when the definition has no such step and variant."""
    message = find_message(definition, step_id, variant)
    if message is None:
        return None
    with reading_stored_templates(session):
        return _render(ctx, campaign, step_id, message, lead, clock.now())


def find_message(definition: CampaignDefinition, step_id: str, variant: str | None) -> Message | None:
    """The message of send step ``step_id`` for ``variant`` (None for a step without variants), or None."""
    if not definition.has_step(step_id):
        return None
    step = definition.step(step_id)
    if not isinstance(step, SendStep):
        return None
    return next((message for message in step.messages() if message.variant == variant), None)


def excluded_from_entry(session: Session, campaign: Campaign, lead: Lead) -> bool:
    """Whether ``lead`` matched the segment or rules entry when ``campaign`` was activated for new leads only:
    those entries never enrol it (a simulation enrols whoever it is given)."""
    query = select(EntryExclusion.lead_id).where(
        EntryExclusion.campaign_id == campaign.id, EntryExclusion.lead_id == lead.id
    )
    return session.scalar(query) is not None
