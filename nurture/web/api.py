"""REST API v1. ``POST /api/v1/events`` records events from other systems (see nurture.tracking.api_events).

Authentication: ``Authorization: Bearer <key>`` with a key made by ``nurture apikeys create NAME``; no
session cookie, no CSRF token. Answers, always JSON:

- 200: every item recorded (or already recorded: ``duplicate``);
- 207: some items recorded, some refused; the good ones are stored;
- 400: nothing recorded: every item refused, or the body is not an event or a list of events;
- 401: no key, or not a live key.

Each result is ``{"index", "status": "recorded" | "duplicate" | "invalid", "event_id", "lead_created",
"errors": [{"index", "field", "message"}]}``, and ``errors`` at the top level lists every item's errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from nurture.errors import ValidationError
from nurture.tracking.api_events import ItemError, items_of, record_api_events
from nurture.tracking.apikeys import authenticate_key
from nurture.web.auth import public
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.tracking import get_tracking

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_BODY_BYTES = 2 * 1024 * 1024


def _error(status: int, field: str, message: str) -> ResponseReturnValue:
    return jsonify(errors=[ItemError(None, field, message).as_json()]), status


@blueprint.route("/events", methods=["POST"])
@public
def post_events() -> ResponseReturnValue:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    session = get_session()
    clock = get_clock()
    key = authenticate_key(session, clock.now(), presented.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        response = jsonify(errors=[ItemError(None, "Authorization", "a valid API key is required (Bearer)").as_json()])
        response.headers["WWW-Authenticate"] = 'Bearer realm="nurture"'
        return response, 401
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    body: Any = request.get_json(silent=True)
    if body is None:
        return _error(400, "body", "expected JSON (Content-Type: application/json)")
    try:
        items = items_of(body)
    except ValidationError as exc:
        return _error(400, exc.where or "body", exc.message)
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
    from nurture.app import csrf

    csrf.exempt(post_events)
    app.register_blueprint(blueprint)
