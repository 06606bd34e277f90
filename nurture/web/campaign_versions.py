"""Versions of a campaign: publish a draft (with what changes for leads in flight), history, diff, restore."""

from __future__ import annotations

from flask import Blueprint, Flask

blueprint = Blueprint("campaign_versions", __name__, url_prefix="/campaigns")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
