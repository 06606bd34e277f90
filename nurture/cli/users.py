from __future__ import annotations

import click
from flask.cli import with_appcontext

from nurture.auth import throttle
from nurture.auth.models import Role
from nurture.auth.service import create_user, get_user, set_active, set_password, set_role
from nurture.cli.context import clock, session_scope, user_errors

ROLE_CHOICE = click.Choice([r.value for r in Role])


@click.group("users")
def users_group() -> None:
    """Manage people who sign in to nurture."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, default=Role.MARKETER.value, show_default=True)
@click.option("--name", default="")
@click.password_option(help="Prompted for when not given.")
@with_appcontext
@user_errors
def create_command(email: str, role: str, name: str, password: str) -> None:
    """Create a user who can sign in with EMAIL."""
    with session_scope() as session:
        user = create_user(session, clock(), email, password, Role(role), name)
        click.echo(f"Created {user.role.value} {user.email}.")


@users_group.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLE_CHOICE)
@with_appcontext
@user_errors
def set_role_command(email: str, role: str) -> None:
    """Give the user EMAIL the role ROLE; their open sessions end."""
    with session_scope() as session:
        user = get_user(session, email)
        set_role(session, user, Role(role))
        click.echo(f"{user.email} is now {user.role.value}; their sessions have ended.")


@users_group.command("set-password")
@click.argument("email")
@click.password_option(help="Prompted for, hidden, when not given.")
@with_appcontext
@user_errors
def set_password_command(email: str, password: str) -> None:
    """Give the user EMAIL a new password; their open sessions end."""
    with session_scope() as session:
        user = get_user(session, email)
        set_password(session, user, password)
        click.echo(f"New password set for {user.email}; their sessions have ended.")


@users_group.command("disable")
@click.argument("email")
@with_appcontext
@user_errors
def disable_command(email: str) -> None:
    """Stop the user EMAIL from signing in; their open sessions end."""
    with session_scope() as session:
        user = get_user(session, email)
        set_active(session, user, False)
        click.echo(f"Disabled {user.email}; their sessions have ended.")


@users_group.command("enable")
@click.argument("email")
@with_appcontext
@user_errors
def enable_command(email: str) -> None:
    """Let the disabled user EMAIL sign in again."""
    with session_scope() as session:
        user = get_user(session, email)
        set_active(session, user, True)
        click.echo(f"Enabled {user.email}.")


@users_group.command("unlock")
@click.argument("email")
@with_appcontext
@user_errors
def unlock_command(email: str) -> None:
    """Forget the failed sign-ins of EMAIL, so the login throttle lets it try again at once."""
    with session_scope() as session:
        cleared = throttle.clear_account(session, email)
        click.echo(f"Cleared {cleared} failed sign-in{'' if cleared == 1 else 's'} of {email.strip()}.")


def register(cli: click.Group) -> None:
    cli.add_command(users_group)
