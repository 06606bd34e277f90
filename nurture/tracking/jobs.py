"""The worker's tracking and scoring jobs, each a loop of short transactions (like nurture.engine.tick):

- ``events_job``: map stored provider events and apply pending tracking hits (``process_pending_events``),
  every few seconds;
- ``score_refresh_job``: recompute fit points, decay engagement to now, store changed scores and
  temperatures, and promote leads whose score crossed a threshold (``refresh_and_promote``), every 15
  minutes: the stored score of a quiet lead is never older than that."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.db import is_postgresql
from nurture.engine.context import EngineContext
from nurture.engine.cursors import move_cursor, read_cursor
from nurture.leads.models import Lead
from nurture.scoring.lifecycle import promote_for_score
from nurture.scoring.points import RefreshReport, refresh_scores
from nurture.scoring.store import current_config
from nurture.tracking.events import ProcessReport, process_pending_events

SessionFactory = Callable[[], Session]
MAX_ROUNDS = 1000


def events_job(session_factory: SessionFactory, clock: Clock, ctx: EngineContext, *, limit: int = 500) -> ProcessReport:
    total = ProcessReport()
    for _ in range(MAX_ROUNDS):
        with session_factory() as session:
            report = process_pending_events(session, clock, ctx, limit=limit)
            session.commit()
        total.provider_events += report.provider_events
        total.applied += report.applied
        total.machine += report.machine
        total.deferred = report.deferred
        if not report.handled:
            break
    return total


def refresh_and_promote(
    session: Session, clock: Clock, ctx: EngineContext, *, after_id: int = 0, limit: int = 5000
) -> tuple[RefreshReport, int | None]:
    """One chunk of the refresh, with the promotions it calls for."""
    config = current_config(session)
    report, last = refresh_scores(
        session, config, ctx.settings.temperature, clock.now(), after_id=after_id, limit=limit
    )
    rescored = report.rescored or {}
    if rescored and (config.settings.mql_at is not None or config.settings.sql_at is not None):
        low = min(value for value in (config.settings.mql_at, config.settings.sql_at) if value is not None)
        candidates = [lead_id for lead_id, score in rescored.items() if score >= low]
        query = select(Lead).where(Lead.id.in_(candidates)).order_by(Lead.id)
        if is_postgresql(session):
            query = query.with_for_update(key_share=True)
        for lead in session.scalars(query.execution_options(populate_existing=True)):
            promote_for_score(session, clock, lead, rescored[lead.id], config.settings, "score refresh")
    return report, last


# The refresh reads every lead, so it runs at most this often however many workers and ticks ask for it:
# the last run's time (unix seconds) is kept in an engine cursor, shared by every process.
REFRESH_EVERY = timedelta(minutes=15)
REFRESH_CURSOR = "scoring.refreshed_at"


def score_refresh_job(
    session_factory: SessionFactory, clock: Clock, ctx: EngineContext, *, force: bool = True
) -> RefreshReport:
    """Refresh every lead's score; unless ``force``, only when the last refresh is ``REFRESH_EVERY`` old. Returns
    the chunks' counts added up (their promotions are run chunk by chunk)."""
    totals = RefreshReport()
    now = clock.now()
    with session_factory() as session:
        last = read_cursor(session, REFRESH_CURSOR, 0, now)
        if not force and now.timestamp() - last < REFRESH_EVERY.total_seconds():
            session.commit()
            return totals
        move_cursor(session, REFRESH_CURSOR, int(now.timestamp()), now)
        session.commit()
    after: int | None = 0
    while after is not None:
        with session_factory() as session:
            report, after = refresh_and_promote(session, clock, ctx, after_id=after)
            session.commit()
        totals.leads += report.leads
        totals.changed += report.changed
    return totals
