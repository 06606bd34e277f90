"""Every page of the app, with the demo data, passes axe-core's WCAG 2.1 A and AA rules with 0 violations:
the signed-in pages of every feature and the public pages a lead reaches from an email."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.campaigns.drafts import open_draft, save_draft
from nurture.campaigns.editing import delete_step
from nurture.campaigns.store import get_campaign
from nurture.clock import SystemClock
from nurture.config import TemperatureThresholds
from nurture.demo import load_demo_data
from nurture.engine.context import tracking_urls
from nurture.leads.models import Lead
from tests.browser.conftest import assert_accessible


def test_every_page_passes_axe(designer_server: Any, page: Any) -> None:
    server = designer_server
    clock = SystemClock()
    with server.session_factory() as session:
        load_demo_data(session, clock, TemperatureThresholds(), count=40)
        create_user(session, clock, "admin2@example.com", "correct horse", Role.ADMIN)
        campaign = get_campaign(session, "re-engage-lost")
        draft = open_draft(session, clock, campaign, "admin2@example.com")
        save_draft(session, clock, campaign, delete_step(draft.definition, "whats-new"), revision=0, author="admin2")
        lead = session.scalars(select(Lead).order_by(Lead.id)).first()
        assert lead is not None
        lead_id, lead_email = lead.id, lead.email
        session.commit()
    urls = tracking_urls(server.app.config["NURTURE_SETTINGS"])
    public = [urlsplit(urls.unsubscribe_url(lead_id)).path, urlsplit(urls.preferences_url(lead_id)).path]

    page.goto(server.url + "/login")
    assert_accessible(page)
    page.fill("input[name=email]", "admin2@example.com")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector("#stage-temperature")
    pages = [
        "/",
        "/leads",
        f"/leads/{lead_id}",
        "/reports",
        "/campaigns",
        "/campaigns/new",
        "/campaigns/re-engage-lost",
        "/campaigns/re-engage-lost/edit",
        "/campaigns/re-engage-lost/edit/settings",
        "/campaigns/re-engage-lost/edit/steps/check-in",
        "/campaigns/re-engage-lost/edit/steps/check-in-clicked",
        "/campaigns/re-engage-lost/edit/steps/check-in-replied",
        "/campaigns/re-engage-lost/edit/steps/sunset",
        "/campaigns/re-engage-lost/edit/steps/wait-30-days",
        "/campaigns/re-engage-lost/edit/steps/won-back-as-mql",
        "/campaigns/mql-to-meeting/edit/steps/alert-owner",
        "/campaigns/re-engage-lost/edit/steps/sunset/delete",
        "/campaigns/re-engage-lost/publish",
        "/campaigns/re-engage-lost/versions",
        "/campaigns/re-engage-lost/versions/diff?from=current&to=draft",
        "/campaigns/re-engage-lost/review",
        f"/campaigns/welcome-nurture/test?q={lead_email.split('@')[0]}",
        f"/campaigns/welcome-nurture/test?lead={lead_email}&days=20",
        "/campaigns/welcome-nurture/report",
    ]
    for path in pages:
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        assert_accessible(page)
    page.click("text=Sign out")
    for path in public:
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        assert_accessible(page)
