"""Engagement: how opens, clicks, replies and custom events reach the leads that wait for them.

The activity timeline is the truth. A ``wait_for`` step or an engagement ``branch`` decides by reading the
lead's activities; nothing else needs to be told. ``on_engagement`` only makes the enrollments that wait
for such an event due at once, so the yes path is taken within a tick instead of at the timeout; the
goals job does the same for events recorded by code that does not call it (see ``wake_for_activities``).

Contract with the code that records events (tracking endpoints, provider webhooks, the API):

- record the activity first: ``kind`` is ``opened``, ``clicked``, ``replied`` or a custom event name;
  ``campaign`` is the message's campaign slug; ``data`` holds ``"message_id"`` (the message the event
  is about) and, for a click, ``"url"`` (the link's target as stored in ``messages.links``);
- then call ``on_engagement`` in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from nurture.campaigns.definition import link_matches
from nurture.campaigns.models import Campaign
from nurture.clock import Clock
from nurture.delivery.models import Message
from nurture.engine.models import Enrollment, EnrollmentState, StepRun
from nurture.leads.models import Activity

MESSAGE_ID_KEY = "message_id"
LINK_KEY = "url"


def on_engagement(
    session: Session,
    clock: Clock,
    lead_id: int,
    kind: str,
    *,
    message_id: int | None = None,
    campaign: str | None = None,
    step_id: str | None = None,
    link: str | None = None,
) -> int:
    """Make the enrollments of ``lead_id`` that wait for an event of ``kind`` due now; how many.

    Call it after recording the event's activity, in the same transaction. ``campaign`` (or the campaign
    of ``message_id``) narrows it to that campaign. ``step_id`` and ``link`` are accepted for the callers'
    convenience: the waiting step checks the exact message and link itself when it runs, so waking one
    that turns out not to match only costs it a look."""
    del step_id, link
    now = clock.now()
    if campaign is None and message_id is not None:
        campaign = session.scalar(select(Message.campaign).where(Message.id == message_id))
    wake = (
        update(Enrollment)
        .where(
            Enrollment.lead_id == lead_id,
            Enrollment.state == EnrollmentState.WAITING,
            Enrollment.waiting_for == kind,
            Enrollment.next_run_at > now,
        )
        .values(next_run_at=now)
        .execution_options(synchronize_session=False)
    )
    if campaign is not None:
        campaign_id = select(Campaign.id).where(Campaign.slug == campaign).scalar_subquery()
        wake = wake.where(Enrollment.campaign_id == campaign_id)
    return session.execute(wake).rowcount or 0  # type: ignore[attr-defined]


def wake_for_activities(session: Session, now: datetime, events: Iterable[tuple[int, str]]) -> int:
    """Make due now the enrollments waiting for any of ``events`` ((lead id, kind) pairs); how many."""
    pairs = sorted(set(events))
    woken = 0
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        result = session.execute(
            update(Enrollment)
            .where(
                Enrollment.state == EnrollmentState.WAITING,
                Enrollment.waiting_for.is_not(None),
                Enrollment.next_run_at > now,
                tuple_(Enrollment.lead_id, Enrollment.waiting_for).in_(chunk),
            )
            .values(next_run_at=now)
            .execution_options(synchronize_session=False)
        )
        woken += result.rowcount or 0  # type: ignore[attr-defined]
    return woken


def latest_step_messages(session: Session, enrollment_ids: Iterable[int]) -> dict[tuple[int, str], int]:
    """(enrollment id, step id) -> the message of that send step's latest run."""
    ids = list(enrollment_ids)
    found: dict[tuple[int, str], int] = {}
    if not ids:
        return found
    rows = session.execute(
        select(StepRun.enrollment_id, StepRun.step_id, StepRun.message_id)
        .where(StepRun.enrollment_id.in_(ids), StepRun.message_id.is_not(None))
        .order_by(StepRun.id)
    )
    for enrollment_id, step_id, message_id in rows:
        found[(enrollment_id, step_id)] = message_id
    return found


@dataclass(frozen=True)
class EngagementQuestion:
    """Did the lead do ``event``: about one of ``message_ids``; else in ``campaign`` (an email event of
    any of its emails); else at all (a custom event). ``since`` bounds the last two; ``link`` filters
    clicks by URL pattern."""

    lead_id: int
    event: str
    message_ids: frozenset[int] | None = None
    campaign: str | None = None
    since: datetime | None = None
    link: str | None = None


def _message_id(data: dict[str, Any] | None) -> int | None:
    raw = (data or {}).get(MESSAGE_ID_KEY)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _matches(question: EngagementQuestion, activity: Any, now: datetime) -> bool:
    if activity.occurred_at > now:
        return False
    if question.message_ids is not None:
        if _message_id(activity.data) not in question.message_ids:
            return False
    else:
        if question.campaign is not None and activity.campaign != question.campaign:
            return False
        if question.since is not None and activity.occurred_at < question.since:
            return False
    if question.link is not None:
        url = (activity.data or {}).get(LINK_KEY)
        if not isinstance(url, str) or not link_matches(question.link, url):
            return False
    return True


def answer(session: Session, now: datetime, questions: Sequence[EngagementQuestion]) -> list[bool]:
    """One answer per question, from one query over the leads' activities of the kinds asked about."""
    asked = [question for question in questions if question.message_ids is None or question.message_ids]
    if not asked:
        return [False] * len(questions)
    by_lead: dict[tuple[int, str], list[Any]] = defaultdict(list)
    lead_kinds = sorted({(question.lead_id, question.event) for question in asked})
    for start in range(0, len(lead_kinds), 500):
        chunk = lead_kinds[start : start + 500]
        leads = {lead_id for lead_id, _ in chunk}
        kinds = {kind for _, kind in chunk}
        rows = session.execute(
            select(Activity.lead_id, Activity.kind, Activity.occurred_at, Activity.campaign, Activity.data).where(
                Activity.lead_id.in_(leads), Activity.kind.in_(kinds)
            )
        )
        for row in rows:
            by_lead[(row.lead_id, row.kind)].append(row)
    return [
        any(_matches(question, activity, now) for activity in by_lead.get((question.lead_id, question.event), ()))
        for question in questions
    ]

