"""The starter emails, rendered for a fixed lead with tracking on, compared with reviewed snapshots in
tests/snapshots/. After an intended change, run
``UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_render_snapshots.py`` and review the diff."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.campaigns.definition import NotifyStep, SendStep
from nurture.campaigns.validation import check_file
from nurture.demo import STARTER_CAMPAIGNS
from nurture.rendering import LinkOptions, SignedTrackingUrls, default_renderer, render_email
from nurture.rendering.context import SenderView
from nurture.tracking.tokens import TokenSigner

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
URLS = SignedTrackingUrls("https://nurture.example.com", TokenSigner(["snapshot-key-0123456789abcdef0123"]))
SENDER = SenderView(
    "Northwind Analytics", "hello@northwind.example", "12 Harbour Road, Bristol BS1 4XX, United Kingdom"
)
LEAD = {
    "id": 1201,
    "email": "zoe.obrien@example.com",
    "first_name": "Zoë",
    "last_name": "O'Brien",
    "company": "Brontë & Partners",
    "locale": "en_GB",
    "timezone": "Europe/London",
    "stage": "lead",
    "temperature": "hot",
    "score": 64,
    "owner": "Sam",
    "tags": ["webinar"],
    "attributes": {"plan": "trial", "trial_ends": "2026-02-01", "segments_created": 3, "leads_emailed": 1},
}
CAMPAIGN = {
    "name": "January newsletter",
    "issue": "Issue 12",
    "intro": "Three things shipped this month, and one thing we got wrong.",
    "articles": [
        {
            "title": "Segments that update themselves",
            "summary": "Dynamic segments now refresh every hour, so your lists stay current without a click.",
            "url": "https://www.example.com/blog/segments",
            "image_url": "https://cdn.example.com/blog/segments.png",
            "tag": "New",
        },
        {
            "title": "Five subject lines that worked",
            "summary": "What our customers' best-performing emails had in common (and it is not emoji).",
            "url": "https://www.example.com/blog/subject-lines",
        },
    ],
    "events": [
        {"date": "2026-02-03", "name": "Webinar: scoring leads", "url": "https://www.example.com/webinars/scoring"},
        {"date": "2026-02-17", "name": "Office hours", "url": "https://www.example.com/office-hours"},
    ],
}
OPTIONS = LinkOptions(utm={"utm_source": "nurture", "utm_medium": "email"})


def assert_snapshot(name: str, actual: str) -> None:
    """Compares with the stored snapshot; writes it when missing or different only if UPDATE_SNAPSHOTS=1."""
    path = SNAPSHOTS / name
    update = os.environ.get("UPDATE_SNAPSHOTS") == "1"
    if update and (not path.exists() or path.read_text(encoding="utf-8") != actual):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 to write it, then review it", pytrace=False)
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot"


@pytest.mark.parametrize("template", ["welcome.html", "newsletter.html", "trial_ending.html"])
def test_starter_email_matches_its_snapshot(template: str) -> None:
    email = render_email(
        template, lead=LEAD, sender=SENDER, now=NOW, campaign=CAMPAIGN, message_id=880_001, urls=URLS, options=OPTIONS
    )
    stem = template.removesuffix(".html")
    assert_snapshot(f"{stem}.html", email.html)
    header = f"Subject: {email.subject}\nPreheader: {email.preheader}\n"
    links = "".join(f"[{index}] {url}\n" for index, url in enumerate(email.links))
    assert_snapshot(f"{stem}.txt", f"{header}\n{email.text}\n\nLinks:\n{links}")


# --- the emails of the starter campaigns (campaigns/), in English and in French ---------------------------------

FRENCH_LEAD = {
    **LEAD,
    "id": 1202,
    "email": "helene.lefevre@example.fr",
    "first_name": "Hélène",
    "last_name": "Lefèvre",
    "company": "Lefèvre & Fils",
    "locale": "fr_FR",
    "timezone": "Europe/Paris",
    "attributes": {"industry": "Logistique", "company_size": "51-200"},
}
ENGLISH_LEAD = {**LEAD, "attributes": {"industry": "Logistics", "company_size": "51-200"}}


def starter_emails() -> list[str]:
    """Every template a starter campaign sends (``send`` steps) or alerts with (``notify`` steps)."""
    names: set[str] = set()
    for path in sorted(STARTER_CAMPAIGNS.glob("*.yaml")):
        checked = check_file(path)
        assert checked.definition is not None, checked.issues
        for step in checked.definition.steps:
            if isinstance(step, SendStep):
                names.update(message.template for message in step.messages())
            elif isinstance(step, NotifyStep) and step.template:
                names.add(step.template)
    return sorted(names)


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("template", starter_emails())
def test_starter_campaign_email_matches_its_snapshot(template: str, language: str) -> None:
    lead = FRENCH_LEAD if language == "fr" else ENGLISH_LEAD
    name = default_renderer().loader.localized(f"{template}.html", lead["locale"])
    if language == "fr" and not name.endswith(".fr.html"):
        # Internal alerts go to the owner, in the instance's language, whatever the lead speaks.
        assert template.endswith("owner-alert"), f"{template} has no French variant"
    campaign = {"name": "Starter campaign", "slug": template.split("/")[0]}
    email = render_email(
        name, lead=lead, sender=SENDER, now=NOW, campaign=campaign, message_id=880_002, urls=URLS, options=OPTIONS
    )
    stem = f"{template}.{language}"
    assert_snapshot(f"{stem}.html", email.html)
    header = f"Subject: {email.subject}\nPreheader: {email.preheader}\n"
    links = "".join(f"[{index}] {url}\n" for index, url in enumerate(email.links))
    assert_snapshot(f"{stem}.txt", f"{header}\n{email.text}\n\nLinks:\n{links}")
    assert lead["first_name"] in email.subject + email.text, "every starter email speaks to the lead by name"
    assert ("Se désabonner" in email.text) is name.endswith(".fr.html")
