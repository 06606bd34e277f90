"""Demo scores are engagement in the scoring ledger: the worker's score refresh keeps them, and they cool."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from nurture.config import TemperatureThresholds
from nurture.demo import load_demo_data
from nurture.engine.context import engine_context
from nurture.leads.models import Lead
from nurture.tracking.jobs import score_refresh_job


def test_the_score_refresh_keeps_demo_scores_and_they_decay(session, session_factory, clock, nurture_settings):
    load_demo_data(session, clock, TemperatureThresholds(), count=40, user_password="demo-password-1")
    session.commit()
    before = dict(session.execute(select(Lead.id, Lead.score)).all())
    assert sum(before.values()) > 0

    ctx = engine_context(nurture_settings)
    score_refresh_job(session_factory, clock, ctx)
    session.expire_all()
    # At the same instant nothing decays; leads imported without history only gain their fit points.
    assert all(score >= before[lead_id] for lead_id, score in session.execute(select(Lead.id, Lead.score)).all())
    before = dict(session.execute(select(Lead.id, Lead.score)).all())

    clock.advance(timedelta(days=60))  # two half-lives
    score_refresh_job(session_factory, clock, ctx)
    session.expire_all()
    after = dict(session.execute(select(Lead.id, Lead.score)).all())
    assert all(after[lead_id] <= score for lead_id, score in before.items())
    assert sum(after.values()) < sum(before.values())
