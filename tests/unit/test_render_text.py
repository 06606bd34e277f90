from __future__ import annotations

from datetime import UTC, datetime

from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    RenderedEmail,
    preview_email,
    text_from_html,
)
from nurture.rendering.context import SAMPLE_SENDER

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
