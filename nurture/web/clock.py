from __future__ import annotations

from flask import Flask, current_app

from nurture.clock import Clock, SystemClock

_EXTENSION = "nurture.clock"


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = app.config.get("NURTURE_CLOCK") or SystemClock()


def get_clock() -> Clock:
    return current_app.extensions[_EXTENSION]

