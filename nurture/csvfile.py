"""The one way nurture writes CSV: cells a spreadsheet would run as formulas are neutralised.

Every CSV the product writes (``nurture leads list --format csv``, the import rejects file, the demo's
generated list, and any later web or report export) goes through ``writer`` or ``DictWriter`` here; a test
fails when a ``csv.writer`` appears anywhere else in the package.

What is neutralised (OWASP's "CSV injection" advice): a cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return, and also ``|`` and ``%``, gets a single quote (``'``) in front, so that Excel,
LibreOffice and Google Sheets show it as text instead of evaluating it. Plain numbers (``-12``, ``-3.5``,
``1,000``) are left alone. The first six characters and the number rule are defusedcsv's (the library does
the writing); for those cells defusedcsv also writes each ``|`` as ``\\|``, which stops Excel's DDE links.
defusedcsv does not look at tabs or carriage returns, which spreadsheets trim before deciding whether a
cell is a formula (``"\\t=1+1"`` would run as ``=1+1``), so this module quotes those itself. A cell that
already starts with quotes followed by one of those characters gets one more quote, so that ``restore``
gives back exactly what was written.

Reading such a file back: ``restore`` undoes the neutralisation of one cell (the importer applies it, so
``leads list --format csv`` imports back unchanged). Programs that need the raw values should read
``--format json`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TextIO

from defusedcsv import csv as defused

# What defusedcsv quotes (and escapes ``|`` in), and what this module quotes on top of it.
DEFUSED_TRIGGERS = "=+-@|%"
WHITESPACE_TRIGGERS = "\t\r"
TRIGGERS = DEFUSED_TRIGGERS + WHITESPACE_TRIGGERS
# Quotes followed by a trigger, or by the ``\\|`` defusedcsv makes of a leading ``|``.
_ALREADY_QUOTED = re.compile(rf"'+(?:[{re.escape(TRIGGERS)}]|\\\|)")


def _quote_what_defusedcsv_leaves(cell: Any) -> Any:
    if isinstance(cell, str) and cell and (cell[0] in WHITESPACE_TRIGGERS or _ALREADY_QUOTED.match(cell)):
        return "'" + cell
    return cell


class CsvWriter:
    """``csv.writer``'s ``writerow``/``writerows``, with every cell neutralised as the module says."""

    def __init__(self, stream: TextIO, **format_options: Any) -> None:
        self._writer = defused.writer(stream, **format_options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([_quote_what_defusedcsv_leaves(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(stream: TextIO, **format_options: Any) -> CsvWriter:
    """A CSV writer on ``stream`` (opened with ``newline=""``) that neutralises formulas."""
    return CsvWriter(stream, **format_options)


class DictWriter(defused.DictWriter):
    """``csv.DictWriter`` whose rows go through ``CsvWriter``."""

    def __init__(self, stream: TextIO, fieldnames: Iterable[str], **options: Any) -> None:
        super().__init__(stream, list(fieldnames), **options)
        format_options = {key: value for key, value in options.items() if key not in ("restval", "extrasaction")}
        self.writer = CsvWriter(stream, **format_options)


def restore(cell: str) -> str:
    """The value a neutralised cell was written from (any other cell unchanged)."""
    if not cell.startswith("'") or not _ALREADY_QUOTED.match(cell):
        return cell
    value = cell[1:]
    if value[0] in DEFUSED_TRIGGERS or value.startswith("\\|"):
        # One quote in front of what defusedcsv quotes: it also escaped the pipes.
        value = value.replace("\\|", "|")
    return value
