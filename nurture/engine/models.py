"""Tables of the campaign engine: enrollments (where each lead stands in each campaign), the log of the
steps they ran, the step lists of campaign versions, the engine's cursors and the webhook outbox.

These tables are the state of record. APScheduler only decides when the engine looks at them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Index, Integer, String, Text, literal_column, text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.db import Base, BigId, JSONDocument, enum_column


class EnrollmentState(StrEnum):
    # Due to run its current step at next_run_at.
    ACTIVE = "active"
    # Inside a wait or wait_for step until next_run_at (or an event, for wait_for).
    WAITING = "waiting"
    # Ran past the last step.
    COMPLETED = "completed"
    # Met the goal, or reached an exit step marked converted.
    CONVERTED = "converted"
    # An exit condition, an exit step, a suppressed lead, an archived campaign, a removed step.
    EXITED = "exited"
    # A step kept failing (a broken template, say) and the engine gave up; see exit_reason.
    FAILED = "failed"


LIVE_STATES = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
FINAL_STATES = tuple(state for state in EnrollmentState if state not in LIVE_STATES)

# The SQL of "state is live", shared by the partial indexes and spelled once.
_LIVE_SQL = text("state IN ('active', 'waiting')")


def is_live(state: ColumnElement[Any]) -> ColumnElement[bool]:
    """``state IN ('active', 'waiting')`` with the values written out, not bound: PostgreSQL matches a query
    to a partial index at plan time, and a plan cached for prepared statements (psycopg prepares a query
    run five times) could not use ``ix_enrollments_due`` if the values were parameters."""
    return state.in_([literal_column(f"'{value.value}'") for value in LIVE_STATES])


class Enrollment(Base):
    """One lead's passage through one campaign. A lead has at most one live enrollment per campaign; a
    re-entry is a new row."""

    __tablename__ = "enrollments"
    __table_args__ = (
        # The claim: due rows of one campaign, oldest first. Partial, so a tick's cost follows the live
        # rows that are due, not the finished ones; by campaign, so paused campaigns are never scanned.
        Index(
            "ix_enrollments_due",
            "campaign_id",
            "next_run_at",
            postgresql_where=_LIVE_SQL,
            sqlite_where=_LIVE_SQL,
        ),
        # At most one live enrollment per lead and campaign, whatever races the enrollers run.
        Index(
            "uq_enrollments_live",
            "campaign_id",
            "lead_id",
            unique=True,
            postgresql_where=_LIVE_SQL,
            sqlite_where=_LIVE_SQL,
        ),
        # An event or stage change enrols once per campaign, even when it is read twice.
        Index(
            "uq_enrollments_source",
            "campaign_id",
            "source",
            "source_id",
            unique=True,
            postgresql_where=text("source_id IS NOT NULL"),
            sqlite_where=text("source_id IS NOT NULL"),
        ),
        # Engagement wake-ups, goal and exit checks, re-entry: by lead.
        Index("ix_enrollments_lead_id_campaign_id", "lead_id", "campaign_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    state: Mapped[EnrollmentState] = mapped_column(enum_column(EnrollmentState, "enrollment_state"))
    # The id of the current step (None once finished). Ids, not positions, so edits keep leads in place.
    step_id: Mapped[str | None] = mapped_column(String(64))
    # When the engine next looks at it; None once finished.
    next_run_at: Mapped[datetime | None]
    # When the current step began: wait_for timeouts count from here.
    step_started_at: Mapped[datetime | None]
    # The end of the current wait, or the deadline of the current wait_for. An engagement may make the
    # enrollment due earlier (next_run_at) without moving this.
    wait_until: Mapped[datetime | None]
    # The event a wait_for step waits for, so new events find their waiting enrollments by lead.
    waiting_for: Mapped[str | None] = mapped_column(String(64))
    # Messages made per send step ({step id: n}): the n of the next idempotency key of that step.
    attempts: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # Consecutive failures of the current step; reset when a step succeeds.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # The campaign version the enrollment last ran under (to find where a removed step was).
    campaign_version: Mapped[int] = mapped_column(Integer)
    # What enrolled it: segment, rules, import, event, stage or manual; source_id is the activity or
    # stage change that did, for event-like triggers.
    source: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[int | None] = mapped_column(BigId)
    entered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"Enrollment({self.id!r}, lead={self.lead_id}, {self.state.value} at {self.step_id!r})"


class StepRun(Base):
    """One executed step of one enrollment: when, what happened, and the message it queued if any."""

    __tablename__ = "step_runs"
    __table_args__ = (
        Index("ix_step_runs_enrollment_id_step_id", "enrollment_id", "step_id"),
        # Reports per campaign step (sends per variant, branch outcomes).
        Index("ix_step_runs_campaign_id_step_id", "campaign_id", "step_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrollments.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    step_type: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    ran_at: Mapped[datetime]
    message_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("messages.id", ondelete="SET NULL"))
    variant: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]


class CampaignStepList(Base):
    """The ordered step ids of each campaign version the engine ran: when an edit removes the step a lead
    is on, the lead moves on to the next step of the old list that still exists."""

    __tablename__ = "campaign_step_lists"

    campaign_id: Mapped[int] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_ids: Mapped[list[str]] = mapped_column(JSONDocument)


class EngineCursor(Base):
    """The last row id an engine job has read from a growing table (activities, stage changes)."""

    __tablename__ = "engine_cursors"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(BigId)
    updated_at: Mapped[datetime]


class WebhookStatus(StrEnum):
    PENDING = "pending"
    # Claimed by a deliverer; back to pending if it is still so long after claimed_at (the deliverer died).
    SENDING = "sending"
    DELIVERED = "delivered"
    # Every attempt failed, or the receiver refused it for good (a 4xx other than 408/429).
    FAILED = "failed"


class WebhookDelivery(Base):
    """A notify step's POST, written with the step and sent after commit, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # "enrollment:{id}:step:{step}:attempt:{n}": the receiver's deduplication key too.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    enrollment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("enrollments.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("campaigns.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("leads.id", ondelete="SET NULL"))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    status: Mapped[WebhookStatus] = mapped_column(
        enum_column(WebhookStatus, "webhook_status"), default=WebhookStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
