"""The public tracking endpoints through the real app: pixel, click redirects, unsubscribe (one-click and
confirmed), preferences, view in browser; forged tokens and open-redirect attempts; machine engagement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Activity, Lead
from nurture.tracking.events import PostgresHitStore, engagement_counts, process_pending_events
from nurture.tracking.models import LeadPreferences
from nurture.tracking.tokens import TokenPurpose
from tests.integration.test_tracking_support import LINKS, events_of, make_lead, make_message

pytest_plugins = ["tests.integration.test_tracking_support"]

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
}


@pytest.fixture
def client(tracking_app):
    return tracking_app.test_client()


def activities(session, lead_id, kind):
    session.expire_all()
    return list(session.scalars(select(Activity).where(Activity.lead_id == lead_id, Activity.kind == kind)))


def test_the_open_pixel_is_a_gif_that_is_never_cached_and_its_event_is_applied_by_the_worker(
    session, clock, client, urls, ctx
):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()

    for path in (urls.open(message.id), urls.open(message.id) + ".gif"):
        response = client.get(path, headers=BROWSER)
        assert response.status_code == 200
        assert response.mimetype == "image/gif"
        assert response.data.startswith(b"GIF89a") and len(response.data) == 43
        assert "no-store" in response.headers["Cache-Control"]

    pending = events_of(session, lead.id)
    assert [(event.type, event.processed_at) for event in pending] == [("opened", None), ("opened", None)]
    assert pending[0].raw["user_agent"].startswith("Mozilla/5.0 (Macintosh")

    report = process_pending_events(session, clock, ctx)
    assert report.applied == 2
    opened = activities(session, lead.id, "opened")
    assert len(opened) == 2
    assert opened[0].campaign == "welcome"
    assert opened[0].data["message_id"] == message.id
    session.refresh(lead)
    assert lead.score == 4  # opened-email: 2 points each
    assert lead.last_engaged_at == clock.now()


def test_a_click_redirects_to_the_link_stored_with_the_message(session, clock, client, urls, ctx):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()

    response = client.get(urls.click(message.id, 1), headers=BROWSER)

    assert response.status_code == 302
    assert response.headers["Location"] == LINKS[1]
    [event] = events_of(session, lead.id)
    assert (event.type, event.url, event.machine) == ("clicked", LINKS[1], False)
    process_pending_events(session, clock, ctx)
    [clicked] = activities(session, lead.id, "clicked")
    assert clicked.data["url"] == LINKS[1]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda token: token[:-1], id="truncated"),
        pytest.param(lambda token: token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], id="altered"),
        pytest.param(lambda token: "x" + token, id="prefixed"),
        pytest.param(lambda token: token + "==", id="padded"),
        pytest.param(lambda token: "A" * 300, id="oversized"),
        pytest.param(lambda token: "not a token!", id="garbage"),
    ],
)
def test_a_forged_click_token_gets_a_404_records_nothing_and_redirects_nowhere(session, clock, client, urls, mangle):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    token = urls.click(message.id, 0).split("/")[3]

    response = client.get(f"/t/c/{mangle(token)}/0", headers=BROWSER)

    assert response.status_code == 404
    assert "Location" not in response.headers
    assert events_of(session, lead.id) == []


def test_open_redirect_attempts_fail(session, clock, client, urls, signer):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead, links=["https://example.com/a", "javascript:alert(1)"])
    session.commit()
    click_token = signer.sign(TokenPurpose.CLICK, message.id)
    attempts = [
        f"/t/c/{click_token}/2",  # no such link
        f"/t/c/{click_token}/99999999999",  # absurd index
        f"/t/c/{click_token}/-1",
        f"/t/c/{click_token}/1",  # a stored link that is not http(s)
        f"/t/c/{signer.sign(TokenPurpose.OPEN, message.id)}/0",  # a token of another purpose
        f"/t/c/{signer.sign(TokenPurpose.CLICK, message.id + 1000)}/0",  # a message that does not exist
        f"/t/c/{signer.sign(TokenPurpose.CLICK, message.id, 0)}/0",  # two values signed
        f"/t/c/{click_token}/0/https://evil.example",
        f"/t/c/{click_token}//evil.example",
    ]
    for path in attempts:
        response = client.get(path, headers=BROWSER)
        assert response.status_code == 404, path
        assert "Location" not in response.headers, path
    # A URL in the query string is ignored: the target comes from the message only.
    response = client.get(f"/t/c/{click_token}/0?url=https://evil.example&next=//evil.example", headers=BROWSER)
    assert response.headers["Location"] == "https://example.com/a"
    assert len(events_of(session, lead.id)) == 1


def test_tokens_signed_with_a_previous_key_still_work_after_rotation(session, clock, tracking_app, ctx):
    from nurture.tracking.settings import TrackingSettings
    from nurture.tracking.tokens import TokenSigner
    from nurture.web import tracking

    old_secret = "an-old-secret-key-0123456789abcdef-0123456789"
    tracking_app.config["NURTURE_TRACKING"] = TrackingSettings(previous_secret_keys=(old_secret,))
    tracking_app.extensions["nurture.tracking"] = tracking.TrackingExtension(
        tracking_app, tracking_app.config["NURTURE_TRACKING"]
    )
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    old = TokenSigner([old_secret]).sign(TokenPurpose.CLICK, message.id)
    unknown = TokenSigner(["some-other-secret-0123456789abcdef-01234"]).sign(TokenPurpose.CLICK, message.id)

    client = tracking_app.test_client()
    assert client.get(f"/t/c/{old}/0", headers=BROWSER).status_code == 302
    assert client.get(f"/t/c/{unknown}/0", headers=BROWSER).status_code == 404


def test_a_get_never_unsubscribes_but_shows_a_confirmation_form(session, clock, client, urls):
    lead = make_lead(session, clock)
    session.commit()

    for method in (client.get, client.head):
        response = method(urls.unsubscribe(lead.id), headers=BROWSER)
        assert response.status_code == 200
    page = client.get(urls.unsubscribe(lead.id)).get_data(as_text=True)
    assert f'action="{urls.unsubscribe(lead.id)}"' in page
    assert 'method="post"' in page
    assert lead.email not in page
    session.refresh(lead)
    assert lead.status is LeadStatus.ACTIVE


def test_one_click_unsubscribe_needs_no_cookie_and_no_csrf_token(session, clock, tracking_app, urls):
    tracking_app.config["WTF_CSRF_ENABLED"] = True
    lead = make_lead(session, clock)
    session.commit()
    client = tracking_app.test_client(use_cookies=False)

    response = client.post(
        urls.unsubscribe(lead.id),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    session.refresh(lead)
    assert lead.status is LeadStatus.UNSUBSCRIBED
    [event] = events_of(session, lead.id)
    assert (event.type, event.properties["via"], event.processed_at is not None) == ("unsubscribed", "one-click", True)
    assert activities(session, lead.id, "unsubscribed")
    # A second one-click POST (mail clients retry) answers 200 and records nothing more.
    again = client.post(urls.unsubscribe(lead.id), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert len(events_of(session, lead.id)) == 1


def test_the_confirmation_form_posts_to_the_same_url(session, clock, tracking_app, urls):
    tracking_app.config["WTF_CSRF_ENABLED"] = True
    lead = make_lead(session, clock)
    session.commit()
    client = tracking_app.test_client()

    response = client.post(urls.unsubscribe(lead.id), data={})

    assert response.status_code == 200
    assert "You are unsubscribed" in response.get_data(as_text=True)
    session.refresh(lead)
    assert lead.status is LeadStatus.UNSUBSCRIBED


def test_unsubscribe_with_a_forged_token_is_a_404_and_changes_nothing(session, clock, client, urls, signer):
    lead = make_lead(session, clock)
    session.commit()
    token = urls.unsubscribe(lead.id).split("/")[2]
    forged = [token[:-3], signer.sign(TokenPurpose.PREFERENCES, lead.id), "A" * 22]
    for value in forged:
        assert client.post(f"/u/{value}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
        assert client.get(f"/u/{value}").status_code == 404
    session.refresh(lead)
    assert lead.status is LeadStatus.ACTIVE


def test_a_valid_token_for_a_lead_that_no_longer_exists_looks_like_any_other(session, clock, client, signer):
    token = signer.sign(TokenPurpose.UNSUBSCRIBE, 987_654_321)
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200


def test_preferences_pause_and_topics_without_login(session, clock, tracking_app, urls):
    tracking_app.config["WTF_CSRF_ENABLED"] = True
    lead = make_lead(session, clock)
    session.commit()
    client = tracking_app.test_client(use_cookies=False)

    page = client.get(urls.preferences(lead.id))
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert 'name="topics" value="product"' in page.get_data(as_text=True)

    saved = client.post(urls.preferences(lead.id), data={"topics": ["events"], "pause_days": "30"})
    assert saved.status_code == 200
    assert "saved" in saved.get_data(as_text=True)
    session.expire_all()
    stored = session.get(LeadPreferences, lead.id)
    assert stored.topics_off == ["product", "tips"]
    assert stored.paused_until == clock.now() + timedelta(days=30)
    assert activities(session, lead.id, "preferences_updated")

    bad = client.post(urls.preferences(lead.id), data={"topics": ["nonsense"], "pause_days": "30"})
    assert bad.status_code == 400

    done = client.post(urls.preferences(lead.id), data={"unsubscribe_all": "1"})
    assert "You are unsubscribed" in done.get_data(as_text=True)
    session.refresh(lead)
    assert lead.status is LeadStatus.UNSUBSCRIBED
    assert client.get(f"/p/{'B' * 22}").status_code == 404


def test_view_in_browser_serves_the_stored_html_without_scripts(session, clock, client, urls, signer):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead, html="<html><body><p>Stored email</p></body></html>")
    session.commit()

    for path in (urls.view(message.id), f"/t/v/{signer.sign(TokenPurpose.VIEW, message.id)}"):
        response = client.get(path)
        assert response.status_code == 200
        assert "Stored email" in response.get_data(as_text=True)
        assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    assert client.get(f"/v/{signer.sign(TokenPurpose.OPEN, message.id)}").status_code == 404


# --- machine engagement --------------------------------------------------------------------------------------------


def test_proxy_and_scanner_hits_are_kept_but_flagged_and_count_for_nothing(session, clock, client, urls, ctx):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()

    client.get(urls.open(message.id), headers={"User-Agent": "Mozilla/5.0"})  # Apple MPP
    client.get(urls.open(message.id), headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    client.head(urls.click(message.id, 0), headers=BROWSER)
    client.get(urls.click(message.id, 0), headers={"User-Agent": "Barracuda Sentinel (EE)"})
    client.get(urls.click(message.id, 0), headers={"User-Agent": ""})

    events = events_of(session, lead.id)
    assert [event.machine_reason for event in events] == [
        "Apple Mail Privacy Protection",
        "Google image proxy",
        "HEAD request",
        "security scanner (Barracuda)",
        "no user agent",
    ]
    report = process_pending_events(session, clock, ctx)
    assert (report.applied, report.machine) == (0, 5)
    assert activities(session, lead.id, "opened") == activities(session, lead.id, "clicked") == []
    session.refresh(lead)
    assert (lead.score, lead.last_engaged_at) == (0, None)

    counts = {
        count.type: count
        for count in engagement_counts(session, clock.now() - timedelta(days=1), clock.now() + timedelta(seconds=1))
    }
    assert (counts["opened"].human, counts["opened"].machine) == (0, 2)
    assert (counts["clicked"].human, counts["clicked"].machine) == (0, 3)


def test_a_scanner_clicking_every_link_within_seconds_of_delivery_is_flagged_once_the_window_closes(
    session, clock, client, urls, ctx
):
    lead = make_lead(session, clock)
    scanned = make_message(session, clock, lead, sent_at=clock.now() - timedelta(seconds=4))
    read = make_message(session, clock, lead, sent_at=clock.now() - timedelta(seconds=10))
    session.commit()

    for index in range(len(LINKS)):
        client.get(urls.click(scanned.id, index), headers=BROWSER)
    client.get(urls.click(read.id, 0), headers=BROWSER)  # a person, 10 s after delivery, one link

    early = process_pending_events(session, clock, ctx)
    assert early.deferred == 4 and early.applied == 0  # both messages are still inside their window

    clock.advance(timedelta(seconds=30))
    report = process_pending_events(session, clock, ctx)
    assert (report.applied, report.machine) == (1, 3)
    flagged = {event.message_id: event.machine_reason for event in events_of(session, lead.id) if event.machine}
    assert flagged == {scanned.id: "clicked every link within 30 s of delivery"}
    [human] = activities(session, lead.id, "clicked")
    assert human.data["message_id"] == read.id


def test_counting_machine_engagement_is_a_setting(session, clock, client, urls, ctx):
    from tests.integration.test_tracking_support import load_scoring

    load_scoring(session, clock, "machine_engagement: count\nrules:\n  - {name: opened, event: opened, points: 3}\n")
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    client.get(urls.open(message.id), headers={"User-Agent": "Mozilla/5.0"})

    report = process_pending_events(session, clock, ctx)

    assert report.applied == 1
    [opened] = activities(session, lead.id, "opened")
    assert opened.data["machine"] == "Apple Mail Privacy Protection"
    session.refresh(lead)
    assert lead.score == 3
    assert lead.last_engaged_at is None  # people only, whatever the setting


def test_hits_on_one_lead_from_a_suppressed_lead_still_redirect(session, clock, client, urls):
    lead = make_lead(session, clock)
    lead.status = LeadStatus.UNSUBSCRIBED
    message = make_message(session, clock, lead)
    session.commit()
    assert client.get(urls.click(message.id, 2), headers=BROWSER).headers["Location"] == LINKS[2]
    assert session.scalar(select(Lead.status).where(Lead.id == lead.id)) is LeadStatus.UNSUBSCRIBED


def test_on_postgresql_hits_use_their_own_autocommit_pool_and_survive_a_dropped_connection(dialect, tmp_path):
    """The production path (no injected session factory): one autocommit statement per hit on connections of
    the hit store's own, no pre-ping, one retry on a connection the server closed."""
    if dialect != "postgresql":
        pytest.skip("the autocommit hit pool is for PostgreSQL")
    from sqlalchemy import text

    from nurture.app import create_app
    from nurture.clock import SystemClock
    from nurture.config import Settings
    from nurture.db import make_engine, make_session_factory
    from nurture.tracking.tokens import TokenSigner
    from tests.acceptance.database import dedicated_database
    from tests.conftest import TEST_SECRET

    with dedicated_database("nurture_tracking_hits") as url:
        app = create_app({"TESTING": True, "NURTURE_SETTINGS": Settings(database_url=url, secret_key=TEST_SECRET)})
        hits = app.extensions["nurture.tracking"].hits
        assert hits.store is not None
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                lead = make_lead(session, SystemClock(), "pool@example.com")
                message = make_message(session, SystemClock(), lead)
                session.commit()
                lead_id, message_id = lead.id, message.id
            path = f"/t/c/{TokenSigner([TEST_SECRET]).sign(TokenPurpose.CLICK, message_id)}/1"
            client = app.test_client()
            assert client.get(path, headers=BROWSER).headers["Location"] == LINKS[1]
            with engine.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                        f"AND application_name = '{PostgresHitStore.APPLICATION_NAME}'"
                    )
                )
            assert client.get(path, headers=BROWSER).status_code == 302
            with make_session_factory(engine)() as session:
                assert [event.url for event in events_of(session, lead_id)] == [LINKS[1], LINKS[1]]
        finally:
            hits.store.close()
            engine.dispose()
            app.extensions["nurture.database"].engine.dispose()
