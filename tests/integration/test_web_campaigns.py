"""The campaign pages: the list with enrollments per state, one campaign's steps with counts per step, and the
activate, pause and archive buttons (roles, CSRF, refusals shown on the page, 404s)."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest

from nurture.auth.models import Role
from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.store import load_campaign_files, pause_campaign
from nurture.campaigns.validation import templates_in
from nurture.config import Settings
from nurture.engine.models import Enrollment, EnrollmentState, StepRun
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead
from nurture.segments.builtin import ensure_builtin_segments
from nurture.tracking.models import EngagementEvent, EventSource
from tests.conftest import TEST_SECRET
from tests.integration.test_campaign_store import FIXTURES
from tests.integration.test_tracking_support import make_message
from tests.integration.test_web_leads import client_as

TEMPLATES = FIXTURES / "email_templates"
_keys = count()


@pytest.fixture
def nurture_settings(database_url: str) -> Settings:
    # Activation checks the campaign's templates in the configured directory: the fixture templates here.
    return Settings(
        database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test", email_templates=TEMPLATES
    )


@pytest.fixture
def campaigns(session, clock) -> dict[str, Campaign]:
    ensure_builtin_segments(session, clock)
    report = load_campaign_files(session, clock, [FIXTURES / "valid"], template_exists=templates_in(TEMPLATES))
    session.commit()
    return {saved.campaign.slug: saved.campaign for saved in report.saved}


def enroll(session, clock, campaign, lead, state, step_id=None):
    live = state in (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
    enrollment = Enrollment(
        campaign_id=campaign.id, lead_id=lead.id, state=state, step_id=step_id if live else None,
        next_run_at=clock.now() if live else None, campaign_version=campaign.version, source="manual",
        entered_at=clock.now(), updated_at=clock.now(), finished_at=None if live else clock.now(),
    )  # fmt: skip
    session.add(enrollment)
    session.flush()
    return enrollment


def engagement(session, clock, message, kind, *, machine=False):
    session.add(EngagementEvent(
        lead_id=message.lead_id, message_id=message.id, campaign=message.campaign, type=kind,
        occurred_at=clock.now(), recorded_at=clock.now(), source=EventSource.TRACKING, machine=machine,
        dedupe_key=f"test:{next(_keys)}", processed_at=clock.now(),
    ))  # fmt: skip


def cells(html: str, marker: str) -> dict[str, str]:
    """``data-state`` or ``data-count`` cells of the row starting at ``marker``."""
    row = html[html.index(marker) :]
    row = row[: row.index("</tr>")]
    return dict(re.findall(r'data-(?:state|count|total)="([a-z_]+)">(\d+)', row))


def test_the_list_totals_enrollments_emails_and_engagement(logged_in_client, session, clock, campaigns):
    trial = campaigns["trial-onboarding"]
    leads = [create_lead(session, clock, f"l{n}@example.com", actor=Actor(ActorKind.SYSTEM)) for n in range(5)]
    session.flush()
    enroll(session, clock, trial, leads[0], EnrollmentState.WAITING, "pause-2d")
    enroll(session, clock, trial, leads[1], EnrollmentState.ACTIVE, "welcome")
    enroll(session, clock, trial, leads[2], EnrollmentState.CONVERTED)
    enroll(session, clock, trial, leads[3], EnrollmentState.CONVERTED)
    enroll(session, clock, trial, leads[4], EnrollmentState.EXITED)
    session.commit()

    response = logged_in_client.get("/campaigns")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert cells(html, 'data-campaign="trial-onboarding"') == {
        "enrolled": "5", "live": "2", "converted": "2", "sent": "0", "opened": "0", "clicked": "0", "machine": "0"
    }  # fmt: skip
    assert cells(html, 'data-campaign="minimal"')["converted"] == "0"
    assert 'href="/campaigns/trial-onboarding"' in html and "draft" in html
    assert logged_in_client.get("/campaigns?status=draft").status_code == 200
    assert logged_in_client.get("/campaigns?status=nonsense").status_code == 400


def test_the_campaign_page_shows_steps_with_counts(logged_in_client, session, clock, campaigns):
    trial = campaigns["trial-onboarding"]
    leads = [create_lead(session, clock, f"l{n}@example.com", actor=Actor(ActorKind.SYSTEM)) for n in range(3)]
    session.flush()
    for lead in leads:
        enrollment = enroll(session, clock, trial, lead, EnrollmentState.WAITING, "pause-2d")
        message = make_message(session, clock, lead, campaign=trial.slug)
        session.add(StepRun(enrollment_id=enrollment.id, campaign_id=trial.id, lead_id=lead.id, step_id="welcome",
                            step_type="send", outcome="queued", ran_at=clock.now(), message_id=message.id))  # fmt: skip
        session.add(StepRun(enrollment_id=enrollment.id, campaign_id=trial.id, lead_id=lead.id, step_id="pause-2d",
                            step_type="wait", outcome="waiting", ran_at=clock.now()))  # fmt: skip
        if lead is leads[0]:
            engagement(session, clock, message, "opened")
            engagement(session, clock, message, "opened")  # a second open of the same email counts once
            engagement(session, clock, message, "clicked")
        if lead is leads[1]:
            engagement(session, clock, message, "opened", machine=True)  # a scanner: not a person
            engagement(session, clock, message, "clicked", machine=True)
    session.commit()

    response = logged_in_client.get("/campaigns/trial-onboarding")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Trial onboarding" in html and "Welcome new trial users" in html
    steps = re.findall(r'<tr data-step="([^"]+)">', html)
    assert steps[:4] == ["welcome", "pause-2d", "opened-welcome", "tips"] and steps[-1] == "again"
    welcome_counts = {"here_now": "0", "runs": "3", "sent": "3", "opened": "1", "clicked": "1"}
    assert cells(html, 'data-step="welcome"') == welcome_counts
    assert cells(html, 'data-step="pause-2d"') == {"here_now": "3", "runs": "3"}
    welcome = html[html.index('data-step="welcome"') :]
    assert "template:</span> welcome" in welcome[: welcome.index("</tr>")]
    assert cells(html[html.index('id="enrollment-counts"') :], "<tbody>")["waiting"] == "3"


def test_activate_pause_resume_and_archive(app, make_user, session, clock, campaigns):
    marketer = client_as(app, make_user, Role.MARKETER)
    page = marketer.get("/campaigns/minimal").get_data(as_text=True)
    assert ">Activate</button>" in page and ">Pause</button>" not in page

    activated = marketer.post("/campaigns/minimal/activate")
    assert activated.status_code == 303 and activated.headers["Location"] == "/campaigns/minimal"
    session.expire_all()
    minimal = session.get(Campaign, campaigns["minimal"].id)
    assert minimal.status is CampaignStatus.ACTIVE and minimal.activated_at == clock.now()
    again = marketer.post("/campaigns/minimal/activate", follow_redirects=True).get_data(as_text=True)
    assert "minimal is already active." in again and ">Pause</button>" in again

    clock.advance(timedelta(hours=1))
    assert marketer.post("/campaigns/minimal/pause").status_code == 303
    session.expire_all()
    assert session.get(Campaign, minimal.id).status is CampaignStatus.PAUSED
    assert ">Resume</button>" in marketer.get("/campaigns/minimal").get_data(as_text=True)

    archived = marketer.post("/campaigns/minimal/archive", follow_redirects=True).get_data(as_text=True)
    assert "Archived minimal." in archived
    session.expire_all()
    assert session.get(Campaign, minimal.id).status is CampaignStatus.ARCHIVED
    control_buttons = archived.split("overview-flow-heading")[0].split("Sign out")[-1]
    assert "<button" not in control_buttons


def test_refusals_are_shown_on_the_page(app, make_user, session, clock, campaigns):
    marketer = client_as(app, make_user, Role.MARKETER)
    refused = marketer.post("/campaigns/minimal/pause")
    assert refused.status_code == 400
    assert "campaign &#39;minimal&#39; is draft: only an active campaign pauses" in refused.get_data(as_text=True)

    campaigns["minimal"].definition = {**campaigns["minimal"].definition, "steps": [
        {"id": "hello", "type": "send", "template": "gone", "subject": "Hello"}]}  # fmt: skip
    session.commit()
    broken = marketer.post("/campaigns/minimal/activate")
    html = broken.get_data(as_text=True)
    assert broken.status_code == 400
    assert "minimal was not activated:" in html and "gone" in html
    session.expire_all()
    assert session.get(Campaign, campaigns["minimal"].id).status is CampaignStatus.DRAFT

    marketer.post("/campaigns/minimal/archive")
    final = marketer.post("/campaigns/minimal/activate")
    assert final.status_code == 400 and "archived campaigns stay retired" in final.get_data(as_text=True)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SALES])
def test_only_marketers_run_campaigns(app, make_user, session, clock, campaigns, role):
    client = client_as(app, make_user, role)
    page = client.get("/campaigns/minimal")
    assert page.status_code == 200 and ">Activate</button>" not in page.get_data(as_text=True)
    assert client.post("/campaigns/minimal/activate").status_code == 403
    session.expire_all()
    assert session.get(Campaign, campaigns["minimal"].id).status is CampaignStatus.DRAFT


def test_unknown_campaigns_and_actions_are_404(logged_in_client, campaigns):
    assert logged_in_client.get("/campaigns/nope").status_code == 404
    assert b"Not found" in logged_in_client.get("/campaigns/nope").data
    assert logged_in_client.post("/campaigns/nope/pause").status_code == 404
    assert logged_in_client.post("/campaigns/minimal/delete").status_code == 404
    assert logged_in_client.get("/campaigns/minimal/activate").status_code == 405


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_the_buttons_need_a_csrf_token(csrf_app, make_user, session, clock, campaigns):
    client = client_as(csrf_app, make_user, Role.ADMIN)
    refused = client.post("/campaigns/minimal/activate")
    assert refused.status_code == 400 and b"Form expired" in refused.data
    session.expire_all()
    assert session.get(Campaign, campaigns["minimal"].id).status is CampaignStatus.DRAFT

    page = client.get("/campaigns/minimal").get_data(as_text=True)
    token = re.search(r'action="/campaigns/minimal/activate".*?name="csrf_token" value="([^"]+)"', page, re.S)
    assert token
    assert client.post("/campaigns/minimal/activate", data={"csrf_token": token.group(1)}).status_code == 303
    session.expire_all()
    assert session.get(Campaign, campaigns["minimal"].id).status is CampaignStatus.ACTIVE


def test_no_campaigns_yet(logged_in_client):
    assert "No campaigns yet" in logged_in_client.get("/campaigns").get_data(as_text=True)


def test_pause_from_the_store_shows_on_the_page(logged_in_client, session, clock, campaigns):
    campaigns["minimal"].status = CampaignStatus.ACTIVE
    pause_campaign(session, clock, "minimal")
    session.commit()
    assert 'id="campaign-status">paused' in logged_in_client.get("/campaigns/minimal").get_data(as_text=True)
