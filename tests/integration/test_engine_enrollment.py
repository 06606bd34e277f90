"""Enrollment from every entry trigger, the re-entry policy, cursors that read each event once (late
commits included), triggers that fire only while they listen (not before the activation, not during a
pause, not before the edit that added them), and campaign control: pause and resume, edits, archive
(SQLite and PostgreSQL)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from nurture.campaigns.store import (
    activate_campaign,
    archive_campaign,
    load_campaign_files,
    pause_campaign,
    save_campaign,
)
from nurture.campaigns.validation import check_text
from nurture.cli import cli
from nurture.config import Settings
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.models import Message
from nurture.engine.enrollment import enrol_new_matches, enrollment_counts
from nurture.engine.goals import end_archived_campaigns
from nurture.engine.journal import ENTERED
from nurture.engine.models import EngineCursor, Enrollment, EnrollmentState
from nurture.engine.tick import run_tick
from nurture.leads.importer import ImportOptions, import_leads
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Activity, ActorKind, Lead
from nurture.leads.service import Actor, change_stage, find_lead, record_activity
from nurture.segments.models import Segment
from nurture.segments.service import create_segment
from tests.acceptance.engine_support import (
    TEMPLATES,
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
from tests.conftest import TEST_SECRET

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
def nurture_settings(database_url: str, tmp_path: Path) -> Settings:
    """The app's settings with delivery configured, so that `nurture tick` sends into tmp_path's outbox."""
    base = Settings(database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test")
    return engine_settings(base, tmp_path / "outbox")


@pytest.fixture
def ctx(nurture_settings, tmp_path):
    return make_context(engine_settings(nurture_settings, tmp_path / "outbox"))


def campaign(entry: str, extra: str = "", steps: str = SEND_AND_WAIT) -> str:
    return f"slug: test\nname: Test\nentry:\n{entry}{extra}{steps}"


def import_csv(session, clock, name: str, *emails: str, tag: str = "webinar") -> None:
    """Import a CSV of ``emails`` through the importer, tagging every lead with ``tag``."""
    body = "email\n" + "".join(f"{email}\n" for email in emails)
    import_leads(session, clock, io.BytesIO(body.encode()), ImportOptions(tags=(tag,), file_name=name))


def enrolled_emails(session) -> list[str]:
    session.expire_all()
    emails = select(Lead.email).join(Enrollment, Enrollment.lead_id == Lead.id).order_by(Lead.email)
    return list(session.scalars(emails))


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


# --- triggers fire only while they listen (issue 9, item 12) ----------------------------------------------------

WEBINAR = campaign("  - on_import: {tag: webinar}\n")
MINUTE = timedelta(minutes=1)


def test_a_lead_imported_before_activation_never_enters_an_on_import_campaign(
    session, session_factory, clock, ctx, tmp_path
):
    import_csv(session, clock, "early.csv", "early@example.com")
    session.commit()
    clock.advance(MINUTE)
    path = tmp_path / "webinar.yaml"
    path.write_text(WEBINAR)
    load_campaign_files(session, clock, [path], template_exists=always_exists)
    activate_campaign(session, clock, "test", template_exists=always_exists)
    session.commit()
    clock.advance(MINUTE)
    import_csv(session, clock, "gina.csv", "gina@example.com")
    session.commit()
    clock.advance(MINUTE)
    mailer = FileMailer(tmp_path / "outbox", clock, 10_000)
    report = run_tick(session_factory, clock, ctx, mailer)
    assert report.enrolled.summary() == "1 enrolled (test 1)"
    # The pass 11 minutes on re-reads nothing of early@ either: it is out of the 10-minute window then.
    for _ in range(11):
        clock.advance(MINUTE)
        assert run_tick(session_factory, clock, ctx, mailer).enrolled.total == 0
    session.expire_all()
    assert session.scalars(select(Message.to_address)).all() == ["gina@example.com"]
    assert enrolled_emails(session) == ["gina@example.com"]


def test_a_lead_imported_before_activation_never_enters_through_the_cli(app, session, clock, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    for name, source in TEMPLATES.items():
        (templates / name).write_text(source)
    (tmp_path / "webinar.yaml").write_text(WEBINAR)
    (tmp_path / "early.csv").write_text("email\nearly@example.com\n")
    (tmp_path / "gina.csv").write_text("email\ngina@example.com\n")
    runner = app.test_cli_runner()

    def nurture(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    nurture("leads", "import", str(tmp_path / "early.csv"), "--tag", "webinar")
    clock.advance(MINUTE)
    nurture("campaigns", "load", str(tmp_path / "webinar.yaml"), "--templates", str(templates))
    nurture("campaigns", "activate", "test", "--templates", str(templates))
    clock.advance(MINUTE)
    nurture("leads", "import", str(tmp_path / "gina.csv"), "--tag", "webinar")
    clock.advance(MINUTE)
    output = nurture("tick", "--templates", str(templates))
    assert "enrol:    1 enrolled (test 1)" in output
    assert "dispatch: 1 sent" in output
    session.expire_all()
    assert session.scalars(select(Message.to_address)).all() == ["gina@example.com"]


def test_events_and_stage_changes_recorded_before_activation_never_enrol(session, clock, ctx):
    early = make_lead(session, clock, "early@example.com")
    record_activity(session, early, "trial_started", clock.now())
    change_stage(session, clock, early, Stage.MQL, reason="scored", actor=Actor(ActorKind.RULE))
    session.flush()
    clock.advance(MINUTE)
    load_campaign(session, clock, campaign("  - on_event: trial_started\n  - on_stage: mql\n"))
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0, "within the re-read window, yet before activation"
    late = make_lead(session, clock, "late@example.com")
    record_activity(session, late, "trial_started", clock.now())
    moved = make_lead(session, clock, "moved@example.com")
    change_stage(session, clock, moved, Stage.MQL, reason="scored", actor=Actor(ActorKind.RULE))
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 2
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0
    assert enrolled_emails(session) == ["late@example.com", "moved@example.com"]
    # An event that arrives late but happened before the activation (a backfill) does not enrol either.
    record_activity(session, early, "trial_started", clock.now() - timedelta(hours=1))
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 0


def test_imports_made_while_paused_never_enrol_and_those_from_before_the_pause_do(session, clock, ctx):
    load_campaign(session, clock, WEBINAR)
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0  # the cursor exists from here on
    clock.advance(MINUTE)
    import_csv(session, clock, "before.csv", "before-1@example.com", "before-2@example.com")
    clock.advance(MINUTE)
    pause_campaign(session, clock, "test")  # before the enrol job read them
    clock.advance(MINUTE)
    import_csv(session, clock, "paused.csv", "paused@example.com")
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0, "a paused campaign enrols no one"
    clock.advance(MINUTE)
    activate_campaign(session, clock, "test", template_exists=always_exists)
    clock.advance(MINUTE)
    import_csv(session, clock, "after.csv", "after@example.com")
    # One row a pass (before-1, before-2, paused, after): those from before the pause stay eligible until all
    # are read; paused@'s row is read and skipped.
    assert [enrol_new_matches(session, clock, ctx, limit=1).total for _ in range(5)] == [1, 1, 0, 1, 0]
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0, "the re-read window still holds paused@"
    assert enrolled_emails(session) == ["after@example.com", "before-1@example.com", "before-2@example.com"]
    # A second pause and resume: the same rule, with the cursor now past the first pause.
    pause_campaign(session, clock, "test")
    clock.advance(MINUTE)
    import_csv(session, clock, "paused-again.csv", "paused-again@example.com")
    clock.advance(MINUTE)
    activate_campaign(session, clock, "test", template_exists=always_exists)
    assert enrol_new_matches(session, clock, ctx).total == 0
    assert find_lead(session, "paused-again@example.com").id not in enrolled(session)


def test_the_first_pass_listens_from_the_activation_even_after_a_later_edit(session, clock, ctx):
    load_campaign(session, clock, WEBINAR)
    clock.advance(MINUTE)
    import_csv(session, clock, "list.csv", "kept@example.com")
    clock.advance(MINUTE)
    _edit(session, clock, WEBINAR.replace("subject: Hi", "subject: Hello"))  # before the enrol job ran
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert enrolled_emails(session) == ["kept@example.com"]


def test_a_trigger_added_by_an_edit_listens_from_the_edit(session, clock, ctx):
    load_campaign(session, clock, WEBINAR)
    import_csv(session, clock, "w.csv", "first@example.com")
    assert enrol_new_matches(session, clock, ctx).total == 1
    clock.advance(MINUTE)
    import_csv(session, clock, "old.csv", "old-tag2@example.com", tag="webinar-2")
    clock.advance(MINUTE)
    reloaded = _edit(session, clock, WEBINAR.replace("tag: webinar}", "tag: webinar-2}"))
    assert reloaded.campaign.version == 2
    clock.advance(MINUTE)
    import_csv(session, clock, "new.csv", "new-tag2@example.com", tag="webinar-2")
    import_csv(session, clock, "gone.csv", "gone@example.com")  # its trigger was removed
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert enrolled_emails(session) == ["first@example.com", "new-tag2@example.com"]
    cursors = session.scalars(select(EngineCursor.name).where(EngineCursor.name.like("campaign:%"))).all()
    assert all("webinar-2" in name for name in cursors if name.count(":") > 1), "the removed trigger's cursor went"
    # Put back, the first trigger listens afresh: gone@, imported while it was removed, does not enter.
    clock.advance(MINUTE)
    _edit(session, clock, WEBINAR)
    clock.advance(MINUTE)
    import_csv(session, clock, "back.csv", "back@example.com")
    assert enrol_new_matches(session, clock, ctx).total == 1
    # Loading the same definition again changes nothing.
    assert _edit(session, clock, WEBINAR).outcome.value == "unchanged"
    clock.advance(MINUTE)
    assert enrol_new_matches(session, clock, ctx).total == 0
    assert enrolled_emails(session) == ["back@example.com", "first@example.com", "new-tag2@example.com"]


# --- campaign control -----------------------------------------------------------------------------------------


def test_pause_stops_everything_and_resume_runs_the_overdue_steps(session, clock, ctx):
    stored = load_campaign(session, clock, campaign("  - on_event: go\n"))
    lead = make_lead(session, clock, "p@example.com")
    enrollment_id = enrol(session, clock, ctx, stored, lead)
    advance(session, clock, ctx, enrollment_id)
    pause_campaign(session, clock, "test")
    clock.advance(timedelta(days=5))
    during = make_lead(session, clock, "during@example.com")
    record_activity(session, during, "go", clock.now())
    session.flush()
    assert advance_due(session, clock, ctx).enrollments == 0, "a paused campaign's leads are not claimed"
    assert enrol_new_matches(session, clock, ctx).total == 0, "nor does it enrol"
    clock.advance(timedelta(minutes=1))
    activate_campaign(session, clock, "test", template_exists=always_exists)
    assert enrol_new_matches(session, clock, ctx).total == 0, "an event of the pause never enrols"
    after = make_lead(session, clock, "after@example.com")
    record_activity(session, after, "go", clock.now())
    session.flush()
    assert enrol_new_matches(session, clock, ctx).total == 1
    assert enrolled(session) == [lead.id, after.id]
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
