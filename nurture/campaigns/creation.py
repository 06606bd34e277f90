"""New campaigns from the web UI: blank, a copy of a starter campaign, or a copy of any campaign.

Copies go through the same validator and store as ``nurture campaigns load`` (so they are versions like any
other). A blank campaign needs a stored row before anyone can edit it, and a stored definition must be valid:
its version 1 is a placeholder that enrols nobody (an entry on a reserved event name no one sends, and a
single exit step), never activated as such; what the marketer edits is its draft, which starts empty, and
publishing the draft is what makes it a campaign.
Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from nurture.campaigns.drafts import save_draft
from nurture.campaigns.models import Campaign
from nurture.campaigns.store import find_campaign, save_campaign
from nurture.campaigns.validation import CampaignInvalid, TemplateCheck, check_data, check_file
from nurture.clock import Clock
from nurture.errors import ValidationError
from nurture.inputs import clean_text

STARTER_CAMPAIGNS = Path(__file__).resolve().parent.parent / "starter_campaigns"
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_SLUG = 100
# The placeholder's entry: an event name no integration sends (custom events are lower-case words).
PLACEHOLDER_EVENT = "nurture.unpublished-campaign"


def suggest_slug(name: str) -> str:
    """``Win back lost deals!`` -> ``win-back-lost-deals``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG].strip("-")


def check_new_identity(session: Session, slug: str, name: str) -> tuple[str, str]:
    """The stripped slug and name, or ``ValidationError`` naming the field."""
    name = clean_text(name, "name").strip()
    slug = clean_text(slug, "slug").strip() or suggest_slug(name)
    if not name:
        raise ValidationError("give the campaign a name", where="name")
    if len(name) > 200:
        raise ValidationError("at most 200 characters", where="name")
    if not SLUG.fullmatch(slug) or len(slug) > MAX_SLUG:
        raise ValidationError("lower-case letters, digits and single dashes (e.g. win-back-2027)", where="slug")
    if find_campaign(session, slug) is not None:
        raise ValidationError(f"there is already a campaign {slug!r}", where="slug")
    return slug, name


def starter_campaigns() -> dict[str, Path]:
    """Starter campaign slug (file name) -> its YAML file."""
    return {path.stem: path for path in sorted(STARTER_CAMPAIGNS.glob("*.yaml"))}


def create_blank(session: Session, clock: Clock, slug: str, name: str, *, author: str) -> Campaign:
    slug, name = check_new_identity(session, slug, name)
    placeholder = {
        "slug": slug,
        "name": name,
        "entry": [{"on_event": PLACEHOLDER_EVENT}],
        "steps": [{"id": "end", "type": "exit"}],
    }
    campaign = _save(session, clock, placeholder, author, "blank campaign (placeholder until the draft is published)")
    empty = {"slug": slug, "name": name, "entry": [], "steps": []}
    save_draft(session, clock, campaign, empty, revision=0, author=author)
    return campaign


def copy_campaign(
    session: Session,
    clock: Clock,
    source: Mapping[str, Any],
    slug: str,
    name: str,
    *,
    author: str,
    note: str,
    template_exists: TemplateCheck,
) -> Campaign:
    """A new campaign with ``source``'s definition under a new slug and name."""
    slug, name = check_new_identity(session, slug, name)
    data = {**dict(source), "slug": slug, "name": name}
    checked = check_data(data, template_exists=template_exists, session=session)
    if checked.definition is None:
        raise CampaignInvalid(checked.issues)
    return save_campaign(session, clock, checked.definition, author=author, note=note).campaign


def starter_definition(starter: str, *, template_exists: TemplateCheck) -> dict[str, Any]:
    path = starter_campaigns().get(starter)
    if path is None:
        raise ValidationError(f"no starter campaign {starter!r}", where="starter")
    checked = check_file(path, template_exists=template_exists)
    if checked.definition is None:
        raise CampaignInvalid(checked.issues)
    return checked.definition.to_data()


def _save(session: Session, clock: Clock, data: dict[str, Any], author: str, note: str) -> Campaign:
    checked = check_data(data, template_exists=lambda _name: True, session=session)
    if checked.definition is None:
        raise CampaignInvalid(checked.issues)
    return save_campaign(session, clock, checked.definition, author=author, note=note).campaign
