"""What every campaign page reads from its request: the campaign named in the URL (404 when there is none)
and the draft revision a form was made on (400 when it is not one)."""

from __future__ import annotations

from flask import abort, request

from nurture.campaigns.models import Campaign
from nurture.campaigns.store import find_campaign
from nurture.web.database import get_session

# A revision is a count of saves: nine digits are plenty, and keep the number storable.
MAX_REVISION_DIGITS = 9


def campaign_or_404(slug: str) -> Campaign:
    campaign = find_campaign(get_session(), slug)
    if campaign is None:
        abort(404)
    return campaign


def posted_revision() -> int:
    raw = request.form.get("revision", "")
    if not raw.isdigit() or len(raw) > MAX_REVISION_DIGITS:
        abort(400)
    return int(raw)
