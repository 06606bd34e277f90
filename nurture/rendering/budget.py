"""What one render may spend, and how many characters a value would print as.

A render has an allowance of loop iterations, calls, printed characters and built characters (see
``RenderLimits``). Work is counted before it is done wherever its size can be known beforehand; a value that
is not text is weighed (``printed_weight``) before it is turned into text, because ``str()`` of a list of
2,000 references to one 100,000-character string makes 200 million characters.

This module knows nothing of Jinja's environment: the sandbox, the link filters and the output functions of
compiled templates all count against the same ``Budget``.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType
from typing import Any

from jinja2.sandbox import SecurityError
from jinja2.utils import Namespace

from nurture.rendering.scoped import Scoped


@dataclass(frozen=True)
class RenderLimits:
    """Per-render bounds. The defaults leave a newsletter far inside and a runaway template far outside.

    - ``max_output_chars``: what the email prints (values of any type, by the characters they print as;
      literal text in loops; links), counted before it is made.
    - ``max_string_chars``: one value made by an operator (``*``, ``+``, ``%``, ``~``), a filter or a method,
      by the characters it would print as: ``[x] * 2000`` weighs 2,000 times ``x``. A filter that reads text
      takes no argument heavier than this either.
    - ``max_built_chars``: everything the render's filters, methods and operators make, added up. It bounds
      the memory a render can hold in values it made: at most about 20 bytes per character in the worst case
      (containers of one-character strings), 1 to 4 bytes for text.
    - ``max_loop_iterations``, ``max_range``, ``max_calls``: loops, ``range()`` and calls.

    The extra memory of one render is then bounded by what it built (``max_built_chars``), what it printed
    (``max_output_chars``, up to 5 times that once escaped), and one step in flight that goes past a limit
    (a few times ``max_string_chars``): about 50 MB in the worst case with the defaults, a few MB for text.
    """

    max_output_chars: int = 1_000_000
    max_string_chars: int = 200_000
    max_built_chars: int = 2_000_000
    max_loop_iterations: int = 20_000
    max_range: int = 10_000
    max_calls: int = 20_000


DEFAULT_LIMITS = RenderLimits()


class LimitExceeded(SecurityError):
    """A template went past one of the ``RenderLimits``."""


class Budget:
    """What is left of one render's allowance."""

    __slots__ = ("built", "calls", "limits", "loops", "output")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.loops = limits.max_loop_iterations
        self.calls = limits.max_calls
        self.output = limits.max_output_chars
        self.built = limits.max_built_chars

    def spend_output(self, chars: int) -> None:
        self.output -= chars
        if self.output < 0:
            raise LimitExceeded(f"the email would be longer than {self.limits.max_output_chars} characters")

    def spend_built(self, chars: int) -> None:
        self.built -= chars
        if self.built < 0:
            raise LimitExceeded(
                f"filters, methods and operators would build more than {self.limits.max_built_chars:,} "
                "characters of values in one email"
            )

    def spend_built_value(self, value: Any) -> None:
        """Charge what ``value`` weighs (weighed no further than what is left)."""
        self.spend_built(len(value) if type(value) is str else printed_weight(value, self.built))

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


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("nurture_render_budget", default=None)
get_budget = _budget.get


def render_budget(limits: RenderLimits) -> Scoped[Budget | None]:
    """One allowance of loops, calls and output for everything rendered inside (all the parts of an email)."""
    return Scoped(_budget, Budget(limits))


def printed_text(value: Any, room: int, what: str) -> str:
    """``str(value)``, once its weight shows it makes at most ``room`` characters."""
    if isinstance(value, str):
        return str(value)
    if printed_weight(value, room) > room:
        raise LimitExceeded(f"{what} would make a string of more than {room:,} characters")
    return str(value)


# --- weights ----------------------------------------------------------------------------------------------


def printed_weight(value: Any, limit: int) -> int:
    """How many characters ``str(value)`` has, counted without making it: exact for text, numbers and the
    built-in containers (a list prints the ``repr`` of its items), the ``repr`` of the few other objects a
    template can reach (short by construction). The count stops once it passes ``limit``: the result is
    then only known to be more than ``limit``."""
    if isinstance(value, str):
        return len(value)
    kind = type(value)
    if kind is int:
        return _digits(value)
    if value is None or kind is bool or kind is float:
        return len(str(value))
    if kind in _CONTAINERS or isinstance(value, _CONTAINER_BASES) or _is_data(value):
        if kind is MappingProxyType:
            # str() of a read-only mapping is its mapping's, without the "mappingproxy()" of its repr.
            return _repr_weight(value, limit + 14) - 14
        return _repr_weight(value, limit)
    # Dates, undefined values, ranges, macros, loop objects...: short whatever a template does.
    return len(str(value))


def _digits(number: int) -> int:
    if number.bit_length() <= _PRINTABLE_INT_BITS:
        return len(str(number))
    # Python refuses to print more than 4,300 digits: an estimate (log10(2) < 0.30103, and the sign).
    return number.bit_length() * 30103 // 100000 + 2


_PRINTABLE_INT_BITS = 14_000


def _quoted_length(text: str, room: int) -> int:
    """``len(repr(text))`` for a str, without making it when the text is printable (the usual case)."""
    length = len(text) + 2
    if length > room:
        return length
    if text.isprintable():
        if "\\" in text:
            length += text.count("\\")
        if "'" in text and '"' in text:
            length += text.count("'")
        return length
    # Control characters: escapes of 2 to 10 characters each.
    return len(repr(text))


_END = object()


def _repr_weight(value: Any, limit: int) -> int:
    """The characters of ``repr(value)`` (``str`` of a container), walked without recursion; a container
    inside itself (a namespace can be) counts as its ``[...]``, as ``repr`` writes it."""
    total = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    owners: list[int] = [0]
    open_ids: set[int] = set()
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            open_ids.discard(owners.pop())
            continue
        kind = type(item)
        if kind is str:
            total += _quoted_length(item, limit - total)
        elif kind is int:
            total += _digits(item)
        elif item is None or kind is bool or kind is float:
            total += len(repr(item))
        elif isinstance(item, str):
            total += _quoted_length(item, limit - total) + len(kind.__name__) + 2
        elif kind in _CONTAINERS or isinstance(item, _CONTAINER_BASES) or _is_data(item):
            if id(item) in open_ids:
                total += 5
                continue
            frame, children = _opened(item)
            total += frame
            open_ids.add(id(item))
            owners.append(id(item))
            stack.append(children)
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item) + 3  # b'...' with escapes of up to 4 characters
        else:
            total += len(repr(item))
        if total > limit:
            return total
    return total


def _opened(item: Any) -> tuple[int, Iterator[Any]]:
    """The characters ``repr`` writes around the parts of a container, and its parts."""
    count = 0 if isinstance(item, Namespace) or _is_data(item) else len(item)
    commas = 2 * (count - 1) if count else 0
    if isinstance(item, list):
        return 2 + commas, iter(item)
    if isinstance(item, tuple):
        return 2 + commas + (count == 1), iter(item)
    if isinstance(item, dict):
        return 2 + commas + 2 * count, chain.from_iterable(item.items())
    if isinstance(item, MappingProxyType):
        return 16 + commas + 2 * count, chain.from_iterable(item.items())
    if isinstance(item, frozenset):
        return (13 + commas if count else 11), iter(item)
    if isinstance(item, set):
        return (2 + commas if count else 5), iter(item)
    if isinstance(item, Namespace):
        return 12, iter((item._Namespace__attrs,))  # type: ignore[attr-defined]
    if _is_data(item):
        names = _field_names(type(item))
        return (
            len(type(item).__qualname__) + 2 + sum(len(name) + 1 for name in names) + 2 * max(len(names) - 1, 0),
            (getattr(item, name) for name in names),
        )
    # dict_keys([...]), dict_values([...]), dict_items([(k, v), ...])
    return len(type(item).__name__) + 4 + commas, iter(item)


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(field.name for field in dataclasses.fields(kind) if field.repr)
    return names


def _is_data(value: Any) -> bool:
    """A dataclass instance (the read-only views of a render context): its repr shows its fields."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


_CONTAINERS = frozenset(
    {list, tuple, dict, set, frozenset, MappingProxyType, Namespace, type({}.keys()), type({}.values()),
     type({}.items())}
)  # fmt: skip
_CONTAINER_BASES = (list, tuple, dict, set, frozenset)
