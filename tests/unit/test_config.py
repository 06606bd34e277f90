from pathlib import Path

import pytest

from nurture.config import load_settings
from nurture.errors import ConfigError

SECRET = "x" * 40


def test_defaults(tmp_path: Path):
    settings = load_settings({"NURTURE_SECRET_KEY": SECRET}, instance_path=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'nurture.db'}"
    assert settings.base_url == "http://127.0.0.1:5000"
    assert (settings.temperature.warm, settings.temperature.hot) == (20, 50)


def test_missing_secret_names_the_variable(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^NURTURE_SECRET_KEY: is required"):
        load_settings({}, instance_path=tmp_path)


def test_secret_falls_back_to_instance_file(tmp_path: Path):
    (tmp_path / "secret_key").write_text(SECRET + "\n")
    assert load_settings({}, instance_path=tmp_path).secret_key == SECRET


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NURTURE_SECRET_KEY", "short", "at least 32"),
        ("NURTURE_BASE_URL", "ftp://x", "http(s) URL"),
        ("DATABASE_URL", "mysql://x/y", "only sqlite and postgresql"),
        ("DATABASE_URL", "::nonsense::", "not a database URL"),
        ("NURTURE_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
        ("NURTURE_TEMPERATURE_THRESHOLDS", "10,5,50", "ascending"),
        ("NURTURE_TEMPERATURE_THRESHOLDS", "a,b", "three integers"),
        ("NURTURE_SCHEDULER_IN_WEB", "maybe", "true or false"),
    ],
)
def test_malformed_setting_is_named(tmp_path: Path, name: str, value: str, message: str):
    environ = {"NURTURE_SECRET_KEY": SECRET, name: value}
    with pytest.raises(ConfigError) as info:
        load_settings(environ, instance_path=tmp_path)
    assert str(info.value).startswith(f"{name}:")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_plain_postgresql_url_uses_psycopg(tmp_path: Path):
    settings = load_settings(
        {"NURTURE_SECRET_KEY": SECRET, "DATABASE_URL": "postgresql://u@h/db"}, instance_path=tmp_path
    )
    assert settings.database_url.startswith("postgresql+psycopg://")
