"""The public endpoints that emails link to, and the provider webhook. No login; a signed token is the only
credential, and a token that does not verify gets a plain 404 that records nothing and redirects nowhere.

- ``GET /t/o/<token>`` (and ``.gif``): the open pixel;
- ``GET /t/c/<token>/<index>``: a click, answered with a 302 to link ``index`` of the links stored with the
  message (never a URL taken from the request);
  these two are answered ahead of Flask (``HitEndpoints``);
- ``GET /u/<token>``: asks for confirmation (link scanners prefetch; a GET never unsubscribes);
  ``POST /u/<token>``: unsubscribes, for RFC 8058 one-click (``List-Unsubscribe=One-Click``, no cookies, no
  CSRF token: the token is the proof) and for the confirmation form alike;
- ``GET|POST /p/<token>``: the preferences form (topics, a pause, unsubscribe from all);
- ``GET /v/<token>`` (and ``/t/v/<token>``): the email as sent;
- ``POST /webhooks/sendgrid``: SendGrid's signed Event Webhook.

The open and click hits store their event in one statement, its own transaction; the worker applies them
(``process_pending_events``)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.urls import iri_to_uri

from nurture.delivery.models import MessageContent
from nurture.engine.context import EngineContext, engine_context
from nurture.inputs import MAX_ID
from nurture.rendering.links import is_http
from nurture.tracking.events import Hit, PostgresHitStore, store_hit
from nurture.tracking.machine import classify_request
from nurture.tracking.models import EventType
from nurture.tracking.sendgrid_webhook import (
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureVerifier,
    WebhookRejected,
    parse_batch,
    store_batch,
)
from nurture.tracking.settings import MAX_PAUSE_DAYS, TrackingSettings, token_signer
from nurture.tracking.subscriptions import get_preferences, save_preferences, unsubscribe
from nurture.tracking.tokens import InvalidToken, TokenPurpose, TokenSigner
from nurture.web.auth import public
from nurture.web.clock import get_clock
from nurture.web.database import Database, get_session
from nurture.web.edges import SECURITY_HEADERS, json_endpoint, json_error, request_body
from nurture.web.extensions import csrf

log = logging.getLogger(__name__)

blueprint = Blueprint("tracking", __name__)
_EXTENSION = "nurture.tracking"
# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# Pages reached by a secret URL: nothing cached, the URL never sent on as a referrer.
PRIVATE_PAGE = {**NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
MAX_LINK_INDEX = 10_000
PAUSE_CHOICES = (0, 7, 30, 90)


class HitWriter:
    """Stores open and click hits: on PostgreSQL, unless the app was given its own session factory (the tests'
    savepoint recipe), through a ``PostgresHitStore`` (connections of its own, one autocommit statement a
    hit); elsewhere in the request's session, committed at once."""

    def __init__(self, app: Flask) -> None:
        self.store: PostgresHitStore | None = None
        if app.config.get("NURTURE_SESSION_FACTORY") is None:
            url = get_database_for(app).engine.url
            if url.get_backend_name() == "postgresql":
                self.store = PostgresHitStore(url.render_as_string(hide_password=False))

    def write(self, hit: Hit) -> tuple[bool, str | None]:
        """Whether the message (and for a click, the link) exists, and the click's target URL."""
        if self.store is not None:
            return self.store.store(get_clock().now(), hit)
        session = get_session()
        found, url = store_hit(session, get_clock().now(), hit)
        if found:
            session.commit()
        else:
            session.rollback()
        return found, url


class TrackingExtension:
    def __init__(self, app: Flask, tracking: TrackingSettings) -> None:
        settings = app.config["NURTURE_SETTINGS"]
        self.tracking = tracking
        self.signer: TokenSigner = token_signer(settings.secret_key, tracking)
        self.verifier = SignatureVerifier(tracking.sendgrid_public_key) if tracking.sendgrid_public_key else None
        self.hits = HitWriter(app)
        self._ctx: EngineContext | None = app.config.get("NURTURE_ENGINE_CONTEXT")
        self._settings = settings

    @property
    def ctx(self) -> EngineContext:
        if self._ctx is None:
            self._ctx = engine_context(self._settings)
        return self._ctx


def get_database_for(app: Flask) -> Database:
    return app.extensions["nurture.database"]


def get_tracking() -> TrackingExtension:
    return current_app.extensions[_EXTENSION]


def single_id(signer: TokenSigner, purpose: TokenPurpose, token: str) -> int | None:
    """The single id a token of ``purpose`` carries; None for anything else."""
    try:
        values = signer.verify(purpose, token)
    except InvalidToken:
        return None
    return values[0] if len(values) == 1 and values[0] <= MAX_ID else None


def verified(purpose: TokenPurpose, token: str) -> int:
    """The single id a token of ``purpose`` carries; 404 for anything else."""
    value = single_id(get_tracking().signer, purpose, token)
    if value is None:
        abort(_not_found())
    return value


def _not_found() -> Response:
    return Response("Not found\n", status=404, mimetype="text/plain", headers=NO_CACHE)


# --- opens and clicks ---------------------------------------------------------------------------------------------

OPEN_PREFIX = "/t/o/"
CLICK_PREFIX = "/t/c/"
Answer = tuple[str, list[tuple[str, str]], bytes]
_NO_CACHE_HEADERS = list(NO_CACHE.items())
_NOSNIFF = ("X-Content-Type-Options", SECURITY_HEADERS["X-Content-Type-Options"])


def _answer(status: str, content_type: str, body: bytes, *headers: tuple[str, str]) -> Answer:
    return status, [("Content-Type", content_type), ("Content-Length", str(len(body))), _NOSNIFF, *headers], body


_PIXEL_ANSWER = _answer("200 OK", "image/gif", PIXEL, *_NO_CACHE_HEADERS)
_NOT_FOUND_ANSWER = _answer("404 Not Found", "text/plain; charset=utf-8", b"Not found\n", *_NO_CACHE_HEADERS)
_NOT_ALLOWED_ANSWER = _answer(
    "405 Method Not Allowed", "text/plain; charset=utf-8", b"Method not allowed\n", ("Allow", "GET, HEAD")
)
_SERVER_ERROR_ANSWER = _answer(
    "500 Internal Server Error", "text/plain; charset=utf-8", b"Something went wrong.\n", *_NO_CACHE_HEADERS
)


class HitEndpoints:
    """The open pixel and the click redirect, answered ahead of Flask (a WSGI layer around ``app.wsgi_app``).

    Every email's every open and click lands here, so these two skip what no public hit needs: the request
    context, the cookie session, Flask-Login's user loading and remember cookie, the CSRF check, URL routing
    and the response object. What they do is ``open_hit`` and ``click_hit``; every other path goes to Flask.
    Only GET and HEAD are served (anything else is a 405); a HEAD is answered like a GET without the body,
    and recorded (as a machine's). An exception is logged and answered with a plain 500."""

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(OPEN_PREFIX):
            endpoint, rest = open_hit, path[len(OPEN_PREFIX) :]
        elif path.startswith(CLICK_PREFIX):
            endpoint, rest = click_hit, path[len(CLICK_PREFIX) :]
        else:
            return self.wsgi_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        if method != "GET" and method != "HEAD":
            status, headers, body = _NOT_ALLOWED_ANSWER
        else:
            try:
                # An app context (not a request context): the clock, and on SQLite the request's session.
                with self.app.app_context():
                    status, headers, body = endpoint(
                        self.app.extensions[_EXTENSION],
                        rest,
                        method,
                        environ.get("HTTP_USER_AGENT", ""),
                        environ.get("REMOTE_ADDR"),
                    )
            except Exception:
                # The path is not logged: its token is the hit's credential.
                log.exception("%s %s hit failed", method, endpoint.__name__)
                status, headers, body = _SERVER_ERROR_ANSWER
        start_response(status, list(headers))
        return [] if method == "HEAD" else [body]


def _hit(event_type: EventType, message_id: int, index: int | None, method: str, agent: str, ip: str | None) -> Hit:
    return Hit(
        event_type,
        message_id,
        index,
        classify_request(method, agent, ip),
        {"method": method, "user_agent": agent[:500], "ip": ip},
    )


def open_hit(tracking: TrackingExtension, rest: str, method: str, agent: str, ip: str | None) -> Answer:
    """``/t/o/<token>`` and ``/t/o/<token>.gif``: the open is stored, the answer is the GIF."""
    token = rest.removesuffix(".gif")
    message_id = single_id(tracking.signer, TokenPurpose.OPEN, token)
    if message_id is None:
        return _NOT_FOUND_ANSWER
    found, _ = tracking.hits.write(_hit(EventType.OPENED, message_id, None, method, agent, ip))
    return _PIXEL_ANSWER if found else _NOT_FOUND_ANSWER


def click_hit(tracking: TrackingExtension, rest: str, method: str, agent: str, ip: str | None) -> Answer:
    """``/t/c/<token>/<index>``: the click is stored, the answer a 302 to link ``index`` of the message."""
    token, _, index = rest.partition("/")
    if not (index.isascii() and index.isdigit()) or len(index) > len(str(MAX_LINK_INDEX)):
        return _NOT_FOUND_ANSWER
    message_id = single_id(tracking.signer, TokenPurpose.CLICK, token)
    if message_id is None or int(index) > MAX_LINK_INDEX:
        return _NOT_FOUND_ANSWER
    found, url = tracking.hits.write(_hit(EventType.CLICKED, message_id, int(index), method, agent, ip))
    # Only http(s) targets: anything else stored with a message is never followed.
    if not found or url is None or not is_http(url) or "\r" in url or "\n" in url:
        return _NOT_FOUND_ANSWER
    location = iri_to_uri(url.strip())
    headers = [
        ("Location", location),
        ("Content-Length", "0"),
        _NOSNIFF,
        *_NO_CACHE_HEADERS,
        ("Referrer-Policy", "no-referrer"),
    ]
    return "302 Found", headers, b""


# --- unsubscribe and preferences -----------------------------------------------------------------------------------


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status, headers=PRIVATE_PAGE)


@blueprint.route("/u/<token>", methods=["GET"])
@public
def unsubscribe_page(token: str) -> ResponseReturnValue:
    verified(TokenPurpose.UNSUBSCRIBE, token)
    return _page("tracking/unsubscribe.html", token=token)


@blueprint.route("/u/<token>", methods=["POST"])
@public
def unsubscribe_post(token: str) -> ResponseReturnValue:
    lead_id = verified(TokenPurpose.UNSUBSCRIBE, token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    session = get_session()
    unsubscribe(session, get_clock(), get_tracking().ctx, lead_id, via="one-click" if one_click else "unsubscribe page")
    session.commit()
    if one_click:
        return Response("Unsubscribed.\n", mimetype="text/plain", headers=NO_CACHE)
    return _page("tracking/unsubscribed.html")


@blueprint.route("/p/<token>", methods=["GET", "POST"])
@public
def preferences(token: str) -> ResponseReturnValue:
    lead_id = verified(TokenPurpose.PREFERENCES, token)
    tracking = get_tracking()
    session = get_session()
    clock = get_clock()
    saved = False
    error: str | None = None
    if request.method == "POST":
        if request.form.get("unsubscribe_all"):
            unsubscribe(session, clock, tracking.ctx, lead_id, via="preferences page")
            session.commit()
            return _page("tracking/unsubscribed.html")
        raw_pause = request.form.get("pause_days", "keep")
        # Only the choices offered, spelled as offered ("²".isdigit() is true, and int() refuses it).
        pause_days = None if raw_pause == "keep" else {str(days): days for days in PAUSE_CHOICES}.get(raw_pause, -1)
        wanted = set(request.form.getlist("topics"))
        known = [topic_id for topic_id, _ in tracking.tracking.topics]
        if (pause_days is not None and pause_days not in PAUSE_CHOICES) or not wanted <= set(known):
            error = "Please choose from the options shown."
        else:
            save_preferences(
                session,
                clock,
                lead_id,
                topics_off=[t for t in known if t not in wanted],
                pause_days=pause_days,
                known_topics=known,
            )
            session.commit()
            saved = True
    current = get_preferences(session, lead_id, clock.now())
    return _page(
        "tracking/preferences.html",
        status=400 if error else 200,
        token=token,
        topics=tracking.tracking.topics,
        preferences=current,
        saved=saved,
        error=error,
        pause_choices=PAUSE_CHOICES,
        max_pause=MAX_PAUSE_DAYS,
    )


# --- view in browser ------------------------------------------------------------------------------------------------


@blueprint.route("/v/<token>", methods=["GET"])
@blueprint.route("/t/v/<token>", methods=["GET"])
@public
def view_in_browser(token: str) -> ResponseReturnValue:
    message_id = verified(TokenPurpose.VIEW, token)
    content = get_session().get(MessageContent, message_id)
    if content is None:
        return _not_found()
    headers = {
        **PRIVATE_PAGE,
        # The email's own HTML: no scripts, no forms, no framing, whatever it contains.
        "Content-Security-Policy": "script-src 'none'; object-src 'none'; form-action 'none'; frame-ancestors 'none'",
    }
    return Response(content.html, mimetype="text/html", headers=headers)


# --- SendGrid ---------------------------------------------------------------------------------------------------------


@blueprint.route("/webhooks/sendgrid", methods=["POST"])
@public
@json_endpoint(MAX_BODY_BYTES)
def sendgrid_webhook() -> ResponseReturnValue:
    """Errors answer in the API's JSON shape; a body over ``MAX_BODY_BYTES`` is a 413 (``nurture.web.edges``)."""
    verifier = get_tracking().verifier
    try:
        if verifier is None:
            raise WebhookRejected("the SendGrid webhook is not configured (SENDGRID_WEBHOOK_PUBLIC_KEY)", 401)
        body = request_body()
        now = get_clock().now()
        verifier.verify(body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER), now)
        events = parse_batch(body)
    except WebhookRejected as rejected:
        log.warning("SendGrid webhook refused: %s", rejected)
        return json_error(rejected.status, rejected.field, str(rejected))
    session = get_session()
    stored, duplicates = store_batch(session, now, events)
    session.commit()
    return jsonify(stored=stored, duplicates=duplicates)


def init_app(app: Flask) -> None:
    tracking = app.config.get("NURTURE_TRACKING") or app.config["NURTURE_SETTINGS"].tracking
    app.extensions[_EXTENSION] = TrackingExtension(app, tracking)
    app.wsgi_app = HitEndpoints(app, app.wsgi_app)  # type: ignore[method-assign]
    for view in (unsubscribe_post, preferences, sendgrid_webhook):
        csrf.exempt(view)
    app.register_blueprint(blueprint)
