"""A campaign in words, for people: a step in one line, the send window and the frequency cap as sentences.

Read from the public format (a draft's data, valid or not), so the editor, the diagram and the review page
describe the same thing the same way."""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from typing import Any

from nurture.campaigns.definition import END_OF_DAY, Weekday

_DAY_NAMES = {day.label: calendar.day_name[day.value] for day in Weekday}
_WEEKDAY_ORDER = [day.label for day in Weekday]


def step_summary(step: Mapping[str, Any]) -> str:
    """``wait 3d``, ``send re-engage-lost/check-in``, ``wait for clicked on check-in, up to 7d``…"""
    kind = step.get("type")
    if kind == "send":
        variants = step.get("variants") or []
        if variants:
            names = ", ".join(str(variant.get("name", "?")) for variant in variants if isinstance(variant, Mapping))
            return f"send {step.get('template') or 'per variant'} (A/B: {names})"
        subject = f" · “{step['subject']}”" if step.get("subject") else ""
        return f"send {step.get('template') or '(no template yet)'}{subject}"
    if kind == "wait":
        if step.get("for"):
            return f"wait {step['for']}"
        until = step.get("until") if isinstance(step.get("until"), Mapping) else {}
        if "date" in until:
            return f"wait until {until['date']}" + (f" {until['time']}" if until.get("time") else "")
        if "attribute" in until:
            offset = f" {until['offset']}" if until.get("offset") else ""
            return f"wait until the date in {until['attribute']}{offset}"
        day = f"{_DAY_NAMES.get(str(until.get('weekday')), until.get('weekday'))} " if until.get("weekday") else ""
        return f"wait until {day}{until.get('time', '?')}"
    if kind == "branch":
        return f"if {condition_summary(step.get('if'))}"
    if kind == "wait_for":
        about = f" on {step['step']}" if step.get("step") else ""
        link = f" ({step['link']})" if step.get("link") else ""
        return f"wait for {step.get('event', '?')}{about}{link}, up to {step.get('within', '?')}"
    if kind == "set":
        return "set " + (_set_summary(step) or "(nothing yet)")
    if kind == "notify":
        channels = (("email the owner", step.get("email_owner")), ("webhook", step.get("webhook")))
        ways = [way for way, on in channels if on]
        return "notify sales: " + (" and ".join(ways) or "(nobody yet)")
    if kind == "goto":
        return f"go to {step.get('to') or '?'}"
    if kind == "exit":
        return "end as converted" if step.get("as") == "converted" else "end"
    return str(kind or "step")


def condition_summary(condition: Any) -> str:
    if not isinstance(condition, Mapping) or not condition:
        return "(no condition yet)"
    for event in ("opened", "clicked"):
        if event in condition:
            link = f" {condition['link']}" if condition.get("link") else ""
            return f"{event}{link} in {condition[event]}"
    rules = condition.get("rules")
    text = json.dumps(rules, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= 80 else text[:77] + "…"


def _set_summary(step: Mapping[str, Any]) -> str:
    parts = []
    if step.get("stage"):
        parts.append(f"stage {step['stage']}")
    if step.get("add_tags"):
        parts.append("tag " + ", ".join(map(str, step["add_tags"])))
    if step.get("remove_tags"):
        parts.append("untag " + ", ".join(map(str, step["remove_tags"])))
    if step.get("attributes"):
        parts.append(f"{len(step['attributes'])} attribute(s)")
    if step.get("adjust_score") is not None:
        parts.append(f"score {step['adjust_score']:+}" if isinstance(step["adjust_score"], int) else "score")
    if step.get("unsubscribe"):
        parts.append("unsubscribe")
    return "; ".join(parts)


def window_in_words(window: Any) -> str:
    """``Monday to Friday, 09:00–17:00 in each lead's time zone``; ``any time`` without a window."""
    if not isinstance(window, Mapping) or not window:
        return "any time"
    days = [str(day) for day in window.get("days") or _WEEKDAY_ORDER]
    hours = window.get("hours") or {}
    if hours:
        end = "midnight" if hours.get("to") == END_OF_DAY else hours.get("to")
        when = f", {hours.get('from')}–{end}"
    else:
        when = ", all day"
    return f"{_days_in_words(days)}{when} in each lead's time zone"


def _days_in_words(days: list[str]) -> str:
    if days == _WEEKDAY_ORDER:
        return "Every day"
    positions = [_WEEKDAY_ORDER.index(day) for day in days if day in _WEEKDAY_ORDER]
    names = [_DAY_NAMES[_WEEKDAY_ORDER[position]] for position in positions]
    if len(positions) > 2 and positions == list(range(positions[0], positions[-1] + 1)):
        return f"{names[0]} to {names[-1]}"
    return ", ".join(names)


def cap_in_words(cap: Any) -> str:
    if not isinstance(cap, Mapping) or not cap:
        return "no limit on emails per lead"
    emails = cap.get("emails")
    plural = "" if emails == 1 else "s"
    return f"at most {emails} marketing email{plural} a {cap.get('per', 'week')} per lead, across all campaigns"


def reentry_in_words(reentry: Any) -> str:
    if isinstance(reentry, Mapping) and reentry.get("after"):
        return f"a lead may enter again {reentry['after']} after it last entered"
    return "a lead enters once"
