"""How long a signed-in session lasts (README, "Sign-in"), and the id a session carries.

- A session ends 12 hours after sign-in, however active (``SESSION_LIFETIME``);
- and after 2 hours without a request (``IDLE_TIMEOUT``). The time of the last request is written into the
  session at most once a minute (``SEEN_REFRESH``), so that not every request sends a new cookie;
- and at once when its user logs out, gets a new password or role, or is disabled: the session's id holds
  the user's session version (``User.get_id``), which those changes bump.

The web layer keeps both instants in the signed session cookie and checks them on every request, with the
injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from nurture.inputs import is_storable_id

SESSION_LIFETIME = timedelta(hours=12)
IDLE_TIMEOUT = timedelta(hours=2)
SEEN_REFRESH = timedelta(minutes=1)


def session_expired(signed_in_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
    return now - signed_in_at >= SESSION_LIFETIME or now - last_seen_at >= IDLE_TIMEOUT


def seen_is_stale(last_seen_at: datetime, now: datetime) -> bool:
    """Whether the session's last-seen instant is worth rewriting (and its cookie resending)."""
    return now - last_seen_at >= SEEN_REFRESH


def parse_session_id(value: str) -> tuple[int, int] | None:
    """``(user id, session version)`` from ``User.get_id``'s ``"<id>:<version>"``, or None for anything else
    (including the bare ids that sessions carried before versions existed)."""
    user_id, separator, version = value.partition(":")
    if not separator or not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()):
        return None
    parsed = int(user_id), int(version)
    if not (is_storable_id(parsed[0]) and is_storable_id(parsed[1])):
        return None
    return parsed
