"""Login, logout and the deny-by-default guard: every endpoint needs a signed-in user with a role,
except the ones explicitly marked public (login, static assets, and later tracking/unsubscribe).

Sign-in is throttled per account and per client address (``nurture.auth.throttle``); a session lasts as long
as ``nurture.auth.sessions`` says and ends server-side at logout. The client address is ``request.remote_addr``:
behind a reverse proxy, configure Werkzeug's ``ProxyFix`` with the number of proxies you trust, or every
client shares the proxy's address. ``X-Forwarded-For`` is not trusted by default, since any client can send it.
No remember-me cookie is offered, and one could not sign in: a session needs the sign-in instants that only
the login form writes."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask import session as flask_session
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from nurture.auth import throttle
from nurture.auth.models import Role, User
from nurture.auth.service import authenticate, end_sessions
from nurture.auth.sessions import parse_session_id, seen_is_stale, session_expired
from nurture.web.clock import get_clock
from nurture.web.database import get_session

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC_ENDPOINTS: set[str] = {"static", "auth.login"}

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()


def public(view: F) -> F:
    """Mark a view as reachable without signing in."""
    view.nurture_public = True  # type: ignore[attr-defined]
    return view


def role_required(role: Role) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.role.allows(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


# The signed session cookie holds, besides Flask-Login's keys, when the session began and was last used.
SIGNED_IN_AT = "_nurture_signed_in_at"
SEEN_AT = "_nurture_seen_at"
_SESSION_KEYS = ("_user_id", "_fresh", "_id", SIGNED_IN_AT, SEEN_AT)


def write_sign_in(session_data: MutableMapping[str, Any], user: User, now: datetime) -> None:
    """The session of ``user`` signed in at ``now``. The login view writes it through Flask-Login; tests use
    it to start a client signed in without the form."""
    session_data["_user_id"] = user.get_id()
    session_data["_fresh"] = True
    write_session_times(session_data, signed_in_at=now)


def write_session_times(session_data: MutableMapping[str, Any], signed_in_at: datetime) -> None:
    session_data[SIGNED_IN_AT] = session_data[SEEN_AT] = _epoch_seconds(signed_in_at)


def _epoch_seconds(instant: datetime) -> int:
    return math.floor(instant.timestamp())


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The user of this request's session, when the session is still valid: not past its lifetime or idle
    timeout, and made for the user's current session version."""
    parsed = parse_session_id(session_id)
    signed_in_at = _instant(flask_session.get(SIGNED_IN_AT))
    seen_at = _instant(flask_session.get(SEEN_AT))
    if parsed is None or signed_in_at is None or seen_at is None:
        return _forget_session()
    now = get_clock().now()
    if session_expired(signed_in_at, seen_at, now):
        return _forget_session()
    user_id, version = parsed
    user = get_session().get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        return _forget_session()
    if seen_is_stale(seen_at, now):
        flask_session[SEEN_AT] = _epoch_seconds(now)
    return user


def _forget_session() -> None:
    for key in _SESSION_KEYS:
        flask_session.pop(key, None)


def _require_login() -> ResponseReturnValue | None:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # 404s stay 404s
    view = current_app.view_functions.get(endpoint)
    if endpoint in PUBLIC_ENDPOINTS or getattr(view, "nurture_public", False):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


MAX_NEXT_LENGTH = 2048


def _safe_next(target: str | None) -> str:
    """Only a same-site path; anything else is dropped for the dashboard. Refused: other sites and schemes,
    and anything a browser might read differently from us: backslashes (read as ``/``, so ``/\\evil`` is
    another host), control and format characters and whitespace (browsers strip some, and a CR or LF cannot
    go into the Location header)."""
    home = url_for("home.index")
    if not target or len(target) > MAX_NEXT_LENGTH:
        return home
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return home
    if any(character.isspace() or unicodedata.category(character).startswith("C") for character in target):
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return home
    return target


def _wait_in_words(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("login.html", form=form)
    session = get_session()
    clock = get_clock()
    now = clock.now()
    email = form.email.data or ""
    password = form.password.data or ""
    attempt = throttle.begin_attempt(session, now, account=email, address=request.remote_addr or "")
    # Committed before the verdict, so that parallel attempts, in any process, count each other.
    session.commit()
    refusal = throttle.check_attempt(session, now, attempt)
    session.commit()  # ends the read, so that the writes below wait their turn on SQLite
    if refusal is not None:
        # Refused before the password hash: a throttled attempt costs no argon2 work.
        throttle.withdraw_attempt(session, attempt)
        session.commit()
        flash(f"Too many failed sign-ins. Try again in {_wait_in_words(refusal.retry_after_seconds)}.", "error")
        response = current_app.make_response((render_template("login.html", form=form), 429))
        response.headers["Retry-After"] = str(refusal.retry_after_seconds)
        return response
    user = authenticate(session, clock, email, password)
    if user is None:
        # The attempt's rows, committed above, stay as the failure.
        flash("Wrong email or password.", "error")
        return render_template("login.html", form=form), 401
    throttle.succeed_attempt(session, attempt)
    session.commit()
    login_user(user)
    write_sign_in(flask_session, user, now)
    return redirect(_safe_next(request.args.get("next")))


@blueprint.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    # Ending the user's sessions server-side is what makes a copied cookie useless afterwards.
    end_sessions(get_session(), current_user._get_current_object())
    get_session().commit()
    logout_user()
    _forget_session()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    app.before_request(_require_login)
    app.register_blueprint(blueprint)
