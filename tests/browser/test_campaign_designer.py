"""A marketer builds the starter re-engagement campaign from a blank campaign in Chromium, through the UI
only (settings, every step with its branches and wait_for steps, targets picked from lists), sees the
validator's message at a target left empty, publishes, reviews and activates it; `nurture tick --now` at
later dates then sends its emails to a lost lead, and the YAML it downloads equals the starter's definition.
Every page on the way passes axe-core's WCAG 2.1 AA rules. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.campaigns.formdata import settings_to_form, step_to_form
from nurture.campaigns.validation import check_file, check_text
from nurture.cli import cli
from nurture.clock import FixedClock, SystemClock
from nurture.delivery.models import Message, MessageStatus
from nurture.leads.lifecycle import Stage
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, change_stage, create_lead
from nurture.segments.builtin import ensure_builtin_segments
from nurture.web.campaign_editor import STEP_TYPES
from tests.browser.conftest import assert_accessible

STARTER = Path(__file__).resolve().parents[2] / "nurture" / "starter_campaigns" / "re-engage-lost.yaml"


def starter_data() -> dict[str, Any]:
    checked = check_file(STARTER, template_exists=lambda _name: True)
    assert checked.definition is not None
    return checked.definition.to_data()


def fill(page: Any, fields: dict[str, Any]) -> None:
    """Set each field of the editor's form the way a person would: pick, tick or type."""
    form = page.locator("form.editor-form")
    for name, value in fields.items():
        if name in ("type", "window_days"):
            continue
        control = form.locator(f"[name='{name}']")
        if control.count() == 0:
            continue
        kind = control.first.evaluate("element => element.tagName + ':' + (element.type || '')")
        if kind == "INPUT:hidden":
            continue
        if kind.startswith("SELECT"):
            control.select_option(value)
        elif kind == "INPUT:checkbox":
            control.set_checked(bool(value))
        else:
            control.fill(value)
    if "window_days" in fields:
        for box in form.locator("[name='window_days']").all():
            box.set_checked(box.get_attribute("value") in fields["window_days"])


def tab_to(page: Any, selector: str, limit: int = 200) -> None:
    """Press Tab until the element matching ``selector`` has the focus: it is reachable with the keyboard."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("selector => document.activeElement?.matches(selector) ?? false", selector):
            return
    raise AssertionError(f"{selector} is not reached with the Tab key on {page.url}")


def save(page: Any) -> None:
    page.get_by_role("button", name="Save to draft").click()
    page.wait_for_selector(".flash.success")


def test_build_the_reengagement_campaign_from_blank(designer_server: Any, page: Any) -> None:
    server = designer_server
    with server.session_factory() as session:
        ensure_builtin_segments(session, SystemClock())
        create_user(session, SystemClock(), "marketer@example.com", "correct horse", Role.MARKETER)
        session.commit()
    wanted = starter_data()

    page.goto(server.url + "/login")
    page.fill("input[name=email]", "marketer@example.com")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector("#stage-temperature")

    page.click("nav >> text=Campaigns")
    assert_accessible(page)
    page.click("text=New campaign")
    assert_accessible(page)
    page.fill("#new-name", wanted["name"])
    page.fill("#new-slug", wanted["slug"])
    page.click("text=Create and edit")
    page.wait_for_selector("#editor-steps")
    assert_accessible(page)

    page.click("text=Edit settings")
    assert_accessible(page)
    fill(page, settings_to_form(wanted))
    save(page)

    # Every step first (targets can only name steps that exist), the first one added and saved with the
    # keyboard alone: Tab to each control, arrows in the list, typing, Enter.
    page.goto(server.url + f"/campaigns/{wanted['slug']}/edit")
    first = wanted["steps"][0]
    assert first["type"] == "wait" and list(STEP_TYPES).index("wait") == 1
    tab_to(page, "#insert-type")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    assert page.eval_on_selector("#insert-type", "select => select.value") == "wait"
    tab_to(page, "#insert-id")
    page.keyboard.type(first["id"])
    page.keyboard.press("Enter")
    page.wait_for_selector("form.editor-form")
    assert page.locator("h1").inner_text().startswith(f"Step 1: {first['id']}")
    tab_to(page, "#f-for")
    page.keyboard.press("Control+A")
    page.keyboard.type(first["for"])
    tab_to(page, ".save-bar button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector(".flash.success")
    assert page.locator("#f-for").input_value() == first["for"]
    for step in wanted["steps"][1:]:
        page.goto(server.url + f"/campaigns/{wanted['slug']}/edit")
        page.select_option("#insert-type", step["type"])
        page.fill("#insert-id", step["id"])
        page.click("text=Add step")
        page.wait_for_selector("form.editor-form")

    for step in wanted["steps"][1:]:
        page.goto(server.url + f"/campaigns/{wanted['slug']}/edit/steps/{step['id']}")
        fields = step_to_form(step)
        if step["id"] == "check-in-replied":
            fill(page, {**fields, "yes": "", "no": ""})
            save(page)
            error = page.locator("#error-yes").inner_text()
            assert "a branch needs yes:, no: or both" in error
            assert page.locator("#f-yes").get_attribute("aria-invalid") == "true"
            for target in ("yes", "no"):
                assert page.locator(f"#f-{target}").evaluate("element => element.tagName") == "SELECT"
            assert_accessible(page)
        fill(page, fields)
        save(page)
    assert_accessible(page)

    page.goto(server.url + f"/campaigns/{wanted['slug']}/edit")
    assert page.locator("#issues").count() == 0, page.locator("#issues").inner_text()
    assert_accessible(page)
    page.click("text=Publish…")
    assert_accessible(page)
    page.click("text=Publish version 2")
    page.wait_for_selector(".flash.success")
    assert_accessible(page)

    page.click("text=Versions")
    assert_accessible(page)
    page.click("text=Show the differences")
    assert_accessible(page)

    page.goto(server.url + f"/campaigns/{wanted['slug']}/review")
    assert_accessible(page)
    page.check("#enrol-existing")
    page.click("text=Activate re-engage-lost")
    page.wait_for_selector(".flash.success")

    page.goto(server.url + f"/campaigns/{wanted['slug']}/test")
    assert_accessible(page)
    page.goto(server.url + f"/campaigns/{wanted['slug']}/report")
    assert_accessible(page)

    # A deal lost after the activation; then the engine at later dates, as `nurture tick --now` runs it.
    start = SystemClock().now().replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=1)
    clock = FixedClock(start)
    with server.session_factory() as session:
        lead = create_lead(session, clock, "lost@example.com", actor=Actor(ActorKind.SYSTEM, "test"), stage=Stage.SQL)
        change_stage(session, clock, lead, Stage.LOST, actor=Actor(ActorKind.SYSTEM, "crm"), reason="went elsewhere")
        session.commit()
    runner = server.app.test_cli_runner()
    for day in range(0, 75):
        result = runner.invoke(cli, ["tick", "--now", (start + timedelta(days=day, minutes=5)).isoformat()])
        assert result.exit_code == 0, result.output
    with server.session_factory() as session:
        sent = session.scalars(
            select(Message.template).where(Message.status == MessageStatus.SENT).order_by(Message.id)
        ).all()
        assert sent == [
            "re-engage-lost/check-in",
            "re-engage-lost/whats-new",
            "re-engage-lost/last-chance",
        ], sent
        assert session.scalar(select(func.count()).select_from(Message)) == 3

    download = page.request.get(server.url + f"/campaigns/{wanted['slug']}/export.yaml")
    exported = check_text(download.text(), template_exists=lambda _name: True)
    assert exported.definition is not None
    assert exported.definition.to_data() == wanted
