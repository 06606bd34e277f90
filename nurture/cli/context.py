"""What every CLI command needs: a session with a commit-or-rollback scope, the clock, the settings,
and one way of turning user errors into a clean one-line exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from nurture.app import get_settings
from nurture.clock import Clock
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.web.clock import get_clock
from nurture.web.database import get_database

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR_EXIT = 2


@contextmanager
def session_scope() -> Iterator[Session]:
    """Commit when the block succeeds, roll back when it raises."""
    session = get_database().session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def clock() -> Clock:
    return get_clock()


def settings() -> Settings:
    return get_settings()


class UserError(click.ClickException):
    """Printed as ``Error: <message>``; exit status 2 means "your input", as for usage errors."""

    exit_code = USER_ERROR_EXIT


def user_errors(command: F) -> F:
    """Show NurtureError as ``Error: ...`` and exit 2 instead of a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NurtureError as exc:
            raise UserError(str(exc)) from None

    return wrapper  # type: ignore[return-value]
