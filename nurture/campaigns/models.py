"""The campaigns table (one row per campaign, its current definition stored as normalised JSON), every
version it has had (``campaign_versions``), the draft being edited in the web UI (``campaign_drafts``) and
the leads kept out of an entry (``campaign_entry_exclusions``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from nurture.campaigns.definition import CampaignDefinition
from nurture.db import Base, BigId, JSONDocument, enum_column


class CampaignStatus(StrEnum):
    """draft → active ⇄ paused; any → archived, which is final (reports keep it)."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    # Copies of the definition's, for lists and joins without reading the JSON.
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[CampaignStatus] = mapped_column(
        enum_column(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    # CampaignDefinition.to_data(): the public file format, normalised.
    definition: Mapped[dict[str, Any]]
    # Starts at 1 and grows by one with each change to the definition (status changes do not count).
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The latest time the campaign entered each status.
    activated_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]

    @property
    def parsed(self) -> CampaignDefinition:
        """The stored definition as objects the engine walks (trusted: it was validated when saved)."""
        return CampaignDefinition.from_data(self.definition)

    @property
    def step_count(self) -> int:
        return len(self.definition.get("steps", ()))

    def __repr__(self) -> str:
        return f"Campaign({self.slug!r}, {self.status.value}, v{self.version})"


class CampaignVersion(Base):
    """A definition the campaign had: one row per version, written whenever the definition changes (a CLI
    load, a publish from the web UI, a restore), so any two can be compared and any one restored."""

    __tablename__ = "campaign_versions"
    __table_args__ = (UniqueConstraint("campaign_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    # Who made it: a user's email, or "cli" for `nurture campaigns load`.
    created_by: Mapped[str] = mapped_column(String(320), default="")
    note: Mapped[str] = mapped_column(Text, default="")


class CampaignDraft(Base):
    """The work in progress of the campaign editor: the definition in the public format as last saved,
    valid or not (errors are shown at their fields until they are fixed). Publishing makes it the campaign's
    definition and deletes the draft.

    ``revision`` grows by one with each save: a save names the revision it was made on, and a save made on
    an older one (another tab, another person) is refused rather than overwriting. ``history`` holds the
    definitions before the latest saves, newest last, for undo."""

    __tablename__ = "campaign_drafts"

    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    definition: Mapped[dict[str, Any]]
    # The campaign version the draft was started from: publishing over a newer one is refused.
    base_version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    history: Mapped[list[Any]] = mapped_column(JSONDocument, default=list)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(320), default="")


class EntryExclusion(Base):
    """A lead kept out of a campaign's segment or rules entry: the leads who already matched when the
    campaign was activated with "only new ones" (the review page's choice). Event-like triggers need none:
    they only ever fire for what happens while the campaign listens."""

    __tablename__ = "campaign_entry_exclusions"

    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
