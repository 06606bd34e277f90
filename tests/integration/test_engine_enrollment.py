"""Enrollment from every entry trigger, the re-entry policy, cursors that read each event once (late
commits included), and campaign control: pause and resume, edits, archive (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from nurture.campaigns.store import activate_campaign, archive_campaign, pause_campaign, save_campaign
from nurture.campaigns.validation import check_text
from nurture.delivery.models import Message
from nurture.engine.enrollment import enrol_new_matches, enrollment_counts
from nurture.engine.goals import end_archived_campaigns
from nurture.engine.journal import ENTERED
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Activity, ActorKind
from nurture.leads.service import Actor, change_stage, record_activity
from nurture.segments.models import Segment
from nurture.segments.service import create_segment
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
    runs,
)

SEND_AND_WAIT = """steps:
  - id: hello
    type: send
    template: welcome
    subject: Hi
  - id: pause
    type: wait
    for: 2d
  - id: bye
    type: send
    template: tips
    subject: Bye
"""


@pytest.fixture
def ctx(nurture_settings, tmp_path):
    return make_context(engine_settings(nurture_settings, tmp_path / "outbox"))


def campaign(entry: str, extra: str = "", steps: str = SEND_AND_WAIT) -> str:
    return f"slug: test\nname: Test\nentry:\n{entry}{extra}{steps}"


def enrolled(session, campaign_id=None):
    query = select(Enrollment.lead_id).order_by(Enrollment.lead_id)
    if campaign_id is not None:
        query = query.where(Enrollment.campaign_id == campaign_id)
    return list(session.scalars(query))


def test_segment_entry_enrols_matching_active_leads_in_one_statement(session, clock, ctx):
    create_segment(session, clock, "french", "French", {"all": [{"field": "country", "op": "=", "value": "France"}]})
    french = [make_lead(session, clock, f"fr{n}@example.com", country="France") for n in range(3)]
    make_lead(session, clock, "de@example.com", country="Germany")
    french[2].status = LeadStatus.UNSUBSCRIBED
    stored = load_campaign(session, clock, campaign("  - segment: french\n"))
    report = enrol_new_matches(session, clock, ctx)
    assert report.by_campaign == {"test": 2}
    assert enrolled(session) == [french[0].id, french[1].id]
    assert enrol_new_matches(session, clock, ctx).total == 0, "already enrolled"
    entered = session.scalars(select(Activity.lead_id).where(Activity.kind == ENTERED)).all()
    assert sorted(entered) == [french[0].id, french[1].id]
    assert enrollment_counts(session, [stored.id]) == {stored.id: {"active": 2}}


def test_rules_entry_and_a_limit_per_pass(session, clock, ctx):
    for n in range(5):
        make_lead(session, clock, f"w{n}@example.com", source="webinar")
    load_campaign(session, clock, campaign('  - rules: {all: [{field: source, op: "=", value: webinar}]}\n'))
    assert enrol_new_matches(session, clock, ctx, limit=2).total == 2
    assert enrol_new_matches(session, clock, ctx, limit=2).total == 2
    assert enrol_new_matches(session, clock, ctx, limit=2).total == 1
    assert enrol_new_matches(session, clock, ctx, limit=2).total == 0


def test_a_missing_segment_is_reported_and_other_campaigns_go_on(session, clock, ctx):
    make_lead(session, clock, "a@example.com", source="x")
    create_segment(session, clock, "french", "French", {"all": [{"field": "country", "op": "=", "value": "France"}]})
    load_campaign(session, clock, campaign("  - segment: french\n").replace("slug: test", "slug: broken"))
    load_campaign(session, clock, campaign('  - rules: {all: [{field: source, op: "=", value: x}]}\n'))
    session.execute(delete(Segment).where(Segment.slug == "french"))
    report = enrol_new_matches(session, clock, ctx)
    assert report.by_campaign == {"test": 1}
    assert report.problems == ["campaign broken: segment 'french' does not exist"]


def test_on_event_enrols_each_event_once_from_activation_on(session, clock, ctx):
    early = make_lead(session, clock, "early@example.com")
    record_activity(session, early, "trial_started", clock.now() - timedelta(hours=1))
    stored = load_campaign(session, clock, campaign("  - on_event: trial_started\n"))
    late = make_lead(session, clock, "late@example.com")
    record_activity(session, late, "trial_started", clock.now())
    record_activity(session, late, "trial_started", clock.now())  # twice: one live enrollment only
    record_activity(session, late, "other_event", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert enrolled(session) == [late.id]
    row = session.scalar(select(Enrollment))
    assert row.source == "event" and row.source_id is not None
    assert enrol_new_matches(session, clock, ctx).total == 0
    # A later event of a lead that has finished does not bring it back (re-entry: never).
    advance(session, clock, ctx, row.id)
    row.state = EnrollmentState.COMPLETED
    session.flush()
    record_activity(session, late, "trial_started", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 0
    assert enrollment_counts(session, [stored.id])[stored.id] == {"completed": 1}


def test_an_event_committed_late_behind_the_cursor_still_enrols_once(session, clock, ctx):
    load_campaign(session, clock, campaign("  - on_event: signed_up\n"))
    first = make_lead(session, clock, "first@example.com")
    second = make_lead(session, clock, "second@example.com")
    placeholder = record_activity(session, first, "placeholder", clock.now())
    session.flush()
    reserved_id = placeholder.id
    session.delete(placeholder)
    record_activity(session, first, "signed_up", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    # A transaction that took an earlier id commits only now, behind the cursor.
    session.add(Activity(id=reserved_id, lead_id=second.id, kind="signed_up", occurred_at=clock.now()))
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert enrolled(session) == sorted([first.id, second.id])
    assert enrol_new_matches(session, clock, ctx).total == 0


def test_reentry_after_a_duration(session, clock, ctx):
    load_campaign(session, clock, campaign("  - on_event: visit\n", extra="reentry: {after: 7d}\n"))
    lead = make_lead(session, clock, "back@example.com")
    record_activity(session, lead, "visit", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    session.execute(Enrollment.__table__.update().values(state=EnrollmentState.COMPLETED.value, next_run_at=None))
    clock.advance(timedelta(days=6))
    record_activity(session, lead, "visit", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 0, "within 7 days of entering"
    clock.advance(timedelta(days=2))
    record_activity(session, lead, "visit", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert session.scalar(select(func.count()).select_from(Enrollment)) == 2


def test_on_stage_and_on_import_triggers(session, clock, ctx):
    load_campaign(session, clock, campaign("  - on_stage: mql\n  - on_import: {tag: webinar-2026}\n"))
    moved = make_lead(session, clock, "moved@example.com")
    imported = make_lead(session, clock, "imported@example.com", tags=["webinar-2026"])
    untagged = make_lead(session, clock, "untagged@example.com")
    change_stage(session, clock, moved, Stage.MQL, reason="scored", actor=Actor(ActorKind.RULE))
    change_stage(session, clock, untagged, Stage.LEAD, reason="scored", actor=Actor(ActorKind.RULE))
    for lead in (imported, untagged):
        record_activity(session, lead, "imported", clock.now(), {"file": "list.csv", "line": 2})
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 2
    sources = dict(session.execute(select(Enrollment.lead_id, Enrollment.source)).all())
    assert sources == {moved.id: "stage", imported.id: "import"}


# --- campaign control -----------------------------------------------------------------------------------------


def test_pause_stops_everything_and_resume_runs_the_overdue_steps(session, clock, ctx):
    stored = load_campaign(session, clock, campaign("  - on_event: go\n"))
    lead = make_lead(session, clock, "p@example.com")
    enrollment_id = enrol(session, clock, ctx, stored, lead)
    advance(session, clock, ctx, enrollment_id)
    pause_campaign(session, clock, "test")
    clock.advance(timedelta(days=5))
    record_activity(session, make_lead(session, clock, "new@example.com"), "go", clock.now())
    session.flush()
    assert advance_due(session, clock, ctx).enrollments == 0, "a paused campaign's leads are not claimed"
    assert enrol_new_matches(session, clock, ctx).total == 0, "nor does it enrol"
    activate_campaign(session, clock, "test", template_exists=always_exists)
    assert enrol_new_matches(session, clock, ctx).total == 1, "events during the pause enrol on resume"
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id) == [("hello", "queued"), ("pause", "waiting"), ("bye", "queued")]


def _edit(session, clock, text):
    checked = check_text(text, template_exists=always_exists, session=session)
    assert checked.definition is not None, checked.issues
    return save_campaign(session, clock, checked.definition)


def test_an_edit_applies_to_leads_not_yet_past_it_and_done_steps_are_not_rerun(session, clock, ctx):
    stored = load_campaign(session, clock, campaign("  - on_event: go\n"))
    lead = make_lead(session, clock, "e@example.com")
    enrollment_id = enrol(session, clock, ctx, stored, lead)
    advance(session, clock, ctx, enrollment_id)
    edited = SEND_AND_WAIT.replace("subject: Bye", "subject: Goodbye").replace(
        "steps:\n", "steps:\n  - id: intro\n    type: send\n    template: tips\n    subject: Intro\n")
    assert _edit(session, clock, campaign("  - on_event: go\n", steps=edited)).campaign.version == 2
    clock.advance(timedelta(days=2))
    advance_due(session, clock, ctx)
    subjects = session.scalars(select(Message.subject).order_by(Message.id)).all()
    assert subjects == ["Hi", "Goodbye"], "the new first step is not run for a lead past it; the edit applies"


def test_a_removed_current_step_hands_the_lead_to_the_next_surviving_step(session, clock, ctx):
    stored = load_campaign(session, clock, campaign("  - on_event: go\n"))
    lead = make_lead(session, clock, "r@example.com")
    enrollment_id = enrol(session, clock, ctx, stored, lead)
    advance(session, clock, ctx, enrollment_id)
    assert enrollment(session, enrollment_id).step_id == "pause"
    without_pause = SEND_AND_WAIT.replace("  - id: pause\n    type: wait\n    for: 2d\n", "")
    saved = _edit(session, clock, campaign("  - on_event: go\n", steps=without_pause))
    assert saved.removed_steps == ("pause",)
    clock.advance(timedelta(days=2))
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id) == [("hello", "queued"), ("pause", "waiting"), ("pause", "moved"),
                                            ("bye", "queued")]
    assert enrollment(session, enrollment_id).state is EnrollmentState.COMPLETED


def test_a_removed_last_step_completes_the_enrollment(session, clock, ctx):
    steps = SEND_AND_WAIT.replace("  - id: bye\n    type: send\n    template: tips\n    subject: Bye\n", "")
    stored = load_campaign(session, clock, campaign("  - on_event: go\n", steps=steps))
    lead = make_lead(session, clock, "l@example.com")
    enrollment_id = enrol(session, clock, ctx, stored, lead)
    advance(session, clock, ctx, enrollment_id)
    only_hello = steps.replace("  - id: pause\n    type: wait\n    for: 2d\n", "")
    _edit(session, clock, campaign("  - on_event: go\n", steps=only_hello))
    clock.advance(timedelta(days=2))
    advance_due(session, clock, ctx)
    row = enrollment(session, enrollment_id)
    assert row.state is EnrollmentState.COMPLETED
    assert row.exit_reason == "step 'pause' was removed; no later step remains"


def test_archiving_ends_live_enrollments(session, clock, ctx):
    stored = load_campaign(session, clock, campaign("  - on_event: go\n"))
    ids = [enrol(session, clock, ctx, stored, make_lead(session, clock, f"a{n}@example.com")) for n in range(3)]
    advance(session, clock, ctx, ids[0])
    archive_campaign(session, clock, "test")
    assert end_archived_campaigns(session, clock.now(), ctx) == 3
    assert {enrollment(session, e).exit_reason for e in ids} == {"campaign archived"}
    assert end_archived_campaigns(session, clock.now(), ctx) == 0
