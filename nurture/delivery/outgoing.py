"""The email handed to a backend: fully rendered, addressed to one lead, with every header decided.

Backends never make content decisions; whatever they send comes from an ``OutgoingEmail``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nurture.delivery.mailbox import Mailbox

# Our own id, repeated in a header and in provider metadata so that bounces, complaints and webhook
# events map back to the message row.
NURTURE_MESSAGE_ID_HEADER = "X-Nurture-Message-ID"
MESSAGE_ID_ARG = "nurture_message_id"
CAMPAIGN_ARG = "nurture_campaign"
ONE_CLICK = "List-Unsubscribe=One-Click"


class VouchedFooter(Protocol):
    """A renderer's word that ``html`` (that very string) links to ``unsubscribe_url`` and shows
    ``postal_address`` (``nurture.rendering.footer.FooterProof``)."""

    @property
    def html(self) -> str: ...

    @property
    def unsubscribe_url(self) -> str: ...

    @property
    def postal_address(self) -> str: ...


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: int
    lead_id: int
    to_address: str
    to_name: str | None
    sender: Mailbox
    reply_to: Mailbox | None
    subject: str
    html: str
    text: str
    # Message-ID, X-Nurture-Message-ID, List-Unsubscribe, List-Unsubscribe-Post, List-Id.
    headers: Mapping[str, str]
    # The one-click unsubscribe URL announced in List-Unsubscribe and linked from the body.
    unsubscribe_url: str
    postal_address: str
    custom_args: Mapping[str, str] = field(default_factory=dict)
    campaign: str | None = None
    # Target URL of each tracked link index, as rendered; stored with the message, never sent.
    links: tuple[str, ...] = ()
    # What the renderer vouches for in ``html``, so compliance need not scan it; never stored, so an email
    # read back from the outbox has none.
    footer: VouchedFooter | None = field(default=None, compare=False, repr=False)

    @property
    def recipient(self) -> Mailbox:
        return Mailbox(self.to_address, self.to_name or "")

    def envelope(self) -> dict[str, Any]:
        """Everything but the bodies and the columns of ``messages``, as a JSON document."""
        return {
            "sender": [self.sender.address, self.sender.name],
            "reply_to": [self.reply_to.address, self.reply_to.name] if self.reply_to else None,
            "to_name": self.to_name,
            "headers": dict(self.headers),
            "unsubscribe_url": self.unsubscribe_url,
            "postal_address": self.postal_address,
            "custom_args": dict(self.custom_args),
        }

    @classmethod
    def from_stored(
        cls,
        *,
        message_id: int,
        lead_id: int,
        to_address: str,
        subject: str,
        html: str,
        text: str,
        campaign: str | None,
        envelope: Mapping[str, Any],
    ) -> OutgoingEmail:
        reply_to = envelope.get("reply_to")
        return cls(
            message_id=message_id,
            lead_id=lead_id,
            to_address=to_address,
            to_name=envelope.get("to_name"),
            sender=Mailbox(*envelope["sender"]),
            reply_to=Mailbox(*reply_to) if reply_to else None,
            subject=subject,
            html=html,
            text=text,
            headers=dict(envelope["headers"]),
            unsubscribe_url=envelope["unsubscribe_url"],
            postal_address=envelope["postal_address"],
            custom_args=dict(envelope.get("custom_args") or {}),
            campaign=campaign,
        )
