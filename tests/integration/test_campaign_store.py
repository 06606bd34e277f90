"""Campaigns in the database: all-or-nothing loading, versions, export round trips, status changes."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from sqlalchemy import func, select

from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.store import (
    SaveOutcome,
    activate_campaign,
    archive_campaign,
    check_campaign_files,
    export_campaign,
    find_campaign,
    get_campaign,
    list_campaigns,
    load_campaign_files,
    pause_campaign,
    save_campaign,
)
from nurture.campaigns.validation import EMAIL_TEMPLATES_DIR, CampaignInvalid, check_text, templates_in
from nurture.errors import NotFound, ValidationError
from nurture.rendering.sources import FileTemplateSource
from nurture.rendering.stored import save_template
from nurture.segments.builtin import ensure_builtin_segments
from tests.unit.test_campaign_definition_roundtrip import campaign_definitions

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "campaigns"
VALID = FIXTURES / "valid"
TEMPLATES = templates_in(FIXTURES / "email_templates")


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    """A writable copy of the valid fixture campaigns."""
    target = tmp_path / "campaigns"
    shutil.copytree(VALID, target)
    return target


@pytest.fixture
def with_segments(session, clock):
    ensure_builtin_segments(session, clock)
    session.flush()


def load(session, clock, *paths: Path):
    return load_campaign_files(session, clock, list(paths), template_exists=TEMPLATES)


def campaign_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Campaign))


def test_loading_a_directory_creates_draft_campaigns(session, clock, campaigns_dir, with_segments):
    report = load(session, clock, campaigns_dir)
    assert [(saved.campaign.slug, saved.outcome) for saved in report.saved] == [
        ("minimal", SaveOutcome.CREATED),
        ("trial-onboarding", SaveOutcome.CREATED),
    ]
    assert report.warnings == ()
    trial = get_campaign(session, "trial-onboarding")
    assert (trial.name, trial.status, trial.version, trial.step_count) == (
        "Trial onboarding",
        CampaignStatus.DRAFT,
        1,
        16,
    )
    assert trial.created_at == trial.updated_at == clock.now()
    assert trial.activated_at is None
    assert trial.description.startswith("Welcome new trial users")


def test_the_stored_definition_is_the_normalised_one(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir / "trial-onboarding.yaml")
    session.expire_all()
    stored = get_campaign(session, "trial-onboarding")
    parsed = check_text((campaigns_dir / "trial-onboarding.yaml").read_text(), template_exists=TEMPLATES).definition
    assert parsed is not None
    assert stored.definition == parsed.to_data()
    assert stored.parsed == parsed


def test_reloading_unchanged_files_changes_nothing(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    clock.advance(timedelta(hours=1))
    report = load(session, clock, campaigns_dir)
    assert {saved.outcome for saved in report.saved} == {SaveOutcome.UNCHANGED}
    trial = get_campaign(session, "trial-onboarding")
    assert trial.version == 1
    assert trial.updated_at == trial.created_at


def test_a_changed_file_updates_the_campaign_and_bumps_its_version(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    path = campaigns_dir / "trial-onboarding.yaml"
    text = path.read_text()
    # Drop the "again" goto at the end and rename the campaign.
    path.write_text(text.replace("name: Trial onboarding", "name: Trial onboarding v2").split("  - id: again")[0])
    clock.advance(timedelta(days=1))
    report = load(session, clock, path)
    (saved,) = report.saved
    assert (saved.outcome, saved.previous_version, saved.removed_steps) == (SaveOutcome.UPDATED, 1, ("again",))
    trial = saved.campaign
    assert (trial.name, trial.version, trial.step_count) == ("Trial onboarding v2", 2, 15)
    assert trial.updated_at == clock.now() != trial.created_at
    # A second change bumps again.
    path.write_text(path.read_text().replace("v2", "v3"))
    assert load(session, clock, path).saved[0].campaign.version == 3


def test_a_bad_file_among_several_loads_nothing(session, clock, campaigns_dir, with_segments):
    shutil.copy(FIXTURES / "bad" / "missing-targets.yaml", campaigns_dir / "zz-bad.yaml")
    with pytest.raises(CampaignInvalid) as raised:
        load(session, clock, campaigns_dir)
    assert [str(issue) for issue in raised.value.issues if issue.is_error] == [
        f"{campaigns_dir / 'zz-bad.yaml'}:13:11: error: steps[1].step: no step has id 'helo'; did you mean 'hello'?",
        f"{campaigns_dir / 'zz-bad.yaml'}:15:9: error: steps[1].no: no step has id 'follow-up'; did you mean "
        "'followup'?",
        f"{campaigns_dir / 'zz-bad.yaml'}:19:10: error: steps[2].yes: no step has id 'nowhere'",
        f"{campaigns_dir / 'zz-bad.yaml'}:22:9: error: steps[3].to: no step has id 'the-end'",
    ]
    assert campaign_count(session) == 0


def test_a_bad_update_leaves_the_stored_campaign_alone(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    path = campaigns_dir / "minimal.yaml"
    path.write_text(path.read_text().replace("type: send", "type: sned"))
    with pytest.raises(CampaignInvalid):
        load(session, clock, campaigns_dir)
    minimal = get_campaign(session, "minimal")
    assert (minimal.version, minimal.definition["steps"][0]["type"]) == (1, "send")


def test_two_files_with_one_slug_load_nothing(session, clock, campaigns_dir, with_segments):
    shutil.copy(campaigns_dir / "minimal.yaml", campaigns_dir / "minimal-copy.yaml")
    with pytest.raises(CampaignInvalid) as raised:
        load(session, clock, campaigns_dir)
    assert [str(issue) for issue in raised.value.issues] == [
        f"{campaigns_dir / 'minimal.yaml'}:1:7: error: slug: slug 'minimal' is also the slug of "
        f"{campaigns_dir / 'minimal-copy.yaml'}",
    ]
    assert campaign_count(session) == 0


def test_segments_are_checked_in_the_database(session, clock, campaigns_dir):
    # No built-in segments here: the "active" segment the example enters from does not exist.
    with pytest.raises(CampaignInvalid) as raised:
        load(session, clock, campaigns_dir)
    assert [str(issue) for issue in raised.value.issues] == [
        f"{campaigns_dir / 'trial-onboarding.yaml'}:10:14: error: entry[0].segment: no segment 'active'"
    ]


def test_checking_without_a_session_only_warns_about_segments(campaigns_dir):
    checked = check_campaign_files(None, [campaigns_dir], template_exists=TEMPLATES)
    assert [str(issue) for result in checked for issue in result.issues] == [
        f"{campaigns_dir / 'trial-onboarding.yaml'}:10:14: warning: entry[0].segment: segment 'active' not "
        "checked: no database"
    ]


def test_export_loads_back_to_the_same_campaign(session, clock, campaigns_dir, with_segments, tmp_path):
    load(session, clock, campaigns_dir)
    for campaign in list_campaigns(session):
        exported = export_campaign(campaign)
        assert exported.startswith(f"# Campaign {campaign.slug}, version 1 (draft), exported by nurture.\n")
        path = tmp_path / f"{campaign.slug}.yaml"
        path.write_text(exported)
        (saved,) = load(session, clock, path).saved
        assert saved.outcome is SaveOutcome.UNCHANGED
        assert check_text(exported, template_exists=TEMPLATES).definition == campaign.parsed


@settings(max_examples=15)
@given(definition=campaign_definitions())
def test_any_campaign_survives_save_and_export(session, clock, definition: CampaignDefinition):
    savepoint = session.begin_nested()
    try:
        campaign = save_campaign(session, clock, definition).campaign
        session.expire_all()
        stored = get_campaign(session, campaign.slug)
        assert stored.parsed == definition
        assert check_text(export_campaign(stored), template_exists=lambda name: True).definition == definition
    finally:
        savepoint.rollback()


def test_list_campaigns_by_slug_and_status(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    activate_campaign(session, clock, "minimal", template_exists=TEMPLATES)
    assert [campaign.slug for campaign in list_campaigns(session)] == ["minimal", "trial-onboarding"]
    assert [campaign.slug for campaign in list_campaigns(session, CampaignStatus.ACTIVE)] == ["minimal"]


def test_get_campaign_names_the_missing_slug(session):
    assert find_campaign(session, "nope") is None
    with pytest.raises(NotFound, match="no campaign with slug 'nope'"):
        get_campaign(session, "nope")


def test_status_changes_are_timed_and_do_not_bump_the_version(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    clock.advance(timedelta(hours=1))
    assert activate_campaign(session, clock, "trial-onboarding", template_exists=TEMPLATES) is True
    trial = get_campaign(session, "trial-onboarding")
    assert (trial.status, trial.activated_at, trial.version) == (CampaignStatus.ACTIVE, clock.now(), 1)
    assert activate_campaign(session, clock, "trial-onboarding", template_exists=TEMPLATES) is False

    clock.advance(timedelta(hours=1))
    assert pause_campaign(session, clock, "trial-onboarding") is True
    assert (trial.status, trial.paused_at) == (CampaignStatus.PAUSED, clock.now())
    assert pause_campaign(session, clock, "trial-onboarding") is False

    clock.advance(timedelta(hours=1))
    assert activate_campaign(session, clock, "trial-onboarding", template_exists=TEMPLATES) is True
    assert (trial.status, trial.activated_at) == (CampaignStatus.ACTIVE, clock.now())

    clock.advance(timedelta(hours=1))
    assert archive_campaign(session, clock, "trial-onboarding") is True
    assert (trial.status, trial.archived_at, trial.updated_at) == (CampaignStatus.ARCHIVED, clock.now(), clock.now())
    assert archive_campaign(session, clock, "trial-onboarding") is False
    assert trial.version == 1


def test_refused_status_changes(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    with pytest.raises(ValidationError, match="campaign 'minimal' is draft: only an active campaign pauses"):
        pause_campaign(session, clock, "minimal")
    archive_campaign(session, clock, "minimal")
    with pytest.raises(ValidationError, match="archived campaigns stay retired"):
        activate_campaign(session, clock, "minimal", template_exists=TEMPLATES)
    with pytest.raises(NotFound):
        archive_campaign(session, clock, "nope")


def test_activation_checks_the_definition_again(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    # The template was deleted after the campaign was loaded.
    with pytest.raises(CampaignInvalid) as raised:
        activate_campaign(session, clock, "minimal", template_exists=lambda name: not name.startswith("welcome"))
    assert [str(issue) for issue in raised.value.issues] == [
        "campaign minimal: error: steps[0].template: no email template 'welcome'"
    ]
    assert get_campaign(session, "minimal").status is CampaignStatus.DRAFT


def test_an_archived_campaign_cannot_change(session, clock, campaigns_dir, with_segments):
    load(session, clock, campaigns_dir)
    archive_campaign(session, clock, "minimal")
    # Loading the same file again is fine: nothing would change.
    assert load(session, clock, campaigns_dir / "minimal.yaml").saved[0].outcome is SaveOutcome.UNCHANGED
    path = campaigns_dir / "minimal.yaml"
    path.write_text(path.read_text().replace("subject: Hello", "subject: Hello again"))
    with pytest.raises(ValidationError, match="campaign 'minimal' is archived and cannot change"):
        load(session, clock, path)


def test_a_template_saved_in_the_database_counts_as_existing(session, clock, campaigns_dir, with_segments, tmp_path):
    no_files = templates_in(tmp_path / "no-templates")
    with pytest.raises(CampaignInvalid, match="no email template 'welcome'"):
        load_campaign_files(session, clock, [campaigns_dir / "minimal.yaml"], template_exists=no_files)

    files = FileTemplateSource(EMAIL_TEMPLATES_DIR)
    email = '{% extends "layouts/base.html" %}{% block subject %}Hi{% endblock %}{% block content %}Hi{% endblock %}'
    save_template(session, clock, "welcome.html", email, created_by="ada@example.com", files=files)

    load_campaign_files(session, clock, [campaigns_dir / "minimal.yaml"], template_exists=no_files)
    activate_campaign(session, clock, "minimal", template_exists=no_files)
    assert get_campaign(session, "minimal").status is CampaignStatus.ACTIVE
