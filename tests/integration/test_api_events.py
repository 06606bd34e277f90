"""POST /api/v1/events: API keys, one event or a list, per-item errors with good items kept, idempotency,
lead creation, deal_won and deal_lost; and the apikeys CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from nurture.cli.apikeys import apikeys_group
from nurture.leads.lifecycle import Stage
from nurture.leads.models import Lead, StageChange
from nurture.leads.service import find_lead
from nurture.tracking.apikeys import create_key, revoke_key
from nurture.tracking.models import ApiKey
from tests.integration.test_tracking_support import events_of, make_lead

pytest_plugins = ["tests.integration.test_tracking_support"]

URL = "/api/v1/events"


@pytest.fixture
def client(tracking_app):
    return tracking_app.test_client(use_cookies=False)


@pytest.fixture
def api_key(session, clock):
    created = create_key(session, clock, "website")
    session.commit()
    return created.key


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed_and_shown_once(session, clock):
    created = create_key(session, clock, "crm")
    stored = session.scalar(select(ApiKey).where(ApiKey.name == "crm"))
    assert created.key.startswith("nk_") and len(created.key) > 40
    assert created.key not in (stored.key_hash, stored.prefix)
    assert stored.prefix == created.key[:10]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nk_wrong", "Basic abc", "Bearer " + "nk_" + "x" * 200])
def test_requests_without_a_live_key_are_refused(session, clock, client, header):
    headers = {"Authorization": header} if header else {}
    response = client.post(URL, json={"email": "a@example.com", "type": "page_visited"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["errors"][0]["field"] == "Authorization"


def test_a_revoked_key_stops_working(session, clock, client, api_key):
    revoke_key(session, clock, "website")
    session.commit()
    assert client.post(URL, json={"email": "a@example.com", "type": "x"}, headers=auth(api_key)).status_code == 401


def test_one_event_for_an_unknown_email_creates_the_lead(session, clock, client, api_key):
    response = client.post(
        URL,
        json={
            "email": "New.Person@Example.com",
            "type": "form_submitted",
            "properties": {"form": "demo"},
            "occurred_at": "2026-01-15T09:30:00Z",
        },
        headers=auth(api_key),
    )

    assert response.status_code == 200
    [result] = response.get_json()["results"]
    assert result["status"] == "recorded" and result["lead_created"] is True
    lead = find_lead(session, "new.person@example.com")
    assert lead is not None and lead.source == "api"
    [event] = events_of(session, lead.id)
    assert (event.type, event.properties, event.source) == ("form_submitted", {"form": "demo"}, "api")
    assert event.occurred_at.isoformat() == "2026-01-15T09:30:00+00:00"
    assert event.processed_at is not None
    session.refresh(lead)
    assert lead.score == 50  # submitted-form 20 + requested-demo 30 (default rules)


def test_a_bad_item_does_not_lose_its_good_neighbours(session, clock, client, api_key):
    make_lead(session, clock, "known@example.com")
    session.commit()
    batch = [
        {"email": "known@example.com", "type": "page_visited", "properties": {"url": "https://example.com/pricing"}},
        {"email": "not an email", "type": "page_visited"},
        {"email": "known@example.com", "type": "Bad Type!", "occurred_at": "yesterday", "colour": "red"},
        {"email": "known@example.com", "type": "deal_lost"},
        {"email": "known@example.com", "type": "opened"},
        "not an object",
        {"email": "known@example.com", "type": "meeting_booked", "occurred_at": "2030-01-01T00:00:00Z"},
        {"email": "known@example.com", "type": "meeting_booked", "properties": []},
    ]

    response = client.post(URL, json=batch, headers=auth(api_key))

    assert response.status_code == 207
    body = response.get_json()
    assert [result["status"] for result in body["results"]] == ["recorded"] + ["invalid"] * 7
    fields = [(error["index"], error["field"]) for error in body["errors"]]
    assert fields == [
        (1, "email"),
        (2, "colour"),
        (2, "type"),
        (2, "occurred_at"),
        (3, "properties.reason"),
        (4, "type"),
        (5, "item"),
        (6, "occurred_at"),
        (7, "properties"),
    ]
    assert all(error["message"] for error in body["errors"])
    lead = find_lead(session, "known@example.com")
    assert [event.type for event in events_of(session, lead.id)] == ["page_visited"]


def test_all_bad_is_a_400_and_bad_bodies_say_why(session, clock, client, api_key):
    response = client.post(URL, json=[{"type": "x"}], headers=auth(api_key))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {"index": 0, "field": "email", "message": "required: the lead's email address"}
    ]
    for body, field in (("[]", "body"), ("42", "body"), ("{not json", "body")):
        response = client.post(URL, data=body, content_type="application/json", headers=auth(api_key))
        assert response.status_code == 400
        assert response.get_json()["errors"][0]["field"] == field


def test_the_same_id_is_recorded_once(session, clock, client, api_key):
    item = {"email": "a@example.com", "type": "replied", "id": "crm-123"}
    first = client.post(URL, json=item, headers=auth(api_key)).get_json()
    second = client.post(URL, json=[item, item], headers=auth(api_key)).get_json()
    assert first["results"][0]["status"] == "recorded"
    assert [result["status"] for result in second["results"]] == ["duplicate", "duplicate"]
    lead = find_lead(session, "a@example.com")
    assert len(events_of(session, lead.id)) == 1


def test_unknown_emails_are_refused_when_lead_creation_is_off(session, clock, tracking_app, api_key):
    from dataclasses import replace

    extension = tracking_app.extensions["nurture.tracking"]
    extension.tracking = replace(extension.tracking, api_creates_leads=False)
    response = tracking_app.test_client().post(
        URL, json={"email": "nobody@example.com", "type": "page_visited"}, headers=auth(api_key)
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0] == {"index": 0, "field": "email", "message": "no lead has this email"}
    assert find_lead(session, "nobody@example.com") is None


def test_deal_won_and_deal_lost_move_the_stage_with_the_reason(session, clock, client, api_key):
    make_lead(session, clock, "won@example.com")
    make_lead(session, clock, "lost@example.com")
    session.commit()

    response = client.post(
        URL,
        json=[
            {"email": "won@example.com", "type": "deal_won", "properties": {"amount": 12000}},
            {"email": "lost@example.com", "type": "deal_lost", "properties": {"reason": "chose a competitor"}},
        ],
        headers=auth(api_key),
    )

    assert response.status_code == 200
    session.expire_all()
    won = find_lead(session, "won@example.com")
    lost = find_lead(session, "lost@example.com")
    assert (won.stage, lost.stage) == (Stage.CUSTOMER, Stage.LOST)
    change = session.scalar(
        select(StageChange).where(StageChange.lead_id == lost.id, StageChange.to_stage == Stage.LOST)
    )
    assert change.reason == "deal lost: chose a competitor"
    assert (change.actor_kind.value, change.actor) == ("api", "events api")
    assert lost.last_engaged_at is None  # a lost deal is not engagement


def test_the_api_ignores_session_cookies_and_csrf(session, clock, tracking_app, api_key):
    tracking_app.config["WTF_CSRF_ENABLED"] = True
    response = tracking_app.test_client().post(
        URL, json={"email": "a@example.com", "type": "page_visited"}, headers=auth(api_key)
    )
    assert response.status_code == 200


def test_apikeys_cli_creates_lists_and_revokes(session, tracking_app):
    runner = tracking_app.test_cli_runner()
    created = runner.invoke(apikeys_group, ["create", "zapier"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("nk_")
    listed = runner.invoke(apikeys_group, ["list"])
    assert "zapier" in listed.output and key not in listed.output
    assert runner.invoke(apikeys_group, ["create", "zapier"]).exit_code == 2
    assert runner.invoke(apikeys_group, ["revoke", "zapier"]).exit_code == 0
    assert runner.invoke(apikeys_group, ["revoke", "nope"]).exit_code == 2
    assert session.scalar(select(Lead).limit(1)) is None
