"""Rendered emails for delivery tests: what nurture.rendering would produce, unsubscribe link and
postal address included."""

from __future__ import annotations

import html
from dataclasses import dataclass

POSTAL_ADDRESS = "Nurture GmbH, Müllerstraße 1, 10115 Berlin, Germany"


@dataclass(frozen=True)
class Rendered:
    """Stands in for nurture.rendering's RenderedEmail: what compose_email reads."""

    subject: str
    html: str
    text: str
    links: tuple[str, ...] = ()


def render(subject: str, greeting: str, unsubscribe_url: str, postal_address: str = POSTAL_ADDRESS) -> Rendered:
    url = html.escape(unsubscribe_url)
    body = (
        "<!doctype html><html><head><style>p{color:#333}</style></head><body>"
        f"<p>{html.escape(greeting)}</p><p>Thanks for reading.</p>"
        f'<p style="font-size:12px"><a href="{url}">Unsubscribe</a><br>{html.escape(postal_address)}</p>'
        "</body></html>"
    )
    text = f"{greeting}\n\nThanks for reading.\n\nUnsubscribe: {unsubscribe_url}\n{postal_address}\n"
    return Rendered(subject, body, text)


def unsubscribe_url_for(message_id: int) -> str:
    return f"https://nurture.test/u/{message_id}?t=sig&x=1"
