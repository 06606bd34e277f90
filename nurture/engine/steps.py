"""Running steps: moves a batch of claimed enrollments on, as far as each can go now.

An enrollment runs step after step until one makes it wait (a ``wait``, a ``wait_for``, a send outside
its window or over its cap) or it ends. The batch moves in waves: in each wave every enrollment runs its
current step, and the enrollments on steps of one kind are handled together, so a wave costs a few
statements whatever its size (one INSERT of all its emails, one query per branch rule, one query for all
the engagement questions). Everything is written in the caller's transaction: the emails, the step log,
the timeline, the webhook outbox, the enrollments' new positions. Nothing is sent before it commits.

Before each step the lead's exit conditions are checked (and its goal, at the start of the batch and after
a ``set`` step), so a lead never gets an email after it met the goal or unsubscribed.

A step that fails (a broken template, a compliance problem) does not hold the batch up: its enrollment
stays on the step and tries again after 5, 10, 20 and 40 minutes, then ends as ``failed``."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import (
    BranchStep,
    CampaignDefinition,
    EngagementCondition,
    ExitOutcome,
    ExitStep,
    GotoStep,
    NotifyStep,
    RulesCondition,
    SendStep,
    SetStep,
    Step,
    StepType,
    WaitForStep,
    WaitStep,
    WaitUntilAttribute,
    template_file,
)
from nurture.clock import Clock
from nurture.delivery.bulk import update_rows
from nurture.engine.context import EngineContext, LoadedCampaign, reading_stored_templates
from nurture.engine.engagement import EngagementQuestion, answer, latest_step_messages
from nurture.engine.goals import exit_reason, leads_meeting
from nurture.engine.journal import Journal
from nurture.engine.models import LIVE_STATES, Enrollment, EnrollmentState
from nurture.engine.notify import queue_webhook
from nurture.engine.scheduling import CapLedger, Deferral, window_deferral
from nurture.engine.sending import EmailOrder, MessageWriter, ab_roll, idempotency_key
from nurture.engine.versions import remember_step_list, step_list, surviving_step
from nurture.errors import NurtureError
from nurture.leads.emails import InvalidEmail, normalise_email
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, change_stage, ensure_tags
from nurture.rendering.sources import language_of
from nurture.scoring.service import adjust_score
from nurture.tracking.models import EventSource
from nurture.tracking.subscriptions import unsubscribe

log = logging.getLogger(__name__)

# Validation forbids loops without a wait, so a lead never runs this many steps at once; if one does, it
# is picked up again a minute later rather than spinning.
MAX_STEPS_PER_ADVANCE = 100
MAX_FAILURES = 5
FIRST_RETRY = timedelta(minutes=5)


@dataclass(eq=False)
class Walker:
    """One claimed enrollment while the batch moves it: its row's values, its campaign, its lead."""

    id: int
    campaign: LoadedCampaign
    lead: Lead
    zone: ZoneInfo
    state: EnrollmentState
    step_id: str | None
    next_run_at: datetime | None
    step_started_at: datetime | None
    wait_until: datetime | None
    waiting_for: str | None
    attempts: dict[str, int]
    failures: int
    # The campaign version it last ran under, before this batch.
    version: int
    finished_at: datetime | None = None
    exit_reason: str | None = None

    @property
    def definition(self) -> CampaignDefinition:
        return self.campaign.definition

    @property
    def step(self) -> Step:
        assert self.step_id is not None
        return self.definition.step(self.step_id)


@dataclass
class AdvanceReport:
    enrollments: int = 0
    steps: int = 0
    emails: int = 0
    deferred: int = 0
    errors: int = 0
    ended: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: AdvanceReport) -> None:
        self.enrollments += other.enrollments
        self.steps += other.steps
        self.emails += other.emails
        self.deferred += other.deferred
        self.errors += other.errors
        for state, count in other.ended.items():
            self.ended[state] += count

    def summary(self) -> str:
        ended = ", ".join(f"{count} {state}" for state, count in sorted(self.ended.items())) or "none ended"
        return (
            f"{self.enrollments} enrollments moved, {self.steps} steps run, {self.emails} emails queued, "
            f"{self.deferred} sends deferred, {self.errors} step errors; {ended}"
        )


class Executor:
    def __init__(self, session: Session, clock: Clock, ctx: EngineContext) -> None:
        self.session = session
        self.clock = clock
        self.ctx = ctx
        self.now = clock.now()
        self.journal = Journal()
        self.writer = MessageWriter(session, ctx, self.now)
        self.report = AdvanceReport()
        self.ledger = CapLedger()
        # (enrollment id, send step id) -> message id, for engagement questions about earlier steps.
        self._messages: dict[tuple[int, str], int] = {}
        self._messages_loaded: set[int] = set()
        self._step_lists: dict[tuple[int, int], list[str] | None] = {}
        # (template, language) -> the template leads of that language get.
        self._localized_names: dict[tuple[str, str], str] = {}
        self._handlers: dict[str, Callable[[list[Walker]], list[Walker]]] = {
            "missing": self._missing,
            "wake": self._wake,
            "resolve": self._resolve,
            StepType.SEND.value: self._send,
            StepType.WAIT.value: self._wait,
            StepType.WAIT_FOR.value: self._wait_for,
            StepType.BRANCH.value: self._branch,
            StepType.SET.value: self._set,
            StepType.NOTIFY.value: self._notify,
            StepType.GOTO.value: self._goto,
            StepType.EXIT.value: self._exit,
        }

    # --- the batch --------------------------------------------------------------------------------------

    def run(self, walkers: Sequence[Walker]) -> AdvanceReport:
        self.report.enrollments = len(walkers)
        for campaign in {walker.campaign.id: walker.campaign for walker in walkers}.values():
            remember_step_list(self.session, campaign)
        if any(walker.definition.frequency_cap is not None for walker in walkers):
            self.ledger = CapLedger.load(self.session, self.now, [(w.lead.id, w.lead.email) for w in walkers])
        pending = self._check_goals([walker for walker in walkers if walker.state in LIVE_STATES])
        for _ in range(MAX_STEPS_PER_ADVANCE):
            if not pending:
                break
            pending = self._wave(pending)
        for walker in pending:
            log.warning("enrollment %s ran %s steps in one go; continuing later", walker.id, MAX_STEPS_PER_ADVANCE)
            walker.next_run_at = self.now + timedelta(minutes=1)
        self.journal.flush(self.session)
        self._store(walkers)
        return self.report

    def _wave(self, walkers: list[Walker]) -> list[Walker]:
        groups: dict[str, list[Walker]] = defaultdict(list)
        for walker in walkers:
            reason = exit_reason(walker.definition, walker.lead)
            if reason is not None:
                self._finish(walker, EnrollmentState.EXITED, reason, step_type="exit")
                continue
            groups[self._action(walker)].append(walker)
        following: list[Walker] = []
        for action, group in groups.items():
            following += self._handlers[action](group)
        return following

    def _action(self, walker: Walker) -> str:
        if walker.step_id is None or not walker.definition.has_step(walker.step_id):
            return "missing"
        kind = walker.step.kind
        if walker.state is EnrollmentState.WAITING and kind is StepType.WAIT:
            return "wake"
        if walker.state is EnrollmentState.WAITING and kind is StepType.WAIT_FOR:
            return "resolve"
        return kind.value

    def _store(self, walkers: Sequence[Walker]) -> None:
        if not walkers:
            return
        rows = [
            {
                "id": walker.id,
                "state": walker.state,
                "step_id": walker.step_id,
                "next_run_at": walker.next_run_at,
                "step_started_at": walker.step_started_at,
                "wait_until": walker.wait_until,
                "waiting_for": walker.waiting_for,
                "attempts": walker.attempts,
                "failures": walker.failures,
                "campaign_version": walker.campaign.version,
                "updated_at": self.now,
                "finished_at": walker.finished_at,
                "exit_reason": walker.exit_reason,
            }
            for walker in walkers
        ]
        update_rows(self.session, Enrollment.__table__, rows)  # type: ignore[arg-type]

    # --- moving -----------------------------------------------------------------------------------------

    def _record(
        self,
        walker: Walker,
        step: Step | str,
        outcome: str,
        *,
        step_type: str | None = None,
        message_id: int | None = None,
        variant: str | None = None,
        **detail: Any,
    ) -> None:
        """Log a step run (``step`` is a step, or the id of one the definition no longer has)."""
        if isinstance(step, str):
            step_id, kind = step, step_type or "-"
        else:
            step_id, kind = step.id, step_type or step.kind.value
        self.report.steps += 1
        self.journal.step(
            enrollment_id=walker.id,
            campaign=walker.campaign,
            lead_id=walker.lead.id,
            step_id=step_id,
            step_type=kind,
            outcome=outcome,
            at=self.now,
            message_id=message_id,
            variant=variant,
            detail=detail or None,
        )

    def _go(self, walker: Walker, step_id: str | None) -> bool:
        """Move to ``step_id`` (None: past the end); True when the enrollment runs on in this batch."""
        if step_id is None:
            self._finish(walker, EnrollmentState.COMPLETED, "ran past the last step")
            return False
        walker.step_id = step_id
        walker.state = EnrollmentState.ACTIVE
        walker.step_started_at = self.now
        walker.next_run_at = self.now
        walker.wait_until = None
        walker.waiting_for = None
        walker.failures = 0
        return True

    def _next(self, walker: Walker, step: Step, outcome: bool | None = None) -> bool:
        return self._go(walker, walker.definition.next_step_id(step.id, outcome))

    def _finish(self, walker: Walker, state: EnrollmentState, reason: str, *, step_type: str | None = None) -> None:
        if step_type is not None:
            self._record(walker, walker.step_id or "-", state.value, step_type=step_type, reason=reason)
        walker.state = state
        walker.next_run_at = None
        walker.wait_until = None
        walker.waiting_for = None
        walker.finished_at = self.now
        walker.exit_reason = reason
        self.report.ended[state.value] += 1
        self.journal.finished(
            enrollment_id=walker.id,
            campaign=walker.campaign,
            lead_id=walker.lead.id,
            at=self.now,
            state=state,
            reason=reason,
        )

    def _wait_until(self, walker: Walker, until: datetime) -> None:
        walker.state = EnrollmentState.WAITING
        walker.wait_until = until
        walker.next_run_at = until

    def _defer(self, walker: Walker, step: Step, deferral: Deferral) -> None:
        walker.state = EnrollmentState.ACTIVE
        walker.next_run_at = deferral.until
        self.report.deferred += 1
        self._record(walker, step, "deferred", until=deferral.until.isoformat(), reason=deferral.reason)

    def _fail(self, walker: Walker, step: Step, error: str) -> None:
        walker.failures += 1
        self.report.errors += 1
        self._record(walker, step, "error", error=error, failure=walker.failures)
        log.warning("enrollment %s, step %s failed (%s of %s): %s", walker.id, step.id, walker.failures,
                    MAX_FAILURES, error)
        if walker.failures >= MAX_FAILURES:
            self._finish(walker, EnrollmentState.FAILED, f"step {step.id} failed {walker.failures} times: {error}")
            return
        walker.state = EnrollmentState.ACTIVE
        walker.next_run_at = self.now + FIRST_RETRY * 2 ** (walker.failures - 1)

    def _each(self, walkers: list[Walker], run: Callable[[Walker], bool]) -> list[Walker]:
        """Run ``run`` per enrollment; a NurtureError fails that enrollment's step, not the batch."""
        following = []
        for walker in walkers:
            try:
                if run(walker):
                    following.append(walker)
            except NurtureError as error:
                self._fail(walker, walker.step, str(error))
        return following

    # --- goals ------------------------------------------------------------------------------------------

    def _check_goals(self, walkers: list[Walker]) -> list[Walker]:
        """Converts the walkers whose lead meets its campaign's goal now; returns the others."""
        by_campaign: dict[int, list[Walker]] = defaultdict(list)
        for walker in walkers:
            if walker.definition.goal is not None:
                by_campaign[walker.campaign.id].append(walker)
        converted: set[int] = set()
        for group in by_campaign.values():
            goal = group[0].definition.goal
            assert goal is not None
            met = leads_meeting(self.session, self.now, goal, [walker.lead.id for walker in group])
            for walker in group:
                if walker.lead.id in met:
                    self._finish(walker, EnrollmentState.CONVERTED, "met the campaign's goal", step_type="goal")
                    converted.add(walker.id)
        return [walker for walker in walkers if walker.id not in converted]

    # --- step handlers: each takes the enrollments on steps of its kind, returns those that run on ------

    def _missing(self, walkers: list[Walker]) -> list[Walker]:
        following = []
        for walker in walkers:
            removed = walker.step_id or "-"
            key = (walker.campaign.id, walker.version)
            if key not in self._step_lists:
                self._step_lists[key] = step_list(self.session, *key)
            old = self._step_lists[key]
            target = surviving_step(old, removed, walker.definition) if old else None
            detail = {"reason": f"step {removed!r} is not in version {walker.campaign.version}", "to": target}
            if target is not None:
                self._record(walker, removed, "moved", step_type="removed", **detail)
                if self._go(walker, target):
                    following.append(walker)
            elif old is not None:
                self._record(walker, removed, "completed", step_type="removed", **detail)
                self._finish(walker, EnrollmentState.COMPLETED, f"step {removed!r} was removed; no later step remains")
            else:
                self._record(walker, removed, "exited", step_type="removed", **detail)
                self._finish(walker, EnrollmentState.EXITED, f"step {removed!r} no longer exists")
        return following

    def _send(self, walkers: list[Walker]) -> list[Walker]:
        orders: list[tuple[Walker, SendStep, int, EmailOrder]] = []
        for walker in walkers:
            step = walker.step
            assert isinstance(step, SendStep)
            definition = walker.definition
            deferral = window_deferral(definition.send_window, self.now, walker.zone) or self.ledger.deferral(
                definition.frequency_cap, walker.lead.id, self.now
            )
            if deferral is not None:
                self._defer(walker, step, deferral)
                continue
            message = step.choose(ab_roll(walker.id, step.id))
            template = self._localized(message.template, walker.lead.locale)
            attempt = walker.attempts.get(step.id, 0) + 1
            order = EmailOrder(
                key=idempotency_key(walker.id, step.id, attempt),
                campaign=walker.campaign,
                step_id=step.id,
                lead=walker.lead,
                timezone=walker.zone.key,
                template=template,
                subject=message.subject,
                preheader=message.preheader,
                variant=message.variant,
            )
            orders.append((walker, step, attempt, order))
            # Counted at once, so a second send to this lead in this batch sees it.
            self.ledger.add(walker.lead.id, self.now)
        results = self.writer.write([order for *_, order in orders])
        following = []
        for (walker, step, attempt, order), result in zip(orders, results, strict=True):
            walker.attempts = {**walker.attempts, step.id: attempt}
            if result.error is not None:
                self._fail(walker, step, result.error)
                continue
            assert result.message_id is not None
            self._messages[(walker.id, step.id)] = result.message_id
            self.report.emails += 1
            self._record(
                walker, step, "queued", message_id=result.message_id, variant=order.variant,
                template=order.template, attempt=attempt,
            )
            if self._next(walker, step):
                following.append(walker)
        return following

    def _localized(self, template: str, locale: str | None) -> str:
        """The template a lead gets: the variant in its language (``welcome.fr.html``) when there is one."""
        language = language_of(locale)
        if language is None:
            return template
        key = (template, language)
        found = self._localized_names.get(key)
        if found is None:
            name = template_file(template)
            with reading_stored_templates(self.session):  # a stored variant counts like a file
                localized = self.ctx.renderer.loader.localized(name, language)
            if localized == name:
                found = template
            else:
                # Spelled like the campaign's own name for it: ``welcome.fr`` for ``welcome``.
                found = localized if template.endswith(".html") else localized.removesuffix(".html")
            self._localized_names[key] = found
        return found

    def _wait(self, walkers: list[Walker]) -> list[Walker]:
        def run(walker: Walker) -> bool:
            step = walker.step
            assert isinstance(step, WaitStep)
            walker.step_started_at = self.now
            wake = step.wake_at(self.now, walker.zone, walker.lead.attributes or {})
            if wake is None or wake <= self.now:
                if wake is None and isinstance(step.until, WaitUntilAttribute):
                    reason = f"no usable date in attribute {step.until.attribute!r}"
                else:
                    reason = "that moment has passed"
                self._record(walker, step, "skipped", reason=reason)
                return self._next(walker, step)
            self._wait_until(walker, wake)
            self._record(walker, step, "waiting", until=wake.isoformat())
            return False

        return self._each(walkers, run)

    def _wake(self, walkers: list[Walker]) -> list[Walker]:
        following = []
        for walker in walkers:
            if walker.wait_until is not None and walker.wait_until > self.now:
                walker.next_run_at = walker.wait_until
                continue
            if self._next(walker, walker.step):
                following.append(walker)
        return following

    def _answers(self, walkers: list[Walker]) -> list[bool]:
        """Whether the event each wait_for enrollment waits for has happened."""
        questions = []
        for walker in walkers:
            step = walker.step
            assert isinstance(step, WaitForStep)
            questions.append(self._question(walker, step))
        return answer(self.session, self.now, questions)

    def _question(self, walker: Walker, step: WaitForStep) -> EngagementQuestion:
        if step.email_event is not None and step.step is not None:
            message_id = self._message_of(walker, step.step)
            return EngagementQuestion(
                walker.lead.id, step.event, message_ids=frozenset({message_id} if message_id else ()), link=step.link
            )
        if step.email_event is not None:
            return EngagementQuestion(
                walker.lead.id, step.event, campaign=walker.campaign.slug, since=walker.step_started_at, link=step.link
            )
        return EngagementQuestion(walker.lead.id, step.event, since=walker.step_started_at)

    def _message_of(self, walker: Walker, step_id: str) -> int | None:
        found = self._messages.get((walker.id, step_id))
        if found is None and walker.id not in self._messages_loaded:
            self._messages_loaded.add(walker.id)
            for key, message_id in latest_step_messages(self.session, [walker.id]).items():
                self._messages.setdefault(key, message_id)
            found = self._messages.get((walker.id, step_id))
        return found

    def _preload_messages(self, walkers: list[Walker]) -> None:
        ids = [walker.id for walker in walkers if walker.id not in self._messages_loaded]
        if not ids:
            return
        self._messages_loaded.update(ids)
        for key, message_id in latest_step_messages(self.session, ids).items():
            self._messages.setdefault(key, message_id)

    def _wait_for(self, walkers: list[Walker]) -> list[Walker]:
        self._preload_messages(walkers)
        for walker in walkers:
            step = walker.step
            assert isinstance(step, WaitForStep)
            walker.step_started_at = self.now
            walker.waiting_for = step.event
            walker.wait_until = self.now + step.within.delta
        answers = self._answers(walkers)
        following = []
        for walker, happened in zip(walkers, answers, strict=True):
            step = walker.step
            if happened:
                self._record(walker, step, "yes", event=walker.waiting_for)
                if self._next(walker, step, True):
                    following.append(walker)
                continue
            assert walker.wait_until is not None
            self._wait_until(walker, walker.wait_until)
            self._record(walker, step, "waiting", until=walker.wait_until.isoformat(), event=walker.waiting_for)
        return following

    def _resolve(self, walkers: list[Walker]) -> list[Walker]:
        self._preload_messages(walkers)
        answers = self._answers(walkers)
        following = []
        for walker, happened in zip(walkers, answers, strict=True):
            step = walker.step
            if happened:
                self._record(walker, step, "yes", event=walker.waiting_for)
                if self._next(walker, step, True):
                    following.append(walker)
            elif walker.wait_until is None or walker.wait_until <= self.now:
                self._record(walker, step, "no", event=walker.waiting_for, reason="timed out")
                if self._next(walker, step, False):
                    following.append(walker)
            else:
                # Woken by an event that was not the awaited one (another link, another email).
                walker.next_run_at = walker.wait_until
        return following

    def _branch(self, walkers: list[Walker]) -> list[Walker]:
        outcomes: dict[int, bool] = {}
        by_rules: dict[tuple[int, str], list[Walker]] = defaultdict(list)
        engaged: list[Walker] = []
        for walker in walkers:
            step = walker.step
            assert isinstance(step, BranchStep)
            if isinstance(step.condition, RulesCondition):
                by_rules[(walker.campaign.id, step.id)].append(walker)
            else:
                engaged.append(walker)
        for group in by_rules.values():
            step = group[0].step
            assert isinstance(step, BranchStep) and isinstance(step.condition, RulesCondition)
            met = leads_meeting(self.session, self.now, step.condition.rules, [walker.lead.id for walker in group])
            for walker in group:
                outcomes[walker.id] = walker.lead.id in met
        if engaged:
            self._preload_messages(engaged)
            questions = []
            for walker in engaged:
                step = walker.step
                assert isinstance(step, BranchStep) and isinstance(step.condition, EngagementCondition)
                condition = step.condition
                message_id = self._message_of(walker, condition.step)
                questions.append(
                    EngagementQuestion(
                        walker.lead.id,
                        condition.event.value,
                        message_ids=frozenset({message_id} if message_id else ()),
                        link=condition.link,
                    )
                )
            for walker, happened in zip(engaged, answer(self.session, self.now, questions), strict=True):
                outcomes[walker.id] = happened
        following = []
        for walker in walkers:
            step = walker.step
            outcome = outcomes[walker.id]
            self._record(walker, step, "yes" if outcome else "no")
            if self._next(walker, step, outcome):
                following.append(walker)
        return following

    def _set(self, walkers: list[Walker]) -> list[Walker]:
        def run(walker: Walker) -> bool:
            step = walker.step
            assert isinstance(step, SetStep)
            self._record(walker, step, "done", **self._apply(walker, step))
            if walker.lead.status is not LeadStatus.ACTIVE:
                self._take_settled(walker)
                return False
            return True

        changed = self._each(walkers, run)
        # A set step may be what meets the goal (stage customer, a score): check before going on.
        following = []
        for walker in self._check_goals(changed):
            if self._next(walker, walker.step):
                following.append(walker)
        return following

    def _apply(self, walker: Walker, step: SetStep) -> dict[str, Any]:
        lead = walker.lead
        slug = walker.campaign.slug
        changes: dict[str, Any] = {}
        if step.stage is not None and lead.stage != step.stage:
            changes["stage"] = step.stage.value
            change_stage(
                self.session,
                self.clock,
                lead,
                step.stage,
                reason=f"campaign {slug}, step {step.id}",
                actor=Actor(ActorKind.CAMPAIGN, slug),
            )
        if step.add_tags or step.remove_tags:
            names = (set(lead.tag_names) | set(step.add_tags)) - set(step.remove_tags)
            if names != set(lead.tag_names):
                changes["tags"] = sorted(names)
                lead.tags = ensure_tags(self.session, names)
        if step.attributes:
            attributes = dict(lead.attributes or {})
            for name, value in step.attributes.items():
                if value is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = value
            changes["attributes"] = dict(step.attributes)
            lead.attributes = attributes
        if step.adjust_score:
            # Through scoring, so the points show in the lead's breakdown, decay, and may promote it.
            changes["score"] = adjust_score(
                self.session, self.clock, self.ctx.settings.temperature, lead, step.adjust_score,
                f"campaign {slug}, step {step.id}",
            )
        lead.updated_at = self.now
        if step.unsubscribe is not None and lead.status is LeadStatus.ACTIVE:
            # The lead's own unsubscribe path: an event on its timeline naming the campaign and the cause, the
            # lead suppressed, and every enrollment of it ended (this one included: see _set).
            via = f"campaign {slug}, step {step.id}"
            if unsubscribe(
                self.session, self.clock, self.ctx, lead.id, via=via, cause=step.unsubscribe, source=EventSource.SYSTEM
            ):
                changes["unsubscribed"] = step.unsubscribe
        return changes

    def _take_settled(self, walker: Walker) -> None:
        """The lead was suppressed by a set step, which ended its enrollments (this one too) in the database:
        keep that ending rather than write the walker's position over it."""
        row = self.session.execute(
            select(Enrollment.state, Enrollment.finished_at, Enrollment.exit_reason).where(Enrollment.id == walker.id)
        ).one()
        state = EnrollmentState(row.state)
        if state in LIVE_STATES:
            self._finish(walker, EnrollmentState.EXITED, f"lead is {walker.lead.status.value}", step_type="exit")
            return
        walker.state = state
        walker.next_run_at = walker.wait_until = walker.waiting_for = None
        walker.finished_at = row.finished_at
        walker.exit_reason = row.exit_reason
        self.report.ended[state.value] += 1

    def _notify(self, walkers: list[Walker]) -> list[Walker]:
        owner_orders: list[tuple[Walker, EmailOrder]] = []
        details: dict[int, dict[str, Any]] = {}
        for walker in walkers:
            step = walker.step
            assert isinstance(step, NotifyStep)
            attempt = walker.attempts.get(step.id, 0) + 1
            walker.attempts = {**walker.attempts, step.id: attempt}
            key = idempotency_key(walker.id, step.id, attempt)
            detail: dict[str, Any] = {}
            if step.webhook:
                queue_webhook(
                    self.session, self.now, key=key, enrollment_id=walker.id, campaign=walker.campaign,
                    lead=walker.lead, url=step.webhook, step_id=step.id,
                )
                detail["webhook"] = step.webhook
            if step.email_owner:
                owner = self._owner_address(walker.lead)
                if owner is None:
                    detail["owner"] = "the lead has no owner with a valid address"
                else:
                    assert step.template is not None
                    owner_orders.append(
                        (walker, EmailOrder(
                            key=key, campaign=walker.campaign, step_id=step.id, lead=walker.lead,
                            timezone=walker.zone.key, template=step.template, subject=step.subject,
                            to_address=owner, owner_alert=True,
                        ))
                    )
            details[walker.id] = detail
        results = self.writer.write([order for _, order in owner_orders])
        for (walker, order), result in zip(owner_orders, results, strict=True):
            detail = details[walker.id]
            detail["owner"] = order.to_address
            if result.error is not None:
                # An internal alert that cannot be made must not hold the lead back; the log says why.
                detail["owner_error"] = result.error
            else:
                detail["owner_message_id"] = result.message_id
        following = []
        for walker in walkers:
            step = walker.step
            self._record(walker, step, "notified", **details[walker.id])
            if self._next(walker, step):
                following.append(walker)
        return following

    @staticmethod
    def _owner_address(lead: Lead) -> str | None:
        try:
            return normalise_email(lead.owner or "")
        except InvalidEmail:
            return None

    def _goto(self, walkers: list[Walker]) -> list[Walker]:
        following = []
        for walker in walkers:
            step = walker.step
            assert isinstance(step, GotoStep)
            self._record(walker, step, "jumped", to=step.to)
            if self._go(walker, step.to):
                following.append(walker)
        return following

    def _exit(self, walkers: list[Walker]) -> list[Walker]:
        for walker in walkers:
            step = walker.step
            assert isinstance(step, ExitStep)
            state = EnrollmentState.CONVERTED if step.outcome is ExitOutcome.CONVERTED else EnrollmentState.EXITED
            self._finish(walker, state, f"reached exit step {step.id!r}", step_type=step.kind.value)
        return []


def load_walkers(session: Session, ctx: EngineContext, enrollment_ids: Sequence[int]) -> list[Walker]:
    """The claimed enrollments with their campaigns and leads (tags included), ready to move."""
    table = Enrollment.__table__
    rows = session.execute(select(table).where(table.c.id.in_(list(enrollment_ids))).order_by(table.c.id)).all()
    if not rows:
        return []
    campaigns = ctx.campaigns(session, ids={row.campaign_id for row in rows})
    leads = {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_({row.lead_id for row in rows})))}
    walkers = []
    for row in rows:
        campaign = campaigns[row.campaign_id]
        lead = leads[row.lead_id]
        walkers.append(
            Walker(
                id=row.id,
                campaign=campaign,
                lead=lead,
                zone=campaign.lead_zone(lead.timezone),
                state=EnrollmentState(row.state),
                step_id=row.step_id,
                next_run_at=row.next_run_at,
                step_started_at=row.step_started_at,
                wait_until=row.wait_until,
                waiting_for=row.waiting_for,
                attempts=dict(row.attempts or {}),
                failures=row.failures,
                version=row.campaign_version,
                finished_at=row.finished_at,
                exit_reason=row.exit_reason,
            )
        )
    return walkers


def advance_enrollments(
    session: Session, clock: Clock, ctx: EngineContext, enrollment_ids: Sequence[int]
) -> AdvanceReport:
    """Move the given enrollments on, in the caller's transaction. The caller has claimed them (locked on
    PostgreSQL), and commits; it hands the queued emails to the mailer only after that commit."""
    walkers = load_walkers(session, ctx, enrollment_ids)
    return Executor(session, clock, ctx).run(walkers)
