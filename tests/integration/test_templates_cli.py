"""`nurture templates list|check|preview|save|history`: thin over the rendering package, one line per problem
(`template:line: message`), exit status 2 for bad input, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.cli.templates import templates_group
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead
from nurture.rendering.models import EmailTemplateVersion

LAYOUT = """<!DOCTYPE html>
<html><head><title>{% block subject %}{% endblock %}</title>
<style>p { color: #333333; }</style></head>
<body>
{% block content %}{% endblock %}
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>
</body></html>
"""
WELCOME = """{% extends "layouts/base.html" %}
{% block subject %}Welcome {{ lead.first_name | default('friend') }}{% endblock %}
{% block content %}<p>Hello {{ lead.first_name | default('there') }} from {{ lead.company }}.</p>{% endblock %}
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    directory = tmp_path / "email_templates"
    for name, text in {"layouts/base.html": LAYOUT, "welcome.html": WELCOME}.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def run(app, templates):
    runner = app.test_cli_runner()

    def invoke(*args: str, templates_dir: Path | None = templates):
        extra = ["--templates", str(templates_dir)] if templates_dir is not None and args[0] != "history" else []
        result = runner.invoke(templates_group, [*args, *extra])
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return invoke


def test_check_passes_the_starter_emails(run):
    result = run("check", templates_dir=None)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("templates checked: no problems.\n")


def test_check_reports_every_problem_with_its_location(run, templates):
    (templates / "broken.html").write_text(
        '{% extends "layouts/base.html" %}\n{% block subject %}Hi{% endblock %}\n{% block content %}\n'
        "{% for x in lead.tags %}<p>{{ x }}</p>\n{% endblock %}\n",
        encoding="utf-8",
    )
    (templates / "no-unsubscribe.html").write_text(
        "<html><head><title>{% block subject %}Hi{% endblock %}</title></head>\n"
        "<body><p>{{ leed.first_name }}</p></body></html>\n",
        encoding="utf-8",
    )
    result = run("check")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("broken.html:5: ")
    assert "no-unsubscribe.html: a marketing email needs a visible unsubscribe link" in lines[1]
    assert lines[2].startswith("no-unsubscribe.html:2: unknown variable 'leed'")
    assert lines[-1] == "3 problems in 2 of 4 templates"
    only_welcome = run("check", "welcome.html")
    assert only_welcome.exit_code == 0
    assert only_welcome.stdout == "1 template checked: no problems.\n"


def test_preview_renders_for_a_made_up_lead_or_a_stored_one(run, session, clock, tmp_path):
    sample = run("preview", "welcome.html")
    assert sample.exit_code == 0, sample.output
    assert sample.stdout.startswith("<!DOCTYPE html>")
    assert "Hello Ada from Analytical Engines Ltd." in sample.stdout
    assert 'href="#unsubscribe"' in sample.stdout

    create_lead(session, clock, "zoe@example.com", actor=Actor(ActorKind.SYSTEM, "test"), first_name="Zoë",
                company="Brontë & Partners")  # fmt: skip
    session.commit()
    text = run("preview", "welcome.html", "--lead", "ZOE@example.com", "--text")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("Hello Zoë from Brontë & Partners.\n")

    out = tmp_path / "preview.html"
    written = run("preview", "welcome.html", "--lead", "zoe@example.com", "--out", str(out))
    assert written.stdout == f"Wrote {out} (subject: Welcome Zoë)\n"
    assert "Brontë &amp; Partners" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("preview", "welcome.html", "--lead", "nobody@example.com"), "Error: no lead with email 'nobody@example.com'"),
        (("preview", "missing.html"), "Error: missing.html: template 'missing.html' not found"),
        (("history", "welcome.html"), "Error: no stored template 'welcome.html'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message


def test_save_stores_versions_that_override_the_file(run, session, tmp_path):
    draft = tmp_path / "welcome.html"
    draft.write_text(WELCOME.replace("Hello", "Welcome aboard"), encoding="utf-8")
    saved = run("save", "welcome.html", "--file", str(draft), "--by", "ada@example.com")
    assert saved.exit_code == 0, saved.output
    assert saved.stdout == "Saved welcome.html: version 1.\n"
    assert "Welcome aboard Ada" in run("preview", "welcome.html").stdout
    assert run("save", "welcome.html", "--file", str(draft)).stdout == (
        "Unchanged welcome.html: version 1 has this text already.\n"
    )
    draft.write_text(WELCOME.replace("Hello", "Hi"), encoding="utf-8")
    assert run("save", "welcome.html", "--file", str(draft)).stdout == "Saved welcome.html: version 2.\n"

    listed = run("list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "SOURCE", "VERSION"]
    assert listed[1].split()[:2] == ["layouts/base.html", "file"]
    assert listed[2].split() == ["welcome.html", "db", "v2", "(overrides", "the", "file)"]

    history = run("history", "welcome.html").stdout.splitlines()
    assert [line.split()[0] for line in history] == ["v2", "v1"]
    assert history[0].endswith("(current)") and "cli" in history[0]
    assert "2026-01-15 10:00 UTC  ada@example.com" in history[1]


def test_a_broken_template_is_not_saved(run, session, tmp_path):
    draft = tmp_path / "partial.html"
    draft.write_text(LAYOUT.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a> ', ""), encoding="utf-8")
    result = run("save", "layouts/base.html", "--file", str(draft))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        'welcome.html: a marketing email needs a visible unsubscribe link: <a href="{{ unsubscribe_url }}">',
        "1 problem: layouts/base.html not saved",
    ]
    draft.write_text(WELCOME.replace("{% endblock %}\n", "\n"), encoding="utf-8")
    result = run("save", "welcome.html", "--file", str(draft))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("welcome.html:3: ")
    assert session.scalar(select(func.count()).select_from(EmailTemplateVersion)) == 0


def test_save_refuses_a_file_that_is_not_text(run, tmp_path):
    draft = tmp_path / "binary.html"
    draft.write_bytes(b"\xff\xfe\x00bad")
    result = run("save", "welcome.html", "--file", str(draft))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {draft} is not UTF-8 text"
