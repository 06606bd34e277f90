"""Engagement that no person caused: mail privacy proxies that fetch every image, and security scanners
that fetch every link, often within seconds of delivery.

Two kinds of evidence:

- the request itself (``classify_request``), judged when the hit arrives: a HEAD request, a known proxy
  or scanner user agent, no user agent at all, Apple's bare ``Mozilla/5.0`` (Mail Privacy Protection), a
  fetch from Apple's network (17.0.0.0/8) without a browser's user agent;
- the pattern (``burst_clicks``), judged by the worker once the message's first seconds are over: every
  link of the message clicked within ``SCANNER_WINDOW`` of delivery, or a click faster than any reader
  (``INSTANT_CLICK``).

Flagged events are kept (reports show them apart) but count neither for scoring nor for branches, unless
the scoring settings say ``machine_engagement: count``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

SCANNER_WINDOW = timedelta(seconds=30)
INSTANT_CLICK = timedelta(seconds=3)
_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")

# (pattern, reason). Found case-insensitively anywhere in the user agent, first match wins.
_AGENTS: tuple[tuple[str, str], ...] = (
    ("GoogleImageProxy", "Google image proxy"),
    ("ggpht.com", "Google image proxy"),
    ("YahooMailProxy", "Yahoo mail proxy"),
    ("Outlook-iOS-Android", "Outlook image proxy"),
    ("Barracuda", "security scanner (Barracuda)"),
    ("Proofpoint", "security scanner (Proofpoint)"),
    ("Mimecast", "security scanner (Mimecast)"),
    ("MessageLabs", "security scanner (Symantec MessageLabs)"),
    ("Symantec", "security scanner (Symantec)"),
    ("TrendMicro", "security scanner (Trend Micro)"),
    ("Trend Micro", "security scanner (Trend Micro)"),
    ("Forcepoint", "security scanner (Forcepoint)"),
    ("Sophos", "security scanner (Sophos)"),
    ("FireEye", "security scanner (FireEye)"),
    ("IronPort", "security scanner (Cisco IronPort)"),
    ("Fortinet", "security scanner (Fortinet)"),
    ("Cloudmark", "security scanner (Cloudmark)"),
    ("SafeLinks", "security scanner (Microsoft Safe Links)"),
    ("Bitdefender", "security scanner (Bitdefender)"),
    ("Kaspersky", "security scanner (Kaspersky)"),
    ("HeadlessChrome", "headless browser"),
    ("PhantomJS", "headless browser"),
    ("python-requests", "HTTP library"),
    ("python-urllib", "HTTP library"),
    ("aiohttp", "HTTP library"),
    ("curl/", "HTTP library"),
    ("Wget", "HTTP library"),
    ("Go-http-client", "HTTP library"),
    ("okhttp", "HTTP library"),
    ("Java/", "HTTP library"),
    ("libwww-perl", "HTTP library"),
    ("facebookexternalhit", "link preview"),
    ("Slackbot", "link preview"),
    ("Twitterbot", "link preview"),
    ("LinkedInBot", "link preview"),
    ("WhatsApp", "link preview"),
    ("Discordbot", "link preview"),
    ("TelegramBot", "link preview"),
    ("SkypeUriPreview", "link preview"),
    ("bot", "crawler"),
    ("spider", "crawler"),
    ("crawler", "crawler"),
    ("scanner", "security scanner"),
)
# Lowercased once: plain substring tests are some fifty times faster than one case-insensitive alternation.
_LOWER_AGENTS = tuple((pattern.lower(), reason) for pattern, reason in _AGENTS)
_BARE_MOZILLA = "Mozilla/5.0"
_BROWSER_TOKENS = ("AppleWebKit", "Gecko", "Trident", "Chrome", "Safari", "Firefox")


def classify_request(method: str, user_agent: str | None, ip: str | None) -> str | None:
    """Why a tracking hit comes from a machine, judged on the request alone; None when it may be a person."""
    if method.upper() == "HEAD":
        return "HEAD request"
    agent = (user_agent or "").strip()
    if not agent:
        return "no user agent"
    if agent == _BARE_MOZILLA:
        return "Apple Mail Privacy Protection"
    lowered = agent.lower()
    for pattern, reason in _LOWER_AGENTS:
        if pattern in lowered:
            return reason
    # The prefix test first: parsing an address costs more than the rest of the checks together.
    if ip and ip.startswith("17.") and _in_apple_network(ip) and not any(token in agent for token in _BROWSER_TOKENS):
        return "Apple Mail Privacy Protection"
    return None


def _in_apple_network(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in _APPLE_NETWORK
    except ValueError:
        return False


@dataclass(frozen=True)
class Click:
    event_id: int
    url: str | None
    occurred_at: datetime


def burst_clicks(sent_at: datetime | None, links: Sequence[str] | None, clicks: Iterable[Click]) -> dict[int, str]:
    """The clicks of one message that a scanner made (event id -> reason), judged on all the clicks made
    within ``SCANNER_WINDOW`` of delivery. Call it once that window is over."""
    if sent_at is None:
        return {}
    early = [click for click in clicks if click.occurred_at - sent_at <= SCANNER_WINDOW]
    flagged: dict[int, str] = {}
    targets = set(links or ())
    clicked = {click.url for click in early}
    if len(targets) >= 2 and targets <= clicked:
        seconds = int(SCANNER_WINDOW.total_seconds())
        for click in early:
            flagged[click.event_id] = f"clicked every link within {seconds} s of delivery"
    for click in early:
        if click.event_id not in flagged and click.occurred_at - sent_at < INSTANT_CLICK:
            flagged[click.event_id] = f"clicked {(click.occurred_at - sent_at).total_seconds():.1f} s after delivery"
    return flagged


def window_closes(sent_at: datetime | None) -> datetime | None:
    """When the clicks of a message sent at ``sent_at`` can be judged; None when there is nothing to wait for."""
    return None if sent_at is None else sent_at + SCANNER_WINDOW
