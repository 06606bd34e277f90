"""The campaigns table: one row per campaign, its definition stored as normalised JSON."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.campaigns.definition import CampaignDefinition
from nurture.db import Base, enum_column


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
