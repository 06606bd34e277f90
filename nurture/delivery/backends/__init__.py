"""One module per backend; ``make_mailer`` picks the one named by ``NURTURE_MAIL_BACKEND``."""

from __future__ import annotations

import time

from nurture.clock import Clock
from nurture.delivery.mailer import Mailer, Sleeper
from nurture.delivery.settings import BackendName, DeliverySettings
from nurture.errors import ConfigError


def make_mailer(settings: DeliverySettings, clock: Clock, *, sleeper: Sleeper = time.sleep) -> Mailer:
    if settings.backend is BackendName.SMTP:
        from nurture.delivery.backends.smtp import SmtpMailer

        if settings.smtp is None:
            raise ConfigError("SMTP_URL: is required when NURTURE_MAIL_BACKEND=smtp")
        return SmtpMailer(settings.smtp, clock, settings.send_rate)
    if settings.backend is BackendName.SENDGRID:
        from nurture.delivery.backends.sendgrid import SendGridMailer

        if not settings.sendgrid_api_key:
            raise ConfigError("SENDGRID_API_KEY: is required when NURTURE_MAIL_BACKEND=sendgrid")
        return SendGridMailer(
            settings.sendgrid_api_key,
            clock,
            settings.send_rate,
            api_host=settings.sendgrid_api_host,
            sleeper=sleeper,
        )
    from nurture.delivery.backends.file import FileMailer

    return FileMailer(settings.outbox_dir, clock, settings.send_rate)
