"""The Jinja environment email templates run in: marketers write them, so they are untrusted.

On top of Jinja's immutable sandbox (no underscore attributes, no internals of functions or frames, no
mutation of lists and dicts, ``str.format`` checked):

- reaching for an unsafe attribute raises at once instead of yielding a silent undefined value;
- every loop, call, string operation and ``range`` is counted against per-render limits, checked *before*
  the work is done, so ``'a' * 10**9`` or ``range(10**9)`` fail instead of exhausting the worker;
- the output is counted as it is produced: printed values as they are printed, the literal text of loop
  bodies through the loop guard, which knows each body's size from the compiled template;
- ``None`` prints as an empty string, not ``None``.

Printing a value is the commonest operation of a render, so the code generator writes one call per printed value
(``html_output`` or ``text_output``) that does what Jinja spreads over ``escape(environment.finalize(x))``:
count, turn ``None`` into nothing, escape (in HTML) without building a ``Markup`` that is joined away at once.
Filters named in an environment's ``final_output_filters`` return text that is final for that environment (an
escaped href in HTML): their results are printed as they are.
"""

from __future__ import annotations

import contextvars
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes, pass_context, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import do_center, do_format, do_indent, do_replace, sync_do_join, sync_do_slice
from jinja2.idtracking import VAR_LOAD_RESOLVE, VAR_LOAD_UNDEFINED
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Cycler, Joiner, Namespace
from markupsafe import Markup, escape

from nurture.rendering.channels import (
    SHARED_VALUE_PREFIX,
    TEXT_SINK,
    TextChannelExtension,
    collecting_text,
    is_text_channel,
)
from nurture.rendering.links import LINK_FILTER, LINK_FILTERS, STATIC_LINK_FILTER, URI_FILTER
from nurture.rendering.scoped import Scoped

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
# Locals of every generated function (the root and each block), read once when it starts: what a render
# prints into (see ``write_commons``).
BUDGET = "_nurture_budget"
LINKS = "_nurture_links"
TEXT = "_nurture_text"
URI_HTML = "_nurture_uri_html"
URI_TEXT = "_nurture_uri_text"
CAPTURE_BLOCK = "_nurture_capture_block"


@dataclass(frozen=True)
class RenderLimits:
    """Per-render bounds. The defaults leave a newsletter far inside and a runaway template far outside."""

    max_output_chars: int = 1_000_000
    max_string_chars: int = 200_000
    max_loop_iterations: int = 20_000
    max_range: int = 10_000
    max_calls: int = 20_000


class LimitExceeded(SecurityError):
    """A template went past one of the ``RenderLimits``."""


class _Budget:
    __slots__ = ("calls", "limits", "loops", "output")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.loops = limits.max_loop_iterations
        self.calls = limits.max_calls
        self.output = limits.max_output_chars

    def spend_output(self, chars: int) -> None:
        self.output -= chars
        if self.output < 0:
            raise LimitExceeded(f"the email would be longer than {self.limits.max_output_chars} characters")

    def spend_loops(self, iterations: int, body_chars: int) -> None:
        self.loops -= iterations
        if self.loops < 0:
            raise LimitExceeded(f"loops would run more than {self.limits.max_loop_iterations} times in one email")
        if body_chars:
            self.spend_output(iterations * body_chars)

    def counted(self, iterable: Iterable[Any], body_chars: int) -> Iterator[Any]:
        for item in iterable:
            self.spend_loops(1, body_chars)
            yield item


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("nurture_render_budget", default=None)


_get_budget = _budget.get


def _current_budget(environment: jinja2.Environment) -> _Budget:
    budget = _get_budget()
    if budget is None:
        # Outside a render: Jinja folding a constant at compile time.
        return _Budget(environment.limits)  # type: ignore[attr-defined]
    return budget


def render_budget(limits: RenderLimits) -> Scoped[_Budget | None]:
    """One allowance of loops, calls and output for everything rendered inside (all the parts of an email)."""
    return Scoped(_budget, _Budget(limits))


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
# once when it started.


def html_output(value: Any, budget: _Budget | None) -> str:
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
    if isinstance(value, str):
        _count(value)
    return escape(value)


def text_output(value: Any, budget: _Budget | None) -> str:
    """A printed value in a plain-text template: ``str(_finalize(value))`` in one call."""
    if type(value) is str:
        if budget is not None:
            budget.output -= len(value)
            if budget.output < 0:
                budget.spend_output(0)
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if isinstance(value, str):
        _count(value)
    return str(value)


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


class _GuardedCodeGenerator(CodeGenerator):
    """Wraps every loop's iterable in the loop guard and every ``~`` in a size check."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            body_chars = sum(_literal_chars(child) for child in loop.body)
            loop.iter = nodes.Filter(
                loop.iter, LOOP_GUARD, [nodes.Const(body_chars)], [], None, None, lineno=loop.iter.lineno
            )
        super().visit_Template(node, frame)

        # The printing functions and the attribute lookup, at module level of the generated code (looked up
        # when the template runs, so written last).
        self.writeline(
            f"from nurture.rendering.sandbox import html_output as {HTML_OUTPUT}, text_output as {TEXT_OUTPUT}"
        )
        self.writeline(f"from nurture.rendering.sandbox import _get_budget as {GET_BUDGET}")
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
        self.write(")")

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        # ``environment.getattr(...)`` minus a global lookup, an attribute lookup and a bound method per use;
        # for a name that is public and no mapping method (``lead.first_name``), minus the tests of the name.
        public = node.attr[:1] != "_" and node.attr not in _MAPPING_METHODS
        self.write(f"{PUBLIC_GETATTR if public else GETATTR}(")
        self.visit(node.node, frame)
        self.write(f", {node.attr!r})")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_string(")
        super().visit_Concat(node, frame)
        self.write(")")

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


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


def _check_percent_format(template: str, limits: RenderLimits) -> None:
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*":
                raise SecurityError("'*' widths are not allowed in % formatting")
            if number:
                _check_length(int(number), limits, "a % format width")


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


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _replaced_length(text: str, old: str, new: str, count: int | None) -> int:
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + max(0, len(new) - len(old)) * occurrences


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(str(value))


class EmailSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
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
                LOOP_GUARD: self._loop_guard,
                "center": self._center,
                "indent": self._indent,
                "format": self._format,
                "join": self._join,
                "replace": self._replace,
                "slice": self._slice,
            }
        )

    # --- limits -------------------------------------------------------------------------------------

    @pass_context
    def _loop_guard(self, context: Context, iterable: Any, body_chars: int) -> Any:
        # pass_context keeps Jinja from calling the guard at compile time on a constant list.
        budget = _current_budget(self)
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

    def checked_string(self, value: Any) -> Any:
        _check_length(len(value), self.limits, "joining with ~")
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        if operator == "*":
            if _is_sequence(left) and isinstance(right, int):
                _check_length(len(left) * right, limits, "repeating")
            elif _is_sequence(right) and isinstance(left, int):
                _check_length(len(right) * left, limits, "repeating")
            elif isinstance(left, int) and isinstance(right, int):
                _check_length((left.bit_length() + right.bit_length()) // 3, limits, "multiplying")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                _check_length(left.bit_length() * right // 3, limits, "raising to a power")
        elif operator == "%":
            if isinstance(left, str):
                _check_percent_format(left, limits)
        elif operator == "+" and _is_sequence(left) and _is_sequence(right):
            _check_length(len(left) + len(right), limits, "adding")
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current_budget(__self)
        budget.calls -= 1
        if budget.calls < 0:
            raise LimitExceeded(f"more than {__self.limits.max_calls} calls in one email")
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, str):
            args = __self._check_string_method(__obj.__self__, __obj.__name__, args)
        return super().call(__context, __obj, *args, **kwargs)

    def _check_string_method(self, text: str, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        limits = self.limits
        if method in {"center", "ljust", "rjust", "zfill"} and args:
            _check_length(_width(args[0]), limits, f"str.{method}")
        elif method == "expandtabs":
            tab = args[0] if args and isinstance(args[0], int) else 8
            _check_length(len(text) + text.count("\t") * tab, limits, "str.expandtabs")
        elif method == "replace" and len(args) >= 2:
            count = args[2] if len(args) > 2 else None
            _check_length(_replaced_length(text, str(args[0]), str(args[1]), count), limits, "str.replace")
        elif method == "join" and args:
            items = list(args[0])
            _check_length(sum(len(str(item)) for item in items) + len(text) * len(items), limits, "str.join")
            return (items, *args[1:])
        return args

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_spec(value.__self__, self.limits)
        return wrapped

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

    # --- bounded versions of filters that can build large strings ---------------------------------------

    def _center(self, value: Any, width: int = 80) -> str:
        _check_length(_width(width), self.limits, "center")
        return do_center(value, width)

    def _indent(self, value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        text = str(value)
        _check_length(len(text) + (text.count("\n") + 1) * _width(width), self.limits, "indent")
        return do_indent(value, width, first, blank)

    def _format(self, value: str, *args: Any, **kwargs: Any) -> str:
        _check_percent_format(str(value), self.limits)
        return do_format(value, *args, **kwargs)

    @pass_eval_context
    def _join(self, eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        _check_length(len(d) * len(items) + sum(len(str(item)) for item in items), self.limits, "join")
        return sync_do_join(eval_ctx, items, d, attribute)

    @pass_eval_context
    def _replace(self, eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
        _check_length(_replaced_length(str(s), str(old), str(new), count), self.limits, "replace")
        return do_replace(eval_ctx, s, old, new, count)

    def _slice(self, value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
        if slices > self.limits.max_range:
            raise LimitExceeded(f"slice() into {slices} parts (limit {self.limits.max_range})")
        return sync_do_slice(value, slices, fill_with)


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
