"""Templates past the render limits or the nesting limits, through every way a template runs: the CLI's
check, preview, send-test and save answer one line naming the template (exit status 2, no traceback); a
campaign send fails that step for that lead only, shows the error on the lead page and the campaign page, and
the worker goes on with the other leads (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.auth.models import Role
from nurture.cli.templates import templates_group
from nurture.config import Settings
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.models import Message, MessageStatus
from nurture.engine.models import Enrollment, EnrollmentState, StepRun
from nurture.engine.tick import run_tick
from nurture.leads.service import record_activity
from nurture.rendering.models import EmailTemplateVersion
from tests.acceptance.engine_support import TEMPLATES, engine_settings, load_campaign, make_context, make_lead
from tests.conftest import TEST_SECRET
from tests.integration.test_web_leads import client_as

HEAD = "<!DOCTYPE html>\n<html><head><title>{% block subject %}News{% endblock %}</title></head>\n<body>\n"
FOOT = '\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>\n</body></html>\n'
# Line 5: a list of 2,000 references to one 100,000-character string, printed (200 million characters).
BIG_FOR_BIG = (
    HEAD + "<p>Hello {{ lead.first_name }}</p>\n"
    "{% if lead.first_name == 'Big' %}{% set x = 'a' * 100000 %}{% set l = [x] * 2000 %}{{ l }}{% endif %}" + FOOT
)
BIG = BIG_FOR_BIG.replace("lead.first_name == 'Big'", "true")
DEEP = {
    "ifs.html": HEAD + "{% if true %}\n" * 100 + "x" + "{% endif %}" * 100 + FOOT,
    "parens.html": HEAD + "{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}" + FOOT,
    "brackets.html": HEAD + "{{ " + "[" * 5_000 + "1" + "]" * 5_000 + " }}" + FOOT,
}
# Where each goes past its limit, and what it says.
BRACKETS = "nested 31 deep: at most 30 brackets can be nested within each other"
DEEP_PROBLEMS = {
    "ifs.html": "ifs.html:44: {% if %} is nested 41 deep: at most 40 blocks can be nested within each other",
    "parens.html": f"parens.html:4: the bracket '(' is {BRACKETS}",
    "brackets.html": f"brackets.html:4: the bracket '[' is {BRACKETS}",
}
LIMIT = "big.html, line 5: repeating would make a string of 200008000 characters (limit 200000)"


@pytest.fixture
def nurture_settings(database_url: str, tmp_path: Path) -> Settings:
    """Delivery configured (sender, postal address, outbox in tmp_path): send-test and the engine send."""
    base = Settings(database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test")
    return engine_settings(base, tmp_path / "outbox")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    directory = tmp_path / "email_templates"
    directory.mkdir()
    for name, text in {**DEEP, "big.html": BIG}.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def run(app, templates):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        result = runner.invoke(templates_group, [*args, "--templates", str(templates)])
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return invoke


# --- the CLI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEEP))
def test_check_and_save_answer_deep_nesting_with_the_template_and_line(run, session, tmp_path, name):
    checked = run("check", name)
    assert checked.exit_code == 2
    assert checked.stderr.splitlines() == [DEEP_PROBLEMS[name], "1 problem in 1 of 1 templates"]

    draft = tmp_path / name
    draft.write_text(DEEP[name], encoding="utf-8")
    saved = run("save", name, "--file", str(draft))
    assert saved.exit_code == 2
    assert saved.stderr.splitlines() == [DEEP_PROBLEMS[name], f"1 problem: {name} not saved"]
    assert session.scalar(select(func.count()).select_from(EmailTemplateVersion)) == 0


def test_every_command_stops_a_template_past_the_output_bound_in_one_line(run, session, clock, tmp_path):
    make_lead(session, clock, "tester@example.com", first_name="Tess")
    session.commit()
    preview = run("preview", "big.html")
    assert preview.exit_code == 2
    assert preview.stderr == f"Error: {LIMIT}\n" and preview.stdout == ""

    checked = run("check", "big.html")
    assert checked.exit_code == 2
    assert checked.stderr.splitlines() == ["big.html:5: " + LIMIT.split(": ", 1)[1], "1 problem in 1 of 1 templates"]

    sent = run("send-test", "big.html", "--to", "tester@example.com")
    assert sent.exit_code == 2
    assert sent.stderr == f"Error: {LIMIT}\n"
    assert not (tmp_path / "outbox").exists() or not any((tmp_path / "outbox").iterdir())

    draft = tmp_path / "draft.html"
    draft.write_text(BIG, encoding="utf-8")
    saved = run("save", "news.html", "--file", str(draft))
    assert saved.exit_code == 2
    assert saved.stderr.splitlines() == [
        "news.html:5: " + LIMIT.split(": ", 1)[1],
        "1 problem: news.html not saved",
    ]
    assert session.scalar(select(func.count()).select_from(EmailTemplateVersion)) == 0


# --- a campaign send ----------------------------------------------------------------------------------------

CAMPAIGN = """slug: bounded
name: Bounded
entry:
  - on_event: signed_up
steps:
  - id: hello
    type: send
    template: big
    subject: News
  - id: later
    type: wait
    for: 2d
"""


def test_a_send_past_the_bound_fails_that_lead_only_and_shows_where_people_look(
    app, make_user, session, session_factory, clock, nurture_settings, tmp_path
):
    ctx = make_context(nurture_settings, {**TEMPLATES, "big.html": BIG_FOR_BIG})
    campaign = load_campaign(session, clock, CAMPAIGN)
    small = make_lead(session, clock, "small@example.com", first_name="Small")
    big = make_lead(session, clock, "big@example.com", first_name="Big")
    for lead in (small, big):
        record_activity(session, lead, "signed_up", clock.now())
    session.commit()
    clock.advance(timedelta(minutes=1))

    report = run_tick(session_factory, clock, ctx, FileMailer(tmp_path / "outbox", clock, 1000))

    assert report.advanced.emails == 1 and report.advanced.errors == 1
    [sent] = report.dispatched.sent
    assert [path.name for path in (tmp_path / "outbox").iterdir()] == [f"{sent}.eml"]
    messages = {row.to_address: row for row in session.scalars(select(Message))}
    assert messages["small@example.com"].status is MessageStatus.SENT
    failed = messages["big@example.com"]
    assert failed.status is MessageStatus.FAILED and failed.error == f"not sent: {LIMIT}"
    by_lead = {row.lead_id: row for row in session.scalars(select(Enrollment))}
    assert by_lead[small.id].state is EnrollmentState.WAITING and by_lead[small.id].step_id == "later"
    assert by_lead[big.id].state is EnrollmentState.ACTIVE and by_lead[big.id].failures == 1
    [error_run] = session.scalars(select(StepRun).where(StepRun.lead_id == big.id, StepRun.outcome == "error"))
    assert error_run.step_id == "hello" and error_run.detail["error"] == LIMIT

    client = client_as(app, make_user, Role.VIEWER)
    lead_page = client.get(f"/leads/{big.id}").get_data(as_text=True)
    assert f'<span class="field-error step-error">failed: {LIMIT}</span>' in lead_page
    assert "step-error" not in client.get(f"/leads/{small.id}").get_data(as_text=True)
    campaign_page = client.get(f"/campaigns/{campaign.slug}").get_data(as_text=True)
    assert 'data-failed-step="hello"' in campaign_page
    assert f"failed: 1 run, the latest: {LIMIT}" in campaign_page
