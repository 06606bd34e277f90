from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    LinkOptions,
    RenderedEmail,
    SignedTrackingUrls,
)
from nurture.rendering.context import SAMPLE_SENDER
from nurture.rendering.links import add_query_parameters, escape_uri
from nurture.tracking.tokens import TokenPurpose, TokenSigner

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
SIGNER = TokenSigner(["links-test-key-0123456789abcdef"])
URLS = SignedTrackingUrls("https://nurture.test", SIGNER)
LEAD = {"id": 42, "email": "ada@example.com", "first_name": "Ada"}
TEMPLATE = """<html><head><title>{% block subject %}Links{% endblock %}</title></head><body>
<p><a href="https://shop.example.com/a">A</a> <a href="https://shop.example.com/b?x=1&amp;y=2#top">B</a></p>
<p><a href="https://shop.example.com/privacy" data-notrack>Privacy</a> <a href="mailto:help@example.com">Mail</a>
<a href="tel:+331234">Call</a> <a href="#section">Jump</a> <a href="/relative">Relative</a></p>
{% for product in campaign.products %}<p><a href="{{ product.url }}">{{ product.name }}</a>
<a href="https://shop.example.com/buy/{{ product.id }}">Buy</a></p>{% endfor %}
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a>
<a href="{{ view_in_browser_url }}">View</a>
<a href="{{ unsubscribe_url }}&amp;reason=x">Unsubscribe with reason</a></p>
<img src="https://cdn.example.com/{{ lead.first_name }} photo.png" alt="">
</body></html>"""
CAMPAIGN = {
    "products": [
        {"id": 1, "name": "Jacket", "url": "https://shop.example.com/p/1"},
        {"id": 2, "name": "Boots", "url": "https://shop.example.com/p/2?colour=red"},
        {"id": 3, "name": "Jacket again", "url": "https://shop.example.com/p/1"},
    ]
}


def render(options: LinkOptions | None = None, message_id: int | None = 7, template: str = TEMPLATE) -> RenderedEmail:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": template})))
    return renderer.render(
        "t.html", lead=LEAD, sender=SAMPLE_SENDER, now=NOW, campaign=CAMPAIGN, message_id=message_id, urls=URLS,
        options=options,
    )  # fmt: skip


def hrefs(email: RenderedEmail) -> list[str]:
    return [value.replace("&amp;", "&") for value in re.findall(r'href="([^"]*)"', email.html)]


def click_prefix(message_id: int = 7) -> str:
    return f"https://nurture.test/t/c/{SIGNER.sign(TokenPurpose.CLICK, message_id)}/"


def test_http_links_become_click_urls_and_the_targets_are_returned() -> None:
    email = render()
    prefix = click_prefix()
    links = hrefs(email)
    assert links[:2] == [prefix + "0", prefix + "1"]
    assert email.links[:2] == ("https://shop.example.com/a", "https://shop.example.com/b?x=1&y=2#top")
    # One index per target URL: the same product URL twice is one link; the loop's hrefs are told apart.
    product_links = [link for link in links if link.startswith(prefix)][2:]
    assert len(product_links) == 6
    targets = [email.links[int(link.rsplit("/", 1)[1])] for link in product_links]
    assert targets == [
        "https://shop.example.com/p/1",
        "https://shop.example.com/buy/1",
        "https://shop.example.com/p/2?colour=red",
        "https://shop.example.com/buy/2",
        "https://shop.example.com/p/1",
        "https://shop.example.com/buy/3",
    ]
    assert len(email.links) == 7


def test_click_urls_carry_a_verifiable_message_token() -> None:
    link = hrefs(render(message_id=123_456))[0]
    token, index = link.removeprefix("https://nurture.test/t/c/").split("/")
    assert SIGNER.verify(TokenPurpose.CLICK, token) == (123_456,)
    assert index == "0"


def test_marked_unsubscribe_and_non_http_links_are_left_alone() -> None:
    email = render()
    links = hrefs(email)
    for untouched in ("https://shop.example.com/privacy", "mailto:help@example.com", "tel:+331234", "#section"):
        assert untouched in links
    assert "/relative" in links
    unsubscribe = f"https://nurture.test/u/{SIGNER.sign(TokenPurpose.UNSUBSCRIBE, 42)}"
    assert unsubscribe in links
    assert f"https://nurture.test/p/{SIGNER.sign(TokenPurpose.PREFERENCES, 42)}" in links
    assert f"https://nurture.test/t/v/{SIGNER.sign(TokenPurpose.VIEW, 7)}" in links
    # Built around the unsubscribe URL: not a trackable http link of the email's content either.
    assert not any("reason=x" in target for target in email.links)


def test_the_open_pixel_is_added_when_opens_are_tracked() -> None:
    pixel = f"https://nurture.test/t/o/{SIGNER.sign(TokenPurpose.OPEN, 7)}"
    assert f'<img src="{pixel}"' in render().html
    assert pixel not in render(LinkOptions(track_opens=False)).html
    assert "/t/o/" not in render(message_id=None).html


def test_without_click_tracking_links_keep_their_targets_with_utm() -> None:
    email = render(LinkOptions(track_clicks=False, utm={"utm_source": "nurture", "utm_campaign": "spring sale"}))
    links = hrefs(email)
    assert links[0] == "https://shop.example.com/a?utm_source=nurture&utm_campaign=spring%20sale"
    assert links[1] == "https://shop.example.com/b?x=1&y=2&utm_source=nurture&utm_campaign=spring%20sale#top"
    assert "https://shop.example.com/p/2?colour=red&utm_source=nurture&utm_campaign=spring%20sale" in links
    assert "/t/c/" not in email.html


def test_utm_parameters_are_part_of_the_stored_targets() -> None:
    email = render(LinkOptions(utm={"utm_medium": "email"}))
    assert email.links[0] == "https://shop.example.com/a?utm_medium=email"
    assert "https://shop.example.com/p/2?colour=red&utm_medium=email" in email.links


def test_a_preview_tracks_nothing() -> None:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": TEMPLATE})))
    email = renderer.render("t.html", lead=LEAD, sender=SAMPLE_SENDER, now=NOW, campaign=CAMPAIGN)
    links = hrefs(email)
    assert links[0] == "https://shop.example.com/a"
    assert "#unsubscribe" in links
    assert "nurture.test" not in email.html


def test_the_text_part_uses_the_same_link_indexes() -> None:
    email = render()
    prefix = click_prefix()
    assert f"A ({prefix}0)" in email.text
    assert f"Jacket ({prefix}2)" in email.text
    assert f"Jacket again ({prefix}2)" in email.text


def test_urls_built_by_a_template_are_escaped_like_the_html_serializer_does() -> None:
    assert 'src="https://cdn.example.com/Ada%20photo.png"' in render().html


@pytest.mark.parametrize(
    ("url", "parameters", "expected"),
    [
        ("https://a.example/", {"utm_source": "x"}, "https://a.example/?utm_source=x"),
        ("https://a.example/p?q=1", {"utm_source": "x"}, "https://a.example/p?q=1&utm_source=x"),
        ("https://a.example/p?q=1&", {"utm_source": "x"}, "https://a.example/p?q=1&utm_source=x"),
        ("https://a.example/p#frag", {"utm_source": "x"}, "https://a.example/p?utm_source=x#frag"),
        ("https://a.example/p?q=1#f?g", {"utm_source": "x"}, "https://a.example/p?q=1&utm_source=x#f?g"),
        ("https://a.example/p?utm_source=mine", {"utm_source": "x", "utm_medium": "email"},
         "https://a.example/p?utm_source=mine&utm_medium=email"),
        ("https://a.example/p?utm_source=mine", {"utm_source": "x"}, "https://a.example/p?utm_source=mine"),
        ("https://a.example/p?q=%20a", {"utm_campaign": "a b&c"}, "https://a.example/p?q=%20a&utm_campaign=a%20b%26c"),
        ("https://a.example/p", {}, "https://a.example/p"),
    ],
)  # fmt: skip
def test_utm_parameters_merge_with_existing_queries(url: str, parameters: dict[str, str], expected: str) -> None:
    assert add_query_parameters(url, parameters) == expected


def test_escape_uri_matches_the_html_serializer() -> None:
    assert escape_uri("  https://a.example/a b?q=é&r=1\t") == "https://a.example/a%20b?q=%C3%A9&r=1%09"
    assert escape_uri("https://a.example/[x]{y}|\"'") == "https://a.example/[x]{y}|\"'"


def test_all_urls_of_an_email_come_from_two_macs_and_match_the_one_by_one_methods() -> None:
    urls = URLS.for_message(7, 42)
    assert urls.click_prefix == URLS.click_prefix(7)
    assert urls.open_url == URLS.open_url(7)
    assert urls.view_url == URLS.view_url(7)
    assert urls.unsubscribe_url == URLS.unsubscribe_url(42)
    assert urls.preferences_url == URLS.preferences_url(42)
    assert URLS.for_message(None, 42).click_prefix == ""
    assert render().unsubscribe_url == URLS.unsubscribe_url(42)


class UntrackedOnlyUrls:
    """A TrackingUrls without ``for_message`` that refuses to make tracked URLs (an owner alert's, say)."""

    def click_prefix(self, message_id: int) -> str:
        raise AssertionError("not tracked")

    def open_url(self, message_id: int) -> str:
        raise AssertionError("not tracked")

    def view_url(self, message_id: int) -> str:
        return ""

    def unsubscribe_url(self, lead_id: int) -> str:
        return f"https://crm.test/leads/{lead_id}"

    def preferences_url(self, lead_id: int) -> str:
        return f"https://crm.test/leads/{lead_id}"


def test_other_tracking_urls_are_asked_only_for_what_the_options_track() -> None:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": TEMPLATE})))
    email = renderer.render(
        "t.html", lead=LEAD, sender=SAMPLE_SENDER, now=NOW, campaign=CAMPAIGN, message_id=7,
        urls=UntrackedOnlyUrls(), options=LinkOptions(track_clicks=False, track_opens=False),
    )  # fmt: skip
    assert "https://crm.test/leads/42" in hrefs(email)
    assert email.unsubscribe_url == "https://crm.test/leads/42"
    assert hrefs(email)[0] == "https://shop.example.com/a"


def test_links_and_values_in_macros_callers_recursive_loops_and_filter_blocks() -> None:
    """Compiled templates read the render's links, allowance and text chunks once per function (sandbox.py):
    macros, ``caller()``, recursive loops and loop filters are nested functions and print from the same."""
    template = """<html><head><title>{% block subject %}Hi{% endblock %}</title></head><body>
{% macro card(product) %}<p><a href="{{ product.url }}">{{ product.name }}</a> <a href="https://shop.example.com/m">M</a>{{ caller() if caller else '' }}</p>{% endmacro %}
{% for product in campaign.products if product.id > 1 %}{{ card(product) }}{% endfor %}
{% call card(campaign.products[0]) %}<b>{{ lead.first_name }}</b>{% endcall %}
{% for node in campaign.tree recursive %}<i>{{ node.name }}</i>{{ loop(node.children) }}{% endfor %}
{% filter lower %}<a href="https://shop.example.com/F">{{ lead.first_name }}</a>{% endfilter %}
</body></html>"""  # noqa: E501
    tree = [{"name": "root", "children": [{"name": "leaf", "children": []}]}]
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": template})))
    email = renderer.render(
        "t.html", lead=LEAD, sender=SAMPLE_SENDER, now=NOW, campaign={**CAMPAIGN, "tree": tree}, message_id=7,
        urls=URLS,
    )  # fmt: skip
    prefix = click_prefix()
    assert email.links == (
        "https://shop.example.com/m", "https://shop.example.com/F", "https://shop.example.com/p/2?colour=red",
        "https://shop.example.com/p/1",
    )  # fmt: skip
    assert hrefs(email)[:6] == [f"{prefix}2", f"{prefix}0", f"{prefix}3", f"{prefix}0", f"{prefix}3", f"{prefix}0"]
    assert "<b>Ada</b></p>" in email.html and "<i>root</i><i>leaf</i>" in email.html
    assert f'<a href="{prefix.lower()}1">ada</a>' in email.html
    assert f"Boots ({prefix}2) M ({prefix}0)" in email.text
