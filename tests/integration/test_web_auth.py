import re

import pytest

from nurture.app import create_app


def test_home_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_then_home(client, make_user):
    make_user("boss@example.com", password="correct horse")
    page = client.get("/login")
    response = client.post(
        "/login", data={"email": "Boss@Example.com", "password": "correct horse"}, follow_redirects=True
    )
    assert page.status_code == 200
    assert response.status_code == 200
    assert b"Dashboard" in response.data


def test_wrong_password_is_refused(client, make_user):
    make_user("boss@example.com", password="correct horse")
    response = client.post("/login", data={"email": "boss@example.com", "password": "nope-nope"})
    assert response.status_code == 401
    assert b"Wrong email or password" in response.data


def test_login_does_not_redirect_off_site(client, make_user):
    make_user("boss@example.com", password="correct horse")
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        response = client.post(
            f"/login?next={target}", data={"email": "boss@example.com", "password": "correct horse"}
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/"


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_login_form_needs_csrf_token(csrf_app, make_user):
    make_user("boss@example.com", password="correct horse")
    client = csrf_app.test_client()
    refused = client.post("/login", data={"email": "boss@example.com", "password": "correct horse"})
    assert refused.status_code == 400
    assert b"Form expired" in refused.data

    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").data)
    assert token
    accepted = client.post(
        "/login",
        data={"email": "boss@example.com", "password": "correct horse", "csrf_token": token.group(1).decode()},
    )
    assert accepted.status_code == 302


def test_unknown_page_is_404_not_login(logged_in_client):
    assert logged_in_client.get("/no-such-page").status_code == 404


def test_create_app_reports_bad_config(monkeypatch, tmp_path):
    monkeypatch.delenv("NURTURE_SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="NURTURE_SECRET_KEY"):
        create_app()
