"""Every input edge answers bad input with a clear error (issue 9, items 2, 3, 9 and 10): deep JSON, NUL and
lone surrogates, numbers out of range, ids beyond 64 bits, bodies over their limit (chunked too), and the
headers every response carries. On SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from nurture.cli import cli
from nurture.cli import run as run_module
from nurture.errors import ValidationError
from nurture.inputs import MAX_ID
from nurture.leads.lifecycle import Stage
from nurture.leads.models import Lead, StageChange, Tag
from nurture.leads.service import add_tag, change_stage, create_lead, find_lead
from nurture.segments.models import Segment
from nurture.segments.rules import MAX_RULES_JSON_DEPTH, parse_rules
from nurture.segments.service import count_segment, create_segment
from nurture.tracking.models import EngagementEvent, ProviderEvent
from nurture.web.api import MAX_BODY_BYTES as API_MAX_BYTES
from nurture.web.edges import SECURITY_HEADERS
from nurture.web.tracking import MAX_BODY_BYTES as WEBHOOK_MAX_BYTES
from tests.integration.test_segments_cli import IMPORT
from tests.integration.test_tracking_support import make_lead, make_message

pytest_plugins = ["tests.integration.test_tracking_support"]

API = "/api/v1/events"
WEBHOOK = "/webhooks/sendgrid"


@pytest.fixture
def api_client(tracking_app: Flask) -> FlaskClient:
    return tracking_app.test_client(use_cookies=False)


@pytest.fixture
def api_key(session, clock) -> str:
    from nurture.tracking.apikeys import create_key

    created = create_key(session, clock, "website")
    session.commit()
    return created.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def chunked(client: FlaskClient, path: str, body: bytes, headers: dict[str, str]) -> object:
    """POST ``body`` as a server hands over a chunked request: no Content-Length, the input terminated."""
    builder = EnvironBuilder(path=path, method="POST", input_stream=io.BytesIO(body), headers=headers)
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    return client.open(Request(environ))


def oversized_events(size: int) -> bytes:
    """A valid events body of more than ``size`` bytes (the old code recorded every one of them)."""
    item = {"email": "big@example.com", "type": "page_visited", "properties": {"pad": "x" * 7000}}
    return json.dumps([item] * (size // 7000 + 10)).encode()


# --- item 2: deep JSON bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [nested(100_000), b'{"a":' * 100_000 + b"1" + b"}" * 100_000, nested(33)])
def test_a_deeply_nested_events_body_is_a_400_naming_the_body(session, api_client, api_key, body):
    response = api_client.post(API, data=body, headers=bearer(api_key))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"].startswith("body") and "nested deeper than 32 levels" in error["message"]
    assert count(session, Lead) == 0


def test_nesting_inside_properties_names_its_path(session, api_client, api_key):
    properties: dict = {}
    inner = properties
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    body = json.dumps({"email": "a@example.com", "type": "page_visited", "properties": properties})
    response = api_client.post(API, data=body, headers=bearer(api_key))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"].startswith("body.properties.a.a.")
    assert count(session, Lead) == 0


def test_a_deeply_nested_webhook_body_is_a_400(session, clock, tracking_app, webhook_keys):
    client = tracking_app.test_client()
    body = nested(100_000)
    response = client.post(WEBHOOK, data=body, headers=webhook_keys.headers(body, clock.now()))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"] == "body" and "nested deeper" in error["message"]
    assert count(session, ProviderEvent) == 0


def test_segment_rules_nested_10000_deep_are_one_line_naming_the_rules(app, session):
    deep = '{"not": ' * 10_000 + '{"field": "country", "op": "=", "value": "FR"}' + "}" * 10_000
    result = app.test_cli_runner().invoke(cli, ["segments", "create", "deep", "--name", "Deep", "--rules", deep])
    assert result.exit_code == 2
    assert result.output == f"Error: rules: nested deeper than {MAX_RULES_JSON_DEPTH} levels\n"
    assert count(session, Segment) == 0


def test_rules_just_past_the_depth_limit_name_the_rule_path(app, session):
    rules: dict = {"field": "country", "op": "=", "value": "FR"}
    for _ in range(21):
        rules = {"not": rules}
    result = app.test_cli_runner().invoke(
        cli, ["segments", "create", "deep", "--name", "Deep", "--rules", json.dumps(rules)]
    )
    assert result.exit_code == 2
    assert result.output == "Error: " + ".".join(["not"] * 20) + ": rules nest more than 20 levels deep\n"


def test_deep_rule_values_given_as_python_objects_are_a_rule_error():
    value: list = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(ValidationError, match=r"^value: expected text, got \[\[\["):
        parse_rules({"field": "country", "op": "=", "value": value})


# --- item 3: NUL, lone surrogates, numbers, dates, ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"email": "a\\u0000b@example.com", "type": "page_visited"}', "body.email"),
        ('{"email": "a@example.com", "type": "x", "properties": {"note": "x\\ud800"}}', "body.properties.note"),
        ('[{"email": "a@example.com", "type": "x"}, {"email": "b@example.com", "type": "y\\u0000"}]', "body[1].type"),
        ('{"email": "a@example.com", "type": "x", "properties": {"k\\u0000": 1}}', "body.properties"),
        ('{"email": "a@example.com", "type": "x", "properties": {"n": NaN}}', "body"),
        ('{"email": "a@example.com", "type": "x", "properties": {"n": Infinity}}', "body"),
        ('{"email": "a@example.com", "type": "x", "properties": {"n": 1e400}}', "body"),
        ('{"email": "a@example.com", "type": "x", "properties": {"n": 1%s}}' % ("0" * 30), "body.properties.n"),
    ],
)
def test_unstorable_values_in_events_are_a_400_naming_the_path(session, api_client, api_key, body, field):
    response = api_client.post(API, data=body, headers=bearer(api_key))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert (error["index"], error["field"]) == (None, field)
    assert count(session, Lead) == 0 and count(session, EngagementEvent) == 0


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_an_occurred_at_beyond_the_representable_years_is_an_item_error(session, api_client, api_key, instant):
    body = {"email": "a@example.com", "type": "page_visited", "occurred_at": instant}
    response = api_client.post(API, json=body, headers=bearer(api_key))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert (error["index"], error["field"]) == (0, "occurred_at")
    assert error["message"].startswith("out of range")
    assert count(session, EngagementEvent) == 0


def test_the_earliest_instant_with_a_utc_offset_is_stored(session, api_client, api_key):
    body = {"email": "a@example.com", "type": "page_visited", "occurred_at": "0001-01-01T00:00:00Z"}
    response = api_client.post(API, json=body, headers=bearer(api_key))
    assert response.status_code == 200, response.get_json()


def test_unstorable_text_in_a_signed_webhook_body_is_a_400(session, clock, tracking_app, webhook_keys):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    event = {"email": lead.email, "event": "bounce", "reason": "bad\u0000", "nurture_message_id": str(message.id)}
    for body in (json.dumps([event]).encode(), json.dumps([{**event, "reason": "\ud800"}]).encode()):
        response = tracking_app.test_client().post(WEBHOOK, data=body, headers=webhook_keys.headers(body, clock.now()))
        assert response.status_code == 400
        assert response.get_json()["errors"][0]["field"] == "body[0].reason"
    assert count(session, ProviderEvent) == 0


@pytest.mark.parametrize("query", ["q=%00", "q=a%00b", "stage=%00", "%00=1", "page=1&q=x%00"])
def test_a_nul_in_a_query_string_is_a_400_page_naming_the_field(logged_in_client, query):
    response = logged_in_client.get(f"/leads?{query}")
    assert response.status_code == 400
    assert "contains a NUL character" in response.text
    assert "400 · Bad request" in response.text


def test_every_page_checks_its_query_string(logged_in_client):
    for path in ("/", "/campaigns", "/reports", "/leads/1"):
        response = logged_in_client.get(f"{path}?from=%00")
        assert response.status_code == 400, path
        assert "from: contains a NUL character (at character 1)" in response.text


def test_json_endpoints_answer_a_bad_query_string_in_json(session, api_client, api_key):
    response = api_client.post(f"{API}?x=%00", json={"email": "a@example.com", "type": "x"}, headers=bearer(api_key))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {"index": None, "field": "x", "message": "contains a NUL character (at character 1)"}
    ]
    assert count(session, Lead) == 0


@pytest.mark.parametrize("path", ["/campaigns/%00", "/campaigns/a%00b", "/static/%00.css"])
def test_a_nul_in_a_path_segment_names_nothing(logged_in_client, path):
    assert logged_in_client.get(path).status_code == 404


def test_a_nul_in_a_campaign_action_url_names_nothing(logged_in_client):
    assert logged_in_client.post("/campaigns/a%00/pause").status_code == 404


@pytest.mark.parametrize("lead_id", ["999999999999999999999999999999", str(MAX_ID + 1), str(MAX_ID), "9" * 5000])
def test_lead_ids_beyond_64_bits_are_a_404(logged_in_client, lead_id):
    assert logged_in_client.get(f"/leads/{lead_id}").status_code == 404


def test_forms_on_lead_ids_beyond_64_bits_are_a_404(logged_in_client):
    assert logged_in_client.post(f"/leads/{MAX_ID + 1}/stage", data={"stage": "sql"}).status_code == 404
    assert logged_in_client.post(f"/leads/{MAX_ID + 1}/tags", data={"action": "add", "tag": "x"}).status_code == 404


def test_non_ascii_digits_are_not_a_lead_id(session, clock, logged_in_client):
    lead = create_lead(session, clock, "one@example.com", actor=IMPORT)
    session.commit()
    arabic_indic = "".join(chr(0x0660 + int(digit)) for digit in str(lead.id))
    assert logged_in_client.get(f"/leads/{arabic_indic}").status_code == 404
    assert logged_in_client.get(f"/leads/{lead.id}").status_code == 200


@pytest.mark.parametrize("pause", ["²", "٣", "9" * 5000, "99999999999999999999999", "-7"])
def test_a_pause_that_is_not_one_of_the_choices_is_a_400(session, clock, tracking_app, urls, pause):
    """Found by the fuzzer: "²".isdigit() is true and int() refuses it (a 500 before)."""
    lead = make_lead(session, clock)
    session.commit()
    response = tracking_app.test_client().post(urls.preferences(lead.id), data={"pause_days": pause})
    assert response.status_code == 400
    assert "Please choose from the options shown." in response.text


def test_a_tag_or_stage_reason_with_a_nul_is_refused_and_nothing_stored(session, clock, logged_in_client):
    lead = create_lead(session, clock, "one@example.com", actor=IMPORT)
    session.commit()
    tagged = logged_in_client.post(f"/leads/{lead.id}/tags", data={"action": "add", "tag": "vip\x00"})
    moved = logged_in_client.post(f"/leads/{lead.id}/stage", data={"stage": "sql", "reason": "call\x00"})
    assert tagged.status_code == 400 and "tag: contains a NUL character" in tagged.text
    assert moved.status_code == 400 and "reason: contains a NUL character" in moved.text
    session.expire_all()
    assert count(session, Tag) == 0
    assert session.get(Lead, lead.id).stage is Stage.SUBSCRIBER


def test_the_domain_refuses_unstorable_text_whatever_the_edge(session, clock):
    with pytest.raises(ValidationError, match=r"^email: contains a NUL"):
        create_lead(session, clock, "a\x00@example.com", actor=IMPORT)
    with pytest.raises(ValidationError, match=r"^first_name: contains an unpaired surrogate U\+D800"):
        create_lead(session, clock, "a@example.com", actor=IMPORT, first_name="Zo\ud800")
    with pytest.raises(ValidationError, match=r"^tags: contains a NUL"):
        create_lead(session, clock, "a@example.com", actor=IMPORT, tags=["ok", "b\x00d"])
    with pytest.raises(ValidationError, match=r"^attributes\.note: contains an unpaired"):
        create_lead(session, clock, "a@example.com", actor=IMPORT, attributes={"note": "\udfff"})
    lead = create_lead(session, clock, "a@example.com", actor=IMPORT)
    with pytest.raises(ValidationError, match=r"^tag: contains an unpaired surrogate"):
        add_tag(session, clock, lead, "\ud800", actor=IMPORT)
    with pytest.raises(ValidationError, match=r"^reason: contains a NUL"):
        change_stage(session, clock, lead, Stage.SQL, reason="\x00", actor=IMPORT)
    session.flush()
    assert count(session, Tag) == 0
    assert count(session, StageChange) == 1  # the creation only
    # Nothing stored can match an unstorable address, and the driver is never asked to send one.
    assert find_lead(session, "\ud800@example.com") is None
    assert find_lead(session, "a\x00@example.com") is None


def test_a_lead_page_still_opens_for_everyone(session, clock, logged_in_client):
    """On SQLite, a stored lone surrogate used to break the lead page for everyone: none can be stored now."""
    with pytest.raises(ValidationError):
        create_lead(session, clock, "s@example.com", actor=IMPORT, company="\ud800")
    lead = create_lead(session, clock, "s@example.com", actor=IMPORT, company="Zoë & Co")
    session.commit()
    assert logged_in_client.get(f"/leads/{lead.id}").status_code == 200


@pytest.mark.parametrize(
    ("rules", "where", "message"),
    [
        ({"field": "first_name", "op": "contains", "value": "a\x00b"}, "value", "contains a NUL character"),
        ({"field": "company", "op": "=", "value": "\ud800"}, "value", "contains an unpaired surrogate"),
        ({"field": "tags", "op": "in", "value": ["ok", "x\x00"]}, "value[1]", "contains a NUL character"),
        ({"field": "attributes.x\ud800", "op": "=", "value": 1}, "field", "contains an unpaired surrogate"),
        ({"event": "opened\x00"}, "event", "contains a NUL character"),
        ({"all": [{"field": "score", "op": ">", "value": 10**30}]}, "all[0].value", "number out of range"),
        ({"field": "score", "op": "between", "value": [0, -(10**19)]}, "value[1]", "number out of range"),
        ({"field": "attributes.n", "op": ">", "value": float("inf")}, "value", "number must be finite"),
    ],
)
def test_unstorable_rule_values_are_a_rule_error_with_its_path(session, clock, rules, where, message):
    with pytest.raises(ValidationError) as raised:
        count_segment(session, clock, rules)
    assert raised.value.where == where and raised.value.message.startswith(message)
    with pytest.raises(ValidationError):
        create_segment(session, clock, "bad", "Bad", json.dumps(rules, ensure_ascii=True))


def test_contains_a_nul_no_longer_matches_names_ending_before_it(session, clock):
    """SQLite cut the pattern at the NUL: ``contains "a\\u0000b"`` counted every first name ending in "a"."""
    create_lead(session, clock, "anna@example.com", actor=IMPORT, first_name="Anna")
    session.flush()
    with pytest.raises(ValidationError, match="value: contains a NUL"):
        count_segment(session, clock, '{"field": "first_name", "op": "contains", "value": "a\\u0000b"}')
    assert count_segment(session, clock, {"field": "first_name", "op": "contains", "value": "nna"}) == 1


def test_a_rule_number_of_30_digits_is_refused_before_the_database(app, session):
    rules = '{"field": "score", "op": ">", "value": 1000000000000000000000000000000}'
    result = app.test_cli_runner().invoke(cli, ["segments", "create", "big", "--name", "Big", "--rules", rules])
    assert result.exit_code == 2
    assert result.output == "Error: value: number out of range (at most 9223372036854775807 in absolute value)\n"


# --- item 9: body limits on the bytes read ------------------------------------------------------------------------


def test_a_chunked_events_body_over_the_limit_is_a_413_and_records_nothing(session, api_client, api_key):
    body = oversized_events(API_MAX_BYTES)
    response = chunked(api_client, API, body, bearer(api_key))
    assert response.status_code == 413
    assert response.get_json()["errors"] == [
        {"index": None, "field": "body", "message": f"larger than {API_MAX_BYTES} bytes"}
    ]
    assert count(session, Lead) == 0 and count(session, EngagementEvent) == 0


def test_a_chunked_events_body_within_the_limit_is_read_whole(session, api_client, api_key):
    body = json.dumps([{"email": "small@example.com", "type": "page_visited"}] * 3).encode()
    response = chunked(api_client, API, body, bearer(api_key))
    assert response.status_code == 200, response.get_json()
    assert count(session, EngagementEvent) == 3


def test_a_declared_length_over_the_limit_is_a_413_in_json(session, api_client, api_key):
    response = api_client.post(API, data=oversized_events(API_MAX_BYTES), headers=bearer(api_key))
    assert response.status_code == 413
    assert response.get_json()["errors"][0]["field"] == "body"


def test_a_chunked_webhook_body_over_the_limit_is_a_413(session, clock, tracking_app, webhook_keys):
    body = b"[" + b'{"event": "processed"},' * (WEBHOOK_MAX_BYTES // 20) + b"{}]"
    response = chunked(tracking_app.test_client(), WEBHOOK, body, webhook_keys.headers(body, clock.now()))
    assert response.status_code == 413
    assert response.get_json()["errors"][0]["message"] == f"larger than {WEBHOOK_MAX_BYTES} bytes"
    assert count(session, ProviderEvent) == 0


@contextmanager
def serving_one_request(app: Flask) -> Iterator[http.client.HTTPConnection]:
    """The app behind the development server ``nurture run`` starts, on 127.0.0.1, for one request."""
    server = make_server("127.0.0.1", 0, app, request_handler=run_module.QuietRequestHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        yield connection
    finally:
        connection.close()
        thread.join(timeout=30)
        server.server_close()


def test_a_real_chunked_request_over_the_limit_is_a_413(session, tracking_app, api_key):
    body = oversized_events(API_MAX_BYTES)
    chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
    with serving_one_request(tracking_app) as connection:
        connection.request("POST", API, body=chunks, headers=bearer(api_key))
        response = connection.getresponse()
        answer = json.loads(response.read())
    assert response.status == 413
    assert answer["errors"][0]["message"] == f"larger than {API_MAX_BYTES} bytes"
    assert count(session, Lead) == 0


# --- item 10: response headers ----------------------------------------------------------------------------------


def assert_secured(response, **overrides: str) -> None:
    for name, value in {**SECURITY_HEADERS, **overrides}.items():
        assert response.headers.get(name) == value, (name, response.headers)


def test_every_kind_of_response_carries_the_security_headers(session, clock, logged_in_client, client, api_client):
    lead = create_lead(session, clock, "h@example.com", actor=IMPORT)
    session.commit()
    for path in ("/", "/leads", f"/leads/{lead.id}", "/campaigns", "/reports", "/nowhere", "/static/nurture.css"):
        with logged_in_client.get(path) as response:  # the static file is streamed: close it
            assert_secured(response)
    assert_secured(logged_in_client.get("/leads?q=%00"))
    assert_secured(client.get("/login"))
    assert_secured(client.get("/leads"))  # the redirect to the login page
    assert_secured(api_client.post(API, json={}))  # 401 JSON


def test_a_views_own_header_wins(session, clock, tracking_app, urls):
    client = tracking_app.test_client()
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    assert_secured(client.get(urls.unsubscribe(lead.id)), **{"Referrer-Policy": "no-referrer"})
    viewed = client.get(urls.view(message.id))
    assert viewed.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'none'" in viewed.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in viewed.headers["Content-Security-Policy"]


def test_the_open_and_click_hits_are_nosniff(session, clock, tracking_app, urls):
    client = tracking_app.test_client()
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    for response in (client.get(urls.open(message.id)), client.get(urls.click(message.id, 0)), client.get("/t/o/x")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_development_server_names_no_versions(session, tracking_app):
    with serving_one_request(tracking_app) as connection:
        connection.request("GET", "/login")
        response = connection.getresponse()
        response.read()
    assert response.getheader("Server") == "nurture"
    assert response.getheader("X-Frame-Options") == "DENY"


def test_nurture_run_serves_with_the_quiet_handler(monkeypatch, app):
    served: dict = {}
    monkeypatch.setattr(run_module, "run_simple", lambda *args, **kwargs: served.update(kwargs))
    assert cli.commands["run"] is run_module.run_command
    result = CliRunner().invoke(run_module.run_command, ["--port", "5999"], obj=ScriptInfo(create_app=lambda: app))
    assert result.exit_code == 0, result.output
    assert served["request_handler"] is run_module.QuietRequestHandler
