"""A full engine pass (enrol, goals, advance, dispatch) through committed transactions; webhooks POSTed
to a local server with their signature and retries; the CLI commands; the scheduler's wiring."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from nurture.cli.engine import simulate_command, tick_command, webhook_secret_command
from nurture.config import Settings
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.dispatch import dispatch_queued
from nurture.delivery.handoff import COMPOSED, StoredRow
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.engine.context import engine_context
from nurture.engine.enrollment import enrol_new_matches
from nurture.engine.models import Enrollment, EnrollmentState, StepRun, WebhookDelivery, WebhookStatus
from nurture.engine.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    deliver_webhooks,
    verify_signature,
    webhook_secret,
)
from nurture.engine.tick import advance_job, run_tick
from nurture.engine.worker import INTERVALS, EngineJobs
from nurture.leads.service import record_activity
from nurture.rendering import FileTemplateSource, save_template
from nurture.web.scheduler import init_app, serves_requests
from tests.acceptance.engine_support import TEMPLATES, engine_settings, load_campaign, make_context, make_lead
from tests.conftest import TEST_SECRET

CAMPAIGN = """slug: welcome
name: Welcome
entry:
  - on_event: signed_up
steps:
  - id: hello
    type: send
    template: welcome
    subject: "Welcome {{ lead.first_name }}"
  - id: pause
    type: wait
    for: 2d
  - id: handoff
    type: notify
    webhook: WEBHOOK
  - id: tips
    type: send
    template: tips
    subject: Tips
"""


@pytest.fixture
def nurture_settings(database_url: str, tmp_path: Path) -> Settings:
    """The app's settings, with delivery configured (sender, postal address, outbox in tmp_path)."""
    base = Settings(database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test")
    return engine_settings(base, tmp_path / "outbox")


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    for name, source in TEMPLATES.items():
        (directory / name).write_text(source)
    return directory


class Receiver:
    """A webhook receiver on 127.0.0.1 answering with the statuses it is given, in order (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/nurture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_a_tick_enrols_advances_and_sends_each_email_once(
    session, session_factory, clock, nurture_settings, receiver, tmp_path
):
    ctx = make_context(nurture_settings)
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", receiver.url))
    leads = [make_lead(session, clock, f"l{n}@example.com", first_name=f"L{n}") for n in range(3)]
    for lead in leads:
        record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    mailer = FileMailer(tmp_path / "outbox", clock, 1000)
    clock.advance(timedelta(minutes=1))
    first = run_tick(session_factory, clock, ctx, mailer)
    assert first.enrolled.total == 3 and first.advanced.emails == 3 and len(first.dispatched.sent) == 3
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == sorted(f"{i}.eml" for i in first.dispatched.sent)
    again = run_tick(session_factory, clock, ctx, mailer)
    assert (again.enrolled.total, again.advanced.enrollments, len(again.dispatched.sent)) == (0, 0, 0)

    clock.advance(timedelta(days=2))
    later = run_tick(session_factory, clock, ctx, mailer)
    assert later.advanced.emails == 3 and len(later.dispatched.sent) == 3
    assert len(later.webhooks.delivered) == 3
    assert session.scalar(select(func.count()).where(Message.status == MessageStatus.SENT)) == 6
    assert session.scalar(select(func.count()).where(Enrollment.state == EnrollmentState.COMPLETED)) == 3
    assert len(list((tmp_path / "outbox").iterdir())) == 6
    headers, body = receiver.requests[0]
    secret = webhook_secret(nurture_settings, "welcome")
    assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["event"] == "campaign.notify" and payload["delivery"] == headers[DELIVERY_HEADER]
    assert payload["lead"]["email"] in {lead.email for lead in leads}


def test_webhooks_are_retried_with_backoff_and_fail_on_a_refusal(
    session, session_factory, clock, nurture_settings, receiver
):
    ctx = make_context(nurture_settings)
    stored = load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", receiver.url))
    from nurture.engine.notify import queue_webhook

    lead = make_lead(session, clock, "w@example.com")
    for n in (1, 2):
        queue_webhook(session, clock.now(), key=f"k{n}", enrollment_id=None, campaign=ctx.load(stored), lead=lead,
                      url=receiver.url, step_id="handoff")
    session.commit()
    receiver.statuses = [503, 400]
    report = deliver_webhooks(session_factory, clock, nurture_settings)
    assert (len(report.retrying), len(report.failed)) == (1, 1)
    rows = {row.idempotency_key: row for row in session.scalars(select(WebhookDelivery))}
    session.expire_all()
    retried = next(row for row in rows.values() if row.status is WebhookStatus.PENDING)
    assert retried.attempts == 1 and retried.next_attempt_at == clock.now() + timedelta(minutes=1)
    assert retried.last_error == "HTTP 503"
    assert [row.status for row in rows.values()].count(WebhookStatus.FAILED) == 1
    assert not deliver_webhooks(session_factory, clock, nurture_settings).delivered, "not due yet"
    clock.advance(timedelta(minutes=1))
    assert len(deliver_webhooks(session_factory, clock, nurture_settings).delivered) == 1
    keys = [headers[DELIVERY_HEADER] for headers, _ in receiver.requests]
    assert keys.count(retried.idempotency_key) == 2, "the retry carries the same delivery key"


def test_a_webhook_cut_off_while_sending_is_sent_again_later(session, session_factory, clock, nurture_settings,
                                                             receiver):
    ctx = make_context(nurture_settings)
    stored = load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", receiver.url))
    from nurture.engine.notify import queue_webhook

    queue_webhook(session, clock.now(), key="k", enrollment_id=None, campaign=ctx.load(stored),
                  lead=make_lead(session, clock, "c@example.com"), url=receiver.url, step_id="handoff")
    session.execute(WebhookDelivery.__table__.update().values(status="sending", claimed_at=clock.now()))
    session.commit()
    assert not deliver_webhooks(session_factory, clock, nurture_settings).delivered
    clock.advance(timedelta(minutes=6))
    assert len(deliver_webhooks(session_factory, clock, nurture_settings).delivered) == 1


# --- CLI ----------------------------------------------------------------------------------------------------


def test_tick_command_runs_a_pass_as_of_now(app, session, clock, templates_dir, tmp_path):
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", "http://127.0.0.1:9/never"))
    lead = make_lead(session, clock, "cli@example.com", first_name="Cli")
    record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    result = app.test_cli_runner().invoke(
        tick_command, ["--now", "2026-01-15T12:00", "--templates", str(templates_dir)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("Tick as of 2026-01-15T12:00:00+00:00")
    assert "enrol:    1 enrolled (welcome 1)" in result.output
    assert "dispatch: 1 sent, 0 failed, 0 uncertain, 0 suppressed" in result.output
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_tick_command_rejects_a_bad_now_in_one_line(app):
    result = app.test_cli_runner().invoke(tick_command, ["--now", "next tuesday"])
    assert result.exit_code == 2
    assert "'next tuesday' is not an ISO 8601 date-time" in result.output
    assert "Traceback" not in result.output


def test_simulate_prints_the_path_in_the_leads_zone_and_changes_nothing(app, session, clock, templates_dir):
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", "https://crm.example.com/hook"))
    make_lead(session, clock, "sim@example.com", first_name="Sim", timezone="America/New_York")
    session.commit()
    result = app.test_cli_runner().invoke(
        simulate_command, ["welcome", "--lead", "SIM@example.com", "--days", "5", "--templates", str(templates_dir)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "welcome for sim@example.com (times in America/New_York), from Thu 2026-01-15 05:00 EST:",
        "  Thu 2026-01-15 05:00 EST  hello (send): queued, template welcome",
        "  Thu 2026-01-15 05:00 EST  pause (wait): waiting, until Sat 2026-01-17 05:00 EST",
        "  Sat 2026-01-17 05:00 EST  handoff (notify): notified, webhook https://crm.example.com/hook",
        "  Sat 2026-01-17 05:00 EST  tips (send): queued, template tips",
        "  ends: completed",
    ]
    for table in (Enrollment, StepRun, Message, WebhookDelivery):
        assert session.scalar(select(func.count()).select_from(table)) == 0, table


def test_simulate_of_an_unknown_lead_is_one_line(app, session, clock):
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", "https://crm.example.com/hook"))
    session.commit()
    result = app.test_cli_runner().invoke(simulate_command, ["welcome", "--lead", "nobody@example.com"])
    assert result.exit_code == 2
    assert result.output == "Error: no lead with email 'nobody@example.com'\n"


def test_webhook_secret_command(app, session, clock, nurture_settings):
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", "https://crm.example.com/hook"))
    session.commit()
    result = app.test_cli_runner().invoke(webhook_secret_command, ["welcome"])
    assert result.output.strip() == webhook_secret(nurture_settings, "welcome")
    assert webhook_secret(nurture_settings, "welcome") != webhook_secret(nurture_settings, "other")


# --- the scheduler --------------------------------------------------------------------------------------------


def test_every_job_is_scheduled_once_per_process(nurture_settings, session_factory, clock, tmp_path):
    scheduler = BackgroundScheduler()
    jobs = EngineJobs(session_factory, clock, make_context(nurture_settings), FileMailer(tmp_path, clock, 10))
    jobs.schedule(scheduler)
    scheduled = {job.id: job for job in scheduler.get_jobs()}
    assert set(scheduled) == {f"nurture.engine.{name}" for name in INTERVALS}
    for name, seconds in INTERVALS.items():
        job = scheduled[f"nurture.engine.{name}"]
        assert job.trigger.interval == timedelta(seconds=seconds)
        assert job.max_instances == 1 and job.coalesce


def test_the_web_process_starts_no_scheduler_under_testing(app):
    assert init_app(app) is None


@pytest.mark.parametrize(
    ("command", "params", "serves"),
    [("run", {"reload": False}, True), ("run", {"reload": True}, False), ("upgrade", {}, False), (None, {}, True)],
)
def test_only_a_serving_process_runs_the_scheduler(app, command, params, serves):
    if command is None:
        assert serves_requests(app) is serves
        return
    with click.Context(click.Command(command), info_name=command) as context:
        context.params.update(params)
        assert serves_requests(app) is serves


def test_the_worker_jobs_run_the_engine(session, session_factory, clock, nurture_settings, tmp_path, caplog):
    load_campaign(session, clock, CAMPAIGN.replace("WEBHOOK", "http://127.0.0.1:9/never"))
    lead = make_lead(session, clock, "job@example.com")
    record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    clock.advance(timedelta(minutes=1))
    jobs = EngineJobs(session_factory, clock, make_context(nurture_settings), FileMailer(tmp_path / "out", clock, 1000))
    caplog.set_level("INFO", logger="nurture.engine.worker")
    for name in ("enrol", "goals", "advance", "recover", "dispatch", "webhooks"):
        getattr(jobs, name)()
    assert [record.getMessage().split(":")[0] for record in caplog.records] == ["enrol", "advance", "dispatch"]
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_the_worker_command_runs_the_jobs_of_this_app(app, monkeypatch, templates_dir):
    import nurture.cli.engine as engine_cli

    started = []
    monkeypatch.setattr(engine_cli, "run_worker", started.append)
    result = app.test_cli_runner().invoke(engine_cli.worker_command, ["--templates", str(templates_dir)])
    assert result.exit_code == 0, result.output
    [jobs] = started
    assert jobs.ctx.renderer.loader.find("welcome.html") is not None
    assert jobs.mailer.name == "file"


STORED_CAMPAIGN = """slug: stored
name: Stored
entry:
  - on_event: signed_up
steps:
  - id: hello
    type: send
    template: welcome
    subject: Hello
"""


def test_a_stored_template_reaches_campaign_sends_before_the_file_of_the_same_name(
    session, session_factory, clock, nurture_settings, templates_dir, tmp_path
):
    ctx = engine_context(nurture_settings, templates=templates_dir)
    stored_source = TEMPLATES["welcome.html"].replace("welcome aboard.", "edited in the app.")
    save_template(
        session, clock, "welcome.html", stored_source, created_by="test", files=FileTemplateSource(templates_dir)
    )
    load_campaign(session, clock, STORED_CAMPAIGN)
    lead = make_lead(session, clock, "ada@example.com", first_name="Ada")
    record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    clock.advance(timedelta(minutes=1))
    run_tick(session_factory, clock, ctx, FileMailer(tmp_path / "outbox", clock, 1000))
    [content] = session.scalars(select(MessageContent)).all()
    assert "edited in the app." in content.html and "welcome aboard." not in content.html
    # The header announces the very URL the body links to, as the renderer signed it.
    assert f"<{content.envelope['unsubscribe_url']}>" in content.envelope["headers"]["List-Unsubscribe"]
    assert f'href="{content.envelope["unsubscribe_url"]}"' in content.html.replace("&amp;", "&")


def test_the_dispatcher_takes_engine_emails_from_memory_and_others_from_the_outbox(
    session, session_factory, clock, nurture_settings, tmp_path
):
    """Emails the engine of this process composed go out as composed, without a read-back; the rest (another
    process's, or once the in-process store dropped them) are read from message_contents and checked again."""
    ctx = make_context(nurture_settings)
    load_campaign(session, clock, STORED_CAMPAIGN)
    for number in range(4):
        lead = make_lead(session, clock, f"l{number}@example.com", first_name=f"L{number}")
        record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    clock.advance(timedelta(minutes=1))
    COMPOSED.clear()
    enrol_new_matches(session, clock, ctx)
    session.commit()
    advance_job(session_factory, clock, ctx)
    assert len(COMPOSED) == 4
    ids = sorted(session.scalars(select(Message.id)).all())
    # One of them as if another process had written it: the content must come from the outbox.
    COMPOSED.take([StoredRow(ids[0], "", "", 0, "", "", None)])
    tampered = session.get(MessageContent, ids[1])
    tampered.html = "<p>No way out</p>"  # the in-memory email, checked at compose, is what goes out
    session.commit()
    mailer = FileMailer(tmp_path / "outbox", clock, 1000)
    report = dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert sorted(report.sent) == ids and len(COMPOSED) == 0
    sent = {path.name: path.read_text() for path in (tmp_path / "outbox").iterdir()}
    assert "No way out" not in sent[f"{ids[1]}.eml"]

