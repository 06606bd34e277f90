"""SendGrid's Event Webhook end to end: real ECDSA signatures (forged, stale, tampered and unsigned requests
refused), SendGrid's documented sample batch, duplicate deliveries, and the effects of bounces, complaints
and unsubscribes."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from nurture.engine.models import Enrollment, EnrollmentState
from nurture.leads.lifecycle import LeadStatus
from nurture.tracking.events import process_pending_events
from nurture.tracking.models import ProviderEvent
from nurture.tracking.settings import TrackingSettings
from tests.acceptance.engine_support import enrol, load_campaign
from tests.integration.test_tracking_support import WebhookKeys, events_of, make_lead, make_message

pytest_plugins = ["tests.integration.test_tracking_support"]

URL = "/webhooks/sendgrid"

# The example batch of SendGrid's Event Webhook reference ("an event response that includes an example of each
# type of event"), as published; the tests add our custom argument and the recipient.
SENDGRID_SAMPLE = [
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "processed",
        "category": "cat facts",
        "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "deferred",
        "category": "cat facts",
        "sg_event_id": "lE8e4z_vcWKwAcsIW6oIYA==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "response": "400 try again later",
        "attempt": "5",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "delivered",
        "category": "cat facts",
        "sg_event_id": "rPoZ4mHajV0Try7IXg--Yw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "response": "250 OK",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "open",
        "category": "cat facts",
        "sg_event_id": "_o7lppLso10WRMDfPuqlFQ==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
        "ip": "255.255.255.255",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "click",
        "category": "cat facts",
        "sg_event_id": "tV-c4nwCoXQaCTmGiPEvIA==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
        "ip": "255.255.255.255",
        "url": "http://www.sendgrid.com/",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "bounce",
        "category": "cat facts",
        "sg_event_id": "Q8veIbXiPcpkSH1rCi_8Sw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "reason": "500 unknown recipient",
        "status": "5.0.0",
        "type": "bounce",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "dropped",
        "category": "cat facts",
        "sg_event_id": "YLLRhu9oXHKXY6fqdL0r2A==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "reason": "Bounced Address",
        "status": "5.0.0",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "spamreport",
        "category": "cat facts",
        "sg_event_id": "uIhZz5hC-AH2bHZpzitUxw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "unsubscribe",
        "category": "cat facts",
        "sg_event_id": "l0vMnu-FvYjc2EcDXg4SOA==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "group_unsubscribe",
        "category": "cat facts",
        "sg_event_id": "kC3QpKDvQeH4PjAvnQFA_A==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
        "ip": "255.255.255.255",
        "url": "http://www.sendgrid.com/",
        "asm_group_id": 10,
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "group_resubscribe",
        "category": "cat facts",
        "sg_event_id": "w_u0vJhLT-OFfprar5N93g==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
        "ip": "255.255.255.255",
        "url": "http://www.sendgrid.com/",
        "asm_group_id": 10,
    },
]

CAMPAIGN = """slug: welcome
name: Welcome
entry:
  - on_event: signed_up
steps:
  - {id: pause, type: wait, for: 7d}
  - {id: hello, type: send, template: welcome, subject: Hello}
"""


@pytest.fixture
def client(tracking_app):
    return tracking_app.test_client()


def addressed(events, message, *, at=None):
    """The events as SendGrid would send them for ``message``: our custom argument, its recipient."""
    batch = copy.deepcopy(events)
    for event in batch:
        event["email"] = message.to_address
        event["nurture_message_id"] = str(message.id)
        event["nurture_campaign"] = message.campaign
        if at is not None:
            event["timestamp"] = int(at.timestamp())
    return batch


def post(client, keys, clock, events, *, signed_at=None):
    body = json.dumps(events).encode()
    return client.post(URL, data=body, headers=keys.headers(body, signed_at or clock.now()))


def stored_count(session):
    session.expire_all()
    return session.scalar(select(func.count()).select_from(ProviderEvent))


def test_sendgrids_sample_batch_is_verified_stored_and_mapped(session, clock, client, webhook_keys, ctx):
    lead = make_lead(session, clock, "sample@example.com")
    message = make_message(session, clock, lead)
    session.commit()
    batch = addressed(SENDGRID_SAMPLE, message)

    response = post(client, webhook_keys, clock, batch)

    assert response.status_code == 200
    assert response.get_json() == {"stored": 11, "duplicates": 0}
    assert events_of(session, lead.id) == []  # nothing applied in the request

    process_pending_events(session, clock, ctx)

    session.expire_all()
    outcomes = dict(session.execute(select(ProviderEvent.provider_event_id, ProviderEvent.outcome)).all())
    assert outcomes["rbtnWrG1DVDGGGFHFyun0A=="] == "processed: nothing to record"
    assert outcomes["lE8e4z_vcWKwAcsIW6oIYA=="] == "deferred: nothing to record"
    assert outcomes["w_u0vJhLT-OFfprar5N93g=="] == "group_resubscribe: nothing to record"
    events = events_of(session, lead.id)
    assert [event.type for event in events] == [
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "bounced",
        "complained",
        "unsubscribed",
        "unsubscribed",
    ]
    assert all(event.processed_at is not None and event.message_id == message.id for event in events)
    assert events[2].url == "http://www.sendgrid.com/"
    assert events[3].properties["bounce"] == "hard" and events[3].properties["reason"] == "500 unknown recipient"
    assert events[0].occurred_at.timestamp() == 1513299569
    session.refresh(lead)
    # The strongest status wins: a complaint outranks the bounce and the unsubscribes.
    assert lead.status is LeadStatus.COMPLAINED


def test_duplicate_deliveries_are_stored_and_applied_once(session, clock, client, webhook_keys, ctx):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    batch = addressed(SENDGRID_SAMPLE[2:5], message)

    first = post(client, webhook_keys, clock, batch)
    process_pending_events(session, clock, ctx)
    again = post(client, webhook_keys, clock, batch)
    overlapping = post(client, webhook_keys, clock, batch[1:] + batch[1:])
    process_pending_events(session, clock, ctx)

    assert first.get_json() == {"stored": 3, "duplicates": 0}
    assert again.get_json() == {"stored": 0, "duplicates": 3}
    assert overlapping.get_json() == {"stored": 0, "duplicates": 4}
    assert [event.type for event in events_of(session, lead.id)] == ["delivered", "opened", "clicked"]


@pytest.mark.parametrize(
    "attack",
    [
        "unsigned",
        "no timestamp",
        "other key",
        "tampered body",
        "stale",
        "from the future",
        "garbage signature",
        "signature of another timestamp",
    ],
)
def test_forged_stale_and_tampered_requests_are_refused_and_store_nothing(session, clock, client, webhook_keys, attack):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    body = json.dumps(addressed(SENDGRID_SAMPLE[2:3], message)).encode()
    headers = webhook_keys.headers(body, clock.now())
    if attack == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif attack == "no timestamp":
        del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    elif attack == "other key":
        headers = WebhookKeys().headers(body, clock.now())
    elif attack == "tampered body":
        body = body.replace(b"delivered", b"spamreport")
    elif attack == "stale":
        headers = webhook_keys.headers(body, clock.now() - timedelta(minutes=5, seconds=1))
    elif attack == "from the future":
        headers = webhook_keys.headers(body, clock.now() + timedelta(minutes=6))
    elif attack == "garbage signature":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    elif attack == "signature of another timestamp":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(clock.now().timestamp()) + 1)

    response = client.post(URL, data=body, headers=headers)

    assert response.status_code == 401
    [error] = response.get_json()["errors"]
    assert error["field"] == "signature" and error["message"]
    assert stored_count(session) == 0


def test_a_request_just_inside_the_five_minutes_is_accepted(session, clock, client, webhook_keys):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()
    response = post(
        client,
        webhook_keys,
        clock,
        addressed(SENDGRID_SAMPLE[2:3], message),
        signed_at=clock.now() - timedelta(minutes=4, seconds=59),
    )
    assert response.status_code == 200


def test_a_well_signed_body_that_is_not_an_event_list_is_a_400(session, clock, client, webhook_keys):
    for body in (b"{}", b"not json", b"[1, 2]"):
        response = client.post(URL, data=body, headers=webhook_keys.headers(body, clock.now()))
        assert response.status_code == 400
    assert stored_count(session) == 0


def test_without_a_configured_key_every_request_is_refused(session, clock, tracking_app, webhook_keys):
    from nurture.web import tracking

    tracking_app.extensions["nurture.tracking"] = tracking.TrackingExtension(tracking_app, TrackingSettings())
    response = post(tracking_app.test_client(), webhook_keys, clock, [])
    assert response.status_code == 401


def test_events_that_are_not_ours_are_kept_with_the_reason(session, clock, client, webhook_keys, ctx):
    lead = make_lead(session, clock, "right@example.com")
    message = make_message(session, clock, lead)
    session.commit()
    foreign = copy.deepcopy(SENDGRID_SAMPLE[2])
    wrong_address = addressed([SENDGRID_SAMPLE[3]], message)[0] | {"email": "someone-else@example.com"}
    unknown_message = addressed([SENDGRID_SAMPLE[4]], message)[0] | {"nurture_message_id": "999999999"}
    post(client, webhook_keys, clock, [foreign, wrong_address, unknown_message])

    process_pending_events(session, clock, ctx)

    session.expire_all()
    outcomes = sorted(session.scalars(select(ProviderEvent.outcome)))
    assert outcomes == [
        "message 999999999 does not exist",
        "no nurture_message_id custom argument: not one of our messages",
        f"the event's email does not match message {message.id}",
    ]
    assert events_of(session, lead.id) == []


def test_a_hard_bounce_suppresses_the_lead_and_ends_its_enrollments_at_once(session, clock, client, webhook_keys, ctx):
    campaign = load_campaign(session, clock, CAMPAIGN)
    lead = make_lead(session, clock)
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    message = make_message(session, clock, lead)
    session.commit()

    post(client, webhook_keys, clock, addressed([SENDGRID_SAMPLE[5]], message, at=clock.now()))
    process_pending_events(session, clock, ctx)

    session.expire_all()
    session.refresh(lead)
    assert lead.status is LeadStatus.BOUNCED
    enrollment = session.get(Enrollment, enrollment_id)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.EXITED, "lead is bounced")


def test_repeated_soft_bounces_become_hard(session, clock, client, webhook_keys, ctx):
    lead = make_lead(session, clock)
    message = make_message(session, clock, lead)
    session.commit()

    def soft(n, kind="bounce"):
        event = {"event": kind, "type": "blocked", "status": "4.0.0", "reason": "mailbox full", "sg_event_id": f"s{n}"}
        clock.advance(timedelta(hours=1))
        post(client, webhook_keys, clock, addressed([event], message, at=clock.now()))
        process_pending_events(session, clock, ctx)
        session.refresh(lead)
        return lead.status

    assert soft(1) is LeadStatus.ACTIVE
    assert soft(2, kind="blocked") is LeadStatus.ACTIVE
    delivered = {"event": "delivered", "sg_event_id": "d1"}
    post(client, webhook_keys, clock, addressed([delivered], message, at=clock.now() + timedelta(minutes=1)))
    process_pending_events(session, clock, ctx)
    assert soft(3) is LeadStatus.ACTIVE  # a delivery started a new run
    assert soft(4) is LeadStatus.ACTIVE
    assert soft(5) is LeadStatus.BOUNCED
    last = events_of(session, lead.id)[-1]
    assert last.properties["bounce"] == "hard"
    assert last.properties["note"] == "3 soft bounces in a row"


def test_a_spam_report_marks_the_lead_complained_and_suppresses_it(session, clock, client, webhook_keys, ctx):
    campaign = load_campaign(session, clock, CAMPAIGN)
    lead = make_lead(session, clock)
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    message = make_message(session, clock, lead)
    session.commit()

    post(client, webhook_keys, clock, addressed([SENDGRID_SAMPLE[7]], message, at=clock.now()))
    process_pending_events(session, clock, ctx)

    session.expire_all()
    assert session.get(type(lead), lead.id).status is LeadStatus.COMPLAINED
    assert session.get(Enrollment, enrollment_id).state is EnrollmentState.EXITED
