"""Everything a template prints or builds counts against the render's limits, whatever its type, and is
weighed before it is made: a list of 2,000 references to one 100,000-character string is small in memory
but prints as 200 million characters. And templates nest only as deep as Jinja and Python can compile.

Memory is measured with tracemalloc around each render: a refused template fails with a limit, early,
and its peak stays far under MEMORY_BOUND (the RenderLimits docstring says why ~50 MB is the worst case)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import TemplateSyntaxError, nodes
from jinja2.utils import Namespace
from markupsafe import Markup

from nurture.campaigns.validation import check_text
from nurture.rendering import (
    DictTemplateSource,
    EmailRenderer,
    EmailTemplateLoader,
    RenderLimits,
    TemplateProblem,
    check_templates,
    preview_email,
)
from nurture.rendering.budget import printed_weight
from nurture.rendering.context import sample_lead
from nurture.rendering.nesting import MAX_EXPRESSION_DEPTH, MAX_NESTED_BLOCKS, MAX_NESTED_BRACKETS, MAX_NESTED_LOOPS
from nurture.rendering.sandbox import make_environment

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
HEADER = "<html><head><title>{% block subject %}Hello{% endblock %}</title></head><body>\n"
FOOTER = '\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
MEMORY_BOUND = 50_000_000
X = '{% set x = "a" * 100000 %}'
# Twelve references to one 100,000-character string: made without any operator, it prints as 1.2 million.
HEAVY = X + "{% set l = [x, x, x, x, x, x, x, x, x, x, x, x] %}"


def renderer(body: str, limits: RenderLimits | None = None) -> EmailRenderer:
    source = DictTemplateSource({"t.html": HEADER + body + FOOTER})
    return EmailRenderer(EmailTemplateLoader(source), limits=limits)


def render(body: str, limits: RenderLimits | None = None, **lead: Any) -> str:
    return preview_email("t.html", now=NOW, renderer=renderer(body, limits), lead=sample_lead(**lead)).html


def refused(body: str, **lead: Any) -> tuple[TemplateProblem, int]:
    """The problem a render of ``body`` stops with, and the peak memory it traced (compiling excluded)."""
    compiled = renderer(body)
    compiled.compile("t.html")
    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem) as caught:
            preview_email("t.html", now=NOW, renderer=compiled, lead=sample_lead(**lead))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, peak


# The reproductions of the issue, as written there.
ISSUE = [
    '{% set x = "a"*100000 %}{% set l = [x]*2000 %}{{ l }}',
    '{% set x = "a"*100000 %}{% set l = [x]*2000 %}{{ l|tojson }}',
    "{% set x = \"a\"*100000 %}{% set l = [x]*2000 %}{{ '%s' % (l,) }}",
    "{% set x = \"a\"*100000 %}{% set l = [x]*2000 %}{{ l|map('upper')|list }}",
    '{% set x = "a"*200000 %}{% set l = [x]*20000 %}{{ l }}',
]


@pytest.mark.parametrize("body", ISSUE)
def test_the_reproductions_stop_at_once_with_bounded_memory(body: str) -> None:
    problem, peak = refused(body)
    assert problem.kind == "limit"
    assert (problem.template, problem.line) == ("t.html", 2)
    assert "repeating would make a string of" in problem.message
    assert peak < MEMORY_BOUND


# Each way out for a heavy value that was made without an operator (a literal list).
SINKS = [
    ("{{ l }}", "the email would be longer than"),
    ("{% for i in range(3) %}{{ lead.tags }}{% endfor %}{{ l }}", "the email would be longer than"),
    ("{{ l|tojson }}", "the tojson filter would make a string of more than"),
    ("{{ l|string }}", "the string filter would make"),
    ("{{ l|e }}", "the e filter would make"),
    ("{{ l|safe }}", "the safe filter would make"),
    ("{{ l|upper }}", "the upper filter would make"),
    ("{{ l|pprint }}", "the pprint filter would make"),
    ("{{ l|join }}", "the join filter would make"),
    ("{{ l|replace('a', 'b') }}", "the replace filter would make"),
    ("{{ 'x'|replace('x', l) }}", "the replace filter would make"),
    ("{{ l|sort|first }}", "the sort filter would make"),
    ("{{ l|unique|list }}", "the unique filter would make"),
    ("{{ l|map('upper')|list }}", "build more than 2,000,000 characters"),
    ("{{ '%s' % (l,) }}", "formatting with % would make a string of more than"),
    ("{{ '%(a)s%(a)s%(a)s' % {'a': x} }}", "formatting with % would make a string of more than"),
    ("{{ '%s'|format(l) }}", "the format filter would make a string of more than"),
    ("{{ '%(a)s%(a)s%(a)s'|format(a=x) }}", "format would make a string of more than 200,000"),
    ("{{ '{}'.format(l) }}", "str.format would make a string of more than"),
    ("{{ '{0}{0}{0}'.format(x) }}", "str.format would make a string of more than"),
    ("{{ '{0!r}'.format(l) }}", "str.format would make a string of more than"),
    ("{{ l ~ '' }}", "joining with ~ would make a string of"),
    ("{{ l + l }}", "adding would make a string of more than"),
    ("{{ [l] * 2 }}", "repeating would make a string of"),
    ("{{ ''.join(l) }}", "str.join would make a string of more than"),
    ("{{ 'x'.center(l) }}", "str.center would make a string of"),
    ('<a href="{{ l }}">link</a>', "a link would make a string of more than"),
    ('<img src="{{ l }}" alt="">', "a link would make a string of more than"),
    ("{% set ns = namespace(items=l) %}{{ ns }}", "the email would be longer than"),
    ("{{ dict(items=l) }}", "the email would be longer than"),
    ("{% for i in range(30) %}{% set y = x|upper %}{% endfor %}", "build more than 2,000,000 characters"),
    ("{% for i in range(30) %}{% set y = x[1:] %}{% endfor %}", "build more than"),
    ("{% for i in range(30) %}{% set y = x.lower() %}{% endfor %}", "build more than"),
    ("{% set ns = namespace(s='') %}{% for i in range(5000) %}{% set ns.s = ns.s ~ 'abcdefghij' %}{% endfor %}",
     "build more than"),
    ("{% set b = 2 ** 290000 %}{% for i in range(50) %}{% set c = b - 1 %}{% endfor %}", "build more than"),
    ("{% set b = 2 ** 290000 %}{% for i in range(50) %}{% set c = -b %}{% endfor %}", "build more than"),
    ("{{ (1).to_bytes(10**9, 'big') }}", "int.to_bytes would make a string of 1000000000 characters"),
    ("{{ 'a'.encode().ljust(10**9) }}", "bytes.ljust would make a string of 1000000000 characters"),
    ("{{ ('a' * 1000).translate({97: x}) }}", "str.translate would make a string of"),
    ("{{ ('a'|safe).center(10**9) }}", "Markup.center would make a string of 1000000000 characters"),
    ("{{ [1]|batch(10**9, 0)|list }}", "batch() of 1000000000 items"),
    ("{{ x|wordwrap(1, wrapstring=x) }}", "wordwrap would make a string of"),
    ("{% macro m() %}" + "y" * 300_000 + "{{ caller() }}{% endmacro %}"
     "{% for i in range(4) %}{% call m() %}{% endcall %}{% endfor %}",
     "the email would be longer than"),
    ('{% for i in range(20) %}<a href="https://example.com/' + "p" * 100_000 + '">x</a>{% endfor %}',
     "the email would be longer than"),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "message"), SINKS)
def test_a_heavy_value_is_weighed_before_it_is_made(expression: str, message: str) -> None:
    problem, peak = refused(HEAVY + "\n" + expression)
    assert problem.kind == "limit", problem
    assert message in problem.message
    assert problem.template == "t.html" and problem.line == 3
    assert peak < MEMORY_BOUND


def test_what_a_render_may_do_it_still_does_within_the_bound() -> None:
    """The most an email may print, with a big value built on the way: it renders, within the bound."""
    # The HTML and its text part print each value: 4 x 199,000 characters in all.
    body = '{% set x = "a" * 199000 %}{% set y = x|upper %}{{ x }}{{ y }}'
    compiled = renderer(body)
    compiled.compile("t.html")
    tracemalloc.start()
    try:
        html = preview_email("t.html", now=NOW, renderer=compiled).html
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert html.count("A" * 199000) == 1 and html.count("a" * 199000) == 1
    assert peak < MEMORY_BOUND


def test_values_that_are_not_text_still_print_as_before() -> None:
    html = render(
        "{{ lead.tags }}|{{ [1, 2.5, None, True] }}|{{ {'a': 1} }}|{{ 10**20 }}|{{ 3.5 }}|{{ lead.attributes }}"
        "|{{ '%s-%s'|format(1, 2) }}|{{ '%(a)s' % {'a': 'b'} }}|{{ '{}:{}'.format(lead.tags|length, lead.score) }}"
        "|{{ lead.tags|map('upper')|join(',') }}|{{ lead.tags|tojson }}|{{ [3, 1, 2]|sum }}|{{ 'a,b'.split(',') }}"
        "|{{ (lead.first_name ~ '!')[1:] }}|{{ lead.missing }}|{{ 7 - 2 }}|{{ -lead.score }}|{{ 7 // 2 }}|{{ 1 / 2 }}"
        "|{{ dict(a=1) }}|{{ range(3)|list }}|{{ ['b', 'a']|sort|join }}|{{ lead.email|wordwrap(5) }}"
        "|{{ [1, 2, 3]|batch(2)|list }}|{% set ns = namespace(n=1) %}{{ ns }}"
    )
    assert (
        "(&#39;newsletter&#39;, &#39;webinar&#39;)|[1, 2.5, None, True]|{&#39;a&#39;: 1}|100000000000000000000|3.5"
        "|{&#39;plan&#39;: &#39;trial&#39;, &#39;trial_ends&#39;: &#39;2026-02-01&#39;}|1-2|b|2:35|NEWSLETTER,WEBINAR"
        '|["newsletter", "webinar"]|6|'
        "[&#39;a&#39;, &#39;b&#39;]|da!||5|-35|3|0.5|{&#39;a&#39;: 1}"
        "|[0, 1, 2]|ab|ada@e\nxampl\ne.com|[[1, 2], [3]]|&lt;Namespace {&#39;n&#39;: 1}&gt;"
    ) in html


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ [[1]]|sum(start=[]) }}", "sum adds numbers"),
        ("{{ [1]|tojson(2) }}", "tojson's indent is not available"),
        ("{{ 'x'|urlize }}", "No filter named 'urlize'"),
    ],
)
def test_filters_whose_output_outgrows_any_bound_are_not_available(body: str, message: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(body)
    assert caught.value.template == "t.html" and message in caught.value.message


def test_the_built_allowance_is_configurable() -> None:
    # The HTML and the text part each compute the value: 2 x (900 + 900 + 3) characters built.
    limits = RenderLimits(max_built_chars=4_000)
    assert "|900|" in render("|{{ ('x' * 900)|upper|length }}|", limits)
    with pytest.raises(TemplateProblem) as caught:
        render("|{{ ('x' * 700)|upper|lower|length }}|", limits)
    assert caught.value.kind == "limit" and "build more than 4,000 characters" in caught.value.message


# --- weights ---------------------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["it's", 'say "hi"', "both ' \"", "back\\slash", "tab\there", "\xa0", "\x00", "é\U0001f600"]
)
SCALARS = TEXT | st.integers() | st.floats() | st.booleans() | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(TEXT, inner, max_size=3)
        | st.dictionaries(TEXT, inner, max_size=3).map(MappingProxyType)
        | st.frozensets(st.integers(), max_size=3)
        | st.sets(TEXT, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_a_weight_is_the_length_of_the_printed_value(value: Any) -> None:
    printed = len(str(value))
    assert printed_weight(value, 10**9) == printed
    # Counted no further than a limit: it is then only known to be more than the limit.
    for limit in (0, printed // 2, printed - 1):
        assert printed_weight(value, limit) > limit or printed == 0
    assert printed_weight(value, printed) == printed


def test_weights_of_other_things_a_template_can_reach() -> None:
    lead = sample_lead()
    namespace = Namespace(items=[1, "a"])
    for value in (lead, [lead], namespace, Markup("<b>"), [Markup("<b>")], {"a": 1}.items(), b"a'\x00",
                  date(2026, 1, 2), [date(2026, 1, 2)], range(3)):  # fmt: skip
        assert printed_weight(value, 10**9) == len(str(value)), value
    # A namespace can hold itself: the walk ends, as repr does.
    looped = Namespace()
    looped["self"] = looped
    assert 0 < printed_weight(looped, 10**9) <= len(str(looped))


# --- nesting -------------------------------------------------------------------------------------------------


def nested_blocks(depth: int) -> str:
    return "{% if true %}\n" * depth + "x" + "{% endif %}" * depth


NESTING = [
    (nested_blocks(100), MAX_NESTED_BLOCKS + 2, "is nested 41 deep: at most 40 blocks"),
    ("{% for i in [1] %}\n" * 16 + "x" + "{% endfor %}" * 16, MAX_NESTED_LOOPS + 2, "at most 15 loops"),
    ("{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}", 2, "at most 30 brackets"),
    ("{{ " + "[" * 5_000 + "1" + "]" * 5_000 + " }}", 2, "at most 30 brackets"),
    ("{{ 1" + " + 1" * 2_000 + " }}", 2, "at most 40 operators, filters or lookups"),
    ("{{ lead" + ".x" * 2_000 + " }}", 2, "at most 40 operators, filters or lookups"),
    ("{{ " + "not " * 3_000 + "1 }}", 2, "the template nests too deeply"),
]


@pytest.mark.parametrize(("body", "line", "message"), NESTING)
def test_deep_nesting_is_a_syntax_error_at_its_line(body: str, line: int, message: str) -> None:
    [problem] = check_templates(renderer(body), now=NOW, names=["t.html"])
    assert problem.kind == "syntax"
    assert (problem.template, problem.line) == ("t.html", line)
    assert message in problem.message


def test_nesting_up_to_the_limits_compiles_and_renders() -> None:
    blocks = nested_blocks(MAX_NESTED_BLOCKS)
    loops = "{% for i in [1] %}" * MAX_NESTED_LOOPS + "y" + "{% endfor %}" * MAX_NESTED_LOOPS
    brackets = "{{ " + "(" * MAX_NESTED_BRACKETS + "1" + ")" * MAX_NESTED_BRACKETS + " }}"
    operators = "{{ 1" + " + 1" * (MAX_EXPRESSION_DEPTH - 1) + " }}"
    html = render(f"{blocks}|{loops}|{brackets}|{operators}")
    assert f"x|y|1|{MAX_EXPRESSION_DEPTH}" in html


def test_a_layout_and_its_email_nest_together() -> None:
    """Each within the limit, too deep once assembled: reported at the child's line that goes past it."""
    layout = HEADER + "{% if true %}\n" * 30 + "{% block content %}{% endblock %}" + "{% endif %}" * 30 + FOOTER
    child = '{% extends "layout.html" %}\n{% block content %}\n' + nested_blocks(20) + "\n{% endblock %}"
    source = DictTemplateSource({"layout.html": layout, "child.html": child})
    [problem] = check_templates(EmailRenderer(EmailTemplateLoader(source)), now=NOW, names=["child.html"])
    assert problem.kind == "syntax" and problem.template == "child.html"
    assert "at most 40 blocks" in problem.message
    # 30 in the layout, its content block, then the tenth of the child's.
    assert problem.line == 3 + 9


def test_a_campaign_subject_nested_too_deep_is_a_validation_error() -> None:
    steps = "steps:\n  - id: hello\n    type: send\n    template: welcome\n"
    text = f'slug: x\nname: X\nentry:\n  - on_event: go\n{steps}    subject: "{{{{ {"(" * 400}1{")" * 400} }}}}"\n'
    [issue] = check_text(text, template_exists=lambda name: True).issues
    assert "steps[0].subject: bad Jinja template: the bracket '(' is nested 31 deep" in str(issue)


def test_past_what_the_checks_foresee_jinja_and_python_still_answer_a_syntax_error() -> None:
    """The last resort: a tree deeper than the generator can walk, code deeper than Python compiles."""
    environment = make_environment(html=True)
    tree = environment.parse("line 1\n{{ 1 }}")
    [output] = [node for node in tree.body if isinstance(node, nodes.Output)]
    deep: nodes.Expr = output.nodes[-1]
    for _ in range(5_000):
        deep = nodes.Neg(deep, lineno=2)
    output.nodes[-1] = deep
    with pytest.raises(TemplateSyntaxError) as generated:
        environment.compile(tree)
    assert "nests too deeply" in generated.value.message and generated.value.lineno == 2

    code = environment.compile("{% if true %}\nx\n{% endif %}", raw=True)
    too_indented = "".join("    " * level + "if 1:\n" for level in range(101)) + "    " * 101 + "pass\n"
    with pytest.raises(TemplateSyntaxError) as compiled:
        environment._compile(code + "\n" + too_indented, "<t>")
    assert "nests too deeply" in compiled.value.message
