"""The ``nurture`` command: a Flask CLI group over the app factory, one module per command group."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException, ScriptInfo
from sqlalchemy.exc import DBAPIError

from nurture.app import create_app
from nurture.cli import apikeys, campaigns, db, demo, engine, leads, reports, run, scoring, segments, templates, users
from nurture.cli.context import UserError, database_problem
from nurture.config import load_settings
from nurture.errors import ConfigError
from nurture.web.database import get_database


def _create_app_for_cli() -> Flask:
    """Flask prints a traceback for most errors while listing commands; NoAppException gets one line."""
    try:
        return create_app()
    except ConfigError as exc:
        raise NoAppException(f"configuration error: {exc}") from None


class NurtureGroup(FlaskGroup):
    """Database errors that the user fixes (unreachable database, schema missing or behind) end every command
    the same way, as one line and exit 2, here once instead of in each command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DBAPIError as error:
            app = ctx.ensure_object(ScriptInfo).load_app()
            with app.app_context():
                engine = get_database().engine
            problem = database_problem(error, engine, schema_applies=ctx.invoked_subcommand != db.db_group.name)
            if problem is None:
                raise
            raise UserError(problem) from None


@click.group(cls=NurtureGroup, create_app=_create_app_for_cli, add_version_option=True, load_dotenv=False)
def cli() -> None:
    """nurture: marketing automation and lead nurturing."""


for module in (apikeys, campaigns, db, demo, engine, leads, reports, run, scoring, segments, templates, users):
    module.register(cli)


def main() -> None:
    """Console entry point: configuration errors end the process with one line, not a traceback."""
    wants_help_only = len(sys.argv) <= 1 or sys.argv[1:] in (["--help"], ["-h"], ["--version"])
    if not wants_help_only:
        try:
            load_settings()
        except ConfigError as exc:
            click.echo(f"nurture: configuration error: {exc}", err=True)
            sys.exit(2)
    cli.main(prog_name="nurture")
