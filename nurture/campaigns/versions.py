"""A campaign's version history: every definition it has had (``campaign_versions``), a diff between any
two of them (or the draft), and restoring an old one into the draft, to be reviewed and published like any
edit. Callers own the transaction; nothing here commits."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.drafts import find_draft, save_draft
from nurture.campaigns.models import Campaign, CampaignDraft, CampaignVersion
from nurture.campaigns.validation import dump_yaml
from nurture.clock import Clock
from nurture.errors import NotFound


def list_versions(session: Session, campaign: Campaign) -> list[CampaignVersion]:
    """Newest first."""
    return list(
        session.scalars(
            select(CampaignVersion)
            .where(CampaignVersion.campaign_id == campaign.id)
            .order_by(CampaignVersion.version.desc())
        )
    )


def get_version(session: Session, campaign: Campaign, version: int) -> CampaignVersion:
    found = session.scalar(
        select(CampaignVersion).where(CampaignVersion.campaign_id == campaign.id, CampaignVersion.version == version)
    )
    if found is None:
        raise NotFound(f"campaign {campaign.slug!r} has no version {version}")
    return found


def restore_version(
    session: Session, clock: Clock, campaign: Campaign, version: int, *, revision: int, author: str
) -> CampaignDraft:
    """Put version ``version``'s definition into the draft (an edit like any other: undo takes it back)."""
    old = get_version(session, campaign, version)
    return save_draft(session, clock, campaign, dict(old.definition), revision=revision, author=author)


def definition_at(session: Session, campaign: Campaign, which: str) -> tuple[str, Mapping[str, Any]]:
    """A label and the definition for ``which``: a version number, ``current`` or ``draft``."""
    if which == "draft":
        draft = find_draft(session, campaign)
        if draft is None:
            raise NotFound(f"campaign {campaign.slug!r} has no draft")
        return f"draft (revision {draft.revision})", draft.definition
    if which == "current":
        return f"version {campaign.version} (current)", campaign.definition
    if not which.isdigit() or len(which) > 9:
        raise NotFound(f"no version {which!r}: give a version number, current or draft")
    found = get_version(session, campaign, int(which))
    return f"version {found.version}", found.definition


def diff_definitions(
    before: Mapping[str, Any], after: Mapping[str, Any], *, before_label: str, after_label: str
) -> list[str]:
    """A unified diff of the two definitions as the YAML files ``nurture campaigns export`` writes."""
    return list(
        difflib.unified_diff(
            dump_yaml(dict(before)).splitlines(),
            dump_yaml(dict(after)).splitlines(),
            fromfile=before_label,
            tofile=after_label,
            lineterm="",
            n=3,
        )
    )
