"""Markers the compiler writes into a template, and the single pass that acts on them as the output streams
out of the render.

A marker is ``ESC + nonce + kind + payload + ESC + nonce``: the nonce is the compiled version's random token prefix,
which never leaves the server (every marker is replaced before output), so no value printed by a template can
forge one. Kinds:

- ``t`` / ``h``: what follows belongs to the plain-text part / the HTML (see channels.py);
- ``s`` + index: a static link, replaced by its click URL or target (see links.py);
- ``d`` … ``e``: around a href built by Jinja, replaced by its click URL or target.

``resolve`` handles all of them in one split of the rendered output: the text part and the hrefs cost one
pass over the email, not one per concern. (Giving each marker a ``yield`` of its own and routing the chunks as
they stream out was tried: the extra chunks cost more than the split.)
"""

from __future__ import annotations

from typing import Protocol

ESC = "\x1b"
TEXT = "t"
HTML = "h"
STATIC_LINK = "s"
DYNAMIC_LINK = "d"
DYNAMIC_LINK_END = "e"


def marker(nonce: str, kind: str, payload: str = "") -> str:
    # The prefix closes the marker too, so a split on it alternates output and payloads: no part needs
    # cutting again (each copy of a 20 KB email costs more than the rest of the bookkeeping).
    return f"{ESC}{nonce}{kind}{payload}{ESC}{nonce}"


class LinkResolver(Protocol):
    def static_href(self, index: str) -> str: ...

    def dynamic_href(self, escaped_url: str) -> str: ...


def resolve(output: str, nonce: str, links: LinkResolver) -> tuple[str, str]:
    """``(html, text)`` of a rendered output: channels separated, hrefs in place; the text still escaped."""
    prefix = ESC + nonce
    if prefix not in output:
        return output, ""
    return _split(output, prefix, links)


def _split(output: str, prefix: str, links: LinkResolver) -> tuple[str, str]:
    parts = output.split(prefix)
    if len(parts) % 2 == 0:
        raise ValueError("unbalanced compiler markers in a rendered email")
    html = [parts[0]]
    text: list[str] = []
    current = html
    url = ""
    for position in range(1, len(parts), 2):
        payload = parts[position]
        content = parts[position + 1]
        kind = payload[:1]
        if kind == TEXT:
            current = text
        elif kind == HTML:
            current = html
        elif kind == STATIC_LINK:
            current.append(links.static_href(payload[1:]))
        elif kind == DYNAMIC_LINK:
            url = content  # the rendered href, up to the end marker
            continue
        elif kind == DYNAMIC_LINK_END:
            current.append(links.dynamic_href(url))
        current.append(content)
    return "".join(html), "".join(text)
