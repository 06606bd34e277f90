"""``GET /reports``: the sales-process reports of a period (funnel, lost leads, time in stage, leads created
each month and how far they got) for any signed-in role. The period comes from the query string (``from``,
``to``, ``cohort``); bad dates get a message and a 400."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request
from flask.typing import ResponseReturnValue

from nurture.errors import ValidationError
from nurture.leads.funnel import (
    format_rate,
    funnel_report,
    lost_report,
    month_cohorts,
    parse_period,
    velocity_report,
)
from nurture.leads.lifecycle import FUNNEL
from nurture.web.auth import role_required
from nurture.web.clock import get_clock
from nurture.web.database import get_session
from nurture.web.ui import READ_ROLE

blueprint = Blueprint("reports", __name__, url_prefix="/reports")
REASONS_SHOWN = 20
MAX_DATE_INPUT = 40


@blueprint.route("", methods=["GET"])
@role_required(READ_ROLE)
def index() -> ResponseReturnValue:
    now = get_clock().now()
    raw_from = request.args.get("from", "")[:MAX_DATE_INPUT]
    raw_to = request.args.get("to", "")[:MAX_DATE_INPUT]
    cohort = request.args.get("cohort", "") in {"1", "on", "true", "yes"}
    try:
        period = parse_period(raw_from, raw_to, now.date())
    except ValidationError as problem:
        return render_template(
            "reports/index.html", raw_from=raw_from, raw_to=raw_to, cohort=cohort, problem=problem, period=None
        ), 400
    session = get_session()
    lost = lost_report(session, period, now)
    return render_template(
        "reports/index.html",
        raw_from=raw_from or period.first_day.isoformat(),
        raw_to=raw_to or period.last_day.isoformat(),
        cohort=cohort,
        problem=None,
        period=period,
        now=now,
        funnel=funnel_report(session, period, now, cohort=cohort),
        lost=lost,
        reasons=lost.by_reason[:REASONS_SHOWN],
        other_reasons=lost.by_reason[REASONS_SHOWN:],
        velocity=velocity_report(session, period, now),
        cohorts=month_cohorts(session, period, now),
        later_stages=FUNNEL[1:],
        rate=format_rate,
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
