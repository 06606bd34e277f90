"""Test mode: pick a lead, see the dated path it would take through the campaign (the engine's own
simulation, rolled back) with each email rendered as that lead would get it, and send any step's email to
yourself, marked [TEST] and untracked. Nothing is stored about the lead and nothing is sent to it."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from nurture.campaigns.definition import CampaignDefinition, SendStep, template_file
from nurture.campaigns.models import Campaign
from nurture.delivery.backends import make_mailer
from nurture.engine.context import sender_view, tracking_urls
from nurture.engine.review import preview_path
from nurture.errors import NurtureError
from nurture.inputs import first_unstorable
from nurture.leads.queries import LeadQuery, search_leads
from nurture.leads.service import find_lead
from nurture.rendering.proofs import send_proof
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.extensions import get_settings
from nurture.web.tracking import get_tracking
from nurture.web.ui import CAMPAIGN_EDIT_ROLE, READ_ROLE, can

blueprint = Blueprint("campaign_test", __name__, url_prefix="/campaigns")
DEFAULT_DAYS = 60
MAX_DAYS = 730
MATCHES = 20



def _bad(message: str) -> ResponseReturnValue:
    return render_template("error.html", code=400, title="Not understood", message=message), 400


@blueprint.route("/<slug>/test", methods=["GET"])
@role_required(READ_ROLE)
def test_mode(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    search, email, days_text = (request.args.get(key, "") for key in ("q", "lead", "days"))
    if not days_text.isdigit() and days_text:
        return _bad(f"days: {days_text[:20]!r} is not a number of days")
    days = int(days_text) if days_text else DEFAULT_DAYS
    if not 1 <= days <= MAX_DAYS:
        return _bad(f"days: give a number from 1 to {MAX_DAYS}")
    matches = []
    if search:
        found = search_leads(session, get_clock(), LeadQuery(search=search, per_page=MATCHES))
        matches = [row.lead for row in found.rows]
    lead = find_lead(session, email) if email else None
    if email and lead is None:
        return render_template("error.html", code=404, title="No such lead", message=f"lead: no lead {email!r}"), 404
    preview = None
    if lead is not None:
        try:
            preview = preview_path(
                session, get_clock(), get_tracking().ctx, campaign, lead, days=days, sender=sender_view(get_settings())
            )
        except NurtureError as exc:
            session.rollback()
            return _bad(str(exc))
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
        preview=preview,
        can_send=can(CAMPAIGN_EDIT_ROLE),
        send_steps=_send_steps(campaign),
    )


def _send_steps(campaign: Campaign) -> dict[str, list[tuple[str | None, str]]]:
    """Send step id -> its (variant, template) pairs."""
    definition = CampaignDefinition.from_data(campaign.definition)
    return {
        step.id: [(message.variant, message.template) for message in step.messages()]
        for step in definition.steps
        if isinstance(step, SendStep)
    }


@blueprint.route("/<slug>/test/send", methods=["POST"])
@role_required(CAMPAIGN_EDIT_ROLE)
def send_to_me(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    problem = first_unstorable(request.form.items())
    if problem is not None:
        return _bad(str(problem))
    step_id, variant, email = (request.form.get(key, "") for key in ("step", "variant", "lead"))
    messages = dict(_send_steps(campaign).get(step_id, []))
    if not messages or (variant or None) not in messages:
        return _bad(f"step: {step_id!r} is not a send step of {campaign.slug} (with variant {variant!r})")
    lead = find_lead(session, email)
    if lead is None:
        return _bad(f"lead: no lead {email!r}")
    settings = get_settings()
    try:
        proof = send_proof(
            session,
            get_clock(),
            renderer=get_tracking().ctx.renderer,
            template=template_file(messages[variant or None]),
            to_address=current_user.email,
            lead=lead,
            sender=sender_view(settings),
            urls=tracking_urls(settings),
            delivery=settings.delivery,
            mailer=make_mailer(settings.delivery, get_clock()),
        )
    except NurtureError as exc:
        session.rollback()
        flash(f"Not sent: {exc}", "error")
    else:
        session.rollback()
        sent = f"Sent “{proof.email.subject}” to {proof.email.to_address}"
        flash(f"{sent}, filled with {lead.email}'s data; not tracked.", "success")
    return redirect(url_for(".test_mode", slug=campaign.slug, lead=lead.email), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
