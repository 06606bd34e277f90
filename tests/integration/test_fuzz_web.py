"""Fuzzing the web edges (issue 9, item 14): random JSON (depth, types, unicode, NUL, lone surrogates, huge
numbers) to the events API and the signed webhook, random bytes as bodies, and random path segments, query
strings and form values to every route of the app, signed in. The invariant: never a 500, never a traceback,
and the server still answers. Bounded to a few seconds per database."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from nurture.campaigns.store import load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead
from nurture.segments.builtin import ensure_builtin_segments
from nurture.tracking.apikeys import create_key
from nurture.tracking.sendgrid_webhook import map_pending_provider_events
from nurture.tracking.tokens import TokenPurpose, TokenSigner
from tests.integration.test_campaign_store import FIXTURES
from tests.integration.test_tracking_support import WebhookKeys

pytest_plugins = ["tests.integration.test_tracking_support"]

SEED = Actor(ActorKind.SYSTEM, "fuzz")
# The answers a bad request may get; anything from 500 up is a bug.
CLIENT_ERRORS = range(400, 500)

# Text from every plane, NUL and lone surrogates included (Hypothesis leaves surrogates out by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**400 // 10**370]),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)),
    max_leaves=20,
)
instants = st.one_of(
    any_text,
    st.datetimes(timezones=st.timezones()).map(lambda at: at.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-15T10:00:00Z"]),
)
events = st.fixed_dictionaries(
    {
        "email": st.one_of(st.emails(), any_text),
        "type": st.one_of(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), any_text),
    },
    optional={"properties": json_values, "occurred_at": instants, "id": json_scalars, "extra": json_values},
)


def _nested(kind: str, depth: int) -> bytes:
    return b"[" * depth + b"]" * depth if kind == "list" else b'{"a":' * depth + b"1" + b"}" * depth


deep_bodies = st.builds(_nested, st.sampled_from(["list", "object"]), st.integers(min_value=1, max_value=5000))


def dump(value: Any) -> bytes:
    """JSON as an attacker may write it: NaN and Infinity spelled out, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


api_bodies = st.one_of(
    events.map(dump),
    st.lists(events, max_size=5).map(dump),
    json_values.map(dump),
    deep_bodies,
    st.binary(max_size=200),
)


def assert_answered(response: Any, allowed: range | set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.get_data(as_text=True)[:500])
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text


@pytest.fixture
def api_key(session, clock) -> str:
    created = create_key(session, clock, "fuzz")
    session.commit()
    return created.key


def test_random_json_to_the_events_api(session, clock, tracking_app: Flask, api_key: str) -> None:
    client = tracking_app.test_client(use_cookies=False)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    @settings(max_examples=80)
    @given(body=api_bodies)
    def post(body: bytes) -> None:
        response = client.post("/api/v1/events", data=body, headers=headers)
        assert_answered(response, {200, 207, *CLIENT_ERRORS})
        assert response.is_json

    post()
    good = client.post("/api/v1/events", json={"email": "still@example.com", "type": "ping"}, headers=headers)
    assert good.status_code == 200


def test_random_json_to_the_signed_webhook(session, clock, tracking_app: Flask, webhook_keys: WebhookKeys) -> None:
    client = tracking_app.test_client()
    sendgrid_like = st.lists(
        st.fixed_dictionaries(
            {"event": st.one_of(st.sampled_from(["delivered", "bounce", "open", "click", "dropped"]), any_text)},
            optional={
                "email": st.one_of(st.emails(), any_text),
                "timestamp": numbers,
                "sg_event_id": json_scalars,
                "nurture_message_id": st.one_of(numbers.map(str), json_scalars),
                "reason": json_values,
                "url": any_text,
            },
        ),
        max_size=5,
    ).map(dump)

    @settings(max_examples=60)
    @given(body=st.one_of(sendgrid_like, json_values.map(dump), deep_bodies, st.binary(max_size=200)))
    def post(body: bytes) -> None:
        response = client.post("/webhooks/sendgrid", data=body, headers=webhook_keys.headers(body, clock.now()))
        assert_answered(response, {200, *CLIENT_ERRORS})
        assert response.is_json

    post()
    # What was stored, the worker maps without an error (each event gets an outcome).
    map_pending_provider_events(session, clock, limit=10_000)
    still = client.post("/webhooks/sendgrid", data=b"[]", headers=webhook_keys.headers(b"[]", clock.now()))
    assert still.status_code == 200


# --- every route, signed in --------------------------------------------------------------------------------------

# POST /logout would end the session the rest of the run needs; it takes no input besides the cookie.
SKIPPED_ENDPOINTS = {"auth.logout"}
# Also answered ahead of Flask (nurture.web.tracking.HitEndpoints), so not in the URL map.
HIT_PATHS = ("/t/o/{token}", "/t/o/{token}.gif", "/t/c/{token}/{index}")


def encoded(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


raw_segments = st.one_of(any_text, st.binary(max_size=20).map(lambda raw: raw.decode("latin-1")))
query_strings = st.lists(
    st.tuples(st.one_of(any_text.map(encoded), st.binary(max_size=10).map(quote_from_bytes)), any_text.map(encoded)),
    max_size=4,
).map(lambda pairs: "&".join(f"{key}={value}" for key, value in pairs))
# Digits int() refuses though str.isdigit() accepts them, more digits than int() converts, and good values.
tricky_values = st.sampled_from(["²", "٣", "9" * 5000, "-1", "keep", "add", "remove", "7", "sql"])
form_value = st.one_of(
    tricky_values,
    tricky_values,  # twice: as likely as the two random kinds together
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
# The fields each form reads (each there or not): a fuzzer that knows them gets past the first check.
FORM_FIELDS = {
    "auth.login": ("email", "password"),
    "leads.set_stage": ("stage", "reason"),
    "leads.edit_tags": ("action", "tag"),
    "tracking.unsubscribe_post": ("List-Unsubscribe",),
    "tracking.preferences": ("pause_days", "topics", "unsubscribe_all"),
}
ANY_FORM_FIELDS = ("q", "stage", "reason", "tag", "action")


def form_values(endpoint: str) -> st.SearchStrategy[dict[str, str]]:
    fields = FORM_FIELDS.get(endpoint, ANY_FORM_FIELDS)
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, form_value))


# The token each public page verifies: known good ones reach the views' own checks.
TOKEN_PURPOSES = {
    "tracking.unsubscribe_page": TokenPurpose.UNSUBSCRIBE,
    "tracking.unsubscribe_post": TokenPurpose.UNSUBSCRIBE,
    "tracking.preferences": TokenPurpose.PREFERENCES,
    "tracking.view_in_browser": TokenPurpose.VIEW,
}


def random_segment(rule: Rule, name: str) -> st.SearchStrategy[str]:
    """Random text for any segment, and numbers for an ``int:`` one."""
    kinds = [raw_segments.map(encoded)]
    if _placeholder(rule, name).startswith("int:"):
        kinds.append(st.integers(min_value=-(10**25), max_value=10**25).map(str))
    return st.one_of(*kinds)


def known_segment(rule: Rule, name: str, known: dict[str, list[str]]) -> st.SearchStrategy[str] | None:
    """Values that name something: the choices of ``any(...)``, real ids, slugs and good tokens."""
    placeholder = _placeholder(rule, name)
    if placeholder.startswith("any("):
        choices = placeholder.removeprefix("any(").split(")")[0]
        return st.sampled_from([choice.strip() for choice in choices.split(",")])
    values = known.get(f"token:{TOKEN_PURPOSES[str(rule.endpoint)]}" if name == "token" else name)
    return st.sampled_from(values) if values else None


@pytest.fixture
def known_values(session, clock, signer: TokenSigner) -> dict[str, list[str]]:
    """Real ids, slugs and tokens, so some random requests reach the views' own checks."""
    leads = [create_lead(session, clock, f"fuzz{i}@example.com", actor=SEED, first_name="Fuzz") for i in range(2)]
    ensure_builtin_segments(session, clock)
    templates = templates_in(FIXTURES / "email_templates")
    report = load_campaign_files(session, clock, [FIXTURES / "valid"], template_exists=templates)
    session.commit()
    ids = [lead.id for lead in leads]
    tokens = {f"token:{purpose}": [signer.sign(purpose, value) for value in ids] for purpose in TokenPurpose}
    return {
        "lead_id": [str(lead_id) for lead_id in ids],
        "slug": [saved.campaign.slug for saved in report.saved],
        "filename": ["nurture.css", "../app.py", "..%2Fapp.py"],
        **tokens,
    }


def test_random_paths_queries_and_forms_on_every_route(
    logged_in_client: FlaskClient, tracking_app: Flask, known_values: dict[str, list[str]]
) -> None:
    rules = [rule for rule in tracking_app.url_map.iter_rules() if rule.endpoint not in SKIPPED_ENDPOINTS]
    assert len(rules) >= 15
    for rule in rules:
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            probe(logged_in_client, rule, method, {name: random_segment(rule, name) for name in rule.arguments}, 8)
            known = {name: known_segment(rule, name, known_values) for name in rule.arguments}
            if known and None not in known.values():
                # Past the lookup of what the URL names is where each view parses its query and form.
                probe(logged_in_client, rule, method, known, 25)  # type: ignore[arg-type]
    for pattern in HIT_PATHS:
        for token in (*known_values["token:open"], *known_values["token:click"], "x", encoded("\x00\ud800")):
            path = pattern.format(token=token, index=0)
            assert_answered(logged_in_client.get(f"{path}?x=%00"), range(200, 500))
    assert logged_in_client.get("/").status_code == 200


def probe(
    client: FlaskClient, rule: Rule, method: str, segments: dict[str, st.SearchStrategy[str]], examples: int
) -> None:
    """``examples`` requests to ``rule`` with ``method``: its segments drawn from ``segments``, a random query
    string and (for a POST) a random form."""

    @settings(max_examples=examples)
    @given(values=st.fixed_dictionaries(segments), query=query_strings, form=form_values(str(rule.endpoint)))
    def request(values: dict[str, str], query: str, form: dict[str, str]) -> None:
        path = rule.rule
        for name, value in values.items():
            path = path.replace(f"<{_placeholder(rule, name)}>", value)
        data = form if method == "POST" else None
        with client.open(f"{path}?{query}", method=method, data=data) as response:
            assert_answered(response, range(200, 500))

    request()


def _placeholder(rule: Rule, name: str) -> str:
    """The text inside <...> that names argument ``name`` in ``rule``'s pattern (``int:lead_id``, ``slug``)."""
    for part in rule.rule.split("<")[1:]:
        inside = part.split(">", 1)[0]
        if inside.split(":")[-1] == name:
            return inside
    raise AssertionError(f"{name} not in {rule.rule}")
