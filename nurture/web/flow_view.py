"""What a page needs to show a campaign's flow diagram with its counts for a period: the layout, the counts
per step, and the period read from the query string (``from`` and ``to`` dates, the last 30 days by default).
The overview, the editor and the report call this one function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import abort, make_response, render_template, request
from sqlalchemy.orm import Session

from nurture.campaigns.flow import FlowLayout, layout_flow
from nurture.campaigns.models import Campaign
from nurture.campaigns.reports import StepCounts, step_counts
from nurture.errors import ValidationError
from nurture.web.clock import get_clock

DEFAULT_DAYS = 30
# Reports before this are not about nurture's campaigns; the bound keeps dates storable.
EARLIEST = date(2000, 1, 1)


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        start = datetime.combine(self.first_day, time(0), UTC)
        return start, datetime.combine(self.last_day + timedelta(days=1), time(0), UTC)


def period_from(args: Mapping[str, str], today: date) -> Period:
    """The period in ``from``/``to`` (YYYY-MM-DD, both included); ``ValidationError`` naming the field."""
    last = _date(args.get("to", ""), "to") or today
    first = _date(args.get("from", ""), "from") or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ValidationError("the period starts after it ends", where="from")
    return Period(first, last)


def requested_period() -> Period:
    """The period of this request's query string; a 400 page naming the field when it is not one."""
    try:
        return period_from(request.args, get_clock().now().date())
    except ValidationError as invalid:
        page = render_template("error.html", code=400, title="Bad period", message=str(invalid))
        abort(make_response(page, 400))


def _date(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{text[:40]!r} is not a date (YYYY-MM-DD)", where=field) from None
    if not EARLIEST <= value <= date(2999, 12, 31):
        raise ValidationError(f"give a date between {EARLIEST} and 2999-12-31", where=field)
    return value


@dataclass(frozen=True)
class FlowView:
    layout: FlowLayout
    stats: dict[str, StepCounts] | None
    period: Period | None
    href: Callable[[str], str] | None


def flow_view(
    session: Session,
    campaign: Campaign,
    data: Mapping[str, Any],
    *,
    period: Period | None,
    href: Callable[[str], str] | None = None,
) -> FlowView:
    """``data``'s diagram, with the campaign's counts over ``period`` (none without a period)."""
    stats = step_counts(session, campaign, period.bounds) if period is not None else None
    return FlowView(layout_flow(data), stats, period, href)
