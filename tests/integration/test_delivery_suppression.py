"""No email reaches an unsubscribed, bounced, complained or erased lead, by any path."""

from dataclasses import replace

import pytest
from sqlalchemy import delete, select

from nurture.delivery.backends.file import FileMailer
from nurture.delivery.dispatch import dispatch_queued
from nurture.delivery.mailer import DeliveryResult, MailConnection, Mailer, Outcome
from nurture.delivery.models import Message, MessageStatus
from nurture.delivery.outbox import queue_message
from nurture.delivery.suppression import (
    ClearedEmail,
    SuppressionBypassError,
    clear_for_sending,
    suppression_reasons,
)
from nurture.leads.lifecycle import SUPPRESSED_STATUSES, LeadStatus
from nurture.leads.models import Lead

SUPPRESSED = sorted(SUPPRESSED_STATUSES)


class RecordingMailer(Mailer):
    """Records every email a backend is handed; the gate must stop suppressed ones before this."""

    name = "recording"
    send_rate = 1000.0

    def __init__(self):
        self.handed: list[str] = []

    def connect(self):
        mailer = self

        class Connection(MailConnection):
            def _deliver(self, emails):
                mailer.handed += [email.to_address for email in emails]
                return DeliveryResult.for_all(emails, Outcome.SENT)

        return Connection()


def status_of(session, message_id):
    return session.scalar(select(Message.status).where(Message.id == message_id))


def error_of(session, message_id):
    return session.scalar(select(Message.error).where(Message.id == message_id))


def dispatch(session_factory, clock, mailer):
    return dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)


@pytest.mark.parametrize("status", SUPPRESSED)
def test_a_lead_suppressed_after_queueing_is_never_handed_to_the_backend(
    session, session_factory, clock, make_lead, queue, status
):
    lead = make_lead("ada@example.com")
    message = queue(lead)
    lead.status = status
    session.commit()
    mailer = RecordingMailer()
    report = dispatch(session_factory, clock, mailer)
    assert mailer.handed == []
    assert report.suppressed == [message.id] and report.sent == []
    assert status_of(session, message.id) is MessageStatus.SUPPRESSED
    assert error_of(session, message.id) == f"lead is {status.value}"


@pytest.mark.parametrize("status", SUPPRESSED)
def test_a_lead_already_suppressed_is_queued_as_suppressed_and_never_sent(
    session, session_factory, clock, make_lead, queue, status, tmp_path
):
    message = queue(make_lead("ada@example.com", status=status))
    assert status_of(session, message.id) is MessageStatus.SUPPRESSED
    mailer = FileMailer(tmp_path / "outbox", clock, send_rate=1000)
    assert dispatch(session_factory, clock, mailer).suppressed == []
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("status", SUPPRESSED)
@pytest.mark.parametrize("variant", ["Bob@Example.com", "BOB@EXAMPLE.COM", " bob@example.COM "])
def test_a_raw_address_of_a_suppressed_lead_is_refused_whoever_it_is_sent_for(
    session, session_factory, clock, make_lead, queue, status, variant
):
    make_lead("bob@example.com", status=status)
    ada = make_lead("ada@example.com")
    # Queued for an active lead, addressed (in any case) to a suppressed lead's mailbox.
    message = queue(ada, to_address=variant.strip())
    assert status_of(session, message.id) is MessageStatus.SUPPRESSED
    assert error_of(session, message.id) == (
        f"address {variant.strip()!r} belongs to a lead who is {status.value}"
    )


def test_an_address_suppressed_after_queueing_is_refused_at_dispatch(
    session, session_factory, clock, make_lead, queue
):
    bob = make_lead("bob@example.com")
    ada = make_lead("ada@example.com")
    message = queue(ada, to_address="BOB@example.com")
    assert status_of(session, message.id) is MessageStatus.QUEUED
    bob.status = LeadStatus.COMPLAINED
    session.commit()
    mailer = RecordingMailer()
    assert dispatch(session_factory, clock, mailer).suppressed == [message.id]
    assert mailer.handed == []


def test_a_batch_mixing_suppressed_and_active_leads_sends_only_to_the_active(
    session, session_factory, clock, make_lead, queue
):
    active = [make_lead(f"active{i}@example.com") for i in range(3)]
    doomed = [make_lead(f"{status.value}@example.com") for status in SUPPRESSED]
    messages = {lead.email: queue(lead) for lead in [*active, *doomed]}
    for lead, status in zip(doomed, SUPPRESSED, strict=True):
        lead.status = status
    session.commit()
    mailer = RecordingMailer()
    report = dispatch(session_factory, clock, mailer)
    assert sorted(mailer.handed) == sorted(lead.email for lead in active)
    assert sorted(report.suppressed) == sorted(messages[lead.email].id for lead in doomed)
    assert sorted(report.sent) == sorted(messages[lead.email].id for lead in active)


def test_an_erased_and_deleted_lead_takes_its_queued_messages_along(session, session_factory, clock, make_lead, queue):
    lead = make_lead("ada@example.com")
    message = queue(lead)
    session.execute(delete(Lead).where(Lead.id == lead.id))
    session.commit()
    mailer = RecordingMailer()
    dispatch(session_factory, clock, mailer)
    assert mailer.handed == [] and status_of(session, message.id) is None


def test_a_message_whose_lead_vanished_is_suppressed(session, clock, make_lead, make_email):
    outgoing = replace(make_email(make_lead("ada@example.com")), lead_id=987_654)
    clearance = clear_for_sending(session, [outgoing])
    assert clearance.cleared == [] and clearance.suppressed == {outgoing.message_id: "lead 987654 no longer exists"}


def test_suppression_reasons_per_recipient(session, make_lead):
    ada = make_lead("ada@example.com")
    bounced = make_lead("gone@example.com", status=LeadStatus.BOUNCED)
    reasons = suppression_reasons(
        session, [(ada.id, "ada@example.com"), (bounced.id, "gone@example.com"), (ada.id, "GONE@example.com")]
    )
    assert reasons == {1: "lead is bounced", 2: "address 'GONE@example.com' belongs to a lead who is bounced"}


# --- no way around the gate -----------------------------------------------------------------------------


def test_backends_refuse_emails_that_did_not_pass_the_gate(session, clock, make_lead, make_email, tmp_path):
    outgoing = make_email(make_lead("ada@example.com"))
    with FileMailer(tmp_path, clock, send_rate=1).connect() as connection:
        with pytest.raises(SuppressionBypassError, match="backends send only emails cleared"):
            connection.send([outgoing])
        with pytest.raises(SuppressionBypassError, match="only clear_for_sending may clear"):
            ClearedEmail(outgoing, object())

        class Forged(ClearedEmail):
            def __init__(self, email):
                self.email = email

        with pytest.raises(SuppressionBypassError):
            connection.send([Forged(outgoing)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", SUPPRESSED)
def test_the_gate_itself_never_clears_a_suppressed_lead(session, clock, make_lead, make_email, status):
    active = make_email(make_lead("ada@example.com"))
    suppressed = make_email(make_lead("bob@example.com", status=status))
    disguised = make_email(make_lead("carol@example.com"), to_address="Bob@Example.COM")
    clearance = clear_for_sending(session, [active, suppressed, disguised])
    assert [item.email for item in clearance.cleared] == [active]
    assert set(clearance.suppressed) == {suppressed.message_id, disguised.message_id}


def test_queue_message_for_a_suppressed_lead_records_why_and_renders_nothing(session, clock, make_lead):
    lead = make_lead("ada@example.com", status=LeadStatus.UNSUBSCRIBED)
    message = queue_message(
        session,
        clock,
        lead_id=lead.id,
        to_address=lead.email,
        template="t",
        template_version=1,
        idempotency_key="k",
        compose=pytest.fail,
    )
    assert (message.status, message.error) == (MessageStatus.SUPPRESSED, "lead is unsubscribed")
