"""Test mode: a lead's dated path with each email as it would get it, the draft when it passes validation, one
email alone under a policy that runs nothing, a [TEST] email to oneself through the file backend; nothing
stored about the lead and nothing sent to it; hostile input is a 400 or 404 with a message, never a 500."""

from __future__ import annotations

import copy
import email
import email.policy
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.auth.models import Role
from nurture.campaigns.drafts import save_draft
from nurture.campaigns.models import Campaign
from nurture.campaigns.store import activate_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.config import Settings
from nurture.delivery.models import Message
from nurture.engine.models import Enrollment, StepRun
from nurture.leads.models import Activity, ActorKind
from nurture.leads.service import Actor, create_lead
from nurture.segments.builtin import ensure_builtin_segments
from nurture.segments.service import create_segment
from tests.acceptance.engine_support import delivery_settings
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as

TEMPLATES = Path(__file__).resolve().parents[2] / "nurture" / "email_templates"
CAMPAIGN = """slug: hello-trail
name: Hello trail
entry:
  - segment: vips
steps:
  - id: hello
    type: send
    template: welcome-nurture/welcome
    subject: "{{ lead.first_name }}, welcome aboard"
"""
FOLLOW_UP = [
    {"id": "pause", "type": "wait", "for": "2d"},
    {"id": "follow-up", "type": "send", "template": "welcome-nurture/guide"},
]
ME = "me@example.com"


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    folder = tmp_path / "outbox"
    folder.mkdir()
    return folder


@pytest.fixture
def nurture_settings(database_url: str, outbox: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=TEST_SECRET,
        base_url="https://nurture.test",
        email_templates=TEMPLATES,
        delivery=delivery_settings(outbox),
    )


@pytest.fixture
def campaign(session, clock, tmp_path) -> Campaign:
    ensure_builtin_segments(session, clock)
    create_segment(session, clock, "vips", name="VIPs", rules={"field": "tags", "op": "contains", "value": "vip"})
    actor = Actor(ActorKind.SYSTEM, "test")
    create_lead(session, clock, "ada@example.com", actor=actor, first_name="Ada", last_name="Lovelace", tags=["vip"])
    create_lead(session, clock, "bob@example.com", actor=actor, first_name="Bob")
    (tmp_path / "hello.yaml").write_text(CAMPAIGN)
    report = load_campaign_files(session, clock, [tmp_path / "hello.yaml"], template_exists=templates_in(TEMPLATES))
    session.commit()
    return report.saved[0].campaign


def with_draft(session, clock, campaign: Campaign, steps: list[dict]) -> None:
    data = copy.deepcopy(campaign.definition)
    data["steps"] = [*data["steps"], *steps]
    save_draft(session, clock, campaign, data, revision=0, author="test")
    session.commit()


def stored_for_leads(session) -> list[int]:
    return [session.scalar(select(func.count()).select_from(table)) for table in (Enrollment, StepRun, Message)]


def test_search_lists_matches_by_email_or_name(app, make_user, campaign):
    page = client_as(app, make_user, Role.VIEWER).get("/campaigns/hello-trail/test?q=lovelace").get_data(as_text=True)
    assert "1 lead match “lovelace”" in page
    assert "/campaigns/hello-trail/test?lead=ada@example.com&amp;days=60" in page
    assert "bob@example.com" not in page


def test_the_path_shows_each_email_as_the_lead_gets_it_and_a_test_send_goes_to_me_only(
    app, make_user, session, campaign, outbox
):
    activities = session.scalar(select(func.count()).select_from(Activity))
    marketer = client_as(app, make_user, Role.MARKETER, email=ME)
    page = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com&days=30").get_data(as_text=True)
    assert "The path of ada@example.com through version 1" in page
    assert "Subject: <strong>Ada, welcome aboard</strong>" in page  # the step's own subject line, for Ada
    frame = re.search(r'<iframe title="[^"]+" sandbox="" srcdoc="([^"]*)"', page)
    assert frame and "Ada" in frame.group(1)
    assert "<summary>Text part</summary><pre>" in page
    assert "It goes to me@example.com only" in page

    sent = marketer.post(
        "/campaigns/hello-trail/test/send", data={"step": "hello", "variant": "", "lead": "ada@example.com"}
    )
    assert sent.status_code == 303
    told = marketer.get(sent.headers["Location"]).get_data(as_text=True)
    assert f"Sent “[TEST] Ada, welcome aboard” to {ME} (you) via the file backend, written as {outbox}" in told
    assert "Nothing was sent to the lead." in told
    [written] = list(outbox.glob("*.eml"))
    received = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert received["To"] == ME and received["Subject"] == "[TEST] Ada, welcome aboard"
    assert "/t/o/" not in written.read_text() and "/t/c/" not in written.read_text()  # not tracked
    session.expire_all()
    assert stored_for_leads(session) == [0, 0, 0]
    assert session.scalar(select(func.count()).select_from(Activity)) == activities


def test_the_draft_is_tested_when_valid_and_the_published_path_stays_as_it_was(
    app, make_user, session, clock, campaign, outbox
):
    with_draft(session, clock, campaign, FOLLOW_UP)
    marketer = client_as(app, make_user, Role.MARKETER, email=ME)
    published = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com").get_data(as_text=True)
    assert '<option value="draft">the draft (unpublished changes)</option>' in published
    assert "follow-up" not in published
    draft = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com&version=draft").get_data(as_text=True)
    assert "through the draft" in draft and "follow-up" in draft
    assert "The five-step follow-up playbook" in draft
    again = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com").get_data(as_text=True)
    assert "follow-up" not in again  # the engine's parse cache never held the draft under version 1
    session.expire_all()
    assert [step["id"] for step in session.get(Campaign, campaign.id).definition["steps"]] == ["hello"]

    not_published = {"step": "follow-up", "lead": "ada@example.com"}
    assert marketer.post("/campaigns/hello-trail/test/send", data=not_published).status_code == 400
    sent = marketer.post("/campaigns/hello-trail/test/send", data={**not_published, "version": "draft"})
    assert sent.status_code == 303 and sent.headers["Location"].endswith("version=draft")
    [written] = list(outbox.glob("*.eml"))
    assert "[TEST] The five-step follow-up playbook" in written.read_text()
    assert stored_for_leads(session) == [0, 0, 0]


def test_an_invalid_draft_cannot_be_tested(app, make_user, session, clock, campaign):
    with_draft(session, clock, campaign, [{"id": "broken", "type": "send"}])
    marketer = client_as(app, make_user, Role.MARKETER)
    page = marketer.get("/campaigns/hello-trail/test").get_data(as_text=True)
    assert "The draft cannot be tested until it passes validation" in page
    assert '<option value="draft"' not in page
    refused = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com&version=draft")
    assert refused.status_code == 400 and "cannot be tested until it passes validation" in refused.get_data(True)


def test_one_email_alone_runs_nothing(app, make_user, campaign):
    viewer = client_as(app, make_user, Role.VIEWER)
    alone = viewer.get("/campaigns/hello-trail/test/preview?step=hello&lead=ada@example.com")
    assert alone.status_code == 200 and alone.mimetype == "text/html" and "Ada" in alone.get_data(as_text=True)
    policy = alone.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy and "script-src" not in policy
    made_up = viewer.get("/campaigns/hello-trail/test/preview?step=hello")
    assert made_up.status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("days=0", 400, "days: give a whole number of days from 1 to 730"),
        ("days=-1", 400, "days:"),
        ("days=731", 400, "days:"),
        ("days=" + "9" * 5000, 400, "days:"),
        ("days=%C2%B2", 400, "days:"),
        ("days=1e3", 400, "days:"),
        ("q=ada%00", 400, "q"),
        ("lead=ada%00@example.com", 400, "lead"),
        ("lead=nobody@example.com", 404, "lead: no lead with the email"),
        ("lead=" + "x" * 5000, 404, "lead: no lead"),
        ("version=v2", 400, "version:"),
        ("version=draft", 400, "hello-trail has no draft to test"),
    ],
)
def test_hostile_query_fields_are_refused_with_a_message(app, make_user, campaign, query, status, says):
    answer = client_as(app, make_user, Role.MARKETER).get(f"/campaigns/hello-trail/test?{query}")
    assert answer.status_code == status and says in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"step": "nope", "lead": "ada@example.com"}, 400, "step: &#39;nope&#39;"),
        ({"step": "hello", "variant": "b", "lead": "ada@example.com"}, 400, "is not an email of hello-trail"),
        ({"step": "hello", "lead": "nobody@example.com"}, 400, "lead: no lead"),
        ({"step": "hello"}, 400, "lead: no lead"),
        ({"step": "hel\0lo", "lead": "ada@example.com"}, 400, "step"),
        ({"step": "hello", "lead": "ada@example.com", "version": "draft"}, 400, "no draft"),
    ],
)
def test_hostile_send_forms_are_refused_and_send_nothing(app, make_user, campaign, outbox, form, status, says):
    answer = client_as(app, make_user, Role.MARKETER).post("/campaigns/hello-trail/test/send", data=form)
    assert answer.status_code == status and says in answer.get_data(as_text=True)
    assert not list(outbox.iterdir())


def test_previews_refuse_what_names_nothing(app, make_user, campaign):
    viewer = client_as(app, make_user, Role.VIEWER)
    assert viewer.get("/campaigns/hello-trail/test/preview?step=nope").status_code == 400
    assert viewer.get("/campaigns/hello-trail/test/preview?step=hello&lead=nobody@example.com").status_code == 404
    assert viewer.get("/campaigns/hello-trail/test/preview?step=hello%00").status_code == 400
    assert viewer.get("/campaigns/no-such/test").status_code == 404
    assert viewer.get("/campaigns/no-such/test/preview?step=hello").status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SALES])
def test_viewer_and_sales_see_the_path_and_cannot_send(app, make_user, campaign, outbox, role):
    client = client_as(app, make_user, role)
    page = client.get("/campaigns/hello-trail/test?lead=ada@example.com")
    assert page.status_code == 200 and "Send me this step" not in page.get_data(as_text=True)
    form = {"step": "hello", "lead": "ada@example.com"}
    assert client.post("/campaigns/hello-trail/test/send", data=form).status_code == 403
    assert not list(outbox.iterdir())


def test_a_test_send_needs_the_csrf_token(app, make_user, campaign, outbox):
    app.config["WTF_CSRF_ENABLED"] = True
    marketer = client_as(app, make_user, Role.MARKETER, email=ME)
    form = {"step": "hello", "lead": "ada@example.com"}
    refused = marketer.post("/campaigns/hello-trail/test/send", data=form)
    assert refused.status_code == 400 and b"Form expired" in refused.data
    assert not list(outbox.iterdir())
    page = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    sent = marketer.post("/campaigns/hello-trail/test/send", data={**form, "csrf_token": token.group(1)})
    assert sent.status_code == 303
    assert len(list(outbox.glob("*.eml"))) == 1


def test_a_lead_kept_out_by_only_new_is_told_so(app, make_user, session, clock, campaign):
    activate_campaign(session, clock, "hello-trail", template_exists=templates_in(TEMPLATES), enrol_existing=False)
    session.commit()
    marketer = client_as(app, make_user, Role.MARKETER)
    page = marketer.get("/campaigns/hello-trail/test?lead=ada@example.com").get_data(as_text=True)
    assert "ada@example.com already matched when hello-trail was activated for new leads only" in page
    other = marketer.get("/campaigns/hello-trail/test?lead=bob@example.com").get_data(as_text=True)
    assert "activated for new leads only" not in other
    session.expire_all()
    assert stored_for_leads(session) == [0, 0, 0]
