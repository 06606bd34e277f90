"""Tables of lead scoring: the rules and settings in force, each lead's score components, the entries that
explain them, and the per-period counters behind rule caps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.db import Base, BigId, JSONDocument


class ScoringSettingsRow(Base):
    """The settings part of the loaded scoring file (half-life, lifecycle thresholds, ...): one row."""

    __tablename__ = "scoring_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    source: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime]
    # Random per load: readers cache the parsed rules by it.
    revision: Mapped[str] = mapped_column(String(32))


class ScoreRule(Base):
    """One rule as written in the scoring file. Rules left out of a newer file are disabled, not deleted,
    so the score entries they gave still name them."""

    __tablename__ = "score_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # "engagement" (points per event) or "fit" (points while the lead matches).
    kind: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LeadScore(Base):
    """A lead's score in two parts: fit points (from its profile, recomputed) and engagement points as of
    ``engagement_at_us``, which decay from there with the configured half-life. ``leads.score`` and
    ``leads.temperature`` are refreshed from these on every event and by the periodic refresh."""

    __tablename__ = "lead_scores"

    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    fit: Mapped[int] = mapped_column(Integer, default=0)
    engagement: Mapped[float] = mapped_column(Float, default=0.0)
    # Microseconds since the Unix epoch: decay is computed in one portable UPDATE (as send_rate_slots does).
    engagement_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class ScoreEntry(Base):
    """Points one rule gave one lead for one event (or an adjustment by a campaign or a person)."""

    __tablename__ = "score_entries"
    __table_args__ = (Index("ix_score_entries_lead_id_occurred_at", "lead_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("score_rules.id", ondelete="SET NULL"))
    # Kept with the entry: the breakdown still reads when the rule is renamed or dropped.
    rule_name: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("engagement_events.id", ondelete="SET NULL"))
    event_type: Mapped[str | None] = mapped_column(String(64))
    # Points given when the event happened (after any cap); they decay from occurred_at.
    points: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class ScoreCap(Base):
    """Points a capped rule has given a lead in one period (a UTC day, week or month)."""

    __tablename__ = "score_caps"

    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    rule_id: Mapped[int] = mapped_column(Integer, ForeignKey("score_rules.id", ondelete="CASCADE"), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
    # The points the latest increment was allowed (set in the same atomic upsert that moves ``used``).
    last_award: Mapped[int] = mapped_column(Integer)
