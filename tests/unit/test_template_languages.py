"""Language variants of email templates: which name a lead's locale picks, and what validation says about a
variant without its default."""

from __future__ import annotations

import pytest

from nurture.campaigns.definition import SetStep
from nurture.campaigns.validation import check_text
from nurture.rendering import DictTemplateSource, EmailTemplateLoader
from nurture.rendering.sources import language_of, localized_name

BODY = '{% extends "layouts/base.html" %}{% block subject %}S{% endblock %}{% block content %}x{% endblock %}'


@pytest.mark.parametrize(
    ("locale", "language"),
    [("fr", "fr"), ("fr_CA", "fr"), ("FR-ca", "fr"), ("en_US", "en"), ("", None), (None, None), ("f", None),
     ("fr1", None), ("../x", None), ("français", None)],
)
def test_language_of_a_locale(locale, language):
    assert language_of(locale) == language


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("welcome.html", "welcome.fr.html"),
        ("welcome.txt", "welcome.fr.txt"),
        ("onboarding/day-3", "onboarding/day-3.fr"),
    ],
)
def test_the_name_of_a_variant(name, variant):
    assert localized_name(name, "fr") == variant


def test_a_lead_gets_the_variant_of_its_language_else_the_default():
    stored = DictTemplateSource({"welcome.fr.html": BODY})
    files = DictTemplateSource({"welcome.html": BODY, "welcome.de.html": BODY, "tips.html": BODY})
    loader = EmailTemplateLoader(stored, files)
    assert loader.localized("welcome.html", "fr_FR") == "welcome.fr.html"  # from the first source
    assert loader.localized("welcome.html", "de-AT") == "welcome.de.html"
    assert loader.localized("welcome.html", "es") == "welcome.html"
    assert loader.localized("welcome.html", None) == "welcome.html"
    assert loader.localized("tips.html", "fr") == "tips.html"


CAMPAIGN = """slug: c
name: C
entry: [{on_event: e}]
steps:
  - {id: a, type: send, template: TEMPLATE}
  - {id: b, type: set, unsubscribe: inactive}
"""


def errors(template: str, names: set[str]) -> list[str]:
    checked = check_text(CAMPAIGN.replace("TEMPLATE", template), template_exists=names.__contains__, source="c.yaml")
    return [str(issue) for issue in checked.errors]


def test_a_variant_without_its_default_is_an_error():
    assert errors("news", {"news", "news.fr"}) == []
    assert errors("news", {"news"}) == []
    assert errors("news", {"news.fr", "news.de"}) == [
        "c.yaml:5:35: error: steps[0].template: no email template 'news', only its language variant(s) "
        "'news.fr', 'news.de': add 'news', the default that leads of other languages get"
    ]
    assert errors("news", set()) == ["c.yaml:5:35: error: steps[0].template: no email template 'news'"]


def test_a_send_step_may_leave_its_subject_to_the_template_and_a_set_step_may_unsubscribe():
    checked = check_text(CAMPAIGN.replace("TEMPLATE", "news"), template_exists=lambda name: True)
    assert checked.definition is not None and not checked.errors
    send, unsubscribe = checked.definition.steps
    assert [message.subject for message in send.messages()] == [None]
    assert isinstance(unsubscribe, SetStep) and unsubscribe.unsubscribe == "inactive"
    assert checked.definition.to_data()["steps"][1] == {"id": "b", "type": "set", "unsubscribe": "inactive"}
    bad = check_text(CAMPAIGN.replace("TEMPLATE", "news").replace("inactive", "Not Active"),
                     template_exists=lambda name: True)
    assert [str(issue) for issue in bad.errors] == [
        "6:37: error: steps[1].unsubscribe: expected the cause of the unsubscribe: lowercase letters and digits "
        "joined by - or _, such as inactive, got 'Not Active'"
    ]
