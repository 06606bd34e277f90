"""Schema migrations with Alembic, run from ``nurture db ...`` and from the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, column, inspect, select, table

# Alembic's default name for the table holding the revision, which nurture keeps.
VERSION_TABLE = "alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def alembic_config(engine: Engine) -> Config:
    config = alembic_config_without_engine()
    config.attributes["engine"] = engine
    return config


def include_object_for(dialect_name: str) -> Callable[..., bool]:
    """Autogenerate filter: skip schema items declared for another database (``.ddl_if(dialect=...)``)."""

    def include_object(obj: Any, _name: str | None, _type: str, _reflected: bool, _compare_to: Any) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        return ddl_if is None or ddl_if.dialect is None or ddl_if.dialect == dialect_name

    return include_object


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def head_revision() -> str | None:
    """The revision ``upgrade(engine)`` brings a database to."""
    return ScriptDirectory.from_config(alembic_config_without_engine()).get_current_head()


def is_known_revision(revision: str) -> bool:
    """False for a revision written by a newer nurture, whose migration this one does not have."""
    try:
        return ScriptDirectory.from_config(alembic_config_without_engine()).get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(engine: Engine) -> str | None:
    """The revision in Alembic's version table, None for a database without the schema.

    Read with one query rather than through Alembic's MigrationContext, which logs two INFO lines per call:
    noise in front of the one-line error the CLI prints for a database without the schema."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.scalar(select(column("version_num")).select_from(table(VERSION_TABLE)))
