"""The Flask application factory (``create_app(test_config)``), one ``init_app`` per extension."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from nurture.auth.sessions import SESSION_LIFETIME
from nurture.config import Settings, instance_directory, load_settings
from nurture.web.extensions import csrf


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("NURTURE_SETTINGS", None) or load_settings()
    # The settings' instance folder (NURTURE_INSTANCE_PATH), never Flask's guess: for an installed package
    # that is a folder inside the Python prefix.
    instance_path = settings.instance_path or instance_directory()
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=False,
                template_folder="web/templates", static_folder="web/static")

    app.config.update(
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        NURTURE_SETTINGS=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Flask refuses older session cookies; nurture.auth.sessions also ends sessions earlier (idle, logout).
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_SECURE=settings.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
    )
    app.config.update(test_config)
    logging.basicConfig(level=settings.log_level)
    # APScheduler logs every job run at INFO: several lines a second that drown the request log.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))

    from nurture.web import (
        api,
        auth,
        campaign_editor,
        campaign_report,
        campaign_review,
        campaign_test,
        campaign_versions,
        campaigns,
        clock,
        database,
        edges,
        home,
        leads,
        reports,
        scheduler,
        tracking,
        ui,
    )

    edges.init_app(app)
    database.init_app(app)
    clock.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    home.init_app(app)
    ui.init_app(app)
    leads.init_app(app)
    campaigns.init_app(app)
    for campaign_feature in (campaign_editor, campaign_versions, campaign_review, campaign_test, campaign_report):
        campaign_feature.init_app(app)
    reports.init_app(app)
    tracking.init_app(app)
    api.init_app(app)
    _register_error_pages(app)
    scheduler.init_app(app)
    return app


def _register_error_pages(app: Flask) -> None:
    def render_error(code: int, title: str, message: str) -> ResponseReturnValue:
        return render_template("error.html", code=code, title=title, message=message), code

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> ResponseReturnValue:
        return render_error(400, "Form expired", f"{error.description} Reload the page and try again.")

    @app.errorhandler(403)
    def _forbidden(_error: Exception) -> ResponseReturnValue:
        return render_error(403, "Not allowed", "Your role does not allow this page.")

    @app.errorhandler(404)
    def _not_found(_error: Exception) -> ResponseReturnValue:
        return render_error(404, "Not found", "There is nothing at this address.")

    @app.errorhandler(500)
    def _server_error(_error: Exception) -> ResponseReturnValue:
        return render_error(500, "Something went wrong", "The error was logged.")
