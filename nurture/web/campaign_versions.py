"""Versions of a campaign: publish a draft (saying first what changes for leads in flight), the history,
a diff between any two versions or the draft, and restore (an old version into the draft)."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from nurture.campaigns.drafts import DraftConflict, find_draft
from nurture.campaigns.models import CampaignStatus
from nurture.campaigns.validation import CampaignInvalid, templates_in
from nurture.campaigns.versions import definition_at, diff_definitions, list_versions, restore_version
from nurture.engine.publishing import plan_publish, publish_draft
from nurture.errors import NotFound, NurtureError
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404, posted_revision
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir
from nurture.web.ui import CAMPAIGN_EDIT_ROLE, READ_ROLE, can

blueprint = Blueprint("campaign_versions", __name__, url_prefix="/campaigns")




@blueprint.route("/<slug>/publish", methods=["GET"])
@role_required(READ_ROLE)
def publish_page(slug: str, *, error: str | None = None, status: int = 200) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    draft = find_draft(session, campaign)
    plan = None
    if draft is not None:
        plan = plan_publish(session, campaign, draft, template_exists=templates_in(email_templates_dir()))
    return render_template(
        "campaign_versions/publish.html",
        campaign=campaign,
        draft=draft,
        plan=plan,
        error=error,
        editable=can(CAMPAIGN_EDIT_ROLE) and campaign.status is not CampaignStatus.ARCHIVED,
    ), status


@blueprint.route("/<slug>/publish", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def publish(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    try:
        saved = publish_draft(
            session,
            get_clock(),
            campaign,
            revision=posted_revision(),
            author=current_user.email,
            template_exists=templates_in(email_templates_dir()),
        )
    except CampaignInvalid:
        session.rollback()
        return publish_page(slug, error="The draft has problems to fix first (listed below).", status=400)
    except NurtureError as exc:
        session.rollback()
        return publish_page(slug, error=str(exc), status=409 if isinstance(exc, DraftConflict) else 400)
    session.commit()
    flash(f"Published version {saved.campaign.version} of {campaign.slug}.", "success")
    return redirect(url_for("campaigns.show", slug=campaign.slug), code=303)


@blueprint.route("/<slug>/versions", methods=["GET"])
@role_required(READ_ROLE)
def history(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    return render_template(
        "campaign_versions/history.html",
        campaign=campaign,
        versions=list_versions(session, campaign),
        draft=find_draft(session, campaign),
        editable=can(CAMPAIGN_EDIT_ROLE) and campaign.status is not CampaignStatus.ARCHIVED,
    )


@blueprint.route("/<slug>/versions/diff", methods=["GET"])
@role_required(READ_ROLE)
def diff(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    sides = {}
    for field in ("from", "to"):
        try:
            sides[field] = definition_at(session, campaign, request.args.get(field, ""))
        except NotFound as exc:
            message = f"{field}: {exc}"
            return render_template("error.html", code=404, title="No such version", message=message), 404
    (before_label, before_data), (after_label, after_data) = sides["from"], sides["to"]
    lines = diff_definitions(before_data, after_data, before_label=before_label, after_label=after_label)
    return render_template(
        "campaign_versions/diff.html",
        campaign=campaign,
        lines=lines,
        before_label=before_label,
        after_label=after_label,
    )


@blueprint.route("/<slug>/versions/<int:version>/restore", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def restore(slug: str, version: int) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    if campaign.status is CampaignStatus.ARCHIVED:
        abort(400)
    try:
        restore_version(session, get_clock(), campaign, version, revision=posted_revision(), author=current_user.email)
    except NotFound:
        abort(404)
    except DraftConflict as conflict:
        session.rollback()
        flash(f"Not restored: {conflict}", "error")
        return redirect(url_for(".history", slug=campaign.slug), code=303)
    session.commit()
    flash(f"Version {version} is now the draft: review it, then publish it.", "success")
    return redirect(url_for("campaign_editor.edit", slug=campaign.slug), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
