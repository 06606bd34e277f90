"""The SendGrid backend: the real ``sendgrid`` client talking HTTP to a local server that behaves like
``POST /v3/mail/send``, through the dispatcher."""

import random
from dataclasses import replace
from datetime import timedelta
from email.utils import format_datetime

import pytest
from sendgrid import SendGridAPIClient
from sqlalchemy import select

from nurture.delivery.backends.sendgrid import SendGridMailer
from nurture.delivery.compose import compose_email
from nurture.delivery.dispatch import dispatch_queued
from nurture.delivery.models import Message, MessageStatus
from nurture.delivery.outbox import queue_message
from nurture.delivery.outgoing import MESSAGE_ID_ARG, NURTURE_MESSAGE_ID_HEADER
from nurture.delivery.retry import RetryPolicy
from nurture.leads.lifecycle import LeadStatus
from tests.support.emails import render
from tests.support.sendgrid_server import Answer


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def backoff():
    return Sleeps()


def mailer_for(server, clock, backoff, *, api_key=None, api_host=None, timeout=5.0, attempts=4):
    return SendGridMailer(
        api_key or server.api_key,
        clock,
        send_rate=1000,
        api_host=api_host or server.url,
        timeout=timeout,
        retry=RetryPolicy(attempts=attempts, base_delay=1.0, max_delay=60.0, max_retry_after=120.0),
        sleeper=backoff,
        rng=random.Random(7),
    )


def dispatch(session_factory, clock, mailer):
    return dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)


def stored(session, message_id) -> Message:
    return session.execute(
        select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    ).scalar_one()


def queue_in_order(queue, clock, leads, **kwargs):
    ids = []
    for lead in leads:
        ids.append(queue(lead, **kwargs).id)
        clock.advance(timedelta(seconds=1))
    return ids


def test_personalised_messages_go_one_per_request_over_one_connection(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    leads = [make_lead("ada@example.com", first_name="Ada"), make_lead("zoe@example.com", first_name="Zoë")]
    ids = queue_in_order(queue, clock, leads, subject="Déjà vu")
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.sent == ids
    assert len(sendgrid_server.accepted) == 2 and sendgrid_server.connections == 1

    first = sendgrid_server.accepted[0]
    assert first.path == "/v3/mail/send"
    headers = {name.lower(): value for name, value in first.headers.items()}
    assert headers["authorization"] == f"Bearer {sendgrid_server.api_key}"
    assert headers["user-agent"].startswith("sendgrid/")
    payload = first.payload
    [personalization] = payload["personalizations"]
    assert personalization["to"] == [{"email": "ada@example.com", "name": "Ada"}]
    assert personalization["custom_args"] == {"nurture_campaign": "welcome", MESSAGE_ID_ARG: str(ids[0])}
    headers = personalization["headers"]
    assert headers[NURTURE_MESSAGE_ID_HEADER] == str(ids[0])
    assert headers["List-Unsubscribe"].startswith(f"<https://nurture.test/u/{ids[0]}?t=sig&x=1>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == "Nurture news <news.nurture.test>"
    assert payload["from"] == {"email": "news@nurture.test", "name": "Zoë from Nurture"}
    assert payload["reply_to"] == {"email": "hello@nurture.test", "name": "Nurture Team"}
    assert payload["subject"] == "Déjà vu"
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert "Hello Ada" in payload["content"][1]["value"]
    assert payload["categories"] == ["welcome"]
    assert payload["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}

    row = stored(session, ids[0])
    assert (row.status, row.provider) == (MessageStatus.SENT, "sendgrid")
    assert row.provider_message_id and len(row.provider_message_id) == 22


def test_identical_content_shares_a_request_but_never_names_an_address_twice(
    session, session_factory, clock, make_lead, sendgrid_server, backoff, delivery_settings
):
    # A shared unsubscribe page makes the bodies identical (the header still names each message).
    url = "https://nurture.test/unsubscribe"
    leads = [make_lead(f"lead{i}@example.com") for i in range(4)]
    recipients = [*leads, leads[0]]
    for index, lead in enumerate(recipients):

        def compose(message_id, lead=lead):
            return compose_email(
                render("Same for all", "Hello friend", url),
                settings=delivery_settings,
                message_id=message_id,
                lead_id=lead.id,
                to_address=lead.email,
                to_name=None,
                unsubscribe_url=url,
                campaign="digest",
            )

        queue_message(
            session,
            clock,
            lead_id=lead.id,
            to_address=lead.email,
            template="digest",
            template_version=1,
            idempotency_key=f"d{index}",
            campaign="digest",
            compose=compose,
        )
    session.commit()
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert len(report.sent) == 5
    sizes = sorted(len(request.payload["personalizations"]) for request in sendgrid_server.accepted)
    assert sizes == [1, 4]
    big = max(sendgrid_server.accepted, key=lambda request: len(request.payload["personalizations"]))
    ids = [int(p["custom_args"][MESSAGE_ID_ARG]) for p in big.payload["personalizations"]]
    assert len(set(ids)) == 4
    assert all(p["headers"][NURTURE_MESSAGE_ID_HEADER] == p["custom_args"][MESSAGE_ID_ARG] for p in
               big.payload["personalizations"])
    x_message_ids = {stored(session, message_id).provider_message_id for message_id in ids}
    assert len(x_message_ids) == 1


def test_a_bad_request_fails_permanently_and_is_never_retried(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    message = queue(make_lead("ada@example.com"))
    sendgrid_server.answer(Answer(400, errors=(("The from address does not match a verified Sender Identity.",
                                                "from"),)))
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.failed == [message.id] and len(sendgrid_server.requests) == 1 and backoff == []
    row = stored(session, message.id)
    assert (row.status, row.retryable) == (MessageStatus.FAILED, False)
    assert row.error == "SendGrid 400: The from address does not match a verified Sender Identity. (from)"


def test_a_refused_key_sends_nothing_and_leaves_the_queue_alone(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    ids = queue_in_order(queue, clock, [make_lead("a@example.com"), make_lead("b@example.com")])
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff, api_key="SG.revoked"))
    assert sorted(report.requeued) == sorted(ids) and report.sent == []
    assert report.backend_error == (
        "SendGrid refused the API key (401): The provided authorization grant is invalid, expired, or revoked"
    )
    assert len(sendgrid_server.requests) == 1 and backoff == []
    assert {stored(session, i).status for i in ids} == {MessageStatus.QUEUED}


def test_429_waits_as_long_as_retry_after_says(session, session_factory, clock, make_lead, queue, sendgrid_server,
                                               backoff):
    message = queue(make_lead("ada@example.com"))
    sendgrid_server.answer(Answer(429, errors=(("too many requests", None),), headers=(("Retry-After", "7"),)))
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.sent == [message.id]
    [wait] = backoff
    assert 7 <= wait < 8
    assert len(sendgrid_server.requests) == 2 and sendgrid_server.connections == 1


def test_retry_after_as_an_http_date(session_factory, clock, make_lead, queue, sendgrid_server, backoff):
    queue(make_lead("ada@example.com"))
    when = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    sendgrid_server.answer(Answer(429, headers=(("Retry-After", when),)))
    dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    [wait] = backoff
    assert 30 <= wait < 31


def test_5xx_backs_off_exponentially_with_jitter(session_factory, clock, make_lead, queue, sendgrid_server, backoff):
    message = queue(make_lead("ada@example.com"))
    sendgrid_server.answer(Answer(500), Answer(503), Answer(502))
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.sent == [message.id] and len(sendgrid_server.requests) == 4
    assert len(backoff) == 3
    for retry, wait in enumerate(backoff, start=1):
        assert 0 <= wait <= 2 ** (retry - 1)
    assert len(set(backoff)) == 3


def test_persistent_5xx_fails_as_retryable_and_halts_the_round(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    first, second = queue_in_order(queue, clock, [make_lead("a@example.com"), make_lead("b@example.com")])
    sendgrid_server.answer(*[Answer(503, errors=(("service unavailable", None),))] * 3)
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff, attempts=3))
    assert report.failed == [first] and report.requeued == [second]
    assert len(sendgrid_server.requests) == 3 and len(backoff) == 2
    row = stored(session, first)
    assert (row.status, row.retryable) == (MessageStatus.FAILED, True)
    assert row.error == "SendGrid 503: service unavailable (gave up after 3 attempts)"
    assert stored(session, second).status is MessageStatus.QUEUED


def test_a_pause_longer_than_allowed_is_not_waited_for(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    message = queue(make_lead("ada@example.com"))
    sendgrid_server.answer(Answer(429, headers=(("Retry-After", "3600"),)))
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.failed == [message.id] and backoff == [] and len(sendgrid_server.requests) == 1
    assert stored(session, message.id).retryable is True


def test_a_request_that_times_out_is_uncertain_and_never_resent(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    hung, after = queue_in_order(queue, clock, [make_lead("a@example.com"), make_lead("b@example.com")])
    sendgrid_server.answer(Answer(hang=True))
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff, timeout=0.3))
    assert report.uncertain == [hung] and report.sent == [after]
    row = stored(session, hung)
    assert row.status is MessageStatus.UNCERTAIN and row.error == "SendGrid: no answer from 127.0.0.1 within 0.3s"
    assert len(sendgrid_server.requests) == 2 and backoff == []
    # The hung connection was abandoned; the next request opened a fresh one.
    assert sendgrid_server.connections == 2


def test_an_unreachable_api_is_retried_then_leaves_the_messages_queued(
    session, session_factory, clock, make_lead, queue, sendgrid_server, backoff
):
    message = queue(make_lead("ada@example.com"))
    closed_port_url = sendgrid_server.url
    sendgrid_server.stop()
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff, api_host=closed_port_url,
                                                          attempts=3))
    assert report.requeued == [message.id] and len(backoff) == 2
    assert report.backend_error.startswith("SendGrid unreachable: cannot connect to 127.0.0.1")
    assert stored(session, message.id).status is MessageStatus.QUEUED


def test_oversized_custom_args_fail_without_a_request(session, session_factory, clock, make_lead, sendgrid_server,
                                                      backoff, make_email):
    lead = make_lead("ada@example.com")

    def compose(message_id):
        email = make_email(lead, message_id=message_id)
        return replace(email, custom_args={**email.custom_args, "blob": "x" * 10_000})

    message = queue_message(
        session,
        clock,
        lead_id=lead.id,
        to_address=lead.email,
        template="t",
        template_version=1,
        idempotency_key="big",
        campaign="welcome",
        compose=compose,
    )
    session.commit()
    report = dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    assert report.failed == [message.id] and sendgrid_server.requests == []
    assert stored(session, message.id).error.startswith("custom_args take 10")


def test_suppressed_leads_never_reach_sendgrid(session, session_factory, clock, make_lead, queue, sendgrid_server,
                                               backoff):
    active, bounced = make_lead("ada@example.com"), make_lead("bob@example.com")
    queue(active)
    queue(bounced)
    bounced.status = LeadStatus.BOUNCED
    session.commit()
    dispatch(session_factory, clock, mailer_for(sendgrid_server, clock, backoff))
    recipients = [p["to"][0]["email"] for r in sendgrid_server.requests for p in r.payload["personalizations"]]
    assert recipients == ["ada@example.com"]


def test_the_fake_answers_invalid_requests_like_sendgrid(sendgrid_server):
    """The stock client, unmodified, against the local server: SendGrid's error shape comes back."""
    from python_http_client.exceptions import BadRequestsError

    client = SendGridAPIClient(api_key=sendgrid_server.api_key, host=sendgrid_server.url)
    body = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}, {"to": [{"email": "A@example.com"}]}],
        "from": {"email": "news@nurture.test"},
        "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}],
    }
    with pytest.raises(BadRequestsError) as raised:
        client.send(body)
    assert [e["field"] for e in raised.value.to_dict["errors"]] == ["personalizations.1", "subject", "content"]
