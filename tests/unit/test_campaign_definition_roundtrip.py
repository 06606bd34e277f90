"""Any valid campaign survives the trip to normalised data, to YAML and back through the validator."""

from __future__ import annotations

import json
from datetime import date, time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nurture.campaigns.definition import (
    MAX_DURATION_MINUTES,
    BranchStep,
    CampaignDefinition,
    CapPeriod,
    Duration,
    EmailEvent,
    EngagementCondition,
    EventEntry,
    ExitOutcome,
    ExitStep,
    FrequencyCap,
    GotoStep,
    ImportEntry,
    NotifyStep,
    Reentry,
    RulesCondition,
    RulesEntry,
    SegmentEntry,
    SendStep,
    SendWindow,
    SetStep,
    StageEntry,
    StageExit,
    Step,
    TagExit,
    Variant,
    WaitForStep,
    WaitStep,
    WaitUntilAttribute,
    WaitUntilDate,
    WaitUntilTime,
    Weekday,
)
from nurture.campaigns.validation import check_text, dump_yaml
from nurture.leads.lifecycle import Stage
from nurture.segments.rules import parse_rules

RULES = [
    parse_rules(data)
    for data in (
        {"all": [{"field": "country", "op": "=", "value": "FR"}]},
        {"entered_stage": "customer", "within_days": 30},
        {"any": [{"event": "opened", "within_days": 7}, {"field": "tags", "op": "contains", "value": "vip"}]},
        {"not": {"field": "score", "op": "<", "value": 10}},
    )
]

# Text that YAML and the reader must carry intact: quotes, colons, YAML keywords, unicode, escapes.
TRICKY = ["yes", "no", "on", "null", "~", "true", "10:30", "2026-12-01", "0x1F", "- item", "a: b", "#", "'", '"', "é ✓"]
one_line = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(exclude_characters="\x00\r\n\x85\u2028\u2029{}%#", exclude_categories=("Cs",)), min_size=1),
)
trimmed = one_line.map(str.strip).filter(bool)
slugs = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True)
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)
events = st.from_regex(r"[a-z][a-z0-9_.:-]{0,15}", fullmatch=True)
templates = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,8})?", fullmatch=True)
tags = trimmed.filter(lambda tag: len(tag) <= 100)
durations = st.integers(1, MAX_DURATION_MINUTES).map(Duration)
offsets = st.integers(-MAX_DURATION_MINUTES, MAX_DURATION_MINUTES).map(Duration)
times = st.builds(time, st.integers(0, 23), st.integers(0, 59))
weekdays = st.sampled_from(list(Weekday))
attribute_names = st.from_regex(r'[^."\\\x00-\x1f]{1,20}', fullmatch=True).filter(lambda name: name.isprintable())
attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(-(2.0**53), 2.0**53, allow_nan=False),
    one_line,
)

entries = st.one_of(
    st.builds(SegmentEntry, slugs),
    st.builds(RulesEntry, st.sampled_from(RULES)),
    st.builds(ImportEntry, st.none() | tags, st.none() | tags),
    st.builds(EventEntry, events),
    st.builds(StageEntry, st.sampled_from(list(Stage))),
)
exits = st.one_of(st.builds(StageExit, st.sampled_from(list(Stage))), st.builds(TagExit, tags))


@st.composite
def send_windows(draw: st.DrawFn) -> SendWindow | None:
    days = frozenset(draw(st.sets(weekdays, min_size=1)))
    start = draw(times)
    end = draw(st.none() | times.filter(lambda end: end > start))
    window = SendWindow(days, start, end)
    return None if window == SendWindow() else window


@st.composite
def send_steps(draw: st.DrawFn, step_id: str) -> SendStep:
    template = draw(st.none() | templates)
    subject = draw(st.none() | one_line)
    preheader = draw(st.none() | one_line)
    if template is not None and subject is not None and draw(st.booleans()):
        return SendStep(step_id, template, subject, preheader)
    variant_names = draw(st.lists(names, min_size=2, max_size=3, unique=True))
    variants = tuple(
        Variant(
            name,
            draw(st.integers(0, 100)),
            draw(templates) if template is None else draw(st.none() | templates),
            draw(one_line) if subject is None else draw(st.none() | one_line),
            draw(st.none() | one_line),
        )
        for name in variant_names
    )
    if sum(variant.weight for variant in variants) == 0:
        variants = (Variant(variants[0].name, 1, variants[0].template, variants[0].subject), *variants[1:])
    return SendStep(step_id, template, subject, preheader, variants)


@st.composite
def steps_lists(draw: st.DrawFn) -> tuple[Step, ...]:
    """Valid step lists: jumps only go forward (a branch's 'no' falls through, so every step is reachable),
    and the last step may be a goto back to an earlier wait (a loop that waits)."""
    count = draw(st.integers(1, 8))
    ids = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    steps: list[Step] = []
    for index, step_id in enumerate(ids):
        earlier_sends = [step.id for step in steps if isinstance(step, SendStep)]
        later = ids[index + 2 :]
        forward = st.none() | st.sampled_from(later) if later else st.none()
        waits = [step.id for step in steps if isinstance(step, WaitStep)]
        kinds = ["send", "wait", "set", "notify", "wait_for"]
        if index < count - 1:
            kinds.append("branch")
        else:
            kinds.append("exit")
            if waits:
                kinds.append("goto")
        kind = draw(st.sampled_from(kinds))
        step: Step
        if kind == "send":
            step = draw(send_steps(step_id))
        elif kind == "wait":
            until = st.one_of(
                st.builds(WaitUntilTime, times, st.none() | weekdays),
                st.builds(WaitUntilDate, st.dates(date(2000, 1, 1), date(2100, 12, 31)), st.none() | times),
                st.builds(WaitUntilAttribute, attribute_names, offsets, st.none() | times),
            )
            step = draw(
                st.builds(WaitStep, st.just(step_id), duration=durations)
                | st.builds(WaitStep, st.just(step_id), until=until)
            )
        elif kind == "set":
            added = draw(st.lists(tags, max_size=3, unique=True))
            removed = [tag for tag in draw(st.lists(tags, max_size=3, unique=True)) if tag not in added]
            attributes = draw(st.dictionaries(attribute_names, attribute_values, max_size=3))
            stage = draw(st.none() | st.sampled_from(list(Stage)))
            score = draw(st.none() | st.integers(-100, 100))
            if not (added or removed or attributes or stage or score is not None):
                stage = Stage.MQL
            step = SetStep(step_id, stage, tuple(added), tuple(removed), attributes, score)
        elif kind == "notify":
            email_owner = draw(st.booleans())
            webhook = draw(st.from_regex(r"https?://[a-z]{1,10}\.example\.com(/[a-z0-9]{0,10})?", fullmatch=True))
            step = NotifyStep(
                step_id,
                webhook if not email_owner or draw(st.booleans()) else None,
                email_owner,
                draw(templates) if email_owner else None,
                draw(st.none() | one_line) if email_owner else None,
            )
        elif kind == "wait_for":
            event = draw(st.sampled_from(list(EmailEvent)).map(str) | events)
            email = event in {e.value for e in EmailEvent}
            reference = draw(st.none() | st.sampled_from(earlier_sends)) if email and earlier_sends else None
            link = draw(st.none() | one_line) if event == EmailEvent.CLICKED else None
            step = WaitForStep(step_id, event, draw(durations), reference, link, draw(forward), None)
        elif kind == "branch":
            conditions = st.builds(RulesCondition, st.sampled_from(RULES))
            if earlier_sends:
                conditions |= st.builds(
                    EngagementCondition,
                    st.sampled_from([EmailEvent.OPENED, EmailEvent.CLICKED]),
                    st.sampled_from(earlier_sends),
                )
            condition = draw(conditions)
            if isinstance(condition, EngagementCondition) and condition.event is EmailEvent.CLICKED:
                condition = EngagementCondition(condition.event, condition.step, draw(st.none() | one_line))
            # A branch needs a target; naming the next step is allowed (it is where "no" falls through too).
            step = BranchStep(step_id, condition, draw(st.sampled_from(ids[index + 1 :])), None)
        elif kind == "goto":
            step = GotoStep(step_id, draw(st.sampled_from(waits)))
        else:
            step = ExitStep(step_id, draw(st.sampled_from(list(ExitOutcome))))
        steps.append(step)
    return tuple(steps)


@st.composite
def campaign_definitions(draw: st.DrawFn) -> CampaignDefinition:
    return CampaignDefinition(
        slug=draw(slugs),
        name=draw(trimmed.filter(lambda name: len(name) <= 200)),
        description=draw(st.just("") | trimmed),
        timezone=draw(st.sampled_from([None, "UTC", "Europe/Paris", "America/New_York"])),
        entry=tuple(draw(st.lists(entries, min_size=1, max_size=3))),
        reentry=draw(st.builds(Reentry, st.none() | durations)),
        goal=draw(st.none() | st.sampled_from(RULES)),
        exit_conditions=tuple(draw(st.lists(exits, max_size=2))),
        send_window=draw(send_windows()),
        frequency_cap=draw(st.none() | st.builds(FrequencyCap, st.integers(1, 1000), st.sampled_from(list(CapPeriod)))),
        steps=draw(steps_lists()),
    )


def every_template(name: str) -> bool:
    return True


def valid(definition: CampaignDefinition) -> CampaignDefinition:
    """The definition as the validator reads its YAML export (which must have no error)."""
    checked = check_text(dump_yaml(definition.to_data()), template_exists=every_template)
    assert checked.errors == (), [str(issue) for issue in checked.errors]
    assert checked.definition is not None
    return checked.definition


@given(campaign_definitions())
def test_yaml_round_trip(definition: CampaignDefinition) -> None:
    assert valid(definition) == definition


@given(campaign_definitions())
def test_json_round_trip(definition: CampaignDefinition) -> None:
    data: Any = json.loads(json.dumps(definition.to_data()))
    assert CampaignDefinition.from_data(data) == definition
    assert CampaignDefinition.from_data(data).to_data() == data
