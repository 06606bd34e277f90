"""Parsing segment rules: what is accepted, how it is normalised, and the exact error for each mistake."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from nurture.errors import ValidationError
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.segments.rules import (
    MAX_RULES_JSON_DEPTH,
    AllOf,
    AnyOf,
    Condition,
    Day,
    DaysAgo,
    Engagement,
    EnteredStage,
    FieldKind,
    Instant,
    Not,
    Op,
    describe_rules,
    parse_rules,
    rules_to_data,
)

SCORE = {"field": "score", "op": ">", "value": 1}
SHAPES = "a group (all, any, not), a condition (field, op, value), an engagement (event or no_event) or entered_stage"
DATE_HINT = 'an ISO date such as "2026-01-31", a date-time such as "2026-01-31T09:00:00Z", or {"days_ago": 30}'
STAGES = "subscriber, lead, mql, sql, opportunity, customer, lost"
TEXT_OPS = "=, !=, in, not_in, contains, not_contains, starts_with, ends_with"


def nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = SCORE
    for _ in range(depth):
        rule = {"not": rule}
    return rule


BAD_RULES: list[tuple[Any, str]] = [
    # operators
    (
        {"all": [SCORE, SCORE, {"field": "country", "op": "equals", "value": "FR"}]},
        "all[2].op: unknown operator 'equals'",
    ),
    ({"field": "country", "op": "equals", "value": "FR"}, "op: unknown operator 'equals'"),
    ({"field": "score", "op": 5, "value": 1}, "op: expected an operator such as '=' or 'contains', got a number"),
    ({"field": "country", "value": "FR"}, "op: missing (a condition needs field, op and value)"),
    (
        {"field": "country", "op": ">", "value": "FR"},
        f"op: operator '>' does not apply to text field 'country'; use one of {TEXT_OPS}, is_empty, not_empty",
    ),
    (
        {"field": "score", "op": "contains", "value": "1"},
        "op: operator 'contains' does not apply to number field 'score'; "
        "use one of =, !=, in, not_in, <, <=, >, >=, between",
    ),
    (
        {"field": "created_at", "op": "in", "value": ["2026-01-01"]},
        "op: operator 'in' does not apply to date field 'created_at'; use one of =, !=, <, <=, >, >=, between",
    ),
    (
        {"field": "stage", "op": "<", "value": "mql"},
        "op: operator '<' does not apply to choice field 'stage'; use one of =, !=, in, not_in",
    ),
    ({"field": "email", "op": "is_empty"}, f"op: field 'email' always has a value; use one of {TEXT_OPS}"),
    (
        {"field": "tags", "op": "=", "value": "vip"},
        "op: operator '=' does not apply to tags field 'tags'; "
        "use one of contains, not_contains, in, not_in, is_empty, not_empty",
    ),
    # fields
    ({"op": "=", "value": "x"}, "field: missing (a condition needs field, op and value)"),
    ({"field": 5, "op": "=", "value": 1}, "field: expected a field name, got a number"),
    ({"field": "contry", "op": "=", "value": "FR"}, "field: unknown field 'contry'; did you mean 'country'?"),
    (
        {"field": "xyzzy", "op": "=", "value": "x"},
        "field: unknown field 'xyzzy'; use a lead field such as 'country', 'tags' or 'attributes.NAME'",
    ),
    (
        {"field": "email_key", "op": "=", "value": "x"},
        "field: unknown field 'email_key'; did you mean 'email'?",
    ),
    (
        {"field": "attributes.", "op": "=", "value": "x"},
        "field: bad attribute name '': use 1 to 100 characters without dots, quotes or backslashes",
    ),
    (
        {"field": "attributes.address.city", "op": "=", "value": "x"},
        "field: bad attribute name 'address.city': use 1 to 100 characters without dots, quotes or backslashes",
    ),
    (
        {"field": 'attributes.say "hi"', "op": "=", "value": "x"},
        "field: bad attribute name 'say \"hi\"': use 1 to 100 characters without dots, quotes or backslashes",
    ),
    # values
    ({"field": "country", "op": "="}, "value: missing (operator '=' needs a value)"),
    ({"field": "score", "op": ">", "value": "high"}, 'value: expected a number, got "high"'),
    ({"field": "score", "op": ">", "value": True}, "value: expected a number, got true"),
    ({"field": "score", "op": ">", "value": float("inf")}, "value: number must be finite (not NaN or Infinity)"),
    (
        {"field": "score", "op": ">", "value": 10**30},
        "value: number out of range (at most 9223372036854775807 in absolute value)",
    ),
    ({"field": "first_name", "op": "contains", "value": "a\x00b"}, "value: contains a NUL character (at character 2)"),
    (
        {"field": "company", "op": "=", "value": "\ud800"},
        "value: contains an unpaired surrogate U+D800 (at character 1)",
    ),
    ({"field": "country", "op": "=", "value": 33}, "value: expected text, got 33"),
    ({"field": "company", "op": "contains", "value": ""}, "value: expected non-empty text"),
    ({"field": "company", "op": "is_empty", "value": "x"}, "value: operator 'is_empty' takes no value"),
    ({"field": "stage", "op": "=", "value": "won"}, f"value: unknown stage 'won'; expected one of {STAGES}"),
    (
        {"field": "status", "op": "in", "value": ["active", "gone"]},
        "value[1]: unknown status 'gone'; expected one of active, unsubscribed, bounced, complained, erased",
    ),
    (
        {"field": "temperature", "op": "=", "value": 3},
        "value: unknown temperature 3; expected one of cold, warm, hot",
    ),
    (
        {"field": "country", "op": "in", "value": "FR"},
        "value: operator 'in' needs a non-empty list of values, got \"FR\"",
    ),
    (
        {"field": "country", "op": "not_in", "value": []},
        "value: operator 'not_in' needs a non-empty list of values, got []",
    ),
    (
        {"field": "score", "op": "between", "value": [1]},
        "value: operator 'between' needs a list of two values [low, high], got [1]",
    ),
    (
        {"field": "score", "op": "between", "value": [1, 2, 3]},
        "value: operator 'between' needs a list of two values [low, high], got [1, 2, 3]",
    ),
    ({"field": "score", "op": "between", "value": [1, "x"]}, 'value[1]: expected a number, got "x"'),
    ({"field": "score", "op": "in", "value": list(range(1001))}, "value: at most 1000 values, got 1001"),
    ({"field": "tags", "op": "contains", "value": "  "}, "value: expected a tag name of 1 to 100 characters"),
    ({"field": "tags", "op": "in", "value": ["vip", 5]}, "value[1]: expected text, got 5"),
    # dates
    ({"field": "created_at", "op": ">", "value": "yesterday"}, f'value: expected {DATE_HINT}, got "yesterday"'),
    ({"field": "created_at", "op": ">", "value": "2026-02-30"}, f'value: expected {DATE_HINT}, got "2026-02-30"'),
    ({"field": "created_at", "op": ">", "value": 20260101}, f"value: expected {DATE_HINT}, got 20260101"),
    ({"field": "created_at", "op": ">", "value": {"days": 3}}, f'value: expected {DATE_HINT}, got {{"days": 3}}'),
    (
        {"field": "created_at", "op": ">", "value": {"days_ago": -1}},
        "value.days_ago: expected a whole number of days from 0 to 36500, got -1",
    ),
    (
        {"field": "created_at", "op": ">", "value": {"days_ago": 1.5}},
        "value.days_ago: expected a whole number of days from 0 to 36500, got 1.5",
    ),
    (
        {"field": "created_at", "op": "between", "value": ["2026-01-01", "soon"]},
        f'value[1]: expected {DATE_HINT}, got "soon"',
    ),
    # attributes
    ({"field": "attributes.size", "op": ">", "value": "10"}, 'value: expected a number, got "10"'),
    ({"field": "attributes.industry", "op": "contains", "value": 5}, "value: expected text, got 5"),
    (
        {"field": "attributes.industry", "op": "in", "value": ["a", 5]},
        "value[1]: mixes text and a number; compare an attribute with values of one type",
    ),
    (
        {"field": "attributes.industry", "op": "=", "value": None},
        "value: null is not a value to compare with; use is_empty or not_empty",
    ),
    (
        {"field": "attributes.industry", "op": "=", "value": ["a"]},
        "value: expected text, a number or true/false, got a list",
    ),
    # structure
    ({"any": [{"not": {"field": "country", "op": "=", "value": 5}}]}, "any[0].not.value: expected text, got 5"),
    ({"any": "x"}, "any: expected a list of rules, got text"),
    ({"all": [], "any": []}, "any: unexpected key beside 'all' (a group has exactly one key)"),
    ({"all": [SCORE, 1]}, f"all[1]: expected a rule object ({SHAPES}), got a number"),
    ([], f"rules: expected a rule object ({SHAPES}), got a list"),
    ({}, f"rules: empty rule; expected {SHAPES}"),
    ({"foo": 1}, f"rules: unknown rule with key(s) 'foo'; expected {SHAPES}"),
    (
        {"field": "country", "op": "=", "value": "FR", "extra": 1},
        "extra: unexpected key in a condition (expected field, op, value)",
    ),
    (
        {"all": [{"all": [{"any": [{"field": "stage", "op": "=", "value": "nope"}]}]}]},
        f"all[0].all[0].any[0].value: unknown stage 'nope'; expected one of {STAGES}",
    ),
    (nested(20), "not." * 19 + "not: rules nest more than 20 levels deep"),
    ({"any": [SCORE] * 501}, "any[499]: too many rules (more than 500)"),
    ("not json", "rules: not valid JSON: Expecting value (line 1, column 1)"),
    ('{"all": [', "rules: not valid JSON: Expecting value (line 1, column 10)"),
    ('{"field": "score", "op": ">", "value": NaN}', "rules: not valid JSON: NaN is not allowed in JSON"),
    ('{"field": "score", "op": ">", "value": 1e400}', "rules: not valid JSON: number 1e400 is out of range"),
    ('{"field": "country", "op": "=", "value": "\\u0000"}', "value: contains a NUL character (at character 1)"),
    # engagement and stage entry
    ({"event": ""}, "event: expected an event name such as 'opened' or 'clicked' (1 to 64 characters), got \"\""),
    ({"no_event": 3}, "no_event: expected an event name such as 'opened' or 'clicked' (1 to 64 characters), got 3"),
    ({"event": "opened", "within_days": 0}, "within_days: expected a whole number of days from 1 to 36500, got 0"),
    (
        {"all": [{"event": "opened", "within_days": "30"}]},
        'all[0].within_days: expected a whole number of days from 1 to 36500, got "30"',
    ),
    ({"event": "opened", "no_event": "clicked"}, "no_event: give either event or no_event, not both"),
    ({"event": "opened", "campaign": ""}, 'campaign: expected a campaign slug (1 to 100 characters), got ""'),
    (
        {"event": "opened", "window": 3},
        "window: unexpected key in an 'event' rule (expected event, within_days, campaign)",
    ),
    ({"entered_stage": "won"}, f"entered_stage: unknown stage 'won'; expected one of {STAGES}"),
    ({"entered_stage": 1}, "entered_stage: expected a stage name, got 1"),
    (
        {"entered_stage": "lost", "within_days": True},
        "within_days: expected a whole number of days from 1 to 36500, got true",
    ),
    (
        {"entered_stage": "lost", "campaign": "x"},
        "campaign: unexpected key in an 'entered_stage' rule (expected entered_stage, within_days)",
    ),
]


@pytest.mark.parametrize(("rules", "message"), BAD_RULES)
def test_bad_rules_name_the_faulty_node(rules, message):
    with pytest.raises(ValidationError) as caught:
        parse_rules(rules)
    assert str(caught.value) == message


def test_error_carries_the_path_apart_from_the_message():
    with pytest.raises(ValidationError) as caught:
        parse_rules({"all": [SCORE, {"field": "score", "op": "equals", "value": 1}]})
    assert caught.value.where == "all[1].op"
    assert caught.value.message == "unknown operator 'equals'"


def test_parses_a_full_tree_from_json_text():
    node = parse_rules(
        """{"all": [
            {"field": "country", "op": "in", "value": ["FR", "DE", "FR"]},
            {"any": [{"event": "opened", "within_days": 30, "campaign": "welcome"}, {"no_event": "clicked"}]},
            {"not": {"entered_stage": "closed-lost", "within_days": 90}},
            {"field": "company", "op": "is_empty", "value": null}
        ]}"""
    )
    assert isinstance(node, AllOf)
    country, engaged, not_lost, company = node.rules
    assert isinstance(country, Condition)
    assert (country.field.name, country.field.kind, country.op, country.value) == (
        "country",
        FieldKind.TEXT,
        Op.IN,
        ("FR", "DE"),
    )
    assert engaged == AnyOf(
        (Engagement("opened", 30, "welcome", happened=True), Engagement("clicked", None, None, happened=False))
    )
    assert not_lost == Not(EnteredStage(Stage.LOST, 90))
    assert isinstance(company, Condition)
    assert (company.op, company.value) == (Op.IS_EMPTY, None)


def test_values_are_normalised_to_their_field():
    def value(field: str, op: str, raw: Any) -> Any:
        node = parse_rules({"field": field, "op": op, "value": raw})
        assert isinstance(node, Condition)
        return node.value

    assert value("stage", "=", "Marketing Qualified") is Stage.MQL
    assert value("status", "in", ["ACTIVE", " bounced "]) == (LeadStatus.ACTIVE, LeadStatus.BOUNCED)
    assert value("score", "between", [50, 20]) == (20, 50)
    assert value("tags", "contains", " vip ") == "vip"
    assert value("created_at", ">", "2026-01-31") == Day(date(2026, 1, 31))
    assert value("created_at", ">", "2026-01-31T09:00:00Z") == Instant(datetime(2026, 1, 31, 9, tzinfo=UTC))
    assert value("created_at", ">", "2026-01-31T09:00:00+02:00") == Instant(datetime(2026, 1, 31, 7, tzinfo=UTC))
    assert value("created_at", ">", "2026-01-31T09:00:00") == Instant(datetime(2026, 1, 31, 9, tzinfo=UTC))
    assert value("created_at", ">=", {"days_ago": 0}) == DaysAgo(0)
    assert value("attributes.size", ">", 10) == 10
    assert value("attributes.vip", "=", True) is True
    assert value("attributes.vip", "in", [True, False]) == (True, False)


def test_date_spans():
    now = datetime(2026, 1, 15, 10, tzinfo=UTC)
    day = Day(date(2026, 1, 10)).span(now)
    assert (day.start, day.end, day.end_inclusive) == (
        datetime(2026, 1, 10, tzinfo=UTC),
        datetime(2026, 1, 11, tzinfo=UTC),
        False,
    )
    ago = DaysAgo(30).span(now)
    assert ago.start == ago.end == datetime(2025, 12, 16, 10, tzinfo=UTC)
    assert ago.end_inclusive


@pytest.mark.parametrize(
    "rules",
    [
        {"all": []},
        {"any": []},
        {"field": "email", "op": "=", "value": "Ann@Example.com"},
        {"field": "created_at", "op": "between", "value": ["2026-01-01", {"days_ago": 3}]},
        {"field": "last_engaged_at", "op": "<", "value": "2026-01-01T09:30:00+00:00"},
        {"field": "attributes.Company size", "op": "not_in", "value": [1, 2.5]},
        {"not": {"any": [{"event": "opened", "within_days": 7}, {"entered_stage": "sql"}]}},
        {"no_event": "clicked", "campaign": "promo"},
    ],
)
def test_canonical_rules_round_trip(rules):
    node = parse_rules(rules)
    assert rules_to_data(node) == rules
    assert parse_rules(rules_to_data(node)) == node


def test_canonical_form_uses_canonical_names():
    node = parse_rules(
        {"all": [{"field": "stage", "op": "in", "value": ["prospect", "SQL"]}, {"entered_stage": "closed-won"}]}
    )
    assert rules_to_data(node) == {
        "all": [{"field": "stage", "op": "in", "value": ["lead", "sql"]}, {"entered_stage": "customer"}]
    }


def test_describe_rules_reads_like_a_sentence():
    node = parse_rules(
        {
            "all": [
                {"field": "status", "op": "=", "value": "active"},
                {"any": [{"event": "opened", "within_days": 30}, {"field": "tags", "op": "contains", "value": "vip"}]},
                {"not": {"field": "company", "op": "is_empty"}},
                {"no_event": "clicked", "campaign": "promo"},
            ]
        }
    )
    assert describe_rules(node) == (
        'status = "active" and (opened within 30 days or tags contains "vip") and not company is empty '
        "and no clicked in campaign promo"
    )
    assert describe_rules(parse_rules({"all": []})) == "every lead"


def test_rule_text_nested_10000_deep_is_one_error_not_a_recursion_error():
    with pytest.raises(ValidationError) as caught:
        parse_rules('{"not": ' * 10_000 + "{}" + "}" * 10_000)
    assert str(caught.value) == f"rules: nested deeper than {MAX_RULES_JSON_DEPTH} levels"
