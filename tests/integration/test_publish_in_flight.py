"""Publishing a draft while leads are in flight: the plan says who moves where, and after the publish each
lead on a removed step is moved exactly once and no step runs twice for anyone. Then the version pages:
history, diff, restore, publish through the web (roles, CSRF, stale drafts)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.auth.models import Role
from nurture.campaigns import editing
from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.drafts import find_draft, open_draft, save_draft
from nurture.campaigns.store import get_campaign, save_campaign
from nurture.campaigns.versions import list_versions
from nurture.delivery.models import Message
from nurture.engine.models import EnrollmentState, StepRun
from nurture.engine.publishing import plan_publish, publish_draft
from nurture.errors import ValidationError
from tests.acceptance.engine_support import (
    advance,
    advance_due,
    always_exists,
    engine_settings,
    enrol,
    enrollment,
    load_campaign,
    make_context,
    make_lead,
)
from tests.integration.test_web_leads import client_as

CAMPAIGN = """slug: win-back
name: Win back
entry:
  - on_event: go
steps:
  - id: hello
    type: send
    template: welcome
    subject: Hello
  - id: pause
    type: wait
    for: 3d
  - id: whats-new
    type: send
    template: welcome
    subject: What is new
  - id: breather
    type: wait
    for: 2d
  - id: last-chance
    type: send
    template: welcome
    subject: Last chance
"""


@pytest.fixture
def ctx(nurture_settings, tmp_path):
    return make_context(engine_settings(nurture_settings, tmp_path / "outbox"))


@pytest.fixture
def in_flight(session, clock, ctx):
    """Five leads waiting on `pause` after the first email, and one already past it, waiting on `breather`."""
    campaign = load_campaign(session, clock, CAMPAIGN)
    waiting = []
    for number in range(5):
        lead = make_lead(session, clock, f"lead{number}@example.com")
        enrollment_id = enrol(session, clock, ctx, campaign, lead)
        advance(session, clock, ctx, enrollment_id)
        waiting.append(enrollment_id)
    ahead_lead = make_lead(session, clock, "ahead@example.com")
    ahead = enrol(session, clock, ctx, campaign, ahead_lead)
    advance(session, clock, ctx, ahead)
    clock.advance(timedelta(days=3))
    advance(session, clock, ctx, ahead)
    assert enrollment(session, ahead).step_id == "breather"
    clock.advance(timedelta(hours=1))
    return campaign, waiting, ahead


def draft_without(session, clock, campaign, step_id):
    draft = open_draft(session, clock, campaign, "ann@example.com")
    return save_draft(
        session, clock, campaign, editing.delete_step(draft.definition, step_id), revision=0, author="ann@example.com"
    )


def test_leads_on_a_removed_step_move_once_and_no_step_runs_twice(session, clock, ctx, in_flight):
    campaign, waiting, ahead = in_flight
    draft = draft_without(session, clock, campaign, "pause")
    plan = plan_publish(session, campaign, draft, template_exists=always_exists)
    assert plan.can_publish
    moved = [c for c in plan.consequences if "`pause`" in c.text]
    assert [(c.text, c.leads) for c in moved] == [
        ("5 leads wait on `pause`, which you removed; they move to `whats-new`.", 5)
    ]
    publish_draft(
        session, clock, campaign, revision=draft.revision, author="ann@example.com", template_exists=always_exists
    )
    assert find_draft(session, campaign) is None and campaign.version == 2

    for _ in range(8):
        clock.advance(timedelta(days=1))
        advance_due(session, clock, ctx)

    everyone = [*waiting, ahead]
    runs = session.execute(
        select(StepRun.enrollment_id, StepRun.step_id, StepRun.outcome).where(StepRun.enrollment_id.in_(everyone))
    ).all()
    # The removal is recorded as a "moved" run on the removed step; every other run is a step executed.
    executed = Counter((enrollment_id, step_id) for enrollment_id, step_id, outcome in runs if outcome != "moved")
    assert all(count == 1 for count in executed.values()), executed
    moves = Counter(enrollment_id for enrollment_id, _step, outcome in runs if outcome == "moved")
    assert moves == dict.fromkeys(waiting, 1)
    for enrollment_id in everyone:
        assert enrollment(session, enrollment_id).state is EnrollmentState.COMPLETED
    keys = session.scalars(select(Message.idempotency_key)).all()
    assert len(keys) == len(set(keys)) == 3 * len(everyone)
    subjects = Counter(session.scalars(select(Message.subject)).all())
    assert subjects == {"Hello": 6, "What is new": 6, "Last chance": 6}


def test_the_plan_names_changed_waits_new_steps_and_entry(session, clock, in_flight):
    campaign, _waiting, _ahead = in_flight
    draft = open_draft(session, clock, campaign, "ann@example.com")
    data = editing.insert_step(draft.definition, "exit", after="last-chance", step_id="done")
    data["steps"][3]["for"] = "4d"
    data["entry"].append({"on_stage": "lost"})
    draft = save_draft(session, clock, campaign, data, revision=0, author="ann@example.com")
    texts = [c.text for c in plan_publish(session, campaign, draft, template_exists=always_exists).consequences]
    assert any("`breather` changes: the 1 lead waiting on it keep the wake-up time" in text for text in texts)
    assert any("Step `done` is new" in text for text in texts)
    assert any("New entry on stage lost: it fires for what happens from the publish on." in text for text in texts)


def test_a_draft_started_before_another_publish_is_refused(session, clock, in_flight):
    campaign, _waiting, _ahead = in_flight
    draft = draft_without(session, clock, campaign, "pause")
    changed = dict(campaign.definition, name="Someone else's")
    save_campaign(session, clock, CampaignDefinition.from_data(changed), author="bob@example.com")
    plan = plan_publish(session, campaign, draft, template_exists=always_exists)
    assert plan.blocked and "bob@example.com" in plan.blocked and not plan.can_publish
    with pytest.raises(ValidationError):
        publish_draft(session, clock, campaign, revision=draft.revision, author="ann", template_exists=always_exists)


def test_history_diff_restore_and_publish_through_the_web(app, make_user, session, clock, in_flight):
    campaign, _waiting, _ahead = in_flight
    session.commit()
    marketer = client_as(app, make_user, Role.MARKETER)
    page = marketer.get("/campaigns/win-back/publish").get_data(as_text=True)
    assert "There is no draft" in page
    draft_without(session, clock, campaign, "pause")
    session.commit()
    page = marketer.get("/campaigns/win-back/publish").get_data(as_text=True)
    assert "5 leads wait on `pause`, which you removed; they move to `whats-new`." in page
    assert marketer.post("/campaigns/win-back/publish", data={"revision": "0"}).status_code == 409
    published = marketer.post("/campaigns/win-back/publish", data={"revision": "1"})
    assert published.status_code == 303
    session.expire_all()
    assert get_campaign(session, "win-back").version == 2
    versions = list_versions(session, campaign)
    assert [(v.version, v.created_by) for v in versions] == [(2, "marketer@example.com"), (1, "cli")]
    history = marketer.get("/campaigns/win-back/versions").get_data(as_text=True)
    assert "published from the editor" in history
    diff = marketer.get("/campaigns/win-back/versions/diff?from=1&to=2").get_data(as_text=True)
    assert "<del>−   - id: pause</del>" in diff
    assert marketer.get("/campaigns/win-back/versions/diff?from=9&to=2").status_code == 404
    assert marketer.get("/campaigns/win-back/versions/diff?from=x%00&to=2").status_code in (400, 404)
    restored = marketer.post("/campaigns/win-back/versions/1/restore", data={"revision": "0"})
    assert restored.status_code == 303
    assert find_draft(session, campaign).definition == versions[1].definition
    assert marketer.post("/campaigns/win-back/versions/7/restore", data={"revision": "1"}).status_code == 404
    viewer = client_as(app, make_user, Role.VIEWER)
    assert viewer.get("/campaigns/win-back/versions").status_code == 200
    assert "Restore into the draft" not in viewer.get("/campaigns/win-back/versions").get_data(as_text=True)
    assert viewer.post("/campaigns/win-back/publish", data={"revision": "1"}).status_code == 403
    assert viewer.post("/campaigns/win-back/versions/1/restore", data={"revision": "1"}).status_code == 403
