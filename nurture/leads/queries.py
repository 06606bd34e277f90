"""Read-side queries behind the lead pages: the filtered, searched, paginated lead list, and one lead's stage
periods, timeline page and campaign enrollments.

Filters arrive as text (a query string, say) and are parsed here, so every front end refuses the same bad
values with the same message naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign
from nurture.campaigns.reports import FAILED_OUTCOME
from nurture.clock import Clock
from nurture.engine.models import Enrollment, EnrollmentState, StepRun
from nurture.errors import NurtureError, ValidationError
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature, parse_stage
from nurture.leads.models import Activity, Lead, StageChange
from nurture.leads.service import timeline
from nurture.segments.compiler import compile_rules
from nurture.segments.service import find_segment, segment_rules

MAX_SEARCH_LENGTH = 200
MAX_PAGE = 1_000_000
PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50

E = TypeVar("E", bound=StrEnum)


class LeadSort(StrEnum):
    NEWEST = "newest"
    SCORE = "score"
    EMAIL = "email"


class QueryInvalid(NurtureError):
    """Some query parameters are unusable; ``problems`` names each one, and ``usable`` keeps the others (a form
    shows them again as they were)."""

    def __init__(self, problems: Sequence[ValidationError], usable: LeadQuery | None = None) -> None:
        self.problems = tuple(problems)
        self.usable = usable
        super().__init__("; ".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class LeadQuery:
    search: str = ""
    stage: Stage | None = None
    temperature: Temperature | None = None
    status: LeadStatus | None = None
    segment: str | None = None
    sort: LeadSort = LeadSort.NEWEST
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE

    def as_params(self, **changes: Any) -> dict[str, str]:
        """The query string that gives this query back (defaults left out), with ``changes`` applied."""
        params = {
            "q": self.search,
            "stage": self.stage.value if self.stage else "",
            "temperature": self.temperature.value if self.temperature else "",
            "status": self.status.value if self.status else "",
            "segment": self.segment or "",
            "sort": self.sort.value if self.sort is not LeadSort.NEWEST else "",
            "page": str(self.page) if self.page != 1 else "",
            "per_page": str(self.per_page) if self.per_page != DEFAULT_PAGE_SIZE else "",
        }
        params.update({key: str(value) for key, value in changes.items()})
        return {key: value for key, value in params.items() if value}


def _choice(raw: str, enum: type[E], name: str, problems: list[ValidationError]) -> E | None:
    if not raw:
        return None
    try:
        return enum(raw.lower())
    except ValueError:
        names = ", ".join(member.value for member in enum)
        problems.append(ValidationError(f"unknown value {raw!r}; expected one of {names}", where=name))
        return None


def parse_page(raw: str, name: str, problems: list[ValidationError]) -> int:
    """A 1-based page number from text (empty: 1)."""
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        problems.append(ValidationError(f"{raw[:40]!r} is not a page number (1 or more)", where=name))
        return 1
    return int(raw)


def parse_lead_query(args: Mapping[str, str]) -> LeadQuery:
    """The lead list query of ``args`` (q, stage, temperature, status, segment, sort, page, per_page); raises
    ``QueryInvalid`` naming every bad parameter."""
    problems: list[ValidationError] = []
    search = " ".join(args.get("q", "").split())
    if len(search) > MAX_SEARCH_LENGTH:
        problems.append(ValidationError(f"longer than {MAX_SEARCH_LENGTH} characters", where="q"))
    stage = None
    if raw_stage := args.get("stage", "").strip():
        try:
            stage = parse_stage(raw_stage)
        except ValueError as exc:
            problems.append(ValidationError(str(exc), where="stage"))
    temperature = _choice(args.get("temperature", "").strip(), Temperature, "temperature", problems)
    status = _choice(args.get("status", "").strip(), LeadStatus, "status", problems)
    sort = _choice(args.get("sort", "").strip(), LeadSort, "sort", problems) or LeadSort.NEWEST
    page = parse_page(args.get("page", "").strip(), "page", problems)
    per_page = DEFAULT_PAGE_SIZE
    if raw_size := args.get("per_page", "").strip():
        if raw_size.isdigit() and int(raw_size) in PAGE_SIZES:
            per_page = int(raw_size)
        else:
            sizes = ", ".join(str(size) for size in PAGE_SIZES)
            message = f"{raw_size[:40]!r} is not a page size; expected one of {sizes}"
            problems.append(ValidationError(message, where="per_page"))
    segment = args.get("segment", "").strip() or None
    query = LeadQuery(search[:MAX_SEARCH_LENGTH], stage, temperature, status, segment, sort, page, per_page)
    if problems:
        raise QueryInvalid(problems, query)
    return query


@dataclass(frozen=True)
class LeadRow:
    lead: Lead
    last_activity_at: datetime | None


@dataclass(frozen=True)
class Paged:
    """Where one page stands among all of them."""

    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class LeadPage(Paged):
    rows: list[LeadRow]

    @property
    def first_index(self) -> int:
        return self.offset + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return self.offset + len(self.rows) if self.rows else 0


def _search_condition(search: str) -> ColumnElement[bool]:
    """Every word of ``search`` appears in the email, the name or the company (case-insensitive)."""
    full_name = func.coalesce(Lead.first_name, "") + " " + func.coalesce(Lead.last_name, "")
    conditions = []
    for word in search.split():
        conditions.append(
            or_(
                Lead.email_key.icontains(word, autoescape=True),
                full_name.icontains(word, autoescape=True),
                Lead.company.icontains(word, autoescape=True),
            )
        )
    return and_(*conditions)


def _filters(session: Session, clock: Clock, query: LeadQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.search:
        conditions.append(_search_condition(query.search))
    if query.stage is not None:
        conditions.append(Lead.stage == query.stage)
    if query.temperature is not None:
        conditions.append(Lead.temperature == query.temperature)
    if query.status is not None:
        conditions.append(Lead.status == query.status)
    if query.segment is not None:
        segment = find_segment(session, query.segment)
        if segment is None:
            raise QueryInvalid([ValidationError(f"no segment with slug {query.segment[:100]!r}", where="segment")])
        try:
            conditions.append(compile_rules(segment_rules(segment), clock.now()))
        except ValidationError as exc:
            raise QueryInvalid([ValidationError(exc.message, where=f"segment {exc.where or segment.slug}")]) from None
    return conditions


_ORDER = {
    LeadSort.NEWEST: (Lead.created_at.desc(), Lead.id.desc()),
    LeadSort.SCORE: (Lead.score.desc(), Lead.id.desc()),
    LeadSort.EMAIL: (Lead.email_key.asc(), Lead.id.asc()),
}


def search_leads(session: Session, clock: Clock, query: LeadQuery) -> LeadPage:
    """One page of the leads matching ``query``, with the time of each one's latest activity. Raises
    ``QueryInvalid`` for a segment that does not exist or whose rules no longer parse."""
    conditions = _filters(session, clock, query)
    total = session.scalar(select(func.count()).select_from(Lead).where(*conditions)) or 0
    paged = Paged(total, query.page, query.per_page)
    statement: Select[tuple[Lead]] = (
        select(Lead).where(*conditions).order_by(*_ORDER[query.sort]).limit(paged.per_page).offset(paged.offset)
    )
    leads = list(session.scalars(statement))
    latest: dict[int, datetime] = {}
    if leads:
        latest = dict(
            session.execute(
                select(Activity.lead_id, func.max(Activity.occurred_at))
                .where(Activity.lead_id.in_([lead.id for lead in leads]))
                .group_by(Activity.lead_id)
            ).all()
        )
    return LeadPage(total, query.page, query.per_page, [LeadRow(lead, latest.get(lead.id)) for lead in leads])


# --- one lead ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagePeriod:
    """A stretch of time the lead spent in one stage, from the change that put it there."""

    change: StageChange
    left_at: datetime | None
    duration: timedelta

    @property
    def stage(self) -> Stage:
        return self.change.to_stage

    @property
    def current(self) -> bool:
        return self.left_at is None


def stage_periods(history: Sequence[StageChange], now: datetime) -> list[StagePeriod]:
    """The stage history (oldest first) as periods; the last one lasts until ``now``."""
    periods = []
    for index, change in enumerate(history):
        left_at = history[index + 1].changed_at if index + 1 < len(history) else None
        periods.append(StagePeriod(change, left_at, max((left_at or now) - change.changed_at, timedelta(0))))
    return periods


@dataclass(frozen=True)
class ActivityPage(Paged):
    activities: list[Activity]


def timeline_page(session: Session, lead: Lead, page: int = 1, per_page: int = 25) -> ActivityPage:
    """The lead's timeline, newest first, one page of it."""
    total = session.scalar(select(func.count()).select_from(Activity).where(Activity.lead_id == lead.id)) or 0
    paged = Paged(total, page, per_page)
    return ActivityPage(total, page, per_page, timeline(session, lead, limit=per_page, offset=paged.offset))


@dataclass(frozen=True)
class LeadEnrollment:
    campaign_slug: str
    campaign_name: str
    enrollment: Enrollment
    # While the current step keeps failing (the engine retries it): the error of its latest run.
    last_error: str | None = None

    @property
    def state(self) -> EnrollmentState:
        return self.enrollment.state


def lead_enrollments(session: Session, lead_id: int) -> list[LeadEnrollment]:
    """Every enrollment of the lead (live and finished), newest first, with its campaign."""
    rows = session.execute(
        select(Campaign.slug, Campaign.name, Enrollment)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.lead_id == lead_id)
        .order_by(Enrollment.entered_at.desc(), Enrollment.id.desc())
    ).all()
    failing = [enrollment.id for _, _, enrollment in rows if enrollment.failures]
    errors: dict[int, str | None] = {}
    if failing:
        latest = (
            select(func.max(StepRun.id))
            .where(StepRun.enrollment_id.in_(failing), StepRun.outcome == FAILED_OUTCOME)
            .group_by(StepRun.enrollment_id)
        )
        for enrollment_id, detail in session.execute(
            select(StepRun.enrollment_id, StepRun.detail).where(StepRun.id.in_(latest))
        ):
            errors[enrollment_id] = (detail or {}).get("error")
    return [LeadEnrollment(slug, name, enrollment, errors.get(enrollment.id)) for slug, name, enrollment in rows]
