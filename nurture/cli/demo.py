from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """TEMPORARY: the demo commands are being written."""
