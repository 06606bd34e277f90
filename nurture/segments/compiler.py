"""Rule trees compiled to one SQL boolean expression over ``leads``: membership is a query, never a loop.

Every condition compiles to an expression that is TRUE or FALSE, never NULL. That is what makes
``{"not": ...}`` and the negative operators (!=, not_in, not_contains, not_empty) exact complements
of their positive twins, so a lead with no country is "not in France" rather than in neither set.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Numeric, String, and_, exists, false, literal, not_, or_, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from nurture.clock import as_utc
from nurture.leads.emails import email_key
from nurture.leads.models import Activity, Lead, StageChange, Tag, lead_tags
from nurture.segments.rules import (
    NEGATED,
    AllOf,
    AnyOf,
    Condition,
    DateValue,
    Engagement,
    EnteredStage,
    Field,
    FieldKind,
    Not,
    Op,
    RuleNode,
    TimeSpan,
    Value,
)


def compile_rules(node: RuleNode, now: datetime) -> ColumnElement[bool]:
    """The WHERE clause selecting the leads that match ``node`` at instant ``now``."""
    return _Compiler(as_utc(now)).node(node)


class _Compiler:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def node(self, node: RuleNode) -> ColumnElement[bool]:
        if isinstance(node, AllOf):
            return and_(*(self.node(child) for child in node.rules)) if node.rules else true()
        if isinstance(node, AnyOf):
            return or_(*(self.node(child) for child in node.rules)) if node.rules else false()
        if isinstance(node, Not):
            return not_(self.node(node.rule))
        if isinstance(node, Condition):
            return self.condition(node.field, node.op, node.value)
        if isinstance(node, Engagement):
            return self.engagement(node)
        return self.entered_stage(node)

    def condition(self, field: Field, op: Op, value: Value) -> ColumnElement[bool]:
        if op in NEGATED:
            return not_(self.condition(field, NEGATED[op], value))
        if field.kind is FieldKind.TAGS:
            return _tags(op, value)
        if field.kind is FieldKind.ATTRIBUTE:
            return _attribute(field.attribute, op, value)
        column: ColumnElement[Any] = getattr(Lead, field.name)
        if op is Op.IS_EMPTY:
            if field.kind in (FieldKind.TEXT, FieldKind.EMAIL):
                return or_(column.is_(None), column == "")
            return column.is_(None)
        if field.kind is FieldKind.DATE:
            expression = self.date(column, op, value)
        elif field.kind is FieldKind.EMAIL and op in (Op.EQ, Op.IN):
            # Addresses are identities: compare case-folded keys (and use their unique index).
            expression = _compare(Lead.email_key, op, _email_keys(value))
        else:
            expression = _compare(column, op, value)
        return and_(column.is_not(None), expression) if field.nullable else expression

    def date(self, column: ColumnElement[Any], op: Op, value: Value) -> ColumnElement[bool]:
        if op is Op.BETWEEN:
            assert isinstance(value, tuple)
            spans = [self.span(bound) for bound in value]
            start = min(span.start for span in spans)
            # The later end wins; at a tie, an inclusive end reaches one instant further.
            last = max(spans, key=lambda span: (span.end, span.end_inclusive))
            return and_(column >= start, _before_end(column, last))
        span = self.span(value)
        if op is Op.EQ:
            return and_(column >= span.start, _before_end(column, span))
        if op is Op.LT:
            return column < span.start
        if op is Op.LE:
            return _before_end(column, span)
        if op is Op.GT:
            return column > span.end if span.end_inclusive else column >= span.end
        if op is Op.GE:
            return column >= span.start
        raise AssertionError(f"operator {op} on a date survived validation")

    def span(self, value: Value) -> TimeSpan:
        date_value: DateValue = value  # type: ignore[assignment]
        return date_value.span(self.now)

    def engagement(self, node: Engagement) -> ColumnElement[bool]:
        criteria = [Activity.lead_id == Lead.id, Activity.kind == node.event, Activity.occurred_at <= self.now]
        if node.within_days is not None:
            criteria.append(Activity.occurred_at >= self.now - timedelta(days=node.within_days))
        if node.campaign is not None:
            criteria.append(Activity.campaign == node.campaign)
        happened = exists().where(*criteria)
        return happened if node.happened else not_(happened)

    def entered_stage(self, node: EnteredStage) -> ColumnElement[bool]:
        criteria = [
            StageChange.lead_id == Lead.id,
            StageChange.to_stage == node.stage,
            StageChange.changed_at <= self.now,
        ]
        if node.within_days is not None:
            criteria.append(StageChange.changed_at >= self.now - timedelta(days=node.within_days))
        return exists().where(*criteria)


def _before_end(column: ColumnElement[Any], span: TimeSpan) -> ColumnElement[bool]:
    return column <= span.end if span.end_inclusive else column < span.end


def _email_keys(value: Value) -> Value:
    if isinstance(value, tuple):
        return tuple(email_key(str(item)) for item in value)
    return email_key(str(value))


def _compare(column: ColumnElement[Any], op: Op, value: Value) -> ColumnElement[bool]:
    """A positive operator on a non-NULL operand (the caller guards NULLs)."""
    if op is Op.EQ:
        return column == value
    if op is Op.IN:
        assert isinstance(value, tuple)
        return column.in_(value)
    if op is Op.LT:
        return column < value
    if op is Op.LE:
        return column <= value
    if op is Op.GT:
        return column > value
    if op is Op.GE:
        return column >= value
    if op is Op.BETWEEN:
        assert isinstance(value, tuple)
        return column.between(value[0], value[1])
    # Case-insensitive, with %, _ and the escape character in the value taken literally.
    if op is Op.CONTAINS:
        return column.icontains(value, autoescape=True)
    if op is Op.STARTS_WITH:
        return column.istartswith(value, autoescape=True)
    if op is Op.ENDS_WITH:
        return column.iendswith(value, autoescape=True)
    raise AssertionError(f"operator {op} survived validation")


# --- tags ----------------------------------------------------------------------------------------------------


def _tags(op: Op, value: Value) -> ColumnElement[bool]:
    if op is Op.IS_EMPTY:
        return not_(exists().where(lead_tags.c.lead_id == Lead.id))
    names = list(value) if isinstance(value, tuple) else [value]
    return exists().where(lead_tags.c.lead_id == Lead.id, lead_tags.c.tag_id == Tag.id, Tag.name.in_(names))


# --- attributes --------------------------------------------------------------------------------------------
#
# Lead.attributes is JSONB on PostgreSQL and JSON text on SQLite. The three SQL functions below read one
# key the same way on both, so the rest of this module does not care which database runs the query.


class _AttributeFunction(FunctionElement[Any]):
    inherit_cache = True

    def __init__(self, name: str) -> None:
        super().__init__(Lead.__table__.c.attributes, literal(name, String()))


class _AttributeKind(_AttributeFunction):
    """The JSON type of ``attributes[name]``: string, number, true, false, null, array, object; '' when missing.

    Never NULL, so comparisons with it are always TRUE or FALSE."""

    type = String()
    inherit_cache = True


class _AttributeText(_AttributeFunction):
    """The text of a string value (and the JSON text of an array or object)."""

    type = String()
    inherit_cache = True


class _AttributeNumber(_AttributeFunction):
    """The value as a number, NULL unless it is a JSON number."""

    type = Numeric()
    inherit_cache = True


def _arguments(element: _AttributeFunction, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    document, name = (compiler.process(clause, **kw) for clause in element.clauses)
    return document, name


def _sqlite_path(name: str) -> str:
    return f"""'$."' || {name} || '"'"""


@compiles(_AttributeKind)
def _attribute_kind_sqlite(element: _AttributeKind, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    return (
        f"CASE json_type({document}, {_sqlite_path(name)}) WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' "
        "WHEN 'real' THEN 'number' WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
        "WHEN 'array' THEN 'array' WHEN 'object' THEN 'object' ELSE '' END"
    )


@compiles(_AttributeKind, "postgresql")
def _attribute_kind_postgresql(element: _AttributeKind, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    value = f"({document} -> {name})"
    return (
        f"CASE jsonb_typeof({value}) WHEN 'boolean' THEN ({document} ->> {name}) "
        f"ELSE coalesce(jsonb_typeof({value}), '') END"
    )


@compiles(_AttributeText)
def _attribute_text_sqlite(element: _AttributeText, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    return f"json_extract({document}, {_sqlite_path(name)})"


@compiles(_AttributeText, "postgresql")
def _attribute_text_postgresql(element: _AttributeText, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    return f"({document} ->> {name})"


@compiles(_AttributeNumber)
def _attribute_number_sqlite(element: _AttributeNumber, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    path = _sqlite_path(name)
    return f"CASE WHEN json_type({document}, {path}) IN ('integer', 'real') THEN json_extract({document}, {path}) END"


@compiles(_AttributeNumber, "postgresql")
def _attribute_number_postgresql(element: _AttributeNumber, compiler: SQLCompiler, **kw: Any) -> str:
    document, name = _arguments(element, compiler, **kw)
    value = f"({document} -> {name})"
    # CASE, not AND: PostgreSQL may evaluate AND operands in any order, and the cast fails on non-numbers.
    return f"CASE WHEN jsonb_typeof({value}) = 'number' THEN {value}::numeric END"


def _attribute(name: str, op: Op, value: Value) -> ColumnElement[bool]:
    kind = _AttributeKind(name)
    if op is Op.IS_EMPTY:
        text = _AttributeText(name)
        return or_(
            kind.in_(["", "null"]),
            and_(kind == "string", text == ""),
            and_(kind.in_(["array", "object"]), text.in_(["[]", "{}"])),
        )
    sample = value[0] if isinstance(value, tuple) else value
    if isinstance(sample, bool):
        wanted = value if isinstance(value, tuple) else (value,)
        portable = kind.in_(["true" if item else "false" for item in wanted])
    elif isinstance(sample, int | float):
        portable = and_(kind == "number", _compare(_AttributeNumber(name), op, value))
    else:
        portable = and_(kind == "string", _compare(_AttributeText(name), op, value))
    if op in (Op.EQ, Op.IN):
        return _PerDialect(portable, postgresql=_contains_any(name, value))
    return portable


def _contains_any(name: str, value: Value) -> ColumnElement[bool]:
    """``attributes @> {name: value}`` for each value: on JSONB this is the same type-strict equality
    (250 equals 250.0, "250" does not), and a GIN index on ``attributes`` can answer it."""
    values = value if isinstance(value, tuple) else (value,)
    document = Lead.__table__.c.attributes
    return or_(*(document.op("@>")(literal({name: item}, JSONB())) for item in values))


class _PerDialect(ColumnElement[bool]):
    """One condition written two ways: ``postgresql`` on PostgreSQL, ``portable`` everywhere else.

    Both must select the same rows; the PostgreSQL form exists to reach an index."""

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [
        ("portable", InternalTraversal.dp_clauseelement),
        ("postgresql", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, portable: ColumnElement[bool], *, postgresql: ColumnElement[bool]) -> None:
        self.portable = portable
        self.postgresql = postgresql


@compiles(_PerDialect)
def _per_dialect_portable(element: _PerDialect, compiler: SQLCompiler, **kw: Any) -> str:
    # Parenthesised: without a native boolean type, SQLAlchemy appends "= 1" or "= 0" to the whole.
    return f"({compiler.process(element.portable, **kw)})"


@compiles(_PerDialect, "postgresql")
def _per_dialect_postgresql(element: _PerDialect, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.postgresql, **kw)})"
