"""``nurture leads ...``: import lead lists, list leads (optionally of a segment) and show one lead."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from nurture import csvfile
from nurture.cli.context import USER_ERROR_EXIT, clock, session_scope, user_errors
from nurture.cli.output import format_lead_table, lead_rows
from nurture.errors import NurtureError
from nurture.leads.columns import MappingError, parse_map_option
from nurture.leads.importer import CsvRejectSink, DuplicatePolicy, ImportOptions, ImportProgress, import_leads
from nurture.leads.lifecycle import Stage, parse_stage
from nurture.leads.models import Lead
from nurture.leads.service import get_lead, stage_history, timeline

LIST_FORMATS = ("table", "csv", "json")
TABLE_DEFAULT_LIMIT = 100
# The profile as `leads list --format csv` writes it: field names that `leads import` maps back as they are.
CSV_COLUMNS = (
    "email", "first_name", "last_name", "company", "job_title", "phone", "country", "timezone", "locale", "source",
    "owner", "stage", "status", "score", "temperature", "tags", "consent_basis", "consent_source", "consent_at",
    "consent_ip", "created_at", "updated_at",
)


class FileUnusable(click.ClickException):
    """One line on stderr and exit 2: the input as a whole cannot be used."""

    exit_code = USER_ERROR_EXIT


@click.group("leads")
def leads_group() -> None:
    """Import, list and inspect leads."""


def _parse_maps(raw_maps: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for raw in raw_maps:
        column, target = parse_map_option(raw)
        if column in mapping:
            raise MappingError(f"--map {column!r}: given twice")
        mapping[column] = target
    return mapping


def _parse_stage_option(raw: str | None) -> Stage | None:
    if raw is None:
        return None
    try:
        return parse_stage(raw)
    except ValueError as exc:
        raise FileUnusable(f"--stage: {exc}") from None


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class _ProgressBar:
    """A byte-based progress bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self._bar: Any = None
        self._label = label
        self._shown = 0
        self._enabled = stderr_is_terminal()

    def __call__(self, progress: ImportProgress) -> None:
        if not self._enabled or not progress.total_bytes:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=progress.total_bytes, label=self._label, file=sys.stderr)
            self._bar.__enter__()
        done = min(progress.bytes_read, progress.total_bytes)
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@leads_group.command("import")
@click.argument("file", type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Add TAG to every imported lead (repeatable).")
@click.option("--source", default=None, help="Source of leads whose row has none.")
@click.option("--stage", "stage_name", default=None, help="Stage of new leads whose row has none (default subscriber).")
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar='"CSV Column=field"',
    help="Map a column to a lead field, to attributes.NAME, or to ignore (repeatable).",
)
@click.option(
    "--on-duplicate",
    type=click.Choice([policy.value for policy in DuplicatePolicy]),
    default=DuplicatePolicy.UPDATE.value,
    show_default=True,
    help="For an address that already exists: update the lead, or skip the row.",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write refused rows here (CSV: line, reason, original columns).",
)
@click.option("--dry-run", is_flag=True, help="Validate and count, then roll back: nothing is saved.")
@click.option("--json", "as_json", is_flag=True, help="Print only the counts, as one JSON object.")
@with_appcontext
def import_command(
    file: Path,
    tags: tuple[str, ...],
    source: str | None,
    stage_name: str | None,
    maps: tuple[str, ...],
    on_duplicate: str,
    rejects_path: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import leads from FILE, a CSV export (- reads standard input).

    Accepts UTF-8 (with or without BOM), UTF-16 and legacy encodings (Windows-1252 unless the file is
    clearly in another one; a file mixing UTF-8 and legacy rows has each row read as written); comma,
    semicolon or tab delimiters; headers in any case, including Mailchimp's and HubSpot's. Columns that
    match no lead field are kept as custom attributes; two columns with the same name refuse the file.
    Bad rows never stop the import: they are counted and written to --rejects (neutralised against
    spreadsheet formulas, see `leads list`). Warnings (rows read in a legacy encoding, columns kept as
    attributes) follow the summary on stderr.

    Counts: rows = created + updated + skipped + rejected; skipped rows left the database untouched
    (a duplicate under --on-duplicate skip, an erased lead, or nothing new). When the file lists an
    address twice, its first row wins and later ones only fill in, so importing the same file again
    reports 0 created and 0 updated. Import never changes a lead's status, never un-suppresses a lead,
    and moves stages only forward (or to/from lost)."""
    options_stage = _parse_stage_option(stage_name)
    stream: BinaryIO | None = None
    target: Path | BinaryIO = file
    if str(file) == "-":
        stream = sys.stdin.buffer
        target = stream
    progress = _ProgressBar(f"Importing {file.name if stream is None else 'stdin'}")
    rejects: CsvRejectSink | FirstRejects = CsvRejectSink(rejects_path) if rejects_path is not None else FirstRejects()
    try:
        options = ImportOptions(
            tags=tags,
            source=source,
            stage=options_stage,
            column_map=_parse_maps(maps),
            on_duplicate=DuplicatePolicy(on_duplicate),
            file_name="stdin" if stream is not None else click.format_filename(file.name),
        )
        with session_scope() as session:
            report = import_leads(session, clock(), target, options, rejects=rejects, progress=progress)
            if dry_run:
                session.rollback()
    except NurtureError as exc:
        raise FileUnusable(str(exc)) from None
    finally:
        progress.close()
        if isinstance(rejects, CsvRejectSink):
            rejects.close()

    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    where = (
        f"; rejected rows are in {click.format_filename(rejects_path)}"
        if rejects_path is not None and report.rejected
        else ""
    )
    dry = " (dry run: nothing was saved)" if dry_run else ""
    click.echo(f"Imported {options.file_name}: {report.summary()}{where}{dry}.")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}.", err=True)
    if isinstance(rejects, FirstRejects):
        for line, reason in rejects.first:
            click.echo(f"  line {line}: {reason}", err=True)
        if report.rejected > len(rejects.first):
            more = report.rejected - len(rejects.first)
            click.echo(f"  ... and {more} more; --rejects FILE writes them all", err=True)


class FirstRejects:
    """Without --rejects, the first rejected rows' line and reason, printed after the counts."""

    LIMIT = 20

    def __init__(self) -> None:
        self.first: list[tuple[int, str]] = []

    def start(self, header: Sequence[str]) -> None:
        pass

    def reject(self, line: int, values: Sequence[str], reason: str) -> None:
        if len(self.first) < self.LIMIT:
            self.first.append((line, reason))


# --- list and show ---------------------------------------------------------------------------------------


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def lead_as_dict(lead: Lead) -> dict[str, Any]:
    return {
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company": lead.company,
        "job_title": lead.job_title,
        "phone": lead.phone,
        "country": lead.country,
        "timezone": lead.timezone,
        "locale": lead.locale,
        "source": lead.source,
        "owner": lead.owner,
        "stage": lead.stage.value,
        "status": lead.status.value,
        "score": lead.score,
        "temperature": lead.temperature.value,
        "tags": lead.tag_names,
        "attributes": lead.attributes or {},
        "consent_basis": lead.consent_basis,
        "consent_source": lead.consent_source,
        "consent_at": _iso(lead.consent_at),
        "consent_ip": lead.consent_ip,
        "created_at": _iso(lead.created_at),
        "updated_at": _iso(lead.updated_at),
        "last_engaged_at": _iso(lead.last_engaged_at),
    }


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


@leads_group.command("list")
@click.option("--segment", "segment_slug", default=None, metavar="SLUG", help="Only the leads of segment SLUG.")
@click.option("--format", "output_format", type=click.Choice(LIST_FORMATS), default="table", show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help=f"At most N leads (default: {TABLE_DEFAULT_LIMIT} for a table, all for csv and json).",
)
@with_appcontext
@user_errors
def list_command(segment_slug: str | None, output_format: str, limit: int | None) -> None:
    """List leads, oldest first. The csv format can be imported back with `nurture leads import`.

    In csv, a cell that a spreadsheet would run as a formula (one starting with =, +, -, @, |, %, a tab or
    a carriage return, such as a phone number +33 1 23 45 67 89) is written with a single quote in front,
    so that it shows as text; `leads import` reads it back as it was. Use json for the raw values."""
    if limit is None and output_format == "table":
        limit = TABLE_DEFAULT_LIMIT
    with session_scope() as session:
        if segment_slug is not None:
            from nurture.segments.service import get_segment, segment_query

            query = segment_query(session, clock(), get_segment(session, segment_slug))
        else:
            query = select(Lead)
        query = query.order_by(None).order_by(Lead.id)
        if limit is not None:
            query = query.limit(limit)
        with session.scalars(query.execution_options(yield_per=1000)) as leads:
            _write_leads(leads, output_format, limit, segment_slug)


def _write_leads(leads: Iterable[Lead], output_format: str, limit: int | None, segment_slug: str | None) -> None:
    out = sys.stdout
    if output_format == "json":
        _write_json(out, (lead_as_dict(lead) for lead in leads))
    elif output_format == "csv":
        writer = csvfile.writer(out)
        writer.writerow(CSV_COLUMNS)
        for lead in leads:
            data = lead_as_dict(lead)
            writer.writerow([_csv_cell(data[column]) for column in CSV_COLUMNS])
    else:
        rows = lead_rows(leads)
        if not rows:
            click.echo("No leads." if segment_slug is None else f"No leads in segment {segment_slug}.")
            return
        click.echo(format_lead_table(rows))
        if limit is not None and len(rows) == limit:
            click.echo(f"(first {limit}; use --limit for more)")


def _write_json(out: Any, items: Iterator[dict[str, Any]]) -> None:
    """A JSON array written item by item, so that a long list never sits whole in memory."""
    out.write("[")
    written = 0
    for item in items:
        out.write(",\n" if written else "\n")
        out.write(json.dumps(item, ensure_ascii=False))
        written += 1
    out.write("\n]\n" if written else "]\n")


@leads_group.command("show")
@click.argument("email")
@click.option("--events", default=20, show_default=True, type=click.IntRange(min=1), help="Timeline entries.")
@with_appcontext
@user_errors
def show_command(email: str, events: int) -> None:
    """Show one lead: profile, tags, attributes, stage history and recent timeline."""
    with session_scope() as session:
        lead = get_lead(session, email)
        click.echo(f"{lead.email}{f' ({lead.full_name})' if lead.full_name else ''}")
        profile = [
            ("stage", f"{lead.stage.value} since {_when(lead.stage_entered_at)}"),
            ("status", lead.status.value),
            ("score", f"{lead.score} ({lead.temperature.value})"),
            *(
                (name, _when(value) if isinstance(value := getattr(lead, name), datetime) else value)
                for name in (
                    "company", "job_title", "phone", "country", "timezone", "locale", "source", "owner",
                    "consent_basis", "consent_source", "consent_at", "consent_ip", "created_at", "updated_at",
                    "last_engaged_at",
                )
                if getattr(lead, name) is not None
            ),
        ]
        width = max(len(name) for name, _ in profile)
        for name, value in profile:
            click.echo(f"  {name.ljust(width)}  {value}")
        click.echo(f"Tags: {', '.join(lead.tag_names) if lead.tags else '(none)'}")
        attributes = lead.attributes or {}
        click.echo("Attributes:" if attributes else "Attributes: (none)")
        for key in sorted(attributes):
            value = json.dumps(attributes[key], ensure_ascii=False) if not isinstance(attributes[key], str) else (
                attributes[key].replace("\n", "\\n")
            )
            click.echo(f"  {key}: {value}")
        click.echo("Stage history:")
        for change in stage_history(session, lead):
            origin = change.from_stage.value if change.from_stage else "(new)"
            actor = f"{change.actor_kind.value}:{change.actor}" if change.actor else change.actor_kind.value
            reason = f" ({change.reason})" if change.reason else ""
            click.echo(
                f"  {_when(change.changed_at)}  {origin} -> {change.to_stage.value}  by {actor}{reason}"
            )
        recent = timeline(session, lead, limit=events)
        click.echo("Timeline (most recent first):" if recent else "Timeline: (empty)")
        for activity in recent:
            details = json.dumps(activity.data, ensure_ascii=False, sort_keys=True) if activity.data else ""
            campaign = f" [{activity.campaign}]" if activity.campaign else ""
            click.echo(f"  {_when(activity.occurred_at)}  {activity.kind}{campaign}  {details}".rstrip())


def register(cli: click.Group) -> None:
    cli.add_command(leads_group)
