"""The campaign editor: settings and steps saved as a draft through their forms, the validator's messages at
their fields, insert/move/delete/rename, revisions that refuse to overwrite, undo, roles and CSRF."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from nurture.auth.models import Role
from nurture.campaigns.drafts import find_draft
from nurture.campaigns.formdata import settings_to_form, step_to_form
from nurture.campaigns.models import CampaignStatus
from nurture.campaigns.store import archive_campaign, get_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.config import Settings
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as

EDIT = "/campaigns/re-engage-lost/edit"
STARTERS = Path(__file__).resolve().parents[2] / "nurture" / "starter_campaigns"
TEMPLATES = Path(__file__).resolve().parents[2] / "nurture" / "email_templates"


@pytest.fixture
def nurture_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test", email_templates=TEMPLATES
    )


@pytest.fixture
def campaign(session, clock, tmp_path):
    shutil.copy(STARTERS / "re-engage-lost.yaml", tmp_path / "re-engage-lost.yaml")
    report = load_campaign_files(
        session, clock, [tmp_path / "re-engage-lost.yaml"], template_exists=templates_in(TEMPLATES)
    )
    session.commit()
    return report.saved[0].campaign


@pytest.fixture
def marketer(app, make_user):
    return client_as(app, make_user, Role.MARKETER)


def posted(fields: dict, revision: int) -> dict:
    form: dict = {"revision": str(revision)}
    for key, value in fields.items():
        if key in ("window_on", "email_owner") and not value:
            continue
        form[key] = value
    return form


def step_form(campaign, step_id: str, revision: int = 0, **changes) -> dict:
    step = next(step for step in campaign.definition["steps"] if step["id"] == step_id)
    return posted({**step_to_form(step), **changes}, revision)


def test_the_editor_lists_the_steps_and_changes_nothing_by_looking(marketer, session, campaign):
    page = marketer.get(EDIT)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="step-whats-new-clicked"' in html and "wait for clicked on whats-new, up to 10d" in html
    assert "Monday to Friday, 09:00–17:00 in each lead&#39;s time zone" in html
    assert find_draft(session, campaign) is None


def test_saving_a_step_makes_a_draft_and_leaves_the_published_definition(marketer, session, campaign):
    published = dict(campaign.definition)
    answer = marketer.post(EDIT + "/steps/wait-30-days", data=step_form(campaign, "wait-30-days", **{"for": "21d"}))
    assert answer.status_code == 303
    session.expire_all()
    draft = find_draft(session, campaign)
    assert draft.revision == 1 and draft.definition["steps"][0] == {"id": "wait-30-days", "type": "wait", "for": "21d"}
    assert get_campaign(session, "re-engage-lost").definition == published


def test_settings_round_trip_through_the_form(marketer, session, campaign):
    form = posted(settings_to_form(campaign.definition), 0)
    form["name"] = "Win back lost deals"
    form["window_days"] = ["mon", "wed"]
    answer = marketer.post(EDIT + "/settings", data=form)
    assert answer.status_code == 303
    draft = find_draft(session, campaign)
    expected = dict(campaign.definition, name="Win back lost deals")
    expected["send_window"] = {"days": ["mon", "wed"], "hours": {"from": "09:00", "to": "17:00"}}
    assert draft.definition == expected


def test_an_empty_target_shows_the_validators_message_at_that_field(marketer, session, campaign):
    form = step_form(campaign, "check-in-clicked", yes="")
    form["yes"] = "nowhere"
    marketer.post(EDIT + "/steps/check-in-clicked", data=form)
    page = marketer.get(EDIT + "/steps/check-in-clicked").get_data(as_text=True)
    error = re.search(r'<span class="field-error" id="error-yes"[^>]*>([^<]+)</span>', page)
    assert error and "nowhere" in error.group(1)
    assert 'id="f-yes" name="yes" aria-describedby="error-yes" aria-invalid="true"' in page
    overview = marketer.get(EDIT).get_data(as_text=True)
    assert "1 problem to fix before publishing" in overview


def test_a_save_made_on_an_older_revision_is_refused_keeping_the_input(marketer, session, campaign):
    marketer.post(EDIT + "/steps/wait-30-days", data=step_form(campaign, "wait-30-days", **{"for": "21d"}))
    stale = marketer.post(EDIT + "/steps/wait-30-days", data=step_form(campaign, "wait-30-days", **{"for": "45d"}))
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "changed by marketer@example.com" in html and 'value="45d"' in html
    assert find_draft(session, campaign).definition["steps"][0]["for"] == "21d"


def test_a_save_as_you_go_answers_with_the_new_revision_out_of_band(marketer, campaign):
    answer = marketer.post(
        EDIT + "/steps/wait-30-days",
        data=step_form(campaign, "wait-30-days", **{"for": "nonsense"}),
        headers={"HX-Request": "true"},
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert 'id="draft-revision" value="1" hx-swap-oob="true"' in html
    assert re.search(r'id="error-for"[^>]*>[^<]*nonsense', html)


def test_insert_move_rename_and_delete(marketer, session, campaign):
    answer = marketer.post(EDIT + "/steps", data={"revision": "0", "type": "wait", "after": "check-in", "id": ""})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/edit/steps/wait-1")
    ids = [step["id"] for step in find_draft(session, campaign).definition["steps"]]
    assert ids[:3] == ["wait-30-days", "check-in", "wait-1"]
    marketer.post(EDIT + "/steps/wait-1/move", data={"revision": "1", "direction": "up"})
    ids = [step["id"] for step in find_draft(session, campaign).definition["steps"]]
    assert ids[:3] == ["wait-30-days", "wait-1", "check-in"]
    data = find_draft(session, campaign).definition
    renamed = posted({**step_to_form(data["steps"][11]), "id": "to-lead"}, 2)
    marketer.post(EDIT + "/steps/back-to-lead", data=renamed)
    data = find_draft(session, campaign).definition
    assert {step["id"]: step.get("yes") for step in data["steps"]}["check-in-clicked"] == "to-lead"
    confirm = marketer.get(EDIT + "/steps/to-lead/delete").get_data(as_text=True)
    assert "check-in-clicked" in confirm and "last-chance-clicked" in confirm
    marketer.post(EDIT + "/steps/to-lead/delete", data={"revision": "3"})
    assert "to-lead" not in [step["id"] for step in find_draft(session, campaign).definition["steps"]]


def test_undo_goes_back_one_change(marketer, session, campaign):
    marketer.post(EDIT + "/steps/wait-30-days", data=step_form(campaign, "wait-30-days", **{"for": "21d"}))
    marketer.post(EDIT + "/steps/wait-30-days", data=step_form(campaign, "wait-30-days", 1, **{"for": "14d"}))
    marketer.post(EDIT + "/undo", data={"revision": "2"})
    assert find_draft(session, campaign).definition["steps"][0]["for"] == "21d"


def test_viewers_and_sales_read_but_cannot_change(app, make_user, campaign):
    for role in (Role.VIEWER, Role.SALES):
        client = client_as(app, make_user, role)
        page = client.get(EDIT + "/steps/check-in").get_data(as_text=True)
        assert "<fieldset disabled>" in page and "Save to draft" not in page
        assert client.post(EDIT + "/steps/check-in", data=step_form(campaign, "check-in")).status_code == 403
        assert client.post(EDIT + "/steps", data={"revision": "0", "type": "exit"}).status_code == 403


def test_archived_campaigns_cannot_change(marketer, session, clock, campaign):
    archive_campaign(session, clock, "re-engage-lost")
    session.commit()
    assert campaign.status is CampaignStatus.ARCHIVED
    answer = marketer.post(EDIT + "/steps/check-in", data=step_form(campaign, "check-in"))
    assert answer.status_code == 400 and "archived" in answer.get_data(as_text=True)


def test_hostile_input_is_a_clear_4xx(marketer, campaign):
    assert marketer.post(EDIT + "/steps/nope", data={"revision": "0"}).status_code == 404
    assert marketer.post(EDIT + "/steps/check-in", data={"revision": "x"}).status_code == 400
    bad_json = step_form(campaign, "check-in-replied", condition_rules="{not json")
    answer = marketer.post(EDIT + "/steps/check-in-replied", data=bad_json)
    assert answer.status_code == 400 and "not valid JSON" in answer.get_data(as_text=True)
    duplicate = marketer.post(EDIT + "/steps", data={"revision": "0", "type": "exit", "id": "check-in"})
    assert duplicate.status_code == 303
    nul = marketer.post(EDIT + "/steps/check-in", data=step_form(campaign, "check-in", subject="a\x00b"))
    assert nul.status_code == 400
    assert marketer.post(EDIT + "/steps", data={"revision": "0", "type": "teleport"}).status_code == 303


def test_no_form_posts_without_a_csrf_token(app, make_user, campaign):
    app.config["WTF_CSRF_ENABLED"] = True
    client = client_as(app, make_user, Role.MARKETER)
    answer = client.post(EDIT + "/steps/check-in", data=step_form(campaign, "check-in"))
    assert answer.status_code == 400
