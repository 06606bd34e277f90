"""What every engine job needs besides a session and a clock: the settings, the email renderer, the URLs
and sender printed in emails, the parsed campaigns, and the test hooks of the crash tests."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from threading import Lock
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.config import Settings
from nurture.rendering import (
    EmailRenderer,
    EmailTemplateLoader,
    FileTemplateSource,
    SenderView,
    SignedTrackingUrls,
    StoredTemplateSource,
)
from nurture.rendering.links import TrackingUrls
from nurture.rendering.sources import default_template_directory
from nurture.tracking.settings import signer_from_settings

# Due enrollments claimed and advanced per transaction: large enough to batch the bookkeeping (one commit
# per email caps near 1,200/s on PostgreSQL), small enough that a batch commits within about a second.
DEFAULT_BATCH_SIZE = 500


@lru_cache(maxsize=1024)
def zone_named(name: str | None) -> ZoneInfo | None:
    """The zone called ``name``; None for no name or a name that is not a zone."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class LoadedCampaign:
    """A campaign row as the engine walks it: its parsed definition and its fallback time zone."""

    id: int
    slug: str
    name: str
    version: int
    status: CampaignStatus
    definition: CampaignDefinition
    # The campaign's time zone, else the instance's: used for leads without a (valid) zone of their own.
    zone: ZoneInfo

    def lead_zone(self, lead_timezone: str | None) -> ZoneInfo:
        return zone_named(lead_timezone) or self.zone


@dataclass
class EngineHooks:
    """Called at the moments the crash tests kill a worker: after a batch is claimed (locked, nothing
    written yet), before it commits (everything written, nothing committed) and after it committed
    (messages queued, nothing dispatched yet). Each gets the number of enrollments in the batch."""

    after_claim: Callable[[int], None] = lambda claimed: None
    before_commit: Callable[[int], None] = lambda claimed: None
    after_commit: Callable[[int], None] = lambda committed: None


@dataclass
class EngineContext:
    settings: Settings
    renderer: EmailRenderer
    urls: TrackingUrls
    sender: SenderView
    batch_size: int = DEFAULT_BATCH_SIZE
    hooks: EngineHooks = field(default_factory=EngineHooks)
    _definitions: OrderedDict[tuple[int, int], CampaignDefinition] = field(default_factory=OrderedDict, repr=False)
    _lock: Lock = field(default_factory=Lock, repr=False)

    def load(self, campaign: Campaign) -> LoadedCampaign:
        """The campaign with its definition parsed once per version (per process)."""
        key = (campaign.id, campaign.version)
        with self._lock:
            definition = self._definitions.get(key)
        if definition is None:
            definition = campaign.parsed
            with self._lock:
                self._definitions[key] = definition
                while len(self._definitions) > 256:
                    self._definitions.popitem(last=False)
        zone = zone_named(definition.timezone) or zone_named(self.settings.default_timezone) or ZoneInfo("UTC")
        return LoadedCampaign(
            campaign.id, campaign.slug, campaign.name, campaign.version, campaign.status, definition, zone
        )

    def campaigns(
        self, session: Session, *, ids: Iterable[int] | None = None, statuses: Iterable[CampaignStatus] | None = None
    ) -> dict[int, LoadedCampaign]:
        query = select(Campaign).order_by(Campaign.id)
        if ids is not None:
            query = query.where(Campaign.id.in_(list(ids)))
        if statuses is not None:
            query = query.where(Campaign.status.in_(list(statuses)))
        return {campaign.id: self.load(campaign) for campaign in session.scalars(query)}


_batch_session: ContextVar[Session | None] = ContextVar("nurture_engine_batch_session", default=None)


@contextmanager
def reading_stored_templates(session: Session) -> Iterator[None]:
    """Stored templates are read through ``session`` (the batch's own transaction) within this block."""
    token = _batch_session.set(session)
    try:
        yield
    finally:
        _batch_session.reset(token)


class BatchStoredTemplates:
    """The stored templates (``nurture.rendering.stored``), read through the session of the batch being
    written (``reading_stored_templates``): the engine's renderer lives as long as its process, while sessions
    live one batch. Outside a batch there is no session to read with, and only the files are seen."""

    def get(self, name: str) -> tuple[str, str] | None:
        session = _batch_session.get()
        return None if session is None else StoredTemplateSource.bound_to(session).get(name)

    def list_names(self) -> list[str]:
        session = _batch_session.get()
        return [] if session is None else StoredTemplateSource.bound_to(session).list_names()


def sender_view(settings: Settings) -> SenderView:
    sender = settings.delivery.sender
    return SenderView(
        name=sender.name or sender.address, email=sender.address, postal_address=settings.delivery.postal_address
    )


def tracking_urls(settings: Settings) -> SignedTrackingUrls:
    return SignedTrackingUrls(settings.base_url, signer_from_settings(settings))


def engine_context(
    settings: Settings,
    *,
    templates: Path | None = None,
    renderer: EmailRenderer | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    hooks: EngineHooks | None = None,
) -> EngineContext:
    """The context of a process: stored templates first (they override the file of the same name), then the
    files in ``templates`` (default: NURTURE_EMAIL_TEMPLATES, else ``nurture/email_templates/``)."""
    if renderer is None:
        files = FileTemplateSource(templates or settings.email_templates or default_template_directory())
        loader = EmailTemplateLoader(BatchStoredTemplates(), files)
        renderer = EmailRenderer(loader, default_timezone=settings.default_timezone)
    return EngineContext(
        settings=settings,
        renderer=renderer,
        urls=tracking_urls(settings),
        sender=sender_view(settings),
        batch_size=batch_size,
        hooks=hooks or EngineHooks(),
    )
