"""APScheduler drives the engine: it decides when each job runs; the tables are the state of record.

Its own job store stays in memory (nothing to migrate or clean up): a process that starts schedules the
jobs afresh, and whatever a dead process was doing is found in the tables by the next one (see tick.py).
Each job runs at most once at a time per process (``max_instances=1``, missed runs coalesced); any number
of processes may run the jobs at once on PostgreSQL, which is how the work scales out. On SQLite run one.

The scheduler runs in ``nurture worker``, and inside the web process when ``NURTURE_SCHEDULER_IN_WEB``
is true (the default, for the embedded setup; see nurture.web.scheduler)."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session

from nurture.clock import Clock, SystemClock
from nurture.config import Settings
from nurture.delivery.backends import make_mailer
from nurture.delivery.mailer import Mailer
from nurture.engine import tick
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.notify import WebhookTransport
from nurture.tracking import jobs as tracking_jobs

log = logging.getLogger(__name__)

# Seconds between runs of each job. Advancing and dispatching often keeps sends close to their due time;
# enrolment from segments re-evaluates whole segments, so it runs less often.
INTERVALS: dict[str, float] = {
    "advance": 10,
    "dispatch": 10,
    "goals": 30,
    "webhooks": 30,
    "enrol": 60,
    "recover": 300,
    # Tracking hits (opens, clicks) are stored by the endpoints and applied here: scores, stages, wake-ups.
    "events": 5,
    # Decay and fit points: a quiet lead's stored score is never older than this.
    "score_refresh": 900,
}


@dataclass
class EngineJobs:
    """The job functions APScheduler calls, bound to one process's database, clock, context and mailer."""

    session_factory: Callable[[], Session]
    clock: Clock
    ctx: EngineContext
    mailer: Mailer
    transport: WebhookTransport | None = None

    def enrol(self) -> None:
        report = tick.enrol_job(self.session_factory, self.clock, self.ctx)
        if report.total or report.problems:
            log.info("enrol: %s", report.summary())

    def goals(self) -> None:
        report = tick.goals_job(self.session_factory, self.clock, self.ctx)
        if report.converted or report.exited or report.woken:
            log.info("goals: %s", report.summary())

    def advance(self) -> None:
        report = tick.advance_job(self.session_factory, self.clock, self.ctx)
        if report.enrollments:
            log.info("advance: %s", report.summary())

    def recover(self) -> None:
        report = tick.recover_job(self.session_factory, self.clock, self.ctx)
        if report.interrupted_sends or report.released_webhooks or report.archived_exits:
            log.warning("recover: %s", report.summary())

    def dispatch(self) -> None:
        report = tick.dispatch_job(self.session_factory, self.clock, self.mailer)
        if report.sent or report.failed or report.uncertain or report.backend_error:
            log.info("dispatch: %s", report.summary())

    def webhooks(self) -> None:
        report = tick.webhooks_job(self.session_factory, self.clock, self.ctx, transport=self.transport)
        if report.delivered or report.retrying or report.failed:
            log.info("webhooks: %s", report.summary())

    def events(self) -> None:
        report = tracking_jobs.events_job(self.session_factory, self.clock, self.ctx)
        if report.handled:
            log.info("events: %s", report.summary())

    def score_refresh(self) -> None:
        report = tracking_jobs.score_refresh_job(self.session_factory, self.clock, self.ctx, force=False)
        if report.changed:
            log.info("score refresh: %s", report.summary())

    def schedule(self, scheduler: BaseScheduler, intervals: dict[str, float] | None = None) -> None:
        start = datetime.now(UTC)
        for offset, (name, seconds) in enumerate((intervals or INTERVALS).items()):
            scheduler.add_job(
                getattr(self, name),
                "interval",
                seconds=seconds,
                id=f"nurture.engine.{name}",
                name=f"engine {name}",
                max_instances=1,
                coalesce=True,
                # Spread the first runs a little so a starting process does not do everything at once.
                next_run_time=start + timedelta(seconds=offset),
                misfire_grace_time=max(1, int(seconds)),
            )


def make_jobs(
    settings: Settings,
    session_factory: Callable[[], Session],
    *,
    clock: Clock | None = None,
    templates: Path | None = None,
    mailer: Mailer | None = None,
) -> EngineJobs:
    clock = clock or SystemClock()
    return EngineJobs(
        session_factory=session_factory,
        clock=clock,
        ctx=engine_context(settings, templates=templates),
        mailer=mailer or make_mailer(settings.delivery, clock),
    )


def run_worker(jobs: EngineJobs) -> None:
    """Run the jobs until SIGTERM or SIGINT; a job in progress finishes its current batch first."""
    scheduler = BlockingScheduler(timezone=UTC)
    jobs.schedule(scheduler)

    def stop(signum: int, _frame: Any) -> None:
        log.info("worker stopping (signal %s)", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker started: jobs %s", ", ".join(f"{name} every {s:g}s" for name, s in INTERVALS.items()))
    started = time.monotonic()
    scheduler.start()
    log.info("worker stopped after %.0f s", time.monotonic() - started)
