"""``nurture run``: Flask's development server, answering ``Server: nurture`` instead of its version banner.

Werkzeug's server names itself and the Python under it (``Server: Werkzeug/3.1.9 Python/3.11.7``), which tells
a prober which known bugs to try. This command takes Flask's ``run`` options as they are and serves with
``QuietRequestHandler``. In production gunicorn answers ``Server: gunicorn`` with no version (so it has since
20.1; we require 22)."""

from __future__ import annotations

import ssl
from typing import Literal

import click
from flask.cli import ScriptInfo, get_debug_flag, pass_script_info, show_server_banner
from flask.cli import run_command as flask_run_command
from werkzeug.serving import WSGIRequestHandler, run_simple

SERVER_NAME = "nurture"


class QuietRequestHandler(WSGIRequestHandler):
    def version_string(self) -> str:
        return SERVER_NAME


def _run(
    info: ScriptInfo,
    host: str,
    port: int,
    reload: bool | None,
    debugger: bool | None,
    with_threads: bool,
    cert: ssl.SSLContext | tuple[str, str | None] | Literal["adhoc"] | None,
    extra_files: list[str] | None,
    exclude_patterns: list[str] | None,
) -> None:
    app = info.load_app()
    debug = get_debug_flag()
    show_server_banner(debug, info.app_import_path)
    run_simple(
        host,
        port,
        app,
        use_reloader=debug if reload is None else reload,
        use_debugger=debug if debugger is None else debugger,
        threaded=with_threads,
        ssl_context=cert,
        extra_files=extra_files,
        exclude_patterns=exclude_patterns,
        request_handler=QuietRequestHandler,
    )


run_command = click.Command(
    "run",
    params=list(flask_run_command.params),
    callback=pass_script_info(_run),
    help=flask_run_command.help,
    short_help=flask_run_command.short_help,
)


def register(cli: click.Group) -> None:
    """Replaces Flask's own ``run`` (a FlaskGroup adds it by default)."""
    cli.add_command(run_command)
