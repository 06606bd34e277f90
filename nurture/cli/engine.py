"""Engine commands: ``nurture tick``, ``nurture worker``, ``nurture campaigns simulate`` and
``nurture campaigns webhook-secret``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from flask.cli import with_appcontext

from nurture.campaigns.store import get_campaign
from nurture.cli.campaigns import campaigns_group
from nurture.cli.context import clock, session_scope, settings, user_errors
from nurture.clock import Clock, FixedClock
from nurture.delivery.backends import make_mailer
from nurture.engine.context import engine_context
from nurture.engine.notify import webhook_secret
from nurture.engine.simulate import simulate
from nurture.engine.tick import run_tick
from nurture.engine.worker import make_jobs, run_worker
from nurture.web.database import get_database
from nurture.web.extensions import email_templates_dir

TEMPLATES = click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Where email templates live (default: NURTURE_EMAIL_TEMPLATES, else nurture/email_templates/).",
)


def parse_moment(raw: str, timezone: str) -> datetime:
    """ISO 8601; without an offset, a wall-clock time in the instance's time zone (NURTURE_TIMEZONE)."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise click.BadParameter(
            f"{raw!r} is not an ISO 8601 date-time such as 2026-12-01T09:00 or 2026-12-01T09:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def _virtual_sleeper(fixed: FixedClock) -> Callable[[float], None]:
    """With --now, time is simulated: waiting for a send slot moves the clock instead of sleeping."""

    def sleep(seconds: float) -> None:
        fixed.advance(timedelta(seconds=seconds))

    return sleep


@click.command("tick")
@click.option("--now", "now", metavar="ISO-8601", help="Run as of this moment (e.g. 2026-12-01T09:00).")
@TEMPLATES
@with_appcontext
@user_errors
def tick_command(now: str | None, templates_dir: Path | None) -> None:
    """Run one full engine pass: enrol, goals and exits, advance due leads, recover, dispatch the outbox."""
    config = settings()
    run_clock: Clock = clock()
    sleeper: Callable[[float], None] = time.sleep
    if now is not None:
        fixed = FixedClock(parse_moment(now, config.default_timezone))
        run_clock, sleeper = fixed, _virtual_sleeper(fixed)
    ctx = engine_context(config, templates=templates_dir)
    mailer = make_mailer(config.delivery, run_clock, sleeper=sleeper)
    report = run_tick(get_database().session_factory, run_clock, ctx, mailer, sleeper=sleeper)
    click.echo(f"Tick as of {run_clock.now().isoformat(timespec='seconds')} ({report.seconds:.1f} s):")
    for line in report.lines():
        click.echo(f"  {line}")


@click.command("worker")
@TEMPLATES
@with_appcontext
@user_errors
def worker_command(templates_dir: Path | None) -> None:
    """Run the engine's jobs on their schedule until stopped (SIGTERM or Ctrl-C)."""
    config = settings()
    logging.getLogger("nurture").setLevel(config.log_level)
    click.echo(f"nurture worker: templates from {email_templates_dir(templates_dir)}; Ctrl-C stops.")
    run_worker(make_jobs(config, get_database().session_factory, clock=clock(), templates=templates_dir))


@campaigns_group.command("simulate")
@click.argument("slug")
@click.option("--lead", "lead_email", required=True, metavar="EMAIL", help="The lead to walk through the campaign.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650), help="How far ahead to look.")
@TEMPLATES
@with_appcontext
@user_errors
def simulate_command(slug: str, lead_email: str, days: int, templates_dir: Path | None) -> None:
    """Print the path a lead would take through a campaign, with dates in its time zone. Nothing is saved
    and nothing is sent: the engine runs in a transaction that is rolled back."""
    ctx = engine_context(settings(), templates=templates_dir)
    session = get_database().session_factory()
    try:
        result = simulate(session, clock(), ctx, slug, lead_email, days=days)
    finally:
        session.rollback()
        session.close()
    for line in result.lines():
        click.echo(line)


@campaigns_group.command("webhook-secret")
@click.argument("slug")
@with_appcontext
@user_errors
def webhook_secret_command(slug: str) -> None:
    """Print the secret that signs the campaign's webhooks (X-Nurture-Signature), for the receiver."""
    with session_scope() as session:
        campaign = get_campaign(session, slug)
    click.echo(webhook_secret(settings(), campaign.slug))


def register(cli: click.Group) -> None:
    cli.add_command(tick_command)
    cli.add_command(worker_command)
