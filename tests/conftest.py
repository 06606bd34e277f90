"""Shared fixtures.

Every test that asks for ``session``, ``engine`` or ``app`` runs twice: on SQLite and on PostgreSQL
(the same test, parametrised). Each test runs inside a transaction that is rolled back afterwards,
with the application's own commits turned into savepoints (SQLAlchemy's "join an external
transaction" recipe), so no data leaks from one test into the next.

PostgreSQL comes from TEST_DATABASE_URL or 127.0.0.1:5432. Without it the PostgreSQL half is
skipped locally and fails under CI=true.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session

from nurture import migrate
from nurture.app import create_app
from nurture.auth.models import Role, User
from nurture.auth.service import create_user
from nurture.clock import FixedClock
from nurture.config import Settings
from nurture.db import make_engine
from tests.support.signin import signed_in_client

pytest_plugins = ["tests.support.fixtures"]

settings.register_profile(
    "nurture",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("nurture")

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789abcdef"
EPOCH = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# --- nothing leaves 127.0.0.1 -----------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class ExternalNetworkError(AssertionError):
    pass


def _guarded_connect(sock: socket.socket, address: Any) -> Any:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise ExternalNetworkError(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect(sock, address)


def _guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise ExternalNetworkError(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect_ex(sock, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_loopback(host):
        raise ExternalNetworkError(f"test tried to resolve {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_external_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens a connection to (or resolves) anything but loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


# --- databases ----------------------------------------------------------------------------------------


def _postgres_admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def _create_postgres_database(suffix: str = "") -> str:
    import psycopg

    admin = make_url(_postgres_admin_url()).set(drivername="postgresql")
    name = f"nurture_test_{os.getpid()}{suffix}"
    conninfo = admin.render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is unreachable at {admin.render_as_string()}: {exc}".strip()
        if IN_CI:
            pytest.fail(f"{message} (CI=true: PostgreSQL is required)", pytrace=False)
        pytest.skip(message)
    return admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    import psycopg

    admin = make_url(_postgres_admin_url()).set(drivername="postgresql")
    name = make_url(url).database
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of each kind, created once per test session."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'nurture.db'}"
        return
    url = _create_postgres_database()
    yield url
    _drop_postgres_database(url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The migrated schema: tests run against what Alembic builds, not ``create_all``."""
    # Deferred on SQLite: each test runs inside one outer transaction, which must not hold the write lock
    # from its start, or the second connections some tests open (a CLI command, a worker) would wait on it.
    engine = make_engine(database_url, sqlite_begin="BEGIN")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_connection(engine: Engine) -> Iterator[Any]:
    connection = engine.connect()
    transaction = connection.begin()
    yield connection
    if transaction.is_active:
        transaction.rollback()
    connection.close()


def _session_on(connection: Any) -> Session:
    return Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(db_connection: Any) -> Iterator[Session]:
    session = _session_on(db_connection)
    yield session
    session.close()


@pytest.fixture
def dialect(engine: Engine) -> str:
    return engine.dialect.name


# --- time, settings, app -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(EPOCH)


@pytest.fixture
def nurture_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test")


@pytest.fixture
def app(
    engine: Engine, db_connection: Any, clock: FixedClock, nurture_settings: Settings, tmp_path: Path
) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "NURTURE_SETTINGS": nurture_settings,
            "NURTURE_ENGINE": engine,
            "NURTURE_SESSION_FACTORY": lambda: _session_on(db_connection),
            "NURTURE_CLOCK": clock,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_user(session: Session, clock: FixedClock) -> Any:
    def make(email: str = "marketer@example.com", role: Role = Role.MARKETER, password: str = "correct horse") -> User:
        user = create_user(session, clock, email, password, role)
        session.commit()
        return user

    return make


@pytest.fixture
def logged_in_client(app: Flask, make_user: Any) -> FlaskClient:
    """A client signed in as a marketer, without going through the login form."""
    user = make_user()
    return signed_in_client(app, user)
