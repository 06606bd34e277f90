"""Database plumbing shared by every domain package: the declarative base, portable column types and
engine creation. The session lifecycle (begin, commit, close) belongs to the callers: web requests,
CLI commands, the worker and tests. Domain functions only receive a ``Session``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Engine, Enum, Integer, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.orm import Session as Session
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every database.

    SQLite has no time zone type and hands back naive values; mixing those with aware values from
    PostgreSQL would break comparisons, so both are normalised here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; use an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL for indexable, compact documents; plain JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants room for billions of rows.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def enum_column(enum: type[StrEnum], name: str) -> Enum:
    """A string column limited to ``enum``'s values by a named CHECK constraint (portable, easy to migrate)."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDocument}


def _configure_sqlite(engine: Engine, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin, so SAVEPOINT works.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # By default BEGIN IMMEDIATE: take the write lock when the transaction begins, waiting up to
        # busy_timeout for it. A deferred transaction that read first and writes later fails at once with
        # "database is locked" when another connection wrote in between (WAL cannot upgrade a stale snapshot,
        # and the busy timeout does not apply): a sign-in racing the embedded scheduler was an HTTP 500.
        connection.exec_driver_sql(begin)


CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, *, sqlite_begin: str = "BEGIN IMMEDIATE", **kwargs: Any) -> Engine:
    """An engine for ``url``; on SQLite, transactions start with ``sqlite_begin`` (see ``_configure_sqlite``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # A host that drops packets would otherwise hold a command or a request for the system's TCP timeout
    # (minutes) before the one-line "cannot connect" error.
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_postgresql(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"
