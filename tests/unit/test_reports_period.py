"""The report period from user text, reason labels and the percentile interpolation (as percentile_cont)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from nurture.errors import ValidationError
from nurture.leads.funnel import NO_REASON, Period, format_rate, parse_period, percentile, reason_label

TODAY = date(2026, 3, 15)


def test_days_are_whole_utc_days_both_included():
    period = parse_period("2026-03-01", "2026-03-31", TODAY)

    assert period == Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert (period.first_day, period.last_day) == (date(2026, 3, 1), date(2026, 3, 31))


def test_defaults_are_the_90_days_up_to_today():
    assert parse_period(None, None, TODAY) == Period.of_days(date(2025, 12, 16), TODAY)
    assert parse_period("", "  ", TODAY).last_day == TODAY
    assert parse_period(None, "2026-01-31", TODAY).first_day == date(2025, 11, 3)


def test_default_start_stops_at_the_first_representable_day():
    assert parse_period(None, "0001-01-05", TODAY).first_day == date.min


def test_one_day_period():
    period = parse_period("2026-03-08", "2026-03-08", TODAY)

    assert period.end - period.start == datetime(2026, 3, 9) - datetime(2026, 3, 8)


@pytest.mark.parametrize(
    ("raw_from", "raw_to", "where", "fragment"),
    [
        ("2026/03/01", None, "from", "is not a date; use YYYY-MM-DD"),
        ("", "tomorrow", "to", "'tomorrow' is not a date"),
        ("2026-02-29", None, "from", "is not a date"),
        ("2026-03-02", "2026-03-01", "from", "2026-03-02 is after the end of the period, 2026-03-01"),
        (None, "9999-12-31", "to", "a date before 9999-12-31"),
        ("x" * 500, None, "from", "'xxxxxxxx"),
    ],
)
def test_bad_input_names_the_field(raw_from, raw_to, where, fragment):
    with pytest.raises(ValidationError) as caught:
        parse_period(raw_from, raw_to, TODAY)

    assert caught.value.where == where
    assert fragment in str(caught.value)
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("deal lost: chose a competitor", "chose a competitor"),
        ("Deal lost:  no  budget ", "no budget"),
        ("deal lost", NO_REASON),
        ("", NO_REASON),
        (None, NO_REASON),
        ("changed by hand", "changed by hand"),
    ],
)
def test_reason_labels(reason, label):
    assert reason_label(reason) == label


def test_percentile_interpolates_like_percentile_cont():
    values = [1.0, 2.0, 3.0, 11.0]

    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.9) == pytest.approx(3 + 0.7 * 8)
    assert percentile([5.0], 0.9) == 5.0
    assert percentile(values, 1.0) == 11.0
    assert percentile(values, 0.0) == 1.0


def test_rates_format():
    assert format_rate(None) == "—"
    assert format_rate(1 / 3) == "33.3%"
    assert format_rate(1.0) == "100.0%"
