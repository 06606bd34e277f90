from __future__ import annotations

import click
from flask.cli import with_appcontext

from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.cli.context import clock, session_scope, user_errors


@click.group("users")
def users_group() -> None:
    """Manage people who sign in to nurture."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.MARKETER.value, show_default=True)
@click.option("--name", default="")
@click.password_option(help="Prompted for when not given.")
@with_appcontext
@user_errors
def create_command(email: str, role: str, name: str, password: str) -> None:
    """Create a user who can sign in with EMAIL."""
    with session_scope() as session:
        user = create_user(session, clock(), email, password, Role(role), name)
        click.echo(f"Created {user.role.value} {user.email}.")


def register(cli: click.Group) -> None:
    cli.add_command(users_group)
