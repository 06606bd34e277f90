"""A parsed campaign: typed, immutable, and walked step by step by id.

One campaign has three spellings: the YAML file people write (docs/campaigns.md), the normalised data
stored in ``campaigns.definition`` and written back by ``export`` (``to_data``), and these objects
(``from_data``). ``from_data`` trusts its input; untrusted data goes through
``nurture.campaigns.validation`` first, which reports every mistake with where it is.

The engine stores an enrollment's current step by id, so ids are what it walks with: ``step(id)``,
``next_step_id(id, outcome)``. Execution falls through to the next step in the list unless a step
jumps; falling off the end of the list finishes the enrollment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, TypeAlias, TypeVar
from zoneinfo import ZoneInfo

from nurture.errors import NotFound
from nurture.leads.lifecycle import SUPPRESSED_STATUSES, Stage
from nurture.segments.rules import RuleNode, parse_rules, rules_to_data

# A lead whose status becomes one of these leaves every campaign at once, whatever the definition says.
IMPLICIT_EXIT_STATUSES = SUPPRESSED_STATUSES

# --- durations -------------------------------------------------------------------------------------------

MINUTES_PER_UNIT = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
# Ten years: longer than any nurture wait, short enough that date arithmetic never overflows.
MAX_DURATION_MINUTES = 3650 * 24 * 60
_DURATION = re.compile(r"([+-])?(?=[0-9])(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?")


@dataclass(frozen=True, order=True)
class Duration:
    """An exact length of time, whole minutes: ``90m``, ``2h``, ``3d``, ``1w``, ``1d12h``, ``-30d``.

    A day is 24 hours and a week 7 days; units come largest first, each at most once."""

    minutes: int

    @classmethod
    def parse(cls, text: str, *, signed: bool = False) -> Duration:
        match = _DURATION.fullmatch(text) if isinstance(text, str) else None
        if match is None or (match.group(1) and not signed):
            example = "-30d, 2h or 1w" if signed else "90m, 2h, 3d or 1w"
            raise ValueError(f"{text!r} is not a duration: write a number and a unit (m, h, d, w), such as {example}")
        sign, *amounts = match.groups()
        minutes = sum(
            int(amount) * unit for amount, unit in zip(amounts, MINUTES_PER_UNIT.values(), strict=True) if amount
        )
        if minutes > MAX_DURATION_MINUTES:
            raise ValueError(f"{text!r} is longer than {MAX_DURATION_MINUTES // (24 * 60)} days")
        return cls(-minutes if sign == "-" else minutes)

    @property
    def delta(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def __str__(self) -> str:
        """The canonical spelling: the largest unit that divides the length exactly (``1w``, ``36h``)."""
        sign = "-" if self.minutes < 0 else ""
        size = abs(self.minutes)
        for unit, unit_minutes in MINUTES_PER_UNIT.items():
            if size % unit_minutes == 0 and (size or unit == "d"):
                return f"{sign}{size // unit_minutes}{unit}"
        raise AssertionError("every length divides by one minute")


# --- days and times ----------------------------------------------------------------------------------------


class Weekday(IntEnum):
    """Numbered like ``datetime.weekday()``; spelled with three letters in campaign files."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, raw: str) -> Weekday:
        try:
            return cls[raw.upper()]
        except KeyError:
            raise ValueError(f"{raw!r} is not a weekday: use mon, tue, wed, thu, fri, sat or sun") from None


ALL_WEEKDAYS = frozenset(Weekday)
_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
END_OF_DAY = "24:00"


def parse_time(raw: str) -> time:
    """``HH:MM`` on a 24-hour clock; ``9:30`` is read as ``09:30``."""
    match = _TIME.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f'{raw!r} is not a time of day: write HH:MM on a 24-hour clock, such as "09:30"')
    return time(int(match.group(1)), int(match.group(2)))


def format_time(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def parse_date(raw: str) -> date:
    try:
        if not isinstance(raw, str) or len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a date: write YYYY-MM-DD, such as 2026-12-01") from None


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A wall-clock moment in ``zone`` as a UTC instant (a time skipped by a DST change lands an hour later)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


# --- entry, exit and the campaign-wide settings ------------------------------------------------------------


@dataclass(frozen=True)
class SegmentEntry:
    """Leads in this saved segment enter."""

    segment: str


@dataclass(frozen=True)
class RulesEntry:
    """Leads matching these rules (the segment rule format) enter."""

    rules: RuleNode


@dataclass(frozen=True)
class ImportEntry:
    """Leads created by an import enter; with ``tag`` or ``source``, only those the import gave it."""

    tag: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class EventEntry:
    """A lead enters when an activity of this custom kind is recorded for it."""

    event: str


@dataclass(frozen=True)
class StageEntry:
    """A lead enters when it moves into this stage."""

    stage: Stage


EntryTrigger: TypeAlias = SegmentEntry | RulesEntry | ImportEntry | EventEntry | StageEntry


@dataclass(frozen=True)
class StageExit:
    """The enrollment ends when the lead moves into this stage."""

    stage: Stage


@dataclass(frozen=True)
class TagExit:
    """The enrollment ends when this tag is added to the lead."""

    tag: str


ExitCondition: TypeAlias = StageExit | TagExit


@dataclass(frozen=True)
class Reentry:
    """Whether a lead that left may enter again, and how long after it entered last."""

    after: Duration | None = None

    @property
    def allowed(self) -> bool:
        return self.after is not None


@dataclass(frozen=True)
class SendWindow:
    """When emails may go out, on the lead's wall clock: these days, from ``start`` until ``end``."""

    days: frozenset[Weekday] = ALL_WEEKDAYS
    start: time = time(0)
    # None: until midnight at the end of the day.
    end: time | None = None

    def is_open(self, at: datetime, zone: ZoneInfo) -> bool:
        local = at.astimezone(zone)
        if Weekday(local.weekday()) not in self.days:
            return False
        now = local.time().replace(tzinfo=None)
        return self.start <= now and (self.end is None or now < self.end)

    def next_opening(self, at: datetime, zone: ZoneInfo) -> datetime:
        """``at`` when the window is open then, else the next moment it opens (UTC)."""
        if self.is_open(at, zone):
            return at
        local_day = at.astimezone(zone).date()
        for offset in range(8):
            day = local_day + timedelta(days=offset)
            if Weekday(day.weekday()) in self.days:
                opening = _local(day, self.start, zone)
                if opening > at:
                    return opening
        raise AssertionError("a send window has at least one day, so it opens within a week")


class CapPeriod(StrEnum):
    DAY = "day"
    WEEK = "week"


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``emails`` marketing emails per lead per ``per``, counted across every campaign."""

    emails: int
    per: CapPeriod


# --- steps ---------------------------------------------------------------------------------------------------


class StepType(StrEnum):
    SEND = "send"
    WAIT = "wait"
    BRANCH = "branch"
    WAIT_FOR = "wait_for"
    SET = "set"
    NOTIFY = "notify"
    GOTO = "goto"
    EXIT = "exit"


@dataclass(frozen=True)
class StepShape:
    """How a step type moves on: the fields naming its jump targets, whether it ends the enrollment,
    and whether it makes the lead wait (a loop needs a waiting step, or it would spin forever)."""

    jumps: tuple[str, ...] = ()
    ends: bool = False
    waits: bool = False


STEP_SHAPES: dict[StepType, StepShape] = {
    StepType.SEND: StepShape(),
    StepType.WAIT: StepShape(waits=True),
    StepType.BRANCH: StepShape(jumps=("yes", "no")),
    StepType.WAIT_FOR: StepShape(jumps=("yes", "no"), waits=True),
    StepType.SET: StepShape(),
    StepType.NOTIFY: StepShape(),
    StepType.GOTO: StepShape(jumps=("to",)),
    StepType.EXIT: StepShape(ends=True),
}

K = TypeVar("K", bound=Hashable)


def successor_keys(
    step_type: StepType | None, jumps: Mapping[str, K | None], fall_through: K | None
) -> tuple[K | None, ...]:
    """Every step that may follow one of ``step_type``, in the order of its jump fields.

    A jump field left out falls through to the next step in the list; ``None`` is the end of the list.
    Generic over the key so the validator can walk raw data by list index and the definition by id."""
    shape = STEP_SHAPES[step_type] if step_type is not None else StepShape()
    if shape.ends:
        return ()
    if not shape.jumps:
        return (fall_through,)
    found: list[K | None] = []
    for name in shape.jumps:
        target = jumps.get(name)
        key = target if target is not None else fall_through
        if key not in found:
            found.append(key)
    return tuple(found)


class EmailEvent(StrEnum):
    """Engagement tracked on the emails a campaign sends."""

    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"


EMAIL_EVENTS = frozenset(event.value for event in EmailEvent)


def link_matches(pattern: str, url: str) -> bool:
    """Whether a clicked ``url`` matches ``pattern``: the exact URL, or ``*`` for any run of characters."""
    if "*" not in pattern:
        return url == pattern
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, url, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Message:
    """One email a send step may send: the step's own, or one of its A/B variants, fully resolved."""

    template: str
    # None: the template's own subject block (which follows the lead's language with the template).
    subject: str | None
    preheader: str | None
    variant: str | None
    weight: int = 1


@dataclass(frozen=True)
class Variant:
    """An A/B variant; what it leaves out comes from its step."""

    name: str
    weight: int
    template: str | None = None
    subject: str | None = None
    preheader: str | None = None


@dataclass(frozen=True)
class SendStep:
    kind: ClassVar[StepType] = StepType.SEND
    id: str
    # None only when every variant brings its own.
    template: str | None = None
    # None: the subject is the template's own ``{% block subject %}``.
    subject: str | None = None
    preheader: str | None = None
    variants: tuple[Variant, ...] = ()

    def messages(self) -> tuple[Message, ...]:
        if not self.variants:
            assert self.template is not None
            return (Message(self.template, self.subject, self.preheader, None),)
        resolved = []
        for variant in self.variants:
            template, subject = variant.template or self.template, variant.subject or self.subject
            assert template is not None
            preheader = variant.preheader if variant.preheader is not None else self.preheader
            resolved.append(Message(template, subject, preheader, variant.name, variant.weight))
        return tuple(resolved)

    def choose(self, roll: float) -> Message:
        """The message for a lead whose uniform draw in [0, 1) is ``roll``, by variant weight."""
        messages = [message for message in self.messages() if message.weight > 0]
        threshold = roll * sum(message.weight for message in messages)
        for message in messages:
            threshold -= message.weight
            if threshold < 0:
                return message
        return messages[-1]


@dataclass(frozen=True)
class WaitUntilTime:
    """The next ``at`` on the lead's wall clock, on ``weekday`` when given."""

    at: time
    weekday: Weekday | None = None

    def next_after(self, started: datetime, zone: ZoneInfo, attributes: Mapping[str, Any]) -> datetime | None:
        local_day = started.astimezone(zone).date()
        for offset in range(9):
            day = local_day + timedelta(days=offset)
            if self.weekday is None or day.weekday() == self.weekday:
                moment = _local(day, self.at, zone)
                if moment > started:
                    return moment
        raise AssertionError("every weekday comes round within a week")


@dataclass(frozen=True)
class WaitUntilDate:
    """A calendar date on the lead's wall clock, at ``at`` (midnight when not given); past dates do not wait."""

    day: date
    at: time | None = None

    def next_after(self, started: datetime, zone: ZoneInfo, attributes: Mapping[str, Any]) -> datetime | None:
        return _local(self.day, self.at or time(0), zone)


@dataclass(frozen=True)
class WaitUntilAttribute:
    """A date held in a lead attribute, shifted by ``offset`` on the lead's calendar (``-30d``: thirty days
    before, same wall-clock time). ``at`` sets the time of day; a lead without a usable date does not wait."""

    attribute: str
    offset: Duration = Duration(0)
    at: time | None = None

    def next_after(self, started: datetime, zone: ZoneInfo, attributes: Mapping[str, Any]) -> datetime | None:
        local = _attribute_moment(attributes.get(self.attribute), zone)
        if local is None:
            return None
        if self.at is not None:
            local = datetime.combine(local.date(), self.at)
        shifted = local + self.offset.delta
        return _local(shifted.date(), shifted.time(), zone)


def _attribute_moment(raw: Any, zone: ZoneInfo) -> datetime | None:
    """An attribute value (ISO date or date-time text) as a naive wall-clock moment in ``zone``."""
    if not isinstance(raw, str):
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(0))
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone).replace(tzinfo=None)
    return moment


WaitUntil: TypeAlias = WaitUntilTime | WaitUntilDate | WaitUntilAttribute


@dataclass(frozen=True)
class WaitStep:
    kind: ClassVar[StepType] = StepType.WAIT
    id: str
    # Exactly one of the two.
    duration: Duration | None = None
    until: WaitUntil | None = None

    def wake_at(self, started: datetime, zone: ZoneInfo, attributes: Mapping[str, Any]) -> datetime | None:
        """When a lead that reached this step at ``started`` moves on (UTC); None: at once (no usable date)."""
        if self.duration is not None:
            return started + self.duration.delta
        assert self.until is not None
        return self.until.next_after(started, zone, attributes)


@dataclass(frozen=True)
class RulesCondition:
    """The lead, as it is when the branch runs, matches these segment rules."""

    rules: RuleNode


@dataclass(frozen=True)
class EngagementCondition:
    """The lead opened (or clicked, optionally a matching link in) the email of an earlier send step."""

    event: EmailEvent
    step: str
    link: str | None = None

    def matches_link(self, url: str) -> bool:
        return self.link is None or link_matches(self.link, url)


BranchCondition: TypeAlias = RulesCondition | EngagementCondition


@dataclass(frozen=True)
class BranchStep:
    kind: ClassVar[StepType] = StepType.BRANCH
    id: str
    condition: BranchCondition
    # None: fall through to the next step.
    yes: str | None = None
    no: str | None = None


@dataclass(frozen=True)
class WaitForStep:
    """Wait until the event happens (yes) or ``within`` has passed (no)."""

    kind: ClassVar[StepType] = StepType.WAIT_FOR
    id: str
    event: str
    within: Duration
    # Only for email events: the send step whose email must be opened, clicked or replied to.
    step: str | None = None
    link: str | None = None
    yes: str | None = None
    no: str | None = None

    @property
    def email_event(self) -> EmailEvent | None:
        return EmailEvent(self.event) if self.event in EMAIL_EVENTS else None

    def matches_link(self, url: str) -> bool:
        return self.link is None or link_matches(self.link, url)


AttributeValue: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True)
class SetStep:
    kind: ClassVar[StepType] = StepType.SET
    id: str
    stage: Stage | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    # A None value removes the attribute.
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    adjust_score: int | None = None
    # Unsubscribe the lead, for this cause (``inactive``): suppressed like an unsubscribe of its own.
    unsubscribe: str | None = None


@dataclass(frozen=True)
class NotifyStep:
    """Hand the lead to sales: POST signed JSON to ``webhook`` and/or email the lead's owner."""

    kind: ClassVar[StepType] = StepType.NOTIFY
    id: str
    webhook: str | None = None
    email_owner: bool = False
    template: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class GotoStep:
    kind: ClassVar[StepType] = StepType.GOTO
    id: str
    to: str


class ExitOutcome(StrEnum):
    CONVERTED = "converted"
    EXITED = "exited"


@dataclass(frozen=True)
class ExitStep:
    kind: ClassVar[StepType] = StepType.EXIT
    id: str
    outcome: ExitOutcome = ExitOutcome.EXITED


Step: TypeAlias = SendStep | WaitStep | BranchStep | WaitForStep | SetStep | NotifyStep | GotoStep | ExitStep


class UnknownStep(NotFound):
    """A step id the campaign does not have (any more: an edit may have removed it)."""


# --- the campaign ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CampaignDefinition:
    slug: str
    name: str
    description: str = ""
    # None: the instance's NURTURE_TIMEZONE.
    timezone: str | None = None
    entry: tuple[EntryTrigger, ...]
    reentry: Reentry = Reentry()
    # Segment rules; a lead that meets them leaves as converted.
    goal: RuleNode | None = None
    exit_conditions: tuple[ExitCondition, ...] = ()
    # None: any time.
    send_window: SendWindow | None = None
    frequency_cap: FrequencyCap | None = None
    steps: tuple[Step, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a campaign has at least one step")
        positions = {step.id: index for index, step in enumerate(self.steps)}
        if len(positions) != len(self.steps):
            raise ValueError("step ids must be unique")
        object.__setattr__(self, "_positions", positions)

    # -- walking --

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(step.id for step in self.steps)

    @property
    def first_step_id(self) -> str:
        return self.steps[0].id

    def has_step(self, step_id: str) -> bool:
        return step_id in self._positions

    def position(self, step_id: str) -> int:
        try:
            return self._positions[step_id]
        except KeyError:
            raise UnknownStep(f"campaign {self.slug!r} has no step {step_id!r}") from None

    def step(self, step_id: str) -> Step:
        return self.steps[self.position(step_id)]

    def fall_through_id(self, step_id: str) -> str | None:
        """The step after ``step_id`` in the list; None at the end."""
        following = self.position(step_id) + 1
        return self.steps[following].id if following < len(self.steps) else None

    def next_step_id(self, step_id: str, outcome: bool | None = None) -> str | None:
        """Where a lead goes once ``step_id`` is done; None: the enrollment is over.

        Branch and wait_for steps need ``outcome`` (True: condition met or event happened); an exit step
        ends the enrollment, a goto jumps, every other step falls through."""
        step = self.step(step_id)
        shape = STEP_SHAPES[step.kind]
        if shape.ends:
            return None
        if step.kind is StepType.GOTO:
            assert isinstance(step, GotoStep)
            return step.to
        if shape.jumps:
            if outcome is None:
                raise ValueError(f"step {step_id!r} is a {step.kind} step: its outcome decides where to go")
            target = getattr(step, "yes" if outcome else "no")
            return target if target is not None else self.fall_through_id(step_id)
        if outcome is not None:
            raise ValueError(f"step {step_id!r} is a {step.kind} step: it has no outcome")
        return self.fall_through_id(step_id)

    def successors(self, step_id: str) -> tuple[str | None, ...]:
        """Every step that may follow ``step_id`` (None: the end of the list)."""
        step = self.step(step_id)
        jumps = {name: getattr(step, name) for name in STEP_SHAPES[step.kind].jumps}
        return successor_keys(step.kind, jumps, self.fall_through_id(step_id))

    # -- spelling --

    def to_data(self) -> dict[str, Any]:
        """The normalised, JSON-ready form: stored in the database, exported as YAML, read by ``from_data``.

        Defaults are left out, names are canonical (stages, weekdays, durations, times)."""
        data: dict[str, Any] = {"slug": self.slug, "name": self.name}
        if self.description:
            data["description"] = self.description
        if self.timezone:
            data["timezone"] = self.timezone
        data["entry"] = [_entry_to_data(trigger) for trigger in self.entry]
        if self.reentry.after is not None:
            data["reentry"] = {"after": str(self.reentry.after)}
        if self.goal is not None:
            data["goal"] = {"rules": rules_to_data(self.goal)}
        if self.exit_conditions:
            data["exit"] = [_exit_to_data(condition) for condition in self.exit_conditions]
        if self.send_window is not None:
            data["send_window"] = _window_to_data(self.send_window)
        if self.frequency_cap is not None:
            data["frequency_cap"] = {"emails": self.frequency_cap.emails, "per": self.frequency_cap.per.value}
        data["steps"] = [_step_to_data(step) for step in self.steps]
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CampaignDefinition:
        """Build from data that passed validation (or came from ``to_data``)."""
        reentry = data.get("reentry", "never")
        goal = data.get("goal")
        return cls(
            slug=data["slug"],
            name=data["name"].strip(),
            description=(data.get("description") or "").strip(),
            timezone=data.get("timezone"),
            entry=tuple(_entry_from_data(item) for item in data["entry"]),
            reentry=Reentry(Duration.parse(reentry["after"])) if isinstance(reentry, Mapping) else Reentry(),
            goal=parse_rules(goal["rules"]) if goal is not None else None,
            exit_conditions=tuple(_exit_from_data(item) for item in data.get("exit") or ()),
            send_window=_window_from_data(data["send_window"]) if data.get("send_window") else None,
            frequency_cap=(
                FrequencyCap(data["frequency_cap"]["emails"], CapPeriod(data["frequency_cap"]["per"]))
                if data.get("frequency_cap")
                else None
            ),
            steps=tuple(_step_from_data(item) for item in data["steps"]),
        )


# --- to and from data ------------------------------------------------------------------------------------------


def _entry_to_data(trigger: EntryTrigger) -> dict[str, Any]:
    if isinstance(trigger, SegmentEntry):
        return {"segment": trigger.segment}
    if isinstance(trigger, RulesEntry):
        return {"rules": rules_to_data(trigger.rules)}
    if isinstance(trigger, ImportEntry):
        return {"on_import": _without_none({"tag": trigger.tag, "source": trigger.source})}
    if isinstance(trigger, EventEntry):
        return {"on_event": trigger.event}
    return {"on_stage": trigger.stage.value}


def _entry_from_data(data: Mapping[str, Any]) -> EntryTrigger:
    ((key, value),) = data.items()
    if key == "segment":
        return SegmentEntry(value)
    if key == "rules":
        return RulesEntry(parse_rules(value))
    if key == "on_import":
        filters = value if isinstance(value, Mapping) else {}
        return ImportEntry(_stripped(filters.get("tag")), _stripped(filters.get("source")))
    if key == "on_event":
        return EventEntry(value)
    if key == "on_stage":
        return StageEntry(Stage(value))
    raise ValueError(f"unknown entry trigger {key!r}")


def _exit_to_data(condition: ExitCondition) -> dict[str, str]:
    if isinstance(condition, StageExit):
        return {"on_stage": condition.stage.value}
    return {"on_tag_added": condition.tag}


def _exit_from_data(data: Mapping[str, Any]) -> ExitCondition:
    ((key, value),) = data.items()
    if key == "on_stage":
        return StageExit(Stage(value))
    if key == "on_tag_added":
        return TagExit(value.strip())
    raise ValueError(f"unknown exit condition {key!r}")


def _window_to_data(window: SendWindow) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if window.days != ALL_WEEKDAYS:
        data["days"] = [day.label for day in sorted(window.days)]
    if window.start != time(0) or window.end is not None:
        end = format_time(window.end) if window.end is not None else END_OF_DAY
        data["hours"] = {"from": format_time(window.start), "to": end}
    return data


def _window_from_data(data: Mapping[str, Any]) -> SendWindow | None:
    days = frozenset(Weekday.parse(day) for day in data.get("days") or ()) or ALL_WEEKDAYS
    hours = data.get("hours") or {}
    start = parse_time(hours["from"]) if hours else time(0)
    end = parse_time(hours["to"]) if hours and hours["to"] != END_OF_DAY else None
    window = SendWindow(days, start, end)
    # A window open all week long is no window: one spelling for "any time".
    return None if window == SendWindow() else window


def _step_to_data(step: Step) -> dict[str, Any]:
    data: dict[str, Any] = {"id": step.id, "type": step.kind.value}
    if isinstance(step, SendStep):
        data |= _without_none({"template": step.template, "subject": step.subject, "preheader": step.preheader})
        if step.variants:
            data["variants"] = [
                {"name": variant.name, "weight": variant.weight}
                | _without_none(
                    {"template": variant.template, "subject": variant.subject, "preheader": variant.preheader}
                )
                for variant in step.variants
            ]
    elif isinstance(step, WaitStep):
        if step.duration is not None:
            data["for"] = str(step.duration)
        else:
            assert step.until is not None
            data["until"] = _until_to_data(step.until)
    elif isinstance(step, BranchStep):
        condition = step.condition
        if isinstance(condition, RulesCondition):
            data["if"] = {"rules": rules_to_data(condition.rules)}
        else:
            data["if"] = _without_none({condition.event.value: condition.step, "link": condition.link})
        data |= _without_none({"yes": step.yes, "no": step.no})
    elif isinstance(step, WaitForStep):
        data |= _without_none({"event": step.event, "step": step.step, "link": step.link})
        data["within"] = str(step.within)
        data |= _without_none({"yes": step.yes, "no": step.no})
    elif isinstance(step, SetStep):
        data |= _without_none({"stage": step.stage.value if step.stage else None})
        if step.add_tags:
            data["add_tags"] = list(step.add_tags)
        if step.remove_tags:
            data["remove_tags"] = list(step.remove_tags)
        if step.attributes:
            data["attributes"] = dict(step.attributes)
        data |= _without_none({"adjust_score": step.adjust_score, "unsubscribe": step.unsubscribe})
    elif isinstance(step, NotifyStep):
        data |= _without_none({"webhook": step.webhook})
        if step.email_owner:
            data["email_owner"] = True
        data |= _without_none({"template": step.template, "subject": step.subject})
    elif isinstance(step, GotoStep):
        data["to"] = step.to
    elif isinstance(step, ExitStep) and step.outcome is not ExitOutcome.EXITED:
        data["as"] = step.outcome.value
    return data


def _until_to_data(until: WaitUntil) -> dict[str, Any]:
    at = format_time(until.at) if until.at is not None else None
    if isinstance(until, WaitUntilTime):
        return _without_none({"weekday": until.weekday.label if until.weekday is not None else None, "time": at})
    if isinstance(until, WaitUntilDate):
        return _without_none({"date": until.day.isoformat(), "time": at})
    offset = str(until.offset) if until.offset.minutes else None
    return _without_none({"attribute": until.attribute, "offset": offset, "time": at})


def _until_from_data(data: Mapping[str, Any]) -> WaitUntil:
    at = parse_time(data["time"]) if data.get("time") is not None else None
    if "date" in data:
        return WaitUntilDate(parse_date(data["date"]), at)
    if "attribute" in data:
        offset = Duration.parse(data["offset"], signed=True) if data.get("offset") is not None else Duration(0)
        return WaitUntilAttribute(data["attribute"], offset, at)
    assert at is not None
    return WaitUntilTime(at, Weekday.parse(data["weekday"]) if data.get("weekday") is not None else None)


def _step_from_data(data: Mapping[str, Any]) -> Step:
    step_type = StepType(data["type"])
    builder = _STEP_BUILDERS[step_type]
    return builder(data)


def _send_from_data(data: Mapping[str, Any]) -> SendStep:
    variants = tuple(
        Variant(item["name"], item["weight"], item.get("template"), item.get("subject"), item.get("preheader"))
        for item in data.get("variants") or ()
    )
    return SendStep(data["id"], data.get("template"), data.get("subject"), data.get("preheader"), variants)


def _wait_from_data(data: Mapping[str, Any]) -> WaitStep:
    if data.get("for") is not None:
        return WaitStep(data["id"], duration=Duration.parse(data["for"]))
    return WaitStep(data["id"], until=_until_from_data(data["until"]))


def _branch_from_data(data: Mapping[str, Any]) -> BranchStep:
    raw = data["if"]
    condition: BranchCondition
    if "rules" in raw:
        condition = RulesCondition(parse_rules(raw["rules"]))
    else:
        event = EmailEvent.OPENED if "opened" in raw else EmailEvent.CLICKED
        condition = EngagementCondition(event, raw[event.value], raw.get("link"))
    return BranchStep(data["id"], condition, data.get("yes"), data.get("no"))


def _wait_for_from_data(data: Mapping[str, Any]) -> WaitForStep:
    return WaitForStep(
        data["id"],
        data["event"],
        Duration.parse(data["within"]),
        data.get("step"),
        data.get("link"),
        data.get("yes"),
        data.get("no"),
    )


def _set_from_data(data: Mapping[str, Any]) -> SetStep:
    return SetStep(
        data["id"],
        Stage(data["stage"]) if data.get("stage") is not None else None,
        _tags(data.get("add_tags")),
        _tags(data.get("remove_tags")),
        dict(data.get("attributes") or {}),
        data.get("adjust_score"),
        data.get("unsubscribe"),
    )


def _notify_from_data(data: Mapping[str, Any]) -> NotifyStep:
    return NotifyStep(
        data["id"], data.get("webhook"), bool(data.get("email_owner")), data.get("template"), data.get("subject")
    )


_STEP_BUILDERS: dict[StepType, Callable[[Mapping[str, Any]], Step]] = {
    StepType.SEND: _send_from_data,
    StepType.WAIT: _wait_from_data,
    StepType.BRANCH: _branch_from_data,
    StepType.WAIT_FOR: _wait_for_from_data,
    StepType.SET: _set_from_data,
    StepType.NOTIFY: _notify_from_data,
    StepType.GOTO: lambda data: GotoStep(data["id"], data["to"]),
    StepType.EXIT: lambda data: ExitStep(data["id"], ExitOutcome(data.get("as", ExitOutcome.EXITED.value))),
}


def _tags(raw: list[str] | None) -> tuple[str, ...]:
    # Tags are stored stripped (nurture.leads.service.ensure_tags); keep the first of any repeats.
    return tuple(dict.fromkeys(tag.strip() for tag in raw or ()))


def _stripped(raw: str | None) -> str | None:
    return raw.strip() if raw is not None else None


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def template_file(name: str) -> str:
    """The renderer's name for a send step's ``template:`` (``welcome`` is ``welcome.html``): what the engine
    renders and what validation checks exists."""
    return name if name.endswith(".html") else f"{name}.html"
