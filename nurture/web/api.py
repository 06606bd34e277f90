"""REST API v1. ``POST /api/v1/events`` records events from other systems (see nurture.tracking.api_events).

Authentication: ``Authorization: Bearer <key>`` with a key made by ``nurture apikeys create NAME``; no
session cookie, no CSRF token. Answers, always JSON:

- 200: every item recorded (or already recorded: ``duplicate``);
- 207: some items recorded, some refused; the good ones are stored;
- 400: nothing recorded: every item refused, or the body is not an event or a list of events, or it is not
  strict JSON that can be stored (``nurture.inputs.load_json``: UTF-8, no NaN or Infinity, integers within 64
  bits, no NUL character or lone surrogate, nested at most 32 deep); ``field`` is the JSON path of the fault;
- 401: no key, or not a live key;
- 413: a body larger than ``MAX_BODY_BYTES`` (2 MB), counted on the bytes read, chunked or not.

Each result is ``{"index", "status": "recorded" | "duplicate" | "invalid", "event_id", "lead_created",
"errors": [{"index", "field", "message"}]}``, and ``errors`` at the top level lists every item's errors."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from nurture.errors import ValidationError
from nurture.tracking.api_events import items_of, record_api_events
from nurture.tracking.apikeys import authenticate_key
from nurture.web.auth import public
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.edges import json_endpoint, json_error, request_json
from nurture.web.extensions import csrf
from nurture.web.tracking import get_tracking

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_BODY_BYTES = 2 * 1024 * 1024


@blueprint.route("/events", methods=["POST"])
@public
@json_endpoint(MAX_BODY_BYTES)
def post_events() -> ResponseReturnValue:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    session = get_session()
    clock = get_clock()
    key = authenticate_key(session, clock.now(), presented.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        response, status = json_error(401, "Authorization", "a valid API key is required (Bearer)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="nurture"'
        return response, status
    if not request.is_json:
        return json_error(400, "body", "expected JSON (Content-Type: application/json)")
    try:
        items = items_of(request_json())
    except ValidationError as exc:
        return json_error(400, exc.where or "body", exc.message)
    tracking = get_tracking()
    results = record_api_events(
        session, clock, tracking.ctx, items, key_name=key.name, create_leads=tracking.tracking.api_creates_leads
    )
    session.commit()
    good = sum(1 for result in results if result.status != "invalid")
    status = 200 if good == len(results) else 207 if good else 400
    errors = [error.as_json() for result in results for error in result.errors]
    return jsonify(results=[result.as_json() for result in results], errors=errors), status


def init_app(app: Flask) -> None:
    """Needs nurture.web.tracking's init_app first (the engine context and settings it holds)."""
    csrf.exempt(post_events)
    app.register_blueprint(blueprint)
