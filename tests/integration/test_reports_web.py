"""``GET /reports`` on both databases, over the history of test_reports.py (period: March 2026, now:
2026-04-15): sign-in required, any role may read, figures shown, bad period input answered with a message."""

from __future__ import annotations

import re

import pytest

from nurture.auth.models import Role
from tests.integration.test_reports import history  # noqa: F401  (the fixture)
from tests.support.signin import signed_in_client

MARCH = "/reports?from=2026-03-01&to=2026-03-31"


def row_cells(html: str, table_id: str, stage: str) -> list[str]:
    table = html[html.index(f'id="{table_id}"') :]
    start = table.index(f'data-stage="{stage}"')
    row = table[start : table.index("</tr>", start)]
    return [cell.replace("\u00a0", " ") for cell in re.findall(r'<td class="num">([^<]*)</td>', row)]


def signed_in(app, make_user, role: Role):
    user = make_user(f"{role.value}@example.com", role)
    return signed_in_client(app, user)


def test_reports_need_sign_in(client):
    response = client.get("/reports")

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.usefixtures("history")
def test_a_viewer_sees_funnel_lost_and_velocity(app, session, make_user):
    session.commit()
    client = signed_in(app, make_user, Role.VIEWER)

    response = client.get(MARCH)
    html = response.get_data(as_text=True)

    assert response.status_code == 200, html
    assert row_cells(html, "funnel", "subscriber") == ["5", "4", "0", "0", "1", "80.0%", "1", "20.0%"]
    assert row_cells(html, "funnel", "customer") == ["1", "0", "0", "0", "1", "—", "1", "100.0%"]
    assert 'id="new-customers">1<' in html
    drop_row = html[html.index('id="drop-off"') - 300 : html.index('id="drop-off"')]
    assert 'data-stage="mql"' in drop_row
    assert "re-engaged since (33.3%)" in html
    assert row_cells(html, "lost-by-stage", "mql") == ["1", "1"]
    assert "<th scope=\"row\">budget</th><td class=\"num\">1</td><td class=\"num\">1</td>" in html
    assert row_cells(html, "velocity", "lead") == ["3", "1d", "2d", "2d 14h", "1d 15h", "2", "40d 12h", "40d 21h", "3d"]
    assert 'data-stage="opportunity" class="bottleneck"' in html
    assert 'id="bottleneck"' in html
    assert 'value="2026-03-01"' in html and 'value="2026-03-31"' in html
    assert 'aria-current="page">Reports<' in html


def test_default_period_and_empty_database(logged_in_client):
    response = logged_in_client.get("/reports")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    # The clock fixture says 2026-01-15: the last 90 days.
    assert 'value="2025-10-18"' in html and 'value="2026-01-15"' in html
    assert row_cells(html, "funnel", "subscriber") == ["0", "0", "0", "0", "0", "—", "0", "—"]
    assert 'id="bottleneck"' not in html and 'id="drop-off"' not in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=31/03/2026", "from: &#39;31/03/2026&#39; is not a date"),
        ("to=2026-02-30", "to: &#39;2026-02-30&#39; is not a date"),
        ("from=2026-04-01&to=2026-03-01", "from: 2026-04-01 is after the end of the period"),
        ("to=9999-12-31", "to: a date before 9999-12-31"),
        ("from=" + "9" * 5000, "is not a date"),
    ],
)
def test_bad_period_gets_a_message_not_an_error_page(logged_in_client, query, message):
    response = logged_in_client.get(f"/reports?{query}")
    html = response.get_data(as_text=True)

    assert response.status_code == 400
    assert message in html
    assert 'id="period-problem"' in html
    assert 'id="funnel"' not in html


@pytest.mark.usefixtures("history")
def test_cohort_box_follows_the_entries_to_today(logged_in_client, session):
    session.commit()

    html = logged_in_client.get(MARCH + "&cohort=1").get_data(as_text=True)

    assert "2026-04-15 00:00 UTC</time> (followed to today)" in html
    assert row_cells(html, "funnel", "subscriber")[:2] == ["5", "5"]
    assert 'name="cohort" value="1" checked' in html


def test_earliest_dates_work_on_both_databases(logged_in_client):
    response = logged_in_client.get("/reports?from=0001-01-01&to=0001-01-02")

    assert response.status_code == 200
