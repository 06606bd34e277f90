"""Login, logout and the deny-by-default guard: every endpoint needs a signed-in user with a role,
except the ones explicitly marked public (login, static assets, and later tracking/unsubscribe)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from nurture.auth.models import Role, User
from nurture.auth.service import authenticate
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


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    return user if user is not None and user.active else None


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


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else would be an open redirect."""
    if not target:
        return url_for("home.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("home.index")
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if form.validate_on_submit():
        session = get_session()
        user = authenticate(session, get_clock(), form.email.data or "", form.password.data or "")
        if user is not None:
            session.commit()
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong email or password.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form)


@blueprint.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    logout_user()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    app.before_request(_require_login)
    app.register_blueprint(blueprint)
