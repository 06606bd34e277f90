import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import DBAPIError

from nurture import migrate
from nurture.app import create_app
from nurture.cli import cli
from nurture.cli.context import database_problem
from nurture.config import Settings
from nurture.db import make_engine
from nurture.leads.models import Lead
from nurture.segments.models import Segment
from nurture.web.database import get_database
from tests.conftest import DEFAULT_PG_URL, IN_CI, TEST_SECRET


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


# --- a database without the schema, or out of reach (issue 9, item 11) ----------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database with no tables at all: a new SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)).set(drivername="postgresql")
    name = f"nurture_empty_{os.getpid()}"
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is unreachable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is unreachable: {exc}")
    yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def closed_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: the system just handed it out and it was closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(database_url: str, *args: str):
    """The CLI over its own app on ``database_url``, as `nurture ARGS` runs it (not the tests' shared engine)."""
    app = create_app({"TESTING": True, "NURTURE_SETTINGS": Settings(database_url=database_url, secret_key=TEST_SECRET)})
    try:
        return app.test_cli_runner().invoke(cli, list(args))
    finally:
        with app.app_context():
            get_database().engine.dispose()


def test_a_command_on_a_database_without_the_schema_says_to_run_db_upgrade(empty_database_url):
    result = run_cli(empty_database_url, "leads", "show", "x@example.com")
    shown = make_url(empty_database_url).render_as_string(hide_password=True)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"Error: the database {shown} has no schema: run `nurture db upgrade` first"]


@pytest.mark.slow
def test_a_command_on_a_schema_behind_this_version_says_to_run_db_upgrade(empty_database_url):
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0004")  # before api_keys (0006)
    engine.dispose()
    result = run_cli(empty_database_url, "apikeys", "list")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].endswith(f"at schema revision 0004, not {migrate.head_revision()}: "
                                                   "run `nurture db upgrade`")  # fmt: skip
    assert "Traceback" not in result.output


def test_db_upgrade_on_an_unreachable_database_is_one_line_without_the_password():
    url = f"postgresql+psycopg://user:secret@127.0.0.1:{closed_loopback_port()}/nope"
    result = run_cli(url, "db", "upgrade")
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: cannot connect to the database {make_url(url).render_as_string()}: ")
    assert "user:***@127.0.0.1" in line
    assert "secret" not in line


def test_an_unreachable_database_is_one_line_from_the_console_command(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("NURTURE_")}
    env["NURTURE_SECRET_KEY"] = "x" * 40
    env["DATABASE_URL"] = f"postgresql://user:secret@127.0.0.1:{closed_loopback_port()}/nope"
    result = subprocess.run(
        [sys.executable, "-m", "nurture", "leads", "show", "x@example.com"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: cannot connect to the database postgresql+psycopg://user:***@127.0.0.1:")
    assert "secret" not in result.stderr + result.stdout


def test_other_database_errors_keep_their_traceback(engine):
    """A failing statement on a database at the current schema is a bug, not something to explain away."""
    with pytest.raises(DBAPIError) as info, engine.connect() as connection:
        connection.execute(text("SELECT * FROM no_such_table"))
    assert database_problem(info.value, engine) is None
