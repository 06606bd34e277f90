"""Random CSV bytes to the importer, on both databases (issue 9, item 14).

The invariant: the file is refused as a whole with one line (``UnusableFile`` or ``MappingError``), or every
row is counted once and is either stored or rejected with its line and a reason; never another exception,
and nothing stored that a database cannot hold. The rejects go through the real CSV rejects writer too."""

from __future__ import annotations

import csv
import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nurture.inputs import unstorable_reason
from nurture.leads.columns import MappingError
from nurture.leads.csv_source import UnusableFile
from nurture.leads.importer import CsvRejectSink, ImportOptions, import_leads
from nurture.leads.models import Activity, Lead, StageChange

HEADER_NAMES = [
    "email", "Email Address", "first_name", "Last Name", "tags", "stage", "consent_at", "consent_ip", "time zone",
    "owner", "notes", "Phone", "Mobile Phone", "status", "",
]
NASTY = ["\x00", "\ud800", "\udfff", "\r", "\n", '"', ",", ";", "\t", "|", "'", "=", "é", "\ufeff", "€", "😀"]
CELL_TEXT = st.text(alphabet=st.characters() | st.sampled_from(NASTY), max_size=12)
ADDRESS = st.builds(
    "{}@{}.example".format, st.text(alphabet="abcAB.+-é", min_size=1, max_size=6), st.sampled_from("xy")
)
VALUE = st.one_of(
    CELL_TEXT,
    ADDRESS,
    st.sampled_from(
        ["lead", "customer", "Europe/Paris", "203.0.113.7", "2024-05-02 10:33:20", "0001-01-01T00:00:00+14:00",
         "9999-12-31T23:59:59-14:00", "a, b; c", "'+33 1 23", "=1+1", "-5"]
    ),
)
DELIMITERS = [",", ";", "\t", "|"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1", "cp1251"]


def _encode(text: str, encoding: str) -> bytes:
    errors = "surrogatepass" if encoding.startswith("utf") else "replace"
    return text.encode(encoding, errors)


@st.composite
def csv_bytes(draw: Any) -> bytes:
    """Mostly CSV-shaped files (a header with an email column, rows of nasty values, quoting, encodings,
    mixed encodings, splices of random bytes), sometimes bytes with no shape at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    header = draw(st.lists(st.sampled_from(HEADER_NAMES[1:]) | CELL_TEXT, unique=True, max_size=4))
    email_at = draw(st.integers(0, len(header)))
    if draw(st.integers(0, 9)):
        header.insert(email_at, "email")
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
        rows.append(
            [draw(ADDRESS if index == email_at and draw(st.integers(0, 4)) else VALUE) for index in range(width)]
        )
    delimiter = draw(st.sampled_from(DELIMITERS))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):
        # Hand-made lines: broken quoting, wrong widths.
        text += "".join(draw(st.lists(CELL_TEXT, max_size=3)))
    encoding = draw(st.sampled_from(ENCODINGS))
    data = _encode(text, encoding)
    if encoding in ("utf-8", "cp1252") and draw(st.booleans()):
        # A second program appended rows in another encoding.
        data += _encode(text.split("\n", 1)[-1], "cp1252" if encoding == "utf-8" else "utf-8")
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at:]
    return data


class Rejects:
    """The rejects as the CLI writes them (CSV, neutralised), and as a list to check."""

    def __init__(self) -> None:
        self.buffer = io.StringIO(newline="")
        self.sink = CsvRejectSink(self.buffer)
        self.rows: list[tuple[int, str]] = []

    def start(self, header: list[str]) -> None:
        self.sink.start(header)

    def reject(self, line: int, values: list[str], reason: str) -> None:
        self.sink.reject(line, values, reason)
        self.rows.append((line, reason))


def _stored_texts(session) -> list[str]:
    texts: list[str] = []
    for lead in session.scalars(select(Lead)):
        texts.extend(value for value in vars(lead).values() if isinstance(value, str))
        texts.extend(f"{key}={value}" for key, value in (lead.attributes or {}).items())
        texts.extend(lead.tag_names)
    texts.extend(session.scalars(select(StageChange.actor)))
    texts.extend(str(data) for data in session.scalars(select(Activity.data)))
    return texts


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=csv_bytes())
def test_random_csv_bytes_are_imported_or_refused_cleanly(session, clock, data):
    savepoint = session.begin_nested()
    rejects = Rejects()
    try:
        try:
            report = import_leads(session, clock, io.BytesIO(data), ImportOptions(batch_size=3), rejects=rejects)
        except (UnusableFile, MappingError) as refused:
            message = str(refused)
            assert message.startswith("upload: ") and "\n" not in message, message
            assert report_is_absent(rejects)
            return
        assert report.rows == report.created + report.updated + report.skipped + report.rejected
        assert len(rejects.rows) == report.rejected
        lines = [line for line, _ in rejects.rows]
        assert lines == sorted(lines) and all(line >= 2 for line in lines), rejects.rows
        assert all(reason and "\n" not in reason for _, reason in rejects.rows), rejects.rows
        read_back = list(csv.reader(io.StringIO(rejects.buffer.getvalue(), newline="")))
        assert [int(row[0]) for row in read_back[1:]] == lines
        session.flush()
        session.expire_all()
        assert [text for text in _stored_texts(session) if unstorable_reason(text)] == []
        assert all(isinstance(warning, str) and warning for warning in report.warnings)
    finally:
        savepoint.rollback()


def report_is_absent(rejects: Rejects) -> bool:
    """A refused file wrote no rejects (at most the header, when the mapping was refused after it)."""
    return rejects.rows == []
