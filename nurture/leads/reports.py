"""Counts for dashboards: leads per stage and temperature."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.leads.lifecycle import FUNNEL, LeadStatus, Stage, Temperature
from nurture.leads.models import Lead


@dataclass(frozen=True)
class StageTemperatureCounts:
    cells: dict[tuple[Stage, Temperature], int]
    suppressed: int

    def for_stage(self, stage: Stage) -> int:
        return sum(count for (s, _), count in self.cells.items() if s == stage)

    def for_temperature(self, temperature: Temperature) -> int:
        return sum(count for (_, t), count in self.cells.items() if t == temperature)

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    @property
    def stages(self) -> tuple[Stage, ...]:
        return (*FUNNEL, Stage.LOST)


def stage_temperature_counts(session: Session) -> StageTemperatureCounts:
    """Active leads per (stage, temperature); suppressed leads are counted apart."""
    rows = session.execute(
        select(Lead.stage, Lead.temperature, func.count())
        .where(Lead.status == LeadStatus.ACTIVE)
        .group_by(Lead.stage, Lead.temperature)
    ).all()
    suppressed = session.scalar(select(func.count()).where(Lead.status != LeadStatus.ACTIVE)) or 0
    return StageTemperatureCounts({(stage, temp): count for stage, temp, count in rows}, suppressed)
