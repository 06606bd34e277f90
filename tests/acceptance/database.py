"""A dedicated, committed PostgreSQL database for tests that run several processes (the savepoint-isolated
``session`` fixture cannot be shared with another process)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import make_url

from nurture import migrate
from nurture.db import make_engine

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin_conninfo() -> str:
    admin = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)).set(drivername="postgresql")
    return admin.render_as_string(hide_password=False)


@contextmanager
def dedicated_database(prefix: str) -> Iterator[str]:
    """Create an empty database, migrate it, yield its URL, drop it (whatever happened)."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is unreachable: {exc}")
    url = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)).set(
        drivername="postgresql+psycopg", database=name
    )
    rendered = url.render_as_string(hide_password=False)
    try:
        engine = make_engine(rendered)
        migrate.upgrade(engine)
        engine.dispose()
        yield rendered
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
