"""The compiled template's proof of the footer (nurture.rendering.footer) and compliance trusting it: only for
templates that print the unsubscribe link and postal address on every render, only for the very HTML it was made
for, and with the same answer as a full scan of the body."""

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.delivery.compliance import _PLAIN_HTTPS_URL, marketing_problems
from nurture.delivery.compose import compose_email
from nurture.delivery.outgoing import OutgoingEmail
from nurture.rendering import DictTemplateSource, EmailRenderer, EmailTemplateLoader, FileTemplateSource, SenderView
from nurture.rendering.links import SignedTrackingUrls
from nurture.tracking.tokens import TokenSigner
from tests.support.emails import POSTAL_ADDRESS

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SENDER = SenderView("Nurture", "news@nurture.test", POSTAL_ADDRESS)
URLS = SignedTrackingUrls("https://nurture.test", TokenSigner(["footer-proof-key-" + "x" * 32]))
REPO = Path(__file__).resolve().parents[2]
LINK = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
ADDRESS = "{{ sender.postal_address }}"


def page(body: str, head: str = "") -> str:
    return (
        "<!DOCTYPE html><html><head><title>{% block subject %}Hi {{ lead.first_name }}{% endblock %}</title>"
        f"{head}</head><body><p>Hello {{{{ lead.first_name }}}}</p>{body}</body></html>"
    )


def renderer_for(source: str) -> EmailRenderer:
    return EmailRenderer(EmailTemplateLoader(DictTemplateSource({"mail.html": source})))


def outgoing(renderer: EmailRenderer, name: str, delivery_settings, first_name: str = "Ada") -> OutgoingEmail:
    rendered = renderer.render(
        renderer.compile(name),
        lead={"id": 42, "email": "ada@example.com", "first_name": first_name},
        sender=SENDER,
        now=NOW,
        message_id=7,
        urls=URLS,
    )
    return compose_email(
        rendered,
        settings=delivery_settings,
        message_id=7,
        lead_id=42,
        to_address="ada@example.com",
        to_name=None,
        unsubscribe_url=rendered.unsubscribe_url,
    )


@pytest.mark.parametrize(
    "directory, name",
    [
        ("nurture/email_templates", "welcome.html"),
        ("nurture/email_templates", "newsletter.html"),
        ("nurture/email_templates", "trial_ending.html"),
        ("tests/fixtures/templates", "bench_newsletter.html"),
    ],
)
def test_the_project_layouts_prove_their_footer_and_a_full_scan_agrees(directory, name, delivery_settings):
    renderer = EmailRenderer(EmailTemplateLoader(FileTemplateSource(REPO / directory)))
    assert renderer.compile(name).proves_footer
    email = outgoing(renderer, name, delivery_settings)
    assert email.footer is not None and email.footer.html is email.html
    assert marketing_problems(email) == []
    assert marketing_problems(replace(email, footer=None)) == []  # the full scan says the same


@pytest.mark.parametrize(
    "body, head",
    [
        (f"{{% if lead.first_name %}}{LINK}{{% endif %}}<p>{ADDRESS}</p>", ""),
        (f"{LINK}{{% for x in [1] %}}<p>{ADDRESS}</p>{{% endfor %}}", ""),
        (f"{LINK}<!-- <p>{ADDRESS}</p> -->", ""),
        (f"{{% set unsubscribe_url = 'https://elsewhere.test/u' %}}{LINK}<p>{ADDRESS}</p>", ""),
        (f"{{{{ '<!--' | safe }}}}{LINK}<p>{ADDRESS}</p>{{{{ '-->' | safe }}}}", ""),
        (f"{{% macro hide() %}}x{{% endmacro %}}{LINK}<p>{ADDRESS}</p>", ""),
        (f"{{% filter upper %}}{LINK}{{% endfilter %}}<p>{ADDRESS}</p>", ""),
        (f"{{% with sender = lead %}}{LINK}<p>{ADDRESS}</p>{{% endwith %}}", ""),
        (f"<p>{ADDRESS}</p>", ""),
        (LINK, ""),
        (f'<a href="{{{{ unsubscribe_url }}}}?x=1">Unsubscribe</a><p>{ADDRESS}</p>', ""),
        (f"<textarea>{LINK}</textarea><p>{ADDRESS}</p>", ""),
    ],
    ids=[
        "link-in-if",
        "address-in-loop",
        "address-in-comment",
        "url-rebound",
        "safe-filter",
        "macro",
        "filter-block",
        "sender-rebound",
        "no-link",
        "no-address",
        "href-not-only-the-url",
        "link-in-textarea",
    ],
)
def test_no_proof_for_what_the_analysis_cannot_vouch_for(body, head):
    assert not renderer_for(page(body, head)).compile("mail.html").proves_footer


def test_an_unconditional_footer_in_blocks_proves_it(delivery_settings):
    renderer = renderer_for(page(f"{{% block footer %}}<p>{LINK} {ADDRESS}</p>{{% endblock %}}"))
    assert renderer.compile("mail.html").proves_footer
    assert outgoing(renderer, "mail.html", delivery_settings).footer is not None


def test_without_a_proof_compliance_still_scans_and_refuses(delivery_settings):
    renderer = renderer_for(page(f"{{% if lead.first_name %}}{LINK}{{% endif %}}<p>{ADDRESS}</p>"))
    email = None
    with pytest.raises(Exception, match="HTML body has no link to its unsubscribe URL"):
        email = outgoing(renderer, "mail.html", delivery_settings, first_name="")
    assert email is None


def test_a_proof_vouches_only_for_its_own_html_url_and_address(delivery_settings):
    renderer = renderer_for(page(f"<p>{LINK} {ADDRESS}</p>"))
    email = outgoing(renderer, "mail.html", delivery_settings)
    assert marketing_problems(email) == []
    other_html = replace(email, html="<p>No way out</p>")
    assert "HTML body has no link to its unsubscribe URL" in marketing_problems(other_html)
    equal_but_another_string = replace(email, html="".join(list(email.html)))
    assert equal_but_another_string.html is not email.html and marketing_problems(equal_but_another_string) == []
    other_url = "https://nurture.test/u/other"
    moved = replace(email, unsubscribe_url=other_url, headers={**email.headers, "List-Unsubscribe": f"<{other_url}>"})
    assert "HTML body has no link to its unsubscribe URL" in marketing_problems(moved)
    elsewhere = replace(email, postal_address="1 Other Street, Elsewhere")
    problems = marketing_problems(elsewhere)
    assert "HTML body does not show the postal address '1 Other Street, Elsewhere'" in problems


def test_a_sender_without_an_address_is_refused_even_with_a_proof(delivery_settings):
    renderer = renderer_for(page(f"<p>{LINK} {ADDRESS}</p>"))
    email = outgoing(renderer, "mail.html", delivery_settings)
    assert "no postal address configured (NURTURE_POSTAL_ADDRESS)" in marketing_problems(
        replace(email, postal_address="")
    )


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x17F), max_size=40))
@settings(max_examples=300, deadline=None)
def test_the_quick_https_url_test_accepts_only_what_urlsplit_accepts(tail):
    for url in (f"https://{tail}", f"https://example.com/{tail}", f"https://{tail}/u"):
        if _PLAIN_HTTPS_URL.fullmatch(url):
            parts = urlsplit(url)
            assert parts.scheme == "https" and parts.hostname and url.isascii() and url.split() == [url]
