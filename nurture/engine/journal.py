"""What the engine writes down about each lead: the step log (``step_runs``) and the lead's timeline
(``activities``), collected during a batch and inserted in bulk with it.

Timeline kinds: ``campaign_entered``; ``campaign_step`` for every step run (its outcome, message and
variant in ``data``); ``campaign_completed``, ``campaign_converted``, ``campaign_exited`` or
``campaign_failed`` when an enrollment ends. They are ordinary activities: segments can test them and
another campaign can start ``on_event: campaign_converted``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from nurture.delivery.bulk import insert_rows
from nurture.engine.context import LoadedCampaign
from nurture.engine.models import EnrollmentState, StepRun
from nurture.leads.models import Activity

ENTERED = "campaign_entered"
STEP = "campaign_step"


def finished_kind(state: EnrollmentState) -> str:
    return f"campaign_{state.value}"


class Journal:
    def __init__(self) -> None:
        self.step_runs: list[dict[str, Any]] = []
        self.activities: list[dict[str, Any]] = []

    def step(
        self,
        *,
        enrollment_id: int,
        campaign: LoadedCampaign,
        lead_id: int,
        step_id: str,
        step_type: str,
        outcome: str,
        at: datetime,
        message_id: int | None = None,
        variant: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.step_runs.append(
            {
                "enrollment_id": enrollment_id,
                "campaign_id": campaign.id,
                "lead_id": lead_id,
                "step_id": step_id,
                "step_type": step_type,
                "outcome": outcome,
                "ran_at": at,
                "message_id": message_id,
                "variant": variant,
                "detail": detail or None,
            }
        )
        data: dict[str, Any] = {"enrollment": enrollment_id, "step": step_id, "type": step_type, "outcome": outcome}
        if message_id is not None:
            data["message_id"] = message_id
        if variant is not None:
            data["variant"] = variant
        if detail:
            data.update(detail)
        self._activity(lead_id, STEP, at, campaign, data)

    def entered(self, *, enrollment_id: int, campaign: LoadedCampaign, lead_id: int, at: datetime, source: str) -> None:
        self._activity(lead_id, ENTERED, at, campaign, {"enrollment": enrollment_id, "source": source})

    def finished(
        self,
        *,
        enrollment_id: int,
        campaign: LoadedCampaign,
        lead_id: int,
        at: datetime,
        state: EnrollmentState,
        reason: str,
    ) -> None:
        self._activity(lead_id, finished_kind(state), at, campaign, {"enrollment": enrollment_id, "reason": reason})

    def _activity(
        self, lead_id: int, kind: str, at: datetime, campaign: LoadedCampaign, data: dict[str, Any]
    ) -> None:
        self.activities.append(
            {"lead_id": lead_id, "kind": kind, "occurred_at": at, "campaign": campaign.slug, "data": data}
        )

    def flush(self, session: Session) -> None:
        """Insert what was collected (step runs after the messages they point at) and start over."""
        insert_rows(session, StepRun.__table__, self.step_runs)  # type: ignore[arg-type]
        insert_rows(session, Activity.__table__, self.activities)  # type: ignore[arg-type]
        self.step_runs = []
        self.activities = []
