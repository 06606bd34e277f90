import re

from nurture.config import TemperatureThresholds
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, change_stage, create_lead, set_score

ACTOR = Actor(ActorKind.USER, "test")


def _lead(session, clock, email, stage=Stage.SUBSCRIBER, score=0, status=LeadStatus.ACTIVE):
    lead = create_lead(session, clock, email, actor=ACTOR)
    change_stage(session, clock, lead, stage, reason="test", actor=ACTOR)
    set_score(lead, score, TemperatureThresholds())
    lead.status = status
    return lead


def _row_numbers(html: str, stage: str) -> list[int]:
    """The cold, warm, hot and total cells of one stage's row."""
    start = html.index(f'data-stage="{stage}"')
    row = html[start : html.index("</tr>", start)]
    return [int(n) for n in re.findall(r'<td class="num[^"]*">(\d+)</td>', row)]


def test_home_counts_active_leads_by_stage_and_temperature(session, clock, logged_in_client):
    _lead(session, clock, "a@example.com", Stage.MQL, 25)
    _lead(session, clock, "b@example.com", Stage.MQL, 60)
    _lead(session, clock, "c@example.com", Stage.MQL, 70)
    _lead(session, clock, "d@example.com", Stage.LOST, 0)
    _lead(session, clock, "e@example.com", Stage.MQL, 90, LeadStatus.UNSUBSCRIBED)
    session.commit()

    response = logged_in_client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert _row_numbers(html, "mql") == [0, 1, 2, 3]
    assert _row_numbers(html, "lost") == [1, 0, 0, 1]
    assert "1 suppressed" in html
