"""One SQLAlchemy session per request, committed by the view that changes data, closed at teardown."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from nurture.db import make_engine, make_session_factory

_EXTENSION = "nurture.database"


class Database:
    def __init__(self, engine: Engine, session_factory: Callable[[], Session] | None = None) -> None:
        self.engine = engine
        # Tests pass a factory bound to their own connection (the savepoint recipe).
        self.session_factory: Callable[[], Session] = session_factory or make_session_factory(engine)


def init_app(app: Flask) -> Database:
    engine = app.config.get("NURTURE_ENGINE") or make_engine(app.config["DATABASE_URL"])
    database = Database(engine, app.config.get("NURTURE_SESSION_FACTORY"))
    app.extensions[_EXTENSION] = database
    app.teardown_appcontext(_close_session)
    return database


def get_database() -> Database:
    return current_app.extensions[_EXTENSION]


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = get_database().session_factory()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
