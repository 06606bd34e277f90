"""``nurture apikeys``: keys of the events API."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from nurture.cli.context import clock, session_scope, user_errors
from nurture.tracking.apikeys import create_key, list_keys, revoke_key


@click.group("apikeys")
def apikeys_group() -> None:
    """Keys for POST /api/v1/events."""


@apikeys_group.command("create")
@click.argument("name")
@with_appcontext
@user_errors
def create_command(name: str) -> None:
    """Create a key called NAME and print it: it is shown this once and stored only as a hash."""
    with session_scope() as session:
        created = create_key(session, clock(), name)
    click.echo(f"Created API key {created.name!r}. Keep it now; it cannot be shown again:")
    click.echo(created.key)


@apikeys_group.command("list")
@with_appcontext
@user_errors
def list_command() -> None:
    """Every key: name, first characters, created, last used, revoked."""
    with session_scope() as session:
        keys = list_keys(session)
    if not keys:
        click.echo("No API keys.")
    for key in keys:
        used = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never used"
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
        click.echo(f"{key.name}  {key.prefix}…  created {key.created_at:%Y-%m-%d}  {used}  {state}")


@apikeys_group.command("revoke")
@click.argument("name")
@with_appcontext
@user_errors
def revoke_command(name: str) -> None:
    """Stop key NAME from working (at once)."""
    with session_scope() as session:
        revoke_key(session, clock(), name)
    click.echo(f"Revoked API key {name!r}.")


def register(cli: click.Group) -> None:
    cli.add_command(apikeys_group)
