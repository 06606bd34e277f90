"""The review page names a template that cannot be rendered for the sample lead, with its line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nurture.auth.models import Role
from nurture.campaigns.store import load_campaign_files
from nurture.config import Settings
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as

TEMPLATES = Path(__file__).resolve().parents[2] / "nurture" / "email_templates"
CAMPAIGN = """slug: broken
name: Broken
entry:
  - on_event: go
steps:
  - id: hello
    type: send
    template: broken
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    (folder / "broken.html").write_text(
        '{% extends "layouts/base.html" %}\n{% block subject %}Hi{% endblock %}\n'
        "{% block content %}<p>{{ lead.first_name.nope() }}</p>{% endblock %}\n"
    )
    return folder


@pytest.fixture
def nurture_settings(database_url: str, templates: Path) -> Settings:
    return Settings(
        database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test", email_templates=templates
    )


def test_a_template_that_fails_for_the_sample_lead_is_shown_with_its_line(app, make_user, session, clock, tmp_path):
    (tmp_path / "broken.yaml").write_text(CAMPAIGN)
    load_campaign_files(session, clock, [tmp_path / "broken.yaml"], template_exists=lambda _name: True)
    create_lead(session, clock, "ada@example.com", actor=Actor(ActorKind.SYSTEM, "test"), first_name="Ada")
    session.commit()
    page = client_as(app, make_user, Role.MARKETER).get("/campaigns/broken/review").get_data(as_text=True)
    assert "✗" in page and "broken.html, line 3" in page
    assert "Fix the problems above first." in page
