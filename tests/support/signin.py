"""Test clients signed in without the login form (and its throttle)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from nurture.auth.models import User
from nurture.web.auth import SIGNED_IN_AT, write_session_times, write_sign_in
from nurture.web.clock import get_clock


def _now(app: Flask) -> Any:
    with app.app_context():
        return get_clock().now()


class StaysSignedInClient(FlaskClient):
    """A client whose session never times out, however far a test moves the clock to age its data: before
    each request its session counts as begun now. Logout, and whatever bumps the user's session version,
    still end it. The session lifetime tests sign in through the form instead (test_auth_hardening.py)."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        now = _now(self.application)
        with self.session_transaction() as flask_session:
            if SIGNED_IN_AT in flask_session:
                write_session_times(flask_session, signed_in_at=now)
        return super().open(*args, **kwargs)


def sign_in(client: FlaskClient, user: User) -> FlaskClient:
    """Give ``client`` the session the login form would, at the app's clock's now."""
    now = _now(client.application)
    with client.session_transaction() as flask_session:
        write_sign_in(flask_session, user, now)
    return client


def signed_in_client(app: Flask, user: User) -> FlaskClient:
    """A client signed in as ``user`` that stays signed in while the test moves the clock."""
    return sign_in(StaysSignedInClient(app, app.response_class, use_cookies=True), user)
