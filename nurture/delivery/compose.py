"""Turning a rendered email into an ``OutgoingEmail``: sender, headers, provider metadata.

The renderer owns subject and bodies; this module adds what delivery owns: From and Reply-To from
the settings, Message-ID and our own id header, RFC 2369/8058 unsubscribe headers and List-Id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote

from nurture.delivery.compliance import check_marketing_email
from nurture.delivery.outgoing import (
    CAMPAIGN_ARG,
    MESSAGE_ID_ARG,
    NURTURE_MESSAGE_ID_HEADER,
    ONE_CLICK,
    OutgoingEmail,
    VouchedFooter,
)
from nurture.delivery.settings import DeliverySettings


class RenderedContent(Protocol):
    """What delivery needs from a rendered template (``nurture.rendering``'s RenderedEmail fits)."""

    @property
    def subject(self) -> str: ...

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def links(self) -> tuple[str, ...]: ...



def _footer(rendered: RenderedContent) -> VouchedFooter | None:
    """The renderer's proof of the footer (``RenderedEmail.footer``), when it has one."""
    footer: VouchedFooter | None = getattr(rendered, "footer", None)
    return footer


def list_unsubscribe_header(unsubscribe_url: str, mailto: str | None, message_id: int) -> str:
    """RFC 2369 form, https first; the mailto subject names the message so a reply can be matched."""
    targets = [f"<{unsubscribe_url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}?subject={quote(f'unsubscribe {message_id}')}>")
    return ", ".join(targets)


def compose_email(
    rendered: RenderedContent,
    *,
    settings: DeliverySettings,
    message_id: int,
    lead_id: int,
    to_address: str,
    to_name: str | None,
    unsubscribe_url: str,
    campaign: str | None = None,
    custom_args: Mapping[str, str] | None = None,
) -> OutgoingEmail:
    """The marketing email for one lead. Raises ``MarketingComplianceError`` if the rendered body
    lacks its unsubscribe link or the postal address."""
    headers = {
        "Message-ID": f"<{message_id}@{settings.sender.domain}>",
        NURTURE_MESSAGE_ID_HEADER: str(message_id),
        "List-Unsubscribe": list_unsubscribe_header(unsubscribe_url, settings.unsubscribe_mailto, message_id),
        "List-Unsubscribe-Post": ONE_CLICK,
        "List-Id": settings.list_id,
    }
    args = dict(custom_args or {})
    if campaign:
        args[CAMPAIGN_ARG] = campaign
    args[MESSAGE_ID_ARG] = str(message_id)
    email = OutgoingEmail(
        message_id=message_id,
        lead_id=lead_id,
        to_address=to_address,
        to_name=to_name or None,
        sender=settings.sender,
        reply_to=settings.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        headers=headers,
        unsubscribe_url=unsubscribe_url,
        postal_address=settings.postal_address,
        custom_args=args,
        campaign=campaign,
        links=tuple(rendered.links),
        footer=_footer(rendered),
    )
    check_marketing_email(email)
    return email
