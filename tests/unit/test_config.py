from pathlib import Path

import pytest

from nurture.app import create_app
from nurture.config import instance_directory, load_settings
from nurture.errors import ConfigError
from nurture.tracking.settings import signer_from_settings
from nurture.tracking.tokens import TokenPurpose, TokenSigner

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
        ("NURTURE_EMAIL_TEMPLATES", "/nonexistent/templates", "is not a directory"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "not base64!", "not a base64 public key"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "QUJDRA==", "not a public key"),
        ("NURTURE_PREVIOUS_SECRET_KEYS", "short", "at least 32"),
        ("NURTURE_PREFERENCE_TOPICS", "Bad Topic", "lowercase"),
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


def test_the_template_directory_setting(tmp_path: Path):
    assert load_settings({"NURTURE_SECRET_KEY": SECRET}, instance_path=tmp_path).email_templates is None
    settings = load_settings({"NURTURE_SECRET_KEY": SECRET, "NURTURE_EMAIL_TEMPLATES": str(tmp_path)})
    assert settings.email_templates == tmp_path


def test_links_signed_before_a_key_rotation_still_verify(tmp_path: Path):
    old_key, new_key = "o" * 40, "n" * 40
    old_token = TokenSigner([old_key]).sign(TokenPurpose.CLICK, 5)
    settings = load_settings(
        {"NURTURE_SECRET_KEY": new_key, "NURTURE_PREVIOUS_SECRET_KEYS": f" {old_key} ,"}, instance_path=tmp_path
    )
    signer = signer_from_settings(settings)
    assert signer.verify(TokenPurpose.CLICK, old_token) == (5,)
    assert signer.sign(TokenPurpose.CLICK, 5) == TokenSigner([new_key]).sign(TokenPurpose.CLICK, 5)


# --- the instance folder (issue 9, item 13) -------------------------------------------------------------


def test_the_instance_folder_is_where_the_variable_says(tmp_path: Path):
    folder = tmp_path / "elsewhere"
    environ = {"NURTURE_INSTANCE_PATH": str(folder)}
    folder.mkdir(parents=True)
    (folder / "secret_key").write_text(SECRET)
    settings = load_settings(environ)
    assert settings.instance_path == folder
    assert settings.secret_key == SECRET
    assert settings.database_url == f"sqlite:///{folder / 'nurture.db'}"
    assert settings.delivery.outbox_dir == folder / "outbox"


def test_a_missing_instance_folder_is_created(tmp_path: Path):
    folder = tmp_path / "a" / "b"
    assert instance_directory({"NURTURE_INSTANCE_PATH": str(folder)}) == folder
    assert folder.is_dir()


def test_the_default_instance_folder_is_instance_of_the_current_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({"NURTURE_SECRET_KEY": SECRET}).instance_path == tmp_path / "instance"


@pytest.mark.parametrize(
    ("relative", "message"),
    [("a-file", "is not a directory"), ("a-file/below", "cannot be created (Not a directory)")],
)
def test_an_unusable_instance_folder_is_one_line_naming_the_variable(tmp_path: Path, relative: str, message: str):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings({"NURTURE_SECRET_KEY": SECRET, "NURTURE_INSTANCE_PATH": str(tmp_path / relative)})
    assert str(info.value) == f"NURTURE_INSTANCE_PATH: {str(tmp_path / relative)!r} {message}"


def test_an_unwritable_instance_folder_is_refused(tmp_path: Path, monkeypatch):
    # Tests run as root, for whom every folder is writable: ask the same question os.access answers.
    monkeypatch.setattr("nurture.config.os.access", lambda _path, _mode: False)
    with pytest.raises(ConfigError, match=r"^NURTURE_INSTANCE_PATH: .* is not writable$"):
        instance_directory({"NURTURE_INSTANCE_PATH": str(tmp_path)})


def test_the_app_and_the_settings_agree_on_the_instance_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NURTURE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("NURTURE_SECRET_KEY", SECRET)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app({"TESTING": True})
    assert app.instance_path == str(tmp_path)
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'nurture.db'}"


def test_an_unusable_default_instance_folder_says_the_variable_is_not_set(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "instance").write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings({"NURTURE_SECRET_KEY": SECRET})
    assert str(info.value) == (
        f"NURTURE_INSTANCE_PATH: not set, and instance/ of the current directory ({str(tmp_path / 'instance')!r}) "
        "is not a directory"
    )
