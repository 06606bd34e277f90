"""The scoring file: settings (half-life, lifecycle thresholds, machine engagement, soft bounces) and rules.

It is read, checked in full (every problem named with its place: ``scoring.yaml:14:9: rules[3].cap.per: ...``)
and stored in the database by ``nurture scoring load``; what runs is the stored copy. A fresh database is
seeded from ``nurture/scoring/default_rules.yaml`` by the migration that creates the tables.

A rule has exactly one of ``event`` (engagement: points for each event of that type, optionally filtered by
``where``, optionally capped per period) or ``fit`` (points while the lead matches segment rules over its
profile). See docs/scoring.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nurture.campaigns.definition import link_matches
from nurture.campaigns.validation import load_yaml
from nurture.errors import ValidationError
from nurture.segments.rules import AllOf, AnyOf, Condition, Not, RuleNode, parse_rules

DEFAULT_FILE = Path(__file__).with_name("default_rules.yaml")
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
PERIODS = ("day", "week", "month")
MAX_POINTS = 10_000
# A fit rule on the score itself would feed on its own output.
_FIT_FORBIDDEN_FIELDS = frozenset({"score", "temperature"})
_SETTINGS_KEYS = ("half_life_days", "lifecycle", "machine_engagement", "soft_bounce_limit")
_RULE_KEYS = ("name", "event", "where", "fit", "points", "cap", "enabled")


@dataclass(frozen=True)
class Cap:
    points: int
    per: str


@dataclass(frozen=True)
class EngagementRule:
    name: str
    event: str
    points: int
    # (key, expected) pairs, all of which must hold: campaign, url, or properties.NAME.
    where: tuple[tuple[str, Any], ...] = ()
    cap: Cap | None = None
    id: int | None = None

    def matches(self, event_type: str, campaign: str | None, url: str | None, properties: Mapping[str, Any]) -> bool:
        if event_type != self.event:
            return False
        for key, expected in self.where:
            if key == "campaign":
                actual: Any = campaign
            elif key == "url":
                actual = url
            else:
                actual = properties.get(key.removeprefix("properties."))
            if not _value_matches(expected, actual):
                return False
        return True


@dataclass(frozen=True)
class FitRule:
    name: str
    rules: RuleNode
    points: int
    id: int | None = None


Rule = EngagementRule | FitRule


@dataclass(frozen=True)
class ScoringSettings:
    # Engagement points halve every this many days.
    half_life_days: float = 30.0
    # Promotion thresholds on the current score; None turns a promotion off.
    mql_at: int | None = 50
    sql_at: int | None = 100
    # Whether opens and clicks flagged as machine count for scoring and branches.
    count_machine_engagement: bool = False
    # Soft bounces in a row (no delivery between them) that make a hard bounce.
    soft_bounce_limit: int = 3

    @property
    def half_life_us(self) -> float:
        return self.half_life_days * 86_400_000_000


@dataclass(frozen=True)
class ScoringConfig:
    settings: ScoringSettings = field(default_factory=ScoringSettings)
    rules: tuple[Rule, ...] = ()

    @property
    def engagement_rules(self) -> tuple[EngagementRule, ...]:
        return tuple(rule for rule in self.rules if isinstance(rule, EngagementRule))

    @property
    def fit_rules(self) -> tuple[FitRule, ...]:
        return tuple(rule for rule in self.rules if isinstance(rule, FitRule))


def _value_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, list):
        return any(_value_matches(item, actual) for item in expected)
    if isinstance(expected, str) and isinstance(actual, str):
        return link_matches(expected, actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return expected == actual


# --- reading ------------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[tuple[str | int, ...], str]] = []
        # Problems about a key itself (an unknown key): placed at the key, not at its value.
        self.at_key: set[tuple[str | int, ...]] = set()

    def add(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> None:
        self.items.append((path, message))
        if at_key:
            self.at_key.add(path)


def _where_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _integer(raw: Any, path: tuple[str | int, ...], problems: _Problems, *, low: int, high: int) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        problems.add(path, f"expected a whole number from {low} to {high}, got {raw!r}")
        return None
    return raw


def _unknown_keys(
    data: Mapping[str, Any], known: tuple[str, ...], path: tuple[str | int, ...], problems: _Problems
) -> None:
    for key in data:
        if key not in known:
            problems.add((*path, key), f"unknown key; expected one of {', '.join(known)}", at_key=True)


def _settings(data: Mapping[str, Any], problems: _Problems) -> ScoringSettings:
    defaults = ScoringSettings()
    values: dict[str, Any] = {}
    if "half_life_days" in data:
        raw = data["half_life_days"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.01 <= raw <= 3650:
            problems.add(("half_life_days",), f"expected a number of days from 0.01 to 3650, got {raw!r}")
        else:
            values["half_life_days"] = float(raw)
    if "lifecycle" in data:
        lifecycle = data["lifecycle"]
        if not isinstance(lifecycle, dict):
            problems.add(("lifecycle",), "expected a mapping such as {mql_at: 50, sql_at: 100}")
        else:
            _unknown_keys(lifecycle, ("mql_at", "sql_at"), ("lifecycle",), problems)
            for key in ("mql_at", "sql_at"):
                if key in lifecycle:
                    raw = lifecycle[key]
                    values[key] = (
                        None if raw is None else _integer(raw, ("lifecycle", key), problems, low=1, high=1_000_000)
                    )
            mql, sql = values.get("mql_at", defaults.mql_at), values.get("sql_at", defaults.sql_at)
            if mql is not None and sql is not None and mql >= sql:
                problems.add(("lifecycle", "sql_at"), f"must be above mql_at ({mql}), got {sql}")
    if "machine_engagement" in data:
        raw = data["machine_engagement"]
        if raw not in ("ignore", "count"):
            problems.add(("machine_engagement",), f"expected ignore or count, got {raw!r}")
        else:
            values["count_machine_engagement"] = raw == "count"
    if "soft_bounce_limit" in data:
        limit = _integer(data["soft_bounce_limit"], ("soft_bounce_limit",), problems, low=1, high=100)
        if limit is not None:
            values["soft_bounce_limit"] = limit
    return ScoringSettings(**{**defaults.__dict__, **values})


def _cap(raw: Any, path: tuple[str | int, ...], problems: _Problems) -> Cap | None:
    if not isinstance(raw, dict):
        problems.add(path, "expected a mapping such as {points: 10, per: day}")
        return None
    _unknown_keys(raw, ("points", "per"), path, problems)
    points = _integer(raw.get("points"), (*path, "points"), problems, low=1, high=MAX_POINTS)
    per = raw.get("per")
    if per not in PERIODS:
        problems.add((*path, "per"), f"expected one of {', '.join(PERIODS)}, got {per!r}")
        return None
    return Cap(points, per) if points is not None else None


def _where(raw: Any, path: tuple[str | int, ...], problems: _Problems) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, dict) or not raw:
        problems.add(path, "expected a mapping such as {url: 'https://example.com/pricing*'}")
        return ()
    pairs: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if key not in ("campaign", "url") and not (key.startswith("properties.") and len(key) > len("properties.")):
            problems.add((*path, key), "expected campaign, url or properties.NAME")
            continue
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(item, dict | list) or item is None for item in values):
            problems.add(
                (*path, key), "expected text (* matches any run of characters), a number, true/false or a list"
            )
            continue
        pairs.append((key, value))
    return tuple(pairs)


def _fields(node: RuleNode) -> set[str]:
    if isinstance(node, AllOf | AnyOf):
        return set().union(*(_fields(child) for child in node.rules))
    if isinstance(node, Not):
        return _fields(node.rule)
    if isinstance(node, Condition):
        return {node.field.name}
    return {"(event)"}


def _rule(raw: Any, index: int, problems: _Problems, names: set[str]) -> Rule | None:
    path: tuple[str | int, ...] = ("rules", index)
    if not isinstance(raw, dict):
        problems.add(path, "expected a mapping with name, event or fit, and points")
        return None
    _unknown_keys(raw, _RULE_KEYS, path, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not RULE_NAME.match(name):
        problems.add((*path, "name"), f"expected a name of lowercase letters, digits, - and _ (got {name!r})")
        name = None
    elif name in names:
        problems.add((*path, "name"), f"another rule is already called {name!r}")
    else:
        names.add(name)
    points = _integer(raw.get("points"), (*path, "points"), problems, low=-MAX_POINTS, high=MAX_POINTS)
    if points == 0:
        problems.add((*path, "points"), "a rule giving 0 points does nothing; remove it or set enabled: false")
    if ("event" in raw) == ("fit" in raw):
        problems.add(path, "a rule has exactly one of event (engagement) or fit (profile)")
        return None
    if "event" in raw:
        event = raw["event"]
        if not isinstance(event, str) or not EVENT_NAME.match(event):
            problems.add((*path, "event"), f"expected an event name such as opened or form_submitted, got {event!r}")
            return None
        where = _where(raw["where"], (*path, "where"), problems) if "where" in raw else ()
        cap = _cap(raw["cap"], (*path, "cap"), problems) if "cap" in raw else None
        if name is None or points is None:
            return None
        return EngagementRule(name, event, points, where, cap)
    for key in ("where", "cap"):
        if key in raw:
            problems.add((*path, key), f"{key} belongs to event rules; a fit rule has only fit and points")
    try:
        rules = parse_rules(raw["fit"])
    except ValidationError as exc:
        problems.add((*path, "fit", *_split(exc.where)), exc.message)
        return None
    wrong = _fields(rules) & (_FIT_FORBIDDEN_FIELDS | {"(event)"})
    if wrong:
        problems.add((*path, "fit"), f"fit rules look at the profile only, not at {', '.join(sorted(wrong))}")
        return None
    if name is None or points is None:
        return None
    return FitRule(name, rules, points)


def _split(where: str | None) -> tuple[str | int, ...]:
    if not where:
        return ()
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", where):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def parse_config(data: Any) -> tuple[ScoringConfig, _Problems]:
    """The configuration in ``data`` and every problem found."""
    problems = _Problems()
    if not isinstance(data, dict):
        problems.add((), "a scoring file is a mapping with settings and rules")
        return ScoringConfig(), problems
    _unknown_keys(data, (*_SETTINGS_KEYS, "rules"), (), problems)
    settings = _settings(data, problems)
    raw_rules = data.get("rules", [])
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        problems.add(("rules",), "expected a list of rules")
    else:
        names: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule = _rule(raw, index, problems, names)
            if rule is not None and (not isinstance(raw, dict) or raw.get("enabled", True) is not False):
                rules.append(rule)
            if isinstance(raw, dict) and "enabled" in raw and not isinstance(raw["enabled"], bool):
                problems.add(("rules", index, "enabled"), "expected true or false")
    return ScoringConfig(settings, tuple(rules)), problems


def read_config(text: str, source: str) -> tuple[ScoringConfig, dict[str, Any]]:
    """Parse and check a scoring file; ``ValidationError`` lists every problem, one per line, with its place."""
    data, source_map, issues = load_yaml(text, source)
    if issues:
        raise ValidationError("\n".join(str(issue) for issue in issues))
    config, problems = parse_config(data)
    if problems.items:
        lines = []
        for path, message in problems.items:
            position = source_map.locate(path, at_key=path in problems.at_key)
            place = f"{source}:{position[0]}:{position[1]}" if position else source
            lines.append(f"{place}: {_where_text(path) or 'file'}: {message}")
        raise ValidationError("\n".join(lines))
    return config, data


def read_config_file(path: Path) -> tuple[ScoringConfig, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read the scoring file: {exc}", where=str(path)) from None
    return read_config(text, str(path))


def settings_document(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in _SETTINGS_KEYS if key in data}


def rule_from_definition(definition: Mapping[str, Any], rule_id: int) -> Rule:
    """A stored rule, checked when it was loaded, back into its parsed form."""
    config, problems = parse_config({"rules": [dict(definition)]})
    if problems.items or not config.rules:
        raise ValidationError(f"stored scoring rule {rule_id} is invalid: {problems.items}")
    rule = config.rules[0]
    return (
        EngagementRule(rule.name, rule.event, rule.points, rule.where, rule.cap, rule_id)
        if isinstance(rule, EngagementRule)
        else FitRule(rule.name, rule.rules, rule.points, rule_id)
    )
