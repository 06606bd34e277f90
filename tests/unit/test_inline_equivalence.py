"""Inlining CSS once per template version gives the same email as inlining every rendered email.

For each template of the corpus (tests/fixtures/templates) and many leads, the email rendered by the pipeline
(protect, premailer once, restore, compile, render) is compared with the naive one (render with Jinja's own
inheritance, then the same inliner on the result), as re-parsed DOMs: whitespace between elements, attribute
order and the spelling of a style declaration do not count; everything else does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cssutils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from nurture.rendering import EmailRenderer, EmailTemplateLoader, FileTemplateSource, lead_view
from nurture.rendering.context import PREVIEW_URLS, SAMPLE_SENDER, build_context
from nurture.rendering.inline import inline_css, is_static_selector, split_rules

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "templates"
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
EMAILS = ["table_rows.html", "child.html", "bench_newsletter.html"]

names = st.one_of(
    st.none(),
    st.sampled_from(["Ada", "O'Brien", 'Jean "JJ"', "<script>", "Tom & Jerry", "Zoë", "Ōta", "  ", "a&amp;b"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12),
)
leads = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=10**9),
        "email": st.sampled_from(["a@example.com", "o'brien+tag@example.com"]),
        "first_name": names,
        "company": names,
        "temperature": st.sampled_from(["cold", "warm", "hot"]),
        "score": st.integers(min_value=-5, max_value=200),
        "tags": st.lists(st.sampled_from(["news", "a&b", "café", "<x>", "vip"]), max_size=3, unique=True),
        "locale": st.sampled_from([None, "fr_FR", "de", "es", "en_GB"]),
        "timezone": st.sampled_from([None, "Europe/Paris", "Asia/Tokyo"]),
        "attributes": st.fixed_dictionaries({"last_order": st.sampled_from(["2025-11-02", "not a date", ""])}),
    }
)
items = st.lists(
    st.fixed_dictionaries(
        {
            "sku": st.sampled_from(["A1", "b 2", "ç3", "x&y"]),
            "name": names,
            "qty": st.integers(min_value=0, max_value=9),
            "price": st.sampled_from(["€10.00", "$3 & up", "<free>"]),
            "colour": st.sampled_from([None, "#aa0000", "red"]),
            "backorder": st.booleans(),
        }
    ),
    max_size=4,
)


@pytest.fixture(scope="module")
def renderer() -> EmailRenderer:
    return EmailRenderer(EmailTemplateLoader(FileTemplateSource(CORPUS)))


def campaign_for(order: list[dict[str, Any]]) -> dict[str, Any]:
    """Data for every template of the corpus: ``items`` and ``total`` for table_rows.html, products and events
    for bench_newsletter.html."""
    products = [
        {
            "name": name,
            "url": f"https://shop.example.com/p/{index}?colour=red&size=M",
            "image": f"https://cdn.example.com/p/{index}.jpg",
            "description": "Warm & dry, with a two-way zip.",
            "price": "€120",
            "old_price": "€150" if index % 2 else None,
            "badge": "New" if index == 0 else None,
        }
        for index, name in enumerate(["Jacket", "Boots <GTX>", "Pack «30 L»"])
    ]
    return {
        "items": order,
        "total": "€42",
        "help_url": "https://help.example.com/a b?q=é",
        "products": products,
        "events": [{"date": "2026-03-04", "city": "Lyon", "name": "Repair café"}],
        "free_shipping_until": "2026-03-22",
    }


def naive(renderer: EmailRenderer, name: str, context: dict[str, Any]) -> str:
    """Render with Jinja's own inheritance and includes, then inline: what inlining once must equal."""
    return inline_css(renderer.html_environment.get_template(name).render(context))


def pipeline(renderer: EmailRenderer, name: str, lead: dict[str, Any], campaign: dict[str, Any]) -> str:
    return renderer.render(name, lead=lead, sender=SAMPLE_SENDER, now=NOW, campaign=campaign).html


_SPACES = re.compile(r"\s+")


def _style(value: str) -> tuple[tuple[str, str], ...]:
    """Declarations by property, last one wins, spelled the way cssutils spells them (the naive inliner
    shortens ``#222222`` to ``#222`` in values it parsed; values printed into a template are not parsed)."""
    value = cssutils.parseStyle(value, validate=False).cssText
    declarations = {}
    for declaration in value.split(";"):
        name, colon, setting = declaration.partition(":")
        if colon:
            declarations[name.strip().lower()] = _SPACES.sub(" ", setting.strip()).lower()
    return tuple(sorted(declarations.items()))


def _text(value: str | None) -> str:
    return _SPACES.sub(" ", value or "").strip()


def normalised(html: str) -> list[Any]:
    root = etree.fromstring(html, etree.HTMLParser())
    out: list[Any] = []
    for node in root.iter():
        if node.tag is etree.Comment:
            out.append(("comment", _text(node.text)))
        elif isinstance(node.tag, str):
            attributes = tuple(
                sorted(
                    (name, _style(value) if name == "style" else _text(value)) for name, value in node.attrib.items()
                )
            )
            out.append((node.tag, attributes, _text(node.text)))
        if node.tail and node.tail.strip():
            out.append(("tail", _text(node.tail)))
    return out


def assert_same_email(renderer: EmailRenderer, name: str, lead: dict[str, Any], campaign: dict[str, Any]) -> None:
    view = lead_view(lead)
    context = build_context(view, sender=SAMPLE_SENDER, now=NOW, urls=PREVIEW_URLS, campaign=campaign)
    expected = normalised(naive(renderer, name, context))
    actual = normalised(pipeline(renderer, name, lead, campaign))
    assert actual == expected


@pytest.mark.parametrize("name", EMAILS)
def test_sample_leads_render_the_same_as_render_then_inline(renderer: EmailRenderer, name: str) -> None:
    campaign = campaign_for([{"sku": "A1", "name": "Boots", "qty": 1, "price": "€10", "backorder": True}])
    for lead in (
        {"id": 1, "email": "a@example.com"},
        {
            "id": 2,
            "email": "b@example.com",
            "first_name": "O'Brien <&>",
            "company": "Ütopia & Co",
            "temperature": "hot",
            "tags": ["a&b", "café"],
        },
    ):
        assert_same_email(renderer, name, lead, campaign)


@settings(max_examples=40)
@given(lead=leads, order=items, name=st.sampled_from(EMAILS))
def test_any_lead_renders_the_same_as_render_then_inline(
    renderer: EmailRenderer, lead: dict[str, Any], order: list[dict[str, Any]], name: str
) -> None:
    assert_same_email(renderer, name, lead, campaign_for(order))


def test_structural_selectors_stay_in_a_style_element(renderer: EmailRenderer) -> None:
    html = pipeline(renderer, "table_rows.html", {"id": 1, "email": "a@example.com"}, campaign_for([]))
    assert "tr:nth-child(even) td" in html
    assert "@media" in html
    inline_styles = [element.get("style", "") for element in etree.fromstring(html, etree.HTMLParser()).iter("td")]
    assert inline_styles and not any("#f5f5f5" in style for style in inline_styles)


def test_only_selectors_independent_of_rendered_structure_are_inlined() -> None:
    assert is_static_selector(".orders td.amount")
    assert is_static_selector("table > tr td")
    for selector in ("tr:nth-child(even) td", "a:hover", "p + p", "li ~ li", "[href]", "*", "td:first-child"):
        assert not is_static_selector(selector)
    inlinable, kept = split_rules("p, li:first-child { color: red } @media (max-width: 1px) { p { x: y } }")
    assert "li:first-child" in kept and "@media" in kept
    assert inlinable.startswith("p {")
