"""The normalised engagement event, and the one path by which engagement reaches the rest of nurture.

Writers (tracking endpoints, the SendGrid webhook, the events API, the unsubscribe and preferences pages)
describe what happened as a ``NewEvent``. ``record_event`` stores it (deduplicated on its key) and applies it
in the caller's transaction; the tracking endpoints only store their hits (``store_hit``, one statement)
and the worker applies them (``process_pending_events``). Applying an event:

1. decides whether it counts: machine events (privacy proxies, scanners) are kept but count for nothing
   unless the scoring settings say ``machine_engagement: count``;
2. records the timeline activity the segment engine and the campaign engine read (kind = the event type;
   ``data`` holds ``message_id``, ``url`` and ``event_id``; ``campaign`` is the message's campaign);
3. updates ``last_engaged_at`` (people only), then scoring: rule points with caps, decay, fit, the stored
   score and temperature, and promotions (mql, sql) through ``change_stage``;
4. applies the effects of its type: hard bounces (and ``soft_bounce_limit`` soft ones in a row), complaints
   and unsubscribes suppress the lead and end all its enrollments at once; ``deal_won`` and ``deal_lost``
   close the deal;
5. wakes the enrollments waiting for it (``nurture.engine.engagement.on_engagement``).

Leads are locked (``FOR UPDATE``, in id order) while their events are applied, so concurrent workers and API
calls apply one lead's events one after the other."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Row, bindparam, case, func, literal, make_url, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, lazyload, load_only
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from nurture.clock import Clock
from nurture.config import TemperatureThresholds
from nurture.db import is_postgresql
from nurture.delivery.bulk import among, insert_rows, update_rows
from nurture.delivery.models import Message
from nurture.engine.context import EngineContext
from nurture.engine.engagement import LINK_KEY, MESSAGE_ID_KEY, on_engagement
from nurture.engine.goals import exit_lead_enrollments
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.leads.lifecycle import LeadStatus, temperature_for
from nurture.leads.models import Activity, ActorKind, Lead
from nurture.leads.service import Actor
from nurture.scoring.config import ScoringConfig
from nurture.scoring.lifecycle import close_deal, promote_for_score
from nurture.scoring.points import (
    CapLedger,
    add_engagements,
    awards_for,
    entry_row,
    fit_points,
    insert_entries,
    worth_now,
)
from nurture.scoring.store import current_config
from nurture.tracking.machine import Click, burst_clicks, window_closes
from nurture.tracking.models import EngagementEvent, EventSource, EventType

EVENT_ID_KEY = "event_id"
DEAL_WON = "deal_won"
DEAL_LOST = "deal_lost"
# Events that say nothing about a person's interest: no last_engaged_at, no wake-ups.
NOT_ENGAGEMENT = frozenset(
    {
        EventType.DELIVERED.value,
        EventType.BOUNCED.value,
        EventType.COMPLAINED.value,
        EventType.UNSUBSCRIBED.value,
        DEAL_LOST,
    }
)
SOFT = "soft"
HARD = "hard"
# A lead status is only ever made stronger: a complaint overrides an unsubscribe, nothing overrides erasure.
_STATUS_RANK = {
    LeadStatus.ACTIVE: 0,
    LeadStatus.UNSUBSCRIBED: 1,
    LeadStatus.BOUNCED: 1,
    LeadStatus.COMPLAINED: 2,
    LeadStatus.ERASED: 3,
}


@dataclass(frozen=True)
class NewEvent:
    lead_id: int
    type: str
    occurred_at: datetime
    source: EventSource
    dedupe_key: str
    message_id: int | None = None
    campaign: str | None = None
    url: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] | None = None
    machine_reason: str | None = None


def _insert(session: Session) -> Any:
    return pg_insert if is_postgresql(session) else sqlite_insert


def random_key(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def insert_events(session: Session, now: datetime, events: Sequence[NewEvent]) -> list[int | None]:
    """Store ``events`` as pending; the id of each, or None for one whose dedupe key is already stored."""
    ids: list[int | None] = []
    for event in events:
        stmt = (
            _insert(session)(EngagementEvent)
            .values(
                lead_id=event.lead_id,
                message_id=event.message_id,
                campaign=event.campaign,
                type=event.type,
                occurred_at=event.occurred_at,
                recorded_at=now,
                source=event.source.value,
                machine=event.machine_reason is not None,
                machine_reason=event.machine_reason,
                url=event.url,
                properties=event.properties,
                raw=event.raw,
                dedupe_key=event.dedupe_key,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(EngagementEvent.id)
        )
        ids.append(session.execute(stmt).scalar_one_or_none())
    return ids


def record_events(session: Session, clock: Clock, ctx: EngineContext, events: Sequence[NewEvent]) -> list[int | None]:
    """Store and apply ``events`` in the caller's transaction; None for duplicates (already recorded)."""
    ids = insert_events(session, clock.now(), events)
    apply_events(session, clock, ctx, [event_id for event_id in ids if event_id is not None])
    return ids


def record_event(session: Session, clock: Clock, ctx: EngineContext, event: NewEvent) -> int | None:
    return record_events(session, clock, ctx, [event])[0]


# --- the tracking endpoints' hot path ---------------------------------------------------------------------------


# The columns a hit binds as they are (``_hit_values``); the rest come from the message.
_HIT_CONSTANTS = (
    "type",
    "occurred_at",
    "recorded_at",
    "source",
    "machine",
    "machine_reason",
    "properties",
    "raw",
    "dedupe_key",
)


@dataclass(frozen=True)
class Hit:
    """An open (``link_index`` None) or a click of one message, as a tracking endpoint saw it."""

    event_type: EventType
    message_id: int
    link_index: int | None
    machine_reason: str | None
    raw: dict[str, Any]


def _hit_values(now: datetime, hit: Hit) -> dict[str, Any]:
    values = {
        "hit_message_id": hit.message_id,
        "hit_type": hit.event_type.value,
        "hit_occurred_at": now,
        "hit_recorded_at": now,
        "hit_source": EventSource.TRACKING.value,
        "hit_machine": hit.machine_reason is not None,
        "hit_machine_reason": hit.machine_reason,
        "hit_properties": {},
        "hit_raw": hit.raw,
        "hit_dedupe_key": random_key("hit"),
    }
    if hit.link_index is not None:
        values["hit_link_index"] = hit.link_index
    return values


@lru_cache(maxsize=2)
def _hit_statement(click: bool) -> Any:
    """The INSERT ... SELECT of a hit, built once per shape: a hit only binds its values. It reads the message
    (no such message: no row, nothing stored) and, for a click, the link stored at the index, which it returns."""
    table = EngagementEvent.__table__
    messages = Message.__table__
    columns: list[Any] = [messages.c.lead_id, messages.c.id, messages.c.campaign]
    names = ["lead_id", "message_id", "campaign"]
    source = select().where(messages.c.id == bindparam("hit_message_id", type_=messages.c.id.type))
    if click:
        url = messages.c.links[bindparam("hit_link_index", type_=JSON.JSONIndexType())].as_string()
        columns.append(url)
        names.append("url")
        # Only an http(s) link is ever followed (and recorded as clicked).
        source = source.where(or_(url.ilike("http://%"), url.ilike("https://%")))
    columns += [bindparam(f"hit_{name}", type_=table.c[name].type) for name in _HIT_CONSTANTS]
    return table.insert().from_select(names + list(_HIT_CONSTANTS), source.add_columns(*columns)).returning(table.c.url)


def store_hit(session: Session, now: datetime, hit: Hit) -> tuple[bool, str | None]:
    """Store ``hit`` as a pending event in the session's transaction, in one statement.

    Returns whether the message (and for a click, the link) exists, and the click's target URL, read from
    the links stored with the message: a click can only ever lead to a URL that was in that email."""
    row = session.execute(_hit_statement(hit.link_index is not None), _hit_values(now, hit)).first()
    if row is None:
        return False, None
    return True, row.url


class PostgresHitStore:
    """Stores hits on PostgreSQL through plain psycopg connections of its own, the tracking endpoints' hot path.

    Each connection is in autocommit, so a hit's one statement is its whole transaction (one round trip: no
    BEGIN, no COMMIT), with ``synchronous_commit`` off (the request does not wait for a WAL flush: a crash of
    the database server can lose the last fraction of a second of hits, never corrupt anything), and runs the
    statement prepared (parsed and planned once per connection). No pre-ping: a connection the server dropped
    fails its statement, and the hit is tried once more on a fresh connection. Idle connections are kept
    last-in first-out, one per thread that was ever storing a hit at the same time (a gunicorn sync worker
    needs one, a gthread worker one per thread)."""

    APPLICATION_NAME = "nurture tracking hits"

    def __init__(self, url: str) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        dialect = PGDialect_psycopg()
        self._statements: dict[bool, tuple[str, dict[str, Any]]] = {}
        for click in (False, True):
            compiled = _hit_statement(click).compile(dialect=dialect)
            # The statement's own literals (the ILIKE patterns) with the values a hit binds left to fill in.
            self._statements[click] = (str(compiled), dict(compiled.params))
        self._idle: deque[psycopg.Connection[Any]] = deque()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            application_name=self.APPLICATION_NAME,
            options="-c synchronous_commit=off",
        )

    def store(self, now: datetime, hit: Hit) -> tuple[bool, str | None]:
        """As ``store_hit``, the statement being its own transaction."""
        sql, params = self._statements[hit.link_index is not None]
        values = {**params, **_hit_values(now, hit)}
        values["hit_properties"] = Jsonb(values["hit_properties"])
        values["hit_raw"] = Jsonb(values["hit_raw"])
        for attempt in (1, 2):
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = self._connect()
            try:
                row = connection.execute(sql, values, prepare=True).fetchone()
            except psycopg.OperationalError:
                dropped = connection.broken
                connection.close()
                if attempt == 2 or not dropped:
                    raise
                continue
            except BaseException:
                connection.close()
                raise
            self._idle.append(connection)
            return (False, None) if row is None else (True, row[0])
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


# --- applying ---------------------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    applied: int = 0
    machine: int = 0
    suppressed: list[int] = field(default_factory=list)
    stage_changes: int = 0


def _lock_leads(session: Session, lead_ids: Iterable[int]) -> dict[int, Lead]:
    # FOR NO KEY UPDATE: it orders the appliers of one lead without blocking the inserts that merely
    # reference the lead (a tracking hit's event row takes FOR KEY SHARE on it).
    # Only the columns applying reads (any other loads when touched); the tags are not read at all.
    query = (
        select(Lead)
        .where(among(session, Lead.id, sorted(set(lead_ids))))
        .order_by(Lead.id)
        .options(load_only(*_LEAD_COLUMNS), lazyload(Lead.tags))
    )
    query = query.with_for_update(key_share=True) if is_postgresql(session) else query
    return {lead.id: lead for lead in session.scalars(query.execution_options(populate_existing=True))}


_LEAD_COLUMNS = (Lead.id, Lead.stage, Lead.status, Lead.score, Lead.temperature, Lead.last_engaged_at)


def _store_scores(
    session: Session,
    leads: Iterable[Lead],
    scores: dict[int, int],
    engaged: dict[int, datetime],
    thresholds: TemperatureThresholds,
) -> None:
    """Write the leads' new score (the temperature follows it) and ``last_engaged_at`` (from ``engaged``) in
    one statement, and set them on the objects as stored values (the session's flush has nothing to write
    for them; it writes what else changed: a stage, a status)."""
    rows = []
    for lead in leads:
        values = {
            "score": scores[lead.id],
            "temperature": temperature_for(scores[lead.id], thresholds),
            "last_engaged_at": engaged.get(lead.id, lead.last_engaged_at),
        }
        for name, value in values.items():
            set_committed_value(lead, name, value)
        rows.append({"id": lead.id, **values})
    update_rows(session, Lead.__table__, rows)  # type: ignore[arg-type]


def _waiting_for(session: Session, lead_ids: list[int]) -> set[tuple[int, str]]:
    """The (lead, event kind) pairs some enrollment of these leads waits for: ``on_engagement`` (which checks
    the rest: campaign, deadline) is only called for those, most events waking nothing. One query a batch, not
    one statement an event."""
    if not lead_ids:
        return set()
    rows = session.execute(
        select(Enrollment.lead_id, Enrollment.waiting_for)
        .where(
            Enrollment.lead_id.in_(lead_ids),
            Enrollment.state == EnrollmentState.WAITING,
            Enrollment.waiting_for.is_not(None),
        )
        .distinct()
    )
    return {(lead_id, kind) for lead_id, kind in rows}


# The columns of an event that applying it reads.
_EVENT_COLUMNS = (
    EngagementEvent.id,
    EngagementEvent.lead_id,
    EngagementEvent.message_id,
    EngagementEvent.campaign,
    EngagementEvent.type,
    EngagementEvent.occurred_at,
    EngagementEvent.source,
    EngagementEvent.machine,
    EngagementEvent.machine_reason,
    EngagementEvent.url,
    EngagementEvent.properties,
)


@dataclass
class _Scored:
    """One event of the batch between scoring it and its effects: its lead's engagement points of this batch
    up to it (decayed to now), from which its score after it is known once the batch's update returns."""

    event: Row[Any]
    lead: Lead
    properties: dict[str, Any]
    points_so_far: float


class _Processed:
    """Marks the batch's events applied (``processed_at``), in one statement for all those not marked yet."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.pending: list[int] = []

    def flush(self, session: Session) -> None:
        if not self.pending:
            return
        session.execute(
            update(EngagementEvent)
            .where(among(session, EngagementEvent.id, self.pending))
            .values(processed_at=self.now)
            .execution_options(synchronize_session=False)
        )
        for event_id in self.pending:
            _set_on_held_event(session, event_id, "processed_at", self.now)
        self.pending = []


def _set_on_held_event(session: Session, event_id: int, name: str, value: Any) -> None:
    """After a statement wrote ``name`` of the event: an event object a caller holds in this session reads the
    stored value (and the flush has nothing to write for it)."""
    held = session.identity_map.get(identity_key(EngagementEvent, event_id))
    if held is not None:
        set_committed_value(held, name, value)


def apply_events(session: Session, clock: Clock, ctx: EngineContext, event_ids: Sequence[int]) -> ApplyReport:
    """Apply stored, unapplied events in id order (see the module's docstring).

    The batch is applied in a few statements whatever its size: the events are read and their leads locked
    once; each event's activity, points (caps counted event by event in ``CapLedger``) and score entries are
    worked out in Python in id order; then the activities, the entries, the cap counters and each lead's
    engagement (one atomic upsert for all the leads) are written at once; then, in id order again, each event's
    score (what its lead's upsert returned, less the points of its later events), promotions, deal, suppression
    and wake-ups."""
    report = ApplyReport()
    if not event_ids:
        return report
    now = clock.now()
    events = session.execute(
        select(*_EVENT_COLUMNS)
        .where(among(session, EngagementEvent.id, list(event_ids)), EngagementEvent.processed_at.is_(None))
        .order_by(EngagementEvent.id)
    ).all()
    if not events:
        return report
    config = current_config(session)
    leads = _lock_leads(session, [event.lead_id for event in events])
    counted = [
        event
        for event in events
        if event.lead_id in leads and not (event.machine and not config.settings.count_machine_engagement)
    ]
    counted_leads = sorted({event.lead_id for event in counted})
    caps = CapLedger.load(session, config, counted_leads, [event.occurred_at for event in counted])
    fits = fit_points(session, config, counted_leads, now) if config.fit_rules else {}
    waiting = _waiting_for(session, counted_leads)
    processed = _Processed(now)
    activities: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    points: dict[int, float] = {}
    engaged: dict[int, datetime] = {}
    scored: list[_Scored] = []
    # Nothing in the loops reads the ORM changes (stage moves) back through SQL: they are flushed with the
    # batch's statements.
    with session.no_autoflush:
        for event in events:
            lead = leads.get(event.lead_id)
            processed.pending.append(event.id)
            if lead is None:
                continue
            if event.machine and not config.settings.count_machine_engagement:
                report.machine += 1
                continue
            properties = dict(event.properties or {})
            if event.type == EventType.BOUNCED.value and properties.get("bounce") == SOFT:
                processed.flush(session)  # the events of this batch applied so far count
                _count_soft_bounce(session, config, event, properties)
            activities.append(_activity_row(event, properties))
            if event.type not in NOT_ENGAGEMENT and not event.machine:
                last = engaged.get(lead.id, lead.last_engaged_at)
                if last is None or last < event.occurred_at:
                    engaged[lead.id] = event.occurred_at
            awards = awards_for(
                config,
                caps,
                lead.id,
                event.type,
                event.occurred_at,
                campaign=event.campaign,
                url=event.url,
                properties=properties,
            )
            entries.extend(
                entry_row(
                    lead.id, award, event_id=event.id, event_type=event.type, occurred_at=event.occurred_at, now=now
                )
                for award in awards
            )
            points[lead.id] = points.get(lead.id, 0.0) + worth_now(awards, event.occurred_at, now, config.settings)
            scored.append(_Scored(event, lead, properties, points[lead.id]))
            report.applied += 1
        insert_rows(session, Activity.__table__, activities)
        insert_entries(session, entries)
        caps.save(session)
        states = add_engagements(session, config.settings, points, now, fits=fits)
        scores: dict[int, int] = {}
        for item in scored:
            state = states[item.lead.id]
            # What the lead's engagement was before this batch, decayed to now, plus its points up to this event.
            engagement = state.engagement - points[item.lead.id] + item.points_so_far
            scores[item.lead.id] = round(state.fit + engagement)
            _effects(session, clock, ctx, config, item, scores[item.lead.id], waiting, report)
        _store_scores(session, [leads[lead_id] for lead_id in points], scores, engaged, ctx.settings.temperature)
        processed.flush(session)
    session.flush()
    for lead_id in report.suppressed:
        exit_lead_enrollments(session, clock, ctx, lead_id)
    return report


def _activity_row(event: Row[Any], properties: dict[str, Any]) -> dict[str, Any]:
    """The timeline activity of an event (see ``nurture.leads.service.record_activity``)."""
    data: dict[str, Any] = {EVENT_ID_KEY: event.id}
    if event.message_id is not None:
        data[MESSAGE_ID_KEY] = event.message_id
    if event.url is not None:
        data[LINK_KEY] = event.url
    if event.machine:
        data["machine"] = event.machine_reason
    data.update({key: value for key, value in properties.items() if key not in data})
    return {
        "lead_id": event.lead_id,
        "kind": event.type,
        "occurred_at": event.occurred_at,
        "campaign": event.campaign,
        "data": data,
    }


def _count_soft_bounce(session: Session, config: ScoringConfig, event: Row[Any], properties: dict[str, Any]) -> None:
    """A soft bounce that makes ``soft_bounce_limit`` in a row counts as hard: say so in ``properties`` and
    in the stored event."""
    streak = _soft_bounce_streak(session, event)
    if streak < config.settings.soft_bounce_limit:
        return
    properties["bounce"] = HARD
    properties["note"] = f"{streak} soft bounces in a row"
    session.execute(
        update(EngagementEvent)
        .where(EngagementEvent.id == event.id)
        .values(properties=properties)
        .execution_options(synchronize_session=False)
    )
    _set_on_held_event(session, event.id, "properties", dict(properties))


def _effects(
    session: Session,
    clock: Clock,
    ctx: EngineContext,
    config: ScoringConfig,
    item: _Scored,
    score: int,
    waiting: set[tuple[int, str]],
    report: ApplyReport,
) -> None:
    """What follows an event once its points are stored (``score``: its lead's score after it): promotions, a
    deal's close, suppression, wake-ups."""
    event, lead, properties = item.event, item.lead, item.properties
    kind = event.type
    report.stage_changes += len(
        promote_for_score(session, clock, lead, score, config.settings, f"{kind} event {event.id}")
    )
    actor = (
        Actor(ActorKind.API, "events api")
        if event.source == EventSource.API.value
        else Actor(ActorKind.SYSTEM, event.source)
    )
    if kind in (DEAL_WON, DEAL_LOST):
        reason = properties.get("reason")
        if (
            close_deal(
                session,
                clock,
                lead,
                won=kind == DEAL_WON,
                reason=reason if isinstance(reason, str) else None,
                actor=actor,
            )
            is not None
        ):
            report.stage_changes += 1
    status = _suppressing_status(kind, properties)
    if status is not None and _STATUS_RANK[status] > _STATUS_RANK[lead.status]:
        lead.status = status
        lead.updated_at = clock.now()
        report.suppressed.append(lead.id)
    if kind not in NOT_ENGAGEMENT and (lead.id, kind) in waiting:
        on_engagement(session, clock, lead.id, kind, message_id=event.message_id, campaign=event.campaign)


def _suppressing_status(kind: str, properties: dict[str, Any]) -> LeadStatus | None:
    if kind == EventType.BOUNCED.value and properties.get("bounce") != SOFT:
        return LeadStatus.BOUNCED
    if kind == EventType.COMPLAINED.value:
        return LeadStatus.COMPLAINED
    if kind == EventType.UNSUBSCRIBED.value:
        return LeadStatus.UNSUBSCRIBED
    return None


def _soft_bounce_streak(session: Session, event: Row[Any]) -> int:
    """Soft bounces of the lead since its last delivery, this one included."""
    events = EngagementEvent
    last_delivery = (
        select(func.max(events.occurred_at))
        .where(events.lead_id == event.lead_id, events.type == EventType.DELIVERED.value, events.id != event.id)
        .scalar_subquery()
    )
    earlier = session.scalar(
        select(func.count())
        .select_from(events)
        .where(
            events.lead_id == event.lead_id,
            events.type == EventType.BOUNCED.value,
            events.properties["bounce"].as_string() == SOFT,
            events.processed_at.is_not(None),
            events.id != event.id,
            events.occurred_at <= event.occurred_at,
            (last_delivery.is_(None)) | (events.occurred_at > last_delivery),
        )
    )
    return int(earlier or 0) + 1


# --- the worker -------------------------------------------------------------------------------------------------


@dataclass
class ProcessReport:
    provider_events: int = 0
    applied: int = 0
    machine: int = 0
    # Clicks still inside their message's scanner window: applied by a later pass.
    deferred: int = 0

    @property
    def handled(self) -> int:
        return self.provider_events + self.applied + self.machine

    def summary(self) -> str:
        return (
            f"{self.provider_events} provider events mapped, {self.applied} events applied, {self.machine} machine, "
            f"{self.deferred} clicks waiting for their scanner window"
        )


def _claim_pending(session: Session, limit: int) -> list[int]:
    query = (
        select(EngagementEvent.id)
        .where(EngagementEvent.processed_at.is_(None))
        .order_by(EngagementEvent.id)
        .limit(limit)
    )
    if is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _judge_clicks(session: Session, now: datetime, event_ids: list[int]) -> set[int]:
    """Flag the scanner clicks among ``event_ids``; returns the ids to leave for a later pass. Each message
    clicked after its scanner window is judged on all its clicks made within the window: one query for all
    the batch's messages, one statement for the clicks newly flagged."""
    events = session.execute(
        select(EngagementEvent.id, EngagementEvent.type, EngagementEvent.message_id, Message.sent_at, Message.links)
        .join(Message, Message.id == EngagementEvent.message_id)
        .where(among(session, EngagementEvent.id, event_ids))
    ).all()
    waiting: set[int] = set()
    judged: dict[int, tuple[datetime, list[str] | None]] = {}
    # The type is tested here: in the query, the planner read every click through the type's index.
    for click in (event for event in events if event.type == EventType.CLICKED.value):
        closes = window_closes(click.sent_at)
        if closes is None:
            continue
        if now < closes:
            waiting.add(click.id)
        else:
            judged[click.message_id] = (click.sent_at, click.links)
    if not judged:
        return waiting
    occurred_type = EngagementEvent.__table__.c.occurred_at.type
    closing = {
        message_id: literal(window_closes(sent_at), occurred_type) for message_id, (sent_at, _links) in judged.items()
    }
    early: dict[int, list[Row[Any]]] = {message_id: [] for message_id in judged}
    for row in session.execute(
        select(
            EngagementEvent.id,
            EngagementEvent.message_id,
            EngagementEvent.url,
            EngagementEvent.occurred_at,
            EngagementEvent.machine,
        ).where(
            among(session, EngagementEvent.message_id, sorted(judged)),
            EngagementEvent.type == EventType.CLICKED.value,
            # Each message's own window: the clicks made after it are not read.
            EngagementEvent.occurred_at <= case(closing, value=EngagementEvent.message_id),
        )
    ):
        early[row.message_id].append(row)
    flags: list[dict[str, Any]] = []
    for message_id, (sent_at, links) in judged.items():
        rows = early[message_id]
        flagged = burst_clicks(sent_at, links, [Click(row.id, row.url, row.occurred_at) for row in rows])
        flags.extend(
            {"id": row.id, "machine": True, "machine_reason": flagged[row.id]}
            for row in rows
            if row.id in flagged and not row.machine
        )
    update_rows(session, EngagementEvent.__table__, sorted(flags, key=lambda flag: flag["id"]))  # type: ignore[arg-type]
    return waiting


def process_pending_events(session: Session, clock: Clock, ctx: EngineContext, *, limit: int = 500) -> ProcessReport:
    """One batch of the worker's job: map stored provider events, then apply pending engagement events (the
    tracking endpoints' hits). Call it until ``handled`` is 0; commit after each call."""
    from nurture.tracking.sendgrid_webhook import map_pending_provider_events

    report = ProcessReport()
    report.provider_events = map_pending_provider_events(session, clock, limit=limit)
    ids = _claim_pending(session, limit)
    if not ids:
        return report
    waiting = _judge_clicks(session, clock.now(), ids)
    report.deferred = len(waiting)
    ready = [event_id for event_id in ids if event_id not in waiting]
    session.expire_all()
    applied = apply_events(session, clock, ctx, ready)
    report.applied, report.machine = applied.applied, applied.machine
    return report


# --- reports ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngagementCount:
    type: str
    human: int
    machine: int
    human_leads: int
    machine_leads: int


def engagement_counts(
    session: Session, since: datetime, until: datetime, *, campaign: str | None = None, message_id: int | None = None
) -> list[EngagementCount]:
    """Events per type in ``[since, until)``, people and machines apart (events and distinct leads)."""
    query = (
        select(
            EngagementEvent.type,
            EngagementEvent.machine,
            func.count(),
            func.count(func.distinct(EngagementEvent.lead_id)),
        )
        .where(EngagementEvent.occurred_at >= since, EngagementEvent.occurred_at < until)
        .group_by(EngagementEvent.type, EngagementEvent.machine)
    )
    if campaign is not None:
        query = query.where(EngagementEvent.campaign == campaign)
    if message_id is not None:
        query = query.where(EngagementEvent.message_id == message_id)
    counts: dict[str, list[int]] = {}
    for kind, machine, events, leads in session.execute(query):
        row = counts.setdefault(kind, [0, 0, 0, 0])
        row[1 if machine else 0] += events
        row[3 if machine else 2] += leads
    return [EngagementCount(kind, *row) for kind, row in sorted(counts.items())]
