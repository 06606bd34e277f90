"""What templates see: read-only views of the lead and sender, ``now`` in the lead's time zone, fallbacks
that read naturally and dates in the lead's language."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from nurture.errors import ValidationError
from nurture.leads.lifecycle import Stage, Temperature
from nurture.leads.models import Lead, Tag
from nurture.rendering import DictTemplateSource, EmailRenderer, EmailTemplateLoader, LeadView, lead_view
from nurture.rendering.context import SAMPLE_SENDER, lead_zone, sender_view
from nurture.rendering.filters import date_names, default_filter, format_date, format_time

NOW = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)  # Thursday; already Friday in Tokyo


def render_line(body: str, **lead: object) -> str:
    template = (
        "<html><head><title>{% block subject %}x{% endblock %}</title></head><body><p>" + body + "</p></body></html>"
    )
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": template})))
    email = renderer.render("t.html", lead={"email": "a@example.com", **lead}, sender=SAMPLE_SENDER, now=NOW)
    return email.text


@pytest.mark.parametrize(
    ("first_name", "expected"),
    [("Ada", "Hi Ada!"), (None, "Hi there!"), ("", "Hi there!"), ("   ", "Hi there!"), ("0", "Hi 0!")],
)
def test_default_applies_to_missing_none_and_blank_values(first_name: str | None, expected: str) -> None:
    assert render_line("Hi {{ lead.first_name | default('there') }}!", first_name=first_name) == expected


def test_default_keeps_falsy_values_unless_asked() -> None:
    assert default_filter(0, "n/a") == 0
    assert default_filter(0, "n/a", boolean=True) == "n/a"
    assert render_line("{{ lead.score | default('n/a') }} {{ lead.attributes.missing | d('none') }}") == "0 none"


def test_none_prints_as_nothing() -> None:
    assert render_line("[{{ lead.company }}]") == "[]"


@pytest.mark.parametrize(
    ("locale", "short", "medium", "long", "full"),
    [
        ("en_US", "3/5/26", "Mar 5, 2026", "March 5, 2026", "Thursday, March 5, 2026"),
        ("en_GB", "05/03/2026", "5 Mar 2026", "5 March 2026", "Thursday 5 March 2026"),
        ("fr_FR", "05/03/2026", "5 mars 2026", "5 mars 2026", "jeudi 5 mars 2026"),
        ("fr-CA", "05/03/2026", "5 mars 2026", "5 mars 2026", "jeudi 5 mars 2026"),
        ("de", "05.03.26", "05.03.2026", "5. März 2026", "Donnerstag, 5. März 2026"),
        ("es_ES", "5/3/26", "5 mar 2026", "5 de marzo de 2026", "jueves, 5 de marzo de 2026"),
        ("xx", "3/5/26", "Mar 5, 2026", "March 5, 2026", "Thursday, March 5, 2026"),
        (None, "3/5/26", "Mar 5, 2026", "March 5, 2026", "Thursday, March 5, 2026"),
    ],
)
def test_dates_in_the_leads_language(locale: str | None, short: str, medium: str, long: str, full: str) -> None:
    day = date(2026, 3, 5)
    assert [format_date(day, style, locale) for style in ("short", "medium", "long", "full")] == [
        short,
        medium,
        long,
        full,
    ]


def test_date_patterns_and_times() -> None:
    assert format_date(date(2026, 12, 24), "{EEE} {dd}.{MM}.{yy} ({MMMM})", "de") == "Do. 24.12.26 (Dezember)"
    moment = datetime(2026, 1, 15, 15, 5)
    assert format_time(moment, "en_US") == "3:05 PM"
    assert format_time(moment.replace(hour=0), "en") == "12:05 AM"
    assert format_time(moment, "fr") == "15:05"
    assert date_names("es").months[0] == "enero"


def test_date_filter_in_a_template() -> None:
    body = (
        "{{ lead.attributes.trial_ends | date('long') }}|{{ lead.attributes.odd | date }}"
        "|{{ lead.attributes.none | date | default('soon') }}"
    )
    assert render_line(body, locale="fr", attributes={"trial_ends": "2026-02-01", "odd": "next week"}) == (
        "1 février 2026|next week|soon"
    )


def test_now_is_in_the_leads_time_zone() -> None:
    body = "{{ now | date('full') }} {{ now | time }} {{ now.strftime('%Z') }}"
    assert render_line(body, timezone="Asia/Tokyo", locale="en_US") == "Friday, January 16, 2026 8:30 AM JST"
    assert render_line(body, timezone="Not/AZone", locale="fr") == "jeudi 15 janvier 2026 23:30 UTC"
    assert render_line("{{ lead.attributes.at | time }}", timezone="Europe/Paris", locale="de",
                       attributes={"at": "2026-01-15T10:00:00Z"}) == "11:00"  # fmt: skip


def test_the_default_time_zone_is_configurable() -> None:
    assert str(lead_zone(lead_view({"email": "a@example.com"}), "Europe/Berlin")) == "Europe/Berlin"
    assert str(lead_zone(lead_view({"email": "a@example.com", "timezone": "Asia/Tokyo"}), "UTC")) == "Asia/Tokyo"


def test_a_view_of_a_stored_lead_carries_its_fields_not_the_orm_object() -> None:
    lead = Lead(
        id=9,
        email="Ada@Example.com",
        email_key="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        stage=Stage.MQL,
        temperature=Temperature.HOT,
        score=70,
        attributes={"plan": "pro"},
        tags=[Tag(name="vip"), Tag(name="news")],
    )
    view = lead_view(lead)
    assert isinstance(view, LeadView)
    assert (view.id, view.email, view.full_name, view.stage, view.stage_label) == (
        9,
        "Ada@Example.com",
        "Ada Lovelace",
        "mql",
        "Marketing-qualified",
    )
    assert view.temperature == "hot" and view.score == 70
    assert view.tags == ("vip", "news")
    assert view.attributes["plan"] == "pro"
    with pytest.raises(TypeError):
        view.attributes["plan"] = "free"  # type: ignore[index]
    lead.attributes["plan"] = "changed later"
    assert view.attributes["plan"] == "pro"


def test_a_plain_mapping_is_checked() -> None:
    with pytest.raises(ValidationError, match="unknown lead field"):
        lead_view({"email": "a@example.com", "frist_name": "Ada"})
    with pytest.raises(ValidationError, match="not a valid Stage"):
        lead_view({"email": "a@example.com", "stage": "nonsense"})
    with pytest.raises(ValidationError, match="needs a postal_address"):
        sender_view({"name": "Shop", "email": "shop@example.com"})
