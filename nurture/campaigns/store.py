"""Campaigns in the database: load definitions, find and list them, export them, change their status.

Callers own the session's transaction; nothing here commits. Loading checks every file before it
touches a row, so a bad file among several changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition, RulesEntry, SegmentEntry
from nurture.campaigns.models import Campaign, CampaignStatus, CampaignVersion, EntryExclusion
from nurture.campaigns.validation import (
    CampaignInvalid,
    CheckedCampaign,
    Issue,
    TemplateCheck,
    campaign_files,
    check_data,
    check_file,
    dump_yaml,
    email_template_exists,
)
from nurture.clock import Clock
from nurture.errors import NotFound, NurtureError, ValidationError
from nurture.leads.models import Lead
from nurture.segments.compiler import compile_rules
from nurture.segments.service import find_segment, segment_rules


class SaveOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class SavedCampaign:
    campaign: Campaign
    outcome: SaveOutcome
    # The version before an update; None for a new campaign.
    previous_version: int | None = None
    # Steps the update dropped: enrollments waiting on them have to be dealt with by the engine.
    removed_steps: tuple[str, ...] = ()
    source: str | None = None


@dataclass(frozen=True)
class LoadReport:
    saved: tuple[SavedCampaign, ...]
    warnings: tuple[Issue, ...]


def find_campaign(session: Session, slug: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.slug == slug.strip()))


def get_campaign(session: Session, slug: str) -> Campaign:
    campaign = find_campaign(session, slug)
    if campaign is None:
        raise NotFound(f"no campaign with slug {slug.strip()!r}")
    return campaign


def list_campaigns(session: Session, status: CampaignStatus | None = None) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.slug)
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def save_campaign(
    session: Session,
    clock: Clock,
    definition: CampaignDefinition,
    *,
    source: str | None = None,
    author: str = "cli",
    note: str = "",
) -> SavedCampaign:
    """Create the campaign, or update the one with the same slug; a changed definition gets a new version,
    recorded in ``campaign_versions`` with ``author`` (a user's email, or "cli") and ``note``.

    ``definition`` must come from the validator (``check_*`` or ``parse_campaign``). Archived campaigns
    are final: changing one is refused."""
    data = definition.to_data()
    now = clock.now()
    campaign = find_campaign(session, definition.slug)
    if campaign is None:
        campaign = Campaign(
            slug=definition.slug,
            name=definition.name,
            description=definition.description,
            status=CampaignStatus.DRAFT,
            definition=data,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        _flush(session, definition.slug)
        _record_version(session, campaign, author, note)
        return SavedCampaign(campaign, SaveOutcome.CREATED, source=source)
    if campaign.definition == data:
        return SavedCampaign(campaign, SaveOutcome.UNCHANGED, campaign.version, source=source)
    if campaign.status is CampaignStatus.ARCHIVED:
        raise ValidationError(f"campaign {campaign.slug!r} is archived and cannot change", where=source)
    previous = campaign.version
    removed = tuple(step for step in campaign.parsed.step_ids if not definition.has_step(step))
    campaign.name = definition.name
    campaign.description = definition.description
    campaign.definition = data
    campaign.version = previous + 1
    campaign.updated_at = now
    _flush(session, definition.slug)
    _record_version(session, campaign, author, note)
    return SavedCampaign(campaign, SaveOutcome.UPDATED, previous, removed, source)


def _record_version(session: Session, campaign: Campaign, author: str, note: str) -> None:
    session.add(
        CampaignVersion(
            campaign_id=campaign.id,
            version=campaign.version,
            definition=campaign.definition,
            created_at=campaign.updated_at,
            created_by=author,
            note=note,
        )
    )
    _flush(session, campaign.slug)


def _flush(session: Session, slug: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise NurtureError(f"campaign {slug!r} was saved by someone else at the same time; try again") from None


def check_campaign_files(
    session: Session | None,
    paths: Iterable[Path],
    *,
    template_exists: TemplateCheck = email_template_exists,
) -> list[CheckedCampaign]:
    """Check every file (segments against the database when ``session`` is given); raise ``CampaignInvalid``
    with every issue of every file when any has an error, including two files sharing a slug."""
    files, issues = campaign_files(paths)
    checked = [check_file(path, template_exists=template_exists, session=session) for path in files]
    issues += [issue for result in checked for issue in result.issues]
    first_file_by_slug: dict[str, str] = {}
    for result in checked:
        if result.definition is None:
            continue
        slug = result.definition.slug
        if slug in first_file_by_slug:
            message = f"slug {slug!r} is also the slug of {first_file_by_slug[slug]}"
            issues.append(result.issue(("slug",), message))
        else:
            first_file_by_slug[slug] = result.source or ""
    if any(issue.is_error for issue in issues):
        raise CampaignInvalid(issues)
    return checked


def load_campaign_files(
    session: Session,
    clock: Clock,
    paths: Iterable[Path],
    *,
    template_exists: TemplateCheck = email_template_exists,
) -> LoadReport:
    """Create or update a campaign per file, all of them or (on any error) none."""
    checked = check_campaign_files(session, paths, template_exists=template_exists)
    saved = []
    for result in checked:
        assert result.definition is not None
        saved.append(save_campaign(session, clock, result.definition, source=result.source))
    return LoadReport(tuple(saved), tuple(issue for result in checked for issue in result.warnings))


def export_campaign(campaign: Campaign) -> str:
    """The campaign as a YAML file that loads back to the same definition."""
    header = f"# Campaign {campaign.slug}, version {campaign.version} ({campaign.status.value}), exported by nurture.\n"
    return header + dump_yaml(campaign.parsed.to_data())


def activate_campaign(
    session: Session,
    clock: Clock,
    slug: str,
    *,
    template_exists: TemplateCheck = email_template_exists,
    enrol_existing: bool = True,
) -> bool:
    """Start (or resume) a draft or paused campaign; False when it is active already.

    The definition is checked again first: a template or segment may have gone since it was loaded. With
    ``enrol_existing`` False, the leads its segment and rules entries match now are kept out of it for good
    (``campaign_entry_exclusions``): only leads who come to match later enter."""
    campaign = get_campaign(session, slug)
    if campaign.status is CampaignStatus.ACTIVE:
        return False
    if campaign.status is CampaignStatus.ARCHIVED:
        raise ValidationError(f"campaign {campaign.slug!r} is archived: archived campaigns stay retired")
    checked = check_data(
        campaign.definition, source=f"campaign {campaign.slug}", template_exists=template_exists, session=session
    )
    if checked.errors:
        raise CampaignInvalid(checked.issues)
    if not enrol_existing and checked.definition is not None:
        _exclude_current_matches(session, clock, campaign, checked.definition)
    _move(campaign, CampaignStatus.ACTIVE, clock.now())
    campaign.activated_at = campaign.updated_at
    return True


def _exclude_current_matches(
    session: Session, clock: Clock, campaign: Campaign, definition: CampaignDefinition
) -> None:
    """One INSERT ... SELECT per segment or rules entry: the leads matching it now."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for trigger in definition.entry:
        if isinstance(trigger, SegmentEntry):
            segment = find_segment(session, trigger.segment)
            rules = segment_rules(segment) if segment is not None else None
        elif isinstance(trigger, RulesEntry):
            rules = trigger.rules
        else:
            continue
        if rules is None:
            continue
        matching = select(literal(campaign.id), Lead.id).where(compile_rules(rules, clock.now()))
        session.execute(
            insert(EntryExclusion)
            .from_select(["campaign_id", "lead_id"], matching)
            .on_conflict_do_nothing()
        )


def pause_campaign(session: Session, clock: Clock, slug: str) -> bool:
    """Stop an active campaign from moving leads on; False when it is paused already."""
    campaign = get_campaign(session, slug)
    if campaign.status is CampaignStatus.PAUSED:
        return False
    if campaign.status is not CampaignStatus.ACTIVE:
        raise ValidationError(f"campaign {campaign.slug!r} is {campaign.status.value}: only an active campaign pauses")
    _move(campaign, CampaignStatus.PAUSED, clock.now())
    campaign.paused_at = campaign.updated_at
    return True


def archive_campaign(session: Session, clock: Clock, slug: str) -> bool:
    """Retire a campaign for good, keeping it for reports; False when it is archived already."""
    campaign = get_campaign(session, slug)
    if campaign.status is CampaignStatus.ARCHIVED:
        return False
    _move(campaign, CampaignStatus.ARCHIVED, clock.now())
    campaign.archived_at = campaign.updated_at
    return True


def _move(campaign: Campaign, status: CampaignStatus, now: datetime) -> None:
    campaign.status = status
    campaign.updated_at = now
