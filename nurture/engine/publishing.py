"""Publishing a campaign's draft: what it will change for the leads in flight, said before, then the change.

The engine's rules for live edits (docs/engine.md, "Campaign control") decide what happens; this module only
says it in advance, in numbers, so the marketer confirms knowing: a lead on a step the draft removes moves to
the next step of the old list that still exists (``surviving_step``) or completes; a lead waiting keeps the
wake-up time computed when it arrived; a changed step applies to every lead not yet past it and nothing
already done runs again; an added event-like entry trigger listens from the publish on, a removed one stops.

Publishing goes through the same validator and store as ``nurture campaigns load`` and records the version
with its author. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.drafts import DraftConflict, discard_draft, find_draft
from nurture.campaigns.models import Campaign, CampaignDraft, CampaignStatus, CampaignVersion
from nurture.campaigns.store import SavedCampaign, save_campaign
from nurture.campaigns.validation import CampaignInvalid, Issue, TemplateCheck, check_data
from nurture.clock import Clock
from nurture.engine.models import Enrollment, is_live
from nurture.engine.versions import step_list, surviving_step
from nurture.errors import ValidationError


@dataclass(frozen=True)
class Consequence:
    """One thing publishing changes, in words, with the number of leads it concerns (0: none in flight)."""

    text: str
    leads: int = 0


@dataclass(frozen=True)
class PublishPlan:
    issues: tuple[Issue, ...]
    # Why the draft cannot be published as it is, besides validation errors (someone published meanwhile).
    blocked: str | None
    consequences: tuple[Consequence, ...]
    changed: bool

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    @property
    def can_publish(self) -> bool:
        return self.changed and self.blocked is None and not self.errors


def plan_publish(
    session: Session, campaign: Campaign, draft: CampaignDraft, *, template_exists: TemplateCheck
) -> PublishPlan:
    checked = check_data(draft.definition, template_exists=template_exists, session=session)
    blocked = _blocked(session, campaign, draft)
    changed = draft.definition != campaign.definition
    if checked.definition is None:
        return PublishPlan(checked.issues, blocked, (), changed)
    return PublishPlan(checked.issues, blocked, tuple(_consequences(session, campaign, checked.definition)), changed)


def publish_draft(
    session: Session,
    clock: Clock,
    campaign: Campaign,
    *,
    revision: int,
    author: str,
    template_exists: TemplateCheck,
) -> SavedCampaign:
    """Make the draft the campaign's definition (a new version) and drop the draft."""
    draft = find_draft(session, campaign)
    if draft is None or draft.revision != revision:
        raise DraftConflict(draft, revision)
    blocked = _blocked(session, campaign, draft)
    if blocked is not None:
        raise ValidationError(blocked)
    checked = check_data(draft.definition, template_exists=template_exists, session=session)
    if checked.definition is None:
        raise CampaignInvalid(checked.issues)
    if checked.definition.slug != campaign.slug:
        raise ValidationError("the slug of a campaign cannot change", where="slug")
    note = f"published from the editor (draft revision {revision})"
    saved = save_campaign(session, clock, checked.definition, author=author, note=note)
    discard_draft(session, campaign)
    return saved


def _blocked(session: Session, campaign: Campaign, draft: CampaignDraft) -> str | None:
    if campaign.status is CampaignStatus.ARCHIVED:
        return f"campaign {campaign.slug!r} is archived: archived campaigns stay as they are"
    if draft.base_version == campaign.version:
        return None
    newer = session.scalar(
        select(CampaignVersion).where(
            CampaignVersion.campaign_id == campaign.id, CampaignVersion.version == campaign.version
        )
    )
    who = f" by {newer.created_by}" if newer is not None and newer.created_by else ""
    return (
        f"version {campaign.version} was published{who} after this draft was started from version "
        f"{draft.base_version}: compare them in the version history, then discard the draft or restore what you need"
    )


def _consequences(session: Session, campaign: Campaign, new: CampaignDefinition) -> list[Consequence]:
    old_data = campaign.definition
    old = CampaignDefinition.from_data(old_data)
    live = _live_by_step_and_version(session, campaign)
    on_step: dict[str, int] = defaultdict(int)
    for (step_id, _version), count in live.items():
        on_step[step_id] += count
    found: list[Consequence] = []
    removed = [step_id for step_id in old.step_ids if not new.has_step(step_id)]
    for step_id in removed:
        moves: dict[str | None, int] = defaultdict(int)
        for (on, version), count in live.items():
            if on != step_id:
                continue
            old_list = step_list(session, campaign.id, version) or list(old.step_ids)
            moves[surviving_step(old_list, step_id, new)] += count
        if not moves:
            found.append(Consequence(f"Step `{step_id}` is removed; no lead is on it."))
        for target, count in sorted(moves.items(), key=lambda item: str(item[0])):
            where = f"they move to `{target}`" if target else "no later step remains, so they complete the campaign"
            found.append(Consequence(f"{_leads(count)} wait on `{step_id}`, which you removed; {where}.", count))
    for step in new.steps:
        if not old.has_step(step.id):
            found.append(Consequence(f"Step `{step.id}` is new: leads reach it from where they are, none goes back."))
            continue
        before, after = _step_data(old_data, step.id), _step_data(new.to_data(), step.id)
        if before == after:
            continue
        waiting = on_step.get(step.id, 0)
        if before.get("type") != after.get("type"):
            text = f"Step `{step.id}` changes from {before.get('type')} to {after.get('type')}"
        else:
            text = f"Step `{step.id}` changes"
        if step.kind.value in ("wait", "wait_for") and waiting:
            text += f": the {_leads(waiting)} waiting on it keep the wake-up time set when they arrived"
        elif waiting:
            text += f": it applies to the {_leads(waiting)} about to run it"
        found.append(Consequence(text + "; leads already past it do not run it again.", waiting))
    kept_before = [step_id for step_id in old.step_ids if new.has_step(step_id)]
    kept_after = [step_id for step_id in new.step_ids if old.has_step(step_id)]
    if kept_before != kept_after:
        found.append(Consequence("Steps are reordered: each lead goes on from the step it is on, in the new order."))
    found += _entry_consequences(old_data, new.to_data())
    in_flight = sum(on_step.values())
    for key, label in (("goal", "goal"), ("exit", "exit conditions"), ("send_window", "send window")):
        if old_data.get(key) != new.to_data().get(key):
            found.append(Consequence(f"The {label} changes for every lead in flight ({_leads(in_flight)}).", in_flight))
    return found


def _entry_consequences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Consequence]:
    before = list(old.get("entry") or [])
    after = list(new.get("entry") or [])
    found = []
    for trigger in after:
        if trigger not in before:
            kind = next(iter(trigger))
            when = (
                "every lead matching it at the next pass enters"
                if kind in ("segment", "rules")
                else "it fires for what happens from the publish on"
            )
            found.append(Consequence(f"New entry {_trigger(trigger)}: {when}."))
    for trigger in before:
        if trigger not in after:
            found.append(Consequence(f"Entry {_trigger(trigger)} is removed: it stops enrolling; leads in it stay."))
    return found


def _trigger(trigger: Mapping[str, Any]) -> str:
    ((kind, value),) = trigger.items()
    return f"{kind.replace('_', ' ')} {value}" if not isinstance(value, dict | list) else kind.replace("_", " ")


def _step_data(data: Mapping[str, Any], step_id: str) -> dict[str, Any]:
    return next((dict(step) for step in data.get("steps") or [] if step.get("id") == step_id), {})


def _live_by_step_and_version(session: Session, campaign: Campaign) -> dict[tuple[str, int], int]:
    rows = session.execute(
        select(Enrollment.step_id, Enrollment.campaign_version, func.count())
        .where(Enrollment.campaign_id == campaign.id, is_live(Enrollment.state))
        .group_by(Enrollment.step_id, Enrollment.campaign_version)
    )
    return {(str(step_id), version): count for step_id, version, count in rows}


def _leads(count: int) -> str:
    return f"{count} lead{'s' if count != 1 else ''}"

