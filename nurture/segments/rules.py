"""The segment rule format: untrusted JSON parsed into typed, validated nodes, and written back.

Every mistake a person can make in a rule is caught here and reported with the path of the faulty
node (``all[2].op: unknown operator 'equals'``), so the compiler can trust what it receives. The
format itself is documented in docs/segments.md.
"""

from __future__ import annotations

import difflib
import json
import re
import reprlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

from sqlalchemy import Boolean, DateTime, Enum, Float, Integer, Numeric, String, Text

from nurture.errors import ValidationError
from nurture.inputs import check_number, clean_text, load_json, unstorable_reason
from nurture.leads.lifecycle import Stage, parse_stage
from nurture.leads.models import Lead

# How deep groups nest; the parser checks it before descending, so no rule data can exhaust the stack.
MAX_DEPTH = 20
# The JSON nesting that MAX_DEPTH levels of rules need (a group is an object holding a list; a condition's value
# may be a list of {"days_ago": N}). Rule text nested deeper is refused as JSON before the parser sees it.
MAX_RULES_JSON_DEPTH = 2 * MAX_DEPTH + 2
MAX_NODES = 500
MAX_LIST_LENGTH = 1000
MAX_TEXT_LENGTH = 1000
# About a century: far enough for any marketing window, near enough that `now - days` never overflows.
MAX_DAYS = 36500
MAX_EVENT_LENGTH = 64
MAX_CAMPAIGN_LENGTH = 100
MAX_TAG_LENGTH = 100
ATTRIBUTE_PREFIX = "attributes."
# Attribute names end up inside a JSON path on SQLite, where quotes and backslashes cannot be escaped;
# a dot would read as nesting, which the format does not offer.
_ATTRIBUTE_NAME = re.compile(r'^[^."\\\x00-\x1f]{1,100}$')


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    IS_EMPTY = "is_empty"
    NOT_EMPTY = "not_empty"
    BETWEEN = "between"


# Each negative operator matches exactly the leads its positive twin does not, NULLs included.
NEGATED: dict[Op, Op] = {Op.NE: Op.EQ, Op.NOT_IN: Op.IN, Op.NOT_CONTAINS: Op.CONTAINS, Op.NOT_EMPTY: Op.IS_EMPTY}

_EQUALITY = (Op.EQ, Op.NE, Op.IN, Op.NOT_IN)
_ORDERING = (Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN)
_TEXT_MATCH = (Op.CONTAINS, Op.NOT_CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH)
_EMPTINESS = (Op.IS_EMPTY, Op.NOT_EMPTY)


class FieldKind(StrEnum):
    TEXT = "text"
    EMAIL = "email"
    CHOICE = "choice"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    TAGS = "tags"
    ATTRIBUTE = "attribute"


_OPS_BY_KIND: dict[FieldKind, tuple[Op, ...]] = {
    FieldKind.TEXT: (*_EQUALITY, *_TEXT_MATCH),
    FieldKind.EMAIL: (*_EQUALITY, *_TEXT_MATCH),
    FieldKind.CHOICE: _EQUALITY,
    FieldKind.NUMBER: (*_EQUALITY, *_ORDERING),
    FieldKind.DATE: (Op.EQ, Op.NE, *_ORDERING),
    FieldKind.BOOLEAN: (Op.EQ, Op.NE),
    FieldKind.TAGS: (Op.CONTAINS, Op.NOT_CONTAINS, Op.IN, Op.NOT_IN, *_EMPTINESS),
    FieldKind.ATTRIBUTE: (*_EQUALITY, *_ORDERING, *_TEXT_MATCH, *_EMPTINESS),
}


@dataclass(frozen=True)
class Field:
    """Something a condition can test: a lead column, the lead's tags, or one key of its attributes."""

    name: str
    kind: FieldKind
    nullable: bool = True
    choices: type[StrEnum] | None = None

    @property
    def attribute(self) -> str:
        """The key inside ``Lead.attributes`` for an ``attributes.NAME`` field."""
        return self.name.removeprefix(ATTRIBUTE_PREFIX)

    @property
    def operators(self) -> tuple[Op, ...]:
        ops = _OPS_BY_KIND[self.kind]
        if self.nullable and self.kind not in (FieldKind.TAGS, FieldKind.ATTRIBUTE):
            ops = (*ops, *_EMPTINESS)
        return ops


# Columns that are internal plumbing rather than something a marketer filters on.
_HIDDEN_COLUMNS = frozenset({"id", "email_key", "attributes"})


def _lead_fields() -> dict[str, Field]:
    """Every filterable lead column, read from the model so a new column is usable without edits here."""
    fields: dict[str, Field] = {}
    for column in Lead.__table__.columns:
        if column.name in _HIDDEN_COLUMNS:
            continue
        column_type = column.type
        kind: FieldKind | None
        choices = None
        if isinstance(column_type, Enum) and column_type.enum_class is not None:
            kind, choices = FieldKind.CHOICE, column_type.enum_class
        elif column.name == "email":
            kind = FieldKind.EMAIL
        elif isinstance(column_type, String | Text):
            kind = FieldKind.TEXT
        elif isinstance(column_type, Boolean):
            kind = FieldKind.BOOLEAN
        elif isinstance(column_type, Integer | Float | Numeric):
            kind = FieldKind.NUMBER
        elif isinstance(getattr(column_type, "impl_instance", column_type), DateTime):
            kind = FieldKind.DATE
        else:
            continue
        fields[column.name] = Field(column.name, kind, bool(column.nullable), choices)
    return fields


LEAD_FIELDS: dict[str, Field] = _lead_fields()
TAGS_FIELD = Field("tags", FieldKind.TAGS, nullable=False)


# --- values ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSpan:
    """What a date value denotes once "now" is known: a whole day, or one instant (start == end)."""

    start: datetime
    end: datetime
    end_inclusive: bool


@dataclass(frozen=True)
class Day:
    """An ISO date such as 2026-01-31: the whole UTC day."""

    day: date

    def span(self, now: datetime) -> TimeSpan:
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)
        return TimeSpan(start, start + timedelta(days=1), end_inclusive=False)

    def to_data(self) -> str:
        return self.day.isoformat()


@dataclass(frozen=True)
class Instant:
    """An ISO date-time; without an offset it is taken as UTC."""

    at: datetime

    def span(self, now: datetime) -> TimeSpan:
        return TimeSpan(self.at, self.at, end_inclusive=True)

    def to_data(self) -> str:
        return self.at.isoformat()


@dataclass(frozen=True)
class DaysAgo:
    """``{"days_ago": N}``: the instant exactly N×24 hours before now."""

    days: int

    def span(self, now: datetime) -> TimeSpan:
        at = now - timedelta(days=self.days)
        return TimeSpan(at, at, end_inclusive=True)

    def to_data(self) -> dict[str, int]:
        return {"days_ago": self.days}


DateValue: TypeAlias = Day | Instant | DaysAgo
Scalar: TypeAlias = str | int | float | bool | StrEnum | DateValue
Value: TypeAlias = Scalar | tuple[Scalar, ...] | None


# --- nodes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllOf:
    rules: tuple[RuleNode, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[RuleNode, ...]


@dataclass(frozen=True)
class Not:
    rule: RuleNode


@dataclass(frozen=True)
class Condition:
    field: Field
    op: Op
    # None for is_empty/not_empty; a tuple for in/not_in/between; otherwise one value of the field's type.
    value: Value


@dataclass(frozen=True)
class Engagement:
    """The lead has (``happened``) or has not had an activity of ``event`` kind in the window."""

    event: str
    within_days: int | None = None
    campaign: str | None = None
    happened: bool = True


@dataclass(frozen=True)
class EnteredStage:
    stage: Stage
    within_days: int | None = None


RuleNode: TypeAlias = AllOf | AnyOf | Not | Condition | Engagement | EnteredStage


# --- parsing -----------------------------------------------------------------------------------------------


def parse_rules(data: Any) -> RuleNode:
    """Validate rule data (a dict, or its JSON text) into a typed tree.

    Raises ``ValidationError`` naming the faulty node, e.g. ``all[2].op: unknown operator 'equals'``. Every text
    the tree keeps must be storable and every number finite and within 64 bits (``nurture.inputs``); rule text
    is strict JSON nested at most ``MAX_RULES_JSON_DEPTH`` deep."""
    if isinstance(data, str | bytes):
        try:
            # Paths inside the rules read as the parser's do (all[2].value); the whole is "rules".
            data = load_json(data, "", max_depth=MAX_RULES_JSON_DEPTH)
        except ValidationError as exc:
            raise ValidationError(exc.message, where=exc.where or "rules") from None
    return _Parser().node(data, "", depth=1)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    """A value as the person wrote it, in JSON spelling, shortened; printable whatever it holds."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
        if unstorable_reason(text) is not None:
            text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        # Nested too deep to spell out (rule data given as Python objects has no JSON depth bound).
        text = reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_RULE_SHAPES = (
    "a group (all, any, not), a condition (field, op, value), an engagement (event or no_event) or entered_stage"
)


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0

    def node(self, data: Any, path: str, depth: int) -> RuleNode:
        where = path or "rules"
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValidationError(f"too many rules (more than {MAX_NODES})", where=where)
        if depth > MAX_DEPTH:
            raise ValidationError(f"rules nest more than {MAX_DEPTH} levels deep", where=where)
        if not isinstance(data, dict):
            raise ValidationError(f"expected a rule object ({_RULE_SHAPES}), got {_type_name(data)}", where=where)
        for key in data:
            reason = unstorable_reason(key) if isinstance(key, str) else None
            if reason is not None:
                raise ValidationError(f"a key {reason}", where=where)
        for group in ("all", "any", "not"):
            if group in data:
                return self.group(group, data, path, depth)
        if {"field", "op", "value"} & data.keys():
            return self.condition(data, path)
        if {"event", "no_event"} & data.keys():
            return self.engagement(data, path)
        if "entered_stage" in data:
            return self.entered_stage(data, path)
        if not data:
            raise ValidationError(f"empty rule; expected {_RULE_SHAPES}", where=where)
        keys = ", ".join(repr(str(key)) for key in data)
        raise ValidationError(f"unknown rule with key(s) {keys}; expected {_RULE_SHAPES}", where=where)

    @staticmethod
    def _no_other_keys(data: dict[str, Any], allowed: tuple[str, ...], path: str, what: str) -> None:
        for key in data:
            if key not in allowed:
                expected = ", ".join(allowed)
                raise ValidationError(f"unexpected key in {what} (expected {expected})", where=_join(path, str(key)))

    def group(self, key: str, data: dict[str, Any], path: str, depth: int) -> RuleNode:
        for other in data:
            if other != key:
                raise ValidationError(
                    f"unexpected key beside '{key}' (a group has exactly one key)", where=_join(path, str(other))
                )
        inner = _join(path, key)
        if key == "not":
            return Not(self.node(data[key], inner, depth + 1))
        children = data[key]
        if not isinstance(children, list):
            raise ValidationError(f"expected a list of rules, got {_type_name(children)}", where=inner)
        rules = tuple(self.node(child, f"{inner}[{i}]", depth + 1) for i, child in enumerate(children))
        return AllOf(rules) if key == "all" else AnyOf(rules)

    # -- conditions --

    def condition(self, data: dict[str, Any], path: str) -> Condition:
        self._no_other_keys(data, ("field", "op", "value"), path, "a condition")
        field = self.field(data.get("field"), _join(path, "field"), "field" in data)
        op = self.op(data.get("op"), _join(path, "op"), "op" in data, field)
        value_path = _join(path, "value")
        if op in _EMPTINESS:
            if data.get("value") is not None:
                raise ValidationError(f"operator '{op}' takes no value", where=value_path)
            return Condition(field, op, None)
        if "value" not in data:
            raise ValidationError(f"missing (operator '{op}' needs a value)", where=value_path)
        return Condition(field, op, self.value(data["value"], value_path, field, op))

    @staticmethod
    def field(raw: Any, where: str, present: bool) -> Field:
        if not present:
            raise ValidationError("missing (a condition needs field, op and value)", where=where)
        if not isinstance(raw, str):
            raise ValidationError(f"expected a field name, got {_type_name(raw)}", where=where)
        clean_text(raw, where)
        if raw in LEAD_FIELDS:
            return LEAD_FIELDS[raw]
        if raw == TAGS_FIELD.name:
            return TAGS_FIELD
        if raw.startswith(ATTRIBUTE_PREFIX):
            name = raw.removeprefix(ATTRIBUTE_PREFIX)
            if not _ATTRIBUTE_NAME.match(name):
                raise ValidationError(
                    f"bad attribute name {name!r}: use 1 to 100 characters without dots, quotes or backslashes",
                    where=where,
                )
            return Field(raw, FieldKind.ATTRIBUTE)
        message = f"unknown field {raw!r}"
        close = difflib.get_close_matches(raw, [*LEAD_FIELDS, TAGS_FIELD.name], n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        else:
            message += "; use a lead field such as 'country', 'tags' or 'attributes.NAME'"
        raise ValidationError(message, where=where)

    @staticmethod
    def op(raw: Any, where: str, present: bool, field: Field) -> Op:
        if not present:
            raise ValidationError("missing (a condition needs field, op and value)", where=where)
        if not isinstance(raw, str):
            raise ValidationError(f"expected an operator such as '=' or 'contains', got {_type_name(raw)}", where=where)
        try:
            op = Op(raw)
        except ValueError:
            raise ValidationError(f"unknown operator {raw!r}", where=where) from None
        if op not in field.operators:
            if field.kind is not FieldKind.ATTRIBUTE and op in _EMPTINESS:
                reason = f"field {field.name!r} always has a value"
            else:
                reason = f"operator '{op}' does not apply to {field.kind} field {field.name!r}"
            allowed = ", ".join(field.operators)
            raise ValidationError(f"{reason}; use one of {allowed}", where=where)
        return op

    def value(self, raw: Any, where: str, field: Field, op: Op) -> Value:
        if op in (Op.IN, Op.NOT_IN, Op.BETWEEN):
            return self.list_value(raw, where, field, op)
        return self.scalar(raw, where, field, op)

    def list_value(self, raw: Any, where: str, field: Field, op: Op) -> tuple[Scalar, ...]:
        if op is Op.BETWEEN:
            if not isinstance(raw, list) or len(raw) != 2:
                raise ValidationError(
                    f"operator 'between' needs a list of two values [low, high], got {_show(raw)}", where=where
                )
        elif not isinstance(raw, list) or not raw:
            raise ValidationError(f"operator '{op}' needs a non-empty list of values, got {_show(raw)}", where=where)
        if len(raw) > MAX_LIST_LENGTH:
            raise ValidationError(f"at most {MAX_LIST_LENGTH} values, got {len(raw)}", where=where)
        values: list[Scalar] = []
        for i, item in enumerate(raw):
            value = self.scalar(item, f"{where}[{i}]", field, op)
            if field.kind is FieldKind.ATTRIBUTE and values and _attribute_type(value) != _attribute_type(values[0]):
                raise ValidationError(
                    f"mixes {_type_name(values[0])} and {_type_name(value)}; "
                    "compare an attribute with values of one type",
                    where=f"{where}[{i}]",
                )
            if value not in values or op is Op.BETWEEN:
                values.append(value)
        if op is Op.BETWEEN and all(_is_number(v) for v in values):
            values.sort()
        return tuple(values)

    def scalar(self, raw: Any, where: str, field: Field, op: Op) -> Scalar:
        kind = field.kind
        if kind in (FieldKind.TEXT, FieldKind.EMAIL):
            return _text(raw, where, non_empty=op in _TEXT_MATCH)
        if kind is FieldKind.CHOICE:
            return _choice(raw, where, field)
        if kind is FieldKind.NUMBER:
            return _number(raw, where)
        if kind is FieldKind.DATE:
            return _date(raw, where)
        if kind is FieldKind.BOOLEAN:
            if not isinstance(raw, bool):
                raise ValidationError(f"expected true or false, got {_show(raw)}", where=where)
            return raw
        if kind is FieldKind.TAGS:
            name = _text(raw, where, non_empty=True).strip()
            if not name or len(name) > MAX_TAG_LENGTH:
                raise ValidationError(f"expected a tag name of 1 to {MAX_TAG_LENGTH} characters", where=where)
            return name
        return _attribute_value(raw, where, op)

    # -- engagement and stage entry --

    def engagement(self, data: dict[str, Any], path: str) -> Engagement:
        if "event" in data and "no_event" in data:
            raise ValidationError("give either event or no_event, not both", where=_join(path, "no_event"))
        key = "event" if "event" in data else "no_event"
        self._no_other_keys(data, (key, "within_days", "campaign"), path, f"an '{key}' rule")
        where = _join(path, key)
        event = data[key]
        if isinstance(event, str):
            clean_text(event, where)
        if not isinstance(event, str) or not event.strip() or len(event) > MAX_EVENT_LENGTH:
            raise ValidationError(
                f"expected an event name such as 'opened' or 'clicked' (1 to {MAX_EVENT_LENGTH} characters), "
                f"got {_show(event)}",
                where=where,
            )
        campaign = data.get("campaign")
        if isinstance(campaign, str):
            clean_text(campaign, _join(path, "campaign"))
        if campaign is not None and (
            not isinstance(campaign, str) or not campaign.strip() or len(campaign) > MAX_CAMPAIGN_LENGTH
        ):
            raise ValidationError(
                f"expected a campaign slug (1 to {MAX_CAMPAIGN_LENGTH} characters), got {_show(campaign)}",
                where=_join(path, "campaign"),
            )
        return Engagement(
            event=event.strip(),
            within_days=_within_days(data, path),
            campaign=campaign.strip() if campaign is not None else None,
            happened=key == "event",
        )

    def entered_stage(self, data: dict[str, Any], path: str) -> EnteredStage:
        self._no_other_keys(data, ("entered_stage", "within_days"), path, "an 'entered_stage' rule")
        raw = data["entered_stage"]
        where = _join(path, "entered_stage")
        if not isinstance(raw, str):
            raise ValidationError(f"expected a stage name, got {_show(raw)}", where=where)
        try:
            stage = parse_stage(raw)
        except ValueError as exc:
            raise ValidationError(str(exc), where=where) from None
        return EnteredStage(stage, _within_days(data, path))


def _within_days(data: dict[str, Any], path: str) -> int | None:
    raw = data.get("within_days")
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_DAYS:
        raise ValidationError(
            f"expected a whole number of days from 1 to {MAX_DAYS}, got {_show(raw)}", where=_join(path, "within_days")
        )
    return raw


def _text(raw: Any, where: str, *, non_empty: bool) -> str:
    if not isinstance(raw, str):
        raise ValidationError(f"expected text, got {_show(raw)}", where=where)
    if non_empty and not raw:
        raise ValidationError("expected non-empty text", where=where)
    if len(raw) > MAX_TEXT_LENGTH:
        raise ValidationError(f"text longer than {MAX_TEXT_LENGTH} characters", where=where)
    return clean_text(raw, where)


def _choice(raw: Any, where: str, field: Field) -> StrEnum:
    assert field.choices is not None
    if isinstance(raw, str):
        if field.choices is Stage:
            try:
                return parse_stage(raw)
            except ValueError as exc:
                raise ValidationError(str(exc), where=where) from None
        try:
            return field.choices(raw.strip().lower())
        except ValueError:
            pass
    names = ", ".join(member.value for member in field.choices)
    shown = repr(raw) if isinstance(raw, str) else _show(raw)
    raise ValidationError(f"unknown {field.name} {shown}; expected one of {names}", where=where)


def _number(raw: Any, where: str) -> int | float:
    """A number the databases can compare: finite, and an integer within 64 bits (10**30 is refused here, not
    by PostgreSQL's numeric overflow at query time)."""
    if not _is_number(raw):
        raise ValidationError(f"expected a number, got {_show(raw)}", where=where)
    return check_number(raw, where)


_DATE_HINT = 'an ISO date such as "2026-01-31", a date-time such as "2026-01-31T09:00:00Z", or {"days_ago": 30}'


def _date(raw: Any, where: str) -> DateValue:
    if isinstance(raw, dict):
        if set(raw) != {"days_ago"}:
            raise ValidationError(f"expected {_DATE_HINT}, got {_show(raw)}", where=where)
        days = raw["days_ago"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
            raise ValidationError(
                f"expected a whole number of days from 0 to {MAX_DAYS}, got {_show(days)}", where=f"{where}.days_ago"
            )
        return DaysAgo(days)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if day < date.max:
                return Day(day)
        try:
            parsed = datetime.fromisoformat(text)
            return Instant(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC))
        except (ValueError, OverflowError):
            pass
    raise ValidationError(f"expected {_DATE_HINT}, got {_show(raw)}", where=where)


def _attribute_type(value: Scalar) -> str:
    return "boolean" if isinstance(value, bool) else "number" if _is_number(value) else "text"


def _attribute_value(raw: Any, where: str, op: Op) -> Scalar:
    """Attributes are schemaless: the rule's value says whether to compare as text, number or boolean."""
    if op in _TEXT_MATCH:
        return _text(raw, where, non_empty=True)
    if op in _ORDERING:
        return _number(raw, where)
    if isinstance(raw, str):
        return _text(raw, where, non_empty=False)
    if isinstance(raw, bool):
        return raw
    if _is_number(raw):
        return _number(raw, where)
    if raw is None:
        raise ValidationError("null is not a value to compare with; use is_empty or not_empty", where=where)
    raise ValidationError(f"expected text, a number or true/false, got {_type_name(raw)}", where=where)


# --- writing back ------------------------------------------------------------------------------------------


def rules_to_data(node: RuleNode) -> dict[str, Any]:
    """The canonical JSON form of a tree: what is stored, and what ``parse_rules`` reads back to ``node``."""
    if isinstance(node, AllOf):
        return {"all": [rules_to_data(child) for child in node.rules]}
    if isinstance(node, AnyOf):
        return {"any": [rules_to_data(child) for child in node.rules]}
    if isinstance(node, Not):
        return {"not": rules_to_data(node.rule)}
    if isinstance(node, Condition):
        data: dict[str, Any] = {"field": node.field.name, "op": node.op.value}
        if node.value is not None:
            data["value"] = _value_to_data(node.value)
        return data
    if isinstance(node, Engagement):
        data = {"event" if node.happened else "no_event": node.event}
        if node.within_days is not None:
            data["within_days"] = node.within_days
        if node.campaign is not None:
            data["campaign"] = node.campaign
        return data
    data = {"entered_stage": node.stage.value}
    if node.within_days is not None:
        data["within_days"] = node.within_days
    return data


def _value_to_data(value: Value) -> Any:
    if isinstance(value, tuple):
        return [_value_to_data(item) for item in value]
    if isinstance(value, Day | Instant | DaysAgo):
        return value.to_data()
    if isinstance(value, StrEnum):
        return value.value
    return value


def describe_rules(node: RuleNode) -> str:
    """A one-line reading of the rules for people, e.g. ``status = active and (opened within 30 days)``."""
    return _describe(node, top=True)


def _describe(node: RuleNode, *, top: bool = False) -> str:
    if isinstance(node, AllOf | AnyOf):
        if not node.rules:
            return "every lead" if isinstance(node, AllOf) else "no lead"
        joiner = " and " if isinstance(node, AllOf) else " or "
        text = joiner.join(_describe(child) for child in node.rules)
        return text if top or len(node.rules) == 1 else f"({text})"
    if isinstance(node, Not):
        return f"not {_describe(node.rule, top=False)}"
    if isinstance(node, Condition):
        if node.value is None:
            return f"{node.field.name} {node.op.value.replace('_', ' ')}"
        return f"{node.field.name} {node.op.value.replace('_', ' ')} {_show(_value_to_data(node.value))}"
    window = f" within {node.within_days} days" if node.within_days is not None else ""
    if isinstance(node, Engagement):
        campaign = f" in campaign {node.campaign}" if node.campaign else ""
        return f"{'' if node.happened else 'no '}{node.event}{campaign}{window}"
    return f"entered stage {node.stage.value}{window}"
