"""Points: what an event earns under the rules (caps included), the atomic update of a lead's score, decay,
fit points, the periodic refresh and the per-lead breakdown.

A lead's engagement points are stored as a value at a reference instant (``lead_scores.engagement`` at
``engagement_at_us``). Their worth at any later instant is that value halved once per half-life, so adding
points is one UPDATE that decays the stored value to now and adds the new points, whatever order concurrent
events commit in (the row lock serialises them; the arithmetic does not depend on the order). Points an
event earned are worth ``points * 2^(-(now - occurred_at) / half_life)`` now, which is how the breakdown
adds up to the same number.

``leads.score`` (= fit + engagement, rounded) and ``leads.temperature`` are stored for segments and lists:
exact after each event of the lead, and refreshed by ``refresh_scores`` for leads that went quiet."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.config import TemperatureThresholds
from nurture.db import is_postgresql
from nurture.delivery.bulk import among, driver_connection, insert_rows
from nurture.leads.lifecycle import temperature_for
from nurture.leads.models import Lead
from nurture.scoring.config import Cap, EngagementRule, FitRule, ScoringConfig, ScoringSettings
from nurture.scoring.models import LeadScore, ScoreCap, ScoreEntry
from nurture.segments.compiler import compile_rules

LN2 = math.log(2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ADJUSTMENT = "adjustment"


def epoch_us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def decay_factor(age: timedelta, settings: ScoringSettings) -> float:
    return 2.0 ** (-(age / timedelta(microseconds=1)) / settings.half_life_us)


def period_start(at: datetime, per: str) -> datetime:
    """The UTC day, ISO week (from Monday) or month that ``at`` falls in."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if per == "day":
        return day
    if per == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _insert(session: Session) -> Any:
    return pg_insert if is_postgresql(session) else sqlite_insert


# --- what an event earns ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Award:
    rule_id: int | None
    rule_name: str
    points: int
    note: str | None = None


class CapLedger:
    """The points capped rules have given the batch's leads in the periods of the batch's events: read in one
    query, consumed in Python event by event (so the events of one batch count against the cap in order), and
    written back in one statement. The callers hold the leads' locks (``FOR NO KEY UPDATE``) from ``load`` to
    ``save``, so nothing else moves these counters meanwhile."""

    def __init__(self) -> None:
        # (lead, rule, period start) -> [used, last award]; ``dirty`` are the keys to write back.
        self._counters: dict[tuple[int, int, datetime], list[int]] = {}
        self._dirty: set[tuple[int, int, datetime]] = set()

    @classmethod
    def load(
        cls, session: Session, config: ScoringConfig, lead_ids: Iterable[int], instants: Iterable[datetime]
    ) -> CapLedger:
        """The counters of ``lead_ids`` for the capped rules, in the periods ``instants`` fall in."""
        ledger = cls()
        capped = [rule for rule in config.engagement_rules if rule.cap is not None and rule.id is not None]
        leads = sorted(set(lead_ids))
        if not capped or not leads:
            return ledger
        pers = {rule.cap.per for rule in capped if rule.cap is not None}
        starts = sorted({period_start(at, per) for at in set(instants) for per in pers})
        if not starts:
            return ledger
        table = ScoreCap.__table__
        rows = session.execute(
            select(table.c.lead_id, table.c.rule_id, table.c.period_start, table.c.used, table.c.last_award).where(
                among(session, table.c.lead_id, leads),
                table.c.rule_id.in_([rule.id for rule in capped]),
                table.c.period_start.in_(starts),
            )
        )
        for lead_id, rule_id, start, used, last_award in rows:
            ledger._counters[(lead_id, rule_id, start)] = [used, last_award]
        return ledger

    def take(self, lead_id: int, rule: EngagementRule, cap: Cap, at: datetime) -> tuple[int, str | None]:
        """Take the rule's points out of what is left of its cap in ``at``'s period."""
        assert rule.id is not None
        wanted = abs(rule.points)
        key = (lead_id, rule.id, period_start(at, cap.per))
        counter = self._counters.get(key)
        used = 0 if counter is None else counter[0]
        room = cap.points - used
        given, used = (room, cap.points) if room < wanted else (wanted, used + wanted)
        self._counters[key] = [used, given]
        self._dirty.add(key)
        note = None if given == wanted else f"capped: {cap.points} points a {cap.per}"
        return (given if rule.points > 0 else -given), note

    def save(self, session: Session) -> None:
        """Write the counters the batch moved, in key order (the order concurrent writers lock them in)."""
        if not self._dirty:
            return
        table = ScoreCap.__table__
        rows = [
            {
                "lead_id": lead_id,
                "rule_id": rule_id,
                "period_start": start,
                "used": self._counters[(lead_id, rule_id, start)][0],
                "last_award": self._counters[(lead_id, rule_id, start)][1],
            }
            for lead_id, rule_id, start in sorted(self._dirty)
        ]
        stmt = _insert(session)(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["lead_id", "rule_id", "period_start"],
            set_={"used": stmt.excluded.used, "last_award": stmt.excluded.last_award},
        )
        session.execute(stmt, rows)
        self._dirty.clear()


def awards_for(
    config: ScoringConfig,
    caps: CapLedger,
    lead_id: int,
    event_type: str,
    occurred_at: datetime,
    *,
    campaign: str | None = None,
    url: str | None = None,
    properties: dict[str, Any] | None = None,
) -> list[Award]:
    """The points each matching engagement rule gives this event (caps applied and consumed in ``caps``)."""
    awards = []
    for rule in config.engagement_rules:
        if not rule.matches(event_type, campaign, url, properties or {}):
            continue
        points, note = (rule.points, None) if rule.cap is None else caps.take(lead_id, rule, rule.cap, occurred_at)
        awards.append(Award(rule.id, rule.name, points, note))
    return awards


# --- the atomic score update ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadScoreState:
    lead_id: int
    fit: int
    engagement: float

    @property
    def score(self) -> int:
        return round(self.fit + self.engagement)


def _decayed_engagement(settings: ScoringSettings, now_us: int) -> ColumnElement[float]:
    table = LeadScore.__table__
    rate = -LN2 / settings.half_life_us
    return table.c.engagement * func.exp((literal(now_us) - table.c.engagement_at_us) * literal(rate))


def add_engagement(
    session: Session, settings: ScoringSettings, lead_id: int, points_now: float, now: datetime, fit: int | None = None
) -> LeadScoreState:
    """Add ``points_now`` (already decayed to ``now``) to the lead's engagement, and set its fit when given; one
    statement, safe under concurrency (the row lock orders concurrent updates, none is lost)."""
    fits = None if fit is None else {lead_id: fit}
    return add_engagements(session, settings, {lead_id: points_now}, now, fits=fits)[lead_id]


# The batch form of the upsert on PostgreSQL: one row per lead from arrays, in lead id order (the order every
# writer locks lead_scores rows in). Each right-hand side reads the row as it was before this statement.
_ADD_ENGAGEMENTS = """
INSERT INTO lead_scores (lead_id, fit, engagement, engagement_at_us, updated_at)
SELECT new.lead_id, coalesce(new.fit, 0), new.points, %(now_us)s, %(now)s
FROM unnest(%(lead_ids)s::BIGINT[], %(fits)s::INTEGER[], %(points)s::FLOAT8[]) AS new (lead_id, fit, points)
ORDER BY new.lead_id
ON CONFLICT (lead_id) DO UPDATE SET
    engagement = lead_scores.engagement * exp((%(now_us)s - lead_scores.engagement_at_us) * %(rate)s)
        + excluded.engagement,
    engagement_at_us = excluded.engagement_at_us,
    updated_at = excluded.updated_at,
    fit = CASE WHEN %(set_fit)s THEN excluded.fit ELSE lead_scores.fit END
RETURNING lead_id, fit, engagement
"""


def add_engagements(
    session: Session,
    settings: ScoringSettings,
    points_now: dict[int, float],
    now: datetime,
    *,
    fits: dict[int, int] | None = None,
) -> dict[int, LeadScoreState]:
    """``add_engagement`` for several leads (``points_now`` per lead; ``fits``, when given, sets every one's
    fit: missing leads get 0), in one statement on PostgreSQL. Returns each lead's new state."""
    if not points_now:
        return {}
    lead_ids = sorted(points_now)
    now_us = epoch_us(now)
    if is_postgresql(session):
        with driver_connection(session).cursor() as cursor:
            cursor.execute(
                _ADD_ENGAGEMENTS,
                {
                    "lead_ids": lead_ids,
                    "fits": [None if fits is None else fits.get(lead_id, 0) for lead_id in lead_ids],
                    "points": [float(points_now[lead_id]) for lead_id in lead_ids],
                    "now_us": now_us,
                    "now": now,
                    "rate": -LN2 / settings.half_life_us,
                    "set_fit": fits is not None,
                },
            )
            rows = cursor.fetchall()
        return {lead_id: LeadScoreState(lead_id, fit, engagement) for lead_id, fit, engagement in rows}
    table = LeadScore.__table__
    states = {}
    for lead_id in lead_ids:
        fit = None if fits is None else fits.get(lead_id, 0)
        values: dict[str, Any] = {
            "engagement": _decayed_engagement(settings, now_us) + points_now[lead_id],
            "engagement_at_us": now_us,
            "updated_at": now,
        }
        if fit is not None:
            values["fit"] = fit
        stmt = (
            sqlite_insert(table)
            .values(
                lead_id=lead_id, fit=fit or 0, engagement=points_now[lead_id], engagement_at_us=now_us, updated_at=now
            )
            .on_conflict_do_update(index_elements=["lead_id"], set_=values)
            .returning(table.c.fit, table.c.engagement)
        )
        row = session.execute(stmt).one()
        states[lead_id] = LeadScoreState(lead_id, row.fit, row.engagement)
    return states


def entry_row(
    lead_id: int, award: Award, *, event_id: int | None, event_type: str | None, occurred_at: datetime, now: datetime
) -> dict[str, Any]:
    """The ``score_entries`` row of one award (see ``insert_entries``)."""
    return {
        "lead_id": lead_id,
        "rule_id": award.rule_id,
        "rule_name": award.rule_name,
        "event_id": event_id,
        "event_type": event_type,
        "points": award.points,
        "occurred_at": occurred_at,
        "recorded_at": now,
        "note": award.note,
    }


def insert_entries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Store score entries (``entry_row``s, of any leads and events) in one statement."""
    insert_rows(session, ScoreEntry.__table__, rows)


def worth_now(awards: Iterable[Award], occurred_at: datetime, now: datetime, settings: ScoringSettings) -> float:
    # An event stamped in the future (a client's clock) earns its points as of now, never more.
    factor = decay_factor(max(now - occurred_at, timedelta(0)), settings)
    return sum(award.points for award in awards) * factor


# --- fit ------------------------------------------------------------------------------------------------------


def _fit_expression(rules: Sequence[FitRule], now: datetime) -> ColumnElement[int]:
    if not rules:
        return literal(0)
    total: ColumnElement[int] = literal(0)
    for rule in rules:
        total = total + case((compile_rules(rule.rules, now), rule.points), else_=0)
    return total


def fit_points(session: Session, config: ScoringConfig, lead_ids: Sequence[int], now: datetime) -> dict[int, int]:
    """Each lead's fit points under the rules in force, in one query per 1,000 leads."""
    expression = _fit_expression(config.fit_rules, now)
    found: dict[int, int] = {}
    ids = sorted(set(lead_ids))
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found.update(
            {row[0]: int(row[1]) for row in session.execute(select(Lead.id, expression).where(Lead.id.in_(chunk)))}
        )
    return found


def matched_fit_rules(session: Session, config: ScoringConfig, lead_id: int, now: datetime) -> list[FitRule]:
    matched = []
    for rule in config.fit_rules:
        if session.scalar(select(Lead.id).where(Lead.id == lead_id, compile_rules(rule.rules, now))) is not None:
            matched.append(rule)
    return matched


# --- the periodic refresh -----------------------------------------------------------------------------------


@dataclass
class RefreshReport:
    leads: int = 0
    changed: int = 0
    # Leads whose score changed, with their new score: the caller runs the lifecycle promotions on them.
    rescored: dict[int, int] | None = None

    def summary(self) -> str:
        return f"{self.leads} leads scored, {self.changed} changed"


def refresh_scores(
    session: Session,
    config: ScoringConfig,
    thresholds: TemperatureThresholds,
    now: datetime,
    *,
    after_id: int = 0,
    limit: int = 5000,
) -> tuple[RefreshReport, int | None]:
    """Recompute fit and decay engagement to ``now`` for up to ``limit`` leads after ``after_id``; store the
    score and temperature where they changed. Returns the report and the last lead id (None when done)."""
    rate = -LN2 / config.settings.half_life_us
    now_us = epoch_us(now)
    table = LeadScore.__table__
    fit = _fit_expression(config.fit_rules, now)
    rows = session.execute(
        select(
            Lead.id,
            Lead.score,
            Lead.temperature,
            fit.label("fit"),
            table.c.fit.label("stored_fit"),
            table.c.engagement,
            table.c.engagement_at_us,
        )
        .outerjoin(table, table.c.lead_id == Lead.id)
        .where(Lead.id > after_id)
        .order_by(Lead.id)
        .limit(limit)
    ).all()
    report = RefreshReport(leads=len(rows), rescored={})
    score_updates: list[dict[str, Any]] = []
    fit_updates: list[dict[str, Any]] = []
    new_rows: list[dict[str, Any]] = []
    for row in rows:
        engagement = (
            0.0 if row.engagement is None else row.engagement * math.exp((now_us - row.engagement_at_us) * rate)
        )
        state = LeadScoreState(row.id, int(row.fit), engagement)
        temperature = temperature_for(state.score, thresholds)
        if row.stored_fit is None:
            if row.fit:
                new_rows.append(
                    {
                        "lead_id": row.id,
                        "fit": int(row.fit),
                        "engagement": 0.0,
                        "engagement_at_us": now_us,
                        "updated_at": now,
                    }
                )
        elif row.stored_fit != row.fit:
            fit_updates.append({"b_lead_id": row.id, "b_fit": int(row.fit), "b_updated_at": now})
        if state.score != row.score or temperature != row.temperature:
            score_updates.append({"b_id": row.id, "b_score": state.score, "b_temperature": temperature.value})
            assert report.rescored is not None
            report.rescored[row.id] = state.score
    if new_rows:
        session.execute(table.insert(), new_rows)
    if fit_updates:
        from sqlalchemy import bindparam

        session.execute(
            update(table)
            .where(table.c.lead_id == bindparam("b_lead_id"))
            .values(fit=bindparam("b_fit"), updated_at=bindparam("b_updated_at")),
            fit_updates,
            execution_options={"synchronize_session": False},
        )
    if score_updates:
        from sqlalchemy import bindparam

        leads = Lead.__table__
        session.execute(
            update(leads)
            .where(leads.c.id == bindparam("b_id"))
            .values(score=bindparam("b_score"), temperature=bindparam("b_temperature")),
            score_updates,
            execution_options={"synchronize_session": False},
        )
    report.changed = len(score_updates)
    return report, (rows[-1].id if len(rows) == limit else None)


# --- the breakdown ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakdownLine:
    rule: str
    points: int
    worth_now: float
    event_type: str | None = None
    event_id: int | None = None
    occurred_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class Breakdown:
    lead_id: int
    score: int
    fit: int
    engagement: float
    fit_lines: list[BreakdownLine]
    engagement_lines: list[BreakdownLine]


def breakdown(session: Session, config: ScoringConfig, lead_id: int, now: datetime, *, limit: int = 200) -> Breakdown:
    """Which rule gave how many points for which event, and what each is worth now; fit rules matched now."""
    fit_lines = [
        BreakdownLine(rule.name, rule.points, float(rule.points))
        for rule in matched_fit_rules(session, config, lead_id, now)
    ]
    entries = session.scalars(
        select(ScoreEntry)
        .where(ScoreEntry.lead_id == lead_id)
        .order_by(ScoreEntry.occurred_at.desc(), ScoreEntry.id.desc())
    ).all()
    lines = [
        BreakdownLine(
            entry.rule_name,
            entry.points,
            entry.points * decay_factor(max(now - entry.occurred_at, timedelta(0)), config.settings),
            entry.event_type,
            entry.event_id,
            entry.occurred_at,
            entry.note,
        )
        for entry in entries
    ]
    stored = session.get(LeadScore, lead_id)
    engagement = 0.0
    if stored is not None:
        engagement = stored.engagement * math.exp(
            (epoch_us(now) - stored.engagement_at_us) * -LN2 / config.settings.half_life_us
        )
    fit = sum(line.points for line in fit_lines)
    return Breakdown(lead_id, round(fit + engagement), fit, engagement, fit_lines, lines[:limit])
