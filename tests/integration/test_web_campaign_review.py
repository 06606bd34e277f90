"""Review before activating (validation, every email rendered, the entry count, enrol existing or only new)
and test mode (a lead's path with its emails, a [TEST] email to oneself through a real SMTP server, nothing
stored and nothing sent to the lead)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.auth.models import Role
from nurture.campaigns.models import Campaign, CampaignStatus, EntryExclusion
from nurture.campaigns.store import activate_campaign, archive_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.cli.campaigns import campaigns_group
from nurture.config import Settings
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.models import Message
from nurture.delivery.settings import BackendName, DeliverySettings, SmtpSecurity, SmtpServer
from nurture.engine.context import engine_context
from nurture.engine.enrollment import enrol_new_matches
from nurture.engine.models import Enrollment, StepRun
from nurture.engine.tick import run_tick
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Activity, ActorKind, Lead
from nurture.leads.service import Actor, create_lead
from nurture.segments.builtin import ensure_builtin_segments
from nurture.segments.service import create_segment
from tests.acceptance.engine_support import engine_settings, make_context
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as
from tests.support.emails import POSTAL_ADDRESS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "nurture" / "email_templates"
WELCOME = ROOT / "nurture" / "starter_campaigns" / "welcome-nurture.yaml"
SEGMENT_CAMPAIGN = """slug: vip-news
name: VIP news
entry:
  - segment: vips
steps:
  - id: hello
    type: send
    template: welcome-nurture/welcome
"""


@pytest.fixture
def nurture_settings(database_url: str, request) -> Settings:
    server = request.getfixturevalue("smtp_server")
    delivery = DeliverySettings(
        backend=BackendName.SMTP,
        smtp=SmtpServer(server.host, server.port, SmtpSecurity.NONE, timeout=5),
        sender=Mailbox("news@nurture.test", "Nurture News"),
        postal_address=POSTAL_ADDRESS,
        send_rate=100.0,
    )
    return Settings(
        database_url=database_url,
        secret_key=TEST_SECRET,
        base_url="https://nurture.test",
        email_templates=TEMPLATES,
        delivery=delivery,
    )


def lead(session, clock, email, **fields):
    found = create_lead(session, clock, email, actor=Actor(ActorKind.SYSTEM, "test"), **fields)
    session.flush()
    return found


@pytest.fixture
def vip_campaign(session, clock, tmp_path):
    ensure_builtin_segments(session, clock)
    create_segment(session, clock, "vips", name="VIPs", rules={"field": "tags", "op": "contains", "value": "vip"})
    lead(session, clock, "ada@example.com", first_name="Ada", tags=["vip"])
    lead(session, clock, "bob@example.com", tags=["vip"])
    lead(session, clock, "cy@example.com")
    (tmp_path / "vip.yaml").write_text(SEGMENT_CAMPAIGN)
    report = load_campaign_files(session, clock, [tmp_path / "vip.yaml"], template_exists=templates_in(TEMPLATES))
    session.commit()
    return report.saved[0].campaign


def test_the_review_shows_validation_emails_entry_count_and_rules(app, make_user, vip_campaign):
    page = client_as(app, make_user, Role.MARKETER).get("/campaigns/vip-news/review").get_data(as_text=True)
    assert "The definition passes validation" in page
    assert "Emails, rendered for ada@example.com" in page and "✓ yes" in page
    assert "segment vips: <strong>2</strong> leads match now" in page
    assert "Also enrol the 2 leads who already match" in page
    assert "any time" in page and "no limit on emails per lead" in page


def test_only_new_keeps_todays_matches_out_and_lets_later_ones_in(
    app, make_user, session, clock, vip_campaign, nurture_settings, tmp_path
):
    marketer = client_as(app, make_user, Role.MARKETER)
    refused = marketer.post("/campaigns/vip-news/review/activate", data={})
    assert refused.status_code == 400 and "enrol: choose" in refused.get_data(as_text=True)
    assert marketer.post("/campaigns/vip-news/review/activate", data={"enrol": "new"}).status_code == 303
    session.expire_all()
    ctx = make_context(engine_settings(nurture_settings, tmp_path / "outbox"))
    clock.advance(timedelta(minutes=1))
    lead(session, clock, "dee@example.com", tags=["vip"])
    enrol_new_matches(session, clock, ctx)
    enrolled = session.scalars(select(Lead.email).join(Enrollment, Enrollment.lead_id == Lead.id)).all()
    assert enrolled == ["dee@example.com"]


def test_the_default_enrols_everyone_who_matches(session, clock, vip_campaign, nurture_settings, tmp_path):
    activate_campaign(session, clock, "vip-news", template_exists=templates_in(TEMPLATES))
    ctx = make_context(engine_settings(nurture_settings, tmp_path / "outbox"))
    enrol_new_matches(session, clock, ctx)
    assert session.scalar(select(func.count()).select_from(Enrollment)) == 2


def test_test_mode_shows_the_path_and_sends_only_to_me(app, make_user, session, clock, smtp_server, tmp_path):
    load_campaign_files(session, clock, [WELCOME], template_exists=templates_in(TEMPLATES))
    lead(session, clock, "ada@example.com", first_name="Ada", tags=["cold"])
    session.commit()
    marketer = client_as(app, make_user, Role.MARKETER, email="me@example.com")
    found = marketer.get("/campaigns/welcome-nurture/test?q=ada").get_data(as_text=True)
    assert "lead=ada%40example.com" in found or "lead=ada@example.com" in found
    page = marketer.get("/campaigns/welcome-nurture/test?lead=ada@example.com&days=30").get_data(as_text=True)
    assert "The path of ada@example.com" in page and "Subject: <strong>" in page and "<iframe" in page
    sent = marketer.post(
        "/campaigns/welcome-nurture/test/send", data={"step": "welcome", "variant": "", "lead": "ada@example.com"}
    )
    assert sent.status_code == 303
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["me@example.com"]
    assert received.message["Subject"].startswith("[TEST] ")
    assert "/t/c/" not in received.message.as_string()
    counts = [session.scalar(select(func.count()).select_from(table)) for table in (Enrollment, StepRun, Message)]
    assert counts == [0, 0, 0]
    kinds = session.scalars(select(Activity.kind)).all()
    assert set(kinds) <= {"lead_created", "created", "imported", "stage_changed", "tag_added"}, kinds


def test_test_mode_refuses_bad_input_clearly(app, make_user, session, clock):
    load_campaign_files(session, clock, [WELCOME], template_exists=templates_in(TEMPLATES))
    session.commit()
    marketer = client_as(app, make_user, Role.MARKETER)
    assert marketer.get("/campaigns/welcome-nurture/test?lead=nobody@example.com").status_code == 404
    assert marketer.get("/campaigns/welcome-nurture/test?days=99999").status_code == 400
    assert marketer.get("/campaigns/welcome-nurture/test?days=x").status_code == 400
    bad_step = marketer.post(
        "/campaigns/welcome-nurture/test/send", data={"step": "wait-after-welcome", "lead": "a@b.c"}
    )
    assert bad_step.status_code == 400
    viewer = client_as(app, make_user, Role.VIEWER)
    assert viewer.get("/campaigns/welcome-nurture/test").status_code == 200
    assert viewer.post("/campaigns/welcome-nurture/test/send", data={"step": "welcome"}).status_code == 403
    assert viewer.post("/campaigns/welcome-nurture/review/activate", data={"enrol": "new"}).status_code == 403
    assert "Send me this step" not in viewer.get("/campaigns/welcome-nurture/test").get_data(as_text=True)


# --- the review's numbers and words --------------------------------------------------------------------------------

FULL_CAMPAIGN = """slug: acme-news
name: Acme news
entry:
  - segment: vips
  - rules: {field: company, op: "=", value: Acme}
send_window:
  days: [mon, tue, wed, thu, fri]
  hours: {from: "09:00", to: "17:00"}
frequency_cap: {emails: 2, per: week}
goal:
  rules: {field: stage, op: "=", value: customer}
exit:
  - on_tag_added: do-not-nurture
steps:
  - id: hello
    type: send
    template: welcome-nurture/welcome
    subject: "{{ lead.first_name or 'Friend' }}, hello from Acme"
  - id: pause
    type: wait
    for: 2d
  - id: guide
    type: send
    template: welcome-nurture/guide
    variants:
      - {name: plain, weight: 1}
      - {name: bold, weight: 1, template: welcome-nurture/qualify}
"""
EVENT_CAMPAIGN = """slug: on-signup
name: On signup
entry:
  - on_event: signed_up
steps:
  - id: hello
    type: send
    template: welcome-nurture/welcome
"""


def load(session, clock, tmp_path, text: str, name: str):
    (tmp_path / f"{name}.yaml").write_text(text)
    report = load_campaign_files(session, clock, [tmp_path / f"{name}.yaml"], template_exists=templates_in(TEMPLATES))
    session.commit()
    return report.saved[0].campaign


@pytest.fixture
def acme_campaign(session, clock, tmp_path):
    ensure_builtin_segments(session, clock)
    create_segment(session, clock, "vips", name="VIPs", rules={"field": "tags", "op": "contains", "value": "vip"})
    lead(session, clock, "ada@example.com", first_name="Ada", tags=["vip"], company="Acme")
    lead(session, clock, "bob@example.com", tags=["vip"])
    lead(session, clock, "cy@example.com", company="Acme")
    gone = lead(session, clock, "dee@example.com", tags=["vip"], company="Acme")
    gone.status = LeadStatus.UNSUBSCRIBED
    lead(session, clock, "eve@example.com")
    return load(session, clock, tmp_path, FULL_CAMPAIGN, "acme")


def test_the_review_counts_each_active_matching_lead_once_and_renders_every_variant(app, make_user, acme_campaign):
    page = client_as(app, make_user, Role.VIEWER).get("/campaigns/acme-news/review").get_data(as_text=True)
    assert "segment vips: <strong>2</strong> leads match now" in page  # ada, bob; dee is unsubscribed
    assert "rules “company = &#34;Acme&#34;”: <strong>2</strong> leads match now" in page  # ada, cy
    assert "Together, <strong>3</strong> active leads" in page
    assert "Emails, rendered for ada@example.com" in page and "the first active lead who matches the entry" in page
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td>([^<]+)</td><td>([^<]+)</td><td>([^<]*)</td>', page)
    assert [(step, variant, template) for step, variant, template, _ in rows] == [
        ("hello", "–", "welcome-nurture/welcome"),
        ("guide", "plain", "welcome-nurture/guide"),
        ("guide", "bold", "welcome-nurture/qualify"),
    ]
    assert rows[0][3] == "Ada, hello from Acme"  # the step's own subject line, rendered for the sample lead
    assert all(subject for *_, subject in rows)
    assert page.count("✓ yes") == 3
    assert "/campaigns/acme-news/test/preview?step=guide&amp;variant=bold&amp;lead=ada@example.com" in page
    assert "Monday to Friday, 09:00–17:00 in each lead&#39;s time zone" in page
    assert "at most 2 marketing emails a week per lead" in page
    assert "a lead enters once" in page
    assert "a lead who meets “stage = &#34;customer&#34;” leaves as converted" in page
    assert "gets the tag do-not-nurture; or unsubscribes, bounces, complains or is erased" in page
    assert 'name="enrol"' not in page  # a viewer reads; only a marketer activates


def test_an_event_entry_fires_only_after_activation_and_asks_nothing(app, make_user, session, clock, tmp_path):
    load(session, clock, tmp_path, EVENT_CAMPAIGN, "signup")
    marketer = client_as(app, make_user, Role.MARKETER)
    page = marketer.get("/campaigns/on-signup/review").get_data(as_text=True)
    assert "on event signed_up: fires only for what happens after activation" in page
    assert "Nobody enters on activating either way" in page
    assert "a made-up lead" in page  # no lead at all: the emails still render
    assert marketer.post("/campaigns/on-signup/review/activate", data={"enrol": "existing"}).status_code == 303
    session.expire_all()
    assert session.scalar(select(Campaign.status).where(Campaign.slug == "on-signup")) is CampaignStatus.ACTIVE


def test_the_default_choice_is_made_on_the_page(app, make_user, acme_campaign):
    page = client_as(app, make_user, Role.MARKETER).get("/campaigns/acme-news/review").get_data(as_text=True)
    assert re.search(r'<input type="radio" id="enrol-existing" name="enrol" value="existing" checked', page)
    assert "Also enrol the 3 leads who already match" in page
    assert not re.search(r'value="new"[^>]* checked', page)


@pytest.mark.parametrize(("choice", "first_tick"), [("existing", ["ada", "bob", "cy"]), ("new", [])])
def test_activation_with_either_choice_then_the_tick(
    app, make_user, session, session_factory, clock, acme_campaign, nurture_settings, tmp_path, choice, first_tick
):
    marketer = client_as(app, make_user, Role.MARKETER)
    activated = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": choice})
    assert activated.status_code == 303 and activated.headers["Location"] == "/campaigns/acme-news"
    flashed = marketer.get("/campaigns/acme-news").get_data(as_text=True)
    assert "Activated acme-news" in flashed
    session.expire_all()
    excluded = session.scalar(select(func.count()).select_from(EntryExclusion))
    assert excluded == (0 if choice == "existing" else 4)  # every lead matching now, dee (unsubscribed) too
    ctx = engine_context(engine_settings(nurture_settings, tmp_path / "outbox"))
    mailer = FileMailer(tmp_path / "outbox", clock, 1000)
    clock.advance(timedelta(minutes=1))
    run_tick(session_factory, clock, ctx, mailer)
    assert enrolled_names(session) == first_tick
    clock.advance(timedelta(hours=1))
    lead(session, clock, "fay@example.com", tags=["vip"])  # comes to match after activation
    session.commit()
    clock.advance(timedelta(minutes=1))
    run_tick(session_factory, clock, ctx, mailer)
    assert enrolled_names(session) == [*first_tick, "fay"]


def enrolled_names(session) -> list[str]:
    session.expire_all()
    emails = session.scalars(select(Lead.email).join(Enrollment, Enrollment.lead_id == Lead.id).order_by(Lead.email))
    return [email.split("@")[0] for email in emails]


def test_the_cli_activates_with_only_new(app, session, clock, acme_campaign, nurture_settings, tmp_path):
    runner = app.test_cli_runner()
    result = runner.invoke(campaigns_group, ["activate", "acme-news", "--only-new", "--templates", str(TEMPLATES)])
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(EntryExclusion)) == 4
    ctx = engine_context(engine_settings(nurture_settings, tmp_path / "outbox"))
    assert enrol_new_matches(session, clock, ctx).total == 0


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SALES])
def test_viewer_and_sales_read_the_review_and_cannot_activate(app, make_user, session, acme_campaign, role):
    client = client_as(app, make_user, role)
    page = client.get("/campaigns/acme-news/review")
    assert page.status_code == 200 and "Activate acme-news" not in page.get_data(as_text=True)
    assert client.post("/campaigns/acme-news/review/activate", data={"enrol": "existing"}).status_code == 403
    session.expire_all()
    assert session.scalar(select(Campaign.status).where(Campaign.slug == "acme-news")) is CampaignStatus.DRAFT


def test_activation_needs_the_csrf_token(app, make_user, session, acme_campaign):
    app.config["WTF_CSRF_ENABLED"] = True
    marketer = client_as(app, make_user, Role.MARKETER)
    refused = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": "existing"})
    assert refused.status_code == 400 and b"Form expired" in refused.data
    session.expire_all()
    assert session.scalar(select(Campaign.status).where(Campaign.slug == "acme-news")) is CampaignStatus.DRAFT
    page = marketer.get("/campaigns/acme-news/review").get_data(as_text=True)
    token = re.search(r'action="/campaigns/acme-news/review/activate".*?name="csrf_token" value="([^"]+)"', page, re.S)
    assert token
    done = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": "new", "csrf_token": token.group(1)})
    assert done.status_code == 303


def test_refusals_re_render_the_review_with_400(app, make_user, session, clock, acme_campaign):
    marketer = client_as(app, make_user, Role.MARKETER)
    for choice in ("maybe", "x" * 5000):
        refused = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": choice})
        assert refused.status_code == 400 and "enrol: choose" in refused.get_data(as_text=True)
    nul = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": "new\0"})
    assert nul.status_code == 400 and "enrol" in nul.get_data(as_text=True) and "NUL" in nul.get_data(as_text=True)
    archive_campaign(session, clock, "acme-news")
    session.commit()
    archived = marketer.post("/campaigns/acme-news/review/activate", data={"enrol": "existing"})
    assert archived.status_code == 400 and "archived campaigns stay retired" in archived.get_data(as_text=True)
    assert marketer.get("/campaigns/no-such/review").status_code == 404
    assert marketer.post("/campaigns/no-such/review/activate", data={"enrol": "new"}).status_code == 404
