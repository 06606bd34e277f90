"""Machine engagement heuristics: request evidence and click bursts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.tracking.machine import Click, burst_clicks, classify_request

SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize(
    ("method", "agent", "ip", "reason"),
    [
        ("GET", CHROME, "203.0.113.9", None),
        ("GET", SAFARI, "17.58.1.1", None),  # a person on Apple's network with a real browser
        ("GET", "Mozilla/5.0", "203.0.113.9", "Apple Mail Privacy Protection"),
        ("GET", "Mozilla/5.0 (compatible)", "17.58.1.1", "Apple Mail Privacy Protection"),
        (
            "GET",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            None,
            "Google image proxy",
        ),
        ("GET", "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", None, "Yahoo mail proxy"),
        ("HEAD", CHROME, None, "HEAD request"),
        ("get", "", None, "no user agent"),
        ("GET", None, None, "no user agent"),
        ("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", None, "security scanner (Barracuda)"),
        ("GET", "Proofpoint URL Defense", None, "security scanner (Proofpoint)"),
        ("GET", "python-requests/2.31", None, "HTTP library"),
        ("GET", "curl/8.4.0", None, "HTTP library"),
        ("GET", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0", None, "headless browser"),
        ("GET", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", None, "link preview"),
        ("GET", "Mozilla/5.0 (compatible; Googlebot/2.1)", None, "crawler"),
    ],
)
def test_request_evidence(method, agent, ip, reason):
    assert classify_request(method, agent, ip) == reason


SENT = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
LINKS = ["https://a.example/1", "https://a.example/2", "https://a.example/3"]


def clicks(*offsets_and_links):
    return [Click(n, link, SENT + timedelta(seconds=offset)) for n, (offset, link) in enumerate(offsets_and_links)]


def test_every_link_within_the_window_is_a_scanner():
    flagged = burst_clicks(SENT, LINKS, clicks((4, LINKS[0]), (4, LINKS[1]), (5, LINKS[2]), (5, LINKS[2])))
    assert set(flagged) == {0, 1, 2, 3}
    assert flagged[0] == "clicked every link within 30 s of delivery"


def test_some_links_within_the_window_are_a_person():
    assert burst_clicks(SENT, LINKS, clicks((8, LINKS[0]), (9, LINKS[1]))) == {}


def test_every_link_but_one_of_them_late_is_a_person():
    assert burst_clicks(SENT, LINKS, clicks((5, LINKS[0]), (6, LINKS[1]), (45, LINKS[2]))) == {}


def test_a_click_faster_than_any_reader_is_a_machine():
    flagged = burst_clicks(SENT, LINKS, clicks((1.5, LINKS[0]), (12, LINKS[1])))
    assert flagged == {0: "clicked 1.5 s after delivery"}


def test_a_single_link_email_is_judged_on_speed_only():
    assert burst_clicks(SENT, LINKS[:1], clicks((5, LINKS[0]))) == {}
    assert burst_clicks(SENT, LINKS[:1], clicks((2, LINKS[0]))) == {0: "clicked 2.0 s after delivery"}


def test_an_unsent_message_has_no_delivery_to_measure_from():
    assert burst_clicks(None, LINKS, clicks((0, LINKS[0]))) == {}
