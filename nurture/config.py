"""Settings, read once from environment variables and validated at start.

Each setting is documented in README. A missing or malformed one raises ``ConfigError`` whose
message names it, so the process can exit with one line instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.delivery.settings import DeliverySettings, load_delivery_settings
from nurture.errors import ConfigError
from nurture.tracking.settings import TrackingSettings, load_tracking_settings

MIN_SECRET_LENGTH = 32
INSTANCE_PATH_VARIABLE = "NURTURE_INSTANCE_PATH"


@dataclass(frozen=True)
class TemperatureThresholds:
    """Score at or above ``warm`` is warm, at or above ``hot`` is hot, anything else is cold."""

    cold: int = 0
    warm: int = 20
    hot: int = 50

    def __post_init__(self) -> None:
        if not self.cold <= self.warm <= self.hot:
            raise ConfigError(
                "NURTURE_TEMPERATURE_THRESHOLDS: must be three ascending integers cold,warm,hot "
                f"(got {self.cold},{self.warm},{self.hot})"
            )


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    base_url: str = "http://127.0.0.1:5000"
    default_timezone: str = "UTC"
    temperature: TemperatureThresholds = field(default_factory=TemperatureThresholds)
    log_level: str = "INFO"
    # Embedded deployments run the scheduler inside the web process; `nurture worker` runs it alone.
    run_scheduler_in_web: bool = True
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    # Where file templates live; None means the shipped nurture/email_templates/.
    email_templates: Path | None = None
    # The instance folder (SQLite database, secret_key file, file outbox); None: instance_directory() when the
    # app is created (Settings built by hand, as in tests).
    instance_path: Path | None = None


def _parse_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name}: must be an http(s) URL such as https://nurture.example.com (got {raw!r})")
    return raw.rstrip("/")


def _parse_database_url(name: str, raw: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"{name}: not a database URL (got {raw!r})") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(f"{name}: only sqlite and postgresql are supported (got {url.get_backend_name()!r})")
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        # psycopg 3 is the driver we install; make the plain scheme use it.
        raw = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return raw


def _parse_secret(name: str, raw: str) -> str:
    if len(raw) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{name}: must be at least {MIN_SECRET_LENGTH} characters of random data")
    return raw


def _parse_timezone(name: str, raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}: unknown IANA time zone {raw!r}") from None
    return raw


def _parse_thresholds(name: str, raw: str) -> TemperatureThresholds:
    try:
        cold, warm, hot = (int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name}: must be three integers cold,warm,hot such as 0,20,50 (got {raw!r})") from None
    return TemperatureThresholds(cold, warm, hot)


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: must be true or false (got {raw!r})")


def _parse_directory(name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{name}: {raw!r} is not a directory")
    return path


def _parse_log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{name}: must be DEBUG, INFO, WARNING or ERROR (got {raw!r})")
    return level


# name -> (Settings field, parser, default or None when required)
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any], str | None]] = {
    "DATABASE_URL": ("database_url", _parse_database_url, ""),
    "NURTURE_SECRET_KEY": ("secret_key", _parse_secret, None),
    "NURTURE_BASE_URL": ("base_url", _parse_url, "http://127.0.0.1:5000"),
    "NURTURE_TIMEZONE": ("default_timezone", _parse_timezone, "UTC"),
    "NURTURE_TEMPERATURE_THRESHOLDS": ("temperature", _parse_thresholds, "0,20,50"),
    "NURTURE_LOG_LEVEL": ("log_level", _parse_log_level, "INFO"),
    "NURTURE_SCHEDULER_IN_WEB": ("run_scheduler_in_web", _parse_bool, "true"),
    "NURTURE_EMAIL_TEMPLATES": ("email_templates", _parse_directory, ""),
}


def instance_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The instance folder: ``NURTURE_INSTANCE_PATH``, else ``instance/`` of the current directory (the checkout,
    for `make run`). Created when missing; a ConfigError unless it is a writable directory.

    Not Flask's own guess, which for an installed package is a folder inside the Python prefix."""
    environ = os.environ if environ is None else environ
    raw = environ.get(INSTANCE_PATH_VARIABLE, "").strip()
    path = Path(raw or "instance").expanduser().absolute()
    shown = repr(str(path)) if raw else f"not set, and instance/ of the current directory ({str(path)!r})"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{INSTANCE_PATH_VARIABLE}: {shown} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{INSTANCE_PATH_VARIABLE}: {shown} cannot be created ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{INSTANCE_PATH_VARIABLE}: {shown} is not writable")
    return path


def default_database_url(instance_path: Path) -> str:
    return f"sqlite:///{instance_path / 'nurture.db'}"


def _read_secret_file(instance_path: Path) -> str:
    """`make run` keeps a generated key in instance/secret_key so local commands need no setup."""
    try:
        return (instance_path / "secret_key").read_text().strip()
    except OSError:
        return ""


def load_settings(environ: Mapping[str, str] | None = None, *, instance_path: Path | None = None) -> Settings:
    """Read every setting from ``environ`` (``os.environ`` by default), failing on the first bad one."""
    environ = os.environ if environ is None else environ
    # ``instance_path`` (tests) stands in for NURTURE_INSTANCE_PATH.
    instance = instance_path or instance_directory(environ)
    values: dict[str, Any] = {"instance_path": instance}
    for name, (attribute, parse, default) in _VARIABLES.items():
        raw = environ.get(name, "").strip()
        if not raw and name == "NURTURE_SECRET_KEY":
            raw = _read_secret_file(instance)
        if not raw:
            if default is None:
                raise ConfigError(f"{name}: is required and not set")
            if name == "DATABASE_URL":
                default = default_database_url(instance)
            raw = default
        # An optional setting left empty keeps its field's default.
        if raw:
            values[attribute] = parse(name, raw)
    values["delivery"] = load_delivery_settings(environ, instance)
    values["tracking"] = load_tracking_settings(environ)
    return Settings(**values)
