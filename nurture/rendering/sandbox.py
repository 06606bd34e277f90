"""The Jinja environment email templates run in: marketers write them, so they are untrusted.

On top of Jinja's immutable sandbox (no underscore attributes, no internals of functions or frames, no
mutation of lists and dicts, ``str.format`` checked):

- reaching for an unsafe attribute raises at once instead of yielding a silent undefined value;
- every loop, call, string operation and ``range`` is counted against per-render limits (budget.py), checked
  *before* the work is done, so ``'a' * 10**9`` or ``range(10**9)`` fail instead of exhausting the worker;
- sizes are weights: the characters a value would print as, whatever its type, counted without making its
  text (``[x] * 2000`` weighs 2,000 times ``x``), before it is printed, joined, formatted or repeated;
- the output is counted as it is produced: printed values as they are printed, the literal text and static
  links of loop bodies through the loop guard, which knows each body from the compiled template;
- everything an operator, a method call, a slice or one of Jinja's filters makes is charged to the render's
  built allowance: together they stay within ``max_built_chars``, so a render's memory stays bounded;
- templates nest only as deep as Jinja and Python can compile (nesting.py);
- ``None`` prints as an empty string, not ``None``.

Printing a value is the commonest operation of a render, so the code generator writes one call per printed value
(``html_output`` or ``text_output``) that does what Jinja spreads over ``escape(environment.finalize(x))``:
count, turn ``None`` into nothing, escape (in HTML) without building a ``Markup`` that is joined away at once.
Filters named in an environment's ``final_output_filters`` return text that is final for that environment (an
escaped href in HTML): their results are printed as they are.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import TemplateSyntaxError, nodes, pass_context, pass_environment, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import (
    do_batch,
    do_center,
    do_format,
    do_indent,
    do_replace,
    do_tojson,
    do_wordwrap,
    make_attrgetter,
    sync_do_join,
    sync_do_slice,
    sync_do_sum,
)
from jinja2.idtracking import VAR_LOAD_RESOLVE, VAR_LOAD_UNDEFINED
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from jinja2.utils import Cycler, Joiner, Namespace, _PassArg
from markupsafe import Markup, escape

from nurture.rendering.budget import (
    DEFAULT_LIMITS,
    Budget,
    LimitExceeded,
    RenderLimits,
    get_budget,
    printed_weight,
    render_budget,
)
from nurture.rendering.channels import (
    SHARED_VALUE_PREFIX,
    TEXT_SINK,
    TextChannelExtension,
    collecting_text,
    is_text_channel,
)
from nurture.rendering.links import LINK_FILTER, LINK_FILTERS, STATIC_LINK_FILTER, URI_FILTER, current_links
from nurture.rendering.nesting import ASSEMBLY_MARGIN, TOO_DEEP, check_tokens, check_tree, deepest_line, template_line

try:
    # The C escaper that markupsafe.escape wraps in a Markup.
    from markupsafe import _escape_inner as _escape_str  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - markupsafe without the private name

    def _escape_str(text: str) -> str:
        return str(escape(text))


LOOP_GUARD = "_nurture_loop_guard"
HTML_OUTPUT = "_nurture_html_output"
TEXT_OUTPUT = "_nurture_text_output"
GETATTR = "_nurture_getattr"
PUBLIC_GETATTR = "_nurture_public_getattr"
CURRENT_LINKS = "_nurture_current_links"
GET_BUDGET = "_nurture_get_budget"
# (What compiled templates import from here: the name is part of the generated code.)
_get_budget = get_budget
# Locals of every generated function (the root and each block), read once when it starts: what a render
# prints into (see ``write_commons``).
BUDGET = "_nurture_budget"
LINKS = "_nurture_links"
TEXT = "_nurture_text"
URI_HTML = "_nurture_uri_html"
URI_TEXT = "_nurture_uri_text"
CAPTURE_BLOCK = "_nurture_capture_block"
COUNTED_OUTPUT = "_nurture_counted_output"


def _current_budget(environment: jinja2.Environment) -> Budget:
    budget = _get_budget()
    if budget is None:
        # Outside a render: Jinja folding a constant at compile time.
        return Budget(environment.limits)  # type: ignore[attr-defined]
    return budget


def _finalize(value: Any) -> Any:
    """Jinja's finalize, for the constants it folds at compile time; at render time ``html_output`` and
    ``text_output`` do the same work."""
    if value is None:
        return ""
    if isinstance(value, str):
        _count(value)
    return value


def _count(value: str) -> None:
    budget = _get_budget()
    if budget is not None:
        budget.output -= len(value)
        if budget.output < 0:
            budget.spend_output(0)


# The two printing functions repeat _count's lines: they run for every printed value, and a call more each time
# shows in the render time. ``budget`` is the render's (``_get_budget()``), which the generated function read
# once when it started. Only values that are not plain text take the longer way (``_printed``).


def html_output(value: Any, budget: Budget | None) -> str:
    """A printed value in an HTML template: ``escape(_finalize(value))`` in one call."""
    kind = type(value)
    if kind is str or kind is Markup:
        if budget is not None:
            budget.output -= len(value)
            if budget.output < 0:
                budget.spend_output(0)
        return value if kind is Markup else _escape_str(value)  # type: ignore[no-any-return]
    if value is None:
        return ""
    return _printed(value, budget, html=True)


def text_output(value: Any, budget: Budget | None) -> str:
    """A printed value in a plain-text template: ``str(_finalize(value))`` in one call."""
    if type(value) is str:
        if budget is not None:
            budget.output -= len(value)
            if budget.output < 0:
                budget.spend_output(0)
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    return _printed(value, budget, html=False)


def _printed(value: Any, budget: Budget | None, *, html: bool) -> str:
    """A value other than plain text, printed: weighed before it is turned into text (``str`` of a list
    makes the text of all its items), then counted exactly."""
    kind = type(value)
    if kind is int or kind is float:
        # (Python itself refuses to print an int of more than 4,300 digits.)
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif hasattr(value, "__html__"):
        # Undefined values and other markup-like objects print what they say, as they say it.
        text = Markup(value.__html__()) if html else str(value)
    else:
        room = budget.output if budget is not None else DEFAULT_LIMITS.max_output_chars
        weight = printed_weight(value, room)
        if weight > room:
            if budget is None:
                raise LimitExceeded(f"the email would be longer than {DEFAULT_LIMITS.max_output_chars} characters")
            budget.spend_output(weight)
        text = str(value)
    if budget is not None:
        budget.spend_output(len(text))
    if not html:
        return str(text)
    return _escape_str(text) if type(text) is str else escape(text)


def counted_output(value: Any, budget: Budget | None) -> Any:
    """What a ``{% call %}`` block makes, counted as printed and otherwise left as it is."""
    if budget is not None:
        budget.spend_output(len(value) if isinstance(value, str) else printed_weight(value, budget.output))
    return value


# The output of the blocks a render asked for, as the template printed them (see ``capture_block``).
_captured: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("nurture_blocks", default=None)


def capture_block(context: Context, name: str) -> str:
    """A block the environment captures (``EmailSandbox.captured_blocks``) printed where it stands: its output is
    kept for ``render_shared``, which would otherwise render it a second time (a subject in ``<title>``)."""
    out: str = context.environment.concat(context.blocks[name][0](context))  # type: ignore[attr-defined]
    captured = _captured.get()
    if captured is not None and name not in captured:
        captured[name] = out
    return out


class BudgetedTemplate(jinja2.Template):
    """A template rendered on its own (outside ``render_budget``) gets a fresh allowance."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        with render_budget(self.environment.limits):  # type: ignore[attr-defined]
            return super().render(*args, **kwargs)

    def render_shared(
        self, variables: dict[str, Any], blocks: tuple[str, ...] = (), text: list[str] | None = None
    ) -> list[str]:
        """The template, then each of ``blocks``, rendered in one context whose parent is ``variables``
        (not copied: they must include the globals). ``text`` receives the text channel of the template (not
        of the blocks rendered again on their own). A block that the template prints once at its top level
        (outside any condition or loop) and that the environment captures is not rendered again: its output
        is the one the template printed. Errors come out with the template frames of their traceback pointing
        at template lines."""
        concat = self.environment.concat  # type: ignore[attr-defined]
        captured: dict[str, str] = {}
        token = _captured.set(captured)
        try:
            context = self.new_context(variables, shared=True)
            if text is None:
                out = [concat(self.root_render_func(context))]
            else:
                with collecting_text(text):
                    out = [concat(self.root_render_func(context))]
            if blocks and not all(block in captured for block in blocks):
                with collecting_text([]):
                    out += [
                        captured[block] if block in captured else concat(self.blocks[block](context))
                        for block in blocks
                    ]
            else:
                out += [captured[block] for block in blocks]
            return out
        except Exception:
            self.environment.handle_exception()
            raise
        finally:
            _captured.reset(token)


def _literal_chars(node: nodes.Node) -> int:
    return sum(len(data.data) for data in node.find_all(nodes.TemplateData))


def _static_links(node: nodes.Node) -> int:
    return sum(1 for found in node.find_all(nodes.Filter) if found.name == STATIC_LINK_FILTER)


class _GuardedCodeGenerator(CodeGenerator):
    """Wraps every loop's iterable in the loop guard, weighs the parts of every ``~`` before joining them, and
    prints what a ``{% call %}`` makes through the counting output functions."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            body_chars = sum(_literal_chars(child) for child in loop.body)
            # A static link prints a URL the compiled template does not hold (the link table does): the
            # guard counts the longest one the message has per link, per iteration.
            body_links = sum(_static_links(child) for child in loop.body)
            arguments: list[nodes.Expr] = [nodes.Const(body_chars), nodes.Const(body_links)]
            loop.iter = nodes.Filter(loop.iter, LOOP_GUARD, arguments, [], None, None, lineno=loop.iter.lineno)
        super().visit_Template(node, frame)

        # The printing functions and the attribute lookup, at module level of the generated code (looked up
        # when the template runs, so written last).
        self.writeline(
            f"from nurture.rendering.sandbox import html_output as {HTML_OUTPUT}, text_output as {TEXT_OUTPUT}"
        )
        self.writeline(f"from nurture.rendering.sandbox import _get_budget as {GET_BUDGET}")
        self.writeline(f"from nurture.rendering.sandbox import counted_output as {COUNTED_OUTPUT}")
        self.writeline(f"{GETATTR} = environment.getattr")
        self.writeline(f"{PUBLIC_GETATTR} = environment.public_getattr")
        self.writeline(f"from nurture.rendering.channels import text_sink as {TEXT_SINK}")
        self.writeline(f"from nurture.rendering.sandbox import capture_block as {CAPTURE_BLOCK}")
        self.writeline(
            f"from nurture.rendering.links import current_links as {CURRENT_LINKS}, uri_html as {URI_HTML}, "
            f"uri_text as {URI_TEXT}"
        )

    def enter_frame(self, frame: Frame) -> None:
        """A value shared by the two channels (channels.py) is always set before it is read, in the same
        stretch: Jinja, which sees it set in a branch or a loop, would look it up in the context each time the
        frame is entered (every iteration of a loop); it starts out missing instead."""
        loads = frame.symbols.loads
        for target, (action, name) in list(loads.items()):
            if action == VAR_LOAD_RESOLVE and isinstance(name, str) and name.startswith(SHARED_VALUE_PREFIX):
                loads[target] = (VAR_LOAD_UNDEFINED, None)
        super().enter_frame(frame)

    def write_commons(self) -> None:
        """At the start of the root and of every block function: the render's allowance, links and text
        chunks, read once rather than at every printed value, link and stretch of text. (Macros and other
        nested functions see the locals of the function they are defined in, within the same render.)"""
        super().write_commons()
        self.writeline(f"{BUDGET} = {GET_BUDGET}()")
        self.writeline(f"{LINKS} = {CURRENT_LINKS}()")
        self.writeline(f"{TEXT} = {TEXT_SINK}()")

    def visit_Block(self, node: nodes.Block, frame: Frame) -> None:
        """A captured block printed at the top level of the template (where it runs exactly once, in the
        template's own context) keeps its output for ``render_shared``."""
        assert isinstance(self.environment, EmailSandbox)
        if (
            node.name not in self.environment.captured_blocks
            or node.scoped
            or node.required
            or frame.buffer is not None
            or not frame.rootlevel
            or self.has_known_extends
            or self.extends_so_far
            or self.environment.is_async
        ):
            super().visit_Block(node, frame)
            return
        self.writeline(f"yield {CAPTURE_BLOCK}(context, {node.name!r})", node)

    def visit_ScopedEvalContextModifier(self, node: nodes.ScopedEvalContextModifier, frame: Frame) -> None:
        """What the text channel prints goes to the text list of the render, unescaped (see channels.py)."""
        if not is_text_channel(node):
            super().visit_ScopedEvalContextModifier(node, frame)
            return
        saved_buffer = frame.buffer
        saved_context = frame.eval_ctx.save()
        frame.buffer = TEXT
        frame.eval_ctx.autoescape = False
        # At run time too, for what looks at it (join, macros...): they write text. Most stretches of text
        # print values and links only, and skip the two assignments.
        switch = self._reads_escaping_at_run_time(node.body, frame)
        if switch:
            self.writeline("context.eval_ctx.autoescape = False")
        self.blockvisit(node.body, frame)
        if switch:
            self.writeline(f"context.eval_ctx.autoescape = {saved_context['autoescape']!r}")
        frame.eval_ctx.revert(saved_context)
        frame.buffer = saved_buffer

    def _reads_escaping_at_run_time(self, body: list[nodes.Node], frame: Frame) -> bool:
        """Whether anything in ``body`` may read ``context.eval_ctx`` when it runs: calls (a macro escapes its
        output by it), blocks, includes, scoped modifiers, and filters and tests that take the context, except
        the link filters written as direct reads."""
        for statement in body:
            for node in (statement, *statement.find_all(nodes.Node)):
                if isinstance(node, _READ_ESCAPING_NODES):
                    return True
                if isinstance(node, nodes.Filter):
                    if self._inlined_link(node, frame):
                        continue
                    function = self.environment.filters.get(node.name)
                elif isinstance(node, nodes.Test):
                    function = self.environment.tests.get(node.name)
                else:
                    continue
                # pass_context, pass_eval_context and pass_environment mark a function so.
                if function is None or getattr(function, "jinja_pass_arg", None) is not None:
                    return True
        return False

    def _inlined_link(self, node: nodes.Filter, frame: Frame) -> bool:
        """A link filter written as a direct read of the message's links (see ``visit_Filter``)."""
        name = node.name
        return not (
            name not in LINK_FILTERS
            or node.node is None
            or node.args
            or node.kwargs
            or node.dyn_args is not None
            or node.dyn_kwargs is not None
            or frame.eval_ctx.volatile
            or self.environment.filters.get(name) is not LINK_FILTERS[name]
            or (name == STATIC_LINK_FILTER and not _is_int_constant(node.node))
        )

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:
        """The link filters (links.py), when they are the environment's, are written as direct reads of the
        message's links: a link is printed some fifty times per email, and a filter call with its context
        argument, a context variable lookup and a test of the escaping mode cost more than the link itself.
        Where the escaping mode is only known at run time, or in a ``{% filter %}`` block, the filters run."""
        if not self._inlined_link(node, frame):
            super().visit_Filter(node, frame)
            return
        name = node.name
        html = frame.eval_ctx.autoescape
        if name == STATIC_LINK_FILTER:
            assert isinstance(node.node, nodes.Const)
            hrefs = "static_html_hrefs" if html else "static_text_hrefs"
            self.write(f"{LINKS}.{hrefs}[{node.node.value}]")
            return
        if name == LINK_FILTER:
            self.write(f"{LINKS}.{'dynamic_html' if html else 'dynamic_text'}(")
        else:
            assert name == URI_FILTER
            self.write(f"{URI_HTML if html else URI_TEXT}(")
        self.visit(node.node, frame)
        # The href counts as printed output.
        self.write(f", {BUDGET})")

    @optimizeconst
    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        """Jinja's, with a slice handed to ``EmailSandbox.sliced`` once it is made."""
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.sliced(")
        self.visit(node.node, frame)
        self.write("[")
        self.visit(node.arg, frame)
        self.write("])")

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        # ``environment.getattr(...)`` minus a global lookup, an attribute lookup and a bound method per use;
        # for a name that is public and no mapping method (``lead.first_name``), minus the tests of the name.
        public = node.attr[:1] != "_" and node.attr not in _MAPPING_METHODS
        self.write(f"{PUBLIC_GETATTR if public else GETATTR}(")
        self.visit(node.node, frame)
        self.write(f", {node.attr!r})")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """Jinja's, with the parts handed to ``EmailSandbox.joined`` to weigh before they are joined."""
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"environment.joined({join}, (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")

    def visit_CallBlock(self, node: nodes.CallBlock, frame: Frame) -> None:
        """Jinja's, with what the call returns counted as printed output (a macro's literal text is
        counted nowhere else)."""
        call_frame, macro_ref = self.macro_body(node, frame)
        self.writeline("caller = ")
        self.macro_def(macro_ref, call_frame)
        self.start_write(frame, node)
        self.write(f"{COUNTED_OUTPUT}(")
        self.visit_Call(node.call, frame, forward_caller=True)
        self.write(f", {BUDGET})")
        self.end_write(frame)

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            super()._output_child_pre(node, frame, finalize)
        elif self._is_final_output(node):
            self.write("(")
        else:
            self.write(f"{HTML_OUTPUT if frame.eval_ctx.autoescape else TEXT_OUTPUT}(")

    def _is_final_output(self, node: nodes.Expr) -> bool:
        return isinstance(node, nodes.Filter) and node.name in self._final_output_filters()

    def _final_output_filters(self) -> set[str]:
        assert isinstance(self.environment, EmailSandbox)
        return self.environment.final_output_filters

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            super()._output_child_post(node, frame, finalize)
        elif self._is_final_output(node):
            self.write(")")
        else:
            self.write(f", {BUDGET})")


def _check_length(length: int, limits: RenderLimits, what: str) -> None:
    if length > limits.max_string_chars:
        raise LimitExceeded(f"{what} would make a string of {length} characters (limit {limits.max_string_chars})")


def _check_weight(weight: int, limits: RenderLimits, what: str) -> None:
    """For a weight counted no further than the limit (``printed_weight``): only known to be more than it."""
    if weight > limits.max_string_chars:
        raise LimitExceeded(f"{what} would make a string of more than {limits.max_string_chars:,} characters")


# A conversion of % formatting: its mapping key, width, precision and type (``%%`` prints a %).
_PERCENT_SPEC = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.DOTALL)
_NUMBER = re.compile(r"\d+")


def _percent_weight(template: str, values: Any, limits: RenderLimits) -> int:
    """At most how many characters ``template % values`` makes: its text, each conversion's width and
    precision, and what the value it prints weighs (a value printed twice by name counts twice)."""
    limit = limits.max_string_chars
    positional = values if isinstance(values, tuple) else (values,)
    taken = 0
    total = len(template)
    for match in _PERCENT_SPEC.finditer(template):
        key, width, precision, conversion = match.groups()
        for number in (width, precision):
            if number == "*":
                raise SecurityError("'*' widths are not allowed in % formatting")
            if number:
                size = int(number) if len(number) < 20 else 10**20
                _check_length(size, limits, "a % format width")
                total += size
        if conversion == "%":
            continue
        if key is not None:
            value = values.get(key) if isinstance(values, Mapping) else None
        elif taken < len(positional):
            value = positional[taken]
            taken += 1
        else:
            continue  # too few values: Python says so
        total += printed_weight(value, limit - total)
        if total > limit:
            break
    return total


def _check_format_spec(template: str, limits: RenderLimits) -> None:
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format will raise the same error itself
    for _literal, _field, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested replacement fields are not allowed in format specifications")
        for number in _NUMBER.findall(spec):
            _check_length(int(number), limits, "a format width")


class _WeighedFields(string.Formatter):
    """``str.format`` weighing each field before it is converted and formatted (``format(x, '')`` of a list
    makes the text of all its items): the fields together make at most ``room`` characters."""

    room = 0
    limits = DEFAULT_LIMITS

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None and printed_weight(value, self.room) > self.room:
            self._refuse()
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.room -= printed_weight(value, self.room)
        if self.room < 0:
            self._refuse()
        return super().format_field(value, format_spec)

    def _refuse(self) -> None:
        raise LimitExceeded(f"str.format would make a string of more than {self.limits.max_string_chars:,} characters")


class _WeighedFormatter(_WeighedFields, SandboxedFormatter):
    pass


class _WeighedEscapeFormatter(_WeighedFields, SandboxedEscapeFormatter):
    pass


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _replaced_length(text: str | bytes, old: str | bytes, new: str | bytes, count: int | None) -> int:
    occurrences = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + max(0, len(new) - len(old)) * occurrences


def _width(value: Any, limits: RenderLimits) -> int:
    """A width given as a number or as the text to repeat (``indent``)."""
    return value if isinstance(value, int) else printed_weight(value, limits.max_string_chars)


# Filters that rearrange or pick items without reading their text: their arguments are not weighed (their
# results are still charged). ``map`` hands each item to a filter that is.
_STRUCTURAL_FILTERS = frozenset(
    {"abs", "attr", "batch", "count", "d", "default", "first", "float", "int", "items", "last", "length", "list",
     "map", "random", "reject", "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sum"}
)  # fmt: skip
# What calling these makes is the template's own output, counted as it is printed.
_RENDERING_CALLABLES = (Macro, BlockReference, LoopContext)
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class EmailSandbox(ImmutableSandboxedEnvironment):
    # Every operator that makes a value: what it makes is weighed, and charged to the render.
    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})
    intercepted_unops = frozenset({"-"})
    code_generator_class = _GuardedCodeGenerator
    template_class = BudgetedTemplate

    def __init__(self, limits: RenderLimits | None = None, **options: Any) -> None:
        options.setdefault("undefined", jinja2.ChainableUndefined)
        # Output is exactly what the template holds; a text part's last line break is the author's choice.
        options.setdefault("keep_trailing_newline", True)
        options["finalize"] = _finalize
        super().__init__(**options)
        self.limits = limits or RenderLimits()
        # Filters whose results are printed as they are (see the module docstring).
        self.final_output_filters: set[str] = set()
        # Blocks whose output a render asks for after the template (the subject): see ``render_shared``.
        self.captured_blocks: set[str] = set()
        self.globals.clear()
        self.globals.update(
            {"range": self._range, "dict": dict, "cycler": Cycler, "joiner": Joiner, "namespace": Namespace}
        )
        self.filters.update(
            {
                "batch": self._batch,
                "center": self._center,
                "indent": self._indent,
                "format": self._format,
                "join": self._join,
                "replace": self._replace,
                "slice": self._slice,
                "sum": self._sum,
                "tojson": self._tojson,
                "wordwrap": self._wordwrap,
            }
        )
        # Links are made trackable when a version is compiled; an email writes its links, urlize would add
        # untracked ones (and its rel and target are repeated for every URL of a text).
        del self.filters["urlize"]
        # Jinja's filters, once: filters added later (the link filters, nurture's own) bound their own work.
        for name, function in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, function)
        self.filters[LOOP_GUARD] = self._loop_guard

    # --- nesting (nesting.py) ----------------------------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return self._checked_parse(source, name, filename, margin=0)

    def parse_assembled(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """``parse`` for a source the compiler assembled from templates: it may nest a little deeper in
        brackets and expressions than they do (see nesting.py)."""
        return self._checked_parse(source, name, filename, margin=ASSEMBLY_MARGIN)

    def _checked_parse(self, source: str, name: str | None, filename: str | None, margin: int) -> nodes.Template:
        check_tokens(self._tokenize(source, name, filename), name, filename, margin)
        parser = Parser(self, source, name, filename)
        try:
            tree = parser.parse()
        except (RecursionError, MemoryError):
            # Past what the checks foresee (a thousand ``not`` in a row...): where the parser was.
            raise TemplateSyntaxError(TOO_DEEP, parser.stream.current.lineno, name, filename) from None
        check_tree(tree, name, filename, margin)
        return tree

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        try:
            return super()._generate(source, name, filename, defer_init)
        except RecursionError:
            raise TemplateSyntaxError(TOO_DEEP, deepest_line(source), name, filename) from None

    def _compile(self, source: str, filename: str) -> types.CodeType:
        try:
            return super()._compile(source, filename)
        except SyntaxError as error:
            # Python's own nesting limits: "too many levels of indentation", "too many statically nested
            # blocks", "too many nested parentheses".
            if not isinstance(error, IndentationError) and "too many" not in str(error):
                raise
            raise TemplateSyntaxError(TOO_DEEP, template_line(source, error.lineno), None, filename) from None
        except (RecursionError, MemoryError):
            raise TemplateSyntaxError(TOO_DEEP, 1, None, filename) from None

    # --- limits -------------------------------------------------------------------------------------

    @pass_context
    def _loop_guard(self, context: Context, iterable: Any, body_chars: int, body_links: int = 0) -> Any:
        # pass_context keeps Jinja from calling the guard at compile time on a constant list.
        budget = _current_budget(self)
        if body_links:
            body_chars += body_links * current_links().longest_static_href()
        try:
            size = len(iterable)
        except TypeError:
            return budget.counted(iterable, body_chars)
        budget.spend_loops(size, body_chars)
        return iterable

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > self.limits.max_range:
            raise LimitExceeded(f"range() of {len(numbers)} numbers (limit {self.limits.max_range})")
        return numbers

    def joined(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        """What ``~`` makes of ``parts``, once their weights show that it fits in ``max_string_chars``
        (joining turns each part into text)."""
        limit = self.limits.max_string_chars
        total = 0
        for part in parts:
            total += len(part) if type(part) is str else printed_weight(part, limit - total)
            if total > limit:
                break
        _check_length(total, self.limits, "joining with ~")
        joined = join(parts)
        _current_budget(self).spend_built(len(joined))
        return joined

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        weight = None
        if operator == "*":
            if _is_sequence(left) and isinstance(right, int):
                weight = self._repeated(left, right)
            elif _is_sequence(right) and isinstance(left, int):
                weight = self._repeated(right, left)
            elif isinstance(left, int) and isinstance(right, int):
                _check_length((left.bit_length() + right.bit_length()) // 3, limits, "multiplying")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                _check_length(left.bit_length() * right // 3, limits, "raising to a power")
        elif operator == "%":
            if isinstance(left, str):
                _check_weight(_percent_weight(left, right, limits), limits, "formatting with %")
        elif operator == "+" and _is_sequence(left) and _is_sequence(right):
            room = limits.max_string_chars
            weight = printed_weight(left, room)
            weight += printed_weight(right, room - weight)
            _check_weight(weight, limits, "adding")
        result = self.binop_table[operator](left, right)
        budget = _current_budget(self)
        if weight is None:
            budget.spend_built_value(result)
        else:
            budget.spend_built(weight)
        return result

    def _repeated(self, sequence: Any, times: int) -> int:
        if times <= 0:
            return 0
        weight = printed_weight(sequence, self.limits.max_string_chars // times + 1) * times
        _check_length(weight, self.limits, "repeating")
        return weight

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        result = self.unop_table[operator](arg)
        _current_budget(self).spend_built_value(result)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current_budget(__self)
        budget.calls -= 1
        if budget.calls < 0:
            raise LimitExceeded(f"more than {__self.limits.max_calls} calls in one email")
        if isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            args = __self._check_method(__obj.__self__, __obj.__name__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if not isinstance(__obj, _RENDERING_CALLABLES):
            budget.spend_built_value(result)
        return result

    def _check_method(self, owner: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Refuses a method call on text or a number that would make more than ``max_string_chars``; returns
        the arguments to call it with (an iterable given to ``join`` is read once, here)."""
        limits = self.limits
        what = f"{type(owner).__name__}.{method}"
        if isinstance(owner, int) and method == "to_bytes":
            length = args[0] if args else kwargs.get("length", 1)
            if isinstance(length, int):
                _check_length(length, limits, what)
        if not isinstance(owner, str | bytes | bytearray):
            return args
        if method in _WIDTH_METHODS and args:
            _check_length(_width(args[0], limits), limits, what)
        elif method == "expandtabs":
            tab = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tab, int):
                _check_length(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tab, limits, what)
        elif method == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            count = args[2] if len(args) > 2 else kwargs.get("count")
            if isinstance(old, str | bytes | bytearray) and isinstance(new, str | bytes | bytearray):
                _check_length(_replaced_length(owner, old, new, count), limits, what)
        elif method == "translate" and args and isinstance(args[0], Mapping):
            longest = max((len(value) for value in args[0].values() if isinstance(value, str)), default=1)
            _check_length(len(owner) * max(longest, 1), limits, what)
        elif method == "join" and args:
            items = list(args[0])
            room = limits.max_string_chars
            total = len(owner) * len(items)
            for item in items:
                total += printed_weight(item, room - total)
                if total > room:
                    break
            _check_weight(total, limits, what)
            return (items, *args[1:])
        return args

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's, with a formatter that weighs each field before it formats it."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        template = value.__self__
        if not isinstance(template, str):
            return None
        _check_format_spec(template, self.limits)
        is_format_map = value.__name__ == "format_map"
        text_type = type(template)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            formatter: _WeighedFields
            if isinstance(template, Markup):
                formatter = _WeighedEscapeFormatter(self, escape=template.escape)
            else:
                formatter = _WeighedFormatter(self)
            formatter.limits = self.limits
            formatter.room = self.limits.max_string_chars - len(template)
            return text_type(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    # --- attribute access ------------------------------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Fast paths for what render contexts are made of, so that sandboxing costs little per lookup:
        # mappings (item lookup for anything that is not a method name) and TemplateData views (all public
        # attributes are plain data), in ``public_getattr``.
        if type(obj) in _MAPPINGS:
            if attribute not in _MAPPING_METHODS:
                return self.public_getattr(obj, attribute)
        elif attribute[:1] != "_":
            return self.public_getattr(obj, attribute)
        if attribute[:1] == "_":
            # Even on undefined values: reaching for internals is a mistake worth stopping at.
            raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")
        return super().getattr(obj, attribute)

    def public_getattr(self, obj: Any, attribute: str) -> Any:
        """``getattr`` for a name that does not start with ``_`` and is not a method of a mapping (the compiled
        template calls it directly for such a name it spells out, without testing the name at every lookup)."""
        kind = type(obj)
        if kind in _MAPPINGS:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        if kind in _DATA_TYPES:
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument[:1] == "_" and not (isinstance(obj, Mapping) and argument in obj):
            return self.getattr(obj, argument)
        return super().getitem(obj, argument)

    def sliced(self, value: Any) -> Any:
        """A slice (a new string or list: Jinja makes it without ``getitem``), charged to the render."""
        _current_budget(self).spend_built_value(value)
        return value

    # --- filters ------------------------------------------------------------------------------------------

    def _bounded_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` refusing an argument that would make more than ``max_string_chars`` characters of
        text (unless it only rearranges items), with what it returns charged to the render. Jinja's marks
        (``pass_context``...) are kept: Jinja reads them to know what to pass."""
        skipped = 0 if _PassArg.from_obj(function) is None else 1
        reads_text = name not in _STRUCTURAL_FILTERS
        limits = self.limits
        what = f"the {name} filter"

        @functools.wraps(function)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            if reads_text:
                for argument in (*args[skipped:], *kwargs.values()):
                    if type(argument) is not str or len(argument) > limits.max_string_chars:
                        _check_weight(printed_weight(argument, limits.max_string_chars), limits, what)
            result = function(*args, **kwargs)
            _current_budget(self).spend_built_value(result)
            return result

        return bounded

    # Bounded versions of Jinja's filters whose result can be far larger than their arguments.

    def _batch(self, value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
        if linecount > self.limits.max_range:
            raise LimitExceeded(f"batch() of {linecount} items (limit {self.limits.max_range})")
        return do_batch(value, linecount, fill_with)

    def _center(self, value: Any, width: int = 80) -> str:
        _check_length(_width(width, self.limits), self.limits, "center")
        return do_center(value, width)

    def _indent(self, value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        text = str(value)
        _check_length(len(text) + (text.count("\n") + 1) * _width(width, self.limits), self.limits, "indent")
        return do_indent(value, width, first, blank)

    def _format(self, value: str, *args: Any, **kwargs: Any) -> str:
        _check_weight(_percent_weight(str(value), kwargs or args, self.limits), self.limits, "format")
        return do_format(value, *args, **kwargs)

    @pass_eval_context
    def _join(self, eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        if attribute is not None:
            value = map(make_attrgetter(eval_ctx.environment, attribute), value)
        items = list(value)
        room = self.limits.max_string_chars
        total = len(str(d)) * len(items)
        for item in items:
            total += printed_weight(item, room - total)
            if total > room:
                break
        _check_weight(total, self.limits, "join")
        return sync_do_join(eval_ctx, items, d)

    @pass_eval_context
    def _replace(self, eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
        _check_length(_replaced_length(str(s), str(old), str(new), count), self.limits, "replace")
        return do_replace(eval_ctx, s, old, new, count)

    def _slice(self, value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
        if slices > self.limits.max_range:
            raise LimitExceeded(f"slice() into {slices} parts (limit {self.limits.max_range})")
        return sync_do_slice(value, slices, fill_with)

    @pass_environment
    def _sum(
        self, environment: jinja2.Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
    ) -> Any:
        # Adding lists one to the next copies them again at every step.
        if not isinstance(start, int | float):
            raise SecurityError("sum adds numbers: its start must be a number")
        return sync_do_sum(environment, iterable, attribute, start)

    @pass_eval_context
    def _tojson(self, eval_ctx: EvalContext, value: Any, indent: Any = None) -> Markup:
        # Indented JSON repeats the indent on every line, once per level of nesting.
        if indent is not None:
            raise SecurityError("tojson's indent is not available in email templates")
        return do_tojson(eval_ctx, value)

    @pass_environment
    def _wordwrap(
        self,
        environment: jinja2.Environment,
        s: str,
        width: int = 79,
        break_long_words: bool = True,
        wrapstring: str | None = None,
        break_on_hyphens: bool = True,
    ) -> str:
        text = str(s)
        breaks = len(environment.newline_sequence if wrapstring is None else str(wrapstring))
        # A line holds at least one word (at most half the characters) or ``width`` characters.
        lines = len(text) // 2 + 1 + (len(text) // width if isinstance(width, int) and width > 0 else 0)
        _check_length(len(text) + lines * breaks, self.limits, "wordwrap")
        return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _is_int_constant(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and type(node.value) is int


_DATA_TYPES: set[type] = set()
_READ_ESCAPING_NODES = (
    nodes.Call, nodes.CallBlock, nodes.FilterBlock, nodes.Macro, nodes.Include, nodes.Import, nodes.FromImport,
    nodes.Block, nodes.EvalContextModifier, nodes.Extends,
)  # fmt: skip
_MAPPINGS = frozenset({dict, types.MappingProxyType})
# Jinja's loop variable: index, first, last, cycle()... all safe to read.
_DATA_TYPES.add(LoopContext)
_MAPPING_METHODS = frozenset(dir(dict)) | frozenset(dir(types.MappingProxyType))


class TemplateData:
    """Base for the read-only views put in a render context: all public attributes are plain data."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _DATA_TYPES.add(cls)


def frozen_mapping(values: Mapping[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(dict(values))


def make_environment(
    *, html: bool, limits: RenderLimits | None = None, escape_text: bool = True, **options: Any
) -> EmailSandbox:
    """The HTML one escapes what it prints. The text ones drop the line of a ``{% %}`` tag that stands alone on
    its line; with ``escape_text`` they escape what they print too (the caller unescapes the output: lines
    such as subjects), without it they print values as they are (plain-text parts)."""
    if html:
        return EmailSandbox(limits, autoescape=True, extensions=[TextChannelExtension], **options)
    return EmailSandbox(limits, autoescape=escape_text, trim_blocks=True, lstrip_blocks=True, **options)
