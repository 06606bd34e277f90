"""The campaign pages: ``GET /campaigns`` (status, enrollments per state, conversions) and
``GET /campaigns/<slug>`` (the steps of the definition, read-only, with counts per step), with
``POST /campaigns/<slug>/<activate|pause|archive>`` for people whose role may run campaigns. The buttons call
the same store functions as ``nurture campaigns activate|pause|archive``."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.reports import EnrollmentCounts, enrollment_counts, step_views
from nurture.campaigns.store import activate_campaign, archive_campaign, find_campaign, list_campaigns, pause_campaign
from nurture.campaigns.validation import CampaignInvalid, templates_in
from nurture.clock import Clock
from nurture.engine.models import EnrollmentState
from nurture.errors import NurtureError
from nurture.web.auth import role_required
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir
from nurture.web.ui import CAMPAIGN_CONTROL_ROLE, READ_ROLE

blueprint = Blueprint("campaigns", __name__, url_prefix="/campaigns")


def _activate(session: Session, clock: Clock, slug: str) -> bool:
    # The templates this instance renders from (NURTURE_EMAIL_TEMPLATES), checked again before it starts.
    return activate_campaign(session, clock, slug, template_exists=templates_in(email_templates_dir()))


# action -> (the store function, past tense, the store's answer when nothing changed)
ACTIONS: dict[str, tuple[Callable[[Session, Clock, str], bool], str, str]] = {
    "activate": (_activate, "Activated", "is already active"),
    "pause": (pause_campaign, "Paused", "is already paused"),
    "archive": (archive_campaign, "Archived", "is already archived"),
}


@blueprint.route("", methods=["GET"])
@role_required(READ_ROLE)
def index() -> ResponseReturnValue:
    session = get_session()
    campaigns = list_campaigns(session)
    counts = enrollment_counts(session, [campaign.id for campaign in campaigns])
    return render_template(
        "campaigns/index.html",
        rows=[(campaign, counts.get(campaign.id, EnrollmentCounts())) for campaign in campaigns],
        states=list(EnrollmentState),
    )


def _campaign_or_404(slug: str) -> Campaign:
    campaign = find_campaign(get_session(), slug)
    if campaign is None:
        abort(404)
    return campaign


def _show(campaign: Campaign, *, status: int = 200, errors: list[str] | None = None) -> ResponseReturnValue:
    session = get_session()
    return render_template(
        "campaigns/show.html",
        campaign=campaign,
        counts=enrollment_counts(session, [campaign.id]).get(campaign.id, EnrollmentCounts()),
        states=list(EnrollmentState),
        steps=step_views(session, campaign),
        errors=errors or [],
        CampaignStatus=CampaignStatus,
    ), status


@blueprint.route("/<slug>", methods=["GET"])
@role_required(READ_ROLE)
def show(slug: str) -> ResponseReturnValue:
    return _show(_campaign_or_404(slug))


@blueprint.route("/<slug>/<any(activate, pause, archive):action>", methods=["POST"])
@role_required(CAMPAIGN_CONTROL_ROLE)
def control(slug: str, action: str) -> ResponseReturnValue:
    session = get_session()
    campaign = _campaign_or_404(slug)
    apply, done, already = ACTIONS[action]
    try:
        changed = apply(session, get_clock(), campaign.slug)
    except CampaignInvalid as invalid:
        session.rollback()
        return _show(campaign, status=400, errors=[f"{campaign.slug} was not activated:", *map(str, invalid.issues)])
    except NurtureError as exc:
        session.rollback()
        return _show(campaign, status=400, errors=[str(exc)])
    if changed:
        session.commit()
        flash(f"{done} {campaign.slug}.", "success")
    else:
        flash(f"{campaign.slug} {already}.", "info")
    return redirect(url_for("campaigns.show", slug=campaign.slug), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
