"""Reading and checking campaign definitions: every problem is reported at once, each with where it is.

A campaign comes from a YAML file (``nurture campaigns load``), or as data (the web editor later, the
stored JSON when a campaign is activated). It is checked in three passes, so one mistake never hides
another:

1. YAML, read in a YAML 1.2 "core schema" dialect: ``yes``, ``no``, ``on`` and ``off`` are text (a
   branch's ``yes:``/``no:`` keys must stay keys), and so are ``09:30`` and ``2026-12-01``; the line and
   column of every node is recorded, and duplicate keys are errors instead of silently overwriting;
2. the JSON Schema in schema.json (also shipped for editors): keys, types and spellings;
3. what a schema cannot say: step references, unreachable steps, loops with no wait, durations, dates,
   one-of choices, Jinja syntax in subjects, segment rules, and templates and segments that must exist.

Only a campaign without errors becomes a ``CampaignDefinition``. Warnings (a segment that could not be
checked offline) do not stop it.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jinja2 import TemplateSyntaxError
from sqlalchemy.orm import Session

from nurture.campaigns.definition import (
    EMAIL_EVENTS,
    END_OF_DAY,
    STEP_SHAPES,
    CampaignDefinition,
    Duration,
    EmailEvent,
    StepType,
    parse_date,
    parse_time,
    successor_keys,
    template_file,
)
from nurture.errors import ValidationError
from nurture.leads.service import validate_timezone
from nurture.rendering.filters import DATE_NAMES
from nurture.rendering.sandbox import make_environment
from nurture.rendering.sources import default_template_directory, language_of, localized_name
from nurture.rendering.stored import StoredTemplateSource
from nurture.segments.rules import parse_rules
from nurture.segments.service import find_segment

SCHEMA_PATH = Path(__file__).with_name("schema.json")
EMAIL_TEMPLATES_DIR = default_template_directory()
CAMPAIGN_SUFFIXES = (".yaml", ".yml")
# A campaign file is a few kilobytes; anything near this is a mistake (or an attack on the parser).
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 50_000
# Beyond 2^53, JSON readers disagree: PostgreSQL's jsonb keeps 3.786714823777675e16 as the exact decimal
# 37867148237776750, which reads back as another number than the float that was stored.
MAX_NUMBER = 2**53

DataPath = tuple[str | int, ...]
# Whether a named thing (an email template, a segment) exists.
NameCheck = Callable[[str], bool]
TemplateCheck = NameCheck


def templates_in(directory: Path) -> TemplateCheck:
    """A template check for templates stored as files in ``directory``, under the name the engine renders
    (``template_file``: ``welcome`` is ``welcome.html``)."""

    def exists(name: str) -> bool:
        return (directory / template_file(name)).is_file()

    return exists


email_template_exists: TemplateCheck = templates_in(EMAIL_TEMPLATES_DIR)


def _or_stored(template_exists: TemplateCheck, session: Session) -> TemplateCheck:
    """Also a template saved in the database (``nurture templates save``, the UI): the renderer serves those
    before the files, so a campaign may use one that has no file."""
    stored = StoredTemplateSource.bound_to(session)

    def exists(name: str) -> bool:
        return template_exists(name) or stored.get(template_file(name)) is not None

    return exists


# --- issues ------------------------------------------------------------------------------------------------


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(path: DataPath) -> str:
    """``("steps", 3, "yes")`` as ``steps[3].yes``; odd keys quoted: ``attributes["plan.tier"]``."""
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        elif _PLAIN_KEY.fullmatch(key):
            text += f".{key}" if text else key
        else:
            text += f"[{json.dumps(key, ensure_ascii=False)}]"
    return text


@dataclass(frozen=True)
class Issue:
    """One problem: what, where in the data (``path``), and where in the file (1-based line and column)."""

    message: str
    path: DataPath = ()
    severity: Severity = Severity.ERROR
    source: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        place = ":".join(str(part) for part in (self.source, self.line, self.column) if part is not None)
        parts = [part for part in (place, self.severity.value, format_path(self.path)) if part]
        return ": ".join([*parts, self.message])


class CampaignInvalid(ValidationError):
    """A campaign (or several files) has errors; ``issues`` holds all of them, warnings too."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        errors = [issue for issue in self.issues if issue.is_error]
        super().__init__("\n".join(str(issue) for issue in errors) or "invalid campaign")


@dataclass(frozen=True)
class CheckedCampaign:
    source: str | None
    # The data as read (None when the YAML could not be read), and the definition when it has no error.
    data: Any
    definition: CampaignDefinition | None
    issues: tuple[Issue, ...]
    source_map: SourceMap | None = None

    def issue(self, path: DataPath, message: str, severity: Severity = Severity.ERROR) -> Issue:
        """A further issue about this campaign (found by the caller), placed in its file."""
        return _place(_Problem(path, message, severity), self.source_map, self.source)

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(issue for issue in self.issues if not issue.is_error)


@dataclass(frozen=True)
class _Problem:
    """An issue before it is placed in a file."""

    path: DataPath
    message: str
    severity: Severity = Severity.ERROR
    # Point at the key rather than its value (an unknown key).
    at_key: bool = False
    # Where it is when no path can say (a second key of the same name).
    position: tuple[int, int] | None = None


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of the data starts in its file, 1-based."""

    values: dict[DataPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[DataPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: DataPath, *, at_key: bool = False) -> tuple[int, int] | None:
        if at_key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


# --- the YAML dialect ----------------------------------------------------------------------------------------

_CORE_SCHEMA: tuple[tuple[str, str, str | list[str]], ...] = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+.0123456789"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
)


class _CoreLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    yaml_implicit_resolvers: dict[Any, Any] = {}


class _CoreDumper(yaml.SafeDumper):
    yaml_implicit_resolvers: dict[Any, Any] = {}

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as people write them.
        super().increase_indent(flow, False)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """Also quote text that YAML 1.1 readers (editors, PyYAML's defaults) would take for something else,
        such as 10:00 (600) or = , and every time of day alike; keep the branch keys yes and no plain."""
        tag = super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode and implicit[0] and tag == _STR and value not in ("yes", "no"):
            return _TIMESTAMP if _CLOCK_TIME.fullmatch(value) else _YAML_1_1.resolve(kind, value, implicit)
        return tag


for _tag, _pattern, _first in _CORE_SCHEMA:
    for _cls in (_CoreLoader, _CoreDumper):
        _cls.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))

_YAML_1_1 = yaml.resolver.Resolver()
_CLOCK_TIME = re.compile(r"[0-9]{1,2}:[0-9]{2}")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


def dump_yaml(data: Any) -> str:
    """Write data in the dialect ``load_yaml`` reads back to equal data."""
    return yaml.dump(data, Dumper=_CoreDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


class _Reader:
    """Turns a composed YAML node tree into plain data, recording where each value came from."""

    def __init__(self) -> None:
        self.source_map = SourceMap()
        self.problems: list[_Problem] = []
        self.nodes = 0

    def read(self, node: yaml.Node, path: DataPath, ancestors: frozenset[int]) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        self.source_map.values.setdefault(path, _position(node.start_mark))
        if id(node) in ancestors:
            self.problems.append(_Problem(path, "this alias contains itself"))
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        inside = ancestors | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            self.check_tag(node, _SEQ, path)
            return [self.read(child, (*path, index), inside) for index, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        self.check_tag(node, _MAP, path)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                position = _position(key_node.start_mark)
                self.problems.append(
                    _Problem(path, "a key must be plain text, not a list or mapping", position=position)
                )
                continue
            key = key_node.value
            key_path = (*path, key)
            if key in result:
                first_line = self.source_map.keys[key_path][0]
                message = f"duplicate key {key!r} (first given on line {first_line})"
                self.problems.append(_Problem(key_path, message, position=_position(key_node.start_mark)))
                continue
            self.source_map.keys[key_path] = _position(key_node.start_mark)
            result[key] = self.read(value_node, key_path, inside)
        return result

    def scalar(self, node: yaml.ScalarNode, path: DataPath) -> Any:
        tag, text = node.tag, node.value
        try:
            if tag in (_STR, "!"):
                return text
            if tag in (_INT, _FLOAT):
                number = int(text) if tag == _INT else float(text)
                if not math.isfinite(number) or abs(number) > MAX_NUMBER:
                    self.problems.append(_Problem(path, f"{text} is too large a number (at most 2^53)"))
                    return None
                return number
            if tag == _BOOL:
                return text.lower() == "true"
            if tag == _NULL:
                return None
        except ValueError:
            self.problems.append(_Problem(path, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}"))
            return None
        self.problems.append(_Problem(path, f"unsupported YAML tag {tag}"))
        return None

    def check_tag(self, node: yaml.Node, expected: str, path: DataPath) -> None:
        if node.tag != expected:
            self.problems.append(_Problem(path, f"unsupported YAML tag {node.tag}"))


class _TooLarge(Exception):
    pass


def _position(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def load_yaml(text: str, source: str | None = None) -> tuple[Any, SourceMap, list[Issue]]:
    """Read one YAML document into plain data (None on failure), its source map and any reading errors."""
    try:
        node = yaml.compose(text, Loader=_CoreLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        line, column = _position(mark) if mark is not None else (None, None)
        return None, SourceMap(), [Issue(message, source=source, line=line, column=column)]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"YAML error: {exc.reason} (character U+{code:04X})"
        return None, SourceMap(), [Issue(message, source=source, line=line, column=column)]
    except yaml.YAMLError as exc:
        return None, SourceMap(), [Issue(f"YAML error: {exc}", source=source)]
    if node is None:
        return None, SourceMap(), [Issue("the file is empty: a campaign is a YAML mapping", source=source)]
    reader = _Reader()
    try:
        data = reader.read(node, (), frozenset())
    except _TooLarge:
        return None, SourceMap(), [Issue(f"more than {MAX_NODES} YAML values: not a campaign", source=source)]
    except RecursionError:
        return None, SourceMap(), [Issue("YAML nested too deeply", source=source)]
    return data, reader.source_map, [_place(problem, reader.source_map, source) for problem in reader.problems]


def _place(problem: _Problem, source_map: SourceMap | None, source: str | None) -> Issue:
    position = problem.position
    if position is None and source_map is not None:
        position = source_map.locate(problem.path, at_key=problem.at_key)
    line, column = position if position else (None, None)
    return Issue(problem.message, problem.path, problem.severity, source, line, column)


# --- pass 2: the JSON Schema ------------------------------------------------------------------------------------


@cache
def campaign_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern with the JSON Schema (ECMA-262) meaning of a final ``$``: the very end of the text.

    Python's ``$`` also matches before a final newline, which would let ``"09:30\n"`` pass as a time."""
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    if validator.is_type(instance, "string") and not _pattern(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator() -> jsonschema.protocols.Validator:
    validator_class = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern_keyword})
    return validator_class(campaign_schema())


def _matches(definition: str, value: Any) -> bool:
    """Whether ``value`` has the form of schema definition ``definition`` (the schema already said if not)."""
    return (
        isinstance(value, str) and _pattern(campaign_schema()["$defs"][definition]["pattern"]).search(value) is not None
    )


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _show(value: Any) -> str:
    """A value as a person would recognise it in their file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _schema_problems(data: Any) -> list[_Problem]:
    """One problem per scalar (an empty name is not also "blank"), every problem of a mapping or list."""
    problems: list[_Problem] = []
    scalars_done: set[DataPath] = set()
    for error in _validator().iter_errors(data):
        for problem in _translate(error):
            if problem in problems or problem.path in scalars_done:
                continue
            problems.append(problem)
            if not isinstance(_value_at(data, problem.path), dict | list):
                scalars_done.add(problem.path)
    return problems


def _translate(error: jsonschema.ValidationError) -> list[_Problem]:
    """A jsonschema error as messages for the person who wrote the file."""
    path: DataPath = tuple(error.absolute_path)
    kind, instance, value = error.validator, error.instance, error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("x-expected")
    if "propertyNames" in error.absolute_schema_path:
        return [_Problem((*path, instance), f"bad name {_show(instance)}: expected {expected}", at_key=True)]
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        problems = []
        for key in instance:
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                if not hint:
                    unused = [name for name in allowed if name not in instance and name not in ("id", "type")]
                    hint = f"; expected {', '.join(unused)}" if unused else ""
                problems.append(_Problem((*path, key), f"unknown key {key!r}{hint}", at_key=True))
        return problems
    if kind == "required":
        return [_Problem(path, f"missing required key {key!r}") for key in value if key not in instance]
    if expected and kind in ("type", "const", "enum", "pattern", "minProperties", "maxProperties"):
        return [_Problem(path, f"expected {expected}, got {_show(instance)}")]
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"expected {' or '.join(_TYPE_WORDS[t] for t in _as_list(value))}, got {_show(instance)}",
        "enum": lambda: f"{_show(instance)} is not one of {', '.join(map(str, value))}{_did_you_mean(instance, value)}",
        "const": lambda: f"expected {_show(value)}, got {_show(instance)}",
        "pattern": lambda: f"{_show(instance)} does not have the expected form",
        "minLength": lambda: "must not be empty" if value == 1 else f"must be at least {value} characters long",
        "maxLength": lambda: f"is longer than {value} characters",
        "minItems": lambda: f"needs at least {value} item{'s' if value > 1 else ''}",
        "maxItems": lambda: f"has more than {value} items",
        "minimum": lambda: f"must be at least {value}, got {_show(instance)}",
        "maximum": lambda: f"must be at most {value}, got {_show(instance)}",
        "minProperties": lambda: "must not be empty",
        "maxProperties": lambda: f"has more than {value} key{'s' if value > 1 else ''}",
        "uniqueItems": lambda: f"lists {_show(_first_repeat(instance))} more than once",
    }
    return [_Problem(path, messages[kind]() if kind in messages else error.message)]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _first_repeat(items: list[Any]) -> Any:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


# --- pass 3: what the schema cannot say ------------------------------------------------------------------------

# The sandbox subject lines render in: it refuses nesting deeper than it can compile, as a syntax error.
_JINJA = make_environment(html=False)
_STEP_TYPES = {step_type.value: step_type for step_type in StepType}
_RULE_PATH_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _rule_path(where: str | None) -> DataPath:
    """``all[2].op`` (a path in segment rules) as ``("all", 2, "op")``; ``rules`` is the top."""
    if not where or where == "rules":
        return ()
    return tuple(int(index) if index else name for index, name in _RULE_PATH_TOKEN.findall(where))


class _Checker:
    def __init__(self, data: dict[str, Any], template_exists: TemplateCheck, segment_exists: NameCheck | None) -> None:
        self.data = data
        self.template_exists = template_exists
        self.segment_exists = segment_exists
        self.problems: list[_Problem] = []
        self.step_ids: dict[str, int] = {}
        # (path of the reference, index of the referenced step, index of the referring step)
        self.engagement_refs: list[tuple[DataPath, int, int]] = []

    def error(self, path: DataPath, message: str) -> None:
        self.problems.append(_Problem(path, message))

    def run(self) -> list[_Problem]:
        data = self.data
        self.storable((), data)
        if isinstance(data.get("timezone"), str):
            try:
                validate_timezone(data["timezone"])
            except ValueError as exc:
                self.error(("timezone",), str(exc))
        for index, trigger in enumerate(_list(data.get("entry"))):
            self.entry(("entry", index), trigger)
        reentry = data.get("reentry")
        if isinstance(reentry, dict):
            self.duration(("reentry", "after"), reentry.get("after"))
        goal = data.get("goal")
        if isinstance(goal, dict):
            self.rules(("goal", "rules"), goal.get("rules"))
        window = data.get("send_window")
        if isinstance(window, dict) and isinstance(window.get("hours"), dict):
            self.hours(("send_window", "hours"), window["hours"])
        steps = _list(data.get("steps"))
        self.collect_step_ids(steps)
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                self.step(("steps", index), index, step)
        self.graph(steps)
        return self.problems

    def storable(self, path: DataPath, value: Any) -> None:
        """What JSON columns hold: no NUL character (PostgreSQL refuses it; YAML can write one as "\\0"),
        only finite numbers within 2^53 (data from YAML was checked as it was read, with its spelling)."""
        if isinstance(value, str) and "\x00" in value:
            self.error(path, "contains a NUL character (\\0), which cannot be stored")
        elif isinstance(value, float | int) and not isinstance(value, bool):
            if not math.isfinite(value):
                self.error(path, f"{value} is not a finite number")
            elif abs(value) > MAX_NUMBER:
                self.error(path, f"{value} is too large a number (at most 2^53)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    self.error((*path, key), "this key contains a NUL character (\\0), which cannot be stored")
                self.storable((*path, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.storable((*path, index), item)

    # -- campaign-wide --

    def entry(self, path: DataPath, trigger: Any) -> None:
        if not isinstance(trigger, dict):
            return
        segment = trigger.get("segment")
        if _matches("slug", segment):
            if self.segment_exists is None:
                self.problems.append(
                    _Problem((*path, "segment"), f"segment {segment!r} not checked: no database", Severity.WARNING)
                )
            elif not self.segment_exists(segment):
                self.error((*path, "segment"), f"no segment {segment!r}")
        if "rules" in trigger:
            self.rules((*path, "rules"), trigger["rules"])

    def rules(self, path: DataPath, rules: Any) -> None:
        if not isinstance(rules, dict):
            return
        try:
            parse_rules(rules)
        except ValidationError as exc:
            self.error((*path, *_rule_path(exc.where)), exc.message)

    def hours(self, path: DataPath, hours: dict[str, Any]) -> None:
        start, end = hours.get("from"), hours.get("to")
        if not (_matches("time", start) and _matches("endTime", end)) or end == END_OF_DAY:
            return
        if parse_time(start) >= parse_time(end):
            self.error((*path, "to"), f"the window closes ({end}) before it opens ({start})")

    def duration(self, path: DataPath, raw: Any, *, signed: bool = False) -> None:
        if not isinstance(raw, str):
            return
        try:
            duration = Duration.parse(raw, signed=signed)
        except ValueError as exc:
            self.error(path, str(exc))
            return
        if not signed and duration.minutes == 0:
            self.error(path, f"{raw!r} is no time at all: use a duration longer than zero")

    def template(self, path: DataPath, name: Any) -> None:
        if not _matches("template", name) or self.template_exists(name):
            return
        # Language variants fall back to the default template, so one without it would leave every lead of
        # another language without an email.
        variants = [
            localized for language in DATE_NAMES if language_of(language) == language
            if (localized := localized_name(name, language)) != name and self.template_exists(localized)
        ]
        if variants:
            self.error(
                path,
                f"no email template {name!r}, only its language variant(s) {', '.join(map(repr, variants))}: "
                f"add {name!r}, the default that leads of other languages get",
            )
        else:
            self.error(path, f"no email template {name!r}")

    def jinja(self, path: DataPath, text: Any) -> None:
        if not isinstance(text, str):
            return
        try:
            _JINJA.parse(text)
        except TemplateSyntaxError as exc:
            self.error(path, f"bad Jinja template: {exc.message}")

    # -- steps --

    def collect_step_ids(self, steps: list[Any]) -> None:
        for index, step in enumerate(steps):
            step_id = step.get("id") if isinstance(step, dict) else None
            if not isinstance(step_id, str):
                continue
            if step_id in self.step_ids:
                self.error(
                    ("steps", index, "id"), f"duplicate step id {step_id!r} (steps[{self.step_ids[step_id]}] has it)"
                )
            else:
                self.step_ids[step_id] = index

    def target(self, path: DataPath, step_id: Any) -> int | None:
        """The index of the step a reference names, reporting an unknown id."""
        if not isinstance(step_id, str):
            return None
        if step_id not in self.step_ids:
            if _matches("stepId", step_id):
                self.error(path, f"no step has id {step_id!r}{_did_you_mean(step_id, self.step_ids)}")
            return None
        return self.step_ids[step_id]

    def step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        check = {
            "send": self.send_step,
            "wait": self.wait_step,
            "branch": self.branch_step,
            "wait_for": self.wait_for_step,
            "set": self.set_step,
            "notify": self.notify_step,
            "goto": self.goto_step,
        }.get(_text(step.get("type")))
        if check is not None:
            check(path, index, step)

    def send_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        self.template((*path, "template"), step.get("template"))
        for key in ("subject", "preheader"):
            self.jinja((*path, key), step.get(key))
        variants = step.get("variants")
        if not isinstance(variants, list):
            return
        names: dict[str, int] = {}
        for number, variant in enumerate(variants):
            if not isinstance(variant, dict):
                continue
            variant_path = (*path, "variants", number)
            name = variant.get("name")
            if isinstance(name, str):
                if name in names:
                    self.error(
                        (*variant_path, "name"), f"duplicate variant name {name!r} (variants[{names[name]}] has it)"
                    )
                names.setdefault(name, number)
            if variant.get("template") is None and step.get("template") is None:
                self.error(variant_path, "no template: give one here or on the step")
            self.template((*variant_path, "template"), variant.get("template"))
            for key in ("subject", "preheader"):
                self.jinja((*variant_path, key), variant.get(key))
        weights = [variant.get("weight") if isinstance(variant, dict) else None for variant in variants]
        if weights and all(isinstance(weight, int) for weight in weights) and sum(weights) == 0:
            self.error((*path, "variants"), "every variant has weight 0: give at least one a positive weight")

    def wait_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        if "for" in step and "until" in step:
            self.error(path, "give for: or until:, not both")
        elif "for" not in step and "until" not in step:
            self.error(path, "a wait step needs for: (a duration) or until: (a moment)")
        self.duration((*path, "for"), step.get("for"))
        until = step.get("until")
        if not isinstance(until, dict) or not until:
            return
        until_path = (*path, "until")
        forms = [key for key in ("weekday", "date", "attribute") if key in until]
        shape = "until takes {weekday, time}, {time}, {date[, time]} or {attribute[, offset, time]}"
        if len(forms) > 1:
            self.error(until_path, f"{' and '.join(forms)} cannot be combined: {shape}")
        elif forms == ["weekday"] and "time" not in until:
            self.error(until_path, 'a weekday needs a time, such as {weekday: tue, time: "09:30"}')
        elif not forms and "time" not in until:
            self.error(until_path, shape)
        if "offset" in until and "attribute" not in until:
            self.error((*until_path, "offset"), "offset applies to an attribute date: add attribute:")
        if _matches("date", until.get("date")):
            try:
                parse_date(until["date"])
            except ValueError as exc:
                self.error((*until_path, "date"), str(exc))
        self.duration((*until_path, "offset"), until.get("offset"), signed=True)

    def branch_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        condition = step.get("if")
        if isinstance(condition, dict) and condition:
            if_path = (*path, "if")
            kinds = [key for key in ("rules", EmailEvent.OPENED.value, EmailEvent.CLICKED.value) if key in condition]
            if len(kinds) > 1:
                self.error(if_path, f"{' and '.join(kinds)} cannot be combined: a branch tests one thing")
            elif not kinds:
                self.error(if_path, "expected rules:, opened: or clicked:")
            if "link" in condition and EmailEvent.CLICKED.value not in condition:
                self.error((*if_path, "link"), "link applies to clicked:")
            self.rules((*if_path, "rules"), condition.get("rules"))
            for event in (EmailEvent.OPENED.value, EmailEvent.CLICKED.value):
                self.engagement((*if_path, event), condition.get(event), index)
        if "yes" not in step and "no" not in step:
            self.error(path, "a branch needs yes:, no: or both (a target left out means the next step)")
        self.jump_targets(path, step, ("yes", "no"))

    def wait_for_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        event = step.get("event")
        if "step" in step and isinstance(event, str) and event not in EMAIL_EVENTS:
            self.error((*path, "step"), f"step applies to email events ({', '.join(EmailEvent)}), not {event!r}")
        else:
            self.engagement((*path, "step"), step.get("step"), index)
        if "link" in step and event != EmailEvent.CLICKED.value:
            self.error((*path, "link"), "link applies to event: clicked")
        self.duration((*path, "within"), step.get("within"))
        self.jump_targets(path, step, ("yes", "no"))

    def set_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        actions = ("stage", "add_tags", "remove_tags", "attributes", "adjust_score", "unsubscribe")
        if not any(action in step for action in actions):
            self.error(path, f"a set step needs at least one of {', '.join(actions)}")
        added, removed = step.get("add_tags"), step.get("remove_tags")
        if isinstance(added, list) and isinstance(removed, list):
            # Tags are stored stripped, so " vip" and "vip" are one tag.
            added_names = {tag.strip() for tag in added if isinstance(tag, str)}
            for number, tag in enumerate(removed):
                if isinstance(tag, str) and tag.strip() in added_names:
                    self.error((*path, "remove_tags", number), f"tag {tag.strip()!r} is both added and removed")

    def notify_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        email_owner = step.get("email_owner") is True
        if not step.get("webhook") and not email_owner:
            self.error(path, "a notify step needs webhook:, email_owner: true, or both")
        for key in ("template", "subject"):
            if key in step and not email_owner:
                self.error((*path, key), f"{key} is for the owner's email: add email_owner: true")
        self.template((*path, "template"), step.get("template"))
        self.jinja((*path, "subject"), step.get("subject"))

    def goto_step(self, path: DataPath, index: int, step: dict[str, Any]) -> None:
        self.jump_targets(path, step, ("to",))

    def jump_targets(self, path: DataPath, step: dict[str, Any], names: tuple[str, ...]) -> None:
        for name in names:
            self.target((*path, name), step.get(name))

    def engagement(self, path: DataPath, step_id: Any, index: int) -> None:
        referenced = self.target(path, step_id)
        if referenced is not None:
            self.engagement_refs.append((path, referenced, index))

    # -- the step graph --

    def graph(self, steps: list[Any]) -> None:
        """Unreachable steps, loops that never wait, and engagement with steps that never run before."""
        if not steps:
            return
        types = [_STEP_TYPES.get(_text(step.get("type"))) if isinstance(step, dict) else None for step in steps]
        edges: list[list[int]] = []
        unresolved = False
        for index, step in enumerate(steps):
            jumps: dict[str, int] = {}
            step_type = types[index]
            for name in STEP_SHAPES[step_type].jumps if step_type is not None else ():
                target = step.get(name)
                if target is None:
                    continue
                if _text(target) in self.step_ids:
                    jumps[name] = self.step_ids[target]
                else:
                    unresolved = True
                    jumps[name] = -1
            fall_through = index + 1 if index + 1 < len(steps) else None
            edges.append(
                [key for key in successor_keys(step_type, jumps, fall_through) if key is not None and key >= 0]
            )

        reachable = _reachable_from(0, edges)
        # A wrong target hides where it should lead; reachability would only guess.
        if not unresolved:
            for index in range(len(steps)):
                if index not in reachable:
                    self.error(("steps", index), f"{_step_name(steps, index)} is unreachable: no step leads to it")

        # A step of unknown type is given the benefit of the doubt: its own error is reported already.
        moving = [
            index for index, step_type in enumerate(types) if step_type is not None and not STEP_SHAPES[step_type].waits
        ]
        moving_set = set(moving)
        moving_edges = {index: [child for child in edges[index] if child in moving_set] for index in moving}
        for component in _strongly_connected(moving, moving_edges):
            first = min(component)
            if len(component) == 1 and first not in moving_edges[first]:
                continue
            loop = _cycle_through(first, set(component), moving_edges)
            names = " → ".join(_step_name(steps, index, bare=True) for index in loop)
            self.error(
                ("steps", first), f"steps {names} loop without a wait or wait_for step: a lead would go round forever"
            )

        for path, referenced, index in self.engagement_refs:
            kind = types[referenced]
            if kind is not StepType.SEND:
                described = f"a {kind.value} step" if kind is not None else "not a send step"
                self.error(
                    path,
                    f"step {steps[referenced]['id']!r} is {described}: only emails sent by a send step are tracked",
                )
            elif index not in _reachable_from(referenced, edges, include_start=False):
                self.error(path, f"send step {steps[referenced]['id']!r} never runs before this step")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    """``value`` when it is text, else "" (a key found in no table: data of the wrong type must not raise)."""
    return value if isinstance(value, str) else ""


def _step_name(steps: list[Any], index: int, *, bare: bool = False) -> str:
    step_id = steps[index].get("id") if isinstance(steps[index], dict) else None
    if isinstance(step_id, str):
        return step_id if bare else f"step {step_id!r}"
    return f"steps[{index}]" if bare else "this step"


def _reachable_from(start: int, edges: Sequence[Sequence[int]], *, include_start: bool = True) -> set[int]:
    seen: set[int] = {start} if include_start else set()
    frontier = [start] if include_start else list(edges[start])
    seen.update(frontier)
    while frontier:
        node = frontier.pop()
        for child in edges[node]:
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


def _strongly_connected(nodes: Sequence[int], edges: Mapping[int, Sequence[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative (campaigns are small, but recursion limits are not worth testing)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    components: list[list[int]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, children = work[-1]
            descended = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    descended = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_through(start: int, members: set[int], edges: Mapping[int, Sequence[int]]) -> list[int]:
    """A shortest loop from ``start`` back to it inside one strongly connected component."""
    previous: dict[int, int] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in edges[node]:
                if child not in members:
                    continue
                if child == start:
                    loop = [node]
                    while loop[-1] != start:
                        loop.append(previous[loop[-1]])
                    return [*reversed(loop), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError("a strongly connected component has a loop through each member")


# --- the public checks --------------------------------------------------------------------------------------------


def check_data(
    data: Any,
    *,
    source: str | None = None,
    source_map: SourceMap | None = None,
    template_exists: TemplateCheck = email_template_exists,
    session: Session | None = None,
) -> CheckedCampaign:
    """Check campaign data; segments, and templates stored in the database (beside ``template_exists``'s
    files), are looked up when a ``session`` is given, else segments are only warned about."""
    problems = _schema_problems(data)
    if isinstance(data, dict):
        segment_exists = (lambda slug: find_segment(session, slug) is not None) if session is not None else None
        if session is not None:
            template_exists = _or_stored(template_exists, session)
        semantic = _Checker(data, template_exists, segment_exists).run()
        # A scalar the schema already rejected needs no second opinion.
        rejected = {problem.path for problem in problems}
        problems += [
            problem
            for problem in semantic
            if not (problem.path in rejected and not isinstance(_value_at(data, problem.path), dict | list))
        ]
    issues = _in_file_order(_place(problem, source_map, source) for problem in problems)
    definition = None if any(issue.is_error for issue in issues) else CampaignDefinition.from_data(data)
    return CheckedCampaign(source, data, definition, issues, source_map)


def _value_at(data: Any, path: DataPath) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def check_text(
    text: str,
    *,
    source: str | None = None,
    template_exists: TemplateCheck = email_template_exists,
    session: Session | None = None,
) -> CheckedCampaign:
    data, source_map, issues = load_yaml(text, source)
    if data is None and issues:
        return CheckedCampaign(source, None, None, tuple(issues))
    checked = check_data(data, source=source, source_map=source_map, template_exists=template_exists, session=session)
    if not issues:
        return checked
    # Reading problems (duplicate keys, odd tags) mean the data is not what the author meant; a value the
    # reader could not make sense of needs no second opinion.
    unreadable = {issue.path for issue in issues if not isinstance(_value_at(data, issue.path), dict | list)}
    later = [issue for issue in checked.issues if issue.path not in unreadable]
    return CheckedCampaign(source, data, None, _in_file_order([*issues, *later]), source_map)


def _in_file_order(issues: Iterable[Issue]) -> tuple[Issue, ...]:
    return tuple(sorted(issues, key=lambda issue: (issue.line is None, issue.line or 0, issue.column or 0)))


def check_file(
    path: Path,
    *,
    template_exists: TemplateCheck = email_template_exists,
    session: Session | None = None,
) -> CheckedCampaign:
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return CheckedCampaign(
                source, None, None, (Issue(f"larger than {MAX_FILE_BYTES} bytes: not a campaign", source=source),)
            )
        raw = path.read_bytes()
    except OSError as exc:
        return CheckedCampaign(source, None, None, (Issue(f"cannot read: {exc.strerror or exc}", source=source),))
    try:
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded"
        return CheckedCampaign(source, None, None, (Issue(message, source=source, line=line),))
    return check_text(text, source=source, template_exists=template_exists, session=session)


def parse_campaign(
    data: Any, *, template_exists: TemplateCheck = email_template_exists, session: Session | None = None
) -> CampaignDefinition:
    """The definition for ``data``, or ``CampaignInvalid`` listing every error."""
    checked = check_data(data, template_exists=template_exists, session=session)
    if checked.definition is None:
        raise CampaignInvalid(checked.issues)
    return checked.definition


def campaign_files(paths: Iterable[Path]) -> tuple[list[Path], list[Issue]]:
    """The campaign files named: files as given, directories searched for *.yaml and *.yml (sorted)."""
    found: list[Path] = []
    issues: list[Issue] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix in CAMPAIGN_SUFFIXES and p.is_file())
            if not inside:
                issues.append(Issue("no campaign files (*.yaml, *.yml) in this directory", source=str(path)))
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            issues.append(Issue("no such file or directory", source=str(path)))
    return list(dict.fromkeys(found)), issues
