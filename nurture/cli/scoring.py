"""``nurture scoring``: load the scoring file, list the rules in force, explain a lead's score, refresh."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from nurture.cli.context import clock, session_scope, settings, user_errors
from nurture.engine.context import engine_context
from nurture.leads.service import get_lead
from nurture.scoring.config import DEFAULT_FILE, EngagementRule, read_config_file
from nurture.scoring.points import breakdown
from nurture.scoring.store import current_config, store_config
from nurture.tracking.jobs import score_refresh_job
from nurture.web.database import get_database


@click.group("scoring")
def scoring_group() -> None:
    """Lead scoring rules, score breakdowns and refreshes."""


@scoring_group.command("load")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_FILE)
@with_appcontext
@user_errors
def load_command(path: Path) -> None:
    """Check PATH (default: nurture/scoring/default_rules.yaml) and make its settings and rules the ones in force."""
    _config, data = read_config_file(path)
    with session_scope() as session:
        report = store_config(session, clock(), data, str(path))
    click.echo(f"Loaded {path}: {report.summary()}.")


@scoring_group.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def check_command(path: Path) -> None:
    """Check a scoring file without loading it."""
    config, _data = read_config_file(path)
    click.echo(f"{path}: {len(config.rules)} rules, no problems.")


@scoring_group.command("rules")
@with_appcontext
@user_errors
def rules_command() -> None:
    """The settings and rules in force."""
    with session_scope() as session:
        config = current_config(session)
    s = config.settings
    click.echo(
        f"half-life {s.half_life_days:g} days; mql at {s.mql_at}, sql at {s.sql_at}; machine engagement "
        f"{'counts' if s.count_machine_engagement else 'ignored'}; {s.soft_bounce_limit} soft bounces make a hard one"
    )
    for rule in config.rules:
        if isinstance(rule, EngagementRule):
            where = " ".join(f"{key}={value}" for key, value in rule.where)
            cap = f" (at most {rule.cap.points} a {rule.cap.per})" if rule.cap else ""
            click.echo(f"  {rule.points:+5d}  {rule.name}: each {rule.event}{' where ' + where if where else ''}{cap}")
        else:
            click.echo(f"  {rule.points:+5d}  {rule.name}: fit")


@scoring_group.command("explain")
@click.argument("email")
@click.option("--limit", default=50, show_default=True, help="Engagement entries shown, newest first.")
@with_appcontext
@user_errors
def explain_command(email: str, limit: int) -> None:
    """Which rule gave EMAIL's lead how many points, for which event, and what each is worth now."""
    now = clock().now()
    with session_scope() as session:
        lead = get_lead(session, email)
        config = current_config(session)
        result = breakdown(session, config, lead.id, now, limit=limit)
        stored = lead.score
    click.echo(
        f"{lead.email}: score {result.score} (fit {result.fit} + engagement {result.engagement:.1f}); "
        f"stored {stored}; half-life {config.settings.half_life_days:g} days"
    )
    click.echo("fit:")
    for line in result.fit_lines or []:
        click.echo(f"  {line.points:+6d}  {line.rule}")
    if not result.fit_lines:
        click.echo("  (no fit rule matches)")
    click.echo("engagement:")
    for line in result.engagement_lines:
        when = line.occurred_at.strftime("%Y-%m-%d %H:%M") if line.occurred_at else ""
        event = f"{line.event_type} event {line.event_id}" if line.event_id else (line.event_type or "adjustment")
        note = f"  [{line.note}]" if line.note else ""
        click.echo(f"  {line.points:+6d} -> {line.worth_now:7.2f} now  {when}  {line.rule}  ({event}){note}")
    if not result.engagement_lines:
        click.echo("  (no engagement points)")


@scoring_group.command("refresh")
@with_appcontext
@user_errors
def refresh_command() -> None:
    """Recompute every lead's stored score and temperature now (the worker does this every 15 minutes)."""
    totals = score_refresh_job(get_database().session_factory, clock(), engine_context(settings()))
    click.echo(f"Refreshed: {totals.summary()}.")


def register(cli: click.Group) -> None:
    cli.add_command(scoring_group)
