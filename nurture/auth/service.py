"""Creating users and checking passwords (argon2id)."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.auth.models import Role, User
from nurture.clock import Clock
from nurture.errors import ValidationError
from nurture.leads.emails import InvalidEmail, normalise_email

MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher()
# Verifying against a real hash for unknown users keeps response time from revealing who exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def create_user(
    session: Session, clock: Clock, email: str, password: str, role: Role, name: str = ""
) -> User:
    try:
        normalised = normalise_email(email)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), where="email") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"must be at least {MIN_PASSWORD_LENGTH} characters", where="password")
    if find_user(session, normalised) is not None:
        raise ValidationError(f"a user with email {normalised!r} already exists", where="email")
    user = User(
        email=normalised.lower(),
        name=name,
        password_hash=_hasher.hash(password),
        role=role,
        active=True,
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def authenticate(session: Session, clock: Clock, email: str, password: str) -> User | None:
    """The active user with these credentials, or ``None``."""
    user = find_user(session, email)
    if user is None:
        with contextlib.suppress(VerifyMismatchError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = clock.now()
    return user
