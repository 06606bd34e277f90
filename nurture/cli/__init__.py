"""The ``nurture`` command: a Flask CLI group over the app factory, one module per command group."""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

from nurture.app import create_app
from nurture.cli import campaigns, db, demo, leads, segments, users
from nurture.config import load_settings
from nurture.errors import ConfigError


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=True, load_dotenv=False)
def cli() -> None:
    """nurture: marketing automation and lead nurturing."""


for module in (campaigns, db, demo, leads, segments, users):
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
