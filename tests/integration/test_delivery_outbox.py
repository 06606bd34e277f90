"""The outbox: queueing, dispatching through the file backend, recovery, and what the dispatcher
does when a backend is unavailable or breaks."""

from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes
from email.policy import default

import pytest
from sqlalchemy import select

from nurture.delivery.backends.file import FileMailer
from nurture.delivery.compliance import MarketingComplianceError
from nurture.delivery.compose import compose_email
from nurture.delivery.dispatch import DEFAULT_STALE_AFTER, DispatchReport, _claim, dispatch_queued
from nurture.delivery.mailer import DeliveryResult, MailBackendUnavailable, MailConnection, Mailer, Outcome
from nurture.delivery.models import Message, MessageContent, MessageStatus
from nurture.delivery.outbox import queue_message
from nurture.delivery.outgoing import NURTURE_MESSAGE_ID_HEADER
from nurture.errors import NotFound, ValidationError
from nurture.leads.models import Activity
from tests.support.emails import render, unsubscribe_url_for


def queue_in_order(queue, clock, lead, count, **kwargs):
    """Queue ``count`` messages a second apart, so the outbox order is known."""
    ids = []
    for _ in range(count):
        ids.append(queue(lead, **kwargs).id)
        clock.advance(timedelta(seconds=1))
    return ids


def status_of(session, message_id):
    return session.scalar(select(Message.status).where(Message.id == message_id))


def row(session, message_id) -> Message:
    return session.execute(
        select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    ).scalar_one()


@pytest.fixture
def file_mailer(delivery_settings, clock):
    return FileMailer(delivery_settings.outbox_dir, clock, send_rate=1000)


class ScriptedMailer(Mailer):
    """A backend double for dispatcher behaviour: sends per a script of outcomes or exceptions."""

    name = "scripted"
    send_rate = 1000.0

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[list[str]] = []

    def connect(self):
        mailer = self

        class Connection(MailConnection):
            def _deliver(self, emails):
                mailer.calls.append([email.message_id for email in emails])
                step = mailer.script.pop(0) if mailer.script else Outcome.SENT
                if isinstance(step, BaseException):
                    raise step
                return DeliveryResult.for_all(emails, step, "scripted")

        return Connection()


# --- queueing -----------------------------------------------------------------------------------------


def queue_for(session, clock, lead, compose, key="k", **overrides):
    arguments = {
        "lead_id": lead.id,
        "to_address": lead.email,
        "template": "tips",
        "template_version": 3,
        "idempotency_key": key,
        "campaign": "welcome",
        "compose": compose,
        **overrides,
    }
    return queue_message(session, clock, **arguments)


def test_queue_gives_the_database_id_to_compose_and_stores_the_email(
    session, clock, make_lead, delivery_settings
):
    lead = make_lead("ada@example.com", first_name="Ada")
    composed = []

    def compose(message_id):
        url = unsubscribe_url_for(message_id)
        rendered = replace(render("Tips", "Hello Ada", url), links=("https://example.com/a", "https://example.com/b"))
        email = compose_email(
            rendered,
            settings=delivery_settings,
            message_id=message_id,
            lead_id=lead.id,
            to_address=lead.email,
            to_name="Ada",
            unsubscribe_url=url,
            campaign="welcome",
        )
        composed.append(email)
        return email

    message = queue_for(session, clock, lead, compose, key="enrollment:1:step:1:attempt:1")
    session.commit()
    [email] = composed
    stored = row(session, message.id)
    assert stored is message and email.message_id == message.id
    assert (stored.status, stored.template, stored.template_version) == (MessageStatus.QUEUED, "tips", "3")
    assert (stored.lead_id, stored.to_address, stored.campaign) == (lead.id, "ada@example.com", "welcome")
    assert (stored.subject, stored.created_at, stored.sent_at) == ("Tips", clock.now(), None)
    assert stored.links == ["https://example.com/a", "https://example.com/b"]
    content = session.get(MessageContent, message.id)
    assert content.html == email.html and content.envelope["headers"] == dict(email.headers)


def test_queue_is_idempotent(session, clock, make_lead, make_email):
    lead = make_lead("ada@example.com")
    calls = []

    def compose(message_id):
        calls.append(message_id)
        return make_email(lead, message_id=message_id)

    first = queue_for(session, clock, lead, compose)
    again = queue_for(session, clock, lead, compose)
    assert again is first and calls == [first.id]
    assert session.scalar(select(Message.id).where(Message.idempotency_key == "k")) == first.id


def test_queue_refuses_a_message_without_unsubscribe_link(session, clock, make_lead, make_email):
    lead = make_lead("ada@example.com")

    def compose(message_id):
        email = make_email(lead, message_id=message_id)
        return replace(email, html=email.html.replace("href=", "data-href="))

    with pytest.raises(MarketingComplianceError, match="template tips v3: HTML body has no link"):
        queue_for(session, clock, lead, compose)
    assert session.scalars(select(Message)).all() == []


def test_a_failing_compose_leaves_nothing_behind(session, clock, make_lead):
    lead = make_lead("ada@example.com")

    def compose(message_id):
        raise ValidationError("unknown variable", where="tips.html line 3")

    with pytest.raises(ValidationError, match=r"tips\.html line 3"):
        queue_for(session, clock, lead, compose)
    assert session.scalars(select(Message)).all() == []


def test_compose_must_return_the_email_of_this_row(session, clock, make_lead, make_email):
    lead = make_lead("ada@example.com")
    with pytest.raises(ValueError, match="compose returned an email for"):
        queue_for(session, clock, lead, lambda message_id: make_email(lead, message_id=message_id + 1))


def test_queue_validates_its_input(session, clock, make_lead, make_email):
    lead = make_lead("ada@example.com")

    def compose(message_id):
        return make_email(lead, message_id=message_id)

    with pytest.raises(ValidationError, match=r"^to_address: "):
        queue_for(session, clock, lead, compose, to_address="not-an-address")
    with pytest.raises(ValidationError, match=r"^idempotency_key: must not be empty"):
        queue_for(session, clock, lead, compose, key=" ")
    with pytest.raises(ValidationError, match=r"^template: is longer than 100 characters"):
        queue_for(session, clock, lead, compose, template="t" * 101)
    with pytest.raises(NotFound, match="no lead with id 999999"):
        queue_for(session, clock, lead, compose, lead_id=999_999)


def test_a_rolled_back_queue_sends_nothing(session, session_factory, clock, make_lead, queue, file_mailer):
    lead = make_lead("ada@example.com")
    session.commit()
    queue(lead, commit=False)
    session.rollback()
    report = dispatch_queued(session_factory, clock, file_mailer, sleeper=pytest.fail)
    assert report == DispatchReport()
    assert not file_mailer.outbox.exists()


# --- dispatching with the file backend ------------------------------------------------------------------


def test_dispatch_writes_eml_files_and_records_results(session, session_factory, clock, make_lead, queue, file_mailer):
    ada = queue(make_lead("ada@example.com", first_name="Ada", last_name="Lovelace"))
    zoe = queue(make_lead("zoe@example.com", first_name="Zoë"), subject="Bonjour Zoë")
    clock.advance(timedelta(minutes=1))
    report = dispatch_queued(session_factory, clock, file_mailer, limit=10, sleeper=lambda seconds: None)
    assert sorted(report.sent) == sorted([ada.id, zoe.id]) and report.summary().startswith("2 sent, 0 failed")
    for message in (ada, zoe):
        stored = row(session, message.id)
        assert stored.status is MessageStatus.SENT
        assert stored.sent_at == clock.now() and stored.claimed_at == clock.now()
        assert (stored.provider, stored.provider_message_id) == ("file", f"{message.id}.eml")
        parsed = message_from_bytes((file_mailer.outbox / f"{message.id}.eml").read_bytes(), policy=default)
        assert parsed[NURTURE_MESSAGE_ID_HEADER] == str(message.id)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message_from_bytes((file_mailer.outbox / f"{zoe.id}.eml").read_bytes(), policy=default)["Subject"]) == (
        "Bonjour Zoë"
    )
    assert not list(file_mailer.outbox.glob(".*.tmp"))
    activities = session.scalars(select(Activity).where(Activity.kind == "email_sent")).all()
    assert sorted(a.data["message_id"] for a in activities) == sorted([ada.id, zoe.id])
    assert {a.campaign for a in activities} == {"welcome"}


def test_dispatch_respects_its_limit_oldest_first(session, session_factory, clock, make_lead, queue, file_mailer):
    ids = queue_in_order(queue, clock, make_lead("ada@example.com"), 5)
    first = dispatch_queued(session_factory, clock, file_mailer, limit=3, sleeper=lambda seconds: None)
    assert first.sent == ids[:3]
    second = dispatch_queued(session_factory, clock, file_mailer, limit=3, sleeper=lambda seconds: None)
    assert second.sent == ids[3:]
    assert dispatch_queued(session_factory, clock, file_mailer, sleeper=lambda seconds: None) == DispatchReport()


def test_messages_of_one_template_version_go_out_together(session_factory, clock, make_lead, queue):
    lead = make_lead("ada@example.com")
    order = []
    for version in ("1", "2", "1", "2"):
        order += queue_in_order(queue, clock, lead, 1, template="tips", version=version)
    mailer = ScriptedMailer()
    dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert mailer.calls == [[order[0]], [order[2]], [order[1]], [order[3]]]


def test_sending_is_paced_by_the_shared_rate_limit(
    session, session_factory, clock, make_lead, queue, delivery_settings
):
    lead = make_lead("ada@example.com")
    ids = [queue(lead).id for _ in range(5)]
    start = clock.now()
    waits = []

    def sleeper(seconds):
        waits.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    mailer = FileMailer(delivery_settings.outbox_dir, clock, send_rate=2)
    dispatch_queued(session_factory, clock, mailer, sleeper=sleeper)
    sent_at = [row(session, message_id).sent_at - start for message_id in ids]
    # Five messages at two per second: slots 0, 0.5, 1, 1.5 and 2 seconds after the start.
    assert sorted(sent_at) == [timedelta(seconds=s) for s in (0, 0.5, 1, 1.5, 2)]
    assert waits == [0.5] * 4


# --- at most once -----------------------------------------------------------------------------------------


def test_a_message_left_sending_by_a_crash_becomes_uncertain_and_is_never_resent(
    session, session_factory, clock, make_lead, queue, file_mailer
):
    message = queue(make_lead("ada@example.com"))
    # A dispatcher claims the row, commits, and dies before sending.
    with session_factory() as crashed:
        _claim(crashed, clock, file_mailer, 10, DispatchReport())
        crashed.commit()
    assert status_of(session, message.id) is MessageStatus.SENDING

    clock.advance(DEFAULT_STALE_AFTER - timedelta(seconds=1))
    early = dispatch_queued(session_factory, clock, file_mailer, sleeper=lambda seconds: None)
    assert early == DispatchReport() and status_of(session, message.id) is MessageStatus.SENDING

    clock.advance(timedelta(seconds=2))
    report = dispatch_queued(session_factory, clock, file_mailer, sleeper=lambda seconds: None)
    assert report.interrupted == [message.id] and report.sent == []
    stored = row(session, message.id)
    assert stored.status is MessageStatus.UNCERTAIN and "interrupted while sending" in stored.error
    assert not file_mailer.outbox.exists()
    assert "1 interrupted earlier, now uncertain" in report.summary()


def test_an_unavailable_backend_puts_the_claim_back_in_the_queue(session, session_factory, clock, make_lead, queue):
    first, second, third = queue_in_order(queue, clock, make_lead("ada@example.com"), 3)
    mailer = ScriptedMailer(Outcome.SENT, MailBackendUnavailable("relay down"))
    report = dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert report.sent == [first] and sorted(report.requeued) == sorted([second, third])
    assert report.backend_error == "relay down" and report.summary().endswith("backend unavailable: relay down")
    assert mailer.calls == [[first], [second]]
    for message_id in (second, third):
        stored = row(session, message_id)
        assert (stored.status, stored.claimed_at, stored.error) == (MessageStatus.QUEUED, None, "not sent: relay down")
    later = dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert sorted(later.sent) == sorted([second, third])


def test_a_crash_inside_the_backend_leaves_that_call_uncertain(session, session_factory, clock, make_lead, queue):
    first, second, third = queue_in_order(queue, clock, make_lead("ada@example.com"), 3)
    mailer = ScriptedMailer(Outcome.SENT, RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert status_of(session, first) is MessageStatus.SENT
    assert status_of(session, second) is MessageStatus.UNCERTAIN
    assert status_of(session, third) is MessageStatus.QUEUED


def test_results_are_recorded_per_outcome(session, session_factory, clock, make_lead, queue):
    lead = make_lead("ada@example.com")
    ids = [queue(lead).id for _ in range(4)]
    mailer = ScriptedMailer(Outcome.SENT, Outcome.FAILED_PERMANENT, Outcome.FAILED_RETRYABLE, Outcome.UNCERTAIN)
    report = dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert (len(report.sent), len(report.failed), len(report.uncertain)) == (1, 2, 1)
    stored = {message_id: row(session, message_id) for message_id in ids}
    by_call = [stored[call[0]] for call in mailer.calls]
    assert [(m.status, m.retryable) for m in by_call] == [
        (MessageStatus.SENT, None),
        (MessageStatus.FAILED, False),
        (MessageStatus.FAILED, True),
        (MessageStatus.UNCERTAIN, None),
    ]
    assert all(m.provider == "scripted" for m in by_call)
    assert by_call[0].sent_at is not None and by_call[1].sent_at is None and by_call[1].error == "scripted"


def test_content_tampered_after_queueing_is_refused_at_dispatch(session, session_factory, clock, make_lead, queue):
    message = queue(make_lead("ada@example.com"))
    content = session.get(MessageContent, message.id)
    content.html = "<p>No way out</p>"
    session.commit()
    mailer = ScriptedMailer()
    report = dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)
    assert report.failed == [message.id] and mailer.calls == []
    stored = row(session, message.id)
    assert stored.status is MessageStatus.FAILED and stored.retryable is False
    assert stored.error.startswith("refused before sending: HTML body has no link to its unsubscribe URL")
