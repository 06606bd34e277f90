"""Tables of the lead domain: leads, tags, the stage history and the activity timeline."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.db import Base, BigId, enum_column
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature

StageType = enum_column(Stage, "stage")


class ActorKind(StrEnum):
    IMPORT = "import"
    RULE = "rule"
    USER = "user"
    API = "api"
    CAMPAIGN = "campaign"
    SYSTEM = "system"


lead_tags = Table(
    "lead_tags",
    Base.metadata,
    Column("lead_id", BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Integer, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_lead_tags_tag_id", "tag_id"),
)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    def __repr__(self) -> str:
        return f"Tag({self.name!r})"


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        # Serves attribute = / in, compiled to `attributes @> {...}` on PostgreSQL.
        Index(
            "ix_leads_attributes", "attributes", postgresql_using="gin", postgresql_ops={"attributes": "jsonb_path_ops"}
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Case-folded email: the identity used for uniqueness and lookups.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)

    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(200))
    job_title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    country: Mapped[str | None] = mapped_column(String(100), index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(100), index=True)
    owner: Mapped[str | None] = mapped_column(String(320), index=True)

    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    stage: Mapped[Stage] = mapped_column(StageType, default=Stage.SUBSCRIBER, index=True)
    stage_entered_at: Mapped[datetime]
    score: Mapped[int] = mapped_column(Integer, default=0, index=True)
    temperature: Mapped[Temperature] = mapped_column(
        enum_column(Temperature, "temperature"), default=Temperature.COLD, index=True
    )
    status: Mapped[LeadStatus] = mapped_column(
        enum_column(LeadStatus, "status"), default=LeadStatus.ACTIVE, index=True
    )

    consent_basis: Mapped[str | None] = mapped_column(String(40))
    consent_source: Mapped[str | None] = mapped_column(String(200))
    consent_at: Mapped[datetime | None]
    consent_ip: Mapped[str | None] = mapped_column(String(45))

    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    last_engaged_at: Mapped[datetime | None] = mapped_column(index=True)

    tags: Mapped[list[Tag]] = relationship(secondary=lead_tags, lazy="selectin", order_by=Tag.name)

    @property
    def tag_names(self) -> list[str]:
        return [tag.name for tag in self.tags]

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def is_suppressed(self) -> bool:
        return self.status.is_suppressed

    def __repr__(self) -> str:
        return f"Lead({self.email!r}, stage={self.stage.value})"


class StageChange(Base):
    """One row per lifecycle move; reports on conversion and time-in-stage are computed from it."""

    __tablename__ = "stage_changes"
    __table_args__ = (
        Index("ix_stage_changes_lead_id_changed_at", "lead_id", "changed_at"),
        Index("ix_stage_changes_to_stage_changed_at", "to_stage", "changed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    # NULL when the lead was created in ``to_stage``.
    from_stage: Mapped[Stage | None] = mapped_column(enum_column(Stage, "from_stage"))
    to_stage: Mapped[Stage] = mapped_column(enum_column(Stage, "to_stage"))
    changed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    actor_kind: Mapped[ActorKind] = mapped_column(enum_column(ActorKind, "actor_kind"))
    actor: Mapped[str | None] = mapped_column(String(320))


class Activity(Base):
    """The lead timeline: imports, stage changes, emails and custom events each leave a row."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_lead_id_occurred_at", "lead_id", "occurred_at"),
        # Covers engagement conditions in segments: kind + time window, yielding lead ids.
        Index("ix_activities_kind_occurred_at_lead_id", "kind", "occurred_at", "lead_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    campaign: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict[str, Any] | None]
