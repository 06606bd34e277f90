"""The campaign report: step funnel, A/B variants, conversions over time, CSV export."""

from __future__ import annotations

from flask import Blueprint, Flask

blueprint = Blueprint("campaign_report", __name__, url_prefix="/campaigns")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
