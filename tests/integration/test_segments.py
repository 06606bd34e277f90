"""Segment rules compiled to SQL, on SQLite and PostgreSQL: each operator, NULLs, dates, tags,
attributes, engagement, and the service around it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from nurture.errors import NotFound, ValidationError
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, change_stage, create_lead, record_activity
from nurture.segments.models import Segment
from nurture.segments.rules import parse_rules
from nurture.segments.service import (
    count_segment,
    create_segment,
    get_segment,
    list_segments,
    list_segments_with_counts,
    segment_query,
    update_segment,
)

IMPORT = Actor(ActorKind.IMPORT, "test")


def add_lead(session, clock, email: str, **fields: Any) -> Lead:
    """A lead made the way the app makes them, then with any column forced to a test value."""
    tags = fields.pop("tags", ())
    attributes = fields.pop("attributes", None)
    profile = {key: fields.pop(key) for key in list(fields) if key in {"first_name", "company", "country", "phone"}}
    lead = create_lead(session, clock, email, actor=IMPORT, tags=tags, attributes=attributes, **profile)
    for key, value in fields.items():
        setattr(lead, key, value)
    session.flush()
    return lead


def matching(session, clock, rules: Any) -> set[str]:
    return {lead.email for lead in session.scalars(segment_query(session, clock, rules))}


def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
    rule = {"field": field, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


# --- text and email ------------------------------------------------------------------------------------------


@pytest.fixture
def people(session, clock):
    add_lead(session, clock, "Ann@Example.com", company="Acme 50%_off", country="FR")
    add_lead(session, clock, "bob@example.com", company="acme corp", country="DE")
    add_lead(session, clock, "cy@other.org", company="", country="fr")
    add_lead(session, clock, "dee@other.org")  # no company, no country
    return {"Ann@example.com", "bob@example.com", "cy@other.org", "dee@other.org"}


def test_text_equality_is_exact_and_negation_includes_missing(session, clock, people):
    assert matching(session, clock, cond("country", "=", "FR")) == {"Ann@example.com"}
    assert matching(session, clock, cond("country", "!=", "FR")) == people - {"Ann@example.com"}
    assert matching(session, clock, cond("country", "in", ["FR", "DE"])) == {"Ann@example.com", "bob@example.com"}
    assert matching(session, clock, cond("country", "not_in", ["FR", "DE"])) == {"cy@other.org", "dee@other.org"}


def test_email_equality_ignores_case(session, clock, people):
    assert matching(session, clock, cond("email", "=", " ANN@example.COM ")) == {"Ann@example.com"}
    assert matching(session, clock, cond("email", "in", ["BOB@EXAMPLE.COM"])) == {"bob@example.com"}
    assert matching(session, clock, cond("email", "ends_with", "@OTHER.org")) == {"cy@other.org", "dee@other.org"}
    assert matching(session, clock, cond("email", "!=", "ann@example.com")) == people - {"Ann@example.com"}


def test_text_matching_is_case_insensitive_and_wildcards_are_literal(session, clock, people):
    assert matching(session, clock, cond("company", "contains", "ACME")) == {"Ann@example.com", "bob@example.com"}
    assert matching(session, clock, cond("company", "contains", "50%_")) == {"Ann@example.com"}
    assert matching(session, clock, cond("company", "contains", "%")) == {"Ann@example.com"}
    assert matching(session, clock, cond("company", "contains", "_")) == {"Ann@example.com"}
    assert matching(session, clock, cond("company", "starts_with", "acme c")) == {"bob@example.com"}
    assert matching(session, clock, cond("company", "ends_with", "%_OFF")) == {"Ann@example.com"}
    assert matching(session, clock, cond("company", "not_contains", "acme")) == {"cy@other.org", "dee@other.org"}


def test_escape_character_in_value_is_literal(session, clock):
    add_lead(session, clock, "slash@example.com", company="a/b\\c")
    add_lead(session, clock, "plain@example.com", company="abc")
    assert matching(session, clock, cond("company", "contains", "a/b")) == {"slash@example.com"}
    assert matching(session, clock, cond("company", "contains", "b\\c")) == {"slash@example.com"}


def test_is_empty_means_null_or_blank(session, clock, people):
    assert matching(session, clock, cond("company", "is_empty")) == {"cy@other.org", "dee@other.org"}
    assert matching(session, clock, cond("company", "not_empty")) == {"Ann@example.com", "bob@example.com"}


# --- numbers, choices, dates ---------------------------------------------------------------------------------


def test_numbers_and_choices(session, clock):
    add_lead(session, clock, "a@example.com", score=10, stage=Stage.MQL, temperature=Temperature.COLD)
    add_lead(session, clock, "b@example.com", score=20, stage=Stage.SQL, temperature=Temperature.WARM)
    add_lead(session, clock, "c@example.com", score=55, stage=Stage.LOST, status=LeadStatus.BOUNCED)
    assert matching(session, clock, cond("score", ">=", 20)) == {"b@example.com", "c@example.com"}
    assert matching(session, clock, cond("score", ">", 19.5)) == {"b@example.com", "c@example.com"}
    assert matching(session, clock, cond("score", "between", [55, 15])) == {"b@example.com", "c@example.com"}
    assert matching(session, clock, cond("score", "not_in", [10, 55])) == {"b@example.com"}
    assert matching(session, clock, cond("stage", "=", "marketing qualified")) == {"a@example.com"}
    assert matching(session, clock, cond("stage", "in", ["sql", "lost"])) == {"b@example.com", "c@example.com"}
    assert matching(session, clock, cond("status", "!=", "active")) == {"c@example.com"}
    assert matching(session, clock, cond("temperature", "=", "WARM")) == {"b@example.com"}


def test_dates_absolute_days_instants_and_relative(session, clock):
    now = clock.now()  # 2026-01-15 10:00 UTC
    add_lead(session, clock, "old@example.com", created_at=now - timedelta(days=40), last_engaged_at=None)
    add_lead(session, clock, "day@example.com", created_at=now.replace(hour=23, minute=59) - timedelta(days=5))
    add_lead(session, clock, "new@example.com", created_at=now - timedelta(hours=1), last_engaged_at=now)
    everyone = {"old@example.com", "day@example.com", "new@example.com"}

    # 2026-01-10 is a whole UTC day: 23:59 on it is "=" and "<=", but not "<" and not ">".
    assert matching(session, clock, cond("created_at", "=", "2026-01-10")) == {"day@example.com"}
    assert matching(session, clock, cond("created_at", "<=", "2026-01-10")) == {"old@example.com", "day@example.com"}
    assert matching(session, clock, cond("created_at", "<", "2026-01-10")) == {"old@example.com"}
    assert matching(session, clock, cond("created_at", ">", "2026-01-10")) == {"new@example.com"}
    assert matching(session, clock, cond("created_at", ">=", "2026-01-10")) == {"day@example.com", "new@example.com"}
    assert matching(session, clock, cond("created_at", ">", "2026-01-10T23:00:00+00:00")) == {
        "day@example.com",
        "new@example.com",
    }
    assert matching(session, clock, cond("created_at", ">", "2026-01-10T23:00:00-02:00")) == {"new@example.com"}
    assert matching(session, clock, cond("created_at", ">=", {"days_ago": 30})) == everyone - {"old@example.com"}
    assert matching(session, clock, cond("created_at", "<", {"days_ago": 30})) == {"old@example.com"}
    between = cond("created_at", "between", [{"days_ago": 1}, "2026-01-01"])
    assert matching(session, clock, between) == {"day@example.com"}
    assert matching(session, clock, cond("last_engaged_at", "is_empty")) == {"old@example.com", "day@example.com"}
    assert matching(session, clock, cond("last_engaged_at", "<", "2030-01-01")) == {"new@example.com"}
    # Never engaged is "not engaged after X".
    assert matching(session, clock, {"not": cond("last_engaged_at", ">", "2026-01-01")}) == {
        "old@example.com",
        "day@example.com",
    }


# --- tags ------------------------------------------------------------------------------------------------------


def test_tags(session, clock):
    add_lead(session, clock, "vip@example.com", tags=["vip", "beta"])
    add_lead(session, clock, "beta@example.com", tags=["beta"])
    add_lead(session, clock, "none@example.com")
    assert matching(session, clock, cond("tags", "contains", "vip")) == {"vip@example.com"}
    assert matching(session, clock, cond("tags", "contains", "VIP")) == set()
    assert matching(session, clock, cond("tags", "not_contains", "vip")) == {"beta@example.com", "none@example.com"}
    assert matching(session, clock, cond("tags", "in", ["vip", "beta"])) == {"vip@example.com", "beta@example.com"}
    assert matching(session, clock, cond("tags", "not_in", ["vip", "nope"])) == {"beta@example.com", "none@example.com"}
    assert matching(session, clock, cond("tags", "is_empty")) == {"none@example.com"}
    assert matching(session, clock, cond("tags", "not_empty")) == {"vip@example.com", "beta@example.com"}
    both = {"all": [cond("tags", "contains", "vip"), cond("tags", "contains", "beta")]}
    assert matching(session, clock, both) == {"vip@example.com"}


# --- attributes ----------------------------------------------------------------------------------------------


@pytest.fixture
def attributed(session, clock):
    values = {
        "text": "Software",
        "lower": "software house",
        "number": 250,
        "float": 12.5,
        "numtext": "250",
        "true": True,
        "false": False,
        "null": None,
        "blank": "",
        "emptylist": [],
        "emptyobj": {},
        "list": ["Software"],
    }
    for name, value in values.items():
        add_lead(session, clock, f"{name}@example.com", attributes={"industry": value, "size": value})
    add_lead(session, clock, "missing@example.com", attributes={"other": 1})
    return {f"{name}@example.com" for name in values} | {"missing@example.com"}


def test_attribute_text_compares_only_text(session, clock, attributed):
    assert matching(session, clock, cond("attributes.industry", "=", "Software")) == {"text@example.com"}
    assert matching(session, clock, cond("attributes.industry", "=", "250")) == {"numtext@example.com"}
    assert matching(session, clock, cond("attributes.industry", "contains", "SOFT")) == {
        "text@example.com",
        "lower@example.com",
    }
    assert matching(session, clock, cond("attributes.industry", "in", ["Software", ""])) == {
        "text@example.com",
        "blank@example.com",
    }
    assert matching(session, clock, cond("attributes.industry", "!=", "Software")) == attributed - {
        "text@example.com"
    }


def test_attribute_numbers_compare_only_numbers(session, clock, attributed):
    assert matching(session, clock, cond("attributes.size", "=", 250)) == {"number@example.com"}
    assert matching(session, clock, cond("attributes.size", "=", 250.0)) == {"number@example.com"}
    assert matching(session, clock, cond("attributes.size", ">", 12)) == {"number@example.com", "float@example.com"}
    assert matching(session, clock, cond("attributes.size", "between", [12.5, 100])) == {"float@example.com"}
    assert matching(session, clock, cond("attributes.size", "in", [12.5, 7])) == {"float@example.com"}


def test_attribute_booleans_and_emptiness(session, clock, attributed):
    assert matching(session, clock, cond("attributes.industry", "=", True)) == {"true@example.com"}
    assert matching(session, clock, cond("attributes.industry", "=", False)) == {"false@example.com"}
    assert matching(session, clock, cond("attributes.industry", "!=", True)) == attributed - {"true@example.com"}
    empty = {
        "null@example.com",
        "blank@example.com",
        "emptylist@example.com",
        "emptyobj@example.com",
        "missing@example.com",
    }
    assert matching(session, clock, cond("attributes.industry", "is_empty")) == empty
    assert matching(session, clock, cond("attributes.industry", "not_empty")) == attributed - empty


def test_attribute_names_with_spaces_and_quotes(session, clock):
    add_lead(session, clock, "odd@example.com", attributes={"Company size": 10, "it's": "yes", "50%": "x"})
    assert matching(session, clock, cond("attributes.Company size", ">=", 10)) == {"odd@example.com"}
    assert matching(session, clock, cond("attributes.it's", "=", "yes")) == {"odd@example.com"}
    assert matching(session, clock, cond("attributes.50%", "not_empty")) == {"odd@example.com"}


# --- engagement and stage entry ------------------------------------------------------------------------------


def test_engagement_windows_campaigns_and_absence(session, clock):
    now = clock.now()
    recent = add_lead(session, clock, "recent@example.com")
    old = add_lead(session, clock, "old@example.com")
    future = add_lead(session, clock, "future@example.com")
    add_lead(session, clock, "never@example.com")
    record_activity(session, recent, "opened", now - timedelta(days=2), campaign="welcome")
    record_activity(session, old, "opened", now - timedelta(days=45), campaign="promo")
    record_activity(session, future, "opened", now + timedelta(days=1))
    session.flush()
    everyone = {"recent@example.com", "old@example.com", "future@example.com", "never@example.com"}

    assert matching(session, clock, {"event": "opened", "within_days": 30}) == {"recent@example.com"}
    assert matching(session, clock, {"event": "opened"}) == {"recent@example.com", "old@example.com"}
    assert matching(session, clock, {"event": "opened", "within_days": 60, "campaign": "promo"}) == {
        "old@example.com"
    }
    assert matching(session, clock, {"no_event": "opened", "within_days": 30}) == everyone - {"recent@example.com"}
    assert matching(session, clock, {"event": "clicked", "within_days": 30}) == set()
    # The "created" activity every lead gets is an event too.
    assert matching(session, clock, {"event": "created", "within_days": 1}) == everyone


def test_entered_stage(session, clock):
    clock.advance(timedelta(days=-200))
    lost = add_lead(session, clock, "lost@example.com")
    long_lost = add_lead(session, clock, "longlost@example.com")
    change_stage(session, clock, long_lost, Stage.LOST, reason="no budget", actor=IMPORT)
    clock.advance(timedelta(days=180))
    change_stage(session, clock, lost, Stage.LOST, reason="no budget", actor=IMPORT)
    change_stage(session, clock, lost, Stage.LEAD, reason="back", actor=IMPORT)
    clock.advance(timedelta(days=20))
    add_lead(session, clock, "fresh@example.com")
    session.flush()
    assert matching(session, clock, {"entered_stage": "lost", "within_days": 90}) == {"lost@example.com"}
    assert matching(session, clock, {"entered_stage": "closed-lost"}) == {"lost@example.com", "longlost@example.com"}
    # Leads created in a stage have entered it.
    assert matching(session, clock, {"entered_stage": "subscriber", "within_days": 1}) == {"fresh@example.com"}


# --- groups --------------------------------------------------------------------------------------------------


def test_groups_nest_and_empty_groups(session, clock, people):
    rules = {
        "any": [
            {"all": [cond("country", "=", "FR"), cond("company", "contains", "acme")]},
            {"not": {"any": [cond("company", "not_empty"), cond("email", "starts_with", "cy")]}},
        ]
    }
    assert matching(session, clock, rules) == {"Ann@example.com", "dee@other.org"}
    assert matching(session, clock, {"all": []}) == people
    assert matching(session, clock, {"any": []}) == set()
    assert matching(session, clock, {"not": {"any": []}}) == people


# --- service -------------------------------------------------------------------------------------------------


def test_create_get_update_and_count(session, clock, people):
    segment = create_segment(
        session, clock, "french", "  French leads ", '{"field": "country", "op": "=", "value": "FR"}', "FR only"
    )
    assert segment.name == "French leads"
    assert segment.rules == {"field": "country", "op": "=", "value": "FR"}
    assert get_segment(session, "french") is segment
    assert count_segment(session, clock, segment) == 1
    assert count_segment(session, clock, {"field": "country", "op": "in", "value": ["FR", "fr"]}) == 2
    assert count_segment(session, clock, parse_rules({"all": []})) == 4

    clock.advance(timedelta(hours=1))
    update_segment(session, clock, "french", rules={"field": "country", "op": "in", "value": ["FR", "fr"]})
    assert segment.updated_at == clock.now()
    assert segment.name == "French leads"
    assert count_segment(session, clock, get_segment(session, "french")) == 2


def test_stored_rules_are_canonical(session, clock):
    segment = create_segment(
        session,
        clock,
        "canon",
        "Canon",
        {"all": [{"field": "stage", "op": "=", "value": "Prospect"}, {"field": "tags", "op": "in", "value": [" a "]}]},
    )
    assert segment.rules == {
        "all": [{"field": "stage", "op": "=", "value": "lead"}, {"field": "tags", "op": "in", "value": ["a"]}]
    }


def test_service_rejects_bad_input_and_keeps_what_is_stored(session, clock):
    create_segment(session, clock, "keep", "Keep", {"field": "score", "op": ">", "value": 1})
    with pytest.raises(ValidationError, match=r"^slug: a segment with slug 'keep' already exists$"):
        create_segment(session, clock, "keep", "Again", {"all": []})
    with pytest.raises(ValidationError, match=r"^slug: 'Not A Slug' is not a valid slug"):
        create_segment(session, clock, "Not A Slug", "Bad", {"all": []})
    with pytest.raises(ValidationError, match=r"^name: a segment needs a name$"):
        create_segment(session, clock, "nameless", "  ", {"all": []})
    with pytest.raises(ValidationError, match=r"^all\[0\]\.op: unknown operator 'equals'$"):
        update_segment(session, clock, "keep", name="Renamed", rules={"all": [{"field": "score", "op": "equals"}]})
    kept = get_segment(session, "keep")
    assert (kept.name, kept.rules) == ("Keep", {"field": "score", "op": ">", "value": 1})
    with pytest.raises(NotFound, match="no segment with slug 'nope'"):
        get_segment(session, "nope")


def test_list_with_counts_reports_broken_segments_instead_of_failing(session, clock, people):
    create_segment(session, clock, "germans", "Germans", {"field": "country", "op": "=", "value": "DE"})
    now = clock.now()
    broken = {"field": "score", "op": "equals", "value": 1}
    session.add(Segment(slug="broken", name="Broken", rules=broken, created_at=now, updated_at=now))
    session.flush()
    results = {item.segment.slug: item for item in list_segments_with_counts(session, clock)}
    assert (results["germans"].count, results["germans"].error) == (1, None)
    assert results["broken"].count is None
    assert results["broken"].error == "segment 'broken' op: unknown operator 'equals'"
    assert [segment.slug for segment in list_segments(session)] == ["broken", "germans"]


def test_segment_query_returns_leads_in_id_order(session, clock, people):
    leads = session.scalars(segment_query(session, clock, {"all": []})).all()
    assert [lead.id for lead in leads] == sorted(lead.id for lead in leads)
    assert session.scalars(select(Lead.email).order_by(Lead.id)).all() == [lead.email for lead in leads]


def test_rules_of_one_shape_with_other_values_reuse_the_statement_cache_correctly(session, clock):
    for index, industry in enumerate(["Software", "Retail", "Retail"]):
        add_lead(session, clock, f"l{index}@example.com", attributes={"industry": industry, "size": index})
    for industry, expected in (("Software", 1), ("Retail", 2), ("Energy", 0)):
        assert count_segment(session, clock, cond("attributes.industry", "=", industry)) == expected
        assert count_segment(session, clock, cond("attributes.industry", "!=", industry)) == 3 - expected
    assert count_segment(session, clock, cond("attributes.size", "in", [0, 2])) == 2
    assert count_segment(session, clock, cond("attributes.size", "in", [1])) == 1
