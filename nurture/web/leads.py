"""The lead pages: ``GET /leads`` (search, filters, pages) and ``GET /leads/<id>`` (profile, score breakdown,
stage history, timeline, enrollments), with ``POST /leads/<id>/stage`` and ``POST /leads/<id>/tags`` for
people whose role may change leads. Owner alert emails link to ``/leads/<id>``."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from nurture.errors import ValidationError
from nurture.leads.lifecycle import FUNNEL, LeadStatus, Stage, Temperature, parse_stage
from nurture.leads.models import Lead
from nurture.leads.queries import (
    PAGE_SIZES,
    LeadQuery,
    LeadSort,
    QueryInvalid,
    lead_enrollments,
    parse_lead_query,
    parse_page,
    search_leads,
    stage_periods,
    timeline_page,
)
from nurture.leads.service import PROFILE_FIELDS, add_tag, change_stage, remove_tag, stage_history
from nurture.scoring.points import breakdown
from nurture.scoring.store import current_config
from nurture.segments.service import list_segments
from nurture.web.auth import role_required
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.ui import LEAD_EDIT_ROLE, READ_ROLE, user_actor

blueprint = Blueprint("leads", __name__, url_prefix="/leads")
MAX_REASON_LENGTH = 500
TIMELINE_PAGE_SIZE = 25
STAGES = (*FUNNEL, Stage.LOST)
# Consent fields have a box of their own on the page.
PROFILE_SHOWN = tuple(name for name in PROFILE_FIELDS if not name.startswith("consent_"))


@blueprint.route("", methods=["GET"])
@role_required(READ_ROLE)
def index() -> ResponseReturnValue:
    session = get_session()
    problems: tuple[ValidationError, ...] = ()
    query = LeadQuery()
    result = None
    try:
        query = parse_lead_query(request.args)
        result = search_leads(session, get_clock(), query)
    except QueryInvalid as invalid:
        problems = invalid.problems
        query = invalid.usable or query
    return render_template(
        "leads/index.html",
        query=query,
        page_url=lambda number: url_for("leads.index", **query.as_params(page=number)),
        raw=request.args,
        result=result,
        problems=problems,
        stages=STAGES,
        temperatures=list(Temperature),
        statuses=list(LeadStatus),
        sorts=list(LeadSort),
        page_sizes=PAGE_SIZES,
        segments=list_segments(session),
    ), (400 if problems else 200)


def _lead_or_404(lead_id: int) -> Lead:
    lead = get_session().get(Lead, lead_id)
    if lead is None:
        abort(404)
    return lead


def _show(lead: Lead, *, status: int = 200, error: str | None = None) -> ResponseReturnValue:
    session = get_session()
    now = get_clock().now()
    problems: list[ValidationError] = []
    page = parse_page(request.args.get("activity_page", "").strip(), "activity_page", problems)
    if problems:
        status, error = 400, str(problems[0])
    config = current_config(session)
    return render_template(
        "leads/show.html",
        lead=lead,
        profile=[(name.replace("_", " "), getattr(lead, name)) for name in PROFILE_SHOWN],
        score=breakdown(session, config, lead.id, now),
        half_life_days=config.settings.half_life_days,
        periods=stage_periods(stage_history(session, lead), now),
        timeline=timeline_page(session, lead, page, TIMELINE_PAGE_SIZE),
        page_url=lambda number: url_for("leads.show", lead_id=lead.id, activity_page=number, _anchor="timeline"),
        enrollments=lead_enrollments(session, lead.id),
        stages=STAGES,
        error=error,
    ), status


@blueprint.route("/<int:lead_id>", methods=["GET"])
@role_required(READ_ROLE)
def show(lead_id: int) -> ResponseReturnValue:
    return _show(_lead_or_404(lead_id))


@blueprint.route("/<int:lead_id>/stage", methods=["POST"])
@role_required(LEAD_EDIT_ROLE)
def set_stage(lead_id: int) -> ResponseReturnValue:
    session = get_session()
    lead = _lead_or_404(lead_id)
    reason = " ".join(request.form.get("reason", "").split())
    try:
        stage = parse_stage(request.form.get("stage", ""))
    except ValueError as exc:
        return _show(lead, status=400, error=f"stage: {exc}")
    if len(reason) > MAX_REASON_LENGTH:
        return _show(lead, status=400, error=f"reason: longer than {MAX_REASON_LENGTH} characters")
    try:
        change = change_stage(session, get_clock(), lead, stage, reason=reason or "changed by hand", actor=user_actor())
    except ValidationError as exc:
        session.rollback()
        return _show(lead, status=400, error=str(exc))
    if change is None:
        flash(f"{lead.email} is already in stage {stage.label}.", "info")
    else:
        session.commit()
        flash(f"Moved {lead.email} to {stage.label}.", "success")
    return redirect(url_for("leads.show", lead_id=lead.id), code=303)


@blueprint.route("/<int:lead_id>/tags", methods=["POST"])
@role_required(LEAD_EDIT_ROLE)
def edit_tags(lead_id: int) -> ResponseReturnValue:
    session = get_session()
    lead = _lead_or_404(lead_id)
    action = request.form.get("action", "")
    name = request.form.get("tag", "").strip()
    try:
        if action == "add":
            changed = add_tag(session, get_clock(), lead, name, actor=user_actor())
            message = f"Tagged {name}." if changed else f"Already tagged {name}."
        elif action == "remove":
            changed = remove_tag(session, get_clock(), lead, name, actor=user_actor())
            message = f"Removed tag {name}." if changed else f"Not tagged {name}."
        else:
            return _show(lead, status=400, error="action: expected add or remove")
    except ValidationError as exc:
        session.rollback()
        return _show(lead, status=400, error=str(exc))
    if changed:
        session.commit()
    flash(message, "success" if changed else "info")
    return redirect(url_for("leads.show", lead_id=lead.id), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
