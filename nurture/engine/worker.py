"""APScheduler drives the engine: it decides when each job runs; the tables are the state of record.

Its own job store stays in memory (nothing to migrate or clean up): a process that starts schedules the
jobs afresh, and whatever a dead process was doing is found in the tables by the next one (see tick.py).
Each job runs at most once at a time per process (``max_instances=1``, missed runs coalesced); any number
of processes may run the jobs at once on PostgreSQL, which is how the work scales out. On SQLite run one.

The scheduler runs in ``nurture worker``, and inside the web process when ``NURTURE_SCHEDULER_IN_WEB``
is true (the default, for the embedded setup): ``init_app`` starts it when the process serves requests
(``nurture run``, or a WSGI server), never under ``TESTING`` nor in other CLI commands."""

from __future__ import annotations

import atexit
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.serving import is_running_from_reloader

from nurture.clock import Clock, SystemClock
from nurture.config import Settings
from nurture.delivery.backends import make_mailer
from nurture.delivery.mailer import Mailer
from nurture.engine import tick
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.notify import WebhookTransport

log = logging.getLogger(__name__)

SCHEDULER_EXTENSION = "nurture.engine.scheduler"

# Seconds between runs of each job. Advancing and dispatching often keeps sends close to their due time;
# enrolment from segments re-evaluates whole segments, so it runs less often.
INTERVALS: dict[str, float] = {
    "advance": 10,
    "dispatch": 10,
    "goals": 30,
    "webhooks": 30,
    "enrol": 60,
    "recover": 300,
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


def _serves_requests(app: Flask) -> bool:
    """Whether this process is the one that will serve HTTP: ``nurture run`` (the reloader's child when it
    reloads), or a WSGI server that imported the app (no CLI command at all)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return True
    if context.info_name != "run":
        return False
    reload = context.params.get("reload")
    if reload is None:
        reload = app.debug
    return not reload or is_running_from_reloader()


def init_app(app: Flask) -> BackgroundScheduler | None:
    """Start the engine inside the web process when the settings ask for it and the process serves
    requests; returns the running scheduler (None when not started). Call after the database is set up."""
    settings: Settings = app.config["NURTURE_SETTINGS"]
    if not settings.run_scheduler_in_web or app.testing or app.config.get("TESTING"):
        return None
    if not _serves_requests(app):
        return None
    from nurture.web.database import get_database

    with app.app_context():
        session_factory = get_database().session_factory
    scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
    make_jobs(settings, session_factory).schedule(scheduler)
    scheduler.start()
    atexit.register(lambda: scheduler.shutdown(wait=False) if scheduler.running else None)
    app.extensions[SCHEDULER_EXTENSION] = scheduler
    log.info("engine scheduler started in the web process (NURTURE_SCHEDULER_IN_WEB=true)")
    return scheduler
