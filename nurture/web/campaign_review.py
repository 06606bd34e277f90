"""The review before activating a campaign: validation, templates rendered, entry count and the enrol choice."""

from __future__ import annotations

from flask import Blueprint, Flask

blueprint = Blueprint("campaign_review", __name__, url_prefix="/campaigns")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
