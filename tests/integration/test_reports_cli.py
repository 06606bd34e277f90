"""`nurture reports funnel|lost|velocity` through the real CLI, on both databases, over the history of
test_reports.py (period: March 2026, now: 2026-04-15)."""

from __future__ import annotations

import json

import pytest

from nurture.cli import cli
from tests.integration.test_cli_leads import assert_one_line_error
from tests.integration.test_reports import history  # noqa: F401  (the fixture)

MARCH = ("--from", "2026-03-01", "--to", "2026-03-31")


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(cli, ["reports", *args])


@pytest.mark.usefixtures("history")
def test_funnel_json(app, session):
    session.commit()
    result = invoke(app, "funnel", *MARCH, "--format", "json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["period"] == {"from": "2026-03-01", "to": "2026-03-31"}
    assert data["followed_to"] == "2026-04-01T00:00:00+00:00"
    assert data["cohort"] is False
    subscriber = data["stages"][0]
    assert subscriber == {
        "stage": "subscriber", "entered": 5, "moved_forward": 4, "lost": 0, "moved_back": 0, "still_there": 1,
        "reached_customer": 1, "conversion_rate": 0.8, "customer_rate": 0.2,
    }
    assert data["new_customers"] == 1
    assert data["biggest_drop_off"] == "mql"


@pytest.mark.usefixtures("history")
def test_funnel_cohort_table(app, session):
    session.commit()
    result = invoke(app, "funnel", *MARCH, "--cohort")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Funnel 2026-03-01 to 2026-03-31 (UTC days), followed to 2026-04-15 00:00 UTC"
    assert lines[1].split()[:3] == ["STAGE", "ENTERED", "FORWARD"]
    assert lines[2].split() == ["subscriber", "5", "5", "0", "0", "0", "100.0%", "1", "20.0%"]
    assert lines[7].split() == ["customer", "1", "0", "0", "0", "1", "—", "1", "100.0%"]
    assert "New customers: 1." in lines


@pytest.mark.usefixtures("history")
def test_lost_table_and_json(app, session):
    session.commit()
    table = invoke(app, "lost", *MARCH)
    data = json.loads(invoke(app, "lost", *MARCH, "--format", "json").stdout)

    assert table.exit_code == 0, table.output
    first_line = "Lost 2026-03-01 to 2026-03-31 (UTC days): 3 leads, 1 re-engaged since (33.3%)"
    assert table.stdout.splitlines()[0] == first_line
    assert ["budget", "1", "1"] in [line.split() for line in table.stdout.splitlines()]
    assert data["lost"] == 3 and data["re_engaged"] == 1
    assert data["by_stage"] == [
        {"stage": "mql", "lost": 1, "re_engaged": 1},
        {"stage": "sql", "lost": 1, "re_engaged": 0},
        {"stage": "opportunity", "lost": 1, "re_engaged": 0},
    ]
    assert [r["reason"] for r in data["by_reason"]] == ["(no reason given)", "budget", "timing"]


@pytest.mark.usefixtures("history")
def test_lost_table_caps_the_reasons(app, session):
    session.commit()
    result = invoke(app, "lost", *MARCH, "--reasons", "1")

    assert result.exit_code == 0, result.output
    assert "(and 2 more reasons for 2 leads; use --reasons)" in result.stdout


@pytest.mark.usefixtures("history")
def test_velocity_json_and_table(app, session):
    session.commit()
    data = json.loads(invoke(app, "velocity", *MARCH, "--format", "json").stdout)
    table = invoke(app, "velocity", *MARCH)

    lead = data["stages"][1]
    assert lead["stage"] == "lead"
    assert lead["open"] == {
        "count": 2, "mean_seconds": 40.5 * 86400, "median_seconds": 40.5 * 86400, "p75_seconds": 40.75 * 86400,
        "p90_seconds": 40.9 * 86400,
    }
    assert lead["closed"]["median_seconds"] == 86400
    assert data["bottleneck"] == "opportunity"
    assert data["measured_to"] == "2026-04-15T00:00:00+00:00"
    assert table.exit_code == 0, table.output
    lead_row = ["lead", "3", "1d", "2d", "2d", "14h", "1d", "15h", "2", "40d", "12h", "40d", "21h", "3d"]
    assert table.stdout.splitlines()[3].split() == lead_row
    assert table.stdout.splitlines()[-1] == "Bottleneck: opportunity (median stay 12d 12h, open stays included)."


def test_default_period_is_the_last_90_days(app):
    data = json.loads(invoke(app, "funnel", "--format", "json").stdout)

    # The clock fixture says 2026-01-15.
    assert data["period"] == {"from": "2025-10-18", "to": "2026-01-15"}


def test_empty_database_table(app):
    result = invoke(app, "lost", *MARCH)

    assert result.exit_code == 0, result.output
    assert result.stdout == "Lost 2026-03-01 to 2026-03-31 (UTC days): 0 leads, 0 re-engaged since (—)\n"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("funnel", "--from", "yesterday"), ("from:", "'yesterday' is not a date", "YYYY-MM-DD")),
        (("lost", "--to", "2026-02-30"), ("to:", "'2026-02-30' is not a date")),
        (("velocity", "--from", "2026-03-02", "--to", "2026-03-01"), ("from:", "after the end of the period")),
        (("funnel", "--to", "9999-12-31"), ("to:", "before 9999-12-31")),
    ],
)
def test_bad_dates_are_one_line_errors(app, args, fragments):
    assert_one_line_error(invoke(app, *args), *fragments)


def test_bad_format_is_a_usage_error(app):
    result = invoke(app, "funnel", "--format", "xml")

    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("history")
def test_cohorts_table_and_json(app, session):
    session.commit()
    table = invoke(app, "cohorts", "--from", "2026-02-01", "--to", "2026-03-31")
    data = json.loads(invoke(app, "cohorts", "--from", "2026-02-01", "--to", "2026-03-31", "--format", "json").stdout)

    assert table.exit_code == 0, table.output
    headers = ["MONTH", "CREATED", "LEAD", "MQL", "SQL", "OPPORTUNITY", "CUSTOMER", "LOST"]
    assert table.stdout.splitlines()[1].split() == headers
    assert table.stdout.splitlines()[3].split() == [
        "2026-03", "6", "6", "(100.0%)", "5", "(83.3%)", "3", "(50.0%)", "2", "(33.3%)", "1", "(16.7%)", "3",
    ]
    assert data["months"][0] == {
        "month": "2026-02",
        "created": 2,
        "reached": {"subscriber": 2, "lead": 1, "mql": 0, "sql": 0, "opportunity": 0, "customer": 0},
        "lost": 1,
    }


def test_cohorts_of_an_empty_period(app):
    result = invoke(app, "cohorts", *MARCH)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "No leads created in the period."
