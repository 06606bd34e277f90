"""Issue 9, items 4-6: the login throttle, sessions that end server-side, and a `next` that cannot break the
redirect. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from flask_login.utils import encode_cookie
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from nurture.app import create_app
from nurture.auth import service, throttle
from nurture.auth.models import LoginFailure, Role, ThrottleKind, User
from nurture.auth.sessions import IDLE_TIMEOUT, SESSION_LIFETIME
from nurture.cli import cli
from nurture.web.auth import _safe_next
from tests.conftest import EPOCH
from tests.support.signin import sign_in

EMAIL = "boss@example.com"
PASSWORD = "correct horse"


class CountingHasher(PasswordHasher):
    """A cheap argon2 (the tests make dozens of attempts) that counts its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(service, "_hasher", counting)
    monkeypatch.setattr(service, "_DUMMY_HASH", counting.hash("not-a-real-password"))
    return counting


@pytest.fixture
def boss(hasher: CountingHasher, make_user: Any) -> User:
    return make_user(EMAIL, role=Role.ADMIN, password=PASSWORD)


def attempt(client: FlaskClient, password: str, email: str = EMAIL, address: str = "127.0.0.1", **kwargs: Any):
    return client.post(
        "/login", data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}, **kwargs
    )


# --- 4. login throttling ----------------------------------------------------------------------------------


def test_an_account_is_throttled_after_five_failures_until_the_window_passes(client, clock, boss, hasher):
    for _ in range(5):
        assert attempt(client, "wrong password").status_code == 401

    refused = attempt(client, "wrong password")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(15 * 60)
    assert b"Too many failed sign-ins. Try again in 15 minutes." in refused.data

    # Even the right password waits: the throttle answers before any password is checked.
    verified = hasher.verified
    assert attempt(client, PASSWORD).status_code == 429
    assert hasher.verified == verified

    clock.advance(timedelta(minutes=14, seconds=59))
    assert attempt(client, PASSWORD).headers["Retry-After"] == "1"
    clock.advance(timedelta(seconds=1))
    assert attempt(client, PASSWORD).status_code == 302


def test_throttled_attempts_cost_no_password_hash(client, boss, hasher):
    for _ in range(5):
        attempt(client, "wrong password")
    verified = hasher.verified

    answers = {attempt(client, "wrong password").status_code for _ in range(30)}

    assert answers == {429}
    assert hasher.verified == verified


def test_hammering_a_throttled_account_does_not_extend_its_lock(client, clock, boss):
    for _ in range(5):
        attempt(client, "wrong password")
    for _ in range(3):
        clock.advance(timedelta(minutes=4))
        assert attempt(client, "wrong password").status_code == 429

    clock.advance(timedelta(minutes=3))
    assert attempt(client, PASSWORD).status_code == 302


def test_a_success_clears_the_accounts_failures(client, boss):
    for _ in range(4):
        assert attempt(client, "wrong password").status_code == 401
    assert attempt(client, PASSWORD).status_code == 302
    client.post("/logout")

    statuses = [attempt(client, "wrong password").status_code for _ in range(6)]

    assert statuses == [401] * 5 + [429]


def test_unknown_accounts_are_throttled_alike(client, hasher):
    statuses = [attempt(client, "wrong password", email="nobody@example.com").status_code for _ in range(6)]

    assert statuses == [401] * 5 + [429]


def test_an_address_is_throttled_after_twenty_failures_whatever_the_account(client, boss):
    for number in range(20):
        assert attempt(client, "wrong password", email=f"guess{number}@example.com").status_code == 401

    from_there = attempt(client, PASSWORD)
    from_elsewhere = attempt(client, PASSWORD, address="192.0.2.7")

    assert from_there.status_code == 429
    assert from_there.headers["Retry-After"] == str(15 * 60)
    assert from_elsewhere.status_code == 302


def test_an_ipv6_client_counts_by_its_64_network(client, boss):
    for number in range(20):
        attempt(client, "wrong password", email=f"guess{number}@example.com", address=f"2001:db8:1:1::{number + 1}")

    assert attempt(client, PASSWORD, address="2001:db8:1:1:ffff::1").status_code == 429
    assert attempt(client, PASSWORD, address="2001:db8:1:2::1").status_code == 302


def test_the_daily_limit_makes_the_wait_longer(client, clock, boss):
    for _ in range(4):
        for _ in range(5):
            assert attempt(client, "wrong password").status_code == 401
        clock.advance(timedelta(minutes=15))

    refused = attempt(client, "wrong password")

    assert refused.status_code == 429
    # 20 failures in 24 hours: the next attempt waits until the first of them is a day old.
    assert refused.headers["Retry-After"] == str(int(timedelta(hours=23).total_seconds()))
    assert b"Try again in 23 hours." in refused.data
    clock.advance(timedelta(hours=23))
    assert attempt(client, PASSWORD).status_code == 302


def test_failures_are_shared_by_every_web_process(app, engine, db_connection, clock, nurture_settings, boss):
    """Two application instances (two processes' worth of memory) over one database see the same failures."""
    other_process = create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "NURTURE_SETTINGS": nurture_settings,
            "NURTURE_ENGINE": engine,
            "NURTURE_SESSION_FACTORY": app.config["NURTURE_SESSION_FACTORY"],
            "NURTURE_CLOCK": clock,
        }
    )
    for _ in range(5):
        assert attempt(app.test_client(), "wrong password").status_code == 401

    assert attempt(other_process.test_client(), PASSWORD).status_code == 429


def test_text_no_database_can_store_is_a_wrong_password_not_a_500(client, session, clock, boss):
    # Over HTTP the request edge may refuse it first (400); either way, never a 500.
    assert attempt(client, "wrong password", email="boss\x00@example.com").status_code in {400, 401}
    assert attempt(client, "wrong\x00password").status_code in {400, 401}
    for email, password in [("boss\x00@example.com", PASSWORD), ("boss\ud800@example.com", PASSWORD),
                            (EMAIL, "correct\ud800horse"), (EMAIL, "correct\x00horse")]:
        assert service.authenticate(session, clock, email, password) is None


def test_the_cli_unlocks_an_account(app, client, boss):
    for _ in range(5):
        attempt(client, "wrong password")
    assert attempt(client, PASSWORD).status_code == 429

    result = app.test_cli_runner().invoke(cli, ["users", "unlock", EMAIL])

    assert result.exit_code == 0, result.output
    assert "Cleared 5 failed sign-ins" in result.output
    assert attempt(client, PASSWORD).status_code == 302


def test_parallel_attempts_cannot_all_reach_the_password_check(engine):
    """80 attempts at once, each in its own transaction and connection, as in separate web processes: at most
    the limit of them are allowed to check a password."""
    account = "parallel-attempts@example.com"
    address = "198.51.100.80"
    now = EPOCH
    start = threading.Barrier(80)
    allowed: list[bool] = []
    errors: list[BaseException] = []

    def one_attempt() -> None:
        try:
            with Session(engine) as session:
                start.wait()
                attempted = throttle.begin_attempt(session, now, account=account, address=address)
                session.commit()
                refusal = throttle.check_attempt(session, now, attempted)
                session.commit()
                if refusal is None:
                    allowed.append(True)  # a wrong password: its rows stay as failures
                else:
                    throttle.withdraw_attempt(session, attempted)
                    session.commit()
        except BaseException as exc:  # reported below, with the test's own assertion
            errors.append(exc)

    threads = [threading.Thread(target=one_attempt) for _ in range(80)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert 1 <= len(allowed) <= 5
        with Session(engine) as session:
            kept = session.scalar(
                select(func.count())
                .select_from(LoginFailure)
                .where(LoginFailure.kind == ThrottleKind.ACCOUNT, LoginFailure.key == throttle.account_key(account))
            )
        assert kept == len(allowed)
    finally:
        with Session(engine) as session:
            keys = [throttle.account_key(account), throttle.address_key(address)]
            session.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))
            session.commit()


def test_old_failures_are_pruned(session, clock):
    first = throttle.begin_attempt(session, clock.now(), account="a@example.com", address="203.0.113.1")
    clock.advance(throttle.RETENTION)
    throttle.begin_attempt(session, clock.now(), account="b@example.com", address="203.0.113.2")

    remaining = set(session.scalars(select(LoginFailure.id)))

    assert not remaining & {row_id for _, row_id in first.rows.values()}
    assert len(remaining) == 2


# --- 5. sessions end server-side ----------------------------------------------------------------------------


def signed_in_by_form(client: FlaskClient) -> FlaskClient:
    assert attempt(client, PASSWORD).status_code == 302
    return client


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding the same session cookie (a captured cookie)."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief.set_cookie("session", cookie.value)
    return thief


def test_a_cookie_captured_before_logout_no_longer_opens_leads(app, client, boss):
    signed_in_by_form(client)
    captured = copy_of(app, client)
    assert captured.get("/leads").status_code == 200

    assert client.post("/logout").status_code == 302

    refused = captured.get("/leads")
    assert refused.status_code == 302
    assert "/login" in refused.headers["Location"]
    assert client.get("/leads").status_code == 302


def test_logout_ends_every_session_of_the_user(app, boss):
    laptop = signed_in_by_form(app.test_client())
    phone = signed_in_by_form(app.test_client())

    laptop.post("/logout")

    assert phone.get("/leads").status_code == 302


@pytest.mark.parametrize(
    "command",
    [
        ["users", "set-password", EMAIL, "--password", "a new password"],
        ["users", "set-role", EMAIL, "viewer"],
        ["users", "disable", EMAIL],
    ],
    ids=["set-password", "set-role", "disable"],
)
def test_password_role_and_disabling_end_the_users_sessions(app, client, boss, command):
    signed_in_by_form(client)
    assert client.get("/leads").status_code == 200

    result = app.test_cli_runner().invoke(cli, command)

    assert result.exit_code == 0, result.output
    assert "sessions have ended" in result.output
    assert client.get("/leads").status_code == 302


def test_after_a_change_the_user_signs_in_anew(app, client, boss, session):
    runner = app.test_cli_runner()
    runner.invoke(cli, ["users", "set-password", EMAIL, "--password", "a new password"])
    assert attempt(client, PASSWORD).status_code == 401
    assert attempt(client, "a new password").status_code == 302

    runner.invoke(cli, ["users", "disable", EMAIL])
    assert attempt(client, "a new password").status_code == 401
    runner.invoke(cli, ["users", "enable", EMAIL])
    assert attempt(client, "a new password").status_code == 302

    runner.invoke(cli, ["users", "set-role", EMAIL, "viewer"])
    session.expire_all()
    assert session.scalar(select(User.role).where(User.email == EMAIL)) is Role.VIEWER


def test_user_commands_name_an_unknown_user(app):
    result = app.test_cli_runner().invoke(cli, ["users", "disable", "ghost@example.com"])

    assert result.exit_code == 2
    assert "no user with email 'ghost@example.com'" in result.output
    assert "Traceback" not in result.output


def test_a_session_idle_for_two_hours_ends(client, clock, boss):
    signed_in_by_form(client)
    for _ in range(3):
        clock.advance(IDLE_TIMEOUT - timedelta(minutes=1))
        assert client.get("/leads").status_code == 200

    clock.advance(IDLE_TIMEOUT)

    assert client.get("/leads").status_code == 302


def test_a_session_ends_twelve_hours_after_sign_in_however_active(client, clock, boss):
    signed_in_by_form(client)
    for _ in range(11):
        clock.advance(timedelta(hours=1))
        assert client.get("/leads").status_code == 200
    clock.advance(SESSION_LIFETIME - timedelta(hours=11) - timedelta(seconds=1))
    assert client.get("/leads").status_code == 200

    clock.advance(timedelta(seconds=1))

    assert client.get("/leads").status_code == 302


def test_last_seen_is_rewritten_at_most_once_a_minute(client, clock, boss):
    signed_in_by_form(client)
    client.get("/leads")  # the first page stores the CSRF token of its logout form in the session

    clock.advance(timedelta(seconds=59))
    unchanged = client.get("/leads")
    clock.advance(timedelta(seconds=1))
    refreshed = client.get("/leads")

    assert "Set-Cookie" not in unchanged.headers
    assert "session=" in refreshed.headers["Set-Cookie"]


def test_a_session_without_the_version_is_refused(client, boss):
    """Sessions from before versions (a bare user id) and hand-made ones end."""
    with client.session_transaction() as flask_session:
        flask_session["_user_id"] = str(boss.id)
        flask_session["_fresh"] = True

    assert client.get("/leads").status_code == 302


def test_a_remember_me_cookie_cannot_sign_in(app, client, boss):
    with app.test_request_context():
        client.set_cookie("remember_token", encode_cookie(boss.get_id()))

    assert client.get("/leads").status_code == 302


def test_the_signed_in_helper_gives_a_valid_session(app, boss):
    assert sign_in(app.test_client(), boss).get("/leads").status_code == 200


def test_the_test_fixtures_session_still_ends_at_logout(logged_in_client, clock):
    clock.advance(timedelta(days=30))
    assert logged_in_client.get("/leads").status_code == 200

    logged_in_client.post("/logout")

    assert logged_in_client.get("/leads").status_code == 302


def test_flasks_own_cookie_lifetime_is_the_session_lifetime(app):
    assert app.permanent_session_lifetime == SESSION_LIFETIME


# --- 6. a bad `next` is dropped ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "next=/a%0Db",
        "next=/a%0Ab",
        "next=/a%0D%0ASet-Cookie:%20x=1",
        "next=/%09/evil.example",
        "next=/%5Cevil.example",
        "next=/%5C%5Cevil.example",
        "next=%5C%5Cevil.example",
        "next=%2F%2Fevil.example",
        "next=/leads%E2%80%AEtxt",
        "next=https:evil.example",
        "next=javascript:alert(1)",
        "next=leads",
        "next=/" + "a" * 3000,
    ],
)
def test_a_bad_next_is_dropped_for_the_dashboard(client, boss, query):
    response = attempt(client, PASSWORD, query_string=query)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_safe_next_drops_what_a_browser_could_read_as_another_site(app):
    """The request edge refuses NUL and unpaired surrogates in a query string first; the rule holds alone too."""
    unsafe = ["/a\rb", "/a\x00b", "/a\ud800b", "/\u2028/evil.example", "/\u00a0", "/a\u200bb", "/\\evil.example",
              "\\\\evil.example", "//evil.example", "///evil.example", "http://evil.example/", "", None, "/" * 3000]
    with app.test_request_context():
        for target in unsafe:
            assert _safe_next(target) == "/", target
        assert _safe_next("/leads/12?tab=activity#notes") == "/leads/12?tab=activity#notes"


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("next=/leads", "/leads"),
        ("next=%2Fleads%3Fstage%3Dmql%26page%3D2", "/leads?stage=mql&page=2"),
        ("next=/leads%3Fq%3DZo%25C3%25AB", "/leads?q=Zo%C3%AB"),
        ("next=/leads%3Fq%3DZo%C3%AB", "/leads?q=Zo%C3%AB"),
    ],
)
def test_a_same_site_next_is_followed(client, boss, query, location):
    response = attempt(client, PASSWORD, query_string=query)

    assert response.status_code == 302
    assert response.headers["Location"] == location


def test_the_login_redirect_returns_to_the_page_asked_for(client, boss):
    asked = client.get("/leads?stage=mql")
    login_url = asked.headers["Location"]

    response = client.post(login_url, data={"email": EMAIL, "password": PASSWORD})

    assert response.headers["Location"] == "/leads?stage=mql"
