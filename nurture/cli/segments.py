from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """TEMPORARY: the segments commands are being written."""
