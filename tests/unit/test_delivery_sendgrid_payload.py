"""Mail Send bodies and request planning, checked against the local SendGrid's validator."""

from dataclasses import dataclass, replace

from nurture.delivery.backends.sendgrid import (
    MAX_PERSONALIZATIONS,
    custom_args_size,
    mail_send_payload,
    plan_requests,
)
from nurture.delivery.compose import compose_email
from nurture.delivery.outgoing import OutgoingEmail
from tests.support.emails import render
from tests.support.sendgrid_server import validate_mail_send

SHARED_URL = "https://nurture.test/unsubscribe"


@dataclass
class Item:
    """What plan_requests reads from a cleared email."""

    email: OutgoingEmail


def email(settings, index: int, *, address: str | None = None, greeting: str = "Hello friend") -> OutgoingEmail:
    return compose_email(
        render("Same for all", greeting, SHARED_URL),
        settings=settings,
        message_id=index,
        lead_id=index,
        to_address=address or f"lead{index}@example.com",
        to_name=None,
        unsubscribe_url=SHARED_URL,
        campaign="digest",
    )


def test_identical_content_is_planned_in_requests_of_at_most_1000(delivery_settings):
    items = [Item(email(delivery_settings, i)) for i in range(2500)]
    requests = plan_requests(items)
    assert [len(r) for r in requests] == [1000, 1000, 500]
    for request in requests:
        assert validate_mail_send(mail_send_payload([item.email for item in request])) == []


def test_a_request_of_1001_personalizations_would_be_refused(delivery_settings):
    payload = mail_send_payload([email(delivery_settings, i) for i in range(MAX_PERSONALIZATIONS + 1)])
    limit, recipients = validate_mail_send(payload)
    assert limit["field"] == "personalizations" and "You have provided 1001 personalizations" in limit["message"]
    assert recipients["message"].startswith("There is a limit of 1000 total recipients")


def test_different_content_goes_in_different_requests_in_first_seen_order(delivery_settings):
    a1, b1, a2 = (
        email(delivery_settings, 1, greeting="A"),
        email(delivery_settings, 2, greeting="B"),
        email(delivery_settings, 3, greeting="A"),
    )
    requests = plan_requests([Item(a1), Item(b1), Item(a2)])
    assert [[item.email for item in request] for request in requests] == [[a1, a2], [b1]]


def test_one_address_never_appears_twice_in_a_request(delivery_settings):
    first = email(delivery_settings, 1, address="Ada@example.com")
    again = email(delivery_settings, 2, address="ada@EXAMPLE.com")
    other = email(delivery_settings, 3)
    requests = plan_requests([Item(first), Item(again), Item(other)])
    assert [[item.email for item in request] for request in requests] == [[first, other], [again]]
    together = mail_send_payload([first, again])
    assert "more than once" in validate_mail_send(together)[0]["message"]


def test_payload_of_a_minimal_email_is_valid(delivery_settings):
    minimal = replace(email(delivery_settings, 1), reply_to=None, campaign=None)
    payload = mail_send_payload([minimal])
    assert "reply_to" not in payload and "categories" not in payload
    assert validate_mail_send(payload) == []


def test_custom_args_size_counts_utf8_bytes():
    assert custom_args_size({"k": "é"}) == len('{"k":"é"}'.encode())


def test_the_validator_knows_sendgrids_rules():
    assert [e["field"] for e in validate_mail_send({})] == ["personalizations", "from.email", "subject", "content"]
    payload = {
        "personalizations": [
            {"to": [{"email": "a@x.example"}], "subject": "s", "headers": {"Subject": "no"},
             "custom_args": {"n": 1}},
            {"to": [], "subject": "s", "cc": [{"email": "A@x.example"}]},
        ],
        "from": {"email": "f@x.example"},
        "content": [{"type": "text/plain", "value": ""}],
        "categories": ["c"] * 11,
    }
    fields = [e["field"] for e in validate_mail_send(payload)]
    assert fields == [
        "personalizations.0.custom_args",
        "personalizations.0.headers",
        "personalizations.1.to",
        "personalizations.1",
        "content.0.value",
        "categories",
    ]
