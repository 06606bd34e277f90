"""What the app factory sets up and every layer above the domain reads from the running app: the CSRF
extension, the settings and the email template folder. Here rather than in ``nurture.app`` so that web
modules and CLI commands never import the factory that imports them."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_wtf.csrf import CSRFProtect

from nurture.config import Settings
from nurture.rendering.sources import default_template_directory

csrf = CSRFProtect()


def get_settings() -> Settings:
    return current_app.config["NURTURE_SETTINGS"]


def email_templates_dir(given: Path | None = None) -> Path:
    """Where email template files live: ``given`` (a --templates option), else NURTURE_EMAIL_TEMPLATES, else
    the shipped ``nurture/email_templates/``."""
    return given or get_settings().email_templates or default_template_directory()
