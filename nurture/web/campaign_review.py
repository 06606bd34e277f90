"""The review before activating a campaign: validation, every email rendered for a sample lead, how many
leads match the entry now with the choice to enrol them or only new ones, and the campaign's rules in words.
Activation calls the same store function as ``nurture campaigns activate [--only-new]``."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from nurture.campaigns.drafts import find_draft
from nurture.campaigns.models import CampaignStatus
from nurture.campaigns.store import activate_campaign
from nurture.campaigns.validation import CampaignInvalid, templates_in
from nurture.engine.review import review_campaign
from nurture.errors import NurtureError
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir
from nurture.web.tracking import get_tracking
from nurture.web.ui import CAMPAIGN_CONTROL_ROLE, READ_ROLE, can

blueprint = Blueprint("campaign_review", __name__, url_prefix="/campaigns")
ENROL_CHOICES = ("existing", "new")


@blueprint.route("/<slug>/review", methods=["GET"])
@role_required(READ_ROLE)
def review(slug: str, *, errors: list[str] | None = None, status: int = 200) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    result = review_campaign(
        session,
        get_clock(),
        campaign,
        ctx=get_tracking().ctx,
        template_exists=templates_in(email_templates_dir()),
    )
    return render_template(
        "campaign_review/review.html",
        campaign=campaign,
        review=result,
        errors=errors or [],
        has_draft=find_draft(session, campaign) is not None,
        can_activate=can(CAMPAIGN_CONTROL_ROLE)
        and campaign.status in (CampaignStatus.DRAFT, CampaignStatus.PAUSED),
        # The store's and the CLI's default, chosen on the page so that nobody enrols anyone by accident of
        # a missing field: the form names both choices and the POST requires one.
        choice=request.form.get("enrol", "") or ENROL_CHOICES[0],
    ), status


@blueprint.route("/<slug>/review/activate", methods=["POST"])
@role_required(CAMPAIGN_CONTROL_ROLE)
def activate(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    choice = request.form.get("enrol", "")
    if choice not in ENROL_CHOICES:
        return review(slug, errors=["enrol: choose whether the leads who already match enter"], status=400)
    try:
        changed = activate_campaign(
            session,
            get_clock(),
            campaign.slug,
            template_exists=templates_in(email_templates_dir()),
            enrol_existing=choice == "existing",
        )
    except CampaignInvalid as invalid:
        session.rollback()
        return review(slug, errors=[f"{campaign.slug} was not activated:", *map(str, invalid.issues)], status=400)
    except NurtureError as exc:
        session.rollback()
        return review(slug, errors=[str(exc)], status=400)
    session.commit()
    who = "every lead who matches the entry" if choice == "existing" else "only leads who match from now on"
    if changed:
        flash(f"Activated {campaign.slug}: {who} enter.", "success")
    else:
        flash(f"{campaign.slug} is already active; nothing changed.", "info")
    return redirect(url_for("campaigns.show", slug=campaign.slug), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
