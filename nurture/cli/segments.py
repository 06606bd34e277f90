"""``nurture segments ...``: create, inspect and count segments from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from nurture.cli.context import clock, session_scope, user_errors
from nurture.cli.output import format_lead_table, format_table, lead_rows
from nurture.errors import ValidationError
from nurture.segments.rules import describe_rules
from nurture.segments.service import (
    count_segment,
    create_segment,
    get_segment,
    list_segments_with_counts,
    segment_query,
    segment_rules,
    update_segment,
)


def leads_matching(count: int) -> str:
    return f"{count} lead matches" if count == 1 else f"{count} leads match"


RULES_HELP = "The rules as inline JSON, a path to a JSON file, or - for standard input (see docs/segments.md)."


@click.group("segments")
def segments_group() -> None:
    """Named groups of leads chosen by rules; membership is computed live."""


def read_rules(raw: str) -> str:
    """The rule text behind ``--rules``: inline JSON, a file, or stdin."""
    if raw.lstrip().startswith(("{", "[")):
        return raw
    if raw == "-":
        return sys.stdin.read()
    try:
        return Path(raw).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"no such file {raw!r}; give a JSON file or inline JSON", where="--rules") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {raw!r}: {exc}", where="--rules") from None


@segments_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="A name for people, such as 'Hot leads in France'.")
@click.option("--rules", "rules_source", required=True, metavar="FILE|JSON", help=RULES_HELP)
@click.option("--description", default="", help="What the segment is for.")
@with_appcontext
@user_errors
def create_command(slug: str, name: str, rules_source: str, description: str) -> None:
    """Create segment SLUG from rules."""
    with session_scope() as session:
        segment = create_segment(session, clock(), slug, name, read_rules(rules_source), description)
        count = count_segment(session, clock(), segment)
        click.echo(f"Created segment {segment.slug} ({leads_matching(count)} now).")


@segments_group.command("update")
@click.argument("slug")
@click.option("--name", default=None, help="A new name.")
@click.option("--rules", "rules_source", default=None, metavar="FILE|JSON", help=RULES_HELP)
@click.option("--description", default=None, help="A new description.")
@with_appcontext
@user_errors
def update_command(slug: str, name: str | None, rules_source: str | None, description: str | None) -> None:
    """Change the name, rules or description of segment SLUG."""
    rules = read_rules(rules_source) if rules_source is not None else None
    with session_scope() as session:
        segment = update_segment(session, clock(), slug, name=name, rules=rules, description=description)
        count = count_segment(session, clock(), segment)
        click.echo(f"Updated segment {segment.slug} ({leads_matching(count)} now).")


@segments_group.command("list")
@with_appcontext
@user_errors
def list_command() -> None:
    """List segments with how many leads each holds right now."""
    with session_scope() as session:
        counts = list_segments_with_counts(session, clock())
        if not counts:
            click.echo("No segments yet. Create one with: nurture segments create SLUG --name NAME --rules FILE")
            return
        rows = [
            (
                item.segment.slug,
                item.segment.name,
                item.count if item.error is None else f"error: {item.error}",
                "built-in" if item.segment.builtin else "",
            )
            for item in counts
        ]
        click.echo(format_table(("SLUG", "NAME", "LEADS", ""), rows, numeric=(2,)))


@segments_group.command("count")
@click.argument("slug")
@with_appcontext
@user_errors
def count_command(slug: str) -> None:
    """Print how many leads segment SLUG holds right now."""
    with session_scope() as session:
        click.echo(count_segment(session, clock(), get_segment(session, slug)))


@segments_group.command("show")
@click.argument("slug")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many leads to list.")
@with_appcontext
@user_errors
def show_command(slug: str, limit: int) -> None:
    """Describe segment SLUG and list its first matching leads."""
    with session_scope() as session:
        segment = get_segment(session, slug)
        now_clock = clock()
        total = count_segment(session, now_clock, segment)
        leads = session.scalars(segment_query(session, now_clock, segment).limit(limit)).all()
        click.echo(f"{segment.name} ({segment.slug}){' [built-in]' if segment.builtin else ''}")
        if segment.description:
            click.echo(segment.description)
        click.echo(f"Rules: {describe_rules(segment_rules(segment))}")
        click.echo(f"{leads_matching(total)}; showing {len(leads)}.")
        if leads:
            click.echo("")
            click.echo(format_lead_table(lead_rows(leads)))


def register(cli: click.Group) -> None:
    cli.add_command(segments_group)
