"""The review and test mode in a browser, with the demo data and a draft: the pages pass axe-core's WCAG 2.1 A
and AA rules, the emails show in sandboxed frames, and a test send goes to the signed-in user's outbox file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.campaigns.drafts import save_draft
from nurture.campaigns.store import get_campaign
from nurture.clock import SystemClock
from nurture.config import TemperatureThresholds
from nurture.demo import load_demo_data
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Lead
from tests.browser.conftest import assert_accessible

ME = "tester@example.com"


def test_review_and_test_mode_of_a_draft_in_the_browser(designer_server: Any, page: Any) -> None:
    server = designer_server
    clock = SystemClock()
    with server.session_factory() as session:
        load_demo_data(session, clock, TemperatureThresholds(), count=30)
        create_user(session, clock, ME, "correct horse", Role.MARKETER)
        campaign = get_campaign(session, "welcome-nurture")
        data = copy.deepcopy(campaign.definition)
        data["name"] = "Welcome and nurture, renamed"
        save_draft(session, clock, campaign, data, revision=0, author=ME)
        lead = session.scalars(select(Lead).where(Lead.status == LeadStatus.ACTIVE).order_by(Lead.id)).first()
        assert lead is not None
        lead_email = lead.email
        session.commit()

    page.goto(server.url + "/login")
    page.fill("input[name=email]", ME)
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector("#stage-temperature")

    page.goto(server.url + "/campaigns/welcome-nurture/review")
    assert page.locator("#review-emails tbody tr").count() == 3
    assert_accessible(page)

    page.goto(server.url + f"/campaigns/welcome-nurture/test?q={lead_email.split('@')[0]}")
    assert_accessible(page)
    page.click(f"text={lead_email}")
    page.select_option("#test-version", "draft")
    page.click("text=Search or update")
    page.wait_for_selector("#path-heading")
    assert "through the draft" in page.inner_text("#path-heading")
    assert page.locator("iframe.email-frame[sandbox='']").count() >= 1
    assert_accessible(page)

    page.locator("text=Send me this step's email").first.click()
    page.wait_for_selector(".flash.success")
    assert f"to {ME} (you)" in page.inner_text(".flash.success")
    outbox = Path(server.app.config["NURTURE_SETTINGS"].delivery.outbox_dir)
    [written] = list(outbox.glob("*.eml"))
    assert f"To: {ME}" in written.read_text() and "Subject: [TEST] " in written.read_text()
    assert_accessible(page)
