"""The screenshots in docs/ui.md: a fresh instance with the demo data, seven weeks of engine ticks with the
recipients' opens, clicks and replies in between, and Chromium (Debian's, driven by Playwright) on each page of
the campaign designer, 1280 pixels wide, full page.

Run: ``.venv/bin/python -m tests.browser.screenshots [OUT_DIR]`` (default ``docs/ui``)."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from werkzeug.serving import make_server

from nurture.config import load_settings
from nurture.db import make_engine, make_session_factory
from nurture.delivery.models import Message, MessageStatus
from nurture.tracking.events import Hit, NewEvent, insert_events, store_hit
from nurture.tracking.models import EventSource, EventType
from tests.browser.conftest import CHROMIUM_FLAGS, _chromium_path

ROOT = Path(__file__).resolve().parents[2]
NURTURE = str(ROOT / ".venv" / "bin" / "nurture")
SECRET = "screenshots-" + "s" * 40
# Hours after the demo load: daily at first, then past the re-engagement campaign's 30-day wait and its
# follow-ups, so that every campaign has sent, been opened and clicked, and converted someone.
TICK_HOURS = (0, 20, 44, 70, 100, 150, 200, 260, 340, 430, 530, 650, 722, 746, 770, 800, 860, 940, 1020, 1100)
DAYS_SHOWN = 50
# A campaign loaded but never activated, so that the review page shows the choice of who enters.
DRAFT_SLUG = "sunset-second-pass"


def _run(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([NURTURE, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nurture {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def engage(session_factory: object, until: datetime, rng: random.Random, seen: set[int]) -> None:
    """What recipients do with the emails sent so far, before ``until``: each is delivered, about half are
    opened by people and a few by a privacy proxy, a third of those opened have their content link clicked,
    and one re-engagement email in six gets a reply. Opens and clicks are stored as the tracking endpoints
    store them, and the next tick applies them all (scores, wait_for and branch steps, goals)."""
    with session_factory() as session:  # type: ignore[operator]
        messages = session.scalars(
            select(Message).where(Message.status == MessageStatus.SENT, Message.sent_at < until).order_by(Message.id)
        ).all()
        for message in messages:
            if message.id in seen or message.sent_at is None:
                continue
            seen.add(message.id)
            sent = message.sent_at
            latest = until - sent - timedelta(minutes=1)
            delivered = NewEvent(
                message.lead_id,
                EventType.DELIVERED.value,
                sent + timedelta(seconds=20),
                EventSource.SENDGRID,
                f"screenshots-delivered:{message.id}",
                message_id=message.id,
                campaign=message.campaign,
            )
            insert_events(session, sent, [delivered])
            chance = rng.random()
            if chance < 0.08:
                store_hit(
                    session,
                    sent + timedelta(minutes=1),
                    Hit(EventType.OPENED, message.id, None, "Apple Mail Privacy Protection", {}),
                )
            if chance > 0.5:
                continue
            opened = sent + min(timedelta(minutes=rng.randint(10, 1200)), latest)
            store_hit(session, opened, Hit(EventType.OPENED, message.id, None, None, {}))
            if rng.random() < 0.35 and message.links:
                clicked = opened + min(timedelta(minutes=rng.randint(1, 20)), until - opened - timedelta(seconds=30))
                store_hit(session, clicked, Hit(EventType.CLICKED, message.id, len(message.links) - 1, None, {}))
            elif (message.campaign or "") == "re-engage-lost" and rng.random() < 0.35:
                replied = NewEvent(
                    message.lead_id,
                    EventType.REPLIED.value,
                    opened + timedelta(minutes=30),
                    EventSource.API,
                    f"screenshots-replied:{message.id}",
                    message_id=message.id,
                    campaign=message.campaign,
                )
                insert_events(session, opened, [replied])
        session.commit()


def prepare(instance: Path) -> tuple[dict[str, str], datetime]:
    """The instance's environment and the time of the first tick."""
    env = {**os.environ, "NURTURE_INSTANCE_PATH": str(instance), "NURTURE_SECRET_KEY": SECRET}
    env["NURTURE_SCHEDULER_IN_WEB"] = "false"
    _run("db", "upgrade", env=env)
    _run("demo", "load", env=env)
    draft = (ROOT / "nurture" / "starter_campaigns" / "sunset-inactive.yaml").read_text(encoding="utf-8")
    draft = draft.replace("slug: sunset-inactive", f"slug: {DRAFT_SLUG}", 1)
    draft = draft.replace("name: Sunset of inactive subscribers", "name: Sunset, second pass", 1)
    (instance / f"{DRAFT_SLUG}.yaml").write_text(draft, encoding="utf-8")
    _run("campaigns", "load", str(instance / f"{DRAFT_SLUG}.yaml"), env=env)
    # A second version of the re-engagement campaign, for the versions page: a longer wait for the click.
    starter = (ROOT / "nurture" / "starter_campaigns" / "re-engage-lost.yaml").read_text(encoding="utf-8")
    second = starter.replace("step: check-in\n    within: 7d", "step: check-in\n    within: 10d", 1)
    assert second != starter, "re-engage-lost.yaml changed: update the screenshots' second version"
    (instance / "re-engage-lost.yaml").write_text(second, encoding="utf-8")
    _run("campaigns", "load", str(instance / "re-engage-lost.yaml"), env=env)
    engine = make_engine(load_settings(env).database_url)
    session_factory = make_session_factory(engine)
    rng = random.Random(20261206)
    seen: set[int] = set()
    start = datetime.now(UTC).replace(microsecond=0)
    ticks = [start + timedelta(hours=hours) for hours in TICK_HOURS]
    for now, following in zip(ticks, [*ticks[1:], None], strict=True):
        _run("tick", "--now", now.isoformat(), env=env)
        if following is not None:
            engage(session_factory, following, rng, seen)
    engine.dispose()
    return env, start


def screenshot(page: Any, target: Path) -> None:
    """The whole page, taken in a window as tall as the page when it has a Save bar (which sticks to the
    bottom of the window, over a field otherwise) or email frames (which load lazily, once in view)."""
    frames = page.locator("iframe.email-frame")
    if page.locator(".save-bar").count() or frames.count():
        page.set_viewport_size({"width": 1280, "height": page.evaluate("document.documentElement.scrollHeight")})
        for frame in frames.all():
            content = frame.element_handle().content_frame()
            if content is not None:
                content.wait_for_selector("body *", state="attached")
    page.screenshot(path=str(target), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from nurture.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        env, start = prepare(Path(folder))
        os.environ.update({key: env[key] for key in ("NURTURE_INSTANCE_PATH", "NURTURE_SECRET_KEY")})
        os.environ["NURTURE_SCHEDULER_IN_WEB"] = "false"
        app = create_app()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        base = f"http://127.0.0.1:{server.server_port}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        first = start.date()
        period = f"from={first}&to={first + timedelta(days=DAYS_SHOWN)}"
        pages = {
            "campaign-list": "/campaigns",
            "campaign-new": "/campaigns/new",
            "campaign-overview": f"/campaigns/re-engage-lost?{period}",
            "campaign-editor": f"/campaigns/welcome-nurture/edit?{period}",
            "campaign-step-form": "/campaigns/re-engage-lost/edit/steps/check-in-clicked",
            "campaign-settings": "/campaigns/re-engage-lost/edit/settings",
            "campaign-versions": "/campaigns/re-engage-lost/versions",
            "campaign-diff": "/campaigns/re-engage-lost/versions/diff?from=1&to=2",
            "campaign-review": f"/campaigns/{DRAFT_SLUG}/review",
            "campaign-test": f"/campaigns/{DRAFT_SLUG}/test?q=a",
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
                screenshot(page, target)
                written.append(target)
            # The whole diagram (the page shows it in a scrolling frame), and test mode with a lead picked.
            page.goto(base + f"/campaigns/re-engage-lost/report?{period}")
            diagram = out / "campaign-diagram.png"
            page.add_style_tag(
                content=".flow-scroll { max-height: none; overflow: visible; } .flow svg { background: #fbfcfd; }"
            )
            page.locator("#report-flow-heading + figure svg").screenshot(path=str(diagram))
            written.append(diagram)
            # The lead the review renders the emails for matches the entry, so test mode has a path to show.
            page.goto(base + f"/campaigns/{DRAFT_SLUG}/review")
            page.locator("a", has_text="(test mode)").click()
            page.wait_for_selector("ol.path")
            target = out / "campaign-test-path.png"
            screenshot(page, target)
            written.append(target)
            browser.close()
        server.shutdown()
    return written


if __name__ == "__main__":
    for path in shoot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "ui"):
        print(path)
