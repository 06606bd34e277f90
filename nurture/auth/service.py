"""Creating users, checking passwords (argon2id), and the changes that end a user's sessions.

Every session carries the user's ``session_version`` (``User.get_id``); logging out, a new password, a new role
and disabling the user bump it, so every session signed in before is refused on its next request."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.auth.models import Role, User
from nurture.clock import Clock
from nurture.errors import NotFound, ValidationError
from nurture.inputs import clean_text, unstorable_reason
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
    _check_password(password)
    clean_text(name, "name")
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


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"must be at least {MIN_PASSWORD_LENGTH} characters", where="password")
    clean_text(password, "password")


def find_user(session: Session, email: str) -> User | None:
    if unstorable_reason(email) is not None:
        return None  # no stored email holds such a character; PostgreSQL would refuse the query
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def authenticate(session: Session, clock: Clock, email: str, password: str) -> User | None:
    """The active user with these credentials, or ``None``."""
    user = find_user(session, email)
    # Bytes, so that any text typed is only a wrong password, even one UTF-8 cannot encode.
    secret = password.encode("utf-8", "surrogatepass")
    if user is None:
        with contextlib.suppress(VerifyMismatchError):
            _hasher.verify(_DUMMY_HASH, secret)
        return None
    try:
        _hasher.verify(user.password_hash, secret)
    except (VerifyMismatchError, InvalidHashError):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = clock.now()
    return user


def get_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise NotFound(f"no user with email {email.strip()!r}")
    return user


def end_sessions(session: Session, user: User) -> None:
    """Refuse every session ``user`` signed in before (logout signs out every browser of the user)."""
    # In SQL, so that two changes at once both count.
    user.session_version = User.session_version + 1  # type: ignore[assignment]
    session.flush()
    session.refresh(user, ["session_version"])


def set_password(session: Session, user: User, password: str) -> None:
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    end_sessions(session, user)


def set_role(session: Session, user: User, role: Role) -> None:
    if user.role is role:
        return
    user.role = role
    end_sessions(session, user)


def set_active(session: Session, user: User, active: bool) -> None:
    """Disabling ends the user's sessions and refuses sign-in; enabling lets them sign in again."""
    if user.active is active:
        return
    user.active = active
    end_sessions(session, user)
