"""Lifecycle automation end to end with the engine's tick: a lost deal starts the re-engagement campaign (a test
one, and the starter campaign of campaigns/ with its real emails) and a click brings the lead back; reaching
sql hands the lead to its owner; unsubscribing ends every enrollment."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from nurture.campaigns.store import activate_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.models import Message, MessageStatus
from nurture.demo import STARTER_CAMPAIGNS
from nurture.engine.context import engine_context
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.engine.tick import run_tick
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Lead, StageChange
from nurture.rendering import DictTemplateSource, EmailRenderer, EmailTemplateLoader, FileTemplateSource
from nurture.rendering.sources import default_template_directory
from nurture.tracking.events import NewEvent, random_key, record_event
from nurture.tracking.models import EventSource
from nurture.tracking.tokens import TokenPurpose
from tests.acceptance.engine_support import TEMPLATES, engine_settings, enrol, load_campaign
from tests.integration.test_tracking_support import load_scoring, make_lead

pytest_plugins = ["tests.integration.test_tracking_support"]

REENGAGE = """slug: re-engagement
name: Win back lost deals
entry:
  - on_stage: lost
steps:
  - {id: cool-off, type: wait, for: 30d}
  - {id: check-in, type: send, template: welcome, subject: "Still looking, {{ lead.first_name }}?"}
  - {id: clicked-check-in, type: wait_for, event: clicked, step: check-in, within: 14d, yes: back, no: done}
  - {id: done, type: exit}
  - {id: back, type: set, stage: lead}
"""

HANDOFF = """slug: sql-handoff
name: Hand sales-qualified leads to their owner
entry:
  - on_stage: sql
steps:
  - id: alert-owner
    type: notify
    email_owner: true
    template: owner-handoff
    subject: "Sales-qualified: {{ lead.email }}"
"""

SCORING = """lifecycle: {mql_at: 40, sql_at: 80}
rules:
  - {name: demo, event: form_submitted, points: 30}
"""


def api_event(lead, kind, clock, **properties):
    return NewEvent(
        lead_id=lead.id,
        type=kind,
        occurred_at=clock.now(),
        source=EventSource.API,
        dedupe_key=random_key("t"),
        properties=properties,
    )


@pytest.fixture
def ctx(nurture_settings, tmp_path):
    """The test templates, then the shipped ones (the emails of the starter campaigns)."""
    settings = engine_settings(nurture_settings, tmp_path / "outbox")
    loader = EmailTemplateLoader(DictTemplateSource(TEMPLATES), FileTemplateSource(default_template_directory()))
    return engine_context(settings, renderer=EmailRenderer(loader, default_timezone=settings.default_timezone))


@pytest.fixture
def mailer(tmp_path, clock):
    return FileMailer(tmp_path / "outbox", clock, 1000)


def test_a_lost_deal_is_won_back_by_a_click_on_the_check_in_email(
    session, session_factory, clock, ctx, mailer, tracking_app, signer
):
    load_campaign(session, clock, REENGAGE)
    lead = make_lead(session, clock, "grace@example.com", first_name="Grace")
    record_event(session, clock, ctx, api_event(lead, "deal_won", clock))  # a customer first...
    session.commit()
    record_event(session, clock, ctx, api_event(lead, "deal_lost", clock, reason="budget cut"))
    session.commit()
    session.refresh(lead)
    assert lead.stage is Stage.LOST

    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()
    enrollment = session.scalar(select(Enrollment).where(Enrollment.lead_id == lead.id))
    assert (enrollment.state, enrollment.step_id, enrollment.source) == (EnrollmentState.WAITING, "cool-off", "stage")

    clock.advance(timedelta(days=29))
    run_tick(session_factory, clock, ctx, mailer)
    assert session.scalar(select(Message).where(Message.lead_id == lead.id)) is None

    clock.advance(timedelta(days=1, minutes=1))
    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()
    message = session.scalar(select(Message).where(Message.lead_id == lead.id))
    assert message.status is MessageStatus.SENT
    assert message.subject == "Still looking, Grace?"
    assert message.campaign == "re-engagement"

    clock.advance(timedelta(hours=5))
    token = signer.sign(TokenPurpose.CLICK, message.id)
    click = tracking_app.test_client().get(f"/t/c/{token}/0", headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/120.0"})
    assert click.status_code == 302 and click.headers["Location"] == message.links[0]
    run_tick(session_factory, clock, ctx, mailer)  # it applies the click first

    session.expire_all()
    lead = session.get(Lead, lead.id)
    assert lead.stage is Stage.LEAD
    history = session.execute(
        select(StageChange.to_stage, StageChange.reason, StageChange.actor_kind)
        .where(StageChange.lead_id == lead.id)
        .order_by(StageChange.id)
    ).all()
    assert [(change.to_stage, change.reason) for change in history] == [
        (Stage.SUBSCRIBER, "created"),
        (Stage.CUSTOMER, "deal won"),
        (Stage.LOST, "deal lost: budget cut"),
        (Stage.LEAD, "campaign re-engagement, step back"),
    ]
    enrollment = session.get(Enrollment, enrollment.id)
    assert enrollment.state is EnrollmentState.COMPLETED


def test_score_promotes_to_mql_then_sql_and_sql_alerts_the_owner(session, session_factory, clock, ctx, mailer):
    load_scoring(session, clock, SCORING)
    load_campaign(session, clock, HANDOFF)
    lead = make_lead(session, clock, "hot@example.com", owner="rep@example.com")
    session.commit()

    record_event(session, clock, ctx, api_event(lead, "form_submitted", clock))
    session.commit()
    session.refresh(lead)
    assert (lead.score, lead.stage) == (30, Stage.SUBSCRIBER)

    record_event(session, clock, ctx, api_event(lead, "form_submitted", clock))
    session.commit()
    session.refresh(lead)
    assert (lead.score, lead.stage) == (60, Stage.MQL)

    record_event(session, clock, ctx, api_event(lead, "form_submitted", clock))
    session.commit()
    session.refresh(lead)
    assert (lead.score, lead.stage) == (90, Stage.SQL)
    changes = session.execute(
        select(StageChange.to_stage, StageChange.reason, StageChange.actor_kind, StageChange.actor)
        .where(StageChange.lead_id == lead.id, StageChange.from_stage.is_not(None))
        .order_by(StageChange.id)
    ).all()
    assert [(c.to_stage, c.actor_kind.value, c.actor) for c in changes] == [
        (Stage.MQL, "rule", "scoring"),
        (Stage.SQL, "rule", "scoring"),
    ]
    assert changes[0].reason.startswith("score 60 reached 40 (form_submitted event")

    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()
    alert = session.scalar(select(Message).where(Message.lead_id == lead.id))
    assert alert.to_address == "rep@example.com"
    assert alert.subject == "Sales-qualified: hot@example.com"
    assert alert.status is MessageStatus.SENT


def test_a_lead_jumping_past_both_thresholds_passes_through_mql(session, clock, ctx):
    load_scoring(
        session,
        clock,
        "lifecycle: {mql_at: 10, sql_at: 20}\nrules:\n  - {name: m, event: meeting_booked, points: 50}\n",
    )
    lead = make_lead(session, clock)
    record_event(session, clock, ctx, api_event(lead, "meeting_booked", clock))
    stages = session.scalars(
        select(StageChange.to_stage).where(StageChange.lead_id == lead.id).order_by(StageChange.id)
    ).all()
    assert stages == [Stage.SUBSCRIBER, Stage.MQL, Stage.SQL]


def test_unsubscribing_ends_every_enrollment_at_once_and_suppresses_the_lead(session, clock, ctx):
    first = load_campaign(session, clock, REENGAGE.replace("on_stage: lost", "on_event: a"))
    second = load_campaign(
        session, clock, REENGAGE.replace("re-engagement", "other").replace("on_stage: lost", "on_event: b")
    )
    lead = make_lead(session, clock)
    ids = [enrol(session, clock, ctx, campaign, lead) for campaign in (first, second)]

    record_event(session, clock, ctx, api_event(lead, "unsubscribed", clock))

    session.expire_all()
    assert session.get(Lead, lead.id).status is LeadStatus.UNSUBSCRIBED
    states = [session.get(Enrollment, enrollment_id) for enrollment_id in ids]
    assert [(e.state, e.exit_reason) for e in states] == [(EnrollmentState.EXITED, "lead is unsubscribed")] * 2


def test_a_lost_deal_is_won_back_by_the_starter_re_engagement_campaign(
    session, session_factory, clock, ctx, mailer, tracking_app, signer
):
    exists = templates_in(default_template_directory())
    load_campaign_files(session, clock, [STARTER_CAMPAIGNS / "re-engage-lost.yaml"], template_exists=exists)
    activate_campaign(session, clock, "re-engage-lost", template_exists=exists)
    lead = make_lead(session, clock, "gaelle@example.fr", first_name="Gaëlle", locale="fr_FR", timezone="Europe/Paris")
    record_event(session, clock, ctx, api_event(lead, "deal_won", clock))
    session.commit()
    record_event(session, clock, ctx, api_event(lead, "deal_lost", clock, reason="no budget"))
    session.commit()

    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()
    enrollment = session.scalar(select(Enrollment).where(Enrollment.lead_id == lead.id))
    assert (enrollment.state, enrollment.step_id, enrollment.source) == (
        EnrollmentState.WAITING, "wait-30-days", "stage"
    )

    clock.advance(timedelta(days=30, minutes=1))  # a Saturday: the send waits for Monday morning in Paris
    run_tick(session_factory, clock, ctx, mailer)
    assert session.scalar(select(Message).where(Message.lead_id == lead.id)) is None
    clock.set(datetime.fromisoformat("2026-02-16T09:30:00+01:00"))
    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()
    message = session.scalar(select(Message).where(Message.lead_id == lead.id))
    assert message.status is MessageStatus.SENT
    assert (message.template, message.subject) == ("re-engage-lost/check-in.fr", "Gaëlle, comment avancez-vous ?")

    clock.advance(timedelta(hours=5))
    link = next(index for index, url in enumerate(message.links) if "/whats-new" in url)
    token = signer.sign(TokenPurpose.CLICK, message.id)
    click = tracking_app.test_client().get(
        f"/t/c/{token}/{link}", headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/120.0"}
    )
    assert click.status_code == 302 and click.headers["Location"] == message.links[link]
    run_tick(session_factory, clock, ctx, mailer)  # it applies the click first

    session.expire_all()
    lead = session.get(Lead, lead.id)
    assert lead.stage is Stage.LEAD and "re-engaged" in lead.tag_names
    history = session.scalars(
        select(StageChange.reason).where(StageChange.lead_id == lead.id).order_by(StageChange.id)
    ).all()
    assert history[-2:] == ["deal lost: no budget", "campaign re-engage-lost, step back-to-lead"]
    enrollment = session.get(Enrollment, enrollment.id)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.CONVERTED, "met the campaign's goal")
