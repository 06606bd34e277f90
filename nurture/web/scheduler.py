"""The engine's scheduler inside the web process, for the embedded setup (``NURTURE_SCHEDULER_IN_WEB``).

``init_app`` starts it only in the process that serves HTTP (``nurture run``, the reloader's child when it
reloads, or a WSGI server that imported the app), never under ``TESTING`` nor in other CLI commands: a
``nurture tick`` or ``nurture leads import`` must not start a second engine behind the user's back."""

from __future__ import annotations

import atexit
import logging
from datetime import UTC

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from werkzeug.serving import is_running_from_reloader

from nurture.config import Settings
from nurture.engine.worker import make_jobs
from nurture.web.database import get_database

log = logging.getLogger(__name__)

SCHEDULER_EXTENSION = "nurture.engine.scheduler"


def serves_requests(app: Flask) -> bool:
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
    if not settings.run_scheduler_in_web or app.testing:
        return None
    if not serves_requests(app):
        return None
    with app.app_context():
        session_factory = get_database().session_factory
    scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
    make_jobs(settings, session_factory).schedule(scheduler)
    scheduler.start()
    atexit.register(lambda: scheduler.shutdown(wait=False) if scheduler.running else None)
    app.extensions[SCHEDULER_EXTENSION] = scheduler
    log.info("engine scheduler started in the web process (NURTURE_SCHEDULER_IN_WEB=true)")
    return scheduler
