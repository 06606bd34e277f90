"""Helpers shared by the engine's unit, integration and acceptance tests: templates, settings, campaigns
and leads, and the engine context built on them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.store import save_campaign
from nurture.campaigns.validation import CampaignInvalid, check_text
from nurture.clock import Clock
from nurture.config import Settings
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.settings import BackendName, DeliverySettings
from nurture.engine.claiming import claim_due, claim_enrollment
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.enrollment import enrol_lead
from nurture.engine.models import Enrollment, StepRun
from nurture.engine.steps import AdvanceReport, advance_enrollments
from nurture.engine.tick import active_campaign_ids
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead
from nurture.rendering import EmailRenderer, EmailTemplateLoader
from nurture.rendering.sources import DictTemplateSource

POSTAL_ADDRESS = "Nurture GmbH, Müllerstraße 1, 10115 Berlin, Germany"

_BODY = """<!DOCTYPE html>
<html><head><title>{{% block subject %}}{subject}{{% endblock %}}</title><style>p {{ color: #333; }}</style></head>
<body>
<p>Hello {{{{ lead.first_name or 'there' }}}}, {body}</p>
<p><a href="https://example.com/pricing?plan=pro">See pricing</a> or
<a href="https://example.com/docs">read the docs</a>.</p>
<p style="font-size:12px"><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a> {{{{ sender.postal_address }}}}</p>
</body></html>
"""


def template(subject: str, body: str = "here is some news.") -> str:
    return _BODY.format(subject=subject, body=body)


TEMPLATES = {
    "welcome.html": template("Welcome {{ lead.first_name }}", "welcome aboard."),
    "tips.html": template("Tips for you", "three tips."),
    "last-chance.html": template("Last chance", "last chance."),
    "owner-handoff.html": template("Hot lead {{ lead.email }}", "this lead is ready for sales."),
    "broken.html": "{% block subject %}Broken{% endblock %}<p>{{ lead.first_name | nosuchfilter }}</p>",
}


def delivery_settings(outbox: Path | None = None, *, send_rate: float = 10_000.0) -> DeliverySettings:
    return DeliverySettings(
        backend=BackendName.FILE,
        outbox_dir=outbox or Path("/nonexistent/outbox"),
        sender=Mailbox("news@nurture.test", "Nurture News"),
        postal_address=POSTAL_ADDRESS,
        list_id="<news.nurture.test>",
        send_rate=send_rate,
    )


def engine_settings(base: Settings, outbox: Path | None = None, **delivery: Any) -> Settings:
    return replace(base, delivery=delivery_settings(outbox, **delivery), default_timezone="UTC")


def make_context(settings: Settings, templates: dict[str, str] | None = None, **kwargs: Any) -> EngineContext:
    source = DictTemplateSource(TEMPLATES if templates is None else templates)
    renderer = EmailRenderer(EmailTemplateLoader(source), default_timezone=settings.default_timezone)
    return engine_context(settings, renderer=renderer, **kwargs)


def always_exists(name: str) -> bool:
    return True


def load_campaign(session: Session, clock: Clock, text: str, *, activate: bool = True) -> Campaign:
    """Save a campaign from YAML text (validated like a file) and activate it."""
    checked = check_text(text, template_exists=always_exists, session=session)
    if checked.definition is None or checked.errors:
        raise CampaignInvalid(checked.issues)
    campaign = save_campaign(session, clock, checked.definition).campaign
    if activate:
        campaign.status = CampaignStatus.ACTIVE
        campaign.activated_at = clock.now()
    session.flush()
    return campaign


def make_lead(session: Session, clock: Clock, email: str, **profile: Any) -> Lead:
    lead = create_lead(session, clock, email, actor=Actor(ActorKind.SYSTEM, "test"), **profile)
    session.flush()
    return lead


def runs(session: Session, enrollment_id: int) -> list[tuple[str, str]]:
    """(step id, outcome) of every step run of an enrollment, in order."""
    rows = session.execute(
        select(StepRun.step_id, StepRun.outcome).where(StepRun.enrollment_id == enrollment_id).order_by(StepRun.id)
    )
    return [(step_id, outcome) for step_id, outcome in rows]


def enrollment(session: Session, enrollment_id: int) -> Enrollment:
    session.expire_all()
    found = session.get(Enrollment, enrollment_id)
    assert found is not None
    return found


def local(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def ids(rows: Iterable[Any]) -> list[int]:
    return [row.id for row in rows]


# --- driving the engine in a test's transaction -------------------------------------------------------------


def advance(session: Session, clock: Clock, ctx: EngineContext, *enrollment_ids: int) -> AdvanceReport:
    """Claim and advance these enrollments now, as a worker would (in the test's transaction)."""
    claimed = [enrollment_id for enrollment_id in enrollment_ids if claim_enrollment(session, enrollment_id)]
    return advance_enrollments(session, clock, ctx, claimed)


def advance_due(session: Session, clock: Clock, ctx: EngineContext, limit: int = 10_000) -> AdvanceReport:
    """Advance everything due now in active campaigns, in one batch."""
    ids = claim_due(session, clock.now(), active_campaign_ids(session), limit)
    return advance_enrollments(session, clock, ctx, ids)


def enrol(session: Session, clock: Clock, ctx: EngineContext, campaign: Campaign, lead: Lead) -> int:
    enrollment_id = enrol_lead(session, clock, ctx.load(campaign), lead.id)
    assert enrollment_id is not None
    return enrollment_id
