"""The engine's jobs, each a loop of short transactions, and ``run_tick``: all of them once, in order.

Jobs (the worker runs each on its own interval; ``nurture tick`` runs them in this order):

0. events and score refresh (nurture.tracking.jobs): stored tracking hits are applied, and scores decay
   (at most every 15 minutes), so the passes below see today's engagement, scores and stages;
1. enrol: leads matching active campaigns' entry triggers enter them;
2. goals: goals, exit conditions and implicit exits for leads with new activities or stage changes,
   and wake-ups of ``wait_for`` steps whose event was recorded;
3. advance: claim due enrollments in batches, run their steps, commit each batch (emails are queued in
   the same transaction that moves the enrollment on);
4. recover: work a dead process left behind (sends cut off mid-way become ``uncertain``; webhook
   deliveries cut off go back to the queue) and enrollments of archived campaigns;
5. dispatch: hand the committed outbox to the mailer, then POST due webhooks.

A batch that fails as a whole (a bug, a lost connection) is rolled back and its enrollments are retried
one by one, each in its own transaction, so that one bad enrollment is marked ``failed`` instead of
blocking the others forever."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.clock import Clock
from nurture.delivery.dispatch import DispatchReport, dispatch_queued, mark_interrupted
from nurture.delivery.mailer import Mailer, Sleeper
from nurture.engine.claiming import claim_due, claim_enrollment
from nurture.engine.context import EngineContext
from nurture.engine.enrollment import EnrolReport, enrol_new_matches
from nurture.engine.goals import SweepReport, end_archived_campaigns, sweep_goals_and_exits
from nurture.engine.journal import Journal
from nurture.engine.models import Enrollment, EnrollmentState, is_live
from nurture.engine.notify import WebhookReport, WebhookTransport, deliver_webhooks, release_stale_webhooks
from nurture.engine.steps import AdvanceReport, advance_enrollments
from nurture.scoring.points import RefreshReport
from nurture.tracking import jobs as tracking_jobs
from nurture.tracking.events import ProcessReport

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
MAX_ROUNDS = 1000


def active_campaign_ids(session: Session) -> list[int]:
    active = select(Campaign.id).where(Campaign.status == CampaignStatus.ACTIVE).order_by(Campaign.id)
    return list(session.scalars(active))


def enrol_job(session_factory: SessionFactory, clock: Clock, ctx: EngineContext) -> EnrolReport:
    total = EnrolReport()
    for _ in range(MAX_ROUNDS):
        with session_factory() as session:
            report = enrol_new_matches(session, clock, ctx)
            session.commit()
        for slug, count in report.by_campaign.items():
            total.add(slug, count)
        total.problems += [problem for problem in report.problems if problem not in total.problems]
        if not report.total:
            break
    return total


def goals_job(session_factory: SessionFactory, clock: Clock, ctx: EngineContext) -> SweepReport:
    total = SweepReport()
    for _ in range(MAX_ROUNDS):
        with session_factory() as session:
            report = sweep_goals_and_exits(session, clock, ctx)
            session.commit()
        total.converted += report.converted
        total.exited += report.exited
        total.woken += report.woken
        total.leads_checked += report.leads_checked
        if not report.leads_checked:
            break
    return total


def advance_job(
    session_factory: SessionFactory, clock: Clock, ctx: EngineContext, *, max_batches: int | None = None
) -> AdvanceReport:
    """Claim and advance due enrollments, one transaction per batch, until none is due."""
    total = AdvanceReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        with session_factory() as session:
            ids = claim_due(session, clock.now(), active_campaign_ids(session), ctx.batch_size)
            if not ids:
                session.rollback()
                break
            ctx.hooks.after_claim(len(ids))
            try:
                report = advance_enrollments(session, clock, ctx, ids)
                ctx.hooks.before_commit(len(ids))
                session.commit()
            except Exception:
                session.rollback()
                log.exception("a batch of %s enrollments failed; retrying them one by one", len(ids))
                report = _advance_one_by_one(session_factory, clock, ctx, ids)
        ctx.hooks.after_commit(len(ids))
        total.add(report)
        batches += 1
    return total


def _advance_one_by_one(
    session_factory: SessionFactory, clock: Clock, ctx: EngineContext, ids: list[int]
) -> AdvanceReport:
    total = AdvanceReport()
    for enrollment_id in ids:
        with session_factory() as session:
            try:
                if claim_enrollment(session, enrollment_id):
                    total.add(advance_enrollments(session, clock, ctx, [enrollment_id]))
                session.commit()
                continue
            except Exception as exc:
                session.rollback()
                log.exception("enrollment %s cannot be advanced; marking it failed", enrollment_id)
                error = f"{type(exc).__name__}: {exc}"
        with session_factory() as session:
            if mark_failed(session, clock, ctx, enrollment_id, f"the engine could not run its step: {error}"):
                total.ended[EnrollmentState.FAILED.value] += 1
            session.commit()
    return total


def mark_failed(session: Session, clock: Clock, ctx: EngineContext, enrollment_id: int, reason: str) -> bool:
    now = clock.now()
    row = session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, is_live(Enrollment.state))
        .values(
            state=EnrollmentState.FAILED, next_run_at=None, finished_at=now, updated_at=now, exit_reason=reason[:2000]
        )
        .returning(Enrollment.campaign_id, Enrollment.lead_id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return False
    campaign = ctx.campaigns(session, ids=[row.campaign_id])[row.campaign_id]
    journal = Journal()
    journal.finished(
        enrollment_id=enrollment_id, campaign=campaign, lead_id=row.lead_id, at=now, state=EnrollmentState.FAILED,
        reason=reason,
    )
    journal.flush(session)
    return True


@dataclass
class RecoverReport:
    interrupted_sends: list[int] = field(default_factory=list)
    released_webhooks: int = 0
    archived_exits: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.interrupted_sends)} interrupted sends marked uncertain, {self.released_webhooks} webhook "
            f"deliveries released, {self.archived_exits} enrollments of archived campaigns ended"
        )


def recover_job(session_factory: SessionFactory, clock: Clock, ctx: EngineContext) -> RecoverReport:
    report = RecoverReport()
    with session_factory() as session:
        report.interrupted_sends = mark_interrupted(session, clock)
        report.released_webhooks = release_stale_webhooks(session, clock.now())
        session.commit()
    for _ in range(MAX_ROUNDS):
        with session_factory() as session:
            ended = end_archived_campaigns(session, clock.now(), ctx)
            session.commit()
        report.archived_exits += ended
        if not ended:
            break
    return report


def dispatch_job(
    session_factory: SessionFactory,
    clock: Clock,
    mailer: Mailer,
    *,
    sleeper: Sleeper = time.sleep,
    limit: int = 1000,
    max_rounds: int = MAX_ROUNDS,
) -> DispatchReport:
    """Send the queued outbox, ``limit`` messages per round, until it is empty or the backend is down."""
    total = DispatchReport()
    for _ in range(max_rounds):
        report = dispatch_queued(session_factory, clock, mailer, limit, sleeper=sleeper)  # type: ignore[arg-type]
        for name in ("sent", "failed", "uncertain", "suppressed", "requeued", "interrupted"):
            getattr(total, name).extend(getattr(report, name))
        total.backend_error = report.backend_error or total.backend_error
        handled = report.sent + report.failed + report.uncertain + report.suppressed
        if report.backend_error or not handled:
            break
    return total


def webhooks_job(
    session_factory: SessionFactory, clock: Clock, ctx: EngineContext, *, transport: WebhookTransport | None = None
) -> WebhookReport:
    total = WebhookReport()
    for _ in range(MAX_ROUNDS):
        report = deliver_webhooks(session_factory, clock, ctx.settings, transport=transport)  # type: ignore[arg-type]
        total.delivered += report.delivered
        total.retrying += report.retrying
        total.failed += report.failed
        if not (report.delivered or report.retrying or report.failed):
            break
    return total


@dataclass
class TickReport:
    enrolled: EnrolReport
    swept: SweepReport
    advanced: AdvanceReport
    recovered: RecoverReport
    dispatched: DispatchReport
    webhooks: WebhookReport
    events: ProcessReport
    scores: RefreshReport
    seconds: float = 0.0

    def lines(self) -> list[str]:
        lines = [
            f"events:   {self.events.summary()}",
            f"scores:   {self.scores.summary()}",
            f"enrol:    {self.enrolled.summary()}",
            f"goals:    {self.swept.summary()}",
            f"advance:  {self.advanced.summary()}",
            f"recover:  {self.recovered.summary()}",
            f"dispatch: {self.dispatched.summary()}",
            f"webhooks: {self.webhooks.summary()}",
        ]
        lines += [f"problem:  {problem}" for problem in self.enrolled.problems]
        return lines


def run_tick(
    session_factory: SessionFactory,
    clock: Clock,
    ctx: EngineContext,
    mailer: Mailer,
    *,
    sleeper: Sleeper = time.sleep,
    transport: WebhookTransport | None = None,
) -> TickReport:
    """One full engine pass as of ``clock.now()``: apply tracking events and refresh scores (so that stage
    changes and engagement made since the last pass are seen), enrol, goals and exits, advance, recover,
    dispatch."""
    started = time.perf_counter()
    events = tracking_jobs.events_job(session_factory, clock, ctx)
    scores = tracking_jobs.score_refresh_job(session_factory, clock, ctx, force=False)
    enrolled = enrol_job(session_factory, clock, ctx)
    swept = goals_job(session_factory, clock, ctx)
    advanced = advance_job(session_factory, clock, ctx)
    recovered = recover_job(session_factory, clock, ctx)
    dispatched = dispatch_job(session_factory, clock, mailer, sleeper=sleeper)
    webhooks = webhooks_job(session_factory, clock, ctx, transport=transport)
    return TickReport(
        enrolled, swept, advanced, recovered, dispatched, webhooks, events, scores, time.perf_counter() - started
    )

