import os
import subprocess
import sys

from sqlalchemy import func, select

from nurture.cli import cli
from nurture.leads.models import Lead
from nurture.segments.models import Segment


def test_help_lists_every_command_group(app):
    result = app.test_cli_runner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for group in ("db", "demo", "leads", "segments", "users", "run"):
        assert f"  {group}" in result.output


def test_db_upgrade_is_idempotent_and_adds_builtin_segments(app, session):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(cli, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "Database at revision" in result.output
    slugs = set(session.scalars(select(Segment.slug).where(Segment.builtin)))
    assert {"active", "hot-leads", "mql-not-sql", "lost-opportunities", "inactive-90-days"} <= slugs


def test_demo_load_only_when_empty(app, session):
    runner = app.test_cli_runner()
    first = runner.invoke(cli, ["demo", "load", "--if-empty", "--count", "25"])
    assert first.exit_code == 0, first.output
    assert "25 leads loaded" in first.output
    assert "admin@example.com" in first.output
    second = runner.invoke(cli, ["demo", "load", "--if-empty", "--count", "25"])
    assert "nothing loaded" in second.output
    assert session.scalar(select(func.count()).select_from(Lead)) == 25
    stages = set(session.scalars(select(Lead.stage).distinct()))
    assert len(stages) >= 5


def test_users_create_refuses_a_short_password(app):
    result = app.test_cli_runner().invoke(cli, ["users", "create", "ann@example.com", "--password", "short"])
    assert result.exit_code != 0
    assert "password: must be at least 8 characters" in result.output
    assert "Traceback" not in result.output


def test_configuration_error_is_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("NURTURE_")}
    env["NURTURE_BASE_URL"] = "not a url"
    env["NURTURE_SECRET_KEY"] = "x" * 40
    result = subprocess.run(
        [sys.executable, "-m", "nurture", "segments", "list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nurture: configuration error: NURTURE_BASE_URL: must be an http(s) URL such as "
        "https://nurture.example.com (got 'not a url')"
    ]
