"""The benchmarks' throw-away PostgreSQL databases: each benchmark creates its own on the local server
(``BENCH_DATABASE_ADMIN_URL``, default the machine's trust-auth server) and drops it afterwards."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy import make_url

ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def conninfo(database: str | None = None) -> str:
    """A libpq connection string for psycopg: the admin database, or ``database`` on the same server."""
    url = make_url(ADMIN_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def database_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the benchmark server."""
    return make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=database).render_as_string(
        hide_password=False
    )


def admin(statement: str) -> None:
    with psycopg.connect(conninfo(), autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


def database_exists(database: str) -> bool:
    with psycopg.connect(conninfo(), autocommit=True, connect_timeout=5) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None


def recreate_database(database: str) -> str:
    """An empty ``database`` (dropped first if it exists); returns its SQLAlchemy URL."""
    drop_database(database)
    admin(f'CREATE DATABASE "{database}"')
    return database_url(database)


def drop_database(database: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
