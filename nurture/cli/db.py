from __future__ import annotations

import click
from flask.cli import with_appcontext

from nurture import migrate
from nurture.cli.context import clock, session_scope
from nurture.segments.builtin import ensure_builtin_segments
from nurture.web.database import get_database


@click.group("db")
def db_group() -> None:
    """Create and upgrade the database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@with_appcontext
def upgrade_command(revision: str) -> None:
    """Create the schema or bring it up to date, then add any missing built-in segments."""
    engine = get_database().engine
    migrate.upgrade(engine, revision)
    if revision == "head":
        with session_scope() as session:
            ensure_builtin_segments(session, clock())
    click.echo(f"Database at revision {migrate.current_revision(engine)} ({engine.url.render_as_string()}).")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def downgrade_command(revision: str) -> None:
    """Step the schema back to REVISION (``base`` drops everything)."""
    migrate.downgrade(get_database().engine, revision)
    click.echo(f"Database at revision {migrate.current_revision(get_database().engine) or 'base'}.")


@db_group.command("current")
@with_appcontext
def current_command() -> None:
    """Print the schema revision."""
    click.echo(migrate.current_revision(get_database().engine) or "base (empty database)")


def register(cli: click.Group) -> None:
    cli.add_command(db_group)
