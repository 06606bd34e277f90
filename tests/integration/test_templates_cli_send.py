"""`nurture templates send-test`: one real email through the configured backend (a real SMTP server on
127.0.0.1, or the file outbox), marked [TEST], untracked, stored nowhere, and refused by the same compliance
checks and suppression gate as any email."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.cli.templates import templates_group
from nurture.config import Settings
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.models import Message
from nurture.delivery.settings import BackendName, DeliverySettings, SmtpSecurity, SmtpServer
from nurture.leads.lifecycle import LeadStatus
from nurture.leads.models import Activity
from nurture.tracking.tokens import TokenPurpose, TokenSigner
from tests.conftest import TEST_SECRET
from tests.support.emails import POSTAL_ADDRESS

SENDER = Mailbox("news@nurture.test", "Nurture News")


@pytest.fixture
def delivery(request, tmp_path: Path) -> DeliverySettings:
    common = {"sender": SENDER, "postal_address": POSTAL_ADDRESS, "list_id": "<news.nurture.test>", "send_rate": 100.0}
    if getattr(request, "param", "file") == "smtp":
        server = request.getfixturevalue("smtp_server")
        endpoint = SmtpServer(server.host, server.port, SmtpSecurity.NONE, timeout=5)
        return DeliverySettings(backend=BackendName.SMTP, smtp=endpoint, **common)
    return DeliverySettings(backend=BackendName.FILE, outbox_dir=tmp_path / "instance" / "outbox", **common)


@pytest.fixture
def nurture_settings(database_url: str, delivery: DeliverySettings) -> Settings:
    return Settings(
        database_url=database_url, secret_key=TEST_SECRET, base_url="https://nurture.test", delivery=delivery
    )


@pytest.fixture
def run(app):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        result = runner.invoke(templates_group, ["send-test", *args])
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return invoke


def nothing_recorded(session) -> bool:
    return (
        session.scalar(select(func.count()).select_from(Message)) == 0
        and session.scalar(select(func.count()).select_from(Activity).where(Activity.kind == "email_sent")) == 0
    )


def token_in(url_kind: str, body: str) -> str:
    found = re.search(rf"https://nurture\.test/{url_kind}/([A-Za-z0-9_-]+)", body)
    assert found is not None, f"no /{url_kind}/ link"
    return found.group(1)


@pytest.mark.parametrize("delivery", ["smtp"], indirect=True)
def test_a_test_email_to_a_lead_goes_out_marked_and_untracked(run, smtp_server, make_lead, session):
    tester = make_lead("tester@example.com", first_name="Tess")
    session.commit()
    result = run("welcome.html", "--to", "Tester@example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Sent '[TEST] Welcome to Nurture News, Ada' to Tester@example.com via smtp")

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["Tester@example.com"]
    message = received.message
    assert message["Subject"] == "[TEST] Welcome to Nurture News, Ada"
    assert message["X-Nurture-Message-ID"] == "0"
    assert message["Message-ID"].endswith("@nurture.test>") and "proof" in message["Message-ID"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Welcome aboard, Ada!" in html  # the made-up lead's data
    assert "/t/c/" not in html + text and "/t/o/" not in html  # nothing tracked
    assert "https://www.example.com/guides/import" in html
    # The unsubscribe link is the recipient's own, in the body and in List-Unsubscribe.
    signer = TokenSigner([TEST_SECRET])
    assert signer.verify(TokenPurpose.UNSUBSCRIBE, token_in("u", html)) == (tester.id,)
    assert f"https://nurture.test/u/{token_in('u', html)}" in message["List-Unsubscribe"]
    assert POSTAL_ADDRESS in text
    assert nothing_recorded(session)


@pytest.mark.parametrize("delivery", ["smtp"], indirect=True)
def test_a_lead_fills_a_test_email_to_another_address_without_exposing_its_unsubscribe_link(
    run, smtp_server, make_lead, session
):
    make_lead("zoe@example.com", first_name="Zoë", company="Brontë & Partners")
    session.commit()
    result = run("welcome.html", "--to", "proofreader@example.org", "--lead", "zoe@example.com")
    assert result.exit_code == 0, result.output
    [received] = smtp_server.messages
    html = received.message.get_body(("html",)).get_content()
    assert "Welcome aboard, Zoë!" in html and "Brontë &amp; Partners" in html
    # Signed for no lead: a click in the proof unsubscribes nobody, least of all Zoë.
    assert TokenSigner([TEST_SECRET]).verify(TokenPurpose.UNSUBSCRIBE, token_in("u", html)) == (0,)
    assert nothing_recorded(session)


@pytest.mark.parametrize("delivery", ["smtp"], indirect=True)
@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("unsubscribed", ("welcome.html", "--to", "gone@example.com"),
         "Error: gone@example.com: not sent: lead is unsubscribed"),
        ("unsubscribed", ("welcome.html", "--to", "GONE@example.com", "--lead", "zoe@example.com"),
         "Error: GONE@example.com: not sent: lead is unsubscribed"),
        ("", ("welcome.html", "--to", "someone@example.com"),
         "Error: --to: someone@example.com is not a lead's address, so the suppression gate has no lead to check: "
         "pass --lead EMAIL (the lead whose data fills the email) or send to a lead's address"),
        ("", ("welcome.html", "--to", "not an address"), "Error: --to: An email address must have an @-sign."),
        ("", ("nope.html", "--to", "zoe@example.com"), "Error: nope.html: template 'nope.html' not found"),
    ],
)  # fmt: skip
def test_refused_test_emails_are_never_sent(run, smtp_server, make_lead, session, setup, args, message):
    make_lead("zoe@example.com", first_name="Zoë")
    if setup == "unsubscribed":
        make_lead("gone@example.com", status=LeadStatus.UNSUBSCRIBED)
    session.commit()
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert smtp_server.messages == []


def test_the_file_backend_writes_the_test_email_to_the_outbox(run, make_lead, session, delivery):
    make_lead("tester@example.com")
    session.commit()
    result = run("newsletter.html", "--to", "tester@example.com")
    assert result.exit_code == 0, result.output
    written = delivery.outbox_dir / "0.eml"
    assert result.stdout.strip().endswith("via file (0.eml).")
    content = written.read_bytes()
    assert b"Subject: [TEST] " in content
    assert nothing_recorded(session)


def test_compliance_refuses_a_test_email_without_a_postal_address(app, run, make_lead, session, delivery):
    app.config["NURTURE_SETTINGS"] = Settings(
        database_url="sqlite://", secret_key=TEST_SECRET, base_url="https://nurture.test",
        delivery=DeliverySettings(outbox_dir=delivery.outbox_dir),
    )  # fmt: skip
    make_lead("tester@example.com")
    session.commit()
    result = run("welcome.html", "--to", "tester@example.com")
    assert result.exit_code == 2
    assert "no postal address configured (NURTURE_POSTAL_ADDRESS)" in result.stderr
    assert not delivery.outbox_dir.exists()


@pytest.mark.parametrize("delivery", ["smtp"], indirect=True)
def test_the_lead_vouches_for_an_address_that_is_no_lead(run, smtp_server, make_lead, session):
    # The gate takes lead ids only: for an address that is no lead's, --lead is the lead it checks, so a
    # suppressed lead's data never goes out, not even in a proof to a colleague.
    make_lead("gone@example.com", status=LeadStatus.UNSUBSCRIBED, first_name="Gone")
    session.commit()
    result = run("welcome.html", "--to", "proofreader@example.org", "--lead", "gone@example.com")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: proofreader@example.org: not sent: lead is unsubscribed"
    assert smtp_server.messages == []


def test_an_unknown_lead_is_refused_before_anything_is_rendered(run, make_lead, session, delivery):
    make_lead("zoe@example.com")
    session.commit()
    result = run("welcome.html", "--to", "proofreader@example.org", "--lead", "nobody@example.com")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: no lead with email 'nobody@example.com'"
    assert not delivery.outbox_dir.exists()
