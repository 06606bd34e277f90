"""New campaigns from the web: blank (a placeholder version and an empty draft), copies of a starter or of
any campaign, YAML upload with the CLI's line-numbered errors, and download that loads back equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.auth.models import Role
from nurture.campaigns.drafts import find_draft
from nurture.campaigns.store import find_campaign, get_campaign
from nurture.campaigns.validation import check_file, check_text, templates_in
from nurture.config import Settings
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "nurture" / "email_templates"
STARTER = ROOT / "nurture" / "starter_campaigns" / "re-engage-lost.yaml"


@pytest.fixture
def nurture_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test", email_templates=TEMPLATES
    )


@pytest.fixture
def marketer(app, make_user):
    return client_as(app, make_user, Role.MARKETER)


def test_a_blank_campaign_is_a_placeholder_version_and_an_empty_draft(marketer, session):
    answer = marketer.post("/campaigns/new", data={"start": "blank", "name": "Win back 2027", "slug": ""})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/campaigns/win-back-2027/edit")
    campaign = get_campaign(session, "win-back-2027")
    assert campaign.status.value == "draft" and campaign.version == 1
    draft = find_draft(session, campaign)
    assert draft.definition == {"slug": "win-back-2027", "name": "Win back 2027", "entry": [], "steps": []}
    editor = marketer.get("/campaigns/win-back-2027/edit").get_data(as_text=True)
    assert "problems to fix before publishing" in editor


def test_a_copy_of_a_starter_downloads_as_the_starter_under_its_new_name(marketer, session):
    answer = marketer.post(
        "/campaigns/new", data={"start": "starter", "starter": "re-engage-lost", "name": "Lost deals", "slug": "lost"}
    )
    assert answer.status_code == 303
    downloaded = marketer.get("/campaigns/lost/export.yaml")
    assert downloaded.headers["Content-Disposition"] == 'attachment; filename="lost.yaml"'
    # Read as nurture reads campaign files (YAML 1.2 core: `yes` is a key, not a boolean).
    exported = check_text(downloaded.get_data(as_text=True), template_exists=lambda _name: True).definition.to_data()
    starter = check_file(STARTER, template_exists=templates_in(TEMPLATES)).definition.to_data()
    assert exported == {**starter, "slug": "lost", "name": "Lost deals"}


def test_a_copy_of_a_campaign_and_the_refusals(marketer, session):
    marketer.post(
        "/campaigns/new", data={"start": "starter", "starter": "re-engage-lost", "name": "Lost", "slug": "lost"}
    )
    copy = marketer.post("/campaigns/new", data={"start": "copy", "source": "lost", "name": "Lost 2", "slug": ""})
    assert copy.status_code == 303
    assert get_campaign(session, "lost-2").definition == {
        **get_campaign(session, "lost").definition,
        "slug": "lost-2",
        "name": "Lost 2",
    }
    taken = marketer.post("/campaigns/new", data={"start": "blank", "name": "Again", "slug": "lost"})
    assert taken.status_code == 400 and "already a campaign" in taken.get_data(as_text=True)
    bad = marketer.post("/campaigns/new", data={"start": "blank", "name": "X", "slug": "Not A Slug"})
    assert bad.status_code == 400 and 'id="error-slug">lower-case' in bad.get_data(as_text=True)
    nameless = marketer.post("/campaigns/new", data={"start": "blank", "name": " ", "slug": ""})
    assert nameless.status_code == 400
    nul = marketer.post("/campaigns/new", data={"start": "blank", "name": "a\x00b", "slug": ""})
    assert nul.status_code == 400
    unknown = marketer.post("/campaigns/new", data={"start": "copy", "source": "nope", "name": "Y", "slug": "y"})
    assert unknown.status_code == 400 and find_campaign(session, "y") is None
    assert marketer.post("/campaigns/new", data={"start": "teleport", "name": "Z"}).status_code == 400


def test_upload_creates_or_refuses_with_the_files_lines(marketer, session):
    text = STARTER.read_text().replace("slug: re-engage-lost", "slug: uploaded")
    answer = marketer.post(
        "/campaigns/upload", data={"file": (_bytes(text), "uploaded.yaml")}, content_type="multipart/form-data"
    )
    assert answer.status_code == 303
    assert (
        get_campaign(session, "uploaded").definition
        == check_text(text, template_exists=lambda _n: True).definition.to_data()
    )
    broken = text.replace("slug: uploaded", "slug: broken").replace("within: 7d", "within: soon")
    refused = marketer.post(
        "/campaigns/upload", data={"file": (_bytes(broken), "broken.yaml")}, content_type="multipart/form-data"
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "broken.yaml:" in html and "within" in html
    assert find_campaign(session, "broken") is None
    latin = marketer.post(
        "/campaigns/upload", data={"file": (_bytes("name: é", "latin-1"), "x.yaml")}, content_type="multipart/form-data"
    )
    assert latin.status_code == 400 and "not UTF-8" in latin.get_data(as_text=True)
    assert marketer.post("/campaigns/upload", data={}, content_type="multipart/form-data").status_code == 400


def test_viewers_and_sales_cannot_create_or_upload(app, make_user):
    for role in (Role.VIEWER, Role.SALES):
        client = client_as(app, make_user, role)
        assert client.get("/campaigns/new").status_code == 403
        assert client.post("/campaigns/new", data={"start": "blank", "name": "X"}).status_code == 403
        assert client.post("/campaigns/upload", data={}).status_code == 403
        assert "New campaign" not in client.get("/campaigns").get_data(as_text=True)


def _bytes(text: str, encoding: str = "utf-8"):
    import io

    return io.BytesIO(text.encode(encoding))
