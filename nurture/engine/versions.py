"""Campaign edits: a lead's position is the id of its current step, so an edit applies at once to every
lead not yet past the changed step, and steps already done are never run again. When an edit removes the
step a lead is on, the lead moves on to the next step of the old list that still exists (the one it would
have reached by falling through), or completes the campaign when none is left. To know the old list, the
engine keeps the step ids of every version it has run (``campaign_step_lists``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition
from nurture.engine.context import LoadedCampaign
from nurture.engine.models import CampaignStepList


def remember_step_list(session: Session, campaign: LoadedCampaign) -> None:
    """Store the step ids of the campaign's current version unless stored already (once per batch and
    campaign: one statement that usually inserts nothing)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(CampaignStepList)
        .values(campaign_id=campaign.id, version=campaign.version, step_ids=list(campaign.definition.step_ids))
        .on_conflict_do_nothing()
    )


def step_list(session: Session, campaign_id: int, version: int) -> list[str] | None:
    return session.scalar(
        select(CampaignStepList.step_ids).where(
            CampaignStepList.campaign_id == campaign_id, CampaignStepList.version == version
        )
    )


def surviving_step(old_step_ids: list[str], removed: str, definition: CampaignDefinition) -> str | None:
    """The first step after ``removed`` in the old list that the new definition still has; None: none is."""
    if removed not in old_step_ids:
        return None
    for step_id in old_step_ids[old_step_ids.index(removed) + 1 :]:
        if definition.has_step(step_id):
            return step_id
    return None
