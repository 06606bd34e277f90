"""Score changes that do not come from an event: adjustments by a campaign (``set: adjust_score``) or a
person, which are engagement points like any other (they decay, and show in the breakdown)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.config import TemperatureThresholds
from nurture.leads.models import Lead
from nurture.leads.service import set_score
from nurture.scoring.lifecycle import promote_for_score
from nurture.scoring.points import ADJUSTMENT, Award, add_engagement, entry_row, fit_points, insert_entries
from nurture.scoring.store import current_config


def adjust_score(
    session: Session,
    clock: Clock,
    thresholds: TemperatureThresholds,
    lead: Lead,
    points: int,
    reason: str,
    *,
    promote: bool = True,
) -> int:
    """Add ``points`` (negative to take away) to the lead's engagement; returns the new score. The entry
    names ``reason`` (e.g. ``campaign onboarding, step qualified``) in the breakdown. ``promote=False`` is
    for points carried over from history (demo data, a CRM's own score) that must not move stages now."""
    now = clock.now()
    config = current_config(session)
    award = Award(None, reason[:100], points)
    insert_entries(
        session, [entry_row(lead.id, award, event_id=None, event_type=ADJUSTMENT, occurred_at=now, now=now)]
    )
    fit = fit_points(session, config, [lead.id], now).get(lead.id, 0)
    state = add_engagement(session, config.settings, lead.id, float(points), now, fit=fit)
    set_score(lead, state.score, thresholds)
    if promote:
        promote_for_score(session, clock, lead, state.score, config.settings, reason)
    return state.score
