"""Edits to a campaign's step list, on the public format (a draft's data, valid or not): insert, move, delete,
replace and rename a step, keeping every reference to a renamed step pointing at it.

Pure functions: each returns new data and leaves its argument alone. The editor saves the result as the draft;
the validator judges it afterwards (a deleted step's references, say, become errors at their fields).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from nurture.campaigns.definition import StepType
from nurture.errors import ValidationError

# Fields of a step that name another step, by step type (branch conditions name theirs inside "if").
_TARGET_FIELDS = ("yes", "no", "to")
_ID_PART = re.compile(r"[^a-z0-9]+")

# What a new step of each type starts with: the least that makes sense, the rest is the marketer's to fill in.
NEW_STEP_DEFAULTS: dict[str, dict[str, Any]] = {
    StepType.SEND: {},
    StepType.WAIT: {"for": "1d"},
    StepType.BRANCH: {"if": {}},
    StepType.WAIT_FOR: {"event": "clicked", "within": "7d"},
    StepType.SET: {},
    StepType.NOTIFY: {"email_owner": True},
    StepType.GOTO: {},
    StepType.EXIT: {},
}


def steps_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    steps = data.get("steps")
    return [step for step in steps if isinstance(step, dict)] if isinstance(steps, list) else []


def step_ids(data: Mapping[str, Any]) -> list[str]:
    return [str(step.get("id", "")) for step in steps_of(data)]


def find_step(data: Mapping[str, Any], step_id: str) -> tuple[int, dict[str, Any]] | None:
    for index, step in enumerate(steps_of(data)):
        if step.get("id") == step_id:
            return index, step
    return None


def references_to(data: Mapping[str, Any], step_id: str) -> list[str]:
    """The ids of the steps that name ``step_id`` (as a target, or the email a condition is about)."""
    return [str(step.get("id")) for step in steps_of(data) if step_id in _named_steps(step)]


def _named_steps(step: Mapping[str, Any]) -> list[Any]:
    named = [step.get(field) for field in _TARGET_FIELDS]
    if step.get("type") == StepType.WAIT_FOR:
        named.append(step.get("step"))
    condition = step.get("if")
    if isinstance(condition, Mapping):
        named += [condition.get("opened"), condition.get("clicked")]
    return named


def new_step_id(data: Mapping[str, Any], step_type: str) -> str:
    """``send-3``: the type and the first number no step id uses yet."""
    taken = set(step_ids(data))
    base = _ID_PART.sub("-", step_type.lower()).strip("-") or "step"
    number = 1
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def insert_step(data: Mapping[str, Any], step_type: str, *, after: str | None, step_id: str | None = None) -> dict:
    """A new step of ``step_type`` after the step ``after`` (None: first), with ``step_id`` or a fresh one."""
    if step_type not in NEW_STEP_DEFAULTS:
        raise ValidationError(f"unknown step type {step_type!r}", where="type")
    new_id = step_id.strip() if step_id and step_id.strip() else new_step_id(data, step_type)
    if new_id in step_ids(data):
        raise ValidationError(f"there is already a step {new_id!r}", where="id")
    result = copy.deepcopy(dict(data))
    steps = steps_of(result)
    position = 0
    if after is not None:
        found = find_step(result, after)
        if found is None:
            raise ValidationError(f"no step {after!r} to insert after", where="after")
        position = found[0] + 1
    steps.insert(position, {"id": new_id, "type": step_type, **copy.deepcopy(NEW_STEP_DEFAULTS[step_type])})
    result["steps"] = steps
    return result


def move_step(data: Mapping[str, Any], step_id: str, offset: int) -> dict:
    """The step moved ``offset`` places (-1: up, 1: down), within the list's ends."""
    result = copy.deepcopy(dict(data))
    steps = steps_of(result)
    found = find_step(result, step_id)
    if found is None:
        raise ValidationError(f"no step {step_id!r}", where="step")
    index = found[0]
    target = min(max(index + offset, 0), len(steps) - 1)
    steps.insert(target, steps.pop(index))
    result["steps"] = steps
    return result


def delete_step(data: Mapping[str, Any], step_id: str) -> dict:
    """Without the step; references to it are left for the validator to point out (the editor lists them before
    the marketer confirms)."""
    result = copy.deepcopy(dict(data))
    if find_step(result, step_id) is None:
        raise ValidationError(f"no step {step_id!r}", where="step")
    result["steps"] = [step for step in steps_of(result) if step.get("id") != step_id]
    return result


def replace_step(data: Mapping[str, Any], step_id: str, step: Mapping[str, Any]) -> dict:
    """The step ``step_id`` replaced by ``step``; when its id changes, every reference follows it."""
    result = copy.deepcopy(dict(data))
    found = find_step(result, step_id)
    if found is None:
        raise ValidationError(f"no step {step_id!r}", where="step")
    new_id = str(step.get("id", ""))
    if new_id != step_id and new_id in step_ids(result):
        raise ValidationError(f"there is already a step {new_id!r}", where="id")
    steps = steps_of(result)
    steps[found[0]] = copy.deepcopy(dict(step))
    if new_id != step_id and new_id:
        for other in steps:
            _rename_references(other, step_id, new_id)
    result["steps"] = steps
    return result


def _rename_references(step: dict[str, Any], old: str, new: str) -> None:
    for field in _TARGET_FIELDS:
        if step.get(field) == old:
            step[field] = new
    if step.get("type") == StepType.WAIT_FOR and step.get("step") == old:
        step["step"] = new
    condition = step.get("if")
    if isinstance(condition, dict):
        for event in ("opened", "clicked"):
            if condition.get(event) == old:
                condition[event] = new
