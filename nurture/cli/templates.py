"""`nurture templates ...`: list, check, preview, test-send, save and inspect email templates.

Templates come from the database first (saved versions), then from the template directory
(``NURTURE_EMAIL_TEMPLATES``, or ``--templates DIR``); see docs/templates.md."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import click
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from nurture.cli.context import USER_ERROR_EXIT, clock, session_scope, settings, user_errors
from nurture.config import Settings
from nurture.delivery.backends import make_mailer
from nurture.delivery.mailer import Outcome
from nurture.engine.context import sender_view, tracking_urls
from nurture.leads.service import get_lead
from nurture.rendering import (
    EmailRenderer,
    FileTemplateSource,
    StoredTemplateSource,
    TemplateProblem,
    TemplateProblems,
    check_templates,
    preview_email,
    save_template,
    stored_templates,
    template_history,
    template_loader,
)
from nurture.rendering.context import SAMPLE_SENDER, SenderView
from nurture.rendering.proofs import send_proof
from nurture.web.extensions import email_templates_dir

TEMPLATES = click.option(
    "--templates",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Template directory (default: NURTURE_EMAIL_TEMPLATES, else nurture/email_templates/).",
)


@click.group("templates")
def templates_group() -> None:
    """Email templates: stored versions override the files of the same name (docs/templates.md)."""


def _renderer(session: Session, directory: Path | None) -> EmailRenderer:
    loader = template_loader(email_templates_dir(directory), StoredTemplateSource.bound_to(session))
    return EmailRenderer(loader, default_timezone=settings().default_timezone)


def _sender(config: Settings) -> SenderView:
    """The configured sender; a made-up one while no postal address is configured (which a send refuses)."""
    return sender_view(config) if config.delivery.postal_address else SAMPLE_SENDER


def located(problem: TemplateProblem) -> str:
    """``template:line: message``, the form editors and CI logs link to."""
    if problem.template is None:
        return problem.message
    if problem.line is None:
        return f"{problem.template}: {problem.message}"
    return f"{problem.template}:{problem.line}: {problem.message}"


def _fail(problems: Iterable[TemplateProblem], outcome: str) -> NoReturn:
    problems = list(problems)
    for problem in problems:
        click.echo(located(problem), err=True)
    click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}{outcome}", err=True)
    raise SystemExit(USER_ERROR_EXIT)


@templates_group.command("list")
@TEMPLATES
@with_appcontext
@user_errors
def list_command(directory: Path | None) -> None:
    """Every template: name, where it comes from (db or file) and its version."""
    files = FileTemplateSource(email_templates_dir(directory))
    with session_scope() as session:
        stored = {template.name: template for template in stored_templates(session)}
        names = sorted({*stored, *files.list_names()})
        rows = []
        for name in names:
            if name in stored:
                overrides = " (overrides the file)" if files.get(name) is not None else ""
                rows.append((name, "db", f"v{stored[name].current_version}{overrides}"))
            else:
                found = files.get(name)
                rows.append((name, "file", found[1] if found else "unreadable"))
    if not rows:
        click.echo("No templates.")
        return
    width = max(len(name) for name, _, _ in rows)
    click.echo(f"{'NAME':<{width}}  SOURCE  VERSION")
    for name, source, version in rows:
        click.echo(f"{name:<{width}}  {source:<6}  {version}")


@templates_group.command("check")
@click.argument("names", nargs=-1)
@TEMPLATES
@with_appcontext
@user_errors
def check_command(names: tuple[str, ...], directory: Path | None) -> None:
    """Check every template (or NAMES): syntax, sandbox, layouts and partials, unknown variables, the
    unsubscribe link of marketing emails, a trial render. Prints `template:line: message` for each problem
    and exits with status 2 when there is any."""
    with session_scope() as session:
        renderer = _renderer(session, directory)
        checked = list(names) or renderer.loader.list_templates()
        problems = check_templates(renderer, now=clock().now(), names=checked)
    if problems:
        _fail(problems, f" in {len({problem.template for problem in problems})} of {len(checked)} templates")
    click.echo(f"{len(checked)} template{'s' if len(checked) != 1 else ''} checked: no problems.")


@templates_group.command("preview")
@click.argument("name")
@click.option("--lead", "lead_email", default=None, metavar="EMAIL", help="Render for this stored lead.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to FILE.")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@TEMPLATES
@with_appcontext
@user_errors
def preview_command(name: str, lead_email: str | None, out: Path | None, as_text: bool, directory: Path | None) -> None:
    """Render template NAME without sending or tracking anything, for a stored lead (--lead) or a made-up
    one; the HTML (or the text part) goes to standard output or FILE."""
    with session_scope() as session:
        lead = get_lead(session, lead_email) if lead_email else None
        email = preview_email(
            name, now=clock().now(), lead=lead, sender=_sender(settings()), renderer=_renderer(session, directory)
        )
    content = email.text + "\n" if as_text else email.html
    if out is None:
        click.echo(content, nl=False)
        return
    try:
        out.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"Wrote {out} (subject: {email.subject})")


@templates_group.command("send-test")
@click.argument("name")
@click.option("--to", "to_address", required=True, metavar="ADDRESS", help="Who receives the test email.")
@click.option("--lead", "lead_email", default=None, metavar="EMAIL", help="Fill the email with this lead's data.")
@TEMPLATES
@with_appcontext
@user_errors
def send_test_command(name: str, to_address: str, lead_email: str | None, directory: Path | None) -> None:
    """Send one real email from template NAME to ADDRESS through the configured backend, marked [TEST] and
    not tracked, after the same compliance checks and suppression gate as any email."""
    config = settings()
    with session_scope() as session:
        lead = get_lead(session, lead_email) if lead_email else None
        proof = send_proof(
            session,
            clock(),
            renderer=_renderer(session, directory),
            template=name,
            to_address=to_address,
            lead=lead,
            sender=_sender(config),
            urls=tracking_urls(config),
            delivery=config.delivery,
            mailer=make_mailer(config.delivery, clock()),
        )
    result = proof.result
    if result.outcome is not Outcome.SENT:
        raise click.ClickException(f"not sent ({result.outcome.value}): {result.reason}")
    via = f" ({result.provider_message_id})" if result.provider_message_id else ""
    click.echo(f"Sent {proof.email.subject!r} to {proof.email.to_address} via {config.delivery.backend.value}{via}.")


@templates_group.command("save")
@click.argument("name")
@click.option(
    "--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The text."
)
@click.option("--by", "created_by", default="cli", show_default=True, help="Recorded as the author of the version.")
@TEMPLATES
@with_appcontext
@user_errors
def save_command(name: str, path: Path, created_by: str, directory: Path | None) -> None:
    """Store FILE as a new version of template NAME, once it passes the checks; it overrides the file NAME."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with session_scope() as session:
            saved = save_template(
                session,
                clock(),
                name,
                text,
                created_by=created_by,
                files=FileTemplateSource(email_templates_dir(directory)),
                default_timezone=settings().default_timezone,
            )
            version = saved.version.version
    except TemplateProblems as refused:
        _fail(refused.problems, f": {name} not saved")
    if saved.created:
        click.echo(f"Saved {name}: version {version}.")
    else:
        click.echo(f"Unchanged {name}: version {version} has this text already.")


@templates_group.command("history")
@click.argument("name")
@with_appcontext
@user_errors
def history_command(name: str) -> None:
    """The stored versions of template NAME, newest first."""
    with session_scope() as session:
        versions = template_history(session, name)
        rows = [
            (version.version, version.created_at, version.created_by, version.content_hash[:12]) for version in versions
        ]
    for number, created_at, created_by, digest in rows:
        current = "  (current)" if number == rows[0][0] else ""
        click.echo(f"v{number}  {created_at:%Y-%m-%d %H:%M} UTC  {created_by}  {digest}{current}")


def register(cli: click.Group) -> None:
    cli.add_command(templates_group)
