"""Importing a lead list (a CSV export) into the database, streaming, in batches, inside the caller's
transaction.

What one row does, and how it is counted (``rows == created + updated + skipped + rejected``):

- **rejected**: the row is invalid (bad email, time zone, stage, owner, consent time or IP, a value longer
  than its column, a wrong number of columns, broken CSV quoting, a cell with a NUL character or an
  unpaired surrogate, which no database can store, or bytes that no encoding of the file can read). It
  goes to the reject sink with its original values, the physical line where it starts and the reason;
  nothing of it is stored.
- **created**: no lead has this email (compared case-insensitively): a lead is created in the row's stage
  (else ``ImportOptions.stage``, else subscriber), with a StageChange (from NULL, actor kind ``import``,
  actor the file name) and an ``imported`` activity.
- **updated** (``on_duplicate=update``): a lead exists and the row changes something: non-empty cells
  overwrite profile fields, attributes are merged, tags are added, and the stage may move (rule below).
  ``updated_at`` is bumped and an ``import_updated`` activity lists what changed.
- **skipped**: the row leaves the database untouched: a lead exists and ``on_duplicate=skip``, or the
  lead was erased, or the row holds nothing the lead does not already have.

An address listed more than once in a file: its first row is applied as above; later rows only fill in
what the lead lacks (empty fields, new attribute keys, tags) and may move the stage forward in the funnel,
but never overwrite. Every row's outcome therefore depends only on what is stored, and importing the same
file twice reports 0 created and 0 updated the second time, duplicates or not. Repeats are recognised
exactly for the first ``SEEN_ADDRESSES_LIMIT`` (1,000,000) distinct addresses of a file; later ones are
found through the database and treated as first rows.

Cells that ``nurture.csvfile`` neutralised when it wrote them (a quote in front of ``=``, ``+``, ``-``,
``@``...) are read back to the value they were written from, so that ``leads list --format csv`` imports
back unchanged (a phone number ``+33 1 23 45 67 89`` is exported as ``'+33 1 23 45 67 89``).

``ImportReport.warnings`` tells what the counts do not: rows read in a legacy encoding (see
``csv_source``) and columns that name a field an earlier column already claimed. A header that repeats a
column name refuses the whole file (``MappingError``), since nothing says which column holds the value.

Safety rules:

- Import never sets ``status``: a suppressed lead (unsubscribed, bounced, complained) stays suppressed, and
  an erased lead is never touched at all. A ``status`` column, like the other columns nurture manages
  (score, temperature, created_at, updated_at), is ignored; a column map can keep it as an attribute.
- The stage of an existing lead only changes when the row names a stage explicitly, through
  ``nurture.leads.service.change_stage``, and only forward in the funnel (subscriber -> ... -> customer) or
  to or from ``lost``. A backward move in the file (a customer listed as "lead") is ignored, not an error.
  ``ImportOptions.stage`` applies to new leads only.
- ``ImportOptions.source`` fills the source of a new lead, or of an existing one that has none, when the
  row has none; ``ImportOptions.tags`` are added to every lead the file creates or updates (so an existing
  lead that lacks one of them counts as updated).

Memory stays flat whatever the file size: records are streamed (a 64 KiB sample plus one record), at most
``batch_size`` parsed rows wait while one batch is being written, and what lives across batches is bounded:
the tag name -> id cache (one entry per distinct tag), the email-domain cache (at most 20,000 domains) and
the time-zone spelling cache (at most 4,096) and the addresses seen, to recognise repeats (at most
1,000,000 of them, about 100 MB; 10 MB for a 100,000-row file).

On PostgreSQL each batch of new leads costs two round trips (COPY into a temporary table, then one
statement that inserts the leads, their history and tags), and parsing the next batch overlaps that work
on a worker thread. Elsewhere SQLAlchemy Core bulk statements are used. Existing leads are updated with one
executemany per batch.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

from sqlalchemy import String, Table, any_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, lazyload

from nurture import csvfile
from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.errors import ValidationError
from nurture.inputs import clean_text, unstorable_reason
from nurture.leads import columns as cols
from nurture.leads.csv_source import Record, UnusableFile, open_csv
from nurture.leads.emails import InvalidEmail
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.models import Activity, ActorKind, Lead, StageChange, lead_tags
from nurture.leads.service import Actor, change_stage, ensure_tags

IMPORTED = "imported"
IMPORT_UPDATED = "import_updated"
DEFAULT_BATCH_SIZE = 2_000
# Addresses remembered per import to recognise a repeated one: about 100 bytes each, so at most ~100 MB.
SEEN_ADDRESSES_LIMIT = 1_000_000
_ACTOR_LENGTH = 320

leads_table: Table = Lead.__table__  # type: ignore[assignment]
stage_changes_table: Table = StageChange.__table__  # type: ignore[assignment]
activities_table: Table = Activity.__table__  # type: ignore[assignment]

# Everything a row may set on a lead besides tags, stage and attributes.
_ROW_FIELDS: tuple[str, ...] = (*cols.TEXT_FIELDS, cols.TIMEZONE, cols.OWNER, cols.CONSENT_AT, cols.CONSENT_IP)


class DuplicatePolicy(StrEnum):
    UPDATE = "update"
    SKIP = "skip"


@dataclass(frozen=True)
class ImportOptions:
    tags: tuple[str, ...] = ()
    source: str | None = None
    # Stage of new leads whose row names none; subscriber when unset.
    stage: Stage | None = None
    # "CSV Column" -> field name, "attributes.<key>" or "ignore".
    column_map: Mapping[str, str] = field(default_factory=dict)
    on_duplicate: DuplicatePolicy = DuplicatePolicy.UPDATE
    # Shown as the actor of the history rows; defaults to the file's base name (or "upload" for a stream).
    file_name: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    # One sentence each: how rows were decoded, columns kept as attributes (see the module docstring).
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        return (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.skipped} skipped, {self.rejected} rejected"
        )


@dataclass(frozen=True)
class ImportProgress:
    rows: int
    bytes_read: int
    total_bytes: int | None


class RejectSink(Protocol):
    def start(self, header: Sequence[str]) -> None:
        """Called once with the file's header before any reject."""

    def reject(self, line: int, values: Sequence[str], reason: str) -> None:
        """One refused row: its physical starting line, its original values and why."""


class CsvRejectSink:
    """Writes rejects as CSV: ``line``, ``reason``, then the original columns. Given a path, the file is
    created only once the import has a header to write (an unusable file leaves no rejects file), in
    UTF-8 with a BOM so that spreadsheet programs show accents right; given a text stream, writes to it.
    Written through ``nurture.csvfile``: a cell that would run as a spreadsheet formula is neutralised
    (and read back as written when the fixed file is imported again)."""

    def __init__(self, target: TextIO | str | os.PathLike[str]) -> None:
        self._path = None if hasattr(target, "write") else Path(target)  # type: ignore[arg-type]
        self._stream: TextIO | None = None if self._path else target  # type: ignore[assignment]
        self._writer: Any = None
        self.count = 0

    def start(self, header: Sequence[str]) -> None:
        if self._path is not None:
            try:
                # A rejected row may hold an unpaired surrogate: written as \ud800, for the reader to see.
                self._stream = self._path.open("w", newline="", encoding="utf-8-sig", errors="backslashreplace")
            except OSError as exc:
                raise ValidationError(f"cannot write {self._path} ({exc.strerror})", where="rejects") from None
        self._writer = csvfile.writer(self._stream)  # type: ignore[arg-type]
        self._writer.writerow(["line", "reason", *header])

    def reject(self, line: int, values: Sequence[str], reason: str) -> None:
        self._writer.writerow([line, reason, *values])
        self.count += 1

    def close(self) -> None:
        if self._path is not None and self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> CsvRejectSink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(slots=True)
class _Row:
    line: int
    email: str
    key: str
    fields: dict[str, Any]
    stage: Stage | None
    tags: list[str]
    attributes: dict[str, str]
    # An earlier row of the same file had this address: this one only fills in (see the module docstring).
    repeat: bool = False


class _RowParser:
    """Turns a record into a validated ``_Row`` or raises ``_Rejected`` with the reason.

    Columns are grouped by kind up front so that the per-row loop does no dispatch on field names: this
    loop runs once per cell of the file."""

    def __init__(self, mapping: cols.ColumnMapping, now: datetime) -> None:
        self._width = mapping.width
        self._headers = [column.header or f"column {column.index + 1}" for column in mapping.columns]
        self._email_index = mapping.email_index
        self._normalise_email = cols.EmailNormaliser()
        parsers: dict[str, Callable[[str], Any]] = {
            cols.TIMEZONE: cols.parse_timezone,
            cols.OWNER: lambda value: cols.owner_email(value, self._normalise_email),
            # A day of slack: exports written in local time but read as UTC may look a few hours ahead.
            cols.CONSENT_AT: lambda value: cols.parse_consent_at(value, now + timedelta(days=1)),
            cols.CONSENT_IP: cols.parse_ip,
        }
        self._texts: list[tuple[int, str, str, int]] = []
        self._attributes: list[tuple[int, str, str]] = []
        self._parsed: list[tuple[int, str, str, Callable[[str], Any], int]] = []
        self._stage: tuple[int, str] | None = None
        self._tags: tuple[int, str] | None = None
        for column in mapping.columns:
            name, header = column.field, column.header
            if name == cols.EMAIL or column.target == cols.IGNORE:
                continue
            if name is None:
                self._attributes.append((column.index, header, column.attribute or ""))
            elif name == cols.STAGE:
                self._stage = (column.index, header)
            elif name == cols.TAGS:
                self._tags = (column.index, header)
            elif name in parsers:
                self._parsed.append((column.index, header, name, parsers[name], cols.FIELD_LENGTHS.get(name, 0)))
            else:
                self._texts.append((column.index, header, name, cols.FIELD_LENGTHS[name]))

    def parse(self, record: Record) -> _Row:
        if record.error:
            raise _Rejected(record.error)
        values = record.values
        width = self._width
        if len(values) != width and not (len(values) > width and not "".join(values[width:]).strip()):
            raise _Rejected(f"has {len(values)} columns; the header has {width}")
        joined = "".join(values)
        if unstorable_reason(joined) is not None:
            raise _Rejected(self._unstorable(values))
        if "'" in joined:
            values = [csvfile.restore(value) for value in values]
        raw_email = values[self._email_index]
        try:
            email = self._normalise_email(raw_email)
        except InvalidEmail as exc:
            raise _Rejected(f"email {raw_email.strip()!r}: {exc}") from None
        if len(email) > cols.FIELD_LENGTHS[cols.EMAIL]:
            raise _Rejected(_too_long("email", email, cols.FIELD_LENGTHS[cols.EMAIL]))

        fields: dict[str, Any] = {}
        for index, header, name, limit in self._texts:
            value = values[index]
            if value:
                value = value.strip()
                if value:
                    if len(value) > limit:
                        raise _Rejected(_too_long(header, value, limit))
                    fields[name] = value
        for index, header, name, parse, limit in self._parsed:
            value = values[index].strip()
            if value:
                try:
                    parsed = parse(value)
                except ValueError as exc:
                    raise _Rejected(f"{header}: {exc}") from None
                if limit and len(parsed) > limit:
                    raise _Rejected(_too_long(header, parsed, limit))
                fields[name] = parsed
        attributes: dict[str, str] = {}
        for index, header, key in self._attributes:
            value = values[index]
            if value:
                value = value.strip()
                if value:
                    if len(value) > cols.ATTRIBUTE_VALUE_LENGTH:
                        raise _Rejected(_too_long(header, value, cols.ATTRIBUTE_VALUE_LENGTH))
                    attributes[key] = value
        stage = None
        if self._stage is not None:
            index, header = self._stage
            value = values[index].strip()
            if value:
                try:
                    stage = cols.parse_stage_value(value)
                except ValueError as exc:
                    raise _Rejected(f"{header}: {exc}") from None
        tags: list[str] = []
        if self._tags is not None:
            index, header = self._tags
            if values[index]:
                tags = cols.parse_tags(values[index])
                for tag in tags:
                    if len(tag) > cols.TAG_LENGTH:
                        raise _Rejected(_too_long(f"{header} (tag {tag[:20]!r}…)", tag, cols.TAG_LENGTH))
        return _Row(record.line, email, email.lower(), fields, stage, tags, attributes)

    def _unstorable(self, values: Sequence[str]) -> str:
        """The reason for a row that holds text no database can store, naming its first such cell."""
        for index, value in enumerate(values):
            reason = unstorable_reason(value)
            if reason is not None:
                where = self._headers[index] if index < len(self._headers) else f"column {index + 1}"
                return f"{where}: {reason}"
        return "holds text that cannot be stored"


def _too_long(where: str, value: str, limit: int) -> str:
    return f"{where}: {len(value)} characters; at most {limit} allowed"


def import_may_move(current: Stage, target: Stage, *, repeat: bool = False) -> bool:
    """Whether an import may move a lead from ``current`` to ``target``: forward in the funnel, or to or
    from lost (the file says so explicitly); never backwards by accident. A repeated row of an address
    only moves it forward in the funnel, so that the order of a file's rows cannot swing a lead back and
    forth when the file is imported again."""
    if current == target:
        return False
    if Stage.LOST in (current, target):
        return not repeat
    return (target.rank or 0) > (current.rank or 0)


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# Columns an import may change on an existing lead (besides stage, through change_stage, and updated_at).
_UPDATED_COLUMNS: tuple[str, ...] = (*_ROW_FIELDS, "attributes")
# Columns a new lead gets from its row (the rest are the same for the whole batch).
_NEW_LEAD_COLUMNS: tuple[str, ...] = ("email", "email_key", *_ROW_FIELDS, "attributes", "stage")
_STAGE_CHANGE_COLUMNS = ("lead_id", "from_stage", "to_stage", "changed_at", "reason", "actor_kind", "actor")
_ACTIVITY_COLUMNS = ("lead_id", "kind", "occurred_at", "campaign", "data")


@dataclass(frozen=True)
class _NewLeads:
    """Everything a batch of new leads gets besides their rows."""

    now: datetime
    stage: Stage
    source: str | None
    tags: tuple[str, ...]
    actor: str
    tag_ids: Mapping[str, int]

    def stage_of(self, row: _Row) -> Stage:
        return row.stage or self.stage

    def source_of(self, row: _Row) -> str | None:
        return row.fields.get("source") or self.source

    def tag_ids_of(self, row: _Row) -> set[int]:
        return {self.tag_ids[name] for name in (*row.tags, *self.tags)}


class _CoreBulk:
    """Bulk reads and writes through SQLAlchemy Core: any dialect with INSERT .. ON CONFLICT .. RETURNING
    (SQLite 3.35+, PostgreSQL)."""

    SELECTED = (leads_table.c.id, leads_table.c.email_key, leads_table.c.status, leads_table.c.stage,
                leads_table.c.attributes, *(leads_table.c[name] for name in _ROW_FIELDS))

    def __init__(self, session: Session) -> None:
        self.session = session
        self._insert_leads = (
            _insert(session, leads_table)
            .on_conflict_do_nothing(index_elements=[leads_table.c.email_key])
            .returning(leads_table.c.id, leads_table.c.email_key)
            # Small pages: each distinct page size is a statement the driver keeps prepared (SQLite keeps
            # 128), and a 1,000-row statement costs megabytes.
            .execution_options(insertmanyvalues_page_size=100)
        )
        self._link_tags = _insert(session, lead_tags).on_conflict_do_nothing()

    def existing(self, keys: Collection[str]) -> dict[str, Any]:
        result = self.session.execute(select(*self.SELECTED).where(leads_table.c.email_key.in_(keys)))
        return {row.email_key: row for row in result}

    def create(self, rows: list[_Row], new: _NewLeads) -> set[str]:
        """Insert new leads with their entry stage, ``imported`` activity and tags, skipping addresses that
        exist by now; returns the email keys inserted."""
        now = new.now
        blank = dict.fromkeys(_ROW_FIELDS)
        shared = {
            "stage_entered_at": now,
            "score": 0,
            "temperature": Temperature.COLD,
            "status": LeadStatus.ACTIVE,
            "created_at": now,
            "updated_at": now,
            "last_engaged_at": None,
        }
        params = [
            {
                **blank,
                **row.fields,
                **shared,
                "email": row.email,
                "email_key": row.key,
                "source": new.source_of(row),
                "attributes": row.attributes,
                "stage": new.stage_of(row),
            }
            for row in rows
        ]
        ids = {key: lead_id for lead_id, key in self.session.execute(self._insert_leads, params)}
        created = [row for row in rows if row.key in ids]
        if not created:
            return set()
        self.session.execute(
            stage_changes_table.insert(),
            [
                {
                    "lead_id": ids[row.key],
                    "from_stage": None,
                    "to_stage": new.stage_of(row),
                    "changed_at": now,
                    "reason": IMPORTED,
                    "actor_kind": ActorKind.IMPORT,
                    "actor": new.actor,
                }
                for row in created
            ],
        )
        self.insert_activities(
            [(ids[row.key], IMPORTED, now, {"file": new.actor, "line": row.line}) for row in created]
        )
        self.link_tags([(ids[row.key], tag_id) for row in created for tag_id in new.tag_ids_of(row)])
        return set(ids)

    def insert_activities(self, activities: list[tuple[int, str, datetime, dict[str, Any]]]) -> None:
        if activities:
            self.session.execute(
                activities_table.insert(),
                [
                    {"lead_id": lead_id, "kind": kind, "occurred_at": at, "campaign": None, "data": data}
                    for lead_id, kind, at, data in activities
                ],
            )

    def link_tags(self, links: list[tuple[int, int]]) -> None:
        if links:
            self.session.execute(self._link_tags, [{"lead_id": lead, "tag_id": tag} for lead, tag in links])


class _PostgresBulk(_CoreBulk):
    """New leads in two round trips per batch: ``COPY`` of the rows into a temporary table, then one
    statement that inserts the leads (``ON CONFLICT DO NOTHING``) and, from what it returns, their stage
    history, activity and tags. The same rows as ``_CoreBulk.create`` writes; tests run both."""

    STAGING = "nurture_import_rows"
    _STAGED = ("line", *_NEW_LEAD_COLUMNS, "tag_ids")

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._existing = select(*self.SELECTED).where(
            leads_table.c.email_key == any_(bindparam("keys", type_=postgresql.ARRAY(String)))
        )
        column_types = {name: "timestamptz" if name == "consent_at" else "text" for name in _ROW_FIELDS}
        self._create_staging = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.STAGING} (line integer, email text, email_key text, "
            + "".join(f"{name} {column_types[name]}, " for name in _ROW_FIELDS)
            + "attributes jsonb, stage text, tag_ids integer[]) ON COMMIT DROP"
        )
        lead_columns = ", ".join(_NEW_LEAD_COLUMNS)
        self._insert = f"""
            WITH inserted AS (
                INSERT INTO leads ({lead_columns}, stage_entered_at, score, temperature, status, created_at,
                                   updated_at)
                SELECT {lead_columns}, %(now)s, 0, %(temperature)s, %(status)s, %(now)s, %(now)s
                FROM {self.STAGING} ORDER BY line
                ON CONFLICT (email_key) DO NOTHING
                RETURNING id, email_key, stage
            ), history AS (
                INSERT INTO stage_changes ({", ".join(_STAGE_CHANGE_COLUMNS)})
                SELECT id, NULL, stage, %(now)s, %(reason)s, %(actor_kind)s, %(actor)s FROM inserted
            ), timeline AS (
                INSERT INTO activities (lead_id, kind, occurred_at, data)
                SELECT inserted.id, %(kind)s, %(now)s,
                       jsonb_build_object('file', %(actor)s::text, 'line', staged.line)
                FROM inserted JOIN {self.STAGING} AS staged USING (email_key)
            ), tagged AS (
                INSERT INTO lead_tags (lead_id, tag_id)
                SELECT inserted.id, tag.id
                FROM inserted JOIN {self.STAGING} AS staged USING (email_key)
                CROSS JOIN LATERAL unnest(staged.tag_ids) AS tag(id)
            )
            SELECT email_key FROM inserted
        """

    def existing(self, keys: Collection[str]) -> dict[str, Any]:
        result = self.session.execute(self._existing, {"keys": list(keys)})
        return {row.email_key: row for row in result}

    def create(self, rows: list[_Row], new: _NewLeads) -> set[str]:
        connection = self.session.connection().connection.driver_connection
        with connection.cursor() as cursor:
            cursor.execute(self._create_staging)
            with cursor.copy(f"COPY {self.STAGING} ({', '.join(self._STAGED)}) FROM STDIN") as copy:
                source = _ROW_FIELDS.index("source")
                for row in rows:
                    values = [row.fields.get(name) for name in _ROW_FIELDS]
                    values[source] = new.source_of(row)
                    copy.write_row(
                        (
                            row.line,
                            row.email,
                            row.key,
                            *values,
                            json.dumps(row.attributes) if row.attributes else "{}",
                            new.stage_of(row).value,
                            "{" + ",".join(map(str, new.tag_ids_of(row))) + "}",
                        )
                    )
            cursor.execute(
                self._insert,
                {
                    "now": new.now,
                    "temperature": Temperature.COLD.value,
                    "status": LeadStatus.ACTIVE.value,
                    "reason": IMPORTED,
                    "actor_kind": ActorKind.IMPORT.value,
                    "actor": new.actor,
                    "kind": IMPORTED,
                },
            )
            inserted = {key for (key,) in cursor.fetchall()}
            # TRUNCATE, not DELETE: a temporary table is never vacuumed, and dead rows would slow every batch.
            cursor.execute(f"TRUNCATE {self.STAGING}")
        return inserted


class _BatchWriter:
    """Writes batches of rows with unique email keys: bulk selects and inserts, Core updates, and
    ``change_stage`` for the rare stage moves of existing leads."""

    def __init__(
        self, session: Session, clock: Clock, options: ImportOptions, actor_name: str, report: ImportReport
    ) -> None:
        self._session = session
        self._bulk = _PostgresBulk(session) if is_postgresql(session) else _CoreBulk(session)
        self._clock = clock
        self._options = options
        self._actor = Actor(ActorKind.IMPORT, actor_name)
        self._activity_data = {"file": actor_name}
        self._report = report
        self._tag_ids: dict[str, int] = {}
        self._update_statement = (
            update(leads_table)
            .where(leads_table.c.id == bindparam("lead_id"))
            .values({name: bindparam(f"v_{name}") for name in (*_UPDATED_COLUMNS, "updated_at")})
        )

    def write(self, rows: list[_Row]) -> None:
        if not rows:
            return
        now = self._clock.now()
        existing = self._bulk.existing([row.key for row in rows])
        fresh = [row for row in rows if row.key not in existing]
        if fresh:
            options = self._options
            tag_ids = self._tag_id_map({name for row in fresh for name in (*row.tags, *options.tags)})
            new = _NewLeads(
                now, options.stage or Stage.SUBSCRIBER, options.source, options.tags, self._actor.name or "", tag_ids
            )
            created = self._bulk.create(fresh, new)
            self._report.created += len(created)
            conflicted = [row for row in fresh if row.key not in created]
            if conflicted:
                # Created by someone else between our select and insert: treat them as existing.
                existing.update(self._bulk.existing([row.key for row in conflicted]))
        to_update = [row for row in rows if row.key in existing]
        if to_update:
            self._update(to_update, existing, now)

    def _tag_id_map(self, names: Iterable[str]) -> dict[str, int]:
        missing = {name for name in names if name not in self._tag_ids}
        if missing:
            for tag in ensure_tags(self._session, missing):
                self._tag_ids[tag.name] = tag.id
        return self._tag_ids

    def _update(self, rows: list[_Row], existing: dict[str, Any], now: datetime) -> None:
        report = self._report
        options = self._options
        if options.on_duplicate is DuplicatePolicy.SKIP:
            report.skipped += len(rows)
            return
        kept = [row for row in rows if existing[row.key].status != LeadStatus.ERASED]
        report.skipped += len(rows) - len(kept)
        rows = kept
        tag_ids = self._tag_id_map({name for row in rows for name in (*row.tags, *options.tags)})
        linked = self._linked_tags([existing[row.key].id for row in rows], tag_ids)

        updates: list[dict[str, Any]] = []
        new_links: list[tuple[int, int]] = []
        moves: dict[int, tuple[Stage, _Row]] = {}
        activities: list[tuple[int, str, datetime, dict[str, Any]]] = []
        for row in rows:
            lead = existing[row.key]
            stored_attributes = lead.attributes or {}
            if row.repeat:
                changed: dict[str, Any] = {
                    name: value for name, value in row.fields.items() if getattr(lead, name) is None
                }
                added = {key: value for key, value in row.attributes.items() if key not in stored_attributes}
                if added:
                    changed["attributes"] = {**stored_attributes, **added}
            else:
                changed = {name: value for name, value in row.fields.items() if getattr(lead, name) != value}
                if any(stored_attributes.get(key) != value for key, value in row.attributes.items()):
                    changed["attributes"] = {**stored_attributes, **row.attributes}
            if options.source and "source" not in row.fields and lead.source is None:
                changed["source"] = options.source
            tags_added = sorted(
                name for name in {*row.tags, *options.tags} if (lead.id, tag_ids[name]) not in linked
            )
            new_links.extend((lead.id, tag_ids[name]) for name in tags_added)
            moving = row.stage is not None and import_may_move(lead.stage, row.stage, repeat=row.repeat)
            if moving:
                moves[lead.id] = (row.stage, row)  # type: ignore[assignment]
            if not changed and not tags_added and not moving:
                report.skipped += 1
                continue
            report.updated += 1
            what = sorted(changed) + (["tags"] if tags_added else []) + (["stage"] if moving else [])
            activities.append(
                (lead.id, IMPORT_UPDATED, now, {**self._activity_data, "line": row.line, "changed": what})
            )
            # Every updatable column is written (stored value where unchanged) so that one statement serves
            # the whole batch.
            updates.append(
                {
                    "lead_id": lead.id,
                    "v_updated_at": now,
                    **{f"v_{name}": changed.get(name, getattr(lead, name)) for name in _UPDATED_COLUMNS},
                }
            )

        if updates:
            self._session.execute(self._update_statement, updates)
        self._bulk.link_tags(new_links)
        self._bulk.insert_activities(activities)
        if moves:
            self._move_stages(moves)

    def _linked_tags(self, lead_ids: list[int], tag_ids: Mapping[str, int]) -> set[tuple[int, int]]:
        if not lead_ids or not tag_ids:
            return set()
        # By lead only, so the primary key serves it: a tag on every lead (the --tag of a big import) would
        # otherwise tempt the planner into reading all of that tag's links.
        result = self._session.execute(
            select(lead_tags.c.lead_id, lead_tags.c.tag_id).where(lead_tags.c.lead_id.in_(lead_ids))
        )
        return {(lead_id, tag_id) for lead_id, tag_id in result}

    def _move_stages(self, moves: dict[int, tuple[Stage, _Row]]) -> None:
        session = self._session
        already_loaded = {key[1][0] for key in session.identity_map if key[0] is Lead}
        leads = session.scalars(
            select(Lead)
            .where(Lead.id.in_(list(moves)))
            .options(lazyload(Lead.tags))
            .execution_options(populate_existing=True)
        ).all()
        for lead in leads:
            target, row = moves[lead.id]
            change_stage(
                session,
                self._clock,
                lead,
                target,
                reason=f"{IMPORTED} (line {row.line})",
                actor=self._actor,
            )
        session.flush()
        # Keep memory flat on large re-imports: forget what this batch loaded or created.
        moved_ids = set(moves)
        for instance in list(session.identity_map.values()):
            if isinstance(instance, StageChange | Activity) and instance.lead_id in moved_ids:
                session.expunge(instance)
        for lead in leads:
            if lead.id not in already_loaded:
                session.expunge(lead)


class _WriteBehind:
    """Runs the writer on one worker thread so that parsing the next batch overlaps the database's work
    on this one (on PostgreSQL the writer mostly waits for the server, with the GIL released). At most
    one batch is in flight and the main thread never touches the session meanwhile, so the session is
    only ever used by one thread at a time."""

    def __init__(self, write: Callable[[list[_Row]], None], *, threaded: bool) -> None:
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurture-import") if threaded else None
        self._in_flight: Future[None] | None = None

    def submit(self, rows: list[_Row]) -> None:
        self.wait()
        if self._executor is None:
            self._write(rows)
        else:
            self._in_flight = self._executor.submit(self._write, rows)

    def wait(self) -> None:
        """Block until the batch in flight is written, raising what the writer raised."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._in_flight is not None:
                # Already failing: let the write finish before the caller rolls back, and report the first
                # error rather than this one.
                concurrent.futures.wait([self._in_flight])
        finally:
            if self._executor is not None:
                self._executor.shutdown()


def _actor_name(source: str | os.PathLike[str] | BinaryIO, options: ImportOptions) -> str:
    if options.file_name:
        name = options.file_name
    elif isinstance(source, str | os.PathLike):
        name = Path(source).name
    else:
        stream_name = getattr(source, "name", None)
        name = Path(stream_name).name if isinstance(stream_name, str) and stream_name else "upload"
    if unstorable_reason(name) is not None:
        # A file name of bytes that are not UTF-8 (a surrogate escape each): shown as U+FFFD.
        name = "".join("\ufffd" if unstorable_reason(char) else char for char in name)
    return name[:_ACTOR_LENGTH]


def _check_options(options: ImportOptions) -> None:
    for tag in options.tags:
        clean_text(tag, "--tag")
        if not tag.strip():
            raise ValidationError("a tag cannot be empty", where="--tag")
        if len(tag.strip()) > cols.TAG_LENGTH:
            raise ValidationError(f"tag {tag[:20]!r}… is longer than {cols.TAG_LENGTH} characters", where="--tag")
    if options.source is not None:
        clean_text(options.source, "--source")
        if len(options.source) > cols.FIELD_LENGTHS["source"]:
            raise ValidationError(f"longer than {cols.FIELD_LENGTHS['source']} characters", where="--source")
    if options.batch_size < 1:
        raise ValidationError("must be at least 1", where="batch_size")


def import_leads(
    session: Session,
    clock: Clock,
    source: str | os.PathLike[str] | BinaryIO,
    options: ImportOptions | None = None,
    *,
    rejects: RejectSink | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportReport:
    """Import a CSV lead list from a path or a binary stream. Never commits: the caller owns the
    transaction (and rolls back for a dry run).

    Raises ``UnusableFile`` when the file itself cannot be read as CSV, ``MappingError`` when no column
    holds the email or a ``column_map`` entry is wrong (both messages start with the file name), and
    ``ValidationError`` for bad options. A bad row never raises: it is counted as rejected and given to
    ``rejects``. Writes go through Core statements: leads the session loaded before the import are not
    refreshed (expire them to see the imported values)."""
    options = options or ImportOptions()
    _check_options(options)
    options = ImportOptions(
        tags=tuple(sorted({tag.strip() for tag in options.tags})),
        source=options.source.strip() if options.source and options.source.strip() else None,
        stage=options.stage,
        column_map=options.column_map,
        on_duplicate=DuplicatePolicy(options.on_duplicate),
        file_name=options.file_name,
        batch_size=options.batch_size,
    )
    report = ImportReport()
    name = _actor_name(source, options)
    try:
        _import(session, clock, source, options, name, report, rejects, progress)
    except (UnusableFile, cols.MappingError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    return report


def _import(
    session: Session,
    clock: Clock,
    source: str | os.PathLike[str] | BinaryIO,
    options: ImportOptions,
    name: str,
    report: ImportReport,
    rejects: RejectSink | None,
    progress: Callable[[ImportProgress], None] | None,
) -> None:
    with open_csv(source) as csv_source:
        mapping = cols.build_mapping(csv_source.header, options.column_map)
        report.warnings.extend(mapping.notes)
        parser = _RowParser(mapping, clock.now())
        writer = _BatchWriter(session, clock, options, name, report)
        if rejects is not None:
            rejects.start(csv_source.header)
        # Rows wait in waves of distinct addresses: a second row for an address goes to the next wave, which
        # is written after the first (carried over to the next batch), so it is merged (or skipped) against
        # the stored lead like any other duplicate.
        waves: list[dict[str, _Row]] = [{}]
        waiting = 0
        seen: set[str] = set()
        with _WriteBehind(writer.write, threaded=is_postgresql(session)) as write_behind:
            for record in csv_source.records():
                report.rows += 1
                try:
                    row = parser.parse(record)
                except _Rejected as exc:
                    report.rejected += 1
                    if rejects is not None:
                        rejects.reject(record.line, record.values, exc.reason)
                    continue
                if row.key in seen:
                    row.repeat = True
                elif len(seen) < SEEN_ADDRESSES_LIMIT:
                    seen.add(row.key)
                for wave in waves:
                    if row.key not in wave:
                        wave[row.key] = row
                        break
                else:
                    waves.append({row.key: row})
                waiting += 1
                if waiting >= options.batch_size:
                    first = waves.pop(0)
                    write_behind.submit(list(first.values()))
                    waiting -= len(first)
                    waves = waves or [{}]
                    if progress is not None:
                        progress(ImportProgress(report.rows, csv_source.bytes_read, csv_source.total_bytes))
            for wave in waves:
                write_behind.submit(list(wave.values()))
        report.warnings.extend(csv_source.encoding_warnings())
        if progress is not None:
            progress(ImportProgress(report.rows, csv_source.bytes_read, csv_source.total_bytes))
