"""The screenshots in docs/ui.md: a fresh instance with the demo data, a few engine ticks, and Chromium
(Debian's, driven by Playwright) on each page of the campaign designer, 1280 pixels wide, full page.

Run: ``.venv/bin/python -m tests.browser.screenshots [OUT_DIR]`` (default ``docs/ui``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from werkzeug.serving import make_server

from tests.browser.conftest import CHROMIUM_FLAGS, _chromium_path

ROOT = Path(__file__).resolve().parents[2]
NURTURE = str(ROOT / ".venv" / "bin" / "nurture")
SECRET = "screenshots-" + "s" * 40


def _run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([NURTURE, *args], env=env, check=True, capture_output=True)


def prepare(instance: Path) -> dict[str, str]:
    env = {**os.environ, "NURTURE_INSTANCE_PATH": str(instance), "NURTURE_SECRET_KEY": SECRET}
    env["NURTURE_SCHEDULER_IN_WEB"] = "false"
    _run("db", "upgrade", env=env)
    _run("demo", "load", env=env)
    start = datetime.now(UTC).replace(microsecond=0)
    for hours in (0, 20, 44, 70, 100, 150, 200, 260):
        _run("tick", "--now", (start + timedelta(hours=hours)).isoformat(), env=env)
    return env


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from nurture.app import create_app

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        env = prepare(Path(folder))
        os.environ.update({key: env[key] for key in ("NURTURE_INSTANCE_PATH", "NURTURE_SECRET_KEY")})
        os.environ["NURTURE_SCHEDULER_IN_WEB"] = "false"
        app = create_app()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        base = f"http://127.0.0.1:{server.server_port}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        today = datetime.now(UTC).date()
        period = f"from={today - timedelta(days=1)}&to={today + timedelta(days=15)}"
        pages = {
            "campaign-list": "/campaigns",
            "campaign-new": "/campaigns/new",
            "campaign-overview": f"/campaigns/re-engage-lost?{period}",
            "campaign-editor": f"/campaigns/welcome-nurture/edit?{period}",
            "campaign-step-form": "/campaigns/re-engage-lost/edit/steps/check-in-clicked",
            "campaign-settings": "/campaigns/re-engage-lost/edit/settings",
            "campaign-versions": "/campaigns/re-engage-lost/versions",
            "campaign-review": "/campaigns/re-engage-lost/review",
            "campaign-test": "/campaigns/welcome-nurture/test",
            "campaign-report": f"/campaigns/welcome-nurture/report?{period}",
        }
        written = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium_path(), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/login")
            page.fill("input[name=email]", "admin@example.com")
            page.fill("input[name=password]", os.environ.get("NURTURE_DEMO_PASSWORD", "nurture-demo"))
            page.click("button[type=submit]")
            for name, path in pages.items():
                response = page.goto(base + path)
                if response is None or response.status != 200:
                    print(f"skipped {name}: {path} answered {response.status if response else 'nothing'}")
                    continue
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            # The whole diagram (the page shows it in a scrolling frame), and test mode with a lead picked.
            page.goto(base + f"/campaigns/re-engage-lost/report?{period}")
            diagram = out / "campaign-diagram.png"
            page.add_style_tag(content=".flow-scroll { max-height: none; overflow: visible; }")
            page.locator("#report-flow-heading + figure svg").screenshot(path=str(diagram))
            written.append(diagram)
            page.goto(base + "/campaigns/welcome-nurture/test?q=a")
            page.locator("ul.matches a").first.click()
            page.wait_for_selector("ol.path")
            target = out / "campaign-test-path.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
            browser.close()
        server.shutdown()
    return written


if __name__ == "__main__":
    for path in shoot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "ui"):
        print(path)
