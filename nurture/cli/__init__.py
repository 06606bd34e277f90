"""The ``nurture`` command: a Flask CLI group over the app factory, one module per command group."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException

from nurture.app import create_app
from nurture.cli import apikeys, campaigns, db, demo, engine, leads, reports, scoring, segments, templates, users
from nurture.config import load_settings
from nurture.errors import ConfigError


def _create_app_for_cli() -> Flask:
    """Flask prints a traceback for most errors while listing commands; NoAppException gets one line."""
    try:
        return create_app()
    except ConfigError as exc:
        raise NoAppException(f"configuration error: {exc}") from None


@click.group(cls=FlaskGroup, create_app=_create_app_for_cli, add_version_option=True, load_dotenv=False)
def cli() -> None:
    """nurture: marketing automation and lead nurturing."""


for module in (apikeys, campaigns, db, demo, engine, leads, reports, scoring, segments, templates, users):
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
