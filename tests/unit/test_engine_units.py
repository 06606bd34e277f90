"""Engine logic without a database: send windows and DST, rolling frequency caps, A/B draws, keys,
webhook signatures and backoff, removed steps, the CLI's --now."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import click
import pytest

from nurture.campaigns.definition import (
    CampaignDefinition,
    CapPeriod,
    FrequencyCap,
    SendStep,
    SendWindow,
    Variant,
    Weekday,
    template_file,
)
from nurture.campaigns.validation import templates_in
from nurture.cli.engine import parse_moment
from nurture.engine.notify import retry_delay, signature, verify_signature
from nurture.engine.scheduling import CapLedger, window_deferral
from nurture.engine.sending import ab_roll, idempotency_key
from nurture.engine.versions import surviving_step

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = SendWindow(frozenset(Weekday) - {Weekday.SAT, Weekday.SUN}, time(9), time(17, 30))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- send windows -------------------------------------------------------------------------------------------


def test_an_open_window_does_not_defer():
    assert window_deferral(WEEKDAYS_9_TO_5, utc("2026-01-15T10:00"), PARIS) is None  # Thu 11:00 in Paris
    assert window_deferral(None, utc("2026-01-17T03:00"), PARIS) is None


def test_a_send_after_hours_waits_for_the_next_opening_on_the_leads_wall_clock():
    # Friday 18:00 in Paris: the next opening is Monday 09:00 Paris time.
    deferral = window_deferral(WEEKDAYS_9_TO_5, utc("2026-01-16T17:00"), PARIS)
    assert deferral is not None
    assert deferral.until == datetime(2026, 1, 19, 9, tzinfo=PARIS)
    assert deferral.reason == "outside the send window"


def test_the_same_instant_is_inside_one_leads_window_and_outside_anothers():
    at = utc("2026-01-15T15:00")  # 16:00 in Paris, 10:00 in New York
    assert window_deferral(WEEKDAYS_9_TO_5, at, PARIS) is None
    early = utc("2026-01-15T13:00")  # 14:00 in Paris, 08:00 in New York
    assert window_deferral(WEEKDAYS_9_TO_5, early, PARIS) is None
    deferral = window_deferral(WEEKDAYS_9_TO_5, early, NEW_YORK)
    assert deferral is not None and deferral.until == datetime(2026, 1, 15, 9, tzinfo=NEW_YORK)


def test_window_openings_across_daylight_saving_changes():
    window = SendWindow(frozenset(Weekday), time(9), time(10))
    # Paris springs forward on Sunday 2026-03-29: 09:00 local is 07:00 UTC after, 08:00 UTC before.
    before = window_deferral(window, utc("2026-03-28T10:00"), PARIS)
    assert before is not None and before.until == utc("2026-03-29T07:00")
    # And falls back on Sunday 2026-10-25: 09:00 local is 08:00 UTC again.
    after = window_deferral(window, utc("2026-10-24T09:00"), PARIS)
    assert after is not None and after.until == utc("2026-10-25T08:00")


def test_a_window_opening_inside_the_skipped_hour_opens_an_hour_later():
    window = SendWindow(frozenset({Weekday.SUN}), time(2, 30), time(4))
    deferral = window_deferral(window, utc("2026-03-28T12:00"), PARIS)
    # 02:30 does not exist on 2026-03-29 in Paris; it is read as 03:30 CEST = 01:30 UTC.
    assert deferral is not None and deferral.until == utc("2026-03-29T01:30")


# --- frequency caps -----------------------------------------------------------------------------------------


def test_a_rolling_daily_cap_defers_until_the_oldest_email_ages_out():
    ledger = CapLedger()
    now = utc("2026-01-15T12:00")
    ledger.add(7, now - timedelta(hours=20))
    ledger.add(7, now - timedelta(hours=2))
    cap = FrequencyCap(2, CapPeriod.DAY)
    deferral = ledger.deferral(cap, 7, now)
    assert deferral is not None
    assert deferral.until == now - timedelta(hours=20) + timedelta(days=1)
    assert deferral.reason == "frequency cap of 2 per day"
    assert ledger.deferral(cap, 7, deferral.until) is None
    assert ledger.deferral(cap, 8, now) is None, "other leads are not affected"
    assert ledger.deferral(None, 7, now) is None


def test_a_weekly_cap_counts_seven_days():
    ledger = CapLedger()
    now = utc("2026-01-15T12:00")
    for days in (6, 3, 1):
        ledger.add(1, now - timedelta(days=days))
    cap = FrequencyCap(3, CapPeriod.WEEK)
    deferral = ledger.deferral(cap, 1, now)
    assert deferral is not None and deferral.until == now + timedelta(days=1)
    assert ledger.deferral(FrequencyCap(4, CapPeriod.WEEK), 1, now) is None


# --- A/B variants -------------------------------------------------------------------------------------------


def test_the_draw_is_fixed_by_enrollment_and_step():
    assert ab_roll(42, "tips") == ab_roll(42, "tips")
    assert ab_roll(42, "tips") != ab_roll(43, "tips")
    assert ab_roll(42, "tips") != ab_roll(42, "other")
    assert all(0 <= ab_roll(n, "s") < 1 for n in range(1000))


@pytest.mark.parametrize(("weights", "n"), [((50, 50), 20_000), ((80, 20), 20_000), ((1, 2, 7), 20_000)])
def test_variants_split_in_proportion_to_their_weights(weights, n):
    step = SendStep(
        "tips",
        template="tips",
        subject="s",
        variants=tuple(Variant(f"v{i}", weight) for i, weight in enumerate(weights)),
    )
    counts: dict[str, int] = {}
    for enrollment_id in range(1, n + 1):
        variant = step.choose(ab_roll(enrollment_id, step.id)).variant
        assert variant is not None
        counts[variant] = counts.get(variant, 0) + 1
    total = sum(weights)
    for i, weight in enumerate(weights):
        p = weight / total
        expected = n * p
        # Four standard deviations of a binomial count: fails by chance about once in 16,000 runs.
        assert abs(counts[f"v{i}"] - expected) < 4 * math.sqrt(n * p * (1 - p)), counts


def test_a_variant_of_weight_zero_is_never_chosen():
    step = SendStep("s", template="t", subject="x", variants=(Variant("on", 1), Variant("off", 0)))
    assert {step.choose(ab_roll(i, "s")).variant for i in range(2000)} == {"on"}


# --- keys, names, webhooks ------------------------------------------------------------------------------------


def test_idempotency_keys_and_template_names():
    assert idempotency_key(12, "welcome", 1) == "enrollment:12:step:welcome:attempt:1"
    assert template_file("welcome") == "welcome.html"
    assert template_file("onboarding/day-3.html") == "onboarding/day-3.html"


def test_webhook_signatures_verify_only_the_exact_body_and_timestamp():
    body = b'{"lead":{"id":1}}'
    header = signature("s3cret", 1_700_000_000, body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    assert verify_signature("s3cret", "1700000000", body, header)
    assert not verify_signature("s3cret", "1700000001", body, header)
    assert not verify_signature("s3cret", "1700000000", body + b" ", header)
    assert not verify_signature("other", "1700000000", body, header)
    assert not verify_signature("s3cret", "yesterday", body, header)


def test_webhook_retries_back_off_and_are_capped():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert retry_delay(30) == timedelta(hours=6)


# --- edits --------------------------------------------------------------------------------------------------


def _definition(*step_ids: str) -> CampaignDefinition:
    return CampaignDefinition.from_data(
        {
            "slug": "c",
            "name": "C",
            "entry": [{"on_event": "x"}],
            "steps": [{"id": step_id, "type": "send", "template": "t", "subject": "s"} for step_id in step_ids],
        }
    )


def test_a_removed_step_hands_over_to_the_next_survivor_of_the_old_order():
    new = _definition("a", "d", "e")
    assert surviving_step(["a", "b", "c", "d", "e"], "b", new) == "d"
    assert surviving_step(["a", "b", "c", "d", "e"], "c", new) == "d"
    assert surviving_step(["a", "b", "c"], "b", _definition("a")) is None
    assert surviving_step(["a", "b"], "zzz", new) is None


# --- the CLI's --now ----------------------------------------------------------------------------------------


def test_now_without_an_offset_is_wall_clock_time_in_the_instance_zone():
    assert parse_moment("2026-12-01T09:00", "Europe/Paris") == datetime(2026, 12, 1, 9, tzinfo=PARIS)
    assert parse_moment("2026-12-01T09:00+00:00", "Europe/Paris") == utc("2026-12-01T09:00")
    with pytest.raises(click.BadParameter, match="not an ISO 8601 date-time"):
        parse_moment("tomorrow", "UTC")


def test_validation_checks_the_file_the_engine_renders(tmp_path):
    (tmp_path / "notes.txt").write_text("plain")
    (tmp_path / "welcome.html").write_text("<p>hi</p>")
    exists = templates_in(tmp_path)
    assert exists("welcome") and exists("welcome.html")
    assert not exists("notes.txt")  # the engine would render notes.txt.html
