"""Where templates come from (files, stored templates, both), how layouts and partials are put together, the
compile cache, and check_templates."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    FileTemplateSource,
    TemplateSource,
    check_templates,
    default_renderer,
    default_template_directory,
    preview_email,
)

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def write(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_file_source_versions_templates_by_content(tmp_path: Path) -> None:
    source = FileTemplateSource(tmp_path)
    write(tmp_path, "a.html", "one")
    first = source.get("a.html")
    assert first is not None and first[0] == "one"
    assert source.get("a.html") == first
    write(tmp_path, "a.html", "two, longer")
    second = source.get("a.html")
    assert second is not None and second[0] == "two, longer" and second[1] != first[1]
    assert isinstance(source, TemplateSource)


def test_a_file_source_stays_inside_its_directory(tmp_path: Path) -> None:
    write(tmp_path, "inside/a.html", "x")
    write(tmp_path.parent, "outside.html", "secret")
    source = FileTemplateSource(tmp_path / "inside")
    for name in ("../outside.html", "/etc/passwd", "", "a\\..\\b.html", "missing.html", "."):
        assert source.get(name) is None


def test_a_file_source_lists_templates(tmp_path: Path) -> None:
    for name in ("welcome.html", "welcome.txt", "layouts/base.html", "notes.md"):
        write(tmp_path, name, "x")
    assert FileTemplateSource(tmp_path).list_names() == ["layouts/base.html", "welcome.html", "welcome.txt"]


def test_stored_templates_override_files_of_the_same_name(tmp_path: Path) -> None:
    write(tmp_path, "a.html", "from file")
    write(tmp_path, "b.html", "only a file")
    loader = EmailTemplateLoader(DictTemplateSource({"a.html": "stored"}), FileTemplateSource(tmp_path))
    assert loader.find("a.html").source == "stored"  # type: ignore[union-attr]
    assert loader.find("b.html").source == "only a file"  # type: ignore[union-attr]
    assert loader.find("c.html") is None
    assert loader.list_templates() == ["a.html", "b.html"]


def test_the_loader_is_a_jinja_loader(tmp_path: Path) -> None:
    stored = DictTemplateSource({"a.html": "Hello {{ name }}"})
    environment = jinja2.Environment(loader=EmailTemplateLoader(stored))
    template = environment.get_template("a.html")
    assert template.render(name="Ada") == "Hello Ada"
    assert template.is_up_to_date
    stored.templates["a.html"] = "Bye {{ name }}"
    assert not template.is_up_to_date
    assert environment.get_template("a.html").render(name="Ada") == "Bye Ada"
    with pytest.raises(jinja2.TemplateNotFound):
        environment.get_template("missing.html")


EMAIL = (
    '{% extends "layout.html" %}{% block subject %}S{% endblock %}'
    "{% block body %}<p>{{ lead.first_name }}</p>{% endblock %}"
)
LAYOUT = '<html><body>{% block body %}{% endblock %}{% include "partials/footer.html" %}</body></html>'
FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> v1</p>'


def test_the_compile_cache_follows_every_template_an_email_is_made_of() -> None:
    stored = DictTemplateSource({"email.html": EMAIL, "layout.html": LAYOUT, "partials/footer.html": FOOTER})
    renderer = EmailRenderer(EmailTemplateLoader(stored))
    first = renderer.compile("email.html")
    assert renderer.compile("email.html") is first
    stored.templates["partials/footer.html"] = FOOTER.replace("v1", "v2")
    second = renderer.compile("email.html")
    assert second is not first and second.version != first.version
    assert "v2" in preview_email("email.html", now=NOW, renderer=renderer).html
    stored.templates["email.txt"] = "Plain {{ lead.first_name }}"
    third = renderer.compile("email.html")
    assert third.version != second.version and third.hand_written_text
    assert preview_email("email.html", now=NOW, renderer=renderer).text == "Plain Ada"


def render_html(templates: dict[str, str], name: str = "email.html") -> str:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource(templates)))
    return preview_email(name, now=NOW, renderer=renderer).text


def test_layouts_resolve_like_jinja_inheritance() -> None:
    templates = {
        "base.html": "<html><head><title>{% block subject %}Base subject{% endblock %}</title></head><body>"
        "{% block outer %}<p>outer-base</p>{% block inner %}<p>inner-base</p>{% endblock %}{% endblock %}"
        "<p>{{ self.signature() }}</p></body></html>",
        "middle.html": '{% extends "base.html" %}{% block inner %}<p>inner-middle</p>{{ super() }}{% endblock %}',
        "email.html": '{% extends "middle.html" %}{% set who = "child" %}'
        "{% block subject %}{{ super() }} for {{ who }}{% endblock %}"
        "{% block inner %}<p>inner-child</p>{{ super() }}{% endblock %}"
        "{% block signature %}Signed, {{ who }}{% endblock %}",
    }
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource(templates)))
    email = preview_email("email.html", now=NOW, renderer=renderer)
    assert email.subject == "Base subject for child"
    assert email.text == "outer-base\n\ninner-child\n\ninner-middle\n\ninner-base\n\nSigned, child"
    jinja = renderer.html_environment.get_template("email.html").render(sender={}, lead={})
    assert "inner-child</p><p>inner-middle</p><p>inner-base" in jinja


def test_partials_keep_their_assignments_to_themselves() -> None:
    templates = {
        "email.html": "<html><head><title>{% block subject %}S{% endblock %}</title></head><body>"
        '{% set label = "outer" %}{% include "partials/p.html" %}<p>{{ label }}</p>'
        '{% include "partials/optional.html" ignore missing %}</body></html>',
        "partials/p.html": '{% set label = "inner" %}<p>{{ label }}</p>{% block note %}<p>note</p>{% endblock %}',
    }
    assert render_html(templates) == "inner\n\nnote\n\nouter"


def test_check_finds_nothing_wrong_with_the_starter_emails() -> None:
    assert check_templates(now=NOW) == []
    assert {"welcome.html", "newsletter.html", "trial_ending.html"} <= set(
        FileTemplateSource(default_template_directory()).list_names()
    )


def test_check_reports_every_problem_with_its_location() -> None:
    templates = {
        "layouts/base.html": "<html><head><title>{% block subject %}{% endblock %}</title></head>"
        "<body>{% block body %}{% endblock %}</body></html>",
        "broken.html": '{% extends "layouts/base.html" %}\n{% block body %}{% if x %}{% endblock %}',
        "no_unsubscribe.html": '{% extends "layouts/base.html" %}\n{% block subject %}Hi{% endblock %}',
        "typo.html": '{% extends "layouts/base.html" %}\n{% block subject %}Hi{% endblock %}\n'
        '{% block body %}{{ leed.first_name }} <a href="{{ unsubscribe_url }}">u</a>{% endblock %}',
        "crashes.html": '{% extends "layouts/base.html" %}\n{% block subject %}Hi{% endblock %}\n'
        '{% block body %}\n{{ lead.score / 0 }} <a href="{{ unsubscribe_url }}">u</a>{% endblock %}',
        "transactional/receipt.html": '{% extends "layouts/base.html" %}\n{% block subject %}Receipt{% endblock %}',
        "partials/bad.html": "{{ oops(",
        "welcome.txt": "{% if %}",
    }
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource(templates)))
    problems = check_templates(renderer, now=NOW)
    found = {(problem.template, problem.line, problem.kind) for problem in problems}
    assert found == {
        ("broken.html", 2, "syntax"),
        ("no_unsubscribe.html", None, "unsubscribe"),
        ("typo.html", 3, "undefined"),
        ("crashes.html", 4, "runtime"),
        ("partials/bad.html", 1, "syntax"),
        ("welcome.txt", 1, "syntax"),
    }
    assert all(str(problem).startswith(f"{problem.template}") for problem in problems)


def test_files_edited_on_disk_are_picked_up(tmp_path: Path) -> None:
    write(tmp_path, "email.html", EMAIL)
    write(tmp_path, "layout.html", LAYOUT)
    write(tmp_path, "partials/footer.html", FOOTER)
    renderer = EmailRenderer(EmailTemplateLoader(FileTemplateSource(tmp_path)))
    first = renderer.compile("email.html")
    path = tmp_path / "partials/footer.html"
    path.write_text(FOOTER.replace("v1", "version 2"), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert renderer.compile("email.html").version != first.version


def test_the_default_renderer_reads_the_configured_directory(tmp_path: Path) -> None:
    write(tmp_path, "hello.html", "<html><head><title>{% block subject %}Hi{% endblock %}</title></head></html>")
    renderer = default_renderer(tmp_path)
    assert renderer is default_renderer(tmp_path)
    assert renderer.loader.list_templates() == ["hello.html"]
    assert "welcome.html" in default_renderer().loader.list_templates()
