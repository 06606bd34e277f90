"""Templates stored in the database (SQLite and PostgreSQL): versions, the check before a save, precedence over
files, and the compile cache picking up an edit at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from nurture.clock import FixedClock
from nurture.errors import NotFound, ValidationError
from nurture.rendering import (
    EmailRenderer,
    FileTemplateSource,
    StoredTemplateSource,
    TemplateProblems,
    get_template_version,
    preview_email,
    save_template,
    stored_templates,
    template_history,
    template_loader,
)
from nurture.rendering.models import EmailTemplate, EmailTemplateVersion
from nurture.rendering.sources import content_version

LAYOUT = """<!DOCTYPE html>
<html><head><title>{% block subject %}{% endblock %}</title>
<style>p { color: #333333; }</style></head>
<body>
{% block content %}{% endblock %}
{% include "partials/footer.html" %}
</body></html>
"""
FOOTER = """<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>
"""
WELCOME = """{% extends "layouts/base.html" %}
{% block subject %}Welcome {{ lead.first_name | default('friend') }}{% endblock %}
{% block content %}<p>Shipped with the product.</p>{% endblock %}
"""
NEWS = """{% extends "layouts/base.html" %}
{% block subject %}News{% endblock %}
{% block content %}<p>News for {{ lead.first_name }}</p>{% endblock %}
"""


@pytest.fixture
def files(tmp_path: Path) -> FileTemplateSource:
    for name, text in {
        "layouts/base.html": LAYOUT,
        "partials/footer.html": FOOTER,
        "welcome.html": WELCOME,
        "news.html": NEWS,
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return FileTemplateSource(tmp_path)


def save(session: Session, clock: FixedClock, files: FileTemplateSource, name: str, text: str) -> int:
    saved = save_template(session, clock, name, text, created_by="ada@example.com", files=files)
    return saved.version.version


def renderer_on(session: Session, files: FileTemplateSource) -> EmailRenderer:
    return EmailRenderer(template_loader(files.directory, StoredTemplateSource.bound_to(session)))


def test_a_stored_template_overrides_the_file_of_the_same_name(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    renderer = renderer_on(session, files)
    assert "Shipped with the product." in preview_email("welcome.html", now=clock.now(), renderer=renderer).html
    save(session, clock, files, "welcome.html", WELCOME.replace("Shipped with the product.", "Edited in the UI."))
    email = preview_email("welcome.html", now=clock.now(), renderer=renderer)
    assert "Edited in the UI." in email.html
    assert "Shipped with the product." not in email.html


def test_every_save_is_a_new_version_and_the_history_keeps_them_all(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    assert save(session, clock, files, "welcome.html", WELCOME.replace("Shipped", "One")) == 1
    clock.advance(timedelta(minutes=5))
    assert save(session, clock, files, "welcome.html", WELCOME.replace("Shipped", "Two")) == 2
    history = template_history(session, "welcome.html")
    assert [version.version for version in history] == [2, 1]
    assert "Two" in history[0].source and "One" in history[1].source
    assert history[0].created_by == "ada@example.com"
    assert history[0].created_at == history[1].created_at + timedelta(minutes=5)
    assert len(history[0].content_hash) == 64
    assert get_template_version(session, "welcome.html").version == 2
    assert "One" in get_template_version(session, "welcome.html", 1).source
    [template] = stored_templates(session)
    assert (template.name, template.current_version) == ("welcome.html", 2)


def test_saving_the_current_text_again_writes_nothing(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    text = WELCOME.replace("Shipped", "Same")
    save(session, clock, files, "welcome.html", text)
    again = save_template(session, clock, "welcome.html", text, created_by="bob@example.com", files=files)
    assert (again.created, again.version.version, again.version.created_by) == (False, 1, "ada@example.com")


def test_a_broken_template_is_refused_with_its_line_and_nothing_is_stored(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    broken = WELCOME.replace("{% block content %}", "{% block content %}{% if lead.first_name %}")
    with pytest.raises(TemplateProblems) as caught:
        save(session, clock, files, "welcome.html", broken)
    [problem] = caught.value.problems
    assert (problem.template, problem.line, problem.kind) == ("welcome.html", 3, "syntax")
    assert str(caught.value).startswith("welcome.html, line 3: ")
    assert session.scalar(select(func.count()).select_from(EmailTemplate)) == 0
    assert session.scalar(select(func.count()).select_from(EmailTemplateVersion)) == 0


def test_a_template_the_sandbox_refuses_is_not_stored(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    escaping = WELCOME.replace("Shipped with the product.", "{{ ''.__class__.__mro__ }}")
    with pytest.raises(TemplateProblems) as caught:
        save(session, clock, files, "welcome.html", escaping)
    assert [(p.template, p.line, p.kind) for p in caught.value.problems] == [("welcome.html", 3, "sandbox")]
    assert stored_templates(session) == []


def test_a_partial_that_breaks_the_emails_using_it_is_refused(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    with pytest.raises(TemplateProblems) as caught:
        save(session, clock, files, "partials/footer.html", "<p>{{ sender.postal_address }}</p>\n")
    located = sorted((problem.template, problem.kind) for problem in caught.value.problems)
    assert located == [("news.html", "unsubscribe"), ("welcome.html", "unsubscribe")]
    with pytest.raises(TemplateProblems) as caught:
        save(session, clock, files, "partials/footer.html", FOOTER + "<p>{{ 1 / 0 }}</p>\n")
    assert {(p.template, p.line) for p in caught.value.problems} == {("partials/footer.html", 2)}
    assert stored_templates(session) == []


def test_problems_a_partial_does_not_cause_do_not_block_it(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    # news.html has a problem of its own (stored before checks existed, say): a footer edit is still fine.
    session.add(EmailTemplate(name="news.html", current_version=1, created_at=clock.now(), updated_at=clock.now()))
    session.flush()
    template = session.scalar(select(EmailTemplate))
    assert template is not None
    session.add(
        EmailTemplateVersion(
            template_id=template.id, version=1, source=NEWS.replace("{{ lead.first_name }}", "{{ 1 / 0 }}"),
            content_hash="x" * 64, created_at=clock.now(), created_by="legacy",
        )
    )  # fmt: skip
    session.flush()
    assert save(session, clock, files, "partials/footer.html", FOOTER.replace("Unsubscribe", "Stop these emails")) == 1


def test_an_edit_takes_effect_for_the_next_compile(
    session: Session,
    clock: FixedClock,
    files: FileTemplateSource,
    session_factory: sessionmaker[Session],
) -> None:
    """A long-lived renderer (one per worker process) reads stored templates through sessions of its own."""
    renderer = EmailRenderer(template_loader(files.directory, StoredTemplateSource(session_factory)))
    first = renderer.compile("news.html")
    assert renderer.compile("news.html") is first
    save(session, clock, files, "partials/footer.html", FOOTER.replace("Unsubscribe", "Opt out"))
    session.commit()
    second = renderer.compile("news.html")
    assert second is not first and second.version != first.version
    assert "Opt out" in preview_email("news.html", now=clock.now(), renderer=renderer).html


def test_the_stored_source_lists_and_finds_current_versions(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    save(session, clock, files, "partials/footer.html", FOOTER.replace("Unsubscribe", "Opt out"))
    save(session, clock, files, "welcome.txt", "Hello {{ lead.first_name }}\n{{ unsubscribe_url }}\n")
    source = StoredTemplateSource.bound_to(session)
    assert source.list_names() == ["partials/footer.html", "welcome.txt"]
    found = source.get("partials/footer.html")
    assert found is not None and "Opt out" in found[0]
    assert source.get("news.html") is None
    assert source.get("../secrets.html") is None
    # Same text, same version as a file would have: the compile cache treats both alike.
    assert found[1] == content_version(found[0])
    loader = template_loader(files.directory, source)
    assert "welcome.txt" in loader.list_templates() and "news.html" in loader.list_templates()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../welcome.html", "not a template path"),
        ("/etc/welcome.html", "not a template path"),
        ("welcome.py", "must end in .html or .txt"),
        (" welcome.html", "must not be empty"),
        ("", "must not be empty"),
        ("a" * 250 + ".html", "longer than 200"),
    ],
)
def test_bad_names_are_refused(
    session: Session, clock: FixedClock, files: FileTemplateSource, name: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        save(session, clock, files, name, WELCOME)
    assert stored_templates(session) == []


def test_unknown_templates_and_versions_are_not_found(
    session: Session, clock: FixedClock, files: FileTemplateSource
) -> None:
    with pytest.raises(NotFound):
        template_history(session, "welcome.html")
    save(session, clock, files, "welcome.html", WELCOME.replace("Shipped", "One"))
    with pytest.raises(NotFound, match="no version 7"):
        get_template_version(session, "welcome.html", 7)
