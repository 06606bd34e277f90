"""Keys of the events API: ``nk_`` followed by 32 random bytes (base64url). Only the SHA-256 of a key is
stored (a key this long needs no slow hash); a request's key is found by its hash and the stored hash is
compared again in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.errors import NotFound, ValidationError
from nurture.tracking.models import ApiKey

PREFIX = "nk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
# Longer than any key we make: a longer header is refused before hashing.
MAX_KEY_CHARS = 100


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    name: str
    key: str


def create_key(session: Session, clock: Clock, name: str) -> CreatedKey:
    """A new key named ``name``; the key itself is in the result and nowhere else."""
    name = name.strip()
    if not _NAME.match(name):
        raise ValidationError("1 to 100 letters, digits, spaces, . _ or -, starting with a letter or digit", "name")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ValidationError(f"an API key named {name!r} already exists", "name")
    key = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, key_hash=_digest(key), prefix=key[:10], created_at=clock.now()))
    session.flush()
    return CreatedKey(name, key)


def authenticate_key(session: Session, now: datetime, presented: str | None) -> ApiKey | None:
    """The live key ``presented`` is, or None; marks it used."""
    if not presented or len(presented) > MAX_KEY_CHARS or not presented.startswith(PREFIX):
        return None
    digest = _digest(presented)
    found = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if found is None or found.revoked_at is not None or not hmac.compare_digest(found.key_hash, digest):
        return None
    found.last_used_at = now
    return found


def revoke_key(session: Session, clock: Clock, name: str) -> ApiKey:
    found = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if found is None:
        raise NotFound(f"no API key named {name!r}")
    if found.revoked_at is None:
        found.revoked_at = clock.now()
    return found


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))
