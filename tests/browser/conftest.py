"""Browser tests: Debian's Chromium driven by Playwright against the app served on 127.0.0.1.

They use a database of their own (a fresh migrated SQLite file) because the server runs in another thread
and commits for real. Chromium is installed by `make test` when missing (Debian package `chromium`)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from nurture import migrate
from nurture.app import create_app
from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.db import make_engine, make_session_factory
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.settings import BackendName, DeliverySettings
from tests.conftest import IN_CI, TEST_SECRET, _create_postgres_database, _drop_postgres_database
from tests.support.emails import POSTAL_ADDRESS

WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _chromium_path() -> str | None:
    return os.environ.get("NURTURE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = _chromium_path()
    if path is None:
        message = "Chromium is not installed (Debian package chromium; `make test` installs it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


class LiveServer:
    def __init__(self, app: Any, engine: Any) -> None:
        self.app = app
        self.engine = engine
        self.session_factory = make_session_factory(engine)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = Settings(database_url=url, secret_key=TEST_SECRET, base_url="http://127.0.0.1")
    app = create_app({"NURTURE_SETTINGS": settings, "NURTURE_ENGINE": engine, "NURTURE_CLOCK": SystemClock()})
    server = LiveServer(app, engine)
    server.start()
    yield server
    server.stop()
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def designer_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """The app on a fresh database of each kind, without the embedded scheduler: the test drives the engine
    with ``nurture tick --now`` at the dates it chooses."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'designer.db'}"
    else:
        url = _create_postgres_database("_browser")
    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = Settings(
        database_url=url,
        secret_key=TEST_SECRET,
        base_url="http://127.0.0.1",
        run_scheduler_in_web=False,
        instance_path=tmp_path / "instance",
        delivery=DeliverySettings(
            backend=BackendName.FILE,
            outbox_dir=tmp_path / "instance" / "outbox",
            sender=Mailbox("news@nurture.test", "Nurture News"),
            postal_address=POSTAL_ADDRESS,
            send_rate=1000.0,
        ),
    )
    app = create_app({"NURTURE_SETTINGS": settings, "NURTURE_ENGINE": engine, "NURTURE_CLOCK": SystemClock()})
    server = LiveServer(app, engine)
    server.start()
    yield server
    server.stop()
    engine.dispose()
    if request.param == "postgresql":
        _drop_postgres_database(url)


def assert_accessible(page: Any) -> None:
    """axe-core's WCAG 2.1 A and AA rules on the page as it is: 0 violations, each one listed otherwise."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}})
    violations = results.response["violations"]
    details = [
        f"{violation['id']} ({violation['impact']}): {violation['help']}\n"
        + "\n".join(
            f"    at {node['target']}: {' '.join(str(node.get('failureSummary') or '').split())}"
            for node in violation["nodes"]
        )
        for violation in violations
    ]
    assert not violations, f"{page.url}:\n" + "\n".join(details)


@pytest.fixture
def page(chromium_executable: str, tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_FLAGS)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()
