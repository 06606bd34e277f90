from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    FileTemplateSource,
    LinkOptions,
    RenderedEmail,
    SignedTrackingUrls,
    default_template_directory,
    preview_email,
    text_from_html,
)
from nurture.rendering import compiler as compiler_module
from nurture.rendering.context import SAMPLE_SENDER
from nurture.tracking.tokens import TokenSigner

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
TEMPLATE = """<!DOCTYPE html>
<html><head><title>{% block subject %}News for {{ lead.first_name }}{% endblock %}</title>
<style>p { margin: 0 0 12px 0; } .hidden { display: none; }</style></head>
<body>
<div class="hidden">{% block preheader %}Preheader text{% endblock %}</div>
<h1>Hello {{ lead.first_name | default('there') }},</h1>
<p>Read <a href="https://www.example.com/post?id=1&amp;ref=mail">our latest post</a> or visit
<a href="https://www.example.com/">https://www.example.com/</a>.</p>
{% if lead.company %}
<p>Your team at {{ lead.company }} can join too.</p>
{% endif %}
<ul>{% for tag in lead.tags %}<li>{{ tag }}</li>{% endfor %}</ul>
<table><tr><td>Plan</td><td>{{ lead.attributes.plan | default('free') }}</td></tr>
<tr><td>Price</td><td>{{ lead.attributes.price | default('0 €') }}</td></tr></table>
<p><a href="{{ campaign.url }}"><img src="https://cdn.example.com/banner.png" alt="Spring sale"></a></p>
<p>Line one<br>Line two &amp; more &lt;here&gt;</p>
<p style="display:none">Never in the text</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""
LEAD = {
    "id": 5,
    "email": "ada@example.com",
    "first_name": 'Ada <&> "Lovelace"',
    "company": "Engines & Co",
    "tags": ["math", "poetry"],
    "attributes": {"plan": "pro"},
}
CAMPAIGN = {"url": "https://www.example.com/sale?x=1"}


def render(templates: dict[str, str], lead: dict[str, object] | None = None) -> RenderedEmail:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource(templates)))
    return preview_email("t.html", now=NOW, renderer=renderer, lead=lead or LEAD, campaign=CAMPAIGN)


def test_the_text_part_is_written_from_the_html() -> None:
    text = render({"t.html": TEMPLATE}).text
    assert text == (
        'Hello Ada <&> "Lovelace",\n'
        "\n"
        "Read our latest post (https://www.example.com/post?id=1&ref=mail) or visit https://www.example.com/.\n"
        "\n"
        "Your team at Engines & Co can join too.\n"
        "\n"
        "- math\n"
        "- poetry\n"
        "\n"
        "Plan pro\n"
        "Price 0 €\n"
        "\n"
        "Spring sale (https://www.example.com/sale?x=1)\n"
        "\n"
        "Line one\n"
        "Line two & more <here>\n"
        "\n"
        "Unsubscribe (#unsubscribe)"
    )


def test_a_skipped_conditional_paragraph_leaves_no_stray_blank_lines() -> None:
    text = render({"t.html": TEMPLATE}, {**LEAD, "company": None, "tags": []}).text
    assert "\n\n\n" not in text
    assert "visit https://www.example.com/.\n\nPlan pro" in text


def test_subject_and_preheader_are_plain_one_line_text() -> None:
    email = render({"t.html": TEMPLATE})
    assert email.subject == 'News for Ada <&> "Lovelace"'
    assert email.preheader == "Preheader text"
    assert "Preheader text" not in email.text


def test_a_hand_written_text_part_wins() -> None:
    hand_written = "Hi {{ lead.first_name }} & welcome.\nRead https://www.example.com/post?id=1 today.\n"
    email = render({"t.html": TEMPLATE, "t.txt": hand_written})
    assert email.text == 'Hi Ada <&> "Lovelace" & welcome.\nRead https://www.example.com/post?id=1 today.'


def test_the_text_part_prints_values_as_they_are() -> None:
    """Nothing is escaped in a plain-text part, so nothing has to be unescaped: text that looks like an entity
    stays as written, in generated and hand-written parts alike."""
    lead = {**LEAD, "first_name": "Tom &amp; <Jerry>", "company": "A&#39;B"}
    generated = render({"t.html": TEMPLATE}, lead).text
    assert generated.startswith("Hello Tom &amp; <Jerry>,")
    assert "Your team at A&#39;B can join too." in generated
    hand_written = render({"t.html": TEMPLATE, "t.txt": "{{ lead.first_name }} / {{ lead.company }} &amp;"}, lead)
    assert hand_written.text == "Tom &amp; <Jerry> / A&#39;B &amp;"


CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "templates"
URLS = SignedTrackingUrls("https://nurture.test", TokenSigner(["channels-test-key-0123456789abcdef"]))
names = st.one_of(st.none(), st.sampled_from(["Ada", "Tom & <Jerry>", "a&amp;b", "Zoë", "  "]), st.text(max_size=8))
leads = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=10**6),
        "email": st.just("a@example.com"),
        "first_name": names,
        "company": names,
        "temperature": st.sampled_from(["cold", "warm", "hot"]),
        "tags": st.lists(st.sampled_from(["news", "a&b", "<x>"]), max_size=2, unique=True),
        "locale": st.sampled_from([None, "fr_FR", "en_GB"]),
        "attributes": st.fixed_dictionaries({"last_order": st.sampled_from(["2025-11-02", "", "soon"])}),
    }
)
CAMPAIGN_DATA: dict[str, Any] = {
    "items": [{"sku": "x&y", "name": "Boots <GTX>", "qty": 2, "price": "€10", "colour": "red", "backorder": True}],
    "total": "€20",
    "help_url": "https://help.example.com/a b?q=é",
    "products": [
        {"name": "Jacket & co", "url": "https://shop.example.com/p/1?c=red&s=M", "image": "https://cdn.example.com/1.jpg",
         "description": "Warm & dry", "price": "€1", "old_price": None, "badge": "New"},
        {"name": "Pack", "url": "https://shop.example.com/p/2", "image": "https://cdn.example.com/2.jpg",
         "description": "<light>", "price": "€2", "old_price": "€3", "badge": None},
    ],
    "events": [{"date": "2026-03-04", "city": "Lyon", "name": "Café", "url": "https://www.example.com/e"}],
    "articles": [{"title": "A & B", "summary": "<s>", "url": "https://www.example.com/a", "tag": "New"}],
    "free_shipping_until": "2026-03-22",
}  # fmt: skip


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        (CORPUS, "bench_newsletter.html"),
        (CORPUS, "table_rows.html"),
        (CORPUS, "child.html"),
        (default_template_directory(), "newsletter.html"),
        (default_template_directory(), "trial_ending.html"),
    ],
)
@settings(max_examples=25)
@given(lead=leads)
def test_one_render_writes_both_parts_as_two_separate_renders_would(
    directory: Path, name: str, lead: dict[str, Any]
) -> None:
    """The HTML template writes the text part too, whenever the two can be merged (see channels.py): the same
    HTML, text and links as the text template rendered on its own."""

    def render_with(merging: bool) -> RenderedEmail:
        renderer = _renderers(directory, merging)
        assert (renderer.compile(name).text is None) == merging
        return renderer.render(
            name, lead=lead, sender=SAMPLE_SENDER, now=NOW, campaign=CAMPAIGN_DATA, message_id=9, urls=URLS,
            options=LinkOptions(utm={"utm_source": "x & y"}),
        )  # fmt: skip

    merged, separate = render_with(True), render_with(False)
    assert (merged.html, merged.text, merged.links) == (separate.html, separate.text, separate.links)
    assert (merged.subject, merged.preheader) == (separate.subject, separate.preheader)


_RENDERERS: dict[tuple[Path, bool], EmailRenderer] = {}


def _renderers(directory: Path, merging: bool) -> EmailRenderer:
    """One renderer per directory that merges, one that never does (each compiles a template once)."""
    key = (directory, merging)
    if key not in _RENDERERS:
        renderer = _RENDERERS[key] = EmailRenderer(EmailTemplateLoader(FileTemplateSource(directory)))
        if not merging:
            compile_separately = renderer.compiler.compile

            def compile_without_merging(name: str) -> Any:
                real_merge = compiler_module.merge
                compiler_module.merge = lambda *args: False  # type: ignore[assignment]
                try:
                    return compile_separately(name)
                finally:
                    compiler_module.merge = real_merge

            renderer.compiler.compile = compile_without_merging  # type: ignore[method-assign]
    return _RENDERERS[key]


def test_text_from_finished_html() -> None:
    html = (
        "<html><body><h2>Title</h2><p>A <b>bold</b> move &amp; "
        "<a href='https://x.example/a'>a link</a>.</p></body></html>"
    )
    assert text_from_html(html) == "Title\n\nA bold move & a link (https://x.example/a)."


def test_every_starter_email_has_a_sensible_text_part() -> None:
    email = preview_email("newsletter.html", now=NOW, campaign={"articles": [], "events": []}, sender=SAMPLE_SENDER)
    assert "Unsubscribe (#unsubscribe)" in email.text
    assert "<" not in email.text.replace("<&>", "")


def test_values_whose_escaping_differs_are_computed_in_each_part() -> None:
    template = (
        "<html><head><title>{% block subject %}Hi{% endblock %}</title></head><body>"
        "<p>{{ lead.tags | join(' & ') }} / {{ '<' ~ lead.first_name }} / {{ lead.first_name }}</p>"
        '<p><a href="https://x.example/{{ lead.first_name }}?a=1&amp;b=2">go</a></p></body></html>'
    )
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": template})))
    assert renderer.compile("t.html").text is None
    email = renderer.render(
        "t.html", lead={**LEAD, "first_name": "A&B"}, sender=SAMPLE_SENDER, now=NOW, message_id=3, urls=URLS
    )
    assert "<p>math &amp; poetry / &lt;A&amp;B / A&amp;B</p>" in email.html
    assert email.text.startswith("math & poetry / <A&B / A&B\n\ngo (https://nurture.test/t/c/")
    assert email.links == ("https://x.example/A&B?a=1&b=2",)


@pytest.mark.parametrize(
    "title",
    [
        "<title>{% block subject %}Hi {{ lead.first_name }}{% endblock %}</title>",
        # Printed under a condition: the block is rendered on its own after the template.
        "<title>{% if lead.id %}{% block subject %}Hi {{ lead.first_name }}{% endblock %}{% endif %}</title>",
        "<title>{% if not lead.id %}{% block subject %}Hi {{ lead.first_name }}{% endblock %}{% endif %}</title>",
    ],
)
def test_the_subject_is_the_block_whether_the_template_printed_it_or_not(title: str) -> None:
    """The subject block printed once at the top level of the template is kept as printed (not rendered a second
    time); anywhere else it is rendered on its own. Either way the subject is the block's text."""
    html = f"<html><head>{title}</head><body><p>Hello</p></body></html>"
    email = render({"t.html": html}, lead={"id": 1, "email": "a@example.com", "first_name": "Ada & Bo"})
    assert email.subject == "Hi Ada & Bo"
