"""The rules every input edge applies before a value reaches the domain or the database.

The web forms and query strings, URL segments, the events API, the provider webhook, CSV rows and segment
rule values all answer bad input through these functions, so a rule lives once:

- text must be storable: no NUL character (PostgreSQL refuses it, SQLite cuts strings at it in ``LIKE``) and
  no unpaired surrogate (neither database driver can encode one; a stored one breaks every page that shows it);
- numbers must be finite and, for integers, fit the 64-bit columns they are compared with or stored in;
- JSON bodies are nested at most ``MAX_JSON_DEPTH`` deep and hold no NaN or Infinity;
- ids in URLs fit a BIGINT: a larger one names nothing (404).

Each failure is a ``ValidationError`` whose ``where`` names the field, the JSON path or the rule path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from nurture.errors import ValidationError

# The largest value of a signed 64-bit column (BIGINT): ids, scores and the integers rules compare.
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
MAX_ID = MAX_INT
# How deep a JSON body may nest: the events API and the webhook need 3; a segment rule a handful.
MAX_JSON_DEPTH = 32


def unstorable_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored as it is, or None when it can."""
    if "\x00" in text:
        return f"contains a NUL character (at character {text.index(chr(0)) + 1})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an unpaired surrogate U+{ord(text[exc.start]):04X} (at character {exc.start + 1})"
    return None


def clean_text(text: str, where: str) -> str:
    """``text`` unchanged when it can be stored; ``ValidationError`` naming ``where`` otherwise."""
    reason = unstorable_reason(text)
    if reason is not None:
        raise ValidationError(reason, where=where)
    return text


def first_unstorable(pairs: Iterable[tuple[str, str]]) -> ValidationError | None:
    """The error for the first ``(where, text)`` pair that cannot be stored (form fields, query parameters)."""
    for where, text in pairs:
        reason = unstorable_reason(where) or unstorable_reason(text)
        if reason is not None:
            return ValidationError(reason, where=where if unstorable_reason(where) is None else "field name")
    return None


def check_int(value: int, where: str) -> int:
    if not MIN_INT <= value <= MAX_INT:
        raise ValidationError(f"number out of range (at most {MAX_INT} in absolute value)", where=where)
    return value


def check_number(value: int | float, where: str) -> int | float:
    """A JSON or rule number: finite, and an integer within 64 bits."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return check_int(value, where)
    if not math.isfinite(value):
        raise ValidationError("number must be finite (not NaN or Infinity)", where=where)
    return value


def is_storable_id(value: int) -> bool:
    return 0 <= value <= MAX_ID


def _child(where: str, key: str | int) -> str:
    """The path of ``key`` inside ``where``; an empty ``where`` is a root without a name (``all[2].value``)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def check_json(value: Any, where: str = "body", *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``value`` (parsed JSON, or the same shapes built in Python) unchanged when every string and key is
    storable, every number finite and in range, and nothing nests deeper than ``max_depth``; otherwise a
    ``ValidationError`` whose ``where`` is the path to the first bad value (``body[3].properties.reason``).
    Walks without recursion, so no depth can exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            clean_text(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            check_number(item, path)
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                raise ValidationError(f"nested deeper than {max_depth} levels", where=path)
            if isinstance(item, dict):
                children: Iterable[tuple[str | int, Any]] = item.items()
            else:
                children = enumerate(item)
            entries = []
            for key, child in children:
                if isinstance(key, str):
                    reason = unstorable_reason(key)
                    if reason is not None:
                        raise ValidationError(f"a key {reason}", where=path)
                entries.append((child, _child(path, key), depth + 1))
            stack.extend(reversed(entries))
        else:
            raise ValidationError(f"unexpected value of type {type(item).__name__}", where=path)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def load_json(raw: bytes | str, where: str = "body", *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``raw`` as strict JSON (UTF-8; no NaN, Infinity or overflowing numbers) and ``check_json`` it.
    A ``ValidationError`` naming ``where`` (or the path inside it) for anything else, never a traceback:
    nesting so deep that the parser itself would recurse too far is refused too."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"not UTF-8 (byte {exc.start + 1})", where=where) from None
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValidationError(f"nested deeper than {max_depth} levels", where=where) from None
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise ValidationError(message, where=where) from None
    except ValueError as exc:
        # Our own refusals (NaN, 1e400), and integers of more digits than Python converts.
        raise ValidationError(f"not valid JSON: {str(exc).split(';')[0]}", where=where) from None
    return check_json(value, where, max_depth=max_depth)
