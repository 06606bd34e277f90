"""Composed emails reach the dispatcher of the same process only once the transaction that wrote them has
committed, and only for the row they were composed for."""

from nurture.delivery.handoff import COMPOSED, Composed, ComposedEmails, StoredRow, publish_after_commit
from tests.support.emails import render, unsubscribe_url_for


def composed(delivery_settings, message_id: int, key: str) -> Composed:
    from nurture.delivery.compose import compose_email

    url = unsubscribe_url_for(message_id)
    email = compose_email(
        render("Hi", "Hello", url),
        settings=delivery_settings,
        message_id=message_id,
        lead_id=7,
        to_address="ada@example.com",
        to_name=None,
        unsubscribe_url=url,
        campaign="welcome",
    )
    return Composed(key, "v1", email)


def row(message_id: int, key: str, **changes) -> StoredRow:
    values = {"idempotency_key": key, "template_version": "v1", "lead_id": 7, "to_address": "ada@example.com",
              "subject": "Hi", "campaign": "welcome"} | changes  # fmt: skip
    return StoredRow(message_id, **values)


def test_published_on_commit_forgotten_on_rollback(session, delivery_settings):
    COMPOSED.clear()
    publish_after_commit(session, [composed(delivery_settings, 1, "k1")])
    session.rollback()
    publish_after_commit(session, [composed(delivery_settings, 2, "k2")])
    assert len(COMPOSED) == 0  # nothing before the commit
    session.commit()
    assert set(COMPOSED.take([row(1, "k1"), row(2, "k2")])) == {2}
    assert len(COMPOSED) == 0


def test_an_email_stands_only_for_the_row_it_was_composed_for(delivery_settings):
    store = ComposedEmails()
    store.publish([composed(delivery_settings, 1, "k1"), composed(delivery_settings, 2, "k2")])
    assert store.take([row(1, "another key"), row(2, "k2", to_address="bob@example.com")]) == {}
    store.publish([composed(delivery_settings, 3, "k3")])
    assert store.take([row(3, "k3", template_version="v2")]) == {}
    assert len(store) == 0  # taken either way: a mismatch is read from the outbox


def test_the_store_is_bounded_oldest_first(delivery_settings):
    store = ComposedEmails(capacity=2)
    store.publish([composed(delivery_settings, number, f"k{number}") for number in (1, 2, 3)])
    assert set(store.take([row(number, f"k{number}") for number in (1, 2, 3)])) == {2, 3}
