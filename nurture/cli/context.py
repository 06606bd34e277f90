"""What every CLI command needs: a session with a commit-or-rollback scope, the clock, the settings,
and one way of turning user errors into a clean one-line exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from nurture import migrate
from nurture.clock import Clock
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.web.clock import get_clock
from nurture.web.database import get_database
from nurture.web.extensions import get_settings

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


def database_problem(error: DBAPIError, engine: Engine, *, schema_applies: bool = True) -> str | None:
    """The one line for a database error the user fixes: the database cannot be reached, or its schema is
    missing or behind this version (``no such table``). None for any other error, which keeps its traceback.

    The schema is read from Alembic's version table rather than guessed from the error message, so a missing
    column after an upgrade of nurture is caught too. ``schema_applies=False`` (the ``db`` commands) only
    explains connection failures: a failing migration must not answer "run nurture db upgrade"."""
    shown = engine.url.render_as_string(hide_password=True)
    # SQLAlchemy sets no statement on an error raised while connecting; that needs no second connection
    # attempt, which could wait as long again on an unreachable host.
    failure = error if error.statement is None else None
    current: str | None = None
    if failure is None:
        try:
            current = migrate.current_revision(engine)
        except DBAPIError as probe_error:
            failure = probe_error
    if failure is not None:
        return f"cannot connect to the database {shown}: {_first_line(failure, engine)}"
    if not schema_applies:
        return None
    if current is None:
        return f"the database {shown} has no schema: run `nurture db upgrade` first"
    if not migrate.is_known_revision(current):
        return f"the database {shown} is at schema revision {current}, written by a newer version of nurture"
    head = migrate.head_revision()
    if current != head:
        return f"the database {shown} is at schema revision {current}, not {head}: run `nurture db upgrade`"
    return None


def _first_line(error: DBAPIError, engine: Engine) -> str:
    lines = [line.strip() for line in str(error.orig).splitlines() if line.strip()]
    message = lines[0] if lines else type(error.orig).__name__
    password = engine.url.password
    return message.replace(str(password), "***") if password else message
