"""Every problem names the template and the line its author wrote, even after layouts, partials and CSS
inlining have rearranged the source that actually runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nurture.errors import NurtureError, ValidationError
from nurture.rendering import DictTemplateSource, EmailRenderer, EmailTemplateLoader, TemplateProblem, preview_email

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)

LAYOUT = """<!DOCTYPE html>
<html>
<head><title>{% block subject %}{% endblock %}</title>
<style>p { color: #333333; } .box td { padding: 4px; }</style>
</head>
<body>
<table class="box">
{% block rows %}{% endblock %}
</table>
{% include "partials/footer.html" %}
</body>
</html>
"""
FOOTER = """<p>
<a href="{{ unsubscribe_url }}">Unsubscribe</a>
{{ sender.postal_address }}
</p>
"""
CHILD = """{% extends "layout.html" %}
{% block subject %}Hi {{ lead.first_name }}{% endblock %}
{% block rows %}
<tr><td>one</td></tr>
{% for tag in lead.tags %}
<tr><td>{{ tag }}</td></tr>
{% endfor %}
{% endblock %}
"""


def problem_in(templates: dict[str, str], name: str = "child.html") -> TemplateProblem:
    sources = {"layout.html": LAYOUT, "partials/footer.html": FOOTER, "child.html": CHILD, **templates}
    renderer = EmailRenderer(EmailTemplateLoader(DictTemplateSource(sources)))
    with pytest.raises(TemplateProblem) as caught:
        preview_email(name, now=NOW, renderer=renderer)
    return caught.value


def where(found: TemplateProblem) -> tuple[str | None, int | None]:
    return found.template, found.line


def test_a_template_problem_is_a_validation_error() -> None:
    found = problem_in({"child.html": CHILD.replace("{{ tag }}", "{{ loop.index / 0 }}")})
    assert isinstance(found, ValidationError) and isinstance(found, NurtureError)
    assert found.where == "child.html, line 6"
    assert str(found).startswith("child.html, line 6: ")


@pytest.mark.parametrize(
    ("templates", "location", "message"),
    [
        ({"child.html": CHILD.replace("{% endfor %}", "{% endfro %}")}, ("child.html", 7), "endfro"),
        ({"child.html": CHILD.replace("{{ tag }}", "{{ tag }")}, ("child.html", 6), "unexpected"),
        ({"layout.html": LAYOUT.replace("{% block rows %}", "{% block rows %")}, ("layout.html", 8), ""),
        ({"partials/footer.html": FOOTER.replace("{{ sender", "{% if %}{{ sender")}, ("partials/footer.html", 3), ""),
    ],
)
def test_syntax_errors_name_the_template_and_line(
    templates: dict[str, str], location: tuple[str, int], message: str
) -> None:
    found = problem_in(templates)
    assert found.kind == "syntax"
    assert where(found) == location
    assert message in found.message


@pytest.mark.parametrize(
    ("templates", "location", "message"),
    [
        ({"child.html": CHILD.replace("{{ tag }}", "{{ loop.index / 0 }}")}, ("child.html", 6), "division by zero"),
        ({"child.html": CHILD.replace("Hi {{ lead.first_name }}", "Hi {{ lead.first_name() }}")}, ("child.html", 2),
         "not callable"),
        ({"layout.html": LAYOUT.replace("</table>", "{{ lead.score + 'x' }}\n</table>")}, ("layout.html", 9),
         "unsupported operand"),
        ({"partials/footer.html": FOOTER.replace("{{ sender.postal_address }}", "{{ sender.name | int(1, 2, 3) }}")},
         ("partials/footer.html", 3), ""),
        ({"child.html": CHILD.replace("<tr><td>one</td></tr>", "<tr><td>{{ range(10**6) }}</td></tr>")},
         ("child.html", 4), "range()"),
        ({"child.html": CHILD.replace("<tr><td>one</td></tr>", "<tr><td>{{ lead.__class__ }}</td></tr>")},
         ("child.html", 4), "unsafe"),
    ],
)  # fmt: skip
def test_runtime_errors_name_the_template_and_line(
    templates: dict[str, str], location: tuple[str, int], message: str
) -> None:
    found = problem_in(templates)
    assert where(found) == location
    assert message in found.message


def test_an_error_in_a_multi_line_tag_points_at_its_line() -> None:
    found = problem_in({"child.html": CHILD.replace("{{ tag }}", "{{\n  tag\n  / 0 }}")})
    assert where(found) == ("child.html", 6)


def test_errors_after_a_long_layout_still_map_exactly() -> None:
    padding = "".join(f"<p>line {number}</p>\n" for number in range(200))
    layout = LAYOUT.replace("<body>\n", "<body>\n" + padding)
    found = problem_in(
        {"layout.html": layout, "partials/footer.html": FOOTER.replace("{{ sender", "{{ 1/0 }}{{ sender")}
    )
    assert where(found) == ("partials/footer.html", 3)


@pytest.mark.parametrize(
    ("templates", "location", "message"),
    [
        ({"child.html": "{% extends layout_name %}"}, ("child.html", 1), "quoted template name"),
        ({"child.html": CHILD.replace('"layout.html"', '"gone.html"')}, ("child.html", 1), "'gone.html' not found"),
        ({"layout.html": LAYOUT.replace('"partials/footer.html"', '"partials/nope.html"')}, ("layout.html", 10),
         "not found"),
        ({"child.html": '{% import "x.html" as x %}' + CHILD}, ("child.html", 1), "{% import %} is not available"),
        ({"child.html": CHILD.replace("<tr><td>one", "<tr><td {% if lead.tags %}class='x'{% endif %}>one")},
         ("child.html", 4), "between the attributes of <td>"),
        ({"child.html": "<html><body>No subject</body></html>"}, ("child.html", None), "needs a subject"),
        ({"child.html": CHILD.replace("Hi {{", "Hi {{ super() ~ ")}, ("child.html", 2), "only supported on its own"),
        ({"partials/footer.html": '{% include "partials/footer.html" %}'}, ("partials/footer.html", 1),
         "includes itself"),
    ],
)  # fmt: skip
def test_structure_problems_name_the_template_and_line(
    templates: dict[str, str], location: tuple[str, int | None], message: str
) -> None:
    found = problem_in(templates)
    assert where(found) == location
    assert message in found.message


def test_a_statement_that_starts_in_an_attribute_must_end_there() -> None:
    child = CHILD.replace("<tr><td>one</td></tr>", '<tr><td class="{% if lead.tags %}x">one</td></tr>{% endif %}')
    found = problem_in({"child.html": child})
    assert where(found) == ("child.html", 4)
    assert "must be closed inside it" in found.message


def test_an_unknown_email_is_a_problem_not_a_crash() -> None:
    found = problem_in({}, name="nope.html")
    assert found.kind == "missing"
    assert found.template == "nope.html"
