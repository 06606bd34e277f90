"""``nurture reports funnel|lost|velocity``: the sales-process reports of a period, as a table or JSON.

The figures and their exact definitions are the domain's (nurture/leads/funnel.py, docs/reports.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click
from flask.cli import with_appcontext

from nurture.cli.context import clock, session_scope, user_errors
from nurture.cli.output import format_table
from nurture.leads.funnel import (
    DurationStats,
    FunnelReport,
    LostReport,
    MonthCohort,
    Period,
    VelocityReport,
    format_rate,
    funnel_report,
    lost_report,
    month_cohorts,
    parse_period,
    velocity_report,
)
from nurture.leads.lifecycle import FUNNEL
from nurture.web.ui import format_duration, format_utc

FORMATS = ("table", "json")
F = TypeVar("F", bound=Callable[..., Any])


@click.group("reports")
def reports_group() -> None:
    """Sales-process reports: the funnel, lost leads, time in each stage."""


def _period_options(command: F) -> F:
    formats = click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True)
    last_day = click.option("--to", "raw_to", metavar="DATE", help="Last day, YYYY-MM-DD (default: today, UTC).")
    first_day = click.option(
        "--from", "raw_from", metavar="DATE", help="First day, YYYY-MM-DD (default: 90 days up to --to)."
    )
    return first_day(last_day(formats(command)))


def _period(raw_from: str | None, raw_to: str | None) -> tuple[Period, datetime]:
    now = clock().now()
    return parse_period(raw_from, raw_to, now.date()), now


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _period_dict(period: Period) -> dict[str, str]:
    return {"from": period.first_day.isoformat(), "to": period.last_day.isoformat()}


def _period_title(period: Period) -> str:
    return f"{period.first_day.isoformat()} to {period.last_day.isoformat()} (UTC days)"


# --- funnel -----------------------------------------------------------------------------------------------------


@reports_group.command("funnel")
@_period_options
@click.option("--cohort", is_flag=True, help="Follow the leads that entered each stage in the period up to now.")
@with_appcontext
@user_errors
def funnel_command(raw_from: str | None, raw_to: str | None, output_format: str, cohort: bool) -> None:
    """Per stage: leads that entered it in the period, and how many moved forward, were lost or became customers."""
    period, now = _period(raw_from, raw_to)
    with session_scope() as session:
        report = funnel_report(session, period, now, cohort=cohort)
    if output_format == "json":
        _echo_json(funnel_as_dict(report))
        return
    click.echo(f"Funnel {_period_title(period)}, followed to {format_utc(report.horizon)}")
    headers = ("STAGE", "ENTERED", "FORWARD", "LOST", "BACK", "STILL THERE", "CONVERSION", "CUSTOMERS", "TO CUSTOMER")
    rows = [
        (
            row.stage.value,
            row.entered,
            row.moved_forward,
            row.lost,
            row.moved_back,
            row.still_here,
            format_rate(row.conversion_rate),
            row.reached_customer,
            format_rate(row.customer_rate),
        )
        for row in report.rows
    ]
    click.echo(format_table(headers, rows, numeric=range(1, len(headers))))
    click.echo(f"New customers: {report.new_customers}.")
    drop = report.biggest_drop_off
    if drop is not None:
        click.echo(f"Biggest drop-off: {drop.stage.value} ({format_rate(drop.conversion_rate)} moved forward).")


def funnel_as_dict(report: FunnelReport) -> dict[str, Any]:
    drop = report.biggest_drop_off
    return {
        "period": _period_dict(report.period),
        "followed_to": report.horizon.isoformat(),
        "cohort": report.cohort,
        "stages": [
            {
                "stage": row.stage.value,
                "entered": row.entered,
                "moved_forward": row.moved_forward,
                "lost": row.lost,
                "moved_back": row.moved_back,
                "still_there": row.still_here,
                "reached_customer": row.reached_customer,
                "conversion_rate": row.conversion_rate,
                "customer_rate": row.customer_rate,
            }
            for row in report.rows
        ],
        "new_customers": report.new_customers,
        "biggest_drop_off": drop.stage.value if drop else None,
    }


# --- lost -------------------------------------------------------------------------------------------------------


@reports_group.command("lost")
@_period_options
@click.option("--reasons", default=20, show_default=True, type=click.IntRange(min=1), help="Reasons shown in a table.")
@with_appcontext
@user_errors
def lost_command(raw_from: str | None, raw_to: str | None, output_format: str, reasons: int) -> None:
    """Leads lost in the period: from which stage, why, and how many were re-engaged since."""
    period, now = _period(raw_from, raw_to)
    with session_scope() as session:
        report = lost_report(session, period, now)
    if output_format == "json":
        _echo_json(lost_as_dict(report))
        return
    click.echo(
        f"Lost {_period_title(period)}: {report.total} leads, {report.re_engaged} re-engaged since "
        f"({format_rate(report.re_engaged_rate)})"
    )
    if not report.total:
        return
    click.echo()
    click.echo(
        format_table(
            ("LOST FROM", "LOST", "RE-ENGAGED"),
            [(count.label, count.lost, count.re_engaged) for _, count in report.by_stage],
            numeric=(1, 2),
        )
    )
    click.echo()
    shown = report.by_reason[:reasons]
    click.echo(
        format_table(
            ("REASON", "LOST", "RE-ENGAGED"), [(c.label, c.lost, c.re_engaged) for c in shown], numeric=(1, 2)
        )
    )
    if len(report.by_reason) > len(shown):
        rest = report.by_reason[len(shown) :]
        click.echo(f"(and {len(rest)} more reasons for {sum(c.lost for c in rest)} leads; use --reasons)")


def lost_as_dict(report: LostReport) -> dict[str, Any]:
    return {
        "period": _period_dict(report.period),
        "lost": report.total,
        "re_engaged": report.re_engaged,
        "by_stage": [
            {"stage": stage.value if stage else None, "lost": count.lost, "re_engaged": count.re_engaged}
            for stage, count in report.by_stage
        ],
        "by_reason": [{"reason": c.label, "lost": c.lost, "re_engaged": c.re_engaged} for c in report.by_reason],
    }


# --- velocity ---------------------------------------------------------------------------------------------------


@reports_group.command("velocity")
@_period_options
@with_appcontext
@user_errors
def velocity_command(raw_from: str | None, raw_to: str | None, output_format: str) -> None:
    """Time in each stage for the stays that began in the period; leads still there are measured to now."""
    period, now = _period(raw_from, raw_to)
    with session_scope() as session:
        report = velocity_report(session, period, now)
    if output_format == "json":
        _echo_json(velocity_as_dict(report))
        return
    click.echo(f"Time in stage, stays begun {_period_title(period)}, measured to {format_utc(now)}")
    headers = (
        "STAGE", "MOVED ON", "MEDIAN", "P75", "P90", "MEAN", "STILL THERE", "MEDIAN SO FAR", "P90 SO FAR", "MEDIAN ALL",
    )
    rows = [
        (
            row.stage.value,
            row.closed.count,
            format_duration(row.closed.median),
            format_duration(row.closed.p75),
            format_duration(row.closed.p90),
            format_duration(row.closed.mean),
            row.open.count,
            format_duration(row.open.median),
            format_duration(row.open.p90),
            format_duration(row.all.median),
        )
        for row in report.stages
    ]
    click.echo(format_table(headers, rows, numeric=range(1, len(headers))))
    bottleneck = report.bottleneck
    if bottleneck is not None:
        median = format_duration(bottleneck.all.median)
        click.echo(f"Bottleneck: {bottleneck.stage.value} (median stay {median}, open stays included).")


def _stats_dict(stats: DurationStats) -> dict[str, Any]:
    def seconds(value: timedelta | None) -> float | None:
        return None if value is None else value.total_seconds()

    return {
        "count": stats.count,
        "mean_seconds": seconds(stats.mean),
        "median_seconds": seconds(stats.median),
        "p75_seconds": seconds(stats.p75),
        "p90_seconds": seconds(stats.p90),
    }


def velocity_as_dict(report: VelocityReport) -> dict[str, Any]:
    bottleneck = report.bottleneck
    return {
        "period": _period_dict(report.period),
        "measured_to": report.now.isoformat(),
        "stages": [
            {
                "stage": row.stage.value,
                "closed": _stats_dict(row.closed),
                "open": _stats_dict(row.open),
                "all": _stats_dict(row.all),
            }
            for row in report.stages
        ],
        "bottleneck": bottleneck.stage.value if bottleneck else None,
    }


# --- cohorts ----------------------------------------------------------------------------------------------------


@reports_group.command("cohorts")
@_period_options
@with_appcontext
@user_errors
def cohorts_command(raw_from: str | None, raw_to: str | None, output_format: str) -> None:
    """Leads created in each month of the period, and how many reached each stage (or a later one) by now."""
    period, now = _period(raw_from, raw_to)
    with session_scope() as session:
        cohorts = month_cohorts(session, period, now)
    if output_format == "json":
        _echo_json({"period": _period_dict(period), "measured_to": now.isoformat(), "months": [
            cohort_as_dict(cohort) for cohort in cohorts
        ]})
        return
    click.echo(f"Leads created {_period_title(period)}, by month, as far as they got by {format_utc(now)}")
    if not cohorts:
        click.echo("No leads created in the period.")
        return
    later_stages = FUNNEL[1:]
    headers = ("MONTH", "CREATED", *(stage.value.upper() for stage in later_stages), "LOST")
    rows = [
        (
            cohort.month,
            cohort.created,
            *(f"{cohort.reached[stage]} ({format_rate(cohort.rate(stage))})" for stage in later_stages),
            cohort.lost,
        )
        for cohort in cohorts
    ]
    click.echo(format_table(headers, rows, numeric=range(1, len(headers))))


def cohort_as_dict(cohort: MonthCohort) -> dict[str, Any]:
    return {
        "month": cohort.month,
        "created": cohort.created,
        "reached": {stage.value: cohort.reached[stage] for stage in FUNNEL},
        "lost": cohort.lost,
    }


def register(cli: click.Group) -> None:
    cli.add_command(reports_group)
