"""The campaign editor: the draft's settings and steps as forms, saved as you go, with undo."""

from __future__ import annotations

from flask import Blueprint, Flask

blueprint = Blueprint("campaign_editor", __name__, url_prefix="/campaigns")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
