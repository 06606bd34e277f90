"""What the lead and campaign pages share: template filters for times and durations, the signed-in user as an
actor, and the roles the pages need."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask_login import current_user
from markupsafe import Markup

from nurture.auth.models import Role
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor

# Reading needs any role; changing a lead is sales work; running campaigns is marketing work.
READ_ROLE = Role.VIEWER
LEAD_EDIT_ROLE = Role.SALES
CAMPAIGN_CONTROL_ROLE = Role.MARKETER
# Designing campaigns (drafts, publish, versions, test sends) is the same marketing work.
CAMPAIGN_EDIT_ROLE = Role.MARKETER


def user_actor() -> Actor:
    """The signed-in user, as recorded in stage histories and timelines."""
    return Actor(ActorKind.USER, current_user.email)


def can(role: Role) -> bool:
    return bool(current_user.is_authenticated and current_user.role.allows(role))


def format_utc(value: datetime) -> str:
    """``2026-01-15 13:00 UTC``: a time as pages and reports show it."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def format_time(value: datetime | None) -> Markup:
    """A ``<time>`` element (kept on one line by the stylesheet), or a dash for no time."""
    if value is None:
        return Markup("—")
    return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), format_utc(value))


def format_value(value: Any) -> str:
    """A setting of a campaign step as one line: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def format_duration(value: timedelta | None) -> str:
    """Two units at most: ``3d 4h``, ``5h 12m``, ``7m``; a dash for no duration."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def init_app(app: Flask) -> None:
    app.add_template_filter(format_time, "time")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(format_value, "setting")
    app.add_template_global(can, "can")
    app.add_template_global(Role, "Role")
