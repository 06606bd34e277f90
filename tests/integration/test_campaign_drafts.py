"""Drafts of the campaign editor: saved on a revision, refused over a newer one, undone step by step, and the
version history that save_campaign writes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.drafts import (
    UNDO_DEPTH,
    DraftConflict,
    discard_draft,
    find_draft,
    open_draft,
    save_draft,
    undo_draft,
)
from nurture.campaigns.models import CampaignVersion
from nurture.campaigns.store import load_campaign_files, save_campaign
from nurture.campaigns.validation import templates_in

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "campaigns"
TEMPLATES = templates_in(FIXTURES / "email_templates")


@pytest.fixture
def campaign(session, clock):
    report = load_campaign_files(session, clock, [FIXTURES / "valid" / "minimal.yaml"], template_exists=TEMPLATES)
    return report.saved[0].campaign


def renamed(data, name):
    return {**data, "name": name}


def test_a_draft_starts_from_the_current_definition_and_leaves_it_alone(session, clock, campaign):
    published = dict(campaign.definition)
    draft = open_draft(session, clock, campaign, "ann@example.com")
    assert (draft.definition, draft.base_version, draft.revision) == (published, campaign.version, 0)
    save_draft(session, clock, campaign, renamed(draft.definition, "New name"), revision=0, author="ann@example.com")
    assert draft.revision == 1 and draft.definition["name"] == "New name"
    assert campaign.definition == published


def test_a_save_on_an_older_revision_is_refused_naming_who_saved(session, clock, campaign):
    draft = open_draft(session, clock, campaign, "ann@example.com")
    save_draft(session, clock, campaign, renamed(draft.definition, "Ann's"), revision=0, author="ann@example.com")
    with pytest.raises(DraftConflict, match=r"ann@example\.com") as refused:
        save_draft(session, clock, campaign, renamed(draft.definition, "Bob's"), revision=0, author="bob@example.com")
    assert refused.value.draft.definition["name"] == "Ann's"
    assert find_draft(session, campaign).revision == 1


def test_a_save_that_changes_nothing_keeps_the_revision(session, clock, campaign):
    draft = open_draft(session, clock, campaign, "ann@example.com")
    save_draft(session, clock, campaign, dict(draft.definition), revision=0, author="ann@example.com")
    assert draft.revision == 0 and draft.history == []


def test_undo_walks_back_through_the_saves(session, clock, campaign):
    draft = open_draft(session, clock, campaign, "ann@example.com")
    original = dict(draft.definition)
    for revision, name in enumerate(["one", "two", "three"]):
        clock.advance(timedelta(seconds=1))
        save_draft(session, clock, campaign, renamed(original, name), revision=revision, author="ann@example.com")
    undo_draft(session, clock, campaign, revision=3, author="ann@example.com")
    assert draft.definition["name"] == "two"
    undo_draft(session, clock, campaign, revision=4, author="ann@example.com")
    undo_draft(session, clock, campaign, revision=5, author="ann@example.com")
    assert draft.definition == original
    undo_draft(session, clock, campaign, revision=6, author="ann@example.com")
    assert draft.revision == 6


def test_undo_keeps_a_bounded_history(session, clock, campaign):
    draft = open_draft(session, clock, campaign, "ann@example.com")
    for revision in range(UNDO_DEPTH + 10):
        save_draft(session, clock, campaign, renamed(draft.definition, f"n{revision}"), revision=revision, author="a")
    assert len(draft.history) == UNDO_DEPTH


def test_discarding_drops_the_draft(session, clock, campaign):
    open_draft(session, clock, campaign, "ann@example.com")
    discard_draft(session, campaign)
    assert find_draft(session, campaign) is None


def test_every_saved_definition_is_a_version(session, clock, campaign):
    changed = campaign.parsed.to_data()
    changed["name"] = "Changed"

    save_campaign(session, clock, CampaignDefinition.from_data(changed), author="ann@example.com", note="renamed")
    versions = session.scalars(
        select(CampaignVersion).where(CampaignVersion.campaign_id == campaign.id).order_by(CampaignVersion.version)
    ).all()
    assert [(v.version, v.created_by, v.note) for v in versions] == [(1, "cli", ""), (2, "ann@example.com", "renamed")]
    assert versions[1].definition == campaign.definition
