"""The campaign editor: the draft's settings and steps as forms, saved as you go, with undo.

``GET /campaigns/<slug>/edit`` lists the steps of the draft (or of the published definition while there is
none) with the validator's messages; the settings and each step have their own form. Every change is saved
as the campaign's draft (``nurture.campaigns.drafts``), valid or not, naming the draft revision it was made
on: a change made on an older revision (a second tab, a colleague) is refused with the person's input kept.
The published definition changes only when the draft is published (``nurture.web.campaign_versions``).

With JavaScript, htmx posts each form as soon as a field changes and swaps in the save status and the field
messages only; without it the Save buttons post the same forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, abort, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.auth.models import Role
from nurture.campaigns import editing
from nurture.campaigns.describe import cap_in_words, reentry_in_words, step_summary, window_in_words
from nurture.campaigns.drafts import DraftConflict, discard_draft, find_draft, save_draft, undo_draft
from nurture.campaigns.formdata import (
    CONDITION_KINDS,
    ENTRY_KINDS,
    EXIT_KINDS,
    WAIT_MODES,
    WEEKDAY_LABELS,
    FormErrors,
    field_for_issue,
    settings_from_form,
    settings_to_form,
    step_from_form,
    step_to_form,
)
from nurture.campaigns.models import Campaign, CampaignDraft, CampaignStatus
from nurture.campaigns.validation import Issue, check_data, templates_in
from nurture.engine.models import Enrollment, EnrollmentState, is_live
from nurture.errors import ValidationError
from nurture.leads.lifecycle import Stage
from nurture.rendering.stored import StoredTemplateSource, template_loader
from nurture.segments.service import list_segments
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404, posted_revision
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir
from nurture.web.flow_view import flow_view, requested_period
from nurture.web.ui import CAMPAIGN_EDIT_ROLE, READ_ROLE, can

blueprint = Blueprint("campaign_editor", __name__, url_prefix="/campaigns")

STEP_TYPES = ("send", "wait", "branch", "wait_for", "set", "notify", "goto", "exit")
EMAIL_EVENTS = ("opened", "clicked", "replied")


# --- what every editor page needs --------------------------------------------------------------------------------



def _working_copy(campaign: Campaign) -> tuple[CampaignDraft | None, dict[str, Any], int]:
    """The draft (None while there is none), the data being edited and the revision an edit is made on."""
    draft = find_draft(get_session(), campaign)
    if draft is None:
        return None, dict(campaign.definition), 0
    return draft, dict(draft.definition), draft.revision


def _editable(campaign: Campaign) -> bool:
    return can(CAMPAIGN_EDIT_ROLE) and campaign.status is not CampaignStatus.ARCHIVED


def _issues(session: Session, data: Mapping[str, Any]) -> list[Issue]:
    checked = check_data(data, template_exists=templates_in(email_templates_dir()), session=session)
    return list(checked.issues)


def _issues_by_place(issues: list[Issue], data: Mapping[str, Any]) -> dict[int | None, dict[str, list[str]]]:
    """{step index or None for the settings: {field: [messages]}}."""
    places: dict[int | None, dict[str, list[str]]] = {}
    for issue in issues:
        step_index, field = field_for_issue(issue.path, data, issue.message)
        prefix = "" if issue.is_error else "warning: "
        places.setdefault(step_index, {}).setdefault(field, []).append(prefix + issue.message)
    return places


def _template_names(session: Session) -> list[str]:
    """What a send step may name: the email templates (files and stored), without layouts, partials and
    language variants, spelled as campaigns spell them (no ``.html``)."""
    loader = template_loader(email_templates_dir(), StoredTemplateSource.bound_to(session))
    names = []
    for name in loader.list_templates():
        if not name.endswith(".html") or name.count(".") > 1:
            continue
        parts = name.split("/")
        if any(part.startswith("_") for part in parts) or parts[0] in ("layouts", "partials"):
            continue
        names.append(name.removesuffix(".html"))
    return names


def _choices(session: Session, data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "step_types": STEP_TYPES,
        "step_ids": editing.step_ids(data),
        "send_step_ids": [step.get("id") for step in editing.steps_of(data) if step.get("type") == "send"],
        "stages": [stage.value for stage in Stage],
        "segments": [segment.slug for segment in list_segments(session)],
        "templates": _template_names(session),
        "entry_kinds": ENTRY_KINDS,
        "exit_kinds": EXIT_KINDS,
        "wait_modes": WAIT_MODES,
        "condition_kinds": CONDITION_KINDS,
        "weekdays": WEEKDAY_LABELS,
        "email_events": EMAIL_EVENTS,
    }


# --- the editor's home: the step list --------------------------------------------------------------------------


@blueprint.route("/<slug>/edit", methods=["GET"])
@role_required(READ_ROLE)
def edit(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    draft, data, revision = _working_copy(campaign)
    period = requested_period() if request.args.get("stats") != "off" else None
    issues = _issues(session, data)
    places = _issues_by_place(issues, data)
    steps = [
        {
            "index": index,
            "id": step.get("id"),
            "type": step.get("type"),
            "summary": step_summary(step),
            "issues": sum(len(messages) for messages in places.get(index, {}).values()),
            "referenced_by": editing.references_to(data, str(step.get("id"))),
        }
        for index, step in enumerate(editing.steps_of(data))
    ]
    return render_template(
        "campaign_editor/edit.html",
        campaign=campaign,
        draft=draft,
        data=data,
        revision=revision,
        steps=steps,
        issues=issues,
        places=places,
        editable=_editable(campaign),
        live=_live_counts(session, campaign),
        window=window_in_words(data.get("send_window")),
        cap=cap_in_words(data.get("frequency_cap")),
        reentry=reentry_in_words(data.get("reentry")),
        issue_place=lambda issue: field_for_issue(issue.path, data, issue.message),
        flow=flow_view(
            session, campaign, data, period=period, href=lambda step_id: url_for(".step", slug=slug, step_id=step_id)
        ),
        **_choices(session, data),
    )


def _live_counts(session: Session, campaign: Campaign) -> dict[str, int]:
    """Leads in flight per step of the published definition: what a publish would move."""
    rows = session.execute(
        select(Enrollment.step_id, func.count())
        .where(Enrollment.campaign_id == campaign.id, is_live(Enrollment.state))
        .group_by(Enrollment.step_id)
    )
    return {str(step_id): count for step_id, count in rows}


# --- settings --------------------------------------------------------------------------------------------------


@blueprint.route("/<slug>/edit/settings", methods=["GET", "POST"])
@role_required(READ_ROLE)
def settings(slug: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    _draft, data, revision = _working_copy(campaign)
    if request.method == "GET":
        return _settings_page(campaign, data, settings_to_form(data), revision)
    _require_editor(campaign)
    try:
        changed = settings_from_form(request.form, data)
    except FormErrors as invalid:
        errors = invalid.errors
        return _settings_page(campaign, data, request.form, posted_revision(), form_errors=errors, status=400)
    return _save(
        campaign,
        changed,
        on_conflict=lambda message: _settings_page(
            campaign, data, request.form, posted_revision(), conflict=message, status=409
        ),
        section_url=url_for(".settings", slug=campaign.slug),
        step_index=None,
    )


def _settings_page(
    campaign: Campaign,
    data: Mapping[str, Any],
    form: Mapping[str, Any],
    revision: int,
    *,
    form_errors: Mapping[str, str] | None = None,
    conflict: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = get_session()
    places = _issues_by_place(_issues(session, data), data).get(None, {})
    return render_template(
        "campaign_editor/settings.html",
        campaign=campaign,
        form=_FormView(form),
        revision=revision,
        field_errors=_merge(places, form_errors),
        conflict=conflict,
        editable=_editable(campaign),
        entry_rows=_row_numbers(form, "entry"),
        exit_rows=_row_numbers(form, "exit"),
        **_choices(session, data),
    ), status


# --- one step --------------------------------------------------------------------------------------------------


@blueprint.route("/<slug>/edit/steps/<step_id>", methods=["GET", "POST"])
@role_required(READ_ROLE)
def step(slug: str, step_id: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    _draft, data, revision = _working_copy(campaign)
    found = editing.find_step(data, step_id)
    if found is None:
        abort(404)
    index, current = found
    if request.method == "GET":
        return _step_page(campaign, data, index, step_to_form(current), revision)
    _require_editor(campaign)
    try:
        changed = editing.replace_step(data, step_id, step_from_form(request.form))
    except FormErrors as invalid:
        errors = invalid.errors
        return _step_page(campaign, data, index, request.form, posted_revision(), form_errors=errors, status=400)
    except ValidationError as invalid:
        errors = {invalid.where or "id": invalid.message}
        return _step_page(campaign, data, index, request.form, posted_revision(), form_errors=errors, status=400)
    new_id = editing.steps_of(changed)[index].get("id") or step_id
    return _save(
        campaign,
        changed,
        on_conflict=lambda message: _step_page(
            campaign, data, index, request.form, posted_revision(), conflict=message, status=409
        ),
        section_url=url_for(".step", slug=campaign.slug, step_id=new_id),
        step_index=index,
    )


def _step_page(
    campaign: Campaign,
    data: Mapping[str, Any],
    index: int,
    form: Mapping[str, Any],
    revision: int,
    *,
    form_errors: Mapping[str, str] | None = None,
    conflict: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = get_session()
    places = _issues_by_place(_issues(session, data), data).get(index, {})
    current = editing.steps_of(data)[index]
    return render_template(
        "campaign_editor/step.html",
        campaign=campaign,
        step_id=current.get("id"),
        step_type=current.get("type"),
        index=index,
        form=_FormView(form),
        revision=revision,
        field_errors=_merge(places, form_errors),
        conflict=conflict,
        editable=_editable(campaign),
        variant_rows=_row_numbers(form, "variant"),
        other_step_ids=[other for other in editing.step_ids(data) if other != current.get("id")],
        **_choices(session, data),
    ), status


# --- the step list: insert, move, delete; undo and discard -----------------------------------------------------


@blueprint.route("/<slug>/edit/steps", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def insert(slug: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    _require_editor(campaign)
    _draft, data, _revision = _working_copy(campaign)
    after = request.form.get("after") or None
    try:
        changed = editing.insert_step(
            data, request.form.get("type", ""), after=after, step_id=request.form.get("id") or None
        )
    except ValidationError as invalid:
        return _back_with_error(campaign, f"{invalid.where}: {invalid.message}" if invalid.where else invalid.message)
    new_id = editing.steps_of(changed)[_inserted_index(data, after)].get("id")
    return _save(
        campaign,
        changed,
        on_conflict=lambda message: _back_with_error(campaign, message),
        section_url=url_for(".step", slug=campaign.slug, step_id=new_id),
        step_index=None,
        redirect_to=url_for(".step", slug=campaign.slug, step_id=new_id),
    )


def _inserted_index(data: Mapping[str, Any], after: str | None) -> int:
    if after is None:
        return 0
    found = editing.find_step(data, after)
    return found[0] + 1 if found else 0


@blueprint.route("/<slug>/edit/steps/<step_id>/move", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def move(slug: str, step_id: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    _require_editor(campaign)
    _draft, data, _revision = _working_copy(campaign)
    direction = request.form.get("direction")
    if direction not in ("up", "down"):
        return _back_with_error(campaign, "direction: choose up or down")
    try:
        changed = editing.move_step(data, step_id, -1 if direction == "up" else 1)
    except ValidationError as invalid:
        return _back_with_error(campaign, invalid.message)
    return _save(
        campaign,
        changed,
        on_conflict=lambda message: _back_with_error(campaign, message),
        section_url=url_for(".edit", slug=campaign.slug),
        step_index=None,
        redirect_to=url_for(".edit", slug=campaign.slug) + f"#step-{step_id}",
    )


@blueprint.route("/<slug>/edit/steps/<step_id>/delete", methods=["GET", "POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def delete(slug: str, step_id: str) -> ResponseReturnValue:
    campaign = campaign_or_404(slug)
    _require_editor(campaign)
    _draft, data, revision = _working_copy(campaign)
    if editing.find_step(data, step_id) is None:
        abort(404)
    if request.method == "GET":
        return render_template(
            "campaign_editor/delete.html",
            campaign=campaign,
            step_id=step_id,
            revision=revision,
            referenced_by=editing.references_to(data, step_id),
            waiting=_live_counts(get_session(), campaign).get(step_id, 0),
        )
    changed = editing.delete_step(data, step_id)
    return _save(
        campaign,
        changed,
        on_conflict=lambda message: _back_with_error(campaign, message),
        section_url=url_for(".edit", slug=campaign.slug),
        step_index=None,
        redirect_to=url_for(".edit", slug=campaign.slug),
        done=f"Deleted step {step_id} from the draft.",
    )


@blueprint.route("/<slug>/edit/undo", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def undo(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    _require_editor(campaign)
    try:
        draft = undo_draft(session, get_clock(), campaign, revision=posted_revision(), author=current_user.email)
    except DraftConflict as conflict:
        session.rollback()
        return _back_with_error(campaign, str(conflict))
    session.commit()
    flash(f"Undone: the draft is back as it was (revision {draft.revision}).", "success")
    return redirect(url_for(".edit", slug=campaign.slug), code=303)


@blueprint.route("/<slug>/edit/discard", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def discard(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    _require_editor(campaign)
    draft = find_draft(session, campaign)
    if draft is not None and draft.revision != posted_revision():
        return _back_with_error(campaign, str(DraftConflict(draft, posted_revision())))
    discard_draft(session, campaign)
    session.commit()
    flash("The draft was discarded: the editor shows the published version again.", "success")
    return redirect(url_for(".edit", slug=campaign.slug), code=303)


# --- saving ------------------------------------------------------------------------------------------------------


def _require_editor(campaign: Campaign) -> None:
    if not can(CAMPAIGN_EDIT_ROLE):
        abort(403)
    if campaign.status is CampaignStatus.ARCHIVED:
        message = f"{campaign.slug} is archived: archived campaigns stay as they are."
        abort(make_response(render_template("error.html", code=400, title="Archived", message=message), 400))



def _save(
    campaign: Campaign,
    data: dict[str, Any],
    *,
    on_conflict: Any,
    section_url: str,
    step_index: int | None,
    redirect_to: str | None = None,
    done: str = "Saved to the draft.",
) -> ResponseReturnValue:
    session = get_session()
    try:
        draft = save_draft(
            session, get_clock(), campaign, data, revision=posted_revision(), author=current_user.email
        )
    except DraftConflict as conflict:
        session.rollback()
        if _is_htmx():
            return _autosave_status(campaign, None, conflict=str(conflict))
        return on_conflict(str(conflict))
    session.commit()
    if _is_htmx():
        return _autosave_status(campaign, draft, step_index=step_index)
    flash(done, "success")
    return redirect(redirect_to or section_url, code=303)


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _autosave_status(
    campaign: Campaign, draft: CampaignDraft | None, *, step_index: int | None = None, conflict: str | None = None
) -> ResponseReturnValue:
    """htmx's answer to a save as you go: the new revision, the status line and each field's messages,
    swapped in out of band so that the field being typed in keeps its focus."""
    places: dict[str, list[str]] = {}
    if draft is not None:
        places = _issues_by_place(_issues(get_session(), draft.definition), draft.definition).get(step_index, {})
    fields = list(request.form.keys())
    return render_template(
        "campaign_editor/_autosave.html",
        campaign=campaign,
        draft=draft,
        conflict=conflict,
        field_errors=places,
        fields=fields,
    )


def _back_with_error(campaign: Campaign, message: str) -> ResponseReturnValue:
    flash(f"Not saved: {message}", "error")
    return redirect(url_for(".edit", slug=campaign.slug), code=303)


# --- form helpers ------------------------------------------------------------------------------------------------


class _FormView:
    """Form values for templates, from our own fields or from what was posted (lists for checkboxes)."""

    def __init__(self, form: Mapping[str, Any]) -> None:
        self._form = form

    def get(self, name: str) -> str:
        value = self._form.get(name)
        if isinstance(value, list):
            return value[0] if value else ""
        return "" if value is None else str(value)

    def getlist(self, name: str) -> list[str]:
        getlist = getattr(self._form, "getlist", None)
        if getlist is not None:
            return list(getlist(name))
        value = self._form.get(name)
        return list(value) if isinstance(value, list) else ([] if value in (None, "") else [str(value)])


def _row_numbers(form: Mapping[str, Any], prefix: str) -> list[int]:
    numbers = sorted(
        {int(key.split("-")[1]) for key in form if key.startswith(f"{prefix}-") and key.split("-")[1].isdigit()}
    )
    return numbers or [0]


def _merge(places: Mapping[str, list[str]], form_errors: Mapping[str, str] | None) -> dict[str, list[str]]:
    merged = {field: list(messages) for field, messages in places.items()}
    for field, message in (form_errors or {}).items():
        merged.setdefault(field, []).insert(0, message)
    return merged


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
    app.jinja_env.globals.setdefault("Role", Role)
    app.jinja_env.globals.setdefault("EnrollmentState", EnrollmentState)
