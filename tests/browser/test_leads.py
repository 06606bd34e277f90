import os

from sqlalchemy import select

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.clock import SystemClock
from nurture.leads.lifecycle import Stage
from nurture.leads.models import ActorKind, Lead, StageChange
from nurture.leads.service import Actor, create_lead


def test_open_a_lead_from_the_list_and_change_its_stage(live_server, page):
    clock = SystemClock()
    with live_server.session_factory() as session:
        for number in range(3):
            create_lead(session, clock, f"other{number}@example.com", actor=Actor(ActorKind.SYSTEM, "test"))
        create_lead(session, clock, "grace@example.com", actor=Actor(ActorKind.SYSTEM, "test"), first_name="Grace",
                    last_name="Hopper", company="Navy Labs", stage=Stage.LEAD)  # fmt: skip
        create_user(session, clock, "seller@example.com", "correct horse", Role.SALES)
        session.commit()

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", "seller@example.com")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector("#stage-temperature")

    page.click("nav >> text=Leads")
    page.wait_for_selector("#leads")
    assert page.locator("#leads tbody tr").count() == 4
    page.fill("input[name=q]", "hopper")
    page.click("text=Filter")
    page.wait_for_selector("#leads")
    assert page.locator("#leads tbody tr").count() == 1
    page.click("#leads >> text=grace@example.com")
    page.wait_for_selector("#lead-stage")
    assert page.locator("#lead-email").inner_text().startswith("grace@example.com")
    assert page.locator("#lead-stage").inner_text() == "Lead (prospect)"

    page.select_option("#stage-form select[name=stage]", "sql")
    page.fill("#stage-form input[name=reason]", "asked for a quote")
    page.click("#stage-form button[type=submit]")
    page.wait_for_selector(".flash.success")
    assert page.locator(".flash.success").inner_text() == "Moved grace@example.com to Sales-qualified."
    assert page.locator("#lead-stage").inner_text() == "Sales-qualified"
    assert "user: seller@example.com" in page.locator("#stage-history").inner_text()
    if shot := os.environ.get("NURTURE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{shot}/lead.png", full_page=True)

    with live_server.session_factory() as session:
        lead = session.scalar(select(Lead).where(Lead.email_key == "grace@example.com"))
        assert lead is not None and lead.stage is Stage.SQL
        change = session.scalars(
            select(StageChange).where(StageChange.lead_id == lead.id).order_by(StageChange.id.desc())
        ).first()
        assert change is not None
        assert (change.actor_kind, change.actor, change.reason) == (ActorKind.USER, "seller@example.com",
                                                                    "asked for a quote")  # fmt: skip
    assert all(url.startswith(live_server.url) for url in requests), "the UI must load nothing from elsewhere"
