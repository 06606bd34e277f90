"""The worker and ``nurture tick`` apply tracking hits and refresh scores: a pixel or click stored by the public
endpoints reaches the lead's score without anyone calling the tracking domain by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from nurture.delivery.backends.file import FileMailer
from nurture.engine.worker import EngineJobs
from nurture.leads.models import Lead
from nurture.tracking.jobs import REFRESH_EVERY, score_refresh_job
from tests.integration.test_tracking_support import Urls, load_scoring, make_lead, make_message

pytest_plugins = ["tests.integration.test_tracking_support"]

SCORING = """rules:
  - {name: clicks, event: clicked, points: 5}
  - {name: opens, event: opened, points: 1}
"""
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0"}


@pytest.fixture
def jobs(session_factory, clock, ctx, tmp_path):
    return EngineJobs(session_factory, clock, ctx, FileMailer(tmp_path / "outbox", clock, 1000))


def test_the_worker_schedules_the_tracking_jobs(jobs):
    scheduler = BackgroundScheduler()
    jobs.schedule(scheduler)
    assert {"nurture.engine.events", "nurture.engine.score_refresh"} <= {job.id for job in scheduler.get_jobs()}


def test_a_click_on_a_tracked_link_reaches_the_score_through_the_worker(
    session, clock, tracking_app, signer, jobs
):
    load_scoring(session, clock, SCORING)
    lead = make_lead(session, clock, "click@example.com")
    message = make_message(session, clock, lead, sent_at=clock.now() - timedelta(hours=2))
    session.commit()
    client = tracking_app.test_client()
    assert client.get(Urls(signer).click(message.id, 1), headers=BROWSER).status_code == 302
    assert client.get(Urls(signer).open(message.id), headers=BROWSER).status_code == 200
    session.expire_all()
    assert session.get(Lead, lead.id).score == 0  # stored, not applied yet

    jobs.events()

    session.expire_all()
    assert session.get(Lead, lead.id).score == 6


def test_the_score_refresh_runs_at_most_every_fifteen_minutes_unless_forced(session_factory, clock, ctx, session):
    make_lead(session, clock, "quiet@example.com")
    session.commit()
    assert score_refresh_job(session_factory, clock, ctx, force=False).leads == 1
    clock.advance(REFRESH_EVERY - timedelta(seconds=1))
    assert score_refresh_job(session_factory, clock, ctx, force=False).leads == 0
    assert score_refresh_job(session_factory, clock, ctx).leads == 1  # `nurture scoring refresh` forces it
    clock.advance(REFRESH_EVERY)
    assert score_refresh_job(session_factory, clock, ctx, force=False).leads == 1
