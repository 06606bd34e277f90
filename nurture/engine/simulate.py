"""The path one lead would take through a campaign, computed by the engine itself inside a transaction
the caller rolls back: the same executor, templates, windows, caps and branch rules as the real thing,
with a clock that jumps from one due time to the next. Nothing is committed and nothing is sent.

No engagement happens during a simulation (nobody opens the emails), so engagement branches and
``wait_for`` steps take their ``no`` paths unless the lead engaged already."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.campaigns.store import get_campaign
from nurture.clock import Clock, FixedClock
from nurture.engine.claiming import claim_enrollment
from nurture.engine.context import EngineContext
from nurture.engine.enrollment import enrol_lead
from nurture.engine.models import LIVE_STATES, Enrollment, StepRun, is_live
from nurture.engine.steps import advance_enrollments
from nurture.errors import ValidationError
from nurture.leads.service import get_lead

MAX_RUNS = 2000


@dataclass(frozen=True)
class PlannedStep:
    at: datetime
    step_id: str
    step_type: str
    outcome: str
    variant: str | None
    detail: dict[str, Any]


@dataclass
class Simulation:
    campaign: str
    lead: str
    zone: ZoneInfo
    start: datetime
    end: datetime
    steps: list[PlannedStep] = field(default_factory=list)
    # Why the lead would not enter, if it would not.
    refused: str | None = None
    state: str = ""
    step_id: str | None = None
    next_run_at: datetime | None = None

    def local(self, at: datetime) -> str:
        return at.astimezone(self.zone).strftime("%a %Y-%m-%d %H:%M %Z")

    def lines(self) -> list[str]:
        lines = [f"{self.campaign} for {self.lead} (times in {self.zone.key}), from {self.local(self.start)}:"]
        if self.refused:
            return [*lines, f"  does not enter: {self.refused}"]
        for step in self.steps:
            lines.append(f"  {self.local(step.at)}  {step.step_id} ({step.step_type}): {_describe(self, step)}")
        if self.state in {state.value for state in LIVE_STATES}:
            wake = f"; next at {self.local(self.next_run_at)}" if self.next_run_at else ""
            lines.append(f"  still {self.state} at step {self.step_id} on {self.local(self.end)}{wake}")
        else:
            lines.append(f"  ends: {self.state}")
        return lines


def _describe(simulation: Simulation, step: PlannedStep) -> str:
    detail = dict(step.detail)
    parts = [step.outcome]
    if step.variant:
        parts.append(f"variant {step.variant}")
    for key in ("until", "event", "reason", "to", "template", "error", "webhook", "owner"):
        value = detail.pop(key, None)
        if value is None:
            continue
        if key == "until":
            value = simulation.local(datetime.fromisoformat(value))
        parts.append(f"{key} {value}")
    return ", ".join(str(part) for part in parts)


def simulate(
    session: Session, clock: Clock, ctx: EngineContext, campaign_slug: str, lead_email: str, *, days: int = 30
) -> Simulation:
    """Run the lead through the campaign for ``days`` in the caller's transaction, which the caller must
    roll back. A lead already enrolled goes on from where it is; any other lead enters now."""
    if days < 1 or days > 3650:
        raise ValidationError("must be between 1 and 3650", where="--days")
    campaign = ctx.load(get_campaign(session, campaign_slug))
    lead = get_lead(session, lead_email)
    start = clock.now()
    simulation = Simulation(
        campaign.slug, lead.email, campaign.lead_zone(lead.timezone), start, start + timedelta(days=days)
    )
    enrollment_id = session.scalar(
        select(Enrollment.id).where(
            Enrollment.campaign_id == campaign.id, Enrollment.lead_id == lead.id, is_live(Enrollment.state)
        )
    )
    if enrollment_id is None:
        enrollment_id = enrol_lead(session, clock, campaign, lead.id, source="simulation")
    if enrollment_id is None:
        simulation.refused = (
            f"the lead is {lead.status.value}"
            if lead.is_suppressed
            else "it was enrolled before and the campaign's re-entry policy keeps it out"
        )
        return simulation
    first_run = (session.scalar(select(func.max(StepRun.id))) or 0) + 1
    sim_clock = FixedClock(start)
    for _ in range(MAX_RUNS):
        row = session.execute(
            select(Enrollment.state, Enrollment.next_run_at).where(Enrollment.id == enrollment_id)
        ).one()
        if row.state not in LIVE_STATES or row.next_run_at is None or row.next_run_at > simulation.end:
            break
        sim_clock.set(max(row.next_run_at, sim_clock.now()))
        if claim_enrollment(session, enrollment_id):
            advance_enrollments(session, sim_clock, ctx, [enrollment_id])
    session.expire_all()
    final = session.get(Enrollment, enrollment_id)
    assert final is not None
    simulation.state, simulation.step_id, simulation.next_run_at = final.state.value, final.step_id, final.next_run_at
    for run in session.scalars(
        select(StepRun).where(StepRun.enrollment_id == enrollment_id, StepRun.id >= first_run).order_by(StepRun.id)
    ):
        simulation.steps.append(
            PlannedStep(run.ran_at, run.step_id, run.step_type, run.outcome, run.variant, dict(run.detail or {}))
        )
    return simulation
