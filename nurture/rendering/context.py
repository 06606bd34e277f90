"""What a template can see: read-only views of the lead, the campaign and the sender, the special URLs and
``now`` in the lead's time zone. Never an ORM object: a template must not reach a session or lazy loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.errors import ValidationError
from nurture.leads.lifecycle import STAGE_LABELS, Stage, Temperature
from nurture.leads.models import Lead
from nurture.rendering.filters import LOCALE_VARIABLE, TIMEZONE_VARIABLE
from nurture.rendering.sandbox import TemplateData, frozen_mapping

# Names a template may use; anything else is reported by check_templates as a likely typo.
CONTEXT_NAMES = frozenset(
    {"lead", "campaign", "sender", "unsubscribe_url", "preferences_url", "view_in_browser_url", "now"}
)


@dataclass(frozen=True, slots=True)
class LeadView(TemplateData):
    id: int | None
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    job_title: str | None = None
    phone: str | None = None
    country: str | None = None
    timezone: str | None = None
    locale: str | None = None
    source: str | None = None
    owner: str | None = None
    stage: str = Stage.SUBSCRIBER.value
    stage_label: str = STAGE_LABELS[Stage.SUBSCRIBER]
    temperature: str = Temperature.COLD.value
    score: int = 0
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


@dataclass(frozen=True, slots=True)
class SenderView(TemplateData):
    """Who the email is from; the postal address is printed in every footer (anti-spam laws ask for it)."""

    name: str
    email: str
    postal_address: str


_LEAD_FIELDS = {item.name for item in fields(LeadView)}
_LEAD_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "job_title",
    "phone",
    "country",
    "timezone",
    "locale",
    "source",
    "owner",
)


_MAPPING_KEYS = _LEAD_FIELDS | {"full_name"}
_STAGES: dict[Any, Stage] = {stage.value: stage for stage in Stage}
_TEMPERATURES: dict[Any, Temperature] = {temperature.value: temperature for temperature in Temperature}


def lead_view(lead: Lead | Mapping[str, Any]) -> LeadView:
    """From a stored lead, or from a plain mapping (previews, samples) using the same field names."""
    if isinstance(lead, Lead):
        return LeadView(
            id=lead.id,
            email=lead.email,
            **{name: getattr(lead, name) for name in _LEAD_TEXT_FIELDS},
            stage=lead.stage.value,
            stage_label=lead.stage.label,
            temperature=lead.temperature.value,
            score=lead.score,
            tags=tuple(lead.tag_names),
            attributes=frozen_mapping(lead.attributes or {}),
        )
    if not _MAPPING_KEYS.issuperset(lead):
        unknown = sorted(set(lead) - _MAPPING_KEYS)
        raise ValidationError(f"unknown lead field(s) {', '.join(unknown)}", where="lead")
    values = dict(lead)
    values.pop("full_name", None)
    values.setdefault("id", None)
    values.setdefault("email", "")
    # A dict lookup first: the enum call costs more than the rest of a view (previews, the bench's leads).
    stage_value = values.get("stage") or Stage.SUBSCRIBER
    temperature_value = values.get("temperature") or Temperature.COLD
    # (Only strings are looked up: anything else, even unhashable, goes to the enum and its error.)
    stage = _STAGES.get(stage_value) if isinstance(stage_value, str) else None
    temperature = _TEMPERATURES.get(temperature_value) if isinstance(temperature_value, str) else None
    if stage is None or temperature is None:
        try:
            stage = Stage(stage_value)
            temperature = Temperature(temperature_value)
        except ValueError as error:
            raise ValidationError(str(error), where="lead") from None
    values["temperature"] = temperature.value
    values["stage"] = stage.value
    values.setdefault("stage_label", stage.label)
    values["tags"] = tuple(values.get("tags") or ())
    values["attributes"] = frozen_mapping(values.get("attributes") or {})
    return LeadView(**values)


def sender_view(sender: SenderView | Mapping[str, str]) -> SenderView:
    if isinstance(sender, SenderView):
        return sender
    try:
        return SenderView(name=sender["name"], email=sender["email"], postal_address=sender["postal_address"])
    except KeyError as missing:
        raise ValidationError(f"the sender needs a {missing.args[0]}", where="sender") from None


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def lead_zone(lead: LeadView, default_timezone: str) -> tzinfo:
    """The lead's time zone; the default one when it is unset or not a real zone."""
    return (lead.timezone and _zone(lead.timezone)) or _zone(default_timezone) or ZoneInfo("UTC")


@dataclass(frozen=True)
class SpecialUrls:
    unsubscribe_url: str
    preferences_url: str
    view_in_browser_url: str = ""

    def untracked(self) -> frozenset[str]:
        return frozenset([url for url in (self.unsubscribe_url, self.preferences_url, self.view_in_browser_url) if url])


PREVIEW_URLS = SpecialUrls("#unsubscribe", "#preferences", "#view-in-browser")


def build_context(
    lead: LeadView,
    *,
    sender: SenderView,
    now: datetime,
    urls: SpecialUrls,
    campaign: Mapping[str, Any] | None = None,
    default_timezone: str = "UTC",
) -> dict[str, Any]:
    zone = lead_zone(lead, default_timezone)
    return {
        "lead": lead,
        "campaign": frozen_mapping(campaign or {}),
        "sender": sender,
        "unsubscribe_url": urls.unsubscribe_url,
        "preferences_url": urls.preferences_url,
        "view_in_browser_url": urls.view_in_browser_url,
        "now": now.astimezone(zone),
        LOCALE_VARIABLE: lead.locale,
        TIMEZONE_VARIABLE: zone,
    }


def sample_lead(**overrides: Any) -> LeadView:
    """A made-up lead for previews and checks."""
    values: dict[str, Any] = {
        "id": None,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "job_title": "Head of Research",
        "country": "United Kingdom",
        "timezone": "Europe/London",
        "locale": "en_GB",
        "stage": Stage.LEAD.value,
        "temperature": Temperature.WARM.value,
        "score": 35,
        "tags": ("newsletter", "webinar"),
        "attributes": {"plan": "trial", "trial_ends": "2026-02-01"},
    }
    values.update(overrides)
    return lead_view(values)


SAMPLE_SENDER = SenderView(
    name="Nurture Demo",
    email="hello@nurture.example",
    postal_address="1 Example Street, 75001 Paris, France",
)
