"""The scoring file: the default file is valid and documented; every problem is named with its place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.errors import ValidationError
from nurture.leads.lifecycle import Stage
from nurture.scoring.config import DEFAULT_FILE, EngagementRule, FitRule, ScoringSettings, read_config, read_config_file
from nurture.scoring.lifecycle import promotions_for
from nurture.scoring.points import decay_factor, period_start


def test_the_default_file_loads_and_keeps_fit_below_the_warm_threshold():
    config, data = read_config_file(DEFAULT_FILE)
    assert config.settings == ScoringSettings(30.0, 50, 100, False, 3)
    assert {rule.name for rule in config.rules} == {raw["name"] for raw in data["rules"]}
    fit_total = sum(rule.points for rule in config.fit_rules if rule.points > 0)
    assert fit_total < 20  # a quiet lead cools to cold by itself with the default temperature thresholds
    assert any(isinstance(rule, EngagementRule) and rule.cap for rule in config.rules)


def test_rules_parse():
    config, _ = read_config(
        """
half_life_days: 14
lifecycle: {mql_at: 30, sql_at: null}
machine_engagement: count
soft_bounce_limit: 2
rules:
  - {name: opens, event: opened, points: 1, cap: {points: 5, per: week}}
  - {name: pricing, event: clicked, where: {url: "*/pricing*", campaign: [a, b]}, points: 4}
  - {name: off, event: replied, points: 3, enabled: false}
  - {name: vp, fit: {field: job_title, op: contains, value: VP}, points: 5}
""",
        "s.yaml",
    )
    assert config.settings == ScoringSettings(14.0, 30, None, True, 2)
    opens, pricing, vp = config.rules
    assert opens.cap.points == 5 and opens.cap.per == "week"
    assert isinstance(vp, FitRule)
    assert pricing.matches("clicked", "a", "https://x.example/pricing?y", {})
    assert not pricing.matches("clicked", "c", "https://x.example/pricing", {})
    assert not pricing.matches("opened", "a", "https://x.example/pricing", {})


def test_where_on_properties():
    config, _ = read_config(
        "rules:\n  - {name: demo, event: form_submitted, where: {properties.form: [demo, sales], properties.n: 3},"
        " points: 9}\n",
        "s.yaml",
    )
    [rule] = config.rules
    assert rule.matches("form_submitted", None, None, {"form": "sales", "n": 3})
    assert not rule.matches("form_submitted", None, None, {"form": "sales", "n": "3"})
    assert not rule.matches("form_submitted", None, None, {"form": "newsletter", "n": 3})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - {name: a, event: opened, points: 0}\n", "s.yaml:2:38: rules[0].points: a rule giving 0 points"),
        ("rules:\n  - {name: a, event: Opened!, points: 1}\n", "s.yaml:2:22: rules[0].event: expected an event name"),
        ("rules:\n  - {name: a, points: 1}\n", "s.yaml:2:5: rules[0]: a rule has exactly one of event"),
        (
            "rules:\n  - {name: a, event: opened, points: 1, cap: {points: 5, per: year}}\n",
            "s.yaml:2:63: rules[0].cap.per: expected one of day, week, month, got 'year'",
        ),
        (
            "rules:\n  - {name: a, fit: {field: score, op: '>', value: 5}, points: 1}\n",
            "rules[0].fit: fit rules look at the profile only, not at score",
        ),
        (
            "rules:\n  - {name: a, fit: {event: opened}, points: 1}\n",
            "rules[0].fit: fit rules look at the profile only",
        ),
        ("rules:\n  - {name: a, fit: {field: nonsense, op: '=', value: 1}, points: 1}\n", "rules[0].fit.field: "),
        (
            "rules:\n  - {name: a, event: opened, points: 1}\n  - {name: a, event: clicked, points: 1}\n",
            "rules[1].name: another rule is already called 'a'",
        ),
        ("lifecycle: {mql_at: 100, sql_at: 50}\n", "lifecycle.sql_at: must be above mql_at (100), got 50"),
        ("half_life_days: 0\n", "half_life_days: expected a number of days from 0.01 to 3650, got 0"),
        ("machine_engagement: sometimes\n", "machine_engagement: expected ignore or count"),
        ("colour: red\n", "s.yaml:1:1: colour: unknown key"),
        ("rules:\n  - {name: a, event: opened, points: 1, wher: {}}\n", "rules[0].wher: unknown key"),
        ("rules: [", "YAML syntax error"),
        ("- a\n- b\n", "file: a scoring file is a mapping"),
    ],
)
def test_problems_are_named_with_their_place(text, expected):
    with pytest.raises(ValidationError) as raised:
        read_config(text, "s.yaml")
    assert expected in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValidationError) as raised:
        read_config("half_life_days: -1\nrules:\n  - {name: A, event: opened, points: 1}\n  - {points: x}\n", "s.yaml")
    assert len(str(raised.value).splitlines()) >= 4


def test_decay_halves_every_half_life():
    settings = ScoringSettings(half_life_days=30)
    assert decay_factor(timedelta(0), settings) == 1.0
    assert decay_factor(timedelta(days=30), settings) == pytest.approx(0.5)
    assert decay_factor(timedelta(days=90), settings) == pytest.approx(0.125)


def test_cap_periods_are_utc_days_iso_weeks_and_months():
    at = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)  # a Thursday
    assert period_start(at, "day") == datetime(2026, 1, 15, tzinfo=UTC)
    assert period_start(at, "week") == datetime(2026, 1, 12, tzinfo=UTC)
    assert period_start(at, "month") == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stage", "score", "moves"),
    [
        (Stage.SUBSCRIBER, 49, []),
        (Stage.SUBSCRIBER, 50, [Stage.MQL]),
        (Stage.LEAD, 120, [Stage.MQL, Stage.SQL]),
        (Stage.MQL, 100, [Stage.SQL]),
        (Stage.SQL, 500, []),
        (Stage.OPPORTUNITY, 500, []),
        (Stage.CUSTOMER, 500, []),
        (Stage.LOST, 500, []),
    ],
)
def test_promotions_only_move_forward(stage, score, moves):
    settings = ScoringSettings(mql_at=50, sql_at=100)
    assert [target for target, _ in promotions_for(stage, score, settings)] == moves


def test_a_threshold_set_to_null_turns_its_promotion_off():
    assert promotions_for(Stage.LEAD, 1000, ScoringSettings(mql_at=None, sql_at=100)) == [(Stage.SQL, 100)]
