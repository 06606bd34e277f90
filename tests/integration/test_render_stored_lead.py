"""Rendering for a lead read back from the database (SQLite and PostgreSQL): tags, custom attributes and
profile fields reach the template through the read-only view."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import FixedClock
from nurture.leads.lifecycle import Stage
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead
from nurture.rendering import SignedTrackingUrls, render_email
from nurture.rendering.context import SAMPLE_SENDER
from nurture.tracking.tokens import TokenPurpose, TokenSigner


def test_render_for_a_stored_lead(session: Session, clock: FixedClock) -> None:
    create_lead(
        session,
        clock,
        "Zoe.OBrien@Example.com",
        actor=Actor(ActorKind.IMPORT, "test"),
        stage=Stage.LEAD,
        tags=["webinar", "trial"],
        attributes={"plan": "trial", "trial_ends": "2026-02-01"},
        first_name="Zoë",
        company="Brontë & Partners",
        locale="fr_FR",
        timezone="Europe/Paris",
    )
    session.commit()
    session.expunge_all()
    lead = session.scalar(select(Lead).where(Lead.email_key == "zoe.obrien@example.com"))
    assert lead is not None

    signer = TokenSigner(["integration-key-0123456789abcdef"])
    email = render_email(
        "welcome.html",
        lead=lead,
        sender=SAMPLE_SENDER,
        now=clock.now(),
        message_id=77,
        urls=SignedTrackingUrls("https://nurture.test", signer),
    )

    assert email.subject == "Welcome to Nurture Demo, Zoë"
    assert "Brontë &amp; Partners" in email.html
    assert "1 février 2026" in email.text
    assert f"https://nurture.test/u/{signer.sign(TokenPurpose.UNSUBSCRIBE, lead.id)}" in email.html
    assert email.links[1] == "https://www.example.com/guides/import"
