"""Test mode: pick a lead, see the dated path it would take through the campaign (the engine's own
simulation, rolled back) with each email rendered as that lead would get it, and send any step's email to
yourself, marked [TEST] and untracked. Nothing is stored about the lead and nothing is sent to it.

``?version=draft`` tests the campaign's draft instead of the published definition, when the draft passes the
validator. ``/test/preview`` serves one email's HTML alone, under a policy that lets it run nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CampaignDefinition, SendStep, template_file
from nurture.campaigns.drafts import find_draft
from nurture.campaigns.models import Campaign
from nurture.campaigns.validation import Issue, check_data, templates_in
from nurture.delivery.backends import make_mailer
from nurture.delivery.mailer import Outcome
from nurture.delivery.settings import BackendName
from nurture.engine.context import reading_stored_templates, tracking_urls
from nurture.engine.review import excluded_from_entry, preview_path, render_message
from nurture.errors import NurtureError
from nurture.inputs import first_unstorable
from nurture.leads.models import Lead
from nurture.leads.queries import LeadQuery, search_leads
from nurture.leads.service import find_lead
from nurture.rendering.proofs import send_proof
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import email_templates_dir, get_settings
from nurture.web.tracking import get_tracking
from nurture.web.ui import CAMPAIGN_EDIT_ROLE, READ_ROLE, can

blueprint = Blueprint("campaign_test", __name__, url_prefix="/campaigns")
DEFAULT_DAYS = 60
# Two years: longer than any starter campaign's path, and a bound on the simulation's work.
MAX_DAYS = 730
MATCHES = 20
DRAFT = "draft"
# The previewed email may show its images and styles and nothing else: no script, no form, no plugin, no
# navigation of the page that frames or opens it.
PREVIEW_POLICY = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'; sandbox"
)


class BadRequest(NurtureError):
    """A query or form field that names nothing this page can use: a 400 (or 404) with the message."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tested:
    """What test mode runs: the published definition, or the draft when asked for and valid."""

    definition: CampaignDefinition
    is_draft: bool
    has_draft: bool
    # Why the draft cannot be tested (its first error), or None when it can.
    draft_problem: str | None = None


@blueprint.errorhandler(BadRequest)
def _bad_request(error: BadRequest) -> ResponseReturnValue:
    get_session().rollback()
    title = "Not found" if error.status == 404 else "Not understood"
    return render_template("error.html", code=error.status, title=title, message=str(error)), error.status


def _checked_input(values: dict[str, str]) -> None:
    problem = first_unstorable(values.items())
    if problem is not None:
        raise BadRequest(str(problem))


def _days(text: str) -> int:
    if not text:
        return DEFAULT_DAYS
    if re.fullmatch(r"[0-9]{1,4}", text) is None or not 1 <= int(text) <= MAX_DAYS:
        raise BadRequest(f"days: give a whole number of days from 1 to {MAX_DAYS} (not {text[:20]!r})")
    return int(text)


def _lead(session: Session, email: str, *, status: int) -> Lead:
    lead = find_lead(session, email)
    if lead is None:
        raise BadRequest(f"lead: no lead with the email {email[:320]!r}", status=status)
    return lead


def _tested(session: Session, campaign: Campaign, version: str) -> Tested:
    if version not in ("", DRAFT):
        raise BadRequest(f"version: {version[:20]!r} is neither the published version nor {DRAFT!r}")
    published = campaign.parsed
    draft = find_draft(session, campaign)
    if draft is None:
        if version == DRAFT:
            raise BadRequest(f"version: {campaign.slug} has no draft to test")
        return Tested(published, is_draft=False, has_draft=False)
    checked = check_data(draft.definition, template_exists=templates_in(email_templates_dir()), session=session)
    errors: list[Issue] = [issue for issue in checked.issues if issue.is_error]
    if checked.definition is None or errors:
        problem = str(errors[0]) if errors else "it does not parse"
        if version == DRAFT:
            raise BadRequest(f"version: the draft cannot be tested until it passes validation: {problem}")
        return Tested(published, is_draft=False, has_draft=True, draft_problem=problem)
    if version == DRAFT:
        return Tested(checked.definition, is_draft=True, has_draft=True)
    return Tested(published, is_draft=False, has_draft=True)


def _send_steps(definition: CampaignDefinition) -> list[str]:
    return [step.id for step in definition.steps if isinstance(step, SendStep)]


@blueprint.route("/<slug>/test", methods=["GET"])
@role_required(READ_ROLE)
def test_mode(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    _checked_input(dict(request.args.items()))
    search, email, version = (request.args.get(key, "") for key in ("q", "lead", "version"))
    days = _days(request.args.get("days", ""))
    tested = _tested(session, campaign, version)
    matches: list[Lead] = []
    if search:
        found = search_leads(session, get_clock(), LeadQuery(search=search, per_page=MATCHES))
        matches = [row.lead for row in found.rows]
    lead = _lead(session, email, status=404) if email else None
    preview = None
    excluded = lead is not None and excluded_from_entry(session, campaign, lead)
    if lead is not None:
        try:
            preview = preview_path(
                session,
                get_clock(),
                get_tracking().ctx,
                campaign,
                lead,
                days=days,
                definition=tested.definition if tested.is_draft else None,
            )
        except NurtureError as exc:
            raise BadRequest(str(exc)) from None
        finally:
            # The simulation ran in this request's transaction: nothing of it may stay.
            session.rollback()
    return render_template(
        "campaign_test/test.html",
        campaign=campaign,
        search=search,
        matches=matches,
        lead=lead,
        days=days,
        max_days=MAX_DAYS,
        preview=preview,
        excluded=excluded,
        tested=tested,
        version=DRAFT if tested.is_draft else "",
        can_send=can(CAMPAIGN_EDIT_ROLE),
        send_steps=_send_steps(tested.definition),
    )


@blueprint.route("/<slug>/test/preview", methods=["GET"])
@role_required(READ_ROLE)
def preview(slug: str) -> ResponseReturnValue:
    """One email's HTML as the lead (or, without ``lead``, a made-up lead) would get it, untracked."""
    session = get_session()
    campaign = campaign_or_404(slug)
    _checked_input(dict(request.args.items()))
    step_id, variant, email, version = (request.args.get(key, "") for key in ("step", "variant", "lead", "version"))
    tested = _tested(session, campaign, version)
    lead = _lead(session, email, status=404) if email else None
    rendered = render_message(
        session, get_clock(), get_tracking().ctx, campaign, tested.definition, step_id, variant or None, lead
    )
    if rendered is None:
        raise BadRequest(f"step: {step_id[:80]!r} (variant {variant[:40]!r}) is not an email of {campaign.slug}")
    if rendered.error:
        raise BadRequest(f"This email cannot be made for this lead: {rendered.error}")
    response = Response(rendered.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.route("/<slug>/test/send", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def send_to_me(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    _checked_input(dict(request.form.items()))
    step_id, variant, email, version = (request.form.get(key, "") for key in ("step", "variant", "lead", "version"))
    tested = _tested(session, campaign, version)
    lead = _lead(session, email, status=400)
    ctx = get_tracking().ctx
    email_preview = render_message(
        session, get_clock(), ctx, campaign, tested.definition, step_id, variant or None, lead
    )
    if email_preview is None:
        raise BadRequest(f"step: {step_id[:80]!r} (variant {variant[:40]!r}) is not an email of {campaign.slug}")
    settings = get_settings()
    back = redirect(url_for(".test_mode", slug=campaign.slug, lead=lead.email, version=version or None), code=303)
    if email_preview.error:
        session.rollback()
        flash(f"Not sent: this email cannot be made for {lead.email}: {email_preview.error}", "error")
        return back
    try:
        with reading_stored_templates(session):  # a stored template overrides its file, as when the engine sends
            proof = send_proof(
                session,
                get_clock(),
                renderer=ctx.renderer,
                template=ctx.renderer.loader.localized(template_file(email_preview.template), lead.locale),
                to_address=current_user.email,
                lead=lead,
                sender=ctx.sender,
                urls=tracking_urls(settings),
                delivery=settings.delivery,
                mailer=make_mailer(settings.delivery, get_clock()),
                subject=email_preview.subject,
            )
    except NurtureError as exc:
        flash(f"Not sent: {exc}", "error")
        return back
    finally:
        # A proof stores nothing; whatever the gate's reads began ends here.
        session.rollback()
    result = proof.result
    if result.outcome is not Outcome.SENT:
        flash(f"Not sent ({result.outcome.value.replace('_', ' ')}): {result.reason}", "error")
        return back
    via = f"the {settings.delivery.backend.value} backend"
    if settings.delivery.backend is BackendName.FILE and result.provider_message_id:
        via += f", written as {settings.delivery.outbox_dir / result.provider_message_id}"
    elif result.provider_message_id:
        via += f" ({result.provider_message_id})"
    flash(
        f"Sent “{proof.email.subject}” to {proof.email.to_address} (you) via {via}, filled with {lead.email}'s data; "
        "not tracked. Nothing was sent to the lead.",
        "success",
    )
    return back


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
