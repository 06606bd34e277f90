"""Test mode: the path one lead would take through a campaign, each email rendered for that lead, test sends."""

from __future__ import annotations

from flask import Blueprint, Flask

blueprint = Blueprint("campaign_test", __name__, url_prefix="/campaigns")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
