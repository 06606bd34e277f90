from pathlib import Path

import pytest

from nurture.delivery.backends import make_mailer
from nurture.delivery.backends.file import FileMailer
from nurture.delivery.backends.sendgrid import SendGridMailer
from nurture.delivery.backends.smtp import SmtpMailer
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.settings import (
    BackendName,
    DeliverySettings,
    SmtpSecurity,
    SmtpServer,
    load_delivery_settings,
    parse_smtp_url,
)
from nurture.errors import ConfigError

INSTANCE = Path("/srv/nurture/instance")
REAL = {"NURTURE_MAIL_FROM": "Acme News <news@acme.example>", "NURTURE_POSTAL_ADDRESS": "Acme, 1 Main St, Springfield"}


def load(**environ: str) -> DeliverySettings:
    return load_delivery_settings(environ, INSTANCE)


def test_defaults_need_no_configuration():
    settings = load()
    assert settings.backend is BackendName.FILE
    assert settings.outbox_dir == INSTANCE / "outbox"
    assert settings.sender.address == "nurture@localhost"
    assert settings.send_rate == 10.0
    assert settings.list_id == "<nurture.localhost>"
    assert settings.reply_to is None and settings.unsubscribe_mailto is None


def test_full_smtp_configuration():
    settings = load(
        NURTURE_MAIL_BACKEND="SMTP",
        SMTP_URL="smtp://apikey:p%40ss%2Fword@smtp.relay.example:587?starttls=1&timeout=12.5",
        NURTURE_MAIL_FROM="Zoë Équipe <news@acme.example>",
        NURTURE_MAIL_REPLY_TO="help@acme.example",
        NURTURE_POSTAL_ADDRESS="  Acme Inc.,\n 1 Main St,   Springfield ",
        NURTURE_LIST_ID="Acme news <news.acme.example>",
        NURTURE_UNSUBSCRIBE_MAILTO="mailto:unsubscribe@acme.example",
        NURTURE_SEND_RATE="2.5",
    )
    assert settings.backend is BackendName.SMTP
    assert settings.smtp == SmtpServer(
        "smtp.relay.example", 587, SmtpSecurity.STARTTLS, "apikey", "p@ss/word", timeout=12.5
    )
    assert "p@ss" not in repr(settings.smtp)
    assert settings.sender == Mailbox("news@acme.example", "Zoë Équipe")
    assert settings.reply_to == Mailbox("help@acme.example")
    assert settings.postal_address == "Acme Inc., 1 Main St, Springfield"
    assert settings.list_id == "Acme news <news.acme.example>"
    assert settings.unsubscribe_mailto == "unsubscribe@acme.example"
    assert settings.send_rate == 2.5


def test_list_id_defaults_to_the_sender_domain():
    assert load(**REAL).list_id == "<nurture.acme.example>"
    assert load(**REAL, NURTURE_LIST_ID="news.acme.example").list_id == "<news.acme.example>"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtps://relay.example", SmtpServer("relay.example", 465, SmtpSecurity.SSL)),
        ("smtp://relay.example", SmtpServer("relay.example", 25, SmtpSecurity.NONE)),
        ("smtp://relay.example?starttls=yes", SmtpServer("relay.example", 587, SmtpSecurity.STARTTLS)),
        ("smtp://u:p@127.0.0.1:2525", SmtpServer("127.0.0.1", 2525, SmtpSecurity.NONE, "u", "p")),
    ],
)
def test_smtp_urls(url, expected):
    assert parse_smtp_url("SMTP_URL", url) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NURTURE_MAIL_BACKEND": "carrier-pigeon"}, "NURTURE_MAIL_BACKEND: must be one of file, smtp, sendgrid"),
        ({"NURTURE_MAIL_BACKEND": "smtp", **REAL}, "SMTP_URL: is required"),
        ({"NURTURE_MAIL_BACKEND": "sendgrid", **REAL}, "SENDGRID_API_KEY: is required"),
        ({"NURTURE_MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "k", "NURTURE_POSTAL_ADDRESS": "x"},
         "NURTURE_MAIL_FROM: is required"),
        ({"NURTURE_MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "k", "NURTURE_MAIL_FROM": "a@b.example"},
         "NURTURE_POSTAL_ADDRESS: is required"),
        ({"SMTP_URL": "http://relay.example"}, "SMTP_URL: must start with smtp:// or smtps://"),
        ({"SMTP_URL": "smtp://"}, "SMTP_URL: has no host name"),
        ({"SMTP_URL": "smtp://relay.example:99999"}, "SMTP_URL: invalid port"),
        ({"SMTP_URL": "smtp://relay.example?tls=1"}, "SMTP_URL: unknown option(s) tls"),
        ({"SMTP_URL": "smtp://relay.example?starttls=maybe"}, "SMTP_URL: option starttls must be 1 or 0"),
        ({"SMTP_URL": "smtp://relay.example?timeout=-1"}, "SMTP_URL: option timeout must be a positive"),
        ({"SMTP_URL": "smtps://relay.example?starttls=1"}, "SMTP_URL: smtps:// is already encrypted"),
        ({"SMTP_URL": "smtp://user:pw@relay.example"}, "SMTP_URL: credentials would travel unencrypted"),
        ({"SMTP_URL": "smtp://user@relay.example?starttls=1"}, "SMTP_URL: user 'user' has no password"),
        ({"SENDGRID_API_HOST": "ftp://x"}, "SENDGRID_API_HOST: must be an https URL"),
        ({"SENDGRID_API_HOST": "http://api.example"}, "SENDGRID_API_HOST: the API key would travel unencrypted"),
        ({"SENDGRID_API_HOST": "https://api.example/v3"}, "SENDGRID_API_HOST: give only scheme, host and port"),
        ({"NURTURE_MAIL_FROM": "not an address"}, "NURTURE_MAIL_FROM: not an email address"),
        ({"NURTURE_MAIL_REPLY_TO": "a@"}, "NURTURE_MAIL_REPLY_TO:"),
        ({"NURTURE_UNSUBSCRIBE_MAILTO": "mailto:nobody"}, "NURTURE_UNSUBSCRIBE_MAILTO:"),
        ({"NURTURE_LIST_ID": "Ünïcode <a.b>"}, "NURTURE_LIST_ID: must be printable ASCII"),
        ({"NURTURE_LIST_ID": "News <news.example"}, "NURTURE_LIST_ID: missing '>'"),
        ({"NURTURE_LIST_ID": "nodots"}, "NURTURE_LIST_ID: 'nodots' is not a list id"),
        ({"NURTURE_SEND_RATE": "0"}, "NURTURE_SEND_RATE: must be a number of messages per second above 0"),
        ({"NURTURE_SEND_RATE": "fast"}, "NURTURE_SEND_RATE: must be a number"),
        ({"NURTURE_SEND_RATE": "inf"}, "NURTURE_SEND_RATE: must be a number"),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(ConfigError) as raised:
        load(**environ)
    assert str(raised.value).startswith(message)


def test_sendgrid_host_over_http_only_on_loopback():
    settings = load(
        NURTURE_MAIL_BACKEND="sendgrid", SENDGRID_API_KEY="SG.k", SENDGRID_API_HOST="http://127.0.0.1:8025/", **REAL
    )
    assert settings.sendgrid_api_host == "http://127.0.0.1:8025"
    assert "SG.k" not in repr(settings)


def test_make_mailer_picks_the_configured_backend(clock):
    assert isinstance(make_mailer(load(), clock), FileMailer)
    smtp = make_mailer(load(NURTURE_MAIL_BACKEND="smtp", SMTP_URL="smtps://u:p@relay.example", **REAL), clock)
    assert isinstance(smtp, SmtpMailer) and smtp.name == "smtp"
    sendgrid = make_mailer(load(NURTURE_MAIL_BACKEND="sendgrid", SENDGRID_API_KEY="SG.k", **REAL), clock)
    assert isinstance(sendgrid, SendGridMailer) and sendgrid.send_rate == 10.0


def test_make_mailer_refuses_incomplete_settings(clock):
    with pytest.raises(ConfigError, match="SMTP_URL"):
        make_mailer(DeliverySettings(backend=BackendName.SMTP), clock)
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        make_mailer(DeliverySettings(backend=BackendName.SENDGRID), clock)
