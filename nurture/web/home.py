"""The dashboard: active leads per stage and temperature, and the segments with their live counts. Every count
links to the lead list filtered to the leads it counts."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, url_for
from flask.typing import ResponseReturnValue

from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.queries import LeadQuery
from nurture.leads.reports import stage_temperature_counts
from nurture.segments.service import list_segments_with_counts
from nurture.web.clock import get_clock
from nurture.web.database import get_session

blueprint = Blueprint("home", __name__)


def active_leads_url(stage: Stage | None = None, temperature: Temperature | None = None) -> str:
    """The lead list of the active leads in ``stage`` and ``temperature`` (either may be left open): the table
    counts active leads only, so the list it links to is filtered on the status too."""
    query = LeadQuery(stage=stage, temperature=temperature, status=LeadStatus.ACTIVE)
    return url_for("leads.index", **query.as_params())


def segment_leads_url(slug: str) -> str:
    return url_for("leads.index", **LeadQuery(segment=slug).as_params())


@blueprint.route("/")
def index() -> ResponseReturnValue:
    session = get_session()
    return render_template(
        "home.html",
        counts=stage_temperature_counts(session),
        temperatures=list(Temperature),
        segments=list_segments_with_counts(session, get_clock()),
        active_leads_url=active_leads_url,
        segment_leads_url=segment_leads_url,
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
