"""What the lead and campaign pages share: template filters for times and durations, the signed-in user as an
actor, and the roles the pages need."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from flask_login import current_user

from nurture.auth.models import Role
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor

# Reading needs any role; changing a lead is sales work; running campaigns is marketing work.
READ_ROLE = Role.VIEWER
LEAD_EDIT_ROLE = Role.SALES
CAMPAIGN_CONTROL_ROLE = Role.MARKETER


def user_actor() -> Actor:
    """The signed-in user, as recorded in stage histories and timelines."""
    return Actor(ActorKind.USER, current_user.email)


def can(role: Role) -> bool:
    return bool(current_user.is_authenticated and current_user.role.allows(role))


def format_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def format_duration(value: timedelta) -> str:
    """Two units at most: ``3d 4h``, ``5h 12m``, ``7m``."""
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
    app.add_template_global(can, "can")
    app.add_template_global(Role, "Role")
