"""The campaign report: the funnel's counts and rates over a period, A/B variants side by side, conversions
per day, the flow with its counts, the CSV export through the formula-safe writer, and bad periods."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from nurture.auth.models import Role
from nurture.engine.models import EnrollmentState, StepRun
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead
from tests.integration.test_tracking_support import make_message
from tests.integration.test_web_campaigns import campaigns, engagement, enroll, nurture_settings  # noqa: F401
from tests.integration.test_web_leads import client_as


def seed(session, clock, campaign):
    """Four leads through the welcome step: A/B variants a (3 sent, 2 opened by people, 1 clicked) and b
    (1 sent, opened by a machine only); two converted, one of them today."""
    for number in range(4):
        lead = create_lead(session, clock, f"l{number}@example.com", actor=Actor(ActorKind.SYSTEM))
        session.flush()
        state = EnrollmentState.CONVERTED if number < 2 else EnrollmentState.WAITING
        enrollment = enroll(session, clock, campaign, lead, state, "pause-2d")
        message = make_message(session, clock, lead, campaign=campaign.slug)
        variant = "a" if number < 3 else "b"
        session.add(StepRun(enrollment_id=enrollment.id, campaign_id=campaign.id, lead_id=lead.id, step_id="welcome",
                            step_type="send", outcome="queued", ran_at=clock.now(), message_id=message.id,
                            variant=variant))  # fmt: skip
        if number < 2:
            engagement(session, clock, message, "opened")
        if number == 0:
            engagement(session, clock, message, "clicked")
        if number == 3:
            engagement(session, clock, message, "opened", machine=True)
    session.commit()


def test_the_report_counts_the_period(app, make_user, session, clock, campaigns):  # noqa: F811
    trial = campaigns["trial-onboarding"]
    seed(session, clock, trial)
    client = client_as(app, make_user, Role.VIEWER)
    today = clock.now().date()
    page = client.get(f"/campaigns/trial-onboarding/report?from={today}&to={today}").get_data(as_text=True)
    welcome = page[page.index('<th scope="row">welcome</th>') :].split("</tr>")[0]
    assert [cell for cell in welcome.split('class="num">')[1:]][:5] == [
        "4</td><td ", "4</td><td ", "0</td>\n        <td ", "2</td><td ", "1</td>\n        <td "
    ]  # fmt: skip
    assert "50.0%" in welcome and "25.0%" in welcome
    variants = page[page.index('id="variants"') :].split("</table>")[0]
    assert '<td>a</td><td class="num">3</td><td class="num">2</td><td class="num">1</td>' in variants
    assert '<td>b</td><td class="num">1</td><td class="num">0</td><td class="num">0</td>' in variants
    assert "Conversions per day: 2 in all" in page
    later = client.get(
        f"/campaigns/trial-onboarding/report?from={today + timedelta(days=1)}&to={today + timedelta(days=2)}"
    )
    assert "Conversions per day: 0 in all" in later.get_data(as_text=True)


def test_the_csv_is_the_funnel(app, make_user, session, clock, campaigns):  # noqa: F811
    trial = campaigns["trial-onboarding"]
    seed(session, clock, trial)
    today = clock.now().date()
    answer = client_as(app, make_user, Role.VIEWER).get(
        f"/campaigns/trial-onboarding/report.csv?from={today}&to={today}"
    )
    assert answer.headers["Content-Disposition"] == f'attachment; filename="trial-onboarding-{today}-{today}.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    welcome = next(row for row in rows if row["step"] == "welcome")
    assert (welcome["sent"], welcome["opened"], welcome["open rate"]) == ("4", "2", "0.5000")


def test_bad_periods_are_a_400_naming_the_field(app, make_user, campaigns):  # noqa: F811
    client = client_as(app, make_user, Role.VIEWER)
    for query, field in (
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
    ):
        answer = client.get(f"/campaigns/trial-onboarding/report?{query}")
        assert answer.status_code == 400 and f"{field}:" in answer.get_data(as_text=True)
    assert client.get("/campaigns/trial-onboarding/report.csv?from=1800-01-01").status_code == 400
    assert client.get("/campaigns/nope/report").status_code == 404
