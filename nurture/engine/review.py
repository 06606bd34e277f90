"""What a marketer checks before activating a campaign, and what test mode shows: computed, never stored.

- ``review_campaign``: validation, every email of every send step (each A/B variant) rendered for a sample
  lead (one who matches the entry when there is one), how many leads match a segment or rules entry now,
  and the campaign's rules in words.
- ``preview_path``: the dated path one lead would take (the engine's own ``simulate``, in a transaction the
  caller rolls back), with each email rendered as that lead would get it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition, RulesEntry, SegmentEntry, SendStep, template_file
from nurture.campaigns.describe import cap_in_words, reentry_in_words, window_in_words
from nurture.campaigns.models import Campaign
from nurture.campaigns.validation import Issue, TemplateCheck, check_data
from nurture.clock import Clock
from nurture.engine.context import EngineContext
from nurture.engine.simulate import Simulation, simulate
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Lead
from nurture.rendering.context import SenderView, sample_lead
from nurture.rendering.errors import TemplateProblem
from nurture.rendering.renderer import EmailRenderer, RenderedEmail
from nurture.segments.compiler import compile_rules
from nurture.segments.service import count_segment, find_segment, segment_rules


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


@dataclass
class Review:
    issues: tuple[Issue, ...]
    sample: str
    emails: list[EmailPreview] = field(default_factory=list)
    entries: list[EntryCount] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    @property
    def matching(self) -> int:
        return sum(entry.matching or 0 for entry in self.entries)

    @property
    def ready(self) -> bool:
        return not self.errors and not any(email.error for email in self.emails)


def review_campaign(
    session: Session,
    clock: Clock,
    campaign: Campaign,
    *,
    renderer: EmailRenderer,
    sender: SenderView,
    template_exists: TemplateCheck,
) -> Review:
    data = campaign.definition
    checked = check_data(data, template_exists=template_exists, session=session)
    review = Review(checked.issues, "", words=_words(data))
    definition = checked.definition
    if definition is None:
        return review
    now = clock.now()
    lead = _sample_lead(session, now, definition)
    review.sample = lead.email if lead is not None else "a made-up lead (no lead matches the entry yet)"
    review.emails = [
        _render(renderer, step.id, message.variant, message.template, message.subject, lead, sender, now, campaign)
        for step in definition.steps
        if isinstance(step, SendStep)
        for message in step.messages()
    ]
    review.entries = _entry_counts(session, clock, definition)
    return review


def _words(data: Mapping[str, Any]) -> dict[str, str]:
    return {
        "Send window": window_in_words(data.get("send_window")),
        "Frequency cap": cap_in_words(data.get("frequency_cap")),
        "Re-entry": reentry_in_words(data.get("reentry")),
        "Goal": "leaves as converted on meeting its rules" if data.get("goal") else "none",
        "Exits": ", ".join(
            f"{kind.replace('_', ' ')} {value}"
            for condition in data.get("exit") or []
            for kind, value in condition.items()
        )
        or "none",
    }


def _sample_lead(session: Session, now: datetime, definition: CampaignDefinition) -> Lead | None:
    active = Lead.status == LeadStatus.ACTIVE
    for trigger in definition.entry:
        rules = _entry_rules(session, trigger)
        if rules is not None:
            found = session.scalar(select(Lead).where(compile_rules(rules, now), active).order_by(Lead.id).limit(1))
            if found is not None:
                return found
    return session.scalar(select(Lead).where(active).order_by(Lead.id).limit(1))


def _entry_rules(session: Session, trigger: object) -> Any:
    if isinstance(trigger, RulesEntry):
        return trigger.rules
    if isinstance(trigger, SegmentEntry):
        segment = find_segment(session, trigger.segment)
        return segment_rules(segment) if segment is not None else None
    return None


def _entry_counts(session: Session, clock: Clock, definition: CampaignDefinition) -> list[EntryCount]:
    counts = []
    for data, trigger in zip(definition.to_data()["entry"], definition.entry, strict=True):
        ((kind, value),) = data.items()
        label = kind.replace("_", " ") + ("" if isinstance(value, dict | list) else f" {value}")
        rules = _entry_rules(session, trigger)
        counts.append(EntryCount(label, count_segment(session, clock, rules) if rules is not None else None))
    return counts


def _render(
    renderer: EmailRenderer,
    step_id: str,
    variant: str | None,
    template: str,
    subject: str | None,
    lead: Lead | None,
    sender: SenderView,
    now: datetime,
    campaign: Campaign,
) -> EmailPreview:
    try:
        rendered: RenderedEmail = renderer.render(
            template_file(template),
            lead=lead if lead is not None else sample_lead(),
            sender=sender,
            now=now,
            campaign={"name": campaign.name},
        )
    except TemplateProblem as problem:
        return EmailPreview(step_id, variant, template, subject or "", error=str(problem))
    return EmailPreview(step_id, variant, template, subject or rendered.subject, rendered.html, rendered.text)


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
    sender: SenderView,
) -> PathPreview:
    """The path ``lead`` would take over ``days``, run in the caller's transaction, which the caller must roll
    back; each email rendered for the lead as it is now."""
    now = clock.now()
    simulation = simulate(session, clock, ctx, campaign.slug, lead.email, days=days)
    emails = {}
    for index, step in enumerate(simulation.steps):
        template = step.detail.get("template")
        if step.step_type == "send" and isinstance(template, str):
            emails[index] = _render(
                ctx.renderer, step.step_id, step.variant, template, None, lead, sender, now, campaign
            )
    return PathPreview(simulation, emails)
