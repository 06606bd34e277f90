"""The campaign pages: the list (``GET /campaigns``, filtered by status, with each campaign's totals), new
campaigns (blank, a copy of a starter or of any campaign: ``/campaigns/new``), YAML upload and download,
and the overview ``GET /campaigns/<slug>`` (the published steps with counts, and the way to the editor, the
review, test mode, the versions and the report), with ``POST /campaigns/<slug>/<activate|pause|archive>``.
Every change calls the same domain functions as the CLI (``nurture campaigns load|export|activate|...``)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from nurture.campaigns.creation import copy_campaign, create_blank, starter_campaigns, starter_definition
from nurture.campaigns.drafts import drafts_of
from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.reports import EnrollmentCounts, campaign_totals, enrollment_counts, step_views
from nurture.campaigns.store import (
    activate_campaign,
    archive_campaign,
    export_campaign,
    find_campaign,
    list_campaigns,
    pause_campaign,
    save_campaign,
)
from nurture.campaigns.validation import CampaignInvalid, TemplateCheck, check_text, templates_in
from nurture.clock import Clock
from nurture.engine.models import EnrollmentState
from nurture.errors import NurtureError, ValidationError
from nurture.inputs import unstorable_reason
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir
from nurture.web.flow_view import flow_view, requested_period
from nurture.web.ui import CAMPAIGN_CONTROL_ROLE, CAMPAIGN_EDIT_ROLE, READ_ROLE

blueprint = Blueprint("campaigns", __name__, url_prefix="/campaigns")
# A campaign file is a few KB; the largest starter is 3 KB.
MAX_UPLOAD_BYTES = 512 * 1024


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
    wanted = request.args.get("status", "")
    if wanted and wanted not in {status.value for status in CampaignStatus}:
        statuses = ", ".join(status.value for status in CampaignStatus)
        message = f"status: {wanted!r} is not a campaign status ({statuses})"
        return render_template("error.html", code=400, title="Bad filter", message=message), 400
    campaigns = list_campaigns(session, CampaignStatus(wanted) if wanted else None)
    totals = campaign_totals(session, campaigns)
    return render_template(
        "campaigns/index.html",
        rows=[(campaign, totals[campaign.id]) for campaign in campaigns],
        drafts=drafts_of(session, [campaign.id for campaign in campaigns]),
        statuses=[status.value for status in CampaignStatus],
        wanted=wanted,
    )


@blueprint.route("/new", methods=["GET", "POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def new() -> ResponseReturnValue:
    session = get_session()
    form = {key: request.form.get(key, "") for key in ("start", "name", "slug", "starter", "source")}
    if request.method == "GET":
        form["start"] = request.args.get("start", "blank")
        form["source"] = request.args.get("source", "")
        return _new_page(form)
    author = current_user.email
    try:
        if form["start"] == "starter":
            data = starter_definition(form["starter"], template_exists=_templates())
            campaign = copy_campaign(
                session, get_clock(), data, form["slug"], form["name"], author=author,
                note=f"copy of the starter campaign {form['starter']}", template_exists=_templates(),
            )  # fmt: skip
        elif form["start"] == "copy":
            source = find_campaign(session, form["source"])
            if source is None:
                raise ValidationError(f"no campaign {form['source']!r}", where="source")
            campaign = copy_campaign(
                session, get_clock(), source.definition, form["slug"], form["name"], author=author,
                note=f"copy of {source.slug} version {source.version}", template_exists=_templates(),
            )  # fmt: skip
        elif form["start"] == "blank":
            campaign = create_blank(session, get_clock(), form["slug"], form["name"], author=author)
        else:
            raise ValidationError("choose blank, a starter campaign or a copy", where="start")
    except CampaignInvalid as invalid:
        session.rollback()
        return _new_page(form, errors={"source": "; ".join(map(str, invalid.issues))}, status=400)
    except ValidationError as invalid:
        session.rollback()
        return _new_page(form, errors={invalid.where or "name": invalid.message}, status=400)
    session.commit()
    flash(f"Created {campaign.slug}. Its changes are a draft until you publish them.", "success")
    return redirect(url_for("campaign_editor.edit", slug=campaign.slug), code=303)


def _new_page(form: dict[str, str], *, errors: dict[str, str] | None = None, status: int = 200) -> ResponseReturnValue:
    return render_template(
        "campaigns/new.html",
        form=form,
        errors=errors or {},
        starters=list(starter_campaigns()),
        campaigns=list_campaigns(get_session()),
    ), status


def _templates() -> TemplateCheck:
    return templates_in(email_templates_dir())


@blueprint.route("/upload", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def upload() -> ResponseReturnValue:
    session = get_session()
    uploaded = request.files.get("file")
    if uploaded is None or not uploaded.filename:
        return _upload_refused(["file: choose a YAML file"])
    raw = uploaded.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        return _upload_refused([f"file: larger than {MAX_UPLOAD_BYTES // 1024} KB"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _upload_refused([f"{uploaded.filename}: not UTF-8 text (byte {exc.start + 1})"])
    reason = unstorable_reason(text)
    if reason is not None:
        return _upload_refused([f"{uploaded.filename}: {reason}"])
    checked = check_text(text, source=uploaded.filename, template_exists=_templates(), session=session)
    if checked.definition is None or checked.errors:
        return _upload_refused([str(issue) for issue in checked.issues if issue.is_error])
    try:
        saved = save_campaign(
            session, get_clock(), checked.definition, source=uploaded.filename, author=current_user.email,
            note=f"uploaded {uploaded.filename}",
        )  # fmt: skip
    except NurtureError as exc:
        session.rollback()
        return _upload_refused([str(exc)])
    session.commit()
    flash(f"{saved.campaign.slug}: {saved.outcome.value} from {uploaded.filename}.", "success")
    return redirect(url_for("campaigns.show", slug=saved.campaign.slug), code=303)


def _upload_refused(errors: list[str]) -> ResponseReturnValue:
    get_session().rollback()
    return _new_page({"start": "upload"}, errors={"file": "\n".join(errors)}, status=400)


@blueprint.route("/<slug>/export.yaml", methods=["GET"])
@role_required(READ_ROLE)
def export(slug: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    return Response(
        export_campaign(campaign),
        mimetype="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{campaign.slug}.yaml"'},
    )



def _show(campaign: Campaign, *, status: int = 200, errors: list[str] | None = None) -> ResponseReturnValue:
    session = get_session()
    flow = flow_view(
        session,
        campaign,
        campaign.definition,
        period=requested_period(),
        href=lambda step_id: url_for("campaign_editor.step", slug=campaign.slug, step_id=step_id),
    )
    return render_template(
        "campaigns/show.html",
        campaign=campaign,
        has_draft=bool(drafts_of(session, [campaign.id])),
        flow=flow,
        counts=enrollment_counts(session, [campaign.id]).get(campaign.id, EnrollmentCounts()),
        states=list(EnrollmentState),
        steps=step_views(session, campaign),
        errors=errors or [],
        CampaignStatus=CampaignStatus,
    ), status


@blueprint.route("/<slug>", methods=["GET"])
@role_required(READ_ROLE)
def show(slug: str) -> ResponseReturnValue:
    return _show(campaign_or_404(slug))


@blueprint.route("/<slug>/<any(activate, pause, archive):action>", methods=["POST"])
@role_required(CAMPAIGN_CONTROL_ROLE)
def control(slug: str, action: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
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
