"""Test sends ("proofs"): one real email from a template, to one address, through the configured backend.

A proof is rendered like any email, for a stored lead or a made-up one, and composed and checked like any
email (compose_email and its compliance check, then the suppression gate), but it is not a campaign send:
nothing is stored (no message row, no activity on anyone's timeline), nothing is tracked (no click URLs, no
open pixel, no view-online link) and its subject starts with ``[TEST]``.

The gate checks a lead: the recipient's own when the address is a lead's, else the lead whose data fills the
email. The unsubscribe and preferences links are the recipient's own when the address is a lead's, and
otherwise signed for no lead (id 0, which no row has): clicking them in a proof changes nobody's subscription,
least of all that of the lead whose data was used.
"""

from __future__ import annotations

import dataclasses
from email.utils import make_msgid

from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.delivery.compose import compose_email
from nurture.delivery.mailer import DeliveryResult, Mailer
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.settings import DeliverySettings
from nurture.delivery.suppression import clear_for_sending
from nurture.errors import ValidationError
from nurture.leads.emails import InvalidEmail, normalise_email
from nurture.leads.models import Lead
from nurture.leads.service import find_lead
from nurture.rendering.context import SenderView, lead_view, sample_lead
from nurture.rendering.links import LinkOptions, TrackingUrls
from nurture.rendering.renderer import EmailRenderer

SUBJECT_PREFIX = "[TEST] "
# Provider metadata marking a proof, and the message id it carries: ids of stored messages start at 1.
PROOF_ARG = "nurture_test"
NO_MESSAGE = 0
NO_LEAD = 0
UNTRACKED = LinkOptions(track_clicks=False, track_opens=False)


class _ProofUrls:
    """Unsubscribe and preferences links of the recipient, whoever's data the email shows; nothing tracked."""

    def __init__(self, urls: TrackingUrls, subscriber_id: int) -> None:
        self.urls = urls
        self.subscriber_id = subscriber_id

    def click_prefix(self, message_id: int) -> str:
        raise AssertionError("proofs are not tracked")

    def open_url(self, message_id: int) -> str:
        raise AssertionError("proofs are not tracked")

    def view_url(self, message_id: int) -> str:
        return ""

    def unsubscribe_url(self, lead_id: int) -> str:
        return self.urls.unsubscribe_url(self.subscriber_id)

    def preferences_url(self, lead_id: int) -> str:
        return self.urls.preferences_url(self.subscriber_id)


@dataclasses.dataclass(frozen=True)
class Proof:
    email: OutgoingEmail
    result: DeliveryResult


def send_proof(
    session: Session,
    clock: Clock,
    *,
    renderer: EmailRenderer,
    template: str,
    to_address: str,
    lead: Lead | None,
    sender: SenderView,
    urls: TrackingUrls,
    delivery: DeliverySettings,
    mailer: Mailer,
    subject: str | None = None,
) -> Proof:
    """Render ``template`` for ``lead`` (a made-up lead when None) and send it to ``to_address`` now, under
    ``subject`` when given (a campaign step's own subject line, already rendered) instead of the template's
    own, after the ``[TEST]`` mark. Raises
    ``ValidationError`` when the address is invalid or the gate refuses the email, ``TemplateProblem`` when the
    template is broken, ``MailBackendUnavailable`` when the backend cannot take it."""
    try:
        address = normalise_email(to_address)
    except InvalidEmail as exc:
        raise ValidationError(str(exc), where="--to") from None
    recipient = find_lead(session, address)
    vouching = recipient or lead
    if vouching is None:
        raise ValidationError(
            f"{address} is not a lead's address, so the suppression gate has no lead to check: "
            "pass --lead EMAIL (the lead whose data fills the email) or send to a lead's address",
            where="--to",
        )
    subscriber_id = recipient.id if recipient is not None else NO_LEAD
    compiled = renderer.compile(template)
    view = lead_view(lead) if lead is not None else sample_lead(id=subscriber_id)
    rendered = renderer.render(
        compiled,
        lead=view,
        sender=sender,
        now=clock.now(),
        campaign={"name": "Test send"},
        urls=_ProofUrls(urls, subscriber_id),
        options=UNTRACKED,
    )
    email = compose_email(
        dataclasses.replace(rendered, subject=SUBJECT_PREFIX + (subject or rendered.subject)),
        settings=delivery,
        message_id=NO_MESSAGE,
        lead_id=vouching.id,
        to_address=address,
        to_name=None,
        unsubscribe_url=rendered.unsubscribe_url,
        custom_args={PROOF_ARG: "1"},
    )
    # Every proof its own Message-ID: mailboxes drop a message whose id they have seen.
    email = dataclasses.replace(
        email, headers={**email.headers, "Message-ID": make_msgid("proof", domain=delivery.sender.domain)}
    )
    clearance = clear_for_sending(session, [email])
    refusals = [*clearance.suppressed.values(), *clearance.refused.values()]
    if refusals:
        raise ValidationError(f"not sent: {refusals[0]}", where=address)
    with mailer.connect() as connection:
        [result] = connection.send(clearance.cleared)
    return Proof(email, result)
