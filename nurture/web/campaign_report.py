"""The campaign report: the step funnel with counts and rates, the flow with its counts, A/B variants side by
side, conversions over time (a chart with its numbers as a table), all for a chosen period, and the funnel as
a CSV file written by the formula-safe writer."""

from __future__ import annotations

import io

from flask import Blueprint, Flask, Response, render_template
from flask.typing import ResponseReturnValue

from nurture import csvfile
from nurture.campaigns.editing import steps_of
from nurture.campaigns.models import Campaign
from nurture.campaigns.reports import StepCounts, conversions_by_day, step_counts, variant_counts
from nurture.web.auth import role_required
from nurture.web.campaign_lookup import campaign_or_404
from nurture.web.database import get_session
from nurture.web.flow_view import flow_view, requested_period
from nurture.web.ui import READ_ROLE

blueprint = Blueprint("campaign_report", __name__, url_prefix="/campaigns")
FUNNEL_COLUMNS = ("step", "type", "entered", "sent", "delivered", "opened", "clicked", "open rate", "click rate")




def funnel_rows(campaign: Campaign, counts: dict[str, StepCounts]) -> list[dict[str, object]]:
    rows = []
    for step in steps_of(campaign.definition):
        found = counts.get(str(step.get("id")), StepCounts())
        sent = found.sent
        rows.append(
            {
                "step": step.get("id"),
                "type": step.get("type"),
                "entered": found.entered,
                "sent": sent,
                "delivered": found.delivered,
                "opened": found.opened,
                "clicked": found.clicked,
                "open rate": found.opened / sent if sent else None,
                "click rate": found.clicked / sent if sent else None,
            }
        )
    return rows


@blueprint.route("/<slug>/report", methods=["GET"])
@role_required(READ_ROLE)
def report(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    period = requested_period()
    counts = step_counts(session, campaign, period.bounds)
    conversions = conversions_by_day(session, campaign, period.bounds)
    return render_template(
        "campaign_report/report.html",
        campaign=campaign,
        period=period,
        funnel=funnel_rows(campaign, counts),
        variants=variant_counts(session, campaign, period.bounds),
        conversions=conversions,
        most=max((count for _day, count in conversions), default=0),
        flow=flow_view(session, campaign, campaign.definition, period=period),
    )


@blueprint.route("/<slug>/report.csv", methods=["GET"])
@role_required(READ_ROLE)
def report_csv(slug: str) -> ResponseReturnValue:
    session = get_session()
    campaign = campaign_or_404(slug)
    period = requested_period()
    stream = io.StringIO(newline="")
    writer = csvfile.writer(stream)
    writer.writerow(FUNNEL_COLUMNS)
    for row in funnel_rows(campaign, step_counts(session, campaign, period.bounds)):
        writer.writerow(
            [f"{row[column]:.4f}" if isinstance(row[column], float) else row[column] for column in FUNNEL_COLUMNS]
        )
    name = f"{campaign.slug}-{period.first_day}-{period.last_day}.csv"
    return Response(
        stream.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
