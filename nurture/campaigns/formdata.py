"""The campaign definition as HTML form fields, and back: what the web editor shows and reads.

The editor edits the same public format that ``nurture campaigns load`` reads (``CampaignDefinition.to_data()``'s
shape), one section at a time: the campaign's settings, or one step. ``*_to_form`` spells a section as flat
fields (``{name: text}``; the weekday checkboxes are the one list); ``*_from_form`` reads them back into the
public format without judging it. The validator (``check_data``) judges the whole definition afterwards, and
``field_for_issue`` tells the editor at which field each of its messages belongs, so the editor says what the
CLI says. Only what the validator cannot see is refused here: text that is not JSON where JSON is asked for
(``FormErrors``, by field).

Draft data may be unfinished (a step without its template, a branch without a target): every ``*_to_form``
accepts it as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nurture.campaigns.definition import END_OF_DAY, StepType, Weekday
from nurture.errors import ValidationError

Form = Mapping[str, Any]
FormFields = dict[str, Any]
DataPath = Sequence[str | int]

WEEKDAY_LABELS = tuple(day.label for day in Weekday)
ENTRY_KINDS = ("segment", "rules", "on_import", "on_event", "on_stage")
EXIT_KINDS = ("on_stage", "on_tag_added")
WAIT_MODES = ("for", "time", "date", "attribute")
CONDITION_KINDS = ("rules", "opened", "clicked")
# How many empty rows a form offers for adding an entry trigger, an exit condition or an A/B variant.
SPARE_ROWS = 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class FormErrors(ValidationError):
    """Fields whose text could not be read at all (JSON that does not parse), by field name."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


# --- small spellings ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _optional(form: Form, field: str) -> str | None:
    """The field's text, or None when it is empty (left out of the definition)."""
    value = form.get(field)
    if value is None or value == "":
        return None
    return str(value)


def _number(text: str | None) -> Any:
    """An integer when the text is one; otherwise the text itself, for the validator to name."""
    if text is None:
        return None
    stripped = text.strip()
    return int(stripped) if _INTEGER.fullmatch(stripped) else text


def _json_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, indent=2)


def _json(form: Form, field: str, errors: dict[str, str]) -> Any:
    text = _optional(form, field)
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        errors[field] = f"not valid JSON ({exc})"
        return None


def _lines(value: Sequence[str] | None) -> str:
    return "\n".join(value or ())


def _from_lines(form: Form, field: str) -> list[str]:
    # Split on line ends only: str.splitlines also splits on form feeds and separators a tag may hold.
    lines = _text(form.get(field)).replace("\r\n", "\n").split("\n")
    return [line.strip() for line in lines if line.strip()]


def _rows(form: Form, prefix: str) -> list[int]:
    """The row numbers of ``prefix-<n>-...`` fields present in the form, in order."""
    found = set()
    for key in form:
        match = re.fullmatch(rf"{re.escape(prefix)}-([0-9]{{1,4}})-[a-z_]+", str(key))
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def _getlist(form: Form, field: str) -> list[str]:
    getlist = getattr(form, "getlist", None)
    if getlist is not None:
        return list(getlist(field))
    value = form.get(field)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# --- settings ----------------------------------------------------------------------------------------------------


def settings_to_form(data: Mapping[str, Any]) -> FormFields:
    form: FormFields = {
        "name": _text(data.get("name")),
        "description": _text(data.get("description")),
        "timezone": _text(data.get("timezone")),
    }
    entries = list(data.get("entry") or [])
    for index, trigger in enumerate([*entries, *([{}] * SPARE_ROWS)]):
        form.update(_entry_to_form(index, trigger if isinstance(trigger, Mapping) else {}))
    reentry = data.get("reentry")
    form["reentry_after"] = _text(reentry.get("after")) if isinstance(reentry, Mapping) else ""
    goal = data.get("goal")
    form["goal_rules"] = _json_text(goal.get("rules")) if isinstance(goal, Mapping) else ""
    exits = list(data.get("exit") or [])
    for index, condition in enumerate([*exits, *([{}] * SPARE_ROWS)]):
        kind, value = next(iter(condition.items())) if isinstance(condition, Mapping) and condition else ("", "")
        form[f"exit-{index}-kind"] = kind
        form[f"exit-{index}-value"] = _text(value)
    window = data.get("send_window") or {}
    hours = window.get("hours") or {}
    form["window_on"] = "1" if data.get("send_window") else ""
    form["window_days"] = list(window.get("days") or WEEKDAY_LABELS)
    form["window_from"] = _text(hours.get("from"))
    form["window_to"] = _text(hours.get("to"))
    cap = data.get("frequency_cap") or {}
    form["cap_emails"] = _text(cap.get("emails"))
    form["cap_per"] = _text(cap.get("per"))
    return form


def _entry_to_form(index: int, trigger: Mapping[str, Any]) -> FormFields:
    prefix = f"entry-{index}"
    form = {f"{prefix}-kind": "", f"{prefix}-value": "", f"{prefix}-tag": "", f"{prefix}-source": ""}
    if not trigger:
        return form
    kind, value = next(iter(trigger.items()))
    form[f"{prefix}-kind"] = kind
    if kind == "rules":
        form[f"{prefix}-value"] = _json_text(value)
    elif kind == "on_import":
        filters = value if isinstance(value, Mapping) else {}
        form[f"{prefix}-tag"] = _text(filters.get("tag"))
        form[f"{prefix}-source"] = _text(filters.get("source"))
    else:
        form[f"{prefix}-value"] = _text(value)
    return form


def settings_from_form(form: Form, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its settings replaced by the form's (slug and steps are kept); ``FormErrors`` for JSON
    that does not parse."""
    errors: dict[str, str] = {}
    result: dict[str, Any] = {"slug": data.get("slug"), "name": _text(form.get("name"))}
    for field in ("description", "timezone"):
        value = _optional(form, field)
        if value is not None:
            result[field] = value
    result["entry"] = [
        trigger for index in _rows(form, "entry") if (trigger := _entry_from_form(form, index, errors)) is not None
    ]
    after = _optional(form, "reentry_after")
    if after is not None:
        result["reentry"] = {"after": after}
    goal = _json(form, "goal_rules", errors)
    if goal is not None:
        result["goal"] = {"rules": goal}
    exits = []
    for index in _rows(form, "exit"):
        kind = _optional(form, f"exit-{index}-kind")
        if kind is not None:
            exits.append({kind: _text(form.get(f"exit-{index}-value"))})
    if exits:
        result["exit"] = exits
    if _optional(form, "window_on") is not None:
        window: dict[str, Any] = {}
        days = [day for day in WEEKDAY_LABELS if day in _getlist(form, "window_days")]
        if days != list(WEEKDAY_LABELS):
            window["days"] = days
        start, end = _optional(form, "window_from"), _optional(form, "window_to")
        if start is not None or end is not None:
            window["hours"] = {"from": start or "00:00", "to": end or END_OF_DAY}
        if window:
            result["send_window"] = window
    emails, per = _optional(form, "cap_emails"), _optional(form, "cap_per")
    if emails is not None or per is not None:
        result["frequency_cap"] = {"emails": _number(emails), "per": per or "week"}
    if errors:
        raise FormErrors(errors)
    result["steps"] = list(data.get("steps") or [])
    return result


def _entry_from_form(form: Form, index: int, errors: dict[str, str]) -> dict[str, Any] | None:
    prefix = f"entry-{index}"
    kind = _optional(form, f"{prefix}-kind")
    if kind is None:
        return None
    if kind == "rules":
        return {"rules": _json(form, f"{prefix}-value", errors)}
    if kind == "on_import":
        filters = {
            key: value for key in ("tag", "source") if (value := _optional(form, f"{prefix}-{key}")) is not None
        }
        return {"on_import": filters}
    return {kind: _text(form.get(f"{prefix}-value"))}


# --- steps -------------------------------------------------------------------------------------------------------


def step_to_form(step: Mapping[str, Any]) -> FormFields:
    kind = _text(step.get("type"))
    form: FormFields = {"id": _text(step.get("id")), "type": kind}
    if kind == StepType.SEND:
        form |= {key: _text(step.get(key)) for key in ("template", "subject", "preheader")}
        variants = list(step.get("variants") or [])
        for index, variant in enumerate([*variants, *([{}] * SPARE_ROWS)]):
            for key in ("name", "weight", "template", "subject", "preheader"):
                form[f"variant-{index}-{key}"] = _text(variant.get(key)) if isinstance(variant, Mapping) else ""
    elif kind == StepType.WAIT:
        form |= _wait_to_form(step)
    elif kind == StepType.BRANCH:
        condition = step.get("if") if isinstance(step.get("if"), Mapping) else {}
        form |= {"condition_kind": "", "condition_rules": "", "condition_step": "", "condition_link": ""}
        if "rules" in condition:
            form |= {"condition_kind": "rules", "condition_rules": _json_text(condition["rules"])}
        for event in ("opened", "clicked"):
            if event in condition:
                form |= {"condition_kind": event, "condition_step": _text(condition[event])}
        form["condition_link"] = _text(condition.get("link"))
        form |= {key: _text(step.get(key)) for key in ("yes", "no")}
    elif kind == StepType.WAIT_FOR:
        form |= {key: _text(step.get(key)) for key in ("event", "step", "link", "within", "yes", "no")}
    elif kind == StepType.SET:
        form["stage"] = _text(step.get("stage"))
        form["add_tags"] = _lines(step.get("add_tags"))
        form["remove_tags"] = _lines(step.get("remove_tags"))
        form["attributes"] = _json_text(step.get("attributes"))
        form["adjust_score"] = _text(step.get("adjust_score"))
        form["unsubscribe"] = _text(step.get("unsubscribe"))
    elif kind == StepType.NOTIFY:
        form |= {key: _text(step.get(key)) for key in ("webhook", "template", "subject")}
        form["email_owner"] = "1" if step.get("email_owner") else ""
    elif kind == StepType.GOTO:
        form["to"] = _text(step.get("to"))
    elif kind == StepType.EXIT:
        form["as"] = _text(step.get("as")) or "exited"
    return form


def _wait_to_form(step: Mapping[str, Any]) -> FormFields:
    form = {
        "wait_mode": "for",
        "for": _text(step.get("for")),
        "until_weekday": "",
        "until_time": "",
        "until_date": "",
        "until_attribute": "",
        "until_offset": "",
    }
    until = step.get("until")
    if isinstance(until, Mapping):
        form["wait_mode"] = "date" if "date" in until else "attribute" if "attribute" in until else "time"
        form["until_weekday"] = _text(until.get("weekday"))
        form["until_time"] = _text(until.get("time"))
        form["until_date"] = _text(until.get("date"))
        form["until_attribute"] = _text(until.get("attribute"))
        form["until_offset"] = _text(until.get("offset"))
    return form


def step_from_form(form: Form) -> dict[str, Any]:
    """The step the form describes, in the public format; ``FormErrors`` for JSON that does not parse."""
    errors: dict[str, str] = {}
    kind = _text(form.get("type"))
    step: dict[str, Any] = {"id": _text(form.get("id")).strip(), "type": kind}

    def put(*keys: str, number: bool = False) -> None:
        for key in keys:
            value = _optional(form, key)
            if value is not None:
                step[key] = _number(value) if number else value

    if kind == StepType.SEND:
        put("template", "subject", "preheader")
        variants = []
        for index in _rows(form, "variant"):
            prefix = f"variant-{index}"
            fields = {key: _optional(form, f"{prefix}-{key}") for key in ("name", "weight", "template", "subject")}
            preheader = _optional(form, f"{prefix}-preheader")
            if all(value is None for value in fields.values()) and preheader is None:
                continue
            variant: dict[str, Any] = {"name": fields["name"] or "", "weight": _number(fields["weight"] or "1")}
            for key in ("template", "subject"):
                if fields[key] is not None:
                    variant[key] = fields[key]
            if preheader is not None:
                variant["preheader"] = preheader
            variants.append(variant)
        if variants:
            step["variants"] = variants
    elif kind == StepType.WAIT:
        mode = _text(form.get("wait_mode")) or "for"
        if mode == "for":
            step["for"] = _text(form.get("for"))
        else:
            keys = {"time": ("weekday", "time"), "date": ("date", "time"), "attribute": ("attribute", "offset", "time")}
            until = {
                key: value
                for key in keys.get(mode, ("time",))
                if (value := _optional(form, f"until_{key}")) is not None
            }
            step["until"] = until
    elif kind == StepType.BRANCH:
        condition_kind = _text(form.get("condition_kind"))
        condition: dict[str, Any] = {}
        if condition_kind == "rules":
            condition["rules"] = _json(form, "condition_rules", errors)
        elif condition_kind in ("opened", "clicked"):
            condition[condition_kind] = _text(form.get("condition_step"))
            link = _optional(form, "condition_link")
            if condition_kind == "clicked" and link is not None:
                condition["link"] = link
        step["if"] = condition
        put("yes", "no")
    elif kind == StepType.WAIT_FOR:
        put("event", "step", "link")
        step["within"] = _text(form.get("within"))
        put("yes", "no")
    elif kind == StepType.SET:
        put("stage")
        for key in ("add_tags", "remove_tags"):
            tags = list(dict.fromkeys(_from_lines(form, key)))
            if tags:
                step[key] = tags
        attributes = _json(form, "attributes", errors)
        if attributes is not None:
            step["attributes"] = attributes
        put("adjust_score", number=True)
        put("unsubscribe")
    elif kind == StepType.NOTIFY:
        put("webhook")
        if _optional(form, "email_owner") is not None:
            step["email_owner"] = True
        put("template", "subject")
    elif kind == StepType.GOTO:
        step["to"] = _text(form.get("to"))
    elif kind == StepType.EXIT:
        outcome = _text(form.get("as")) or "exited"
        if outcome != "exited":
            step["as"] = outcome
    if errors:
        raise FormErrors(errors)
    return step


# --- where a validator message belongs -------------------------------------------------------------------------

# Settings paths (after their first key) and the field that shows them.
_SETTINGS_FIELDS = {
    ("name",): "name",
    ("description",): "description",
    ("timezone",): "timezone",
    ("reentry",): "reentry_after",
    ("goal",): "goal_rules",
    ("send_window", "days"): "window_days",
    ("send_window", "hours", "from"): "window_from",
    ("send_window", "hours", "to"): "window_to",
    ("send_window", "hours"): "window_from",
    ("send_window",): "window_on",
    ("frequency_cap", "emails"): "cap_emails",
    ("frequency_cap", "per"): "cap_per",
    ("frequency_cap",): "cap_emails",
}


# A message about a whole step that concerns one of its fields: a missing key, a branch without targets.
_MISSING_KEY = re.compile(r"missing required key '([a-z_]+)'")
_NEEDS_TARGET = "needs yes:"


def field_for_issue(path: DataPath, data: Mapping[str, Any], message: str = "") -> tuple[int | None, str]:
    """Where the editor shows a validator message about ``path``: (the step's index, or None for the settings,
    and the field's name). A path that names no field of its own lands on the field the message is about, else
    on the section's first field."""
    if not path:
        return None, "name"
    head = path[0]
    if head == "steps":
        if len(path) < 2 or not isinstance(path[1], int):
            return None, "steps"
        rest = tuple(path[2:])
        if not rest:
            missing = _MISSING_KEY.search(message)
            if missing:
                rest = (missing.group(1),)
            elif _NEEDS_TARGET in message:
                rest = ("yes",)
        return path[1], _step_field(rest, _step_at(data, path[1]))
    if head == "entry":
        if len(path) >= 2 and isinstance(path[1], int):
            index = path[1]
            rest = [key for key in path[2:] if isinstance(key, str)]
            if rest and rest[0] == "on_import" and len(rest) > 1 and rest[1] in ("tag", "source"):
                return None, f"entry-{index}-{rest[1]}"
            return None, f"entry-{index}-value" if rest else f"entry-{index}-kind"
        return None, "entry-0-kind"
    if head == "exit":
        if len(path) >= 2 and isinstance(path[1], int):
            return None, f"exit-{path[1]}-value" if len(path) > 2 else f"exit-{path[1]}-kind"
        return None, "exit-0-kind"
    keys = tuple(key for key in path if isinstance(key, str))
    for length in range(len(keys), 0, -1):
        field = _SETTINGS_FIELDS.get(keys[:length])
        if field is not None:
            return None, field
    return None, "name"


def _step_at(data: Mapping[str, Any], index: int) -> Mapping[str, Any]:
    steps = data.get("steps") or []
    step = steps[index] if 0 <= index < len(steps) else {}
    return step if isinstance(step, Mapping) else {}


def _step_field(rest: DataPath, step: Mapping[str, Any]) -> str:
    if not rest:
        return "id"
    key = rest[0]
    kind = step.get("type")
    if key == "variants":
        if len(rest) >= 3 and isinstance(rest[1], int) and isinstance(rest[2], str):
            return f"variant-{rest[1]}-{rest[2]}"
        return "variant-0-name"
    if key == "if":
        if len(rest) >= 2 and rest[1] == "rules":
            return "condition_rules"
        if len(rest) >= 2 and rest[1] == "link":
            return "condition_link"
        if len(rest) >= 2 and rest[1] in ("opened", "clicked"):
            return "condition_step"
        return "condition_kind"
    if key == "until":
        if len(rest) >= 2 and isinstance(rest[1], str):
            return f"until_{rest[1]}"
        return "wait_mode"
    if key == "as":
        return "as"
    if kind == StepType.WAIT and key == "for":
        return "for"
    if isinstance(key, str) and key in step_to_form(step):
        return key
    return "id"
