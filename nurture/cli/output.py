"""Plain-text output shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nurture.leads.models import Lead


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """A plain-text table; the columns listed in ``numeric`` are right-aligned."""
    body = [["" if cell is None else str(cell) for cell in row] for row in rows]
    cells = [[str(header) for header in headers], *body]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


LEAD_TABLE_HEADERS = ("EMAIL", "NAME", "COMPANY", "COUNTRY", "STAGE", "STATUS", "SCORE", "TAGS")


def lead_rows(leads: Iterable[Lead]) -> list[tuple[object, ...]]:
    """One row per lead, in the columns of ``LEAD_TABLE_HEADERS``."""
    return [
        (
            lead.email,
            lead.full_name,
            lead.company,
            lead.country,
            lead.stage.value,
            lead.status.value,
            lead.score,
            ", ".join(lead.tag_names),
        )
        for lead in leads
    ]


def format_lead_table(rows: Sequence[Sequence[object]]) -> str:
    return format_table(LEAD_TABLE_HEADERS, rows, numeric=(6,))
