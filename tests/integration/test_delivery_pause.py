"""A lead who paused its emails on the preferences page is not mailed until the pause ends: its queued emails
wait (postponed, not dropped), and go out in their turn once the pause is over."""

from datetime import timedelta

from sqlalchemy import select

from nurture.delivery.dispatch import dispatch_queued
from nurture.delivery.models import Message, MessageStatus
from nurture.tracking.subscriptions import save_preferences
from tests.integration.test_delivery_suppression import RecordingMailer


def status_of(session, message_id):
    session.expire_all()
    return session.scalar(select(Message.status).where(Message.id == message_id))


def dispatch(session_factory, clock, mailer):
    return dispatch_queued(session_factory, clock, mailer, sleeper=lambda seconds: None)


def pause(session, clock, lead, days):
    save_preferences(session, clock, lead.id, topics_off=[], pause_days=days, known_topics=[])
    session.commit()


def test_a_paused_leads_email_waits_until_the_pause_ends(session, session_factory, clock, make_lead, queue):
    paused = make_lead("ada@example.com")
    other = make_lead("bob@example.com")
    pause(session, clock, paused, 3)
    held = queue(paused)
    sent = queue(other)
    mailer = RecordingMailer()

    report = dispatch(session_factory, clock, mailer)
    assert report.sent == [sent.id] and mailer.handed == ["bob@example.com"]
    assert status_of(session, held.id) is MessageStatus.QUEUED

    clock.advance(timedelta(days=2, hours=23))
    assert dispatch(session_factory, clock, mailer).sent == []
    assert status_of(session, held.id) is MessageStatus.QUEUED

    clock.advance(timedelta(hours=1, seconds=1))
    assert dispatch(session_factory, clock, mailer).sent == [held.id]
    assert mailer.handed == ["bob@example.com", "ada@example.com"]


def test_a_pause_taken_after_queueing_holds_the_email_and_lifting_it_releases_it(
    session, session_factory, clock, make_lead, queue
):
    lead = make_lead("ada@example.com")
    message = queue(lead)
    pause(session, clock, lead, 30)
    mailer = RecordingMailer()
    assert dispatch(session_factory, clock, mailer).sent == [] and mailer.handed == []
    pause(session, clock, lead, 0)
    assert dispatch(session_factory, clock, mailer).sent == [message.id]


def test_emails_to_others_about_a_paused_lead_are_not_held(session, session_factory, clock, make_lead, queue):
    lead = make_lead("ada@example.com")
    pause(session, clock, lead, 3)
    alert = queue(lead, to_address="owner@example.com")
    mailer = RecordingMailer()
    assert dispatch(session_factory, clock, mailer).sent == [alert.id] and mailer.handed == ["owner@example.com"]
