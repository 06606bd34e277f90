"""Every step type and its edges, run by the engine's executor in the test's transaction (SQLite and
PostgreSQL): sends and A/B variants, waits in the lead's time zone across DST, branches, wait_for yes and no,
set, notify, goto, exit; send windows and frequency caps; goals mid-wait; failures and retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.engine.engagement import on_engagement
from nurture.engine.goals import sweep_goals_and_exits
from nurture.engine.journal import STEP
from nurture.engine.models import EnrollmentState, StepRun, WebhookDelivery
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.models import Activity, ActorKind, StageChange
from nurture.leads.service import Actor, change_stage, record_activity
from nurture.scoring.points import breakdown
from nurture.scoring.service import adjust_score
from nurture.scoring.store import current_config
from tests.acceptance.engine_support import (
    advance,
    advance_due,
    engine_settings,
    enrol,
    enrollment,
    load_campaign,
    make_context,
    make_lead,
    runs,
)

PARIS = ZoneInfo("Europe/Paris")


def campaign_yaml(steps: str, extra: str = "") -> str:
    return f"slug: test\nname: Test\nentry:\n  - on_event: go\n{extra}steps:\n{steps}"


def messages(session, enrollment_id=None):
    query = select(Message).order_by(Message.id)
    if enrollment_id is not None:
        query = query.where(Message.idempotency_key.startswith(f"enrollment:{enrollment_id}:"))
    return list(session.scalars(query))


@pytest.fixture
def eng_settings(nurture_settings, tmp_path):
    return engine_settings(nurture_settings, tmp_path / "outbox")


@pytest.fixture
def ctx(eng_settings):
    return make_context(eng_settings)


@pytest.fixture
def lead(session, clock):
    return make_lead(session, clock, "ada@example.com", first_name="Ada", timezone="Europe/Paris")


# --- send ---------------------------------------------------------------------------------------------------


def test_a_send_queues_one_composed_message_and_moves_on(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: hello
    type: send
    template: welcome
    subject: "Hi {{ lead.first_name }} & co"
  - id: later
    type: wait
    for: 2d
"""))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    report = advance(session, clock, ctx, enrollment_id)
    assert report.emails == 1
    [message] = messages(session)
    assert message.idempotency_key == f"enrollment:{enrollment_id}:step:hello:attempt:1"
    assert message.status is MessageStatus.QUEUED
    assert message.subject == "Hi Ada & co"
    assert message.campaign == "test" and message.template == "welcome" and message.to_address == lead.email
    assert message.links == ["https://example.com/pricing?plan=pro", "https://example.com/docs"]
    content = session.get(MessageContent, message.id)
    assert "/t/c/" in content.html and "Unsubscribe" in content.text
    assert content.envelope["custom_args"]["nurture_step"] == "hello"
    assert runs(session, enrollment_id) == [("hello", "queued"), ("later", "waiting")]
    state = enrollment(session, enrollment_id)
    assert state.state is EnrollmentState.WAITING and state.step_id == "later"
    assert state.next_run_at == clock.now() + timedelta(days=2)
    assert state.attempts == {"hello": 1}
    timeline = session.scalars(
        select(Activity.data).where(Activity.lead_id == lead.id, Activity.kind == STEP).order_by(Activity.id)
    ).all()
    assert timeline[0] == {
        "enrollment": enrollment_id, "step": "hello", "type": "send", "outcome": "queued",
        "message_id": message.id, "template": "welcome", "attempt": 1,
    }


def test_rerunning_a_send_visit_never_makes_a_second_email(session, clock, ctx, lead):
    """The key is per visit: running the same committed state twice (as two workers would if they both
    got hold of it) finds the existing message instead of making another."""
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: hello
    type: send
    template: welcome
    subject: Hi
"""))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    savepoint = session.begin_nested()
    advance(session, clock, ctx, enrollment_id)
    savepoint.commit()
    # Put the enrollment back on the send step as it was, keeping the message.
    row = enrollment(session, enrollment_id)
    row.state, row.step_id, row.attempts, row.next_run_at = EnrollmentState.ACTIVE, "hello", {}, clock.now()
    session.flush()
    advance(session, clock, ctx, enrollment_id)
    assert len(messages(session)) == 1
    assert [outcome for _, outcome in runs(session, enrollment_id)] == ["queued", "queued"]


def test_ab_variants_are_recorded_and_stable(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: tips
    type: send
    template: tips
    variants:
      - {name: short, weight: 1, subject: "3 tips"}
      - {name: long, weight: 1, subject: "Three tips for {{ lead.first_name }}", template: last-chance}
"""))
    chosen = {}
    for n in range(40):
        lead = make_lead(session, clock, f"lead{n}@example.com", first_name=f"L{n}")
        enrollment_id = enrol(session, clock, ctx, campaign, lead)
        chosen[enrollment_id] = lead
    advance_due(session, clock, ctx)
    variant_of = select(StepRun.enrollment_id, StepRun.variant).where(StepRun.step_id == "tips")
    variants = dict(session.execute(variant_of).all())
    assert set(variants.values()) == {"short", "long"}
    for message in messages(session):
        enrollment_id = int(message.idempotency_key.split(":")[1])
        if variants[enrollment_id] == "short":
            assert (message.subject, message.template) == ("3 tips", "tips")
        else:
            lead = chosen[enrollment_id]
            assert (message.subject, message.template) == (f"Three tips for {lead.first_name}", "last-chance")


def test_a_broken_template_retries_with_backoff_then_fails(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: hello
    type: send
    template: broken
    subject: Hi
"""))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    waits = []
    for _ in range(5):
        advance(session, clock, ctx, enrollment_id)
        row = enrollment(session, enrollment_id)
        if row.next_run_at is not None:
            waits.append(row.next_run_at - clock.now())
            clock.set(row.next_run_at)
    assert waits == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    row = enrollment(session, enrollment_id)
    assert row.state is EnrollmentState.FAILED
    assert "step hello failed 5 times" in row.exit_reason and "nosuchfilter" in row.exit_reason
    assert messages(session) == [], "nothing was made for a template that does not compile"


def test_a_subject_that_fails_to_render_leaves_a_failed_message_and_a_retry(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: hello
    type: send
    template: welcome
    subject: "{{ lead.first_name.upper.__globals__ }}"
"""))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    [message] = messages(session)
    assert message.status is MessageStatus.FAILED and message.error.startswith("not sent: ")
    row = enrollment(session, enrollment_id)
    assert row.state is EnrollmentState.ACTIVE and row.failures == 1 and row.attempts == {"hello": 1}
    clock.set(row.next_run_at)
    advance(session, clock, ctx, enrollment_id)
    assert [m.idempotency_key.rsplit(":", 1)[1] for m in messages(session)] == ["1", "2"], "a new attempt, a new key"


# --- waits ---------------------------------------------------------------------------------------------------


def test_wait_until_a_weekday_and_time_on_the_leads_wall_clock_across_dst(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: next-monday
    type: wait
    until: {weekday: mon, time: "09:30"}
  - id: hello
    type: send
    template: welcome
    subject: Hi
"""))
    clock.set(datetime(2026, 3, 26, 12, tzinfo=UTC))  # Thursday; Paris goes to summer time on Sunday 29th
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    row = enrollment(session, enrollment_id)
    assert row.state is EnrollmentState.WAITING
    assert row.next_run_at == datetime(2026, 3, 30, 9, 30, tzinfo=PARIS)
    assert row.next_run_at == datetime(2026, 3, 30, 7, 30, tzinfo=UTC)
    clock.set(row.next_run_at - timedelta(minutes=1))
    assert advance_due(session, clock, ctx).enrollments == 0, "not due a minute early"
    clock.set(row.next_run_at)
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id) == [("next-monday", "waiting"), ("hello", "queued")]


def test_wait_for_a_duration_is_elapsed_time_across_dst(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: pause
    type: wait
    for: 1d
  - id: hello
    type: send
    template: welcome
    subject: Hi
"""))
    clock.set(datetime(2026, 3, 28, 12, tzinfo=UTC))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    assert enrollment(session, enrollment_id).next_run_at == datetime(2026, 3, 29, 12, tzinfo=UTC)


def test_wait_until_a_date_or_an_attribute_date_with_offset(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: renewal
    type: wait
    until: {attribute: renewal_date, offset: -30d, time: "10:00"}
  - id: demo-day
    type: wait
    until: {date: 2026-12-01}
  - id: hello
    type: send
    template: welcome
    subject: Hi
"""))
    with_date = make_lead(
        session, clock, "renews@example.com", timezone="America/New_York", attributes={"renewal_date": "2026-06-30"}
    )
    without = make_lead(session, clock, "nodate@example.com", attributes={"renewal_date": "soon"})
    first = enrol(session, clock, ctx, campaign, with_date)
    second = enrol(session, clock, ctx, campaign, without)
    advance(session, clock, ctx, first, second)
    assert enrollment(session, first).next_run_at == datetime(2026, 5, 31, 10, tzinfo=ZoneInfo("America/New_York"))
    # No usable date: the wait is skipped with its reason; the next wait is midnight UTC (no zone, UTC default).
    assert runs(session, second) == [("renewal", "skipped"), ("demo-day", "waiting")]
    assert enrollment(session, second).next_run_at == datetime(2026, 12, 1, tzinfo=UTC)
    detail = session.scalar(select(StepRun.detail).where(StepRun.enrollment_id == second, StepRun.step_id == "renewal"))
    assert detail == {"reason": "no usable date in attribute 'renewal_date'"}
    clock.set(datetime(2026, 12, 2, tzinfo=UTC))
    advance_due(session, clock, ctx)
    # A date already past does not wait.
    assert runs(session, first)[-2:] == [("demo-day", "skipped"), ("hello", "queued")]


# --- branches -----------------------------------------------------------------------------------------------


def test_branch_on_rules_tests_the_lead_as_it_is_now(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: engaged
    type: branch
    if: {rules: {all: [{field: score, op: ">=", value: 20}]}}
    yes: hot
  - id: cold
    type: exit
  - id: hot
    type: exit
    as: converted
"""))
    hot = make_lead(session, clock, "hot@example.com")
    hot.score = 25
    cold = make_lead(session, clock, "cold@example.com")
    session.flush()
    hot_id, cold_id = enrol(session, clock, ctx, campaign, hot), enrol(session, clock, ctx, campaign, cold)
    advance(session, clock, ctx, hot_id, cold_id)
    assert runs(session, hot_id) == [("engaged", "yes"), ("hot", "converted")]
    assert runs(session, cold_id) == [("engaged", "no"), ("cold", "exited")]
    assert enrollment(session, hot_id).state is EnrollmentState.CONVERTED
    assert enrollment(session, cold_id).state is EnrollmentState.EXITED


ENGAGEMENT = """
  - id: hello
    type: send
    template: welcome
    subject: Hi
  - id: pause
    type: wait
    for: 1d
  - id: clicked-pricing
    type: branch
    if: {clicked: hello, link: "https://example.com/pricing*"}
    yes: hot
  - id: cold
    type: exit
  - id: hot
    type: exit
    as: converted
"""


def test_branch_on_engagement_reads_the_activities_of_that_steps_message(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml(ENGAGEMENT))
    leads = [make_lead(session, clock, f"l{n}@example.com") for n in range(4)]
    ids = [enrol(session, clock, ctx, campaign, lead) for lead in leads]
    advance(session, clock, ctx, *ids)
    message_of = {m.lead_id: m.id for m in messages(session)}
    clock.advance(timedelta(hours=3))
    # 0 clicked the pricing link; 1 clicked another link; 2 opened only; 3 clicked pricing in another email.
    pricing = "https://example.com/pricing?plan=pro"
    record_activity(session, leads[0], "clicked", clock.now(),
                    {"message_id": message_of[leads[0].id], "url": pricing}, campaign="test")
    record_activity(session, leads[1], "clicked", clock.now(),
                    {"message_id": message_of[leads[1].id], "url": "https://example.com/docs"}, campaign="test")
    record_activity(session, leads[2], "opened", clock.now(), {"message_id": message_of[leads[2].id]}, campaign="test")
    record_activity(session, leads[3], "clicked", clock.now(),
                    {"message_id": 999_999, "url": "https://example.com/pricing"}, campaign="other")
    session.flush()
    clock.advance(timedelta(days=1))
    advance_due(session, clock, ctx)
    outcomes = [runs(session, enrollment_id)[2] for enrollment_id in ids]
    assert outcomes == [("clicked-pricing", "yes"), ("clicked-pricing", "no"), ("clicked-pricing", "no"),
                        ("clicked-pricing", "no")]


# --- wait_for -------------------------------------------------------------------------------------------------


WAIT_FOR_CLICK = """
  - id: hello
    type: send
    template: welcome
    subject: Hi
  - id: wait-click
    type: wait_for
    event: clicked
    step: hello
    within: 3d
    yes: thanks
    no: reminder
  - id: thanks
    type: exit
    as: converted
  - id: reminder
    type: send
    template: last-chance
    subject: Reminder
"""


def test_wait_for_takes_the_yes_path_as_soon_as_the_event_arrives(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml(WAIT_FOR_CLICK))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    row = enrollment(session, enrollment_id)
    assert (row.state, row.waiting_for) == (EnrollmentState.WAITING, "clicked")
    deadline = clock.now() + timedelta(days=3)
    assert row.wait_until == deadline == row.next_run_at
    [message] = messages(session)

    clock.advance(timedelta(hours=5))
    record_activity(session, lead, "clicked", clock.now(), {"message_id": message.id, "url": message.links[0]},
                    campaign="test")
    assert on_engagement(session, clock, lead.id, "clicked", message_id=message.id, link=message.links[0]) == 1
    row = enrollment(session, enrollment_id)
    assert row.next_run_at == clock.now() and row.wait_until == deadline, "due now; the deadline is kept"
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id)[-2:] == [("wait-click", "yes"), ("thanks", "converted")]
    assert enrollment(session, enrollment_id).state is EnrollmentState.CONVERTED


def test_wait_for_takes_the_no_path_at_the_timeout(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml(WAIT_FOR_CLICK))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    clock.advance(timedelta(days=3) - timedelta(seconds=1))
    assert advance_due(session, clock, ctx).enrollments == 0
    clock.advance(timedelta(seconds=1))
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id)[1:] == [("wait-click", "waiting"), ("wait-click", "no"), ("reminder", "queued")]
    assert enrollment(session, enrollment_id).state is EnrollmentState.COMPLETED


def test_an_engagement_that_does_not_match_wakes_but_keeps_waiting(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml(WAIT_FOR_CLICK.replace(
        "    within: 3d", "    link: https://example.com/pricing*\n    within: 3d")))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    [message] = messages(session)
    clock.advance(timedelta(hours=1))
    record_activity(session, lead, "clicked", clock.now(), {"message_id": message.id, "url": "https://example.com/docs"},
                    campaign="test")
    on_engagement(session, clock, lead.id, "clicked", campaign="test")
    advance_due(session, clock, ctx)
    row = enrollment(session, enrollment_id)
    assert row.state is EnrollmentState.WAITING and row.next_run_at == row.wait_until
    assert runs(session, enrollment_id) == [("hello", "queued"), ("wait-click", "waiting")]


def test_wait_for_a_custom_event_counts_only_events_after_the_step_started(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: wait-demo
    type: wait_for
    event: demo_booked
    within: 2d
    yes: booked
  - id: not-booked
    type: exit
  - id: booked
    type: exit
    as: converted
"""))
    record_activity(session, lead, "demo_booked", clock.now() - timedelta(days=1))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    assert enrollment(session, enrollment_id).state is EnrollmentState.WAITING, "an old event does not count"
    clock.advance(timedelta(hours=1))
    record_activity(session, lead, "demo_booked", clock.now())
    session.flush()
    # Recorded without on_engagement: the goals pass wakes it from the activity cursor.
    assert sweep_goals_and_exits(session, clock, ctx).woken == 0, "the cursor starts after what exists"
    clock.advance(timedelta(minutes=1))
    record_activity(session, lead, "demo_booked", clock.now())
    session.flush()
    assert sweep_goals_and_exits(session, clock, ctx).woken == 1
    advance_due(session, clock, ctx)
    assert runs(session, enrollment_id)[-1] == ("booked", "converted")


# --- set, notify, goto ----------------------------------------------------------------------------------------


def test_set_changes_stage_tags_attributes_and_score(session, clock, ctx, eng_settings):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: qualify
    type: set
    stage: mql
    add_tags: [engaged, vip]
    remove_tags: [cold]
    attributes: {nurtured: true, plan: null, level: 3}
    adjust_score: +30
"""))
    lead = make_lead(session, clock, "q@example.com", tags=["cold", "newsletter"], attributes={"plan": "trial"})
    adjust_score(session, clock, eng_settings.temperature, lead, 25, "earlier points")
    session.flush()
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    session.refresh(lead)
    assert lead.stage is Stage.MQL
    assert lead.tag_names == ["engaged", "newsletter", "vip"]
    assert lead.attributes == {"nurtured": True, "level": 3}
    assert (lead.score, lead.temperature) == (55, Temperature.HOT)
    # The points went through scoring: they show in the breakdown, named after the campaign and step.
    lines = breakdown(session, current_config(session), lead.id, clock.now()).engagement_lines
    assert [(line.rule, line.points) for line in lines] == [("campaign test, step qualify", 30), ("earlier points", 25)]
    history = select(StageChange).where(StageChange.lead_id == lead.id).order_by(StageChange.id)
    change = session.scalars(history).all()[-1]
    assert (change.actor_kind, change.actor, change.to_stage) == (ActorKind.CAMPAIGN, "test", Stage.MQL)
    assert runs(session, enrollment_id) == [("qualify", "done")]
    assert enrollment(session, enrollment_id).state is EnrollmentState.COMPLETED


def test_notify_queues_a_signed_webhook_and_an_untracked_owner_alert(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: handoff
    type: notify
    webhook: https://crm.example.com/hooks/nurture
    email_owner: true
    template: owner-handoff
    subject: "Hot lead: {{ lead.email }}"
  - id: again
    type: wait
    for: 1d
  - id: loop
    type: goto
    to: handoff
"""))
    owned = make_lead(session, clock, "owned@example.com", owner="Sales.Rep@Example.com", first_name="Bo")
    orphan = make_lead(session, clock, "orphan@example.com")
    owned_id, orphan_id = enrol(session, clock, ctx, campaign, owned), enrol(session, clock, ctx, campaign, orphan)
    advance(session, clock, ctx, owned_id, orphan_id)
    deliveries = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [d.idempotency_key for d in deliveries] == [
        f"enrollment:{owned_id}:step:handoff:attempt:1", f"enrollment:{orphan_id}:step:handoff:attempt:1"]
    assert deliveries[0].payload["lead"]["email"] == "owned@example.com"
    assert deliveries[0].payload["campaign"] == {"slug": "test", "name": "Test", "step": "handoff"}
    [alert] = messages(session)
    assert alert.to_address == "Sales.Rep@example.com" and alert.lead_id == owned.id
    assert alert.subject == "Hot lead: owned@example.com"
    content = session.get(MessageContent, alert.id)
    assert "/t/c/" not in content.html and "/t/o/" not in content.html, "the owner's clicks are not tracked"
    assert "/u/" not in content.html, "the owner cannot unsubscribe the lead from the alert"
    orphan_run = select(StepRun.detail).where(StepRun.enrollment_id == orphan_id, StepRun.step_id == "handoff")
    assert session.scalar(orphan_run) == {
        "webhook": "https://crm.example.com/hooks/nurture", "owner": "the lead has no owner with a valid address"}
    # The loop comes back a day later: a second visit is a second notification.
    clock.advance(timedelta(days=1))
    advance_due(session, clock, ctx)
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 4
    assert runs(session, owned_id)[2:] == [("loop", "jumped"), ("handoff", "notified"), ("again", "waiting")]


# --- windows and caps ---------------------------------------------------------------------------------------


WINDOW = """timezone: Europe/Paris
send_window:
  days: [mon, tue, wed, thu, fri]
  hours: {from: "09:00", to: "17:30"}
"""


def test_a_send_outside_the_window_is_deferred_to_the_next_opening_in_the_leads_zone(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml("""
  - id: hello
    type: send
    template: welcome
    subject: Hi
""", extra=WINDOW))
    tokyo = make_lead(session, clock, "tokyo@example.com", timezone="Asia/Tokyo")
    zoneless = make_lead(session, clock, "paris@example.com")  # the campaign's zone applies
    clock.set(datetime(2026, 1, 16, 12, tzinfo=UTC))  # Friday: 21:00 in Tokyo, 13:00 in Paris
    tokyo_id, paris_id = enrol(session, clock, ctx, campaign, tokyo), enrol(session, clock, ctx, campaign, zoneless)
    report = advance(session, clock, ctx, tokyo_id, paris_id)
    assert (report.emails, report.deferred) == (1, 1)
    row = enrollment(session, tokyo_id)
    assert row.state is EnrollmentState.ACTIVE and row.step_id == "hello"
    assert row.next_run_at == datetime(2026, 1, 19, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    detail = session.scalar(select(StepRun.detail).where(StepRun.enrollment_id == tokyo_id))
    assert detail["reason"] == "outside the send window"
    clock.set(row.next_run_at)
    advance_due(session, clock, ctx)
    assert runs(session, tokyo_id) == [("hello", "deferred"), ("hello", "queued")]


def test_a_frequency_cap_counts_every_campaign_and_defers_without_dropping(session, clock, ctx, lead):
    cap = "frequency_cap: {emails: 2, per: day}\n"
    first = load_campaign(session, clock, campaign_yaml("""
  - id: a
    type: send
    template: welcome
    subject: A
  - id: b
    type: send
    template: tips
    subject: B
""", extra=cap))
    second = load_campaign(session, clock, campaign_yaml("""
  - id: c
    type: send
    template: tips
    subject: C
""", extra=cap).replace("slug: test", "slug: other"))
    one, two = enrol(session, clock, ctx, first, lead), enrol(session, clock, ctx, second, lead)
    started = clock.now()
    advance(session, clock, ctx, one, two)
    sent = messages(session)
    assert len(sent) == 2
    deferred = [e for e in (one, two) if enrollment(session, e).state is EnrollmentState.ACTIVE]
    assert len(deferred) == 1
    assert enrollment(session, deferred[0]).next_run_at == started + timedelta(days=1)
    clock.set(started + timedelta(days=1))
    advance_due(session, clock, ctx)
    assert len(messages(session)) == 3, "the capped email went out once a slot opened"


# --- goals and exits ------------------------------------------------------------------------------------------


GOAL = """
  - id: hello
    type: send
    template: welcome
    subject: Hi
  - id: pause
    type: wait
    for: 3d
  - id: follow-up
    type: send
    template: tips
    subject: Follow up
"""


def test_a_lead_that_meets_the_goal_mid_wait_leaves_converted(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml(GOAL, extra="goal:\n  rules: {entered_stage: customer}\n"))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    sweep_goals_and_exits(session, clock, ctx)  # starts the cursors
    clock.advance(timedelta(days=1))
    change_stage(session, clock, lead, Stage.CUSTOMER, reason="won", actor=Actor(ActorKind.USER, "rep"))
    session.flush()
    report = sweep_goals_and_exits(session, clock, ctx)
    assert report.converted == 1
    row = enrollment(session, enrollment_id)
    assert (row.state, row.exit_reason, row.next_run_at) == (EnrollmentState.CONVERTED, "met the campaign's goal", None)
    assert runs(session, enrollment_id)[-1] == ("pause", "converted")
    clock.advance(timedelta(days=3))
    advance_due(session, clock, ctx)
    assert len(messages(session)) == 1, "no follow-up after converting"


def test_a_goal_met_before_a_step_converts_instead_of_sending(session, clock, ctx, lead):
    campaign = load_campaign(session, clock, campaign_yaml(GOAL, extra="goal:\n  rules: {entered_stage: customer}\n"))
    enrollment_id = enrol(session, clock, ctx, campaign, lead)
    advance(session, clock, ctx, enrollment_id)
    change_stage(session, clock, lead, Stage.CUSTOMER, reason="won", actor=Actor(ActorKind.USER, "rep"))
    clock.advance(timedelta(days=3))
    advance_due(session, clock, ctx)
    assert enrollment(session, enrollment_id).state is EnrollmentState.CONVERTED
    assert len(messages(session)) == 1


def test_exit_conditions_and_unsubscribes_end_enrollments(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml(GOAL, extra="exit:\n  - on_tag_added: do-not-nurture\n"))
    tagged = make_lead(session, clock, "tagged@example.com")
    gone = make_lead(session, clock, "gone@example.com")
    staying = make_lead(session, clock, "staying@example.com")
    ids = [enrol(session, clock, ctx, campaign, lead) for lead in (tagged, gone, staying)]
    advance(session, clock, ctx, *ids)
    from nurture.leads.service import ensure_tags

    tagged.tags = ensure_tags(session, ["do-not-nurture"])
    gone.status = LeadStatus.UNSUBSCRIBED
    session.flush()
    clock.advance(timedelta(days=3))
    advance_due(session, clock, ctx)
    states = [(enrollment(session, e).state, enrollment(session, e).exit_reason) for e in ids]
    assert states == [
        (EnrollmentState.EXITED, "tag 'do-not-nurture' was added"),
        (EnrollmentState.EXITED, "lead is unsubscribed"),
        (EnrollmentState.COMPLETED, "ran past the last step"),
    ]
    assert len(messages(session)) == 4


def test_suppressed_leads_are_never_enrolled(session, clock, ctx):
    campaign = load_campaign(session, clock, campaign_yaml(GOAL))
    lead = make_lead(session, clock, "bounced@example.com")
    lead.status = LeadStatus.BOUNCED
    session.flush()
    from nurture.engine.enrollment import enrol_lead

    assert enrol_lead(session, clock, ctx.load(campaign), lead.id) is None
