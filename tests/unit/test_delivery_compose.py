import email
from dataclasses import replace
from datetime import UTC, datetime
from email.policy import default

import pytest

from nurture.delivery.compliance import MarketingComplianceError, marketing_problems, visible_text
from nurture.delivery.compose import compose_email, list_unsubscribe_header
from nurture.delivery.mime import build_mime, mime_bytes
from nurture.delivery.outgoing import MESSAGE_ID_ARG, NURTURE_MESSAGE_ID_HEADER, OutgoingEmail
from tests.support.emails import POSTAL_ADDRESS, Rendered, render, unsubscribe_url_for

SENT_AT = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MESSAGE_ID = 123_456_789_012


def compose(settings, rendered: Rendered | None = None, **overrides) -> OutgoingEmail:
    url = overrides.pop("unsubscribe_url", unsubscribe_url_for(MESSAGE_ID))
    arguments = {
        "settings": settings,
        "message_id": MESSAGE_ID,
        "lead_id": 7,
        "to_address": "jurgen@example.de",
        "to_name": "Jürgen Müller, Jr.",
        "unsubscribe_url": url,
        "campaign": "welcome",
        **overrides,
    }
    return compose_email(rendered or render("Ça va? Déjà vu — 新年快乐", "Hallo Jürgen", url), **arguments)


def test_compose_adds_delivery_headers_and_metadata(delivery_settings):
    outgoing = compose(delivery_settings, custom_args={"step": "2"})
    url = unsubscribe_url_for(MESSAGE_ID)
    assert outgoing.sender == delivery_settings.sender
    assert outgoing.reply_to == delivery_settings.reply_to
    assert outgoing.headers == {
        "Message-ID": f"<{MESSAGE_ID}@nurture.test>",
        NURTURE_MESSAGE_ID_HEADER: str(MESSAGE_ID),
        "List-Unsubscribe": f"<{url}>, <mailto:unsubscribe@nurture.test?subject=unsubscribe%20{MESSAGE_ID}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "Nurture news <news.nurture.test>",
    }
    assert outgoing.custom_args == {"step": "2", "nurture_campaign": "welcome", MESSAGE_ID_ARG: str(MESSAGE_ID)}
    assert outgoing.postal_address == POSTAL_ADDRESS


def test_caller_cannot_override_our_message_id_in_custom_args(delivery_settings):
    outgoing = compose(delivery_settings, custom_args={MESSAGE_ID_ARG: "forged"})
    assert outgoing.custom_args[MESSAGE_ID_ARG] == str(MESSAGE_ID)


def test_list_unsubscribe_without_mailto():
    assert list_unsubscribe_header("https://x.test/u/1", None, 5) == "<https://x.test/u/1>"


def test_missing_unsubscribe_link_is_refused_before_any_send(delivery_settings):
    url = unsubscribe_url_for(MESSAGE_ID)
    without_link = Rendered("Hi", f"<p>Hi</p><p>{POSTAL_ADDRESS}</p>", f"Hi\n{url}\n{POSTAL_ADDRESS}")
    with pytest.raises(MarketingComplianceError) as raised:
        compose(delivery_settings, without_link)
    assert str(raised.value) == f"message {MESSAGE_ID}: HTML body has no link to its unsubscribe URL"


def test_unsubscribe_link_to_another_url_does_not_count(delivery_settings):
    rendered = render("Hi", "Hi", "https://nurture.test/u/someone-else")
    with pytest.raises(MarketingComplianceError, match="HTML body has no link to its unsubscribe URL"):
        compose(delivery_settings, rendered)


def test_every_problem_is_named(delivery_settings):
    rendered = Rendered("Hi", "<p>Hi</p>", "Hi")
    with pytest.raises(MarketingComplianceError) as raised:
        compose(replace(delivery_settings, postal_address=""), rendered, unsubscribe_url="http://nurture.test/u/1")
    assert str(raised.value).split(": ", 1)[1].split("; ") == [
        "unsubscribe URL 'http://nurture.test/u/1' must use https",
        "HTML body has no link to its unsubscribe URL",
        "text body does not show its unsubscribe URL",
        "no postal address configured (NURTURE_POSTAL_ADDRESS)",
    ]


def test_postal_address_must_be_visible_not_hidden_in_a_comment(delivery_settings):
    url = unsubscribe_url_for(MESSAGE_ID)
    hidden = Rendered(
        "Hi", f'<p><a href="{url}">Unsubscribe</a></p><!-- {POSTAL_ADDRESS} -->', f"{url}\n{POSTAL_ADDRESS}"
    )
    with pytest.raises(MarketingComplianceError, match="HTML body does not show the postal address"):
        compose(delivery_settings, hidden)


def test_postal_address_may_be_split_across_lines_and_escaped(delivery_settings):
    url = unsubscribe_url_for(MESSAGE_ID)
    address = POSTAL_ADDRESS.replace(", ", ",<br>\n   ").replace("ß", "&szlig;")
    link = f'<a href="{url.replace("&", "&amp;")}">x</a>'
    rendered = Rendered("Hi", f"{link}<p>{address}</p>", f"{url}\n{POSTAL_ADDRESS}")
    compose(delivery_settings, rendered)
    assert POSTAL_ADDRESS in visible_text(rendered.html)


def test_plain_http_unsubscribe_allowed_only_on_this_machine(delivery_settings):
    url = "http://127.0.0.1:5000/u/1"
    outgoing = compose(delivery_settings, render("Hi", "Hi", url), unsubscribe_url=url)
    assert marketing_problems(outgoing) == []


def test_headers_must_stay_complete(delivery_settings):
    outgoing = compose(delivery_settings)
    stripped = replace(outgoing, headers={"List-Unsubscribe": "<https://elsewhere.test/>"})
    assert marketing_problems(stripped) == [
        "List-Unsubscribe header does not announce the unsubscribe URL",
        "List-Unsubscribe-Post header must be 'List-Unsubscribe=One-Click'",
        "List-Id header is missing",
        "Message-ID header is missing",
        f"{NURTURE_MESSAGE_ID_HEADER} header is missing",
    ]


def test_mime_is_multipart_alternative_with_encoded_headers(delivery_settings):
    outgoing = compose(delivery_settings)
    raw = mime_bytes(outgoing, SENT_AT)
    assert raw.isascii()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    # Line ends travel as CRLF, as SMTP requires; the email package ends each part with a line break.
    assert text.get_content().replace("\r\n", "\n") == outgoing.text
    assert html.get_content().replace("\r\n", "\n") == outgoing.html + "\n"
    assert str(parsed["Subject"]) == "Ça va? Déjà vu — 新年快乐"
    assert parsed["To"].addresses[0].display_name == "Jürgen Müller, Jr."
    assert parsed["From"].addresses[0].display_name == "Zoë from Nurture"
    assert str(parsed["Reply-To"]) == "Nurture Team <hello@nurture.test>"
    assert parsed["Date"].datetime == SENT_AT
    for name, value in outgoing.headers.items():
        assert str(parsed[name]) == value
    assert "MIME-Version" not in text and "MIME-Version" not in html


def test_long_list_unsubscribe_is_folded_between_uris_never_encoded(delivery_settings):
    url = "https://nurture.test/unsubscribe/" + "a" * 150 + "?token=" + "b" * 60
    outgoing = compose(delivery_settings, render("Hi", "Hi", url), unsubscribe_url=url)
    raw = mime_bytes(outgoing, SENT_AT).decode()
    header = raw.split("List-Unsubscribe: ", 1)[1].split("\r\nList-Unsubscribe-Post", 1)[0]
    assert "=?" not in header
    assert header == f"<{url}>,\r\n <mailto:unsubscribe@nurture.test?subject=unsubscribe%20{MESSAGE_ID}>"


def test_header_injection_is_impossible(delivery_settings):
    outgoing = compose(delivery_settings)
    with pytest.raises(ValueError):
        build_mime(replace(outgoing, subject="Hi\r\nBcc: victim@example.com"), SENT_AT)


def test_internationalised_address_uses_smtputf8_policy(delivery_settings):
    outgoing = compose(delivery_settings, to_address="jürgen@müller.example")
    message = build_mime(outgoing, SENT_AT)
    assert message.policy.utf8
    assert "jürgen@müller.example" in message.as_bytes().decode()



def test_compose_takes_the_renderers_rendered_email(delivery_settings):
    from nurture.rendering import RenderedEmail

    url = unsubscribe_url_for(MESSAGE_ID)
    plain = render("Hi", "Hello", url)
    rendered = RenderedEmail(
        subject="Hi",
        preheader="",
        html=plain.html,
        text=plain.text,
        links=("https://example.com/",),
        template="welcome.html",
        template_version="4",
    )
    outgoing = compose(delivery_settings, rendered)
    assert (outgoing.subject, outgoing.links) == ("Hi", ("https://example.com/",))
