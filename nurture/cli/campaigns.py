from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from nurture.campaigns.store import (
    SaveOutcome,
    activate_campaign,
    archive_campaign,
    check_campaign_files,
    export_campaign,
    get_campaign,
    list_campaigns,
    load_campaign_files,
    pause_campaign,
)
from nurture.campaigns.validation import (
    CampaignInvalid,
    Issue,
    TemplateCheck,
    templates_in,
)
from nurture.cli.context import USER_ERROR_EXIT, clock, session_scope, user_errors
from nurture.web.extensions import email_templates_dir

PATHS = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
TEMPLATES = click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where email template files live (default: NURTURE_EMAIL_TEMPLATES, else the shipped "
    "nurture/email_templates/): NAME exists when NAME or NAME.html is a file there, or is saved in the database.",
)


def _templates(templates_dir: Path | None) -> TemplateCheck:
    return templates_in(email_templates_dir(templates_dir))


@click.group("campaigns")
def campaigns_group() -> None:
    """Drip campaigns: check, load and export YAML definitions (docs/campaigns.md); list, activate, pause."""


def _report(issues: Iterable[Issue]) -> None:
    for issue in issues:
        click.echo(str(issue), err=True)


def _fail(issues: Iterable[Issue], outcome: str) -> NoReturn:
    """Print every issue and end with the user-error exit code (a transaction around it rolls back)."""
    issues = list(issues)
    _report(issues)
    errors = sum(issue.is_error for issue in issues)
    click.echo(f"{errors} error{'s' if errors != 1 else ''}{outcome}", err=True)
    raise SystemExit(USER_ERROR_EXIT)


@campaigns_group.command("validate")
@PATHS
@TEMPLATES
@click.option("--offline", is_flag=True, help="Do not look segments up in the database (they are only warned about).")
@with_appcontext
@user_errors
def validate_command(paths: tuple[Path, ...], templates_dir: Path | None, offline: bool) -> None:
    """Check campaign files (or directories of them) and report every problem with its line and column."""
    template_exists = _templates(templates_dir)
    try:
        if offline:
            checked = check_campaign_files(None, paths, template_exists=template_exists)
        else:
            with session_scope() as session:
                checked = check_campaign_files(session, paths, template_exists=template_exists)
    except CampaignInvalid as exc:
        _fail(exc.issues, ".")
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot look segments up in the database ({type(exc).__name__}); run `nurture db upgrade`, "
            "or pass --offline"
        ) from None
    for result in checked:
        _report(result.warnings)
        assert result.definition is not None
        click.echo(f"{result.source}: ok ({result.definition.slug}, {len(result.definition.steps)} steps)")


@campaigns_group.command("load")
@PATHS
@TEMPLATES
@with_appcontext
@user_errors
def load_command(paths: tuple[Path, ...], templates_dir: Path | None) -> None:
    """Create or update campaigns from YAML files or directories: all of them, or none if any is invalid."""
    with session_scope() as session:
        try:
            report = load_campaign_files(session, clock(), paths, template_exists=_templates(templates_dir))
        except CampaignInvalid as exc:
            _fail(exc.issues, "; nothing was loaded.")
        _report(report.warnings)
        for saved in report.saved:
            campaign = saved.campaign
            steps = f"{campaign.step_count} steps"
            if saved.outcome is SaveOutcome.CREATED:
                line = f"created {campaign.slug}: version 1, {steps}, {campaign.status.value}"
            elif saved.outcome is SaveOutcome.UPDATED:
                line = f"updated {campaign.slug}: version {saved.previous_version} → {campaign.version}, {steps}"
                if saved.removed_steps:
                    line += f"; removed steps {', '.join(saved.removed_steps)}"
            else:
                line = f"unchanged {campaign.slug}: version {campaign.version}"
            click.echo(f"{line} ({saved.source})")


@campaigns_group.command("export")
@click.argument("slug")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@with_appcontext
@user_errors
def export_command(slug: str, out: Path | None) -> None:
    """Write a campaign as YAML that `nurture campaigns load` reads back to the same campaign."""
    with session_scope() as session:
        text = export_campaign(get_campaign(session, slug))
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"Wrote {slug} to {out}.")


@campaigns_group.command("list")
@with_appcontext
@user_errors
def list_command() -> None:
    """Every campaign: slug, name, status, version and number of steps."""
    with session_scope() as session:
        rows = [(c.slug, c.name, c.status.value, str(c.version), str(c.step_count)) for c in list_campaigns(session)]
    if not rows:
        click.echo("No campaigns yet: load some with `nurture campaigns load campaigns/`.")
        return
    header = ("SLUG", "NAME", "STATUS", "VERSION", "STEPS")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@campaigns_group.command("activate")
@click.argument("slug")
@click.option(
    "--only-new",
    is_flag=True,
    help="Keep out the leads its segment or rules entry matches now: only leads who match later enter.",
)
@TEMPLATES
@with_appcontext
@user_errors
def activate_command(slug: str, only_new: bool, templates_dir: Path | None) -> None:
    """Start a draft campaign, or resume a paused one (its definition is checked again first)."""
    with session_scope() as session:
        try:
            changed = activate_campaign(
                session, clock(), slug, template_exists=_templates(templates_dir), enrol_existing=not only_new
            )
        except CampaignInvalid as exc:
            _fail(exc.issues, f"; {slug} was not activated.")
        version = get_campaign(session, slug).version
    click.echo(f"Activated {slug} (version {version})." if changed else f"{slug} is already active.")


@campaigns_group.command("pause")
@click.argument("slug")
@with_appcontext
@user_errors
def pause_command(slug: str) -> None:
    """Pause an active campaign: its leads move on no further until it is activated again."""
    with session_scope() as session:
        changed = pause_campaign(session, clock(), slug)
    click.echo(f"Paused {slug}." if changed else f"{slug} is already paused.")


@campaigns_group.command("archive")
@click.argument("slug")
@with_appcontext
@user_errors
def archive_command(slug: str) -> None:
    """Retire a campaign for good; it stays in reports."""
    with session_scope() as session:
        changed = archive_campaign(session, clock(), slug)
    click.echo(f"Archived {slug}." if changed else f"{slug} is already archived.")


def register(cli: click.Group) -> None:
    cli.add_command(campaigns_group)
