import html as html_entities
import re

from nurture.config import TemperatureThresholds
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, change_stage, create_lead, set_score
from nurture.segments.service import create_segment

ACTOR = Actor(ActorKind.USER, "test")
# A count cell: its link to the lead list and its number.
CELL = re.compile(r'<td class="num[^"]*"><a href="([^"]*)">(\d+)</a></td>')


def _lead(session, clock, email, stage=Stage.SUBSCRIBER, score=0, status=LeadStatus.ACTIVE):
    lead = create_lead(session, clock, email, actor=ACTOR)
    change_stage(session, clock, lead, stage, reason="test", actor=ACTOR)
    set_score(lead, score, TemperatureThresholds())
    lead.status = status
    return lead


def _row(html: str, marker: str) -> str:
    start = html.index(marker)
    return html[start : html.index("</tr>", start)]


def _cells(row: str) -> list[tuple[str, int]]:
    """The (link, number) of each count cell of a table row."""
    return [(html_entities.unescape(href), int(number)) for href, number in CELL.findall(row)]


def _row_numbers(html: str, stage: str) -> list[int]:
    """The cold, warm, hot and total cells of one stage's row."""
    return [number for _, number in _cells(_row(html, f'data-stage="{stage}"'))]


def _listed(html: str) -> list[str]:
    """The emails in the lead list's table, sorted."""
    return sorted(re.findall(r'<tr data-lead="\d+">\s*<th scope="row"><a href="/leads/\d+">([^<]+)</a>', html))


def _seed(session, clock) -> None:
    _lead(session, clock, "a@example.com", Stage.MQL, 25)
    _lead(session, clock, "b@example.com", Stage.MQL, 60)
    _lead(session, clock, "c@example.com", Stage.MQL, 70)
    _lead(session, clock, "d@example.com", Stage.LOST, 0)
    _lead(session, clock, "e@example.com", Stage.MQL, 90, LeadStatus.UNSUBSCRIBED)
    session.commit()


def test_home_counts_active_leads_by_stage_and_temperature(session, clock, logged_in_client):
    _seed(session, clock)

    response = logged_in_client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert _row_numbers(html, "mql") == [0, 1, 2, 3]
    assert _row_numbers(html, "lost") == [1, 0, 0, 1]
    assert "1 suppressed" in html


def test_each_count_links_to_the_active_leads_it_counts(session, clock, logged_in_client):
    _seed(session, clock)
    html = logged_in_client.get("/").get_data(as_text=True)

    assert _cells(_row(html, 'data-stage="mql"')) == [
        ("/leads?stage=mql&temperature=cold&status=active", 0),
        ("/leads?stage=mql&temperature=warm&status=active", 1),
        ("/leads?stage=mql&temperature=hot&status=active", 2),
        ("/leads?stage=mql&status=active", 3),
    ]
    footer = html[html.index("<tfoot>") : html.index("</tfoot>")]
    assert _cells(footer) == [
        ("/leads?temperature=cold&status=active", 1),
        ("/leads?temperature=warm&status=active", 1),
        ("/leads?temperature=hot&status=active", 2),
        ("/leads?status=active", 4),
    ]

    # The unsubscribed hot MQL (e) is not counted, so the list the count links to leaves it out too.
    hot_mql = logged_in_client.get("/leads?stage=mql&temperature=hot&status=active")
    assert hot_mql.status_code == 200
    assert _listed(hot_mql.get_data(as_text=True)) == ["b@example.com", "c@example.com"]
    mql = logged_in_client.get("/leads?stage=mql&status=active").get_data(as_text=True)
    assert _listed(mql) == ["a@example.com", "b@example.com", "c@example.com"]
    cold = logged_in_client.get("/leads?temperature=cold&status=active").get_data(as_text=True)
    assert _listed(cold) == ["d@example.com"]


def test_each_segment_count_links_to_its_leads(session, clock, logged_in_client):
    _seed(session, clock)
    create_segment(session, clock, "warm-mql", "Warm MQLs", {"all": [
        {"field": "stage", "op": "=", "value": "mql"}, {"field": "score", "op": ">=", "value": 65}]})  # fmt: skip
    session.commit()
    html = logged_in_client.get("/").get_data(as_text=True)

    [(href, count)] = _cells(_row(html, 'data-segment="warm-mql"'))
    assert href == "/leads?segment=warm-mql"
    listing = logged_in_client.get(href)
    assert listing.status_code == 200
    # Segments count suppressed leads too (e: unsubscribed, score 90), and so does their list.
    assert _listed(listing.get_data(as_text=True)) == ["c@example.com", "e@example.com"]
    assert count == 2
