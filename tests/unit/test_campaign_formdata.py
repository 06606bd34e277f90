"""The editor's form fields carry every valid definition there and back unchanged, and put each validator
message at the field it concerns."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from werkzeug.datastructures import MultiDict

from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.formdata import (
    FormErrors,
    field_for_issue,
    settings_from_form,
    settings_to_form,
    step_from_form,
    step_to_form,
)
from nurture.campaigns.validation import check_data
from tests.unit.test_campaign_definition_roundtrip import campaign_definitions, every_template


def as_posted(fields: dict[str, Any]) -> MultiDict[str, str]:
    """What a browser posts for these fields: lists as repeated keys, unchecked boxes left out."""
    posted: MultiDict[str, str] = MultiDict()
    for key, value in fields.items():
        if isinstance(value, list):
            for item in value:
                posted.add(key, item)
        elif key in ("window_on", "email_owner") and not value:
            continue
        else:
            posted.add(key, value)
    return posted


def through_the_forms(data: dict[str, Any]) -> dict[str, Any]:
    result = settings_from_form(as_posted(settings_to_form(data)), data)
    result["steps"] = [step_from_form(as_posted(step_to_form(step))) for step in data["steps"]]
    return result


@given(campaign_definitions())
def test_every_valid_definition_goes_to_the_forms_and_back_unchanged(definition: CampaignDefinition) -> None:
    data = definition.to_data()
    assert through_the_forms(data) == data


def test_json_that_does_not_parse_is_refused_at_its_field() -> None:
    with pytest.raises(FormErrors) as refused:
        step_from_form({"id": "s", "type": "set", "attributes": "{plan: pro}"})
    assert list(refused.value.errors) == ["attributes"]


def test_unfinished_steps_still_make_forms() -> None:
    for kind in ("send", "wait", "branch", "wait_for", "set", "notify", "goto", "exit", "unknown"):
        assert step_to_form({"type": kind})["type"] == kind


def test_an_empty_target_is_reported_at_its_field() -> None:
    data = {
        "slug": "s",
        "name": "S",
        "entry": [{"on_stage": "lost"}],
        "steps": [
            {"id": "send-1", "type": "send", "template": "t"},
            {"id": "clicked", "type": "wait_for", "event": "clicked", "step": "send-1", "within": "7d", "yes": ""},
            {"id": "end", "type": "exit"},
        ],
    }
    checked = check_data(data, template_exists=every_template)
    places = {field_for_issue(issue.path, data) for issue in checked.errors}
    assert (1, "yes") in places, [(str(issue), issue.path) for issue in checked.errors]
