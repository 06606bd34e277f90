"""Review before activating (validation, every email rendered, the entry count, enrol existing or only new)
and test mode (a lead's path with its emails, a [TEST] email to oneself through a real SMTP server, nothing
stored and nothing sent to the lead)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.auth.models import Role
from nurture.campaigns.store import activate_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.config import Settings
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.models import Message
from nurture.delivery.settings import BackendName, DeliverySettings, SmtpSecurity, SmtpServer
from nurture.engine.enrollment import enrol_new_matches
from nurture.engine.models import Enrollment, StepRun
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
