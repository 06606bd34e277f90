"""The open and click endpoints as answered ahead of Flask (``HitEndpoints``): methods, path shapes, headers,
and what is stored for each answer."""

from __future__ import annotations

from sqlalchemy import delete, text

from nurture.delivery.models import Message, MessageContent
from nurture.tracking.tokens import TokenPurpose
from tests.integration.test_tracking_support import LINKS, events_of, make_lead, make_message

pytest_plugins = ["tests.integration.test_tracking_support"]

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"}


def test_a_head_request_is_answered_without_a_body_and_recorded_as_a_machine(session, clock, tracking_app, urls):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client = tracking_app.test_client()

    response = client.head(urls.open(message.id), headers=BROWSER)

    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Length"] == "43"
    assert response.headers["Content-Type"] == "image/gif"
    [event] = events_of(session, lead.id)
    assert (event.type, event.machine, event.machine_reason) == ("opened", True, "HEAD request")


def test_other_methods_are_refused_and_record_nothing(session, clock, tracking_app, urls):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client = tracking_app.test_client()

    for path in (urls.open(message.id), urls.click(message.id, 0)):
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            response = client.open(path, method=method, headers=BROWSER)
            assert response.status_code == 405, (method, path)
            assert response.headers["Allow"] == "GET, HEAD"
            assert "Location" not in response.headers
    assert events_of(session, lead.id) == []


def test_paths_of_any_other_shape_are_a_404_that_records_nothing(session, clock, tracking_app, urls, signer):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client = tracking_app.test_client()
    click_token = signer.sign(TokenPurpose.CLICK, message.id)

    for path in (
        urls.open(message.id) + "/",
        urls.open(message.id) + "/extra.gif",
        urls.open(message.id) + ".png",
        "/t/o/",
        f"/t/c/{click_token}",
        f"/t/c/{click_token}/",
        f"/t/c/{click_token}/\u0661",  # an Arabic-Indic digit one: a digit, not an ASCII one
        f"/t/c/{click_token}/+1",
        f"/t/c/{click_token}/1.0",
        f"/t/c/{click_token}/{'9' * 40}",
        f"/t/c/{signer.sign(TokenPurpose.CLICK, 2**64)}/0",  # an id no BIGINT holds
        f"/t/o/{signer.sign(TokenPurpose.OPEN, 2**64)}",
    ):
        response = client.get(path, headers=BROWSER)
        assert response.status_code == 404, path
        assert response.mimetype == "text/plain"
        assert "Location" not in response.headers
    assert events_of(session, lead.id) == []


def test_hits_set_no_cookie(session, clock, tracking_app, urls):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client = tracking_app.test_client()

    for path in (urls.open(message.id), urls.click(message.id, 0), "/t/o/forged"):
        response = client.get(path, headers=BROWSER)
        assert "Set-Cookie" not in response.headers, path
        assert "Cookie" not in response.headers.get("Vary", ""), path
        assert "no-store" in response.headers["Cache-Control"], path


def test_a_stored_link_with_non_ascii_characters_is_sent_as_a_uri(session, clock, tracking_app, signer):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead, links=["https://exämple.com/prämie?q=größe"])
    session.commit()

    response = tracking_app.test_client().get(f"/t/c/{signer.sign(TokenPurpose.CLICK, message.id)}/0", headers=BROWSER)

    assert response.status_code == 302
    assert response.headers["Location"] == "https://xn--exmple-cua.com/pr%C3%A4mie?q=gr%C3%B6%C3%9Fe"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    [event] = events_of(session, lead.id)
    assert event.url == "https://exämple.com/prämie?q=größe"


def test_a_valid_token_for_a_message_that_no_longer_exists_is_a_404(session, clock, tracking_app, urls):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    message_id = message.id
    session.execute(delete(MessageContent).where(MessageContent.message_id == message_id))
    session.execute(delete(Message).where(Message.id == message_id))
    session.commit()
    client = tracking_app.test_client()

    assert client.get(urls.open(message_id), headers=BROWSER).status_code == 404
    response = client.get(urls.click(message_id, 0), headers=BROWSER)
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert events_of(session, lead.id) == []


def test_the_rest_of_the_app_is_still_served_by_flask(session, clock, tracking_app, urls):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client = tracking_app.test_client()

    assert client.get(urls.view(message.id)).status_code == 200
    assert client.get(urls.unsubscribe(lead.id)).status_code == 200
    assert client.get("/t/x/anything").status_code == 404
    assert client.get(urls.click(message.id, 2), headers=BROWSER).headers["Location"] == LINKS[2]


def test_a_failure_is_logged_and_answered_with_a_plain_500(session, clock, tracking_app, urls, db_connection, caplog):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    # A real failure: the table the hit goes to is gone (until the test's transaction is rolled back).
    db_connection.execute(text("ALTER TABLE engagement_events RENAME TO engagement_events_gone"))

    response = tracking_app.test_client().get(urls.click(message.id, 0), headers=BROWSER)

    assert response.status_code == 500
    assert response.mimetype == "text/plain"
    assert response.data == b"Something went wrong.\n"
    assert "Location" not in response.headers
    [record] = [record for record in caplog.records if record.name == "nurture.web.tracking"]
    assert record.getMessage() == "GET click_hit hit failed"
    assert urls.click(message.id, 0).split("/")[3] not in caplog.text  # the token is never logged
