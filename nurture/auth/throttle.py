"""The login throttle: how many failed sign-ins an account and a client address may have before further
attempts are refused, without checking the password, until the oldest failures age out.

The policy (README, "Sign-in"):

- per account (the email as typed, whether or not such a user exists): 5 failures in 15 minutes, and 20 in
  24 hours;
- per client address (an IPv6 address counts by its /64 network): 20 failures in 15 minutes, and 100 in 24
  hours.

A refused attempt is told when to retry (HTTP ``Retry-After``): when enough of the failures that caused the
refusal have left their window. Refused attempts are not failures themselves, so hammering a locked account
does not extend its lock: once the window passes, the right password works. A successful sign-in clears its
account's failures.

The state lives in the database (``login_failures``), shared by every web process. An attempt is recorded
before its password is checked and committed by the caller before it asks for the verdict: two parallel
attempts then each count the other, so no more attempts than the limit ever reach the password hash, however
many arrive at once. The caller's sequence is::

    attempt = begin_attempt(session, now, account=email, address=ip)
    session.commit()
    refusal = check_attempt(session, now, attempt)
    session.commit()
    if refusal: withdraw_attempt(session, attempt); commit; answer 429 with refusal.retry_after_seconds
    elif the password is right: succeed_attempt(session, attempt); commit
    else: the attempt's rows stay, as failures

The commit after the (read-only) verdict matters on SQLite: a transaction that reads and then writes cannot
wait for the write lock, and fails at once when another process wrote in between; one that starts with a write
waits its turn. ``begin_attempt`` and ``withdraw_attempt`` start with their writes for the same reason.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, insert, select
from sqlalchemy.orm import Session

from nurture.auth.models import LoginFailure, ThrottleKind


@dataclass(frozen=True)
class Limit:
    kind: ThrottleKind
    failures: int
    window: timedelta


LIMITS: tuple[Limit, ...] = (
    Limit(ThrottleKind.ACCOUNT, 5, timedelta(minutes=15)),
    Limit(ThrottleKind.ACCOUNT, 20, timedelta(hours=24)),
    Limit(ThrottleKind.ADDRESS, 20, timedelta(minutes=15)),
    Limit(ThrottleKind.ADDRESS, 100, timedelta(hours=24)),
)
# Failures older than the longest window count for nothing and are deleted, a batch at a time.
RETENTION = max(limit.window for limit in LIMITS)
_PRUNE_BATCH = 500
IPV6_NETWORK_PREFIX = 64


@dataclass(frozen=True)
class Attempt:
    """The rows one sign-in attempt wrote: ``{kind: (key, row id)}``."""

    rows: dict[ThrottleKind, tuple[str, int]]


@dataclass(frozen=True)
class Refusal:
    retry_after_seconds: int
    kind: ThrottleKind


def account_key(email: str) -> str:
    return _digest(email.strip().lower())


def address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one by its /64, which one client usually holds whole."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return _digest(address.strip())
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return _digest(str(parsed.ipv4_mapped))
        network = ipaddress.IPv6Network((parsed, IPV6_NETWORK_PREFIX), strict=False)
        return _digest(str(network))
    return _digest(str(parsed))


def _digest(value: str) -> str:
    # surrogatepass: whatever was typed has a key, even text no database could store.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def begin_attempt(session: Session, now: datetime, *, account: str, address: str) -> Attempt:
    """Record an attempt against both its keys, to be committed before ``check_attempt``."""
    keys = {ThrottleKind.ACCOUNT: account_key(account), ThrottleKind.ADDRESS: address_key(address)}
    rows: dict[ThrottleKind, tuple[str, int]] = {}
    for kind, key in keys.items():
        row_id = session.execute(
            insert(LoginFailure).values(kind=kind, key=key, failed_at=now).returning(LoginFailure.id)
        ).scalar_one()
        rows[kind] = (key, row_id)
    _prune(session, now)
    return Attempt(rows)


def check_attempt(session: Session, now: datetime, attempt: Attempt) -> Refusal | None:
    """``None`` when the attempt may check its password; otherwise how long to wait, the longest of every
    limit it exceeds. The attempt's own rows count: it is allowed when it is within the limit."""
    refusals = [
        refusal
        for limit in LIMITS
        if (refusal := _check_limit(session, now, attempt, limit)) is not None
    ]
    return max(refusals, key=lambda refusal: refusal.retry_after_seconds, default=None)


def _check_limit(session: Session, now: datetime, attempt: Attempt, limit: Limit) -> Refusal | None:
    key, own_id = attempt.rows[limit.kind]
    in_window = and_(
        LoginFailure.kind == limit.kind, LoginFailure.key == key, LoginFailure.failed_at > now - limit.window
    )
    counted = session.scalar(select(func.count()).select_from(LoginFailure).where(in_window)) or 0
    if counted <= limit.failures:
        return None
    # Without this attempt there are ``others`` failures; a new attempt fits once ``others - limit + 1`` of
    # them have left the window, so the wait ends when the one of that rank (oldest first) does.
    others = counted - 1
    rank = others - limit.failures + 1
    freed_at = session.scalar(
        select(LoginFailure.failed_at)
        .where(in_window, LoginFailure.id != own_id)
        .order_by(LoginFailure.failed_at, LoginFailure.id)
        .offset(rank - 1)
        .limit(1)
    )
    wait = (freed_at + limit.window - now).total_seconds() if freed_at is not None else 1.0
    return Refusal(max(1, math.ceil(wait)), limit.kind)


def withdraw_attempt(session: Session, attempt: Attempt) -> None:
    """A refused attempt is no failure: its rows go, so refusals never extend a lock."""
    session.execute(delete(LoginFailure).where(LoginFailure.id.in_([row_id for _, row_id in attempt.rows.values()])))


def succeed_attempt(session: Session, attempt: Attempt) -> None:
    """The password was right: the attempt's address row goes, and every failure of its account."""
    account, _ = attempt.rows[ThrottleKind.ACCOUNT]
    _, address_row = attempt.rows[ThrottleKind.ADDRESS]
    _delete_unlocked(session, (LoginFailure.kind == ThrottleKind.ACCOUNT) & (LoginFailure.key == account))
    session.execute(delete(LoginFailure).where(LoginFailure.id == address_row))


def clear_account(session: Session, email: str) -> int:
    """Forget an account's failures (an administrator unlocking it); how many there were."""
    return _delete_unlocked(
        session, (LoginFailure.kind == ThrottleKind.ACCOUNT) & (LoginFailure.key == account_key(email))
    )


def _prune(session: Session, now: datetime) -> None:
    _delete_unlocked(session, LoginFailure.failed_at <= now - RETENTION, limit=_PRUNE_BATCH)


def _delete_unlocked(session: Session, where: ColumnElement[bool], limit: int | None = None) -> int:
    """Delete the matching rows that no other transaction is deleting (PostgreSQL's SKIP LOCKED; SQLite runs
    one writer at a time and ignores it); how many. Rows another transaction holds are on their way out
    already, and never waiting for them means parallel sign-ins cannot deadlock each other. One statement, so
    that on SQLite it is a write from the start."""
    chosen = select(LoginFailure.id).where(where).with_for_update(skip_locked=True)
    if limit is not None:
        chosen = chosen.limit(limit)
    result = session.execute(
        delete(LoginFailure).where(LoginFailure.id.in_(chosen)), execution_options={"synchronize_session": False}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
