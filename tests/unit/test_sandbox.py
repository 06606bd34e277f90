"""Templates are written by marketers, so they are untrusted: reaching for Python internals or for unbounded
work fails with a clear TemplateProblem naming the template and line, before anything runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nurture.errors import NurtureError
from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    RenderLimits,
    TemplateProblem,
    preview_email,
)
from nurture.rendering.sandbox import make_environment

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
HEADER = "<html><head><title>{% block subject %}Hello{% endblock %}</title></head><body>\n"


def render(body: str, limits: RenderLimits | None = None, lead: dict[str, Any] | None = None) -> str:
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource({"t.html": HEADER + body})), limits=limits)
    return preview_email("t.html", now=NOW, renderer=renderer, lead=lead).html


def problem(body: str, limits: RenderLimits | None = None, lead: dict[str, Any] | None = None) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as caught:
        render(body, limits, lead)
    return caught.value


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ '{0.__class__}'.format(lead) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ lead|attr('__class__') }}",
    "{{ (lead|attr('__init__')|attr('__globals__')) }}",
    "{{ lead['__class__'] }}",
    "{{ lead.__dict__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ range.__self__ }}",
    "{% if ''.__class__ %}yes{% endif %}",
    "{{ lead.tags.__len__() }}",
    "{{ campaign.__class__ }}",
    "{{ now.__class__.__init__ }}",
    "{% set x = lead.attributes.copy() %}{{ x.update({'a': 1}) }}",
    "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("body", ESCAPES)
def test_reaching_for_internals_fails_with_the_template_and_line(body: str) -> None:
    found = problem("<p>fine</p>\n" + body)
    assert found.kind == "sandbox"
    assert found.template == "t.html"
    assert found.line == 3
    assert "unsafe" in found.message or "not safely callable" in found.message


def test_an_escape_attempt_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for body in (
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
        f"{{{{ lipsum.__globals__['os'].system('touch {marker}') }}}}",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__()[0]('touch {marker}') }}}}",
    ):
        with pytest.raises(TemplateProblem):
            render(body)
    assert not marker.exists()


LIMITS = [
    ("{{ range(10**9)|list }}", "range() of 1000000000 numbers"),
    ("{{ 'a' * 10**9 }}", "repeating would make a string"),
    ("{{ [1] * 10**9 }}", "repeating would make a string"),
    ("{{ 2 ** 100000000 }}", "raising to a power"),
    ("{{ 'x'.ljust(10**9) }}", "str.ljust"),
    ("{{ 'x'|center(10**9) }}", "center would make"),
    ("{{ 'x'|indent(10**9) }}", "indent would make"),
    ("{{ '%0999999999d' % 1 }}", "% format width"),
    ("{{ '%0999999999d'|format(1) }}", "% format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ range(1000)|join('x' * 100000) }}", "join would make"),
    ("{{ ('x' * 100000).replace('', 'yy') }}", "str.replace"),
    ("{{ ('x' * 100000)|replace('', 'yy') }}", "replace would make"),
    ("{{ [1, 2]|slice(10**9)|list }}", "slice() into"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "joining"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "loops would run"),
    ("{% for c in 'x' * 100000 %}{% for d in 'y' * 1000 %}{% endfor %}{% endfor %}", "loops would run"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}", "calls in one email"),
    ("{% set s = 'x' * 100000 %}{% for i in range(5000) %}{{ s }}{% endfor %}", "longer than"),
    ("{% set s = 'x' * 100000 %}{% macro m() %}{% for i in range(50) %}{{ s }}{% endfor %}{% endmacro %}"
     "{% for i in range(50) %}{{ m() }}{% endfor %}", "longer than"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), LIMITS)
def test_unbounded_work_is_refused_before_it_is_done(body: str, message: str) -> None:
    found = problem("\n" + body)
    assert found.kind == "limit"
    assert message in found.message
    assert (found.template, found.line) == ("t.html", 3)


def test_limits_are_configurable() -> None:
    limits = RenderLimits(max_loop_iterations=10, max_range=10, max_output_chars=5_000)
    assert render("{% for i in range(10) %}.{% endfor %}", limits)
    assert problem("{% for i in range(11) %}.{% endfor %}", limits).kind == "limit"
    assert problem("{% for i in range(6) %}{% for j in range(2) %}.{% endfor %}{% endfor %}", limits).kind == "limit"
    assert problem("{{ 'x' * 4000 }}{{ 'y' * 2000 }}", limits).kind == "limit"


def test_a_recursive_macro_fails_cleanly() -> None:
    found = problem("{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}")
    assert found.kind == "runtime"
    assert found.template == "t.html"


def test_a_broken_template_raises_an_error_callers_already_handle() -> None:
    found = problem("{{ 1 / 0 }}")
    assert isinstance(found, NurtureError)
    assert str(found) == "t.html, line 2: ZeroDivisionError: division by zero"


def test_ordinary_templates_still_work() -> None:
    html = render(
        "{% for tag in lead.tags %}{{ loop.index }}:{{ tag|upper }}{% if not loop.last %},{% endif %}{% endfor %}"
        "|{{ lead.attributes.plan }}|{{ lead.attributes['trial_ends'] }}|{{ '%s-%s'|format(1, 2) }}"
        "|{{ '{}!'.format(lead.first_name) }}|{{ [3, 1, 2]|sort|join(',') }}|{{ lead.full_name }}"
        "|{{ range(3)|sum }}|{{ lead.nothing.deeper }}|{{ none }}"
    )
    assert "1:NEWSLETTER,2:WEBINAR|trial|2026-02-01|1-2|Ada!|1,2,3|Ada Lovelace|3||" in html


def test_the_context_is_read_only() -> None:
    lead = {"email": "a@example.com", "attributes": {"prefs": ["news"], "address": {"city": "Lyon"}}}
    for body in ("{{ lead.attributes.prefs.append('x') }}", "{{ lead.attributes.address.update({'a': 1}) }}"):
        assert problem(body, lead=lead).kind == "sandbox"
    # The views themselves have nothing to call: tuples and read-only mappings.
    for body in ("{{ lead.tags.append('x') }}", "{{ lead.attributes.update({'a': 1}) }}"):
        assert "has no attribute" in problem(body, lead=lead).message


def test_a_template_with_a_text_channel_renders_outside_an_email_render() -> None:
    """Outside ``collecting_text`` the text channel goes nowhere, whether a stretch prints one value or several."""
    environment = make_environment(html=True)
    one = environment.from_string("<p>{{ x }}</p>{% _nurture_text %}{{ x }}{% _nurture_endtext %}")
    several = environment.from_string("<p>{{ x }}</p>{% _nurture_text %}{{ x }}-{{ x }}{% _nurture_endtext %}")
    assert one.render(x="hi") == several.render(x="hi") == "<p>hi</p>"
