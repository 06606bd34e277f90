from __future__ import annotations

import os

import click
from flask.cli import with_appcontext

from nurture.cli.context import clock, session_scope, settings, user_errors
from nurture.demo import STARTER_CAMPAIGNS, database_is_empty, load_demo_data


@click.group("demo")
def demo_group() -> None:
    """Demo data for trying nurture out."""


@demo_group.command("load")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has leads.")
@click.option("--count", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--campaigns/--no-campaigns",
    "with_campaigns",
    default=True,
    show_default=True,
    help="Load and activate the starter campaigns of campaigns/.",
)
@with_appcontext
@user_errors
def load_command(if_empty: bool, count: int, with_campaigns: bool) -> None:
    """Load realistic fake leads, a demo admin user, the built-in segments and the starter campaigns."""
    password = os.environ.get("NURTURE_DEMO_PASSWORD", "nurture-demo")
    config = settings()
    with session_scope() as session:
        if if_empty and not database_is_empty(session):
            click.echo("Demo data: the database already has leads; nothing loaded.")
            return
        summary = load_demo_data(
            session,
            clock(),
            config.temperature,
            count=count,
            user_password=password,
            campaigns=STARTER_CAMPAIGNS if with_campaigns else None,
            templates=config.email_templates,
        )
    click.echo(f"Demo data: {summary.leads} leads loaded.")
    if summary.campaigns:
        click.echo(
            f"Starter campaigns active: {', '.join(summary.campaigns)} ({summary.cold_imported} cold leads just "
            f"imported, {summary.deals_lost} deals just lost). Run `nurture tick --now 2026-12-01T10:00` (then "
            "later dates) to watch them fill the outbox."
        )
    if summary.user_created:
        click.echo(f"Sign in as {summary.user_email} with password {password!r} (set NURTURE_DEMO_PASSWORD to change).")


def register(cli: click.Group) -> None:
    cli.add_command(demo_group)
