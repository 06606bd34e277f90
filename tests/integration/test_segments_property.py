"""Property: for random leads and random rule trees, the compiled SQL selects exactly the leads that a
plain Python reading of the rules (the oracle below, written from docs/segments.md) selects, on
SQLite and on PostgreSQL.

Generated text is ASCII: case-insensitive matching of non-ASCII letters differs between the two
databases, as docs/segments.md says.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.models import Activity, ActorKind, Lead, StageChange, Tag
from nurture.segments.rules import parse_rules
from nurture.segments.service import segment_query
from tests.conftest import EPOCH

NOW = EPOCH
PREFIXES = ["ann", "Bob", "x_y", "p%q"]
DOMAINS = ["example.com", "Other.org"]
TEXTS = ["Acme", "acme corp", "ACME", "50%_off", "a_b", "a/b", "Beta", "FR", "fr", "DE", "US", ""]
TAGS = ["vip", "VIP", "beta", "churn"]
EVENTS = ["opened", "clicked", "sent", "webinar.attended"]
CAMPAIGNS = ["welcome", "promo"]
ATTRIBUTE_VALUES: list[Any] = ["Software", "software", "250", "", 250, 12.5, 0, -3, True, False, None, [], {}, ["x"]]


# --- random leads ----------------------------------------------------------------------------------------------

# Moments cluster on whole days before NOW, on midnights (NOW is 10:00) and around the windows rules
# use, so that <, <= and =, and "within N days", are told apart; day -1 is in the future.
DAYS = [-1, 0, 1, 29, 30, 90]
moments = st.builds(
    lambda days, seconds: NOW - timedelta(days=days, seconds=seconds),
    st.sampled_from(DAYS),
    st.sampled_from([0, 36000, 36001, 86399]),
)
optional_text = st.one_of(st.none(), st.sampled_from(TEXTS))

leads_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "prefix": st.sampled_from(PREFIXES),
            "domain": st.sampled_from(DOMAINS),
            "company": optional_text,
            "country": optional_text,
            "stage": st.sampled_from(list(Stage)),
            "status": st.sampled_from(list(LeadStatus)),
            "temperature": st.sampled_from(list(Temperature)),
            "score": st.integers(-5, 100),
            "created_at": moments,
            "last_engaged_at": st.one_of(st.none(), moments),
            "tags": st.sets(st.sampled_from(TAGS), max_size=3),
            "attributes": st.dictionaries(
                st.sampled_from(["industry", "size"]), st.sampled_from(ATTRIBUTE_VALUES), max_size=2
            ),
            "activities": st.lists(
                st.tuples(st.sampled_from(EVENTS), moments, st.sampled_from([None, *CAMPAIGNS])), max_size=4
            ),
            "stage_changes": st.lists(st.tuples(st.sampled_from(list(Stage)), moments), max_size=2),
        }
    ),
    min_size=15,
    max_size=30,
)


def email_of(index: int, lead: dict[str, Any]) -> str:
    return f"{lead['prefix']}{index}@{lead['domain']}"


# --- random rules -------------------------------------------------------------------------------------------


def condition(field: str, op: str, value: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"field": field, "op": op}
    if op not in ("is_empty", "not_empty"):
        rule["value"] = value
    return rule


def with_ops(field: str, ops: list[str], value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def build(op: str, one: Any, many: list[Any]) -> dict[str, Any]:
        if op in ("in", "not_in"):
            return condition(field, op, many)
        if op == "between":
            return condition(field, op, many[:2] if len(many) >= 2 else [one, one])
        return condition(field, op, one)

    return st.builds(build, st.sampled_from(ops), value, st.lists(value, min_size=1, max_size=3))


TEXT_OPS = ["=", "!=", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with"]
EMPTY_OPS = ["is_empty", "not_empty"]
ORDER_OPS = ["=", "!=", "<", "<=", ">", ">=", "between"]

# Wildcard characters are frequent: a value must never be read as a LIKE pattern.
rule_texts = st.sampled_from([text for text in TEXTS if text]) | st.sampled_from(["%", "_", "/", "a_", "%_", "ACME C"])
rule_emails = st.builds(
    lambda prefix, index, domain, upper: f"{prefix}{index}@{domain}".upper() if upper else f"{prefix}{index}@{domain}",
    st.sampled_from(PREFIXES),
    st.integers(0, 3),
    st.sampled_from(DOMAINS),
    st.booleans(),
) | st.sampled_from(["ANN", "@other.ORG", "%", "_y", "p%q"])
rule_dates = st.one_of(
    st.builds(lambda days: (NOW.date() - timedelta(days=days)).isoformat(), st.sampled_from(DAYS)),
    moments.map(lambda moment: moment.isoformat()),
    st.builds(lambda days: {"days_ago": days}, st.sampled_from([day for day in DAYS if day >= 0])),
)
windows = st.sampled_from([None, 1, 30, 90])

leaf_rules = st.one_of(
    with_ops("company", TEXT_OPS + EMPTY_OPS, rule_texts),
    with_ops("country", TEXT_OPS + EMPTY_OPS, rule_texts),
    with_ops("email", TEXT_OPS, rule_emails),
    with_ops("score", ["=", "!=", "in", "not_in", "<", "<=", ">", ">=", "between"], st.integers(-5, 100)),
    with_ops("stage", ["=", "!=", "in", "not_in"], st.sampled_from([s.value for s in Stage])),
    with_ops("status", ["=", "!=", "in", "not_in"], st.sampled_from([s.value for s in LeadStatus])),
    with_ops("temperature", ["=", "!=", "in", "not_in"], st.sampled_from([t.value for t in Temperature])),
    with_ops("created_at", ORDER_OPS, rule_dates),
    with_ops("last_engaged_at", ORDER_OPS + EMPTY_OPS, rule_dates),
    with_ops("tags", ["contains", "not_contains", "in", "not_in", *EMPTY_OPS], st.sampled_from(TAGS)),
    with_ops("attributes.industry", TEXT_OPS + EMPTY_OPS, st.sampled_from(["Software", "soft", "250", "", "%"]))
    .filter(lambda rule: rule.get("value") != "" or rule["op"] in ("=", "!=", "in", "not_in")),
    with_ops("attributes.size", [*ORDER_OPS, "in", "not_in"], st.sampled_from([250, 12.5, 0, -3, 100, 0.5])),
    with_ops("attributes.industry", ["=", "!=", "in", "not_in"], st.booleans()),
    st.builds(
        lambda happened, event, within, campaign: {
            ("event" if happened else "no_event"): event,
            **({"within_days": within} if within else {}),
            **({"campaign": campaign} if campaign else {}),
        },
        st.booleans(),
        st.sampled_from(EVENTS),
        windows,
        st.sampled_from([None, *CAMPAIGNS]),
    ),
    st.builds(
        lambda stage, within: {"entered_stage": stage, **({"within_days": within} if within else {})},
        st.sampled_from([s.value for s in Stage]),
        windows,
    ),
)

rule_trees = st.recursive(
    leaf_rules,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda rules: {"all": rules}),
        st.lists(children, max_size=3).map(lambda rules: {"any": rules}),
        children.map(lambda rule: {"not": rule}),
    ),
    max_leaves=6,
)


# --- the oracle ----------------------------------------------------------------------------------------------


def span(value: Any) -> tuple[datetime, datetime, bool]:
    """(start, end, end included) of a date value, as docs/segments.md defines it."""
    if isinstance(value, dict):
        moment = NOW - timedelta(days=value["days_ago"])
        return moment, moment, True
    if len(value) == 10:
        day = date.fromisoformat(value)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start, start + timedelta(days=1), False
    moment = datetime.fromisoformat(value)
    return moment, moment, True


def before_end(moment: datetime, end: datetime, inclusive: bool) -> bool:
    return moment <= end if inclusive else moment < end


def date_matches(moment: datetime | None, op: str, value: Any) -> bool:
    if moment is None:
        return False
    if op == "between":
        spans = [span(bound) for bound in value]
        start = min(s[0] for s in spans)
        _, end, inclusive = max(spans, key=lambda s: (s[1], s[2]))
        return start <= moment and before_end(moment, end, inclusive)
    start, end, inclusive = span(value)
    return {
        "=": lambda: start <= moment and before_end(moment, end, inclusive),
        "<": lambda: moment < start,
        "<=": lambda: before_end(moment, end, inclusive),
        ">": lambda: not before_end(moment, end, inclusive),
        ">=": lambda: moment >= start,
    }[op]()


def plain_matches(actual: Any, op: str, value: Any, *, fold: bool = False) -> bool:
    """A positive operator on a present value; ``fold`` makes = and in ignore case (email)."""
    if fold and op in ("=", "in"):
        actual = actual.lower()
        value = [v.strip().lower() for v in value] if isinstance(value, list) else value.strip().lower()
    if op == "=":
        return actual == value
    if op == "in":
        return actual in value
    if op == "contains":
        return value.lower() in actual.lower()
    if op == "starts_with":
        return actual.lower().startswith(value.lower())
    if op == "ends_with":
        return actual.lower().endswith(value.lower())
    if op == "between":
        return min(value) <= actual <= max(value)
    return {"<": actual < value, "<=": actual <= value, ">": actual > value, ">=": actual >= value}[op]


NEGATIONS = {"!=": "=", "not_in": "in", "not_contains": "contains", "not_empty": "is_empty"}
MISSING = object()


def json_kind(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "container"


def condition_matches(lead: dict[str, Any], rule: dict[str, Any]) -> bool:
    field, op, value = rule["field"], rule["op"], rule.get("value")
    if op in NEGATIONS:
        return not condition_matches(lead, {**rule, "op": NEGATIONS[op]})
    if field == "tags":
        if op == "is_empty":
            return not lead["tags"]
        wanted = value if isinstance(value, list) else [value]
        return bool(lead["tags"] & set(wanted))
    if field.startswith("attributes."):
        actual = lead["attributes"].get(field.removeprefix("attributes."), MISSING)
        kind = json_kind(actual)
        if op == "is_empty":
            return kind in ("missing", "null") or actual in ("", [], {})
        sample = value[0] if isinstance(value, list) else value
        if json_kind(sample) != kind:
            return False
        if kind == "boolean":
            return actual in (value if isinstance(value, list) else [value])
        return plain_matches(actual, op, value)
    actual = lead[field]
    if op == "is_empty":
        return actual is None or actual == ""
    if actual is None:
        return False
    if field in ("created_at", "last_engaged_at"):
        return date_matches(actual, op, value)
    if isinstance(actual, Stage | LeadStatus | Temperature):
        actual = actual.value
    return plain_matches(actual, op, value, fold=field == "email")


def in_window(moment: datetime, within_days: int | None) -> bool:
    return moment <= NOW and (within_days is None or moment >= NOW - timedelta(days=within_days))


def oracle(lead: dict[str, Any], rule: dict[str, Any]) -> bool:
    if "all" in rule:
        return all(oracle(lead, child) for child in rule["all"])
    if "any" in rule:
        return any(oracle(lead, child) for child in rule["any"])
    if "not" in rule:
        return not oracle(lead, rule["not"])
    if "event" in rule or "no_event" in rule:
        event = rule.get("event", rule.get("no_event"))
        happened = any(
            kind == event
            and in_window(moment, rule.get("within_days"))
            and rule.get("campaign") in (None, campaign)
            for kind, moment, campaign in lead["activities"]
        )
        return happened if "event" in rule else not happened
    if "entered_stage" in rule:
        return any(
            stage.value == rule["entered_stage"] and in_window(moment, rule.get("within_days"))
            for stage, moment in lead["stage_changes"]
        )
    return condition_matches(lead, rule)


# --- the property ----------------------------------------------------------------------------------------------


def insert(session, leads: list[dict[str, Any]]) -> None:
    tags = {name: Tag(name=name) for name in TAGS}
    session.add_all(tags.values())
    rows = []
    for data in leads:
        email = data["email"]
        lead = Lead(
            email=email,
            email_key=email.lower(),
            company=data["company"],
            country=data["country"],
            stage=data["stage"],
            stage_entered_at=NOW,
            status=data["status"],
            temperature=data["temperature"],
            score=data["score"],
            created_at=data["created_at"],
            updated_at=NOW,
            last_engaged_at=data["last_engaged_at"],
            attributes=data["attributes"],
            tags=[tags[name] for name in sorted(data["tags"])],
        )
        session.add(lead)
        rows.append(lead)
    session.flush()
    for lead, data in zip(rows, leads, strict=True):
        session.add_all(
            Activity(lead_id=lead.id, kind=kind, occurred_at=moment, campaign=campaign)
            for kind, moment, campaign in data["activities"]
        )
        session.add_all(
            StageChange(lead_id=lead.id, to_stage=stage, changed_at=moment, actor_kind=ActorKind.SYSTEM)
            for stage, moment in data["stage_changes"]
        )
    session.flush()


@settings(max_examples=40)
@given(leads=leads_strategy, rules=st.lists(rule_trees, min_size=5, max_size=15))
def test_compiled_sql_selects_what_the_oracle_selects(session, clock, leads, rules):
    leads = [{**lead, "email": email_of(index, lead)} for index, lead in enumerate(leads)]
    savepoint = session.begin_nested()
    try:
        insert(session, leads)
        for rule in rules:
            parse_rules(rule)  # every generated rule is valid
            expected = {lead["email"] for lead in leads if oracle(lead, rule)}
            selected = {lead.email for lead in session.scalars(segment_query(session, clock, rule))}
            assert selected == expected, rule
    finally:
        savepoint.rollback()
        session.expunge_all()
