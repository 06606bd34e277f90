"""The starter campaigns of campaigns/, with the real email templates, run by the engine's tick on simulated
time: they validate and load, the demo fills the file outbox in each lead's language, and each campaign's
paths (clicks, replies, silence) end where issue 4 says they should."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.campaigns.store import activate_campaign, get_campaign, load_campaign_files, save_campaign
from nurture.campaigns.validation import check_text, templates_in
from nurture.cli import cli
from nurture.clock import FixedClock
from nurture.config import TemperatureThresholds
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.models import Message, MessageStatus
from nurture.demo import COLD_SOURCE, COLD_TAG, STARTER_CAMPAIGNS, load_demo_data
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.engine.tick import run_tick
from nurture.leads.importer import ImportOptions, import_leads
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Activity, ActorKind, Lead
from nurture.leads.service import Actor, change_stage, find_lead, record_activity
from nurture.rendering import (
    EmailRenderer,
    FileTemplateSource,
    StoredTemplateSource,
    preview_email,
    save_template,
    template_loader,
)
from nurture.rendering.sources import default_template_directory
from nurture.scoring.points import breakdown
from nurture.scoring.store import current_config
from nurture.segments.builtin import ensure_builtin_segments
from nurture.tracking.events import NewEvent, random_key, record_event
from nurture.tracking.models import EngagementEvent, EventSource
from tests.acceptance.engine_support import engine_settings
from tests.integration.test_tracking_support import make_lead

pytest_plugins = ["tests.integration.test_tracking_support"]

TEMPLATES = default_template_directory()
CAMPAIGN_FILES = sorted(STARTER_CAMPAIGNS.glob("*.yaml"))
# A Monday, 10:00 UTC: inside every European lead's send window.
MONDAY = datetime.fromisoformat("2026-11-30T10:00:00+00:00")
SALES = Actor(ActorKind.USER, "rep@example.com")


@pytest.fixture
def ctx(nurture_settings, tmp_path) -> EngineContext:
    """The engine with the shipped templates (not the test doubles of the tracking fixtures)."""
    return engine_context(engine_settings(nurture_settings, tmp_path / "outbox"), templates=TEMPLATES)


@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def mailer(outbox, clock) -> FileMailer:
    return FileMailer(outbox, clock, 10_000)


@pytest.fixture
def monday(clock: FixedClock) -> FixedClock:
    clock.set(MONDAY)
    return clock


def start(session: Session, clock: FixedClock, *slugs: str) -> None:
    ensure_builtin_segments(session, clock)
    paths = [path for path in CAMPAIGN_FILES if not slugs or path.stem in slugs]
    report = load_campaign_files(session, clock, paths, template_exists=templates_in(TEMPLATES))
    for saved in report.saved:
        activate_campaign(session, clock, saved.campaign.slug, template_exists=templates_in(TEMPLATES))
    session.commit()


def tick(session_factory, clock, ctx, mailer, session: Session) -> None:
    run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()


def run_for(
    days: float, session_factory, clock, ctx, mailer, session, *, every: timedelta = timedelta(days=1)
) -> None:
    """Tick every ``every`` for ``days`` of simulated time. Daily ticks at 10:00 UTC fall in the send window of
    European leads on weekdays; leads further west need ticks every 8 hours (one of them falls in any window)."""
    end = clock.now() + timedelta(days=days)
    while clock.now() < end:
        clock.advance(every)
        run_tick(session_factory, clock, ctx, mailer)
    session.expire_all()


def messages_to(session: Session, lead: Lead) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.lead_id == lead.id).order_by(Message.id)))


def enrollment_in(session: Session, slug: str, lead: Lead) -> Enrollment:
    campaign = get_campaign(session, slug)
    return session.scalars(
        select(Enrollment)
        .where(Enrollment.campaign_id == campaign.id, Enrollment.lead_id == lead.id)
        .order_by(Enrollment.id.desc())
    ).first()


def click(session: Session, clock, ctx, message: Message, link_prefix: str = "") -> None:
    """A person's click on the first link of ``message`` starting with ``link_prefix``, through the events path."""
    url = next(link for link in message.links if link.startswith(link_prefix))
    event = NewEvent(
        lead_id=message.lead_id, type="clicked", occurred_at=clock.now(), source=EventSource.TRACKING,
        dedupe_key=random_key("click"), message_id=message.id, campaign=message.campaign, url=url,
    )
    record_event(session, clock, ctx, event)
    session.commit()


def reply(session: Session, clock, ctx, message: Message) -> None:
    event = NewEvent(
        lead_id=message.lead_id, type="replied", occurred_at=clock.now(), source=EventSource.SENDGRID,
        dedupe_key=random_key("reply"), message_id=message.id, campaign=message.campaign,
    )
    record_event(session, clock, ctx, event)
    session.commit()


def lost_lead(session: Session, clock, email_address: str, **profile) -> Lead:
    lead = make_lead(session, clock, email_address, owner="rep@example.com", **profile)
    change_stage(session, clock, lead, Stage.OPPORTUNITY, reason="demo", actor=SALES)
    change_stage(session, clock, lead, Stage.LOST, reason="deal lost: price", actor=SALES)
    session.commit()
    return lead


def eml(outbox: Path, message: Message) -> email.message.EmailMessage:
    parsed = email.message_from_bytes((outbox / f"{message.id}.eml").read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def bodies(parsed: email.message.EmailMessage) -> tuple[str, str]:
    html = parsed.get_body(("html",))
    text = parsed.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


# --- loading ---------------------------------------------------------------------------------------------------


def test_every_starter_campaign_validates_with_the_cli(app, session, clock):
    ensure_builtin_segments(session, clock)
    session.flush()
    result = app.test_cli_runner().invoke(cli, ["campaigns", "validate", *map(str, CAMPAIGN_FILES)])
    assert result.exit_code == 0, result.output
    assert [path.stem for path in CAMPAIGN_FILES] == [
        "mql-to-meeting", "re-engage-lost", "sunset-inactive", "welcome-nurture"
    ]
    assert "error" not in result.output and "warning" not in result.output


def test_every_starter_campaign_loads_and_activates(session, clock):
    start(session, clock)
    for path in CAMPAIGN_FILES:
        campaign = get_campaign(session, path.stem)
        assert (campaign.status.value, campaign.version) == ("active", 1)
    # Multilingual campaigns leave subjects to their templates, so each language has its own.
    for path in CAMPAIGN_FILES:
        for step in get_campaign(session, path.stem).parsed.steps:
            assert getattr(step, "subject", None) is None, (path.stem, step.id)


# --- the demo ---------------------------------------------------------------------------------------------------


def test_the_demo_fills_the_outbox_in_each_leads_language(session, session_factory, clock, ctx, mailer, outbox):
    clock.set(datetime.fromisoformat("2026-11-23T09:00:00+00:00"))
    summary = load_demo_data(session, clock, TemperatureThresholds(), count=60)
    session.commit()
    assert summary.campaigns == ("mql-to-meeting", "re-engage-lost", "sunset-inactive", "welcome-nurture")
    assert summary.cold_imported == 3 and summary.deals_lost >= 1

    clock.set(datetime.fromisoformat("2026-12-01T10:00:00+00:00"))  # nurture tick --now 2026-12-01T10:00
    tick(session_factory, clock, ctx, mailer, session)
    first = list(outbox.glob("*.eml"))
    assert first, "the first tick sends to European leads at once"
    run_for(9, session_factory, clock, ctx, mailer, session, every=timedelta(hours=8))

    sent = list(session.scalars(select(Message).where(Message.status == MessageStatus.SENT)))
    campaigns = {message.campaign for message in sent}
    assert {"welcome-nurture", "mql-to-meeting", "sunset-inactive"} <= campaigns
    assert len(list(outbox.glob("*.eml"))) == len(sent)
    languages = set()
    for message in sent:
        lead = session.get(Lead, message.lead_id)
        parsed = eml(outbox, message)
        html, text = bodies(parsed)
        french = (lead.locale or "").startswith("fr")
        languages.add("fr" if french else "en")
        assert message.template.endswith(".fr") is french, (message.template, lead.locale)
        assert parsed["Subject"] == message.subject
        assert ('<html lang="fr"' in html) is french
        assert ("Se désabonner" in html) is french and ("Unsubscribe" in html) is not french
        assert parsed["To"].addresses[0].addr_spec == message.to_address == lead.email
        assert lead.first_name and lead.first_name in unescape(html), "every starter email greets the lead by name"
        assert "unsubscribe" in text.lower() or "désabonner" in text.lower()
    assert languages == {"en", "fr"}
    # The cold import went through the welcome series' first emails.
    cold = session.scalars(select(Lead).where(Lead.source == COLD_SOURCE)).all()
    assert len(cold) == 3 and all(COLD_TAG in lead.tag_names for lead in cold)
    welcomed = {message.lead_id for message in sent if message.campaign == "welcome-nurture"}
    assert {lead.id for lead in cold} == welcomed


# --- welcome and nurture ---------------------------------------------------------------------------------------


def test_a_cold_import_is_welcomed_educated_then_qualified_by_a_click(
    session, session_factory, monday, ctx, mailer, outbox
):
    clock = monday
    start(session, clock, "welcome-nurture")
    csv = "Email,First name,Company,Language,Time zone\nlea@acme.example,Léa,Acme SARL,fr_FR,Europe/Paris\n"
    import_leads(session, clock, io.BytesIO(csv.encode()), ImportOptions(tags=(COLD_TAG,), file_name="cold.csv"))
    session.commit()
    lead = find_lead(session, "lea@acme.example")

    tick(session_factory, clock, ctx, mailer, session)
    run_for(8, session_factory, clock, ctx, mailer, session)
    sent = messages_to(session, lead)
    assert [message.template for message in sent] == [
        "welcome-nurture/welcome.fr", "welcome-nurture/guide.fr", "welcome-nurture/qualify.fr",
    ]
    assert sent[0].subject == "Léa, un petit guide des prospects prêts à échanger"
    html, _ = bodies(eml(outbox, sent[2]))
    assert "chez Acme SARL" in html

    score_before = lead.score
    click(session, clock, ctx, sent[2], "https://www.example.com/resources/pipeline-assessment")
    tick(session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert "took-assessment" in lead.tag_names
    assert lead.score >= score_before + 20
    lines = breakdown(session, current_config(session), lead.id, clock.now()).engagement_lines
    assert ("campaign welcome-nurture, step qualified", 20) in [(line.rule, line.points) for line in lines]
    assert enrollment_in(session, "welcome-nurture", lead).state is EnrollmentState.CONVERTED


def test_a_cold_lead_that_never_clicks_leaves_the_welcome_series_after_the_third_email(
    session, session_factory, monday, ctx, mailer
):
    clock = monday
    start(session, clock, "welcome-nurture")
    csv = "Email,First name,Language\nsam@acme.example,Sam,en_US\n"
    import_leads(session, clock, io.BytesIO(csv.encode()), ImportOptions(tags=(COLD_TAG,), file_name="cold.csv"))
    uncold = "Email\nwarm@acme.example\n"
    import_leads(session, clock, io.BytesIO(uncold.encode()), ImportOptions(tags=("webinar",), file_name="w.csv"))
    session.commit()
    lead = find_lead(session, "sam@acme.example")
    run_for(16, session_factory, clock, ctx, mailer, session)
    assert [message.template for message in messages_to(session, lead)] == [
        "welcome-nurture/welcome", "welcome-nurture/guide", "welcome-nurture/qualify",
    ]
    enrollment = enrollment_in(session, "welcome-nurture", lead)
    assert (enrollment.state, enrollment.step_id) == (EnrollmentState.EXITED, "no-click")
    assert messages_to(session, find_lead(session, "warm@acme.example")) == []


# --- MQL to meeting --------------------------------------------------------------------------------------------


def test_an_mql_who_books_a_call_alerts_its_owner_and_converts_as_sql(session, session_factory, monday, ctx, mailer):
    clock = monday
    lead = make_lead(session, clock, "ines@example.fr", first_name="Inès", company="Brontë SA", locale="fr_FR",
                     timezone="Europe/Paris", owner="chloe.dubois@example.com")
    change_stage(session, clock, lead, Stage.MQL, reason="score", actor=SALES)
    start(session, clock, "mql-to-meeting")

    tick(session_factory, clock, ctx, mailer, session)
    run_for(4, session_factory, clock, ctx, mailer, session)
    sent = messages_to(session, lead)
    assert [message.template for message in sent] == [
        "mql-to-meeting/case-study.fr", "mql-to-meeting/call-offer.fr"
    ]
    assert sent[1].subject == "Inès, 20 minutes pour regarder votre pipeline ensemble ?"

    click(session, clock, ctx, sent[1], "https://www.example.com/book-a-call")
    tick(session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert lead.stage is Stage.SQL
    alert = session.scalars(select(Message).where(Message.to_address == "chloe.dubois@example.com")).one()
    assert alert.subject == "Meeting request: Inès (Brontë SA)"
    assert alert.template == "mql-to-meeting/owner-alert"
    enrollment = enrollment_in(session, "mql-to-meeting", lead)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.CONVERTED, "met the campaign's goal")


def test_a_reply_to_the_call_offer_also_hands_the_mql_over(session, session_factory, monday, ctx, mailer):
    clock = monday
    lead = make_lead(session, clock, "ann@example.com", first_name="Ann", locale="en_GB",
                     timezone="Europe/London", owner="bob.nguyen@example.com")
    change_stage(session, clock, lead, Stage.MQL, reason="score", actor=SALES)
    start(session, clock, "mql-to-meeting")
    run_for(8, session_factory, clock, ctx, mailer, session)
    offer = messages_to(session, lead)[-1]
    assert offer.template == "mql-to-meeting/call-offer"
    reply(session, clock, ctx, offer)
    run_for(11, session_factory, clock, ctx, mailer, session)
    assert session.get(Lead, lead.id).stage is Stage.SQL
    assert session.scalar(select(func.count()).where(Message.to_address == "bob.nguyen@example.com")) == 1


# --- re-engagement of lost opportunities ------------------------------------------------------------------------


def test_a_lost_deal_gets_a_check_in_after_30_days_and_a_click_brings_it_back_to_lead(
    session, session_factory, monday, ctx, mailer, outbox
):
    clock = monday
    start(session, clock, "re-engage-lost")
    lead = lost_lead(session, clock, "jeanne@example.fr", first_name="Jeanne", company="Dupont & Fils",
                     locale="fr-FR", timezone="Europe/Paris")
    tick(session_factory, clock, ctx, mailer, session)
    assert enrollment_in(session, "re-engage-lost", lead).step_id == "wait-30-days"

    run_for(29, session_factory, clock, ctx, mailer, session)
    assert messages_to(session, lead) == []
    run_for(2, session_factory, clock, ctx, mailer, session)
    [check_in] = messages_to(session, lead)
    assert (check_in.template, check_in.subject) == ("re-engage-lost/check-in.fr", "Jeanne, comment avancez-vous ?")
    html, text = bodies(eml(outbox, check_in))
    assert "sur les projets de Dupont &amp; Fils" in html and "sur les projets de Dupont & Fils" in text

    click(session, clock, ctx, check_in, "https://www.example.com/whats-new")
    tick(session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert lead.stage is Stage.LEAD and "re-engaged" in lead.tag_names
    assert enrollment_in(session, "re-engage-lost", lead).state is EnrollmentState.CONVERTED


def test_a_reply_to_the_offer_brings_a_lost_deal_back_to_mql(session, session_factory, monday, ctx, mailer):
    clock = monday
    start(session, clock, "re-engage-lost")
    lead = lost_lead(session, clock, "max@example.com", first_name="Max", locale="en", timezone="Europe/London")
    run_for(38, session_factory, clock, ctx, mailer, session)
    assert [message.template for message in messages_to(session, lead)] == [
        "re-engage-lost/check-in", "re-engage-lost/whats-new"
    ]
    reply(session, clock, ctx, messages_to(session, lead)[-1])
    run_for(11, session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert lead.stage is Stage.MQL
    assert len(messages_to(session, lead)) == 2


def test_no_response_ends_with_a_sunset_tag_then_the_sunset_campaign_unsubscribes_as_inactive(
    session, session_factory, monday, ctx, mailer
):
    clock = monday
    start(session, clock, "re-engage-lost", "sunset-inactive")
    lead = lost_lead(session, clock, "quiet@example.com", first_name="Quinn", timezone="Europe/Dublin")
    run_for(68, session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert [message.template for message in messages_to(session, lead)][:3] == [
        "re-engage-lost/check-in", "re-engage-lost/whats-new", "re-engage-lost/last-chance"
    ]
    enrollment = enrollment_in(session, "re-engage-lost", lead)
    assert (enrollment.state, enrollment.step_id) == (EnrollmentState.EXITED, "no-response")
    assert "sunset" in lead.tag_names

    run_for(16, session_factory, clock, ctx, mailer, session)
    lead = session.get(Lead, lead.id)
    assert messages_to(session, lead)[-1].template == "sunset-inactive/still-interested"
    assert lead.status is LeadStatus.UNSUBSCRIBED
    [unsubscribed] = session.scalars(
        select(Activity).where(Activity.lead_id == lead.id, Activity.kind == "unsubscribed")
    ).all()
    assert (unsubscribed.data["via"], unsubscribed.data["cause"]) == (
        "campaign sunset-inactive, step unsubscribe-inactive",
        "inactive",
    )
    source = session.scalar(select(EngagementEvent.source).where(EngagementEvent.id == unsubscribed.data["event_id"]))
    assert source == EventSource.SYSTEM
    sent = len(messages_to(session, lead))
    run_for(60, session_factory, clock, ctx, mailer, session, every=timedelta(days=3))
    assert len(messages_to(session, lead)) == sent, "an unsubscribed lead is never emailed again"


# --- sunset of inactive subscribers ----------------------------------------------------------------------------


def inactive_subscriber(session: Session, clock, email_address: str, **profile) -> Lead:
    clock.advance(timedelta(days=-120))
    lead = make_lead(session, clock, email_address, **profile)
    clock.advance(timedelta(days=120))
    session.commit()
    return lead


def test_an_inactive_subscriber_who_does_not_click_is_unsubscribed_as_inactive_and_never_emailed_again(
    session, session_factory, monday, ctx, mailer
):
    clock = monday
    quiet = inactive_subscriber(session, clock, "paul@example.fr", first_name="Paul", locale="fr_FR")
    keen = inactive_subscriber(session, clock, "kim@example.com", first_name="Kim", locale="en_US")
    recent = make_lead(session, clock, "new@example.com")
    start(session, clock, "sunset-inactive")
    tick(session_factory, clock, ctx, mailer, session)
    run_for(1, session_factory, clock, ctx, mailer, session)
    [to_quiet] = messages_to(session, quiet)
    [to_keen] = messages_to(session, keen)
    assert to_quiet.subject == "Souhaitez-vous toujours avoir de nos nouvelles ?"
    assert to_keen.subject == "Do you still want to hear from us?"
    assert messages_to(session, recent) == []

    click(session, clock, ctx, to_keen, "https://www.example.com/stay-subscribed")
    run_for(15, session_factory, clock, ctx, mailer, session)
    quiet, keen = session.get(Lead, quiet.id), session.get(Lead, keen.id)
    assert (keen.status, "re-confirmed" in keen.tag_names) == (LeadStatus.ACTIVE, True)
    assert enrollment_in(session, "sunset-inactive", keen).state is EnrollmentState.CONVERTED
    assert quiet.status is LeadStatus.UNSUBSCRIBED
    enrollment = enrollment_in(session, "sunset-inactive", quiet)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.EXITED, "lead is unsubscribed")

    run_for(200, session_factory, clock, ctx, mailer, session, every=timedelta(days=5))
    assert len(messages_to(session, quiet)) == 1


# --- stored templates ---------------------------------------------------------------------------------------


def test_a_stored_variant_counts_like_a_file(session, clock):
    french = (
        '{% extends "layouts/base.fr.html" %}{% block subject %}Bienvenue, {{ lead.first_name }}{% endblock %}'
        "{% block content %}<p>Bonjour {{ lead.first_name }}.</p>{% endblock %}"
    )
    save_template(session, clock, "welcome.fr.html", french, created_by="test", files=FileTemplateSource(TEMPLATES))
    renderer = EmailRenderer(template_loader(TEMPLATES, StoredTemplateSource.bound_to(session)))
    assert renderer.loader.localized("welcome.html", "fr_BE") == "welcome.fr.html"
    assert renderer.loader.localized("welcome.html", "en_GB") == "welcome.html"
    email = preview_email("welcome.fr.html", now=clock.now(), lead={"first_name": "Zoé", "locale": "fr_BE"},
                          renderer=renderer)
    assert email.subject == "Bienvenue, Zoé" and "Se désabonner" in email.text


def test_the_engine_sends_a_stored_variant_to_leads_of_its_language(session, session_factory, monday, ctx, mailer):
    clock = monday
    french = (
        '{% extends "layouts/base.fr.html" %}{% block subject %}Bienvenue, {{ lead.first_name }}{% endblock %}'
        "{% block content %}<p>Bonjour {{ lead.first_name }}.</p>{% endblock %}"
    )
    save_template(session, clock, "welcome.fr.html", french, created_by="test", files=FileTemplateSource(TEMPLATES))
    text = "slug: hello\nname: Hello\nentry: [{on_event: hello}]\nsteps:\n  - {id: hi, type: send, template: welcome}\n"
    campaign = save_campaign(session, clock, check_text(text, template_exists=templates_in(TEMPLATES)).definition)
    activate_campaign(session, clock, campaign.campaign.slug, template_exists=templates_in(TEMPLATES))
    zoe = make_lead(session, clock, "zoe@example.fr", first_name="Zoé", locale="fr_BE", timezone="Europe/Brussels")
    ann = make_lead(session, clock, "ann@example.com", first_name="Ann", locale="en", timezone="Europe/London")
    session.commit()
    clock.advance(timedelta(minutes=1))
    for lead in (zoe, ann):
        record_activity(session, lead, "hello", clock.now())
    session.commit()
    tick(session_factory, clock, ctx, mailer, session)
    [to_zoe], [to_ann] = messages_to(session, zoe), messages_to(session, ann)
    assert (to_zoe.template, to_zoe.subject) == ("welcome.fr", "Bienvenue, Zoé")
    assert to_ann.template == "welcome" and to_ann.subject.startswith("Welcome to")
