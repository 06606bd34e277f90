from __future__ import annotations

from flask import Blueprint, Flask, render_template
from flask.typing import ResponseReturnValue

from nurture.leads.lifecycle import Temperature
from nurture.leads.reports import stage_temperature_counts
from nurture.segments.service import list_segments_with_counts
from nurture.web.clock import get_clock
from nurture.web.database import get_session

blueprint = Blueprint("home", __name__)


@blueprint.route("/")
def index() -> ResponseReturnValue:
    session = get_session()
    return render_template(
        "home.html",
        counts=stage_temperature_counts(session),
        temperatures=list(Temperature),
        segments=list_segments_with_counts(session, get_clock()),
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
