"""The vocabulary of the sales process: lifecycle stages, lead status and temperature."""

from __future__ import annotations

from enum import StrEnum

from nurture.config import TemperatureThresholds


class Stage(StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    # Closed without a sale: a pool to re-engage, outside the forward order.
    LOST = "lost"

    @property
    def rank(self) -> int | None:
        """Position in the forward funnel; ``None`` for lost."""
        return None if self is Stage.LOST else FUNNEL.index(self)

    @property
    def label(self) -> str:
        return STAGE_LABELS[self]


FUNNEL: tuple[Stage, ...] = (
    Stage.SUBSCRIBER,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)

STAGE_LABELS = {
    Stage.SUBSCRIBER: "Subscriber (suspect)",
    Stage.LEAD: "Lead (prospect)",
    Stage.MQL: "Marketing-qualified",
    Stage.SQL: "Sales-qualified",
    Stage.OPPORTUNITY: "Opportunity",
    Stage.CUSTOMER: "Customer",
    Stage.LOST: "Lost",
}


class LeadStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"

    @property
    def is_suppressed(self) -> bool:
        return self is not LeadStatus.ACTIVE


SUPPRESSED_STATUSES = frozenset(status for status in LeadStatus if status.is_suppressed)


class Temperature(StrEnum):
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


def temperature_for(score: float, thresholds: TemperatureThresholds) -> Temperature:
    if score >= thresholds.hot:
        return Temperature.HOT
    if score >= thresholds.warm:
        return Temperature.WARM
    return Temperature.COLD


def parse_stage(raw: str) -> Stage:
    """A stage from user input, accepting the sales names too (suspect, prospect, ...)."""
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    stage = STAGE_ALIASES.get(key)
    if stage is None:
        names = ", ".join(s.value for s in Stage)
        raise ValueError(f"unknown stage {raw!r}; expected one of {names}")
    return stage


STAGE_ALIASES: dict[str, Stage] = {
    **{s.value: s for s in Stage},
    "suspect": Stage.SUBSCRIBER,
    "prospect": Stage.LEAD,
    "marketing_qualified": Stage.MQL,
    "marketingqualifiedlead": Stage.MQL,
    "marketing_qualified_lead": Stage.MQL,
    "sales_qualified": Stage.SQL,
    "salesqualifiedlead": Stage.SQL,
    "sales_qualified_lead": Stage.SQL,
    "closed_lost": Stage.LOST,
    "closed_won": Stage.CUSTOMER,
    "evangelist": Stage.CUSTOMER,
    "other": Stage.SUBSCRIBER,
}
