import os

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.clock import SystemClock
from nurture.config import TemperatureThresholds
from nurture.demo import load_demo_data


def test_sign_in_and_see_the_dashboard(live_server, page):
    with live_server.session_factory() as session:
        load_demo_data(session, SystemClock(), TemperatureThresholds(), count=60)
        create_user(session, SystemClock(), "marketer@example.com", "correct horse", Role.MARKETER)
        session.commit()

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login")
    page.fill("input[name=email]", "marketer@example.com")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "Wrong email or password."

    page.fill("input[name=email]", "marketer@example.com")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector("#stage-temperature")
    assert page.locator("h1").inner_text() == "Dashboard"
    total = page.locator("#stage-temperature tfoot .total").inner_text()
    assert 0 < int(total) <= 60
    assert page.locator("#segments tr[data-segment=hot-leads]").count() == 1
    if shot := os.environ.get("NURTURE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{shot}/dashboard.png", full_page=True)

    page.click("text=Sign out")
    page.wait_for_url(live_server.url + "/login")
    assert all(url.startswith(live_server.url) for url in requests), "the UI must load nothing from elsewhere"
