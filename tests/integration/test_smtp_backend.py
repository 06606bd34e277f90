"""The SMTP backend against a real SMTP server (aiosmtpd on 127.0.0.1), through the dispatcher."""

from datetime import timedelta

from sqlalchemy import select

from nurture.delivery.backends.smtp import SmtpMailer
from nurture.delivery.dispatch import dispatch_queued
from nurture.delivery.mailer import Outcome
from nurture.delivery.models import Message, MessageStatus
from nurture.delivery.outgoing import NURTURE_MESSAGE_ID_HEADER
from nurture.delivery.settings import SmtpSecurity, SmtpServer
from nurture.delivery.suppression import clear_for_sending
from nurture.leads.lifecycle import LeadStatus
from tests.support.smtp_server import (
    LoopbackController,
    PasswordAuthenticator,
    RecordingHandler,
    start_smtp_server,
)
from tests.support.tls import make_loopback_certificate


def mailer_for(server, clock, security=SmtpSecurity.NONE, username=None, password=None, ssl_context=None):
    endpoint = SmtpServer(server.host, server.port, security, username, password, timeout=5)
    return SmtpMailer(endpoint, clock, send_rate=1000, ssl_context=ssl_context, local_hostname="localhost")


def dispatch(session_factory, clock, mailer, **kwargs):
    return dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None, **kwargs)


def stored(session, message_id) -> Message:
    return session.execute(
        select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    ).scalar_one()


def queue_in_order(queue, clock, leads, **kwargs):
    ids = []
    for lead in leads:
        ids.append(queue(lead, **kwargs).id)
        clock.advance(timedelta(seconds=1))
    return ids


def test_messages_arrive_as_multipart_alternative_with_every_header(
    session, session_factory, clock, make_lead, queue, smtp_server, delivery_settings
):
    lead = make_lead("jurgen@example.de", first_name="Jürgen", last_name="Müller, Jr.")
    message = queue(lead, subject="Ça va? Déjà vu — 新年快乐, a subject long enough to be folded over lines")
    report = dispatch(session_factory, clock, mailer_for(smtp_server, clock))
    assert report.sent == [message.id]

    [received] = smtp_server.messages
    assert received.mail_from == "news@nurture.test" and received.rcpt_tos == ["jurgen@example.de"]
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii() and b"=?utf-8?" in raw_headers
    email = received.message
    assert email.get_content_type() == "multipart/alternative"
    text, html = email.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8" and text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Hello Jürgen" in text.get_content() and "Hello Jürgen" in html.get_content()
    assert str(email["Subject"]) == "Ça va? Déjà vu — 新年快乐, a subject long enough to be folded over lines"
    assert email["From"].addresses[0].display_name == "Zoë from Nurture"
    assert email["From"].addresses[0].addr_spec == "news@nurture.test"
    assert email["To"].addresses[0].display_name == "Jürgen Müller, Jr."
    assert str(email["Reply-To"]) == "Nurture Team <hello@nurture.test>"
    assert email["Message-ID"] == f"<{message.id}@nurture.test>"
    assert email[NURTURE_MESSAGE_ID_HEADER] == str(message.id)
    assert email["List-Unsubscribe"] == (
        f"<https://nurture.test/u/{message.id}?t=sig&x=1>, "
        f"<mailto:unsubscribe@nurture.test?subject=unsubscribe%20{message.id}>"
    )
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["List-Id"] == "Nurture news <news.nurture.test>"
    assert email["Date"].datetime == clock.now()
    assert delivery_settings.postal_address in text.get_content()

    row = stored(session, message.id)
    assert (row.status, row.provider, row.provider_message_id) == (MessageStatus.SENT, "smtp", "Q1")


def test_one_connection_carries_the_whole_round(session_factory, clock, make_lead, queue, smtp_server):
    leads = [make_lead(f"lead{i}@example.com") for i in range(4)]
    ids = queue_in_order(queue, clock, leads)
    mailer = mailer_for(smtp_server, clock)
    report = dispatch(session_factory, clock, mailer)
    assert report.sent == ids
    assert [m.rcpt_tos for m in smtp_server.messages] == [[lead.email] for lead in leads]
    assert smtp_server.handler.connections == 1


def test_recipient_rejections_fail_that_message_and_the_connection_goes_on(
    session, session_factory, clock, make_lead, queue, smtp_server
):
    smtp_server.handler.reply_to_rcpt.update(
        {"gone@example.com": "550 5.1.1 No such user", "busy@example.com": "452 4.2.2 Mailbox full"}
    )
    leads = [make_lead(a) for a in ("gone@example.com", "busy@example.com", "ok@example.com")]
    gone, busy, ok = queue_in_order(queue, clock, leads)
    report = dispatch(session_factory, clock, mailer_for(smtp_server, clock))
    assert report.sent == [ok] and sorted(report.failed) == sorted([gone, busy])
    assert (stored(session, gone).retryable, stored(session, gone).error) == (
        False,
        "SMTP RCPT TO answered 550 5.1.1 No such user",
    )
    assert (stored(session, busy).retryable, stored(session, busy).status) == (True, MessageStatus.FAILED)
    assert smtp_server.handler.connections == 1


def test_suppressed_leads_never_reach_the_smtp_server(session, session_factory, clock, make_lead, queue, smtp_server):
    active, unsubscribed = make_lead("ada@example.com"), make_lead("bob@example.com")
    queue(active)
    queue(unsubscribed)
    unsubscribed.status = LeadStatus.UNSUBSCRIBED
    session.commit()
    dispatch(session_factory, clock, mailer_for(smtp_server, clock))
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ada@example.com"]]


def test_internationalised_address_goes_with_smtputf8(session_factory, clock, make_lead, queue, smtp_server):
    lead = make_lead("jürgen@müller.example")
    message = queue(lead)
    assert dispatch(session_factory, clock, mailer_for(smtp_server, clock)).sent == [message.id]
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["jürgen@müller.example"] and "SMTPUTF8" in received.mail_options
    # RFC 6532: the header carries the address as UTF-8, not encoded.
    assert "\r\nTo: jürgen@müller.example\r\n".encode() in received.data


def test_auth_with_the_credentials_from_the_url(session_factory, clock, make_lead, queue):
    authenticator = PasswordAuthenticator("apikey", "s3cret")
    server = start_smtp_server(authenticator=authenticator)
    try:
        message = queue(make_lead("ada@example.com"))
        mailer = mailer_for(server, clock, username="apikey", password="s3cret")
        assert dispatch(session_factory, clock, mailer).sent == [message.id]
        assert authenticator.logins == [b"apikey"]
    finally:
        server.controller.stop()


def test_refused_credentials_leave_the_messages_queued(session, session_factory, clock, make_lead, queue):
    server = start_smtp_server(authenticator=PasswordAuthenticator("apikey", "s3cret"))
    try:
        message = queue(make_lead("ada@example.com"))
        mailer = mailer_for(server, clock, username="apikey", password="wrong")
        report = dispatch(session_factory, clock, mailer)
        assert report.requeued == [message.id] and report.sent == []
        assert report.backend_error.startswith(f"SMTP server 127.0.0.1:{server.port} refused the credentials")
        assert stored(session, message.id).status is MessageStatus.QUEUED
        assert server.messages == []
    finally:
        server.controller.stop()


def test_starttls_then_auth_with_certificate_verification(session_factory, clock, make_lead, queue, tmp_path):
    certificate = make_loopback_certificate(tmp_path)
    authenticator = PasswordAuthenticator("apikey", "s3cret")
    server = start_smtp_server(
        tls_context=certificate.server_context(), authenticator=authenticator, require_starttls=True
    )
    try:
        message = queue(make_lead("ada@example.com"))
        mailer = mailer_for(
            server,
            clock,
            SmtpSecurity.STARTTLS,
            "apikey",
            "s3cret",
            ssl_context=certificate.client_context(),
        )
        assert dispatch(session_factory, clock, mailer).sent == [message.id]
        assert authenticator.logins == [b"apikey"]
    finally:
        server.controller.stop()


def test_starttls_refuses_an_untrusted_certificate(session, session_factory, clock, make_lead, queue, tmp_path):
    certificate = make_loopback_certificate(tmp_path)
    server = start_smtp_server(tls_context=certificate.server_context(), require_starttls=True)
    try:
        message = queue(make_lead("ada@example.com"))
        # The system trust store does not know our throw-away certificate.
        report = dispatch(session_factory, clock, mailer_for(server, clock, SmtpSecurity.STARTTLS))
        assert report.requeued == [message.id] and "CERTIFICATE_VERIFY_FAILED" in report.backend_error
        assert server.messages == []
    finally:
        server.controller.stop()


def test_implicit_tls(session_factory, clock, make_lead, queue, tmp_path):
    certificate = make_loopback_certificate(tmp_path)
    handler = RecordingHandler()
    controller = LoopbackController(
        handler, hostname="127.0.0.1", port=0, ssl_context=certificate.server_context(), ready_timeout=10
    )
    controller.start()
    try:
        message = queue(make_lead("ada@example.com"))

        class Endpoint:
            host, port = "127.0.0.1", controller.port

        mailer = mailer_for(Endpoint, clock, SmtpSecurity.SSL, ssl_context=certificate.client_context())
        assert dispatch(session_factory, clock, mailer).sent == [message.id]
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_unreachable_server_leaves_the_messages_queued(session, session_factory, clock, make_lead, queue):
    server = start_smtp_server()
    port = server.port
    server.controller.stop()
    message = queue(make_lead("ada@example.com"))

    class Gone:
        host = "127.0.0.1"

    Gone.port = port
    report = dispatch(session_factory, clock, mailer_for(Gone, clock))
    assert report.requeued == [message.id]
    assert report.backend_error.startswith(f"cannot open a session with SMTP server 127.0.0.1:{port}")
    assert stored(session, message.id).status is MessageStatus.QUEUED


def test_a_refused_sender_concerns_every_message(session, session_factory, clock, make_lead, queue, smtp_server):
    smtp_server.handler.reply_to_mail = "550 5.7.1 Sender not allowed"
    ids = queue_in_order(queue, clock, [make_lead("a@example.com"), make_lead("b@example.com")])
    report = dispatch(session_factory, clock, mailer_for(smtp_server, clock))
    assert sorted(report.requeued) == sorted(ids)
    assert report.backend_error == "SMTP server refused the sender news@nurture.test: 550 5.7.1 Sender not allowed"


def test_a_connection_closed_by_the_server_is_reopened(session, clock, make_lead, make_email):
    server = start_smtp_server()
    port = server.port
    cleared = clear_for_sending(
        session, [make_email(make_lead("a@example.com")), make_email(make_lead("b@example.com"))]
    ).cleared
    restarted = None
    try:
        with mailer_for(server, clock).connect() as connection:
            [first] = connection.send(cleared[:1])
            # The server goes away and comes back on the same port; the idle connection is dead.
            server.controller.stop()
            restarted = LoopbackController(server.handler, hostname="127.0.0.1", port=port, ready_timeout=10)
            restarted.start()
            [second] = connection.send(cleared[1:])
            assert connection.connections_opened == 2
        assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
        assert [m.rcpt_tos for m in server.handler.messages] == [["a@example.com"], ["b@example.com"]]
    finally:
        if restarted is not None:
            restarted.stop()
