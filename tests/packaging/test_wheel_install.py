"""nurture installed from its wheel, not the checkout (issue 9, item 13).

The wheel is built from a copy of the source tree and installed, with its dependencies, into a fresh virtual
environment. From a directory outside the checkout that install migrates a database, loads the demo and
serves the login page with gunicorn, with the instance folder given by NURTURE_INSTANCE_PATH. It proves that
what the app reads at run time ships as package data: the migrations (db upgrade), the default scoring rules
(seeded by migration 0006), the starter campaigns, their email templates and the campaign JSON Schema (demo
load validates and activates them), the page templates and the static files (the login page and its CSS).

The dependencies are installed from the registry (pip's cache makes that about 20 s), not borrowed from the
project's .venv: the test then also proves the wheel declares every package it imports. The wheel is built
from a copy because setuptools reuses build/ in the tree it builds, where a file deleted from the source
can linger and ship.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "instance", ".*_cache", ".hypothesis",
    "node_modules", "out",
)  # fmt: skip
SECRET = "wheel-test-secret-0123456789abcdef-0123456789"
SERVER_START_SECONDS = 30


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def serve(venv: Path, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """gunicorn on a free loopback port, listening, and its base URL; the caller stops it."""
    port = free_loopback_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "gunicorn"), "nurture.app:create_app()", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # Waiting on a real process to bind: each try that finds nothing listening waits 0.2 s on the process
    # itself, so a gunicorn that dies is reported at once instead of after the whole bound.
    for _attempt in range(SERVER_START_SECONDS * 5):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            pass
        try:
            server.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"gunicorn exited with {server.returncode}:\n{server.stdout.read()}")
    server.kill()
    pytest.fail(f"gunicorn did not listen within {SERVER_START_SECONDS} s:\n{server.communicate()[0]}")


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path):
    source, wheels, venv, elsewhere, instance = (tmp_path / name for name in ("src", "dist", "venv", "cwd", "inst"))
    shutil.copytree(CHECKOUT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)])
    [wheel] = wheels.glob("nurture-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "nurture/migrations/env.py",
        "nurture/migrations/script.py.mako",
        "nurture/migrations/versions/0001_initial_schema.py",
        "nurture/scoring/default_rules.yaml",
        "nurture/starter_campaigns/welcome-nurture.yaml",
        "nurture/email_templates/layouts/base.html",
        "nurture/email_templates/welcome-nurture/welcome.fr.html",
        "nurture/campaigns/schema.json",
        "nurture/web/templates/login.html",
        "nurture/web/static/nurture.css",
    ):
        assert name in shipped, f"{name} is not in the wheel"

    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel)])

    elsewhere.mkdir()
    instance.mkdir()
    (instance / "secret_key").write_text(SECRET)  # what `make run` writes: no NURTURE_SECRET_KEY needed
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("NURTURE_") and key not in {"DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.update(NURTURE_INSTANCE_PATH=str(instance), NURTURE_SCHEDULER_IN_WEB="false", NURTURE_LOG_LEVEL="WARNING")
    python, nurture = str(venv / "bin" / "python"), str(venv / "bin" / "nurture")

    where = run([python, "-c", "import nurture; print(nurture.__file__)"], cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), f"nurture imported from {where}, not the fresh install"
    upgraded = run([nurture, "db", "upgrade"], cwd=elsewhere, env=env)
    assert f"sqlite:///{instance / 'nurture.db'}" in upgraded.stdout
    loaded = run([nurture, "demo", "load", "--count", "20"], cwd=elsewhere, env=env)
    assert "20 leads loaded" in loaded.stdout
    seeded = run([nurture, "scoring", "rules"], cwd=elsewhere, env=env).stdout  # from default_rules.yaml
    assert "half-life 30 days" in seeded and "personal-address" in seeded
    active = run([nurture, "campaigns", "list"], cwd=elsewhere, env=env).stdout
    assert all(slug in active for slug in ("welcome-nurture", "mql-to-meeting", "re-engage-lost", "sunset-inactive"))

    server, base_url = serve(venv, elsewhere, env)
    try:
        status, page = get(f"{base_url}/login")
        assert status == 200
        assert b'name="password"' in page
        status, stylesheet = get(f"{base_url}/static/nurture.css")
        assert status == 200 and stylesheet
    finally:
        server.terminate()
        server.communicate(timeout=15)

    assert (instance / "nurture.db").is_file()
    assert not (elsewhere / "instance").exists(), "the instance folder must be NURTURE_INSTANCE_PATH"
    assert sorted(path.name for path in elsewhere.iterdir()) == []
