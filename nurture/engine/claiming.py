"""Claiming due enrollments, so that any number of worker processes share the work and none runs an
enrollment another is running.

PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``, per active campaign, oldest due first. The rows stay
locked until the batch's transaction ends, so another worker skips them; a row another worker advanced
and committed meanwhile is re-checked by PostgreSQL against ``next_run_at <= now`` when it is locked, so
it is not claimed again. The leads of the batch are then locked too (``FOR NO KEY UPDATE``, in id order,
so two workers never deadlock on them): two enrollments of one lead in two campaigns, claimed by two
workers, are then moved one after the other, which keeps frequency caps exact.

SQLite: one worker. The claim is an ``UPDATE ... RETURNING`` so that the batch's transaction takes the
database's single write lock before it reads anything, and cannot fail half-way on a lock upgrade.

Each claim query reads the ``ix_enrollments_due`` partial index of one campaign from its oldest due row:
its cost follows the due rows it returns, not the number of enrollments, and paused campaigns cost
nothing. The campaign to start from rotates, so a campaign with a large backlog does not starve others."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.db import is_postgresql
from nurture.engine.models import Enrollment, is_live
from nurture.leads.models import Lead

_rotation = itertools.count()


def claim_due(session: Session, now: datetime, campaign_ids: Sequence[int], limit: int) -> list[int]:
    """Lock (PostgreSQL) or write-lock (SQLite) up to ``limit`` enrollments of these campaigns that are due
    at ``now``, in the caller's transaction; their ids."""
    if not campaign_ids or limit < 1:
        return []
    start = next(_rotation) % len(campaign_ids)
    ordered = list(campaign_ids[start:]) + list(campaign_ids[:start])
    postgresql = is_postgresql(session)
    claimed: list[int] = []
    for campaign_id in ordered:
        wanted = limit - len(claimed)
        if wanted <= 0:
            break
        due = (
            select(Enrollment.id)
            .where(
                Enrollment.campaign_id == campaign_id,
                is_live(Enrollment.state),
                Enrollment.next_run_at <= now,
            )
            .order_by(Enrollment.next_run_at)
            .limit(wanted)
        )
        if postgresql:
            claimed += session.scalars(due.with_for_update(skip_locked=True)).all()
        else:
            claimed += session.scalars(
                update(Enrollment)
                .where(Enrollment.id.in_(due))
                .values(next_run_at=Enrollment.next_run_at)
                .returning(Enrollment.id),
                execution_options={"synchronize_session": False},
            ).all()
    if postgresql and claimed:
        leads = select(Enrollment.lead_id).where(Enrollment.id.in_(claimed))
        session.execute(select(Lead.id).where(Lead.id.in_(leads)).order_by(Lead.id).with_for_update(key_share=True))
    return claimed


def claim_enrollment(session: Session, enrollment_id: int) -> bool:
    """Lock one enrollment by id, waiting for a worker that holds it (simulation, tests, retries)."""
    query = select(Enrollment.id).where(Enrollment.id == enrollment_id, is_live(Enrollment.state))
    if is_postgresql(session):
        return session.scalar(query.with_for_update()) is not None
    touched = session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, is_live(Enrollment.state))
        .values(next_run_at=Enrollment.next_run_at)
        .execution_options(synchronize_session=False)
    )
    return bool(touched.rowcount)  # type: ignore[attr-defined]
