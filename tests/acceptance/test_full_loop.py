"""The whole loop, on SQLite and on PostgreSQL, with the starter campaigns from ``nurture/starter_campaigns/``
and the real templates from ``nurture/email_templates/``: a trade-show list is imported, the welcome series
emails it through a real SMTP server, a lead opens and clicks (through the public tracking endpoints), its
score grows, a demo request from the website (the events API) makes it an MQL, the MQL campaign offers a
call, booking it alerts the owner and makes the lead an SQL, the CRM reports the deal lost, and thirty days
later the re-engagement campaign's check-in brings the lead back with one click.

Only the clock is simulated; every other part is the one that runs in production (CLI, importer, engine,
renderer, SMTP backend, tracking endpoints, events API, scoring, lifecycle automation)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.app import create_app
from nurture.cli import cli
from nurture.clock import FixedClock
from nurture.config import Settings
from nurture.delivery.backends import make_mailer
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.models import Message
from nurture.delivery.outgoing import NURTURE_MESSAGE_ID_HEADER
from nurture.delivery.settings import BackendName, DeliverySettings, SmtpSecurity, SmtpServer
from nurture.demo import STARTER_CAMPAIGNS
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.engine.tick import TickReport, run_tick
from nurture.leads.lifecycle import Stage
from nurture.leads.models import Lead, StageChange
from nurture.segments.builtin import ensure_builtin_segments
from nurture.tracking.apikeys import create_key
from tests.support.smtp_server import RunningSmtpServer

START = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # a Monday: 09:00 in New York, 15:00 in Paris
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"}
OWNER = "rep@nurture.example"
# People read a while after delivery; a click within seconds of it looks like a link scanner.
READING_DELAY = timedelta(minutes=20)
TRADE_SHOW_LIST = (
    "Email,First name,Last name,Company,Job title,Country,Time zone,Language,Owner\n"
    f"ana.lima@acme.example,Ana,Lima,Acme Corp,Head of Marketing,US,America/New_York,en,{OWNER}\n"
    "elodie.roux@bouygues.example,Élodie,Roux,Roux & Fils,Directrice marketing,FR,Europe/Paris,fr,\n"
)
_HREF = re.compile(r'href="([^"]+)"')


@pytest.fixture
def loop_settings(nurture_settings: Settings, smtp_server: RunningSmtpServer) -> Settings:
    delivery = DeliverySettings(
        backend=BackendName.SMTP,
        smtp=SmtpServer(smtp_server.host, smtp_server.port, SmtpSecurity.NONE, timeout=5),
        sender=Mailbox("hello@nurture.test", "Zoë at Nurture"),
        postal_address="Nurture SAS, 12 rue de la Paix, 75002 Paris, France",
        list_id="Nurture news <news.nurture.test>",
        send_rate=1000.0,
    )
    return replace(nurture_settings, delivery=delivery, default_timezone="UTC")


@pytest.fixture
def loop_app(engine: Any, db_connection: Any, clock: FixedClock, loop_settings: Settings) -> Flask:
    """The production app on the test's transaction, with the SMTP delivery settings."""
    from tests.conftest import _session_on

    return create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "NURTURE_SETTINGS": loop_settings,
            "NURTURE_ENGINE": engine,
            "NURTURE_SESSION_FACTORY": lambda: _session_on(db_connection),
            "NURTURE_CLOCK": clock,
        }
    )


class Loop:
    """The moving parts of one run: the clock, the engine pass, the SMTP inbox, the public endpoints."""

    def __init__(
        self, app: Flask, session: Session, session_factory: Any, clock: FixedClock, settings: Settings,
        smtp: RunningSmtpServer,
    ) -> None:  # fmt: skip
        self.app, self.session, self.session_factory, self.clock = app, session, session_factory, clock
        self.ctx: EngineContext = engine_context(settings)
        self.mailer = make_mailer(settings.delivery, clock)
        self.smtp = smtp
        self.seen = 0
        self.web: FlaskClient = app.test_client(use_cookies=False)

    def cli(self, *args: str) -> str:
        result = self.app.test_cli_runner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    def sleep(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    def tick(self) -> TickReport:
        report = run_tick(self.session_factory, self.clock, self.ctx, self.mailer, sleeper=self.sleep)
        self.session.expire_all()
        return report

    def at(self, moment: datetime) -> TickReport:
        self.clock.set(moment)
        return self.tick()

    def new_mail(self) -> list[EmailMessage]:
        received = [received.message for received in self.smtp.messages[self.seen :]]
        self.seen += len(received)
        return received

    def lead(self, email: str) -> Lead:
        lead = self.session.scalar(select(Lead).where(Lead.email == email))
        assert lead is not None
        return lead

    def message_for(self, mail: EmailMessage) -> Message:
        message = self.session.get(Message, int(mail[NURTURE_MESSAGE_ID_HEADER]))
        assert message is not None, mail[NURTURE_MESSAGE_ID_HEADER]
        return message

    def open(self, mail: EmailMessage) -> None:
        self.clock.advance(READING_DELAY)
        pixel = next(url for url in _urls(mail) if "/t/o/" in url)
        assert self.web.get(_path(pixel), headers=BROWSER).status_code == 200

    def click(self, mail: EmailMessage, target_prefix: str) -> None:
        """Click the tracked link of ``mail`` that leads to a URL starting with ``target_prefix``."""
        self.clock.advance(READING_DELAY)
        links = self.message_for(mail).links
        index = next(i for i, url in enumerate(links) if url.startswith(target_prefix))
        tracked = next(url for url in _urls(mail) if "/t/c/" in url and url.endswith(f"/{index}"))
        response = self.web.get(_path(tracked), headers=BROWSER)
        assert response.status_code == 302
        assert response.headers["Location"] == links[index]

    def api_event(self, key: str, **event: Any) -> None:
        response = self.web.post("/api/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.get_json()


def _html(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return part.get_content()


def _urls(mail: EmailMessage) -> list[str]:
    html = _html(mail)
    return [unescape(url) for url in _HREF.findall(html) + re.findall(r'src="([^"]+)"', html)]


def _path(url: str) -> str:
    assert url.startswith("https://nurture.test/"), url
    return url.removeprefix("https://nurture.test")


def _subject(mail: EmailMessage) -> str:
    return str(mail["Subject"])


@pytest.fixture
def loop(loop_app, session, session_factory, clock, loop_settings, smtp_server, tmp_path) -> Loop:
    clock.set(START - timedelta(hours=1))
    running = Loop(loop_app, session, session_factory, clock, loop_settings, smtp_server)
    ensure_builtin_segments(session, clock)  # what `nurture db upgrade` does
    session.commit()
    running.cli("campaigns", "load", str(STARTER_CAMPAIGNS))
    for slug in ("welcome-nurture", "mql-to-meeting", "re-engage-lost", "sunset-inactive"):
        running.cli("campaigns", "activate", slug)
    trade_show = tmp_path / "trade-show.csv"
    trade_show.write_text(TRADE_SHOW_LIST, encoding="utf-8")
    assert "2 created" in running.cli("leads", "import", str(trade_show), "--tag", "cold", "--source", "trade-show")
    return running


def test_import_campaign_email_engagement_score_stage_handoff_loss_and_re_engagement(loop: Loop, session, clock):
    api_key = create_key(session, clock, "website and CRM").key
    session.commit()

    # Monday: both imported leads get the welcome email, each in its own language.
    loop.at(START)
    welcome = {mail["To"].addresses[0].addr_spec: mail for mail in loop.new_mail()}
    assert set(welcome) == {"ana.lima@acme.example", "elodie.roux@bouygues.example"}
    ana_welcome = welcome["ana.lima@acme.example"]
    assert ana_welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Ana" in _html(ana_welcome)
    assert _subject(ana_welcome) != _subject(welcome["elodie.roux@bouygues.example"])
    assert 'lang="fr"' in _html(welcome["elodie.roux@bouygues.example"])

    # Ana opens it; the worker's events pass turns the hit into points.
    loop.open(ana_welcome)
    clock.advance(timedelta(hours=1))
    assert loop.tick().events.applied == 1
    ana = loop.lead("ana.lima@acme.example")
    assert ana.score > 0 and ana.stage is Stage.SUBSCRIBER
    opened_score = ana.score

    # Thursday the guide, the Monday after the self-assessment; Ana takes it: +20 from the campaign.
    loop.at(START + timedelta(days=3))
    assert len(loop.new_mail()) == 2
    loop.at(START + timedelta(days=7))
    qualify = {mail["To"].addresses[0].addr_spec: mail for mail in loop.new_mail()}
    assert set(qualify) == {"ana.lima@acme.example", "elodie.roux@bouygues.example"}
    loop.click(qualify["ana.lima@acme.example"], "https://www.example.com/resources/pipeline-assessment")
    clock.advance(timedelta(hours=1))
    loop.tick()
    ana = loop.lead("ana.lima@acme.example")
    assert ana.score >= opened_score + 5 + 20
    assert "took-assessment" in {tag.name for tag in ana.tags}
    welcome_enrollment = session.scalar(
        select(Enrollment).where(Enrollment.lead_id == ana.id).order_by(Enrollment.id)
    )
    assert welcome_enrollment.state is EnrollmentState.CONVERTED

    # The website reports a demo request: the score crosses the MQL threshold.
    loop.api_event(api_key, email="Ana.Lima@acme.example", type="form_submitted", properties={"form": "demo"})
    session.expire_all()
    ana = loop.lead("ana.lima@acme.example")
    assert ana.stage is Stage.MQL

    # The MQL campaign: a case study, four days later the offer of a call; Ana books it.
    loop.at(START + timedelta(days=7, hours=2))
    case_study = loop.new_mail()
    assert [mail["To"].addresses[0].addr_spec for mail in case_study] == ["ana.lima@acme.example"]
    loop.at(START + timedelta(days=11, hours=2))
    (call_offer,) = loop.new_mail()
    loop.click(call_offer, "https://www.example.com/book-a-call")
    clock.advance(timedelta(hours=1))
    loop.tick()
    (owner_alert,) = loop.new_mail()
    assert owner_alert["To"].addresses[0].addr_spec == OWNER
    assert "ana.lima@acme.example" in _html(owner_alert)
    ana = loop.lead("ana.lima@acme.example")
    assert ana.stage is Stage.SQL

    # The CRM reports the deal lost; thirty days later the check-in goes out, and one click wins Ana back.
    lost_at = START + timedelta(days=14)
    clock.set(lost_at)
    loop.api_event(api_key, email="ana.lima@acme.example", type="deal_lost", properties={"reason": "no budget"})
    session.expire_all()
    assert loop.lead("ana.lima@acme.example").stage is Stage.LOST
    loop.tick()
    assert loop.new_mail() == []
    loop.at(lost_at + timedelta(days=29))
    assert loop.new_mail() == []
    loop.at(lost_at + timedelta(days=30, hours=1))
    (check_in,) = loop.new_mail()
    assert check_in["To"].addresses[0].addr_spec == "ana.lima@acme.example"
    assert loop.message_for(check_in).campaign == "re-engage-lost"
    loop.click(check_in, "https://")
    clock.advance(timedelta(hours=1))
    loop.tick()

    ana = loop.lead("ana.lima@acme.example")
    assert ana.stage is Stage.LEAD
    history = session.execute(
        select(StageChange.to_stage, StageChange.reason).where(StageChange.lead_id == ana.id).order_by(StageChange.id)
    ).all()
    stages = [change.to_stage for change in history]
    assert stages == [Stage.SUBSCRIBER, Stage.MQL, Stage.SQL, Stage.LOST, Stage.LEAD]
    reasons = [change.reason for change in history]
    assert reasons[1].startswith("score ")
    assert "mql-to-meeting" in reasons[2]
    assert reasons[3] == "deal lost: no budget"
    assert "re-engage-lost" in reasons[4]

    # Élodie never clicked: her welcome series ended without conversion, and nothing was sent twice.
    elodie = loop.lead("elodie.roux@bouygues.example")
    assert elodie.stage is Stage.SUBSCRIBER
    (series,) = session.scalars(select(Enrollment).where(Enrollment.lead_id == elodie.id)).all()
    assert (series.state, series.step_id) == (EnrollmentState.EXITED, "no-click")
    keys = session.scalars(select(Message.idempotency_key)).all()
    assert len(keys) == len(set(keys)) == len(loop.smtp.messages)
