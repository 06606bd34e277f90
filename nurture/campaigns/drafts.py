"""Drafts: the campaign editor's work in progress, saved as the marketer goes.

A draft holds a definition in the public format (``CampaignDefinition.to_data()``'s shape) that may not be
valid yet: the editor shows the validator's errors at their fields until they are fixed, and only
publishing (``nurture.engine.publishing``) requires a valid one. A campaign has at most one draft; everyone
who edits the campaign edits it.

No work is lost and nobody overwrites anybody: each save names the revision it was made on, and a save made
on an older revision (a second tab, a colleague, a request replayed after a dropped connection) raises
``DraftConflict`` instead of writing, so the editor can show what the other save changed while keeping the
marketer's input. ``history`` keeps the last ``UNDO_DEPTH`` definitions for undo.

Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign, CampaignDraft
from nurture.clock import Clock
from nurture.errors import NurtureError

# How many earlier states undo can go back to.
UNDO_DEPTH = 50


class DraftConflict(NurtureError):
    """The draft changed since the revision the save was made on."""

    def __init__(self, draft: CampaignDraft | None, expected_revision: int) -> None:
        if draft is None:
            message = "the draft was published or discarded meanwhile; your changes were not saved"
        else:
            who = draft.updated_by or "someone"
            message = (
                f"the draft was changed by {who} (revision {draft.revision}, yours was made on revision "
                f"{expected_revision}); your changes were not saved over theirs"
            )
        super().__init__(message)
        self.draft = draft
        self.expected_revision = expected_revision


def find_draft(session: Session, campaign: Campaign) -> CampaignDraft | None:
    return session.get(CampaignDraft, campaign.id)


def open_draft(session: Session, clock: Clock, campaign: Campaign, author: str) -> CampaignDraft:
    """The campaign's draft, started from its current definition when it has none."""
    draft = find_draft(session, campaign)
    if draft is not None:
        return draft
    draft = CampaignDraft(
        campaign_id=campaign.id,
        definition=copy.deepcopy(campaign.definition),
        base_version=campaign.version,
        # Revision 0: the draft is still the published definition, as the editor showed it before it existed.
        revision=0,
        history=[],
        updated_at=clock.now(),
        updated_by=author,
    )
    session.add(draft)
    session.flush()
    return draft


def save_draft(
    session: Session, clock: Clock, campaign: Campaign, data: dict[str, Any], *, revision: int, author: str
) -> CampaignDraft:
    """Store ``data`` as the draft when the draft is still at ``revision`` (0: the campaign has no draft yet,
    the edit was made on the published definition); ``DraftConflict`` otherwise.

    A save that changes nothing keeps the revision. The check and the write are one ``UPDATE ... WHERE
    revision = :revision``, so two saves racing on the same revision cannot both win."""
    current = find_draft(session, campaign)
    if current is not None and current.revision != revision and current.definition == data:
        # The same change saved twice (an autosave racing the Save button): nothing would be overwritten.
        return current
    draft = _draft_at(session, clock, campaign, revision, author)
    revision = draft.revision
    if draft.definition == data:
        return draft
    history = [*draft.history, draft.definition][-UNDO_DEPTH:]
    _write(session, clock, draft, data, history, revision, author)
    return draft


def undo_draft(session: Session, clock: Clock, campaign: Campaign, *, revision: int, author: str) -> CampaignDraft:
    """Go back to the draft's previous state (a no-op with nothing to undo)."""
    draft = _draft_at(session, clock, campaign, revision, author)
    revision = draft.revision
    if not draft.history:
        return draft
    *history, previous = draft.history
    _write(session, clock, draft, previous, history, revision, author)
    return draft


def _draft_at(session: Session, clock: Clock, campaign: Campaign, revision: int, author: str) -> CampaignDraft:
    """The draft an edit made on ``revision`` applies to, started now for revision 0; ``DraftConflict`` when
    the draft is elsewhere."""
    draft = find_draft(session, campaign)
    if draft is None and revision == 0:
        draft = open_draft(session, clock, campaign, author)
    if draft is None or draft.revision != revision:
        raise DraftConflict(draft, revision)
    return draft


def discard_draft(session: Session, campaign: Campaign) -> None:
    """Drop the draft (after publishing it, or when the marketer throws the changes away)."""
    draft = find_draft(session, campaign)
    if draft is not None:
        session.delete(draft)
        session.flush()


def _write(
    session: Session,
    clock: Clock,
    draft: CampaignDraft,
    data: dict[str, Any],
    history: list[Any],
    revision: int,
    author: str,
) -> None:
    written = session.execute(
        update(CampaignDraft)
        .where(CampaignDraft.campaign_id == draft.campaign_id, CampaignDraft.revision == revision)
        .values(
            definition=copy.deepcopy(data),
            history=history,
            revision=revision + 1,
            updated_at=clock.now(),
            updated_by=author,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(draft)
    if written != 1:
        raise DraftConflict(draft, revision)


def drafts_of(session: Session, campaign_ids: list[int]) -> dict[int, CampaignDraft]:
    """The drafts of these campaigns, by campaign id (for lists that flag unpublished changes)."""
    if not campaign_ids:
        return {}
    drafts = session.scalars(select(CampaignDraft).where(CampaignDraft.campaign_id.in_(campaign_ids)))
    return {draft.campaign_id: draft for draft in drafts}
