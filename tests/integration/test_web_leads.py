"""The lead pages: sign-in and roles, search, filters and pages, bad query strings, the lead page (score
breakdown, stage periods, timeline, enrollments), stage changes recorded with the user, tags, CSRF, 404s."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import url_for
from sqlalchemy import select

from nurture.auth.models import Role
from nurture.campaigns.store import load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.config import TemperatureThresholds
from nurture.engine.models import Enrollment, EnrollmentState
from nurture.engine.sending import OwnerAlertUrls
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Activity, ActorKind, Lead, StageChange
from nurture.leads.service import Actor, change_stage, create_lead, record_activity, set_score
from nurture.segments.service import create_segment
from nurture.tracking.events import NewEvent, random_key, record_event
from nurture.tracking.models import EventSource
from tests.conftest import EPOCH
from tests.integration.test_campaign_store import FIXTURES
from tests.integration.test_tracking_support import load_scoring
from tests.support.signin import signed_in_client

pytest_plugins = ["tests.integration.test_tracking_support"]

SYSTEM = Actor(ActorKind.SYSTEM, "test")
RULES = """half_life_days: 30
lifecycle: {mql_at: null, sql_at: null}
rules:
  - {name: demo-request, event: demo_requested, points: 40}
  - {name: vp, fit: {field: job_title, op: contains, value: VP}, points: 8}
"""


def make(session, clock, email, *, stage=Stage.SUBSCRIBER, score=0, status=LeadStatus.ACTIVE, **profile):
    lead = create_lead(session, clock, email, actor=SYSTEM, **profile)
    change_stage(session, clock, lead, stage, reason="test", actor=SYSTEM)
    set_score(lead, score, TemperatureThresholds())
    lead.status = status
    session.flush()
    return lead


def client_as(app, make_user, role: Role, email: str | None = None):
    user = make_user(email or f"{role.value}@example.com", role=role)
    return signed_in_client(app, user)


def listed(html: str) -> list[str]:
    """The emails in the lead table, in order."""
    return re.findall(r'<tr data-lead="\d+">\s*<th scope="row"><a href="/leads/\d+">([^<]+)</a>', html)


@pytest.fixture
def leads(session, clock):
    made = {
        "ada": make(session, clock, "ada@example.com", stage=Stage.MQL, score=60, first_name="Ada",
                    last_name="Lovelace", company="Analytical Engines"),
        "bob": make(session, clock, "bob@example.com", stage=Stage.LEAD, score=25, first_name="Bob",
                    company="Acme 100% Widgets"),
        "cy": make(session, clock, "cy@example.org", stage=Stage.MQL, score=5, status=LeadStatus.UNSUBSCRIBED),
    }  # fmt: skip
    session.commit()
    return made


# --- sign-in and roles ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/leads", "/leads/1", "/campaigns", "/campaigns/minimal"])
def test_pages_need_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_forms_need_sign_in(client, leads):
    response = client.post(f"/leads/{leads['ada'].id}/stage", data={"stage": "sql"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_viewer_reads_but_cannot_change_a_lead(app, make_user, leads, session):
    viewer = client_as(app, make_user, Role.VIEWER)
    page = viewer.get(f"/leads/{leads['ada'].id}")
    assert page.status_code == 200
    assert 'id="stage-form"' not in page.get_data(as_text=True)
    assert viewer.get("/leads").status_code == 200
    refused = viewer.post(f"/leads/{leads['ada'].id}/stage", data={"stage": "sql"})
    assert refused.status_code == 403
    assert viewer.post(f"/leads/{leads['ada'].id}/tags", data={"action": "add", "tag": "x"}).status_code == 403
    session.expire_all()
    assert session.get(Lead, leads["ada"].id).stage is Stage.MQL


# --- the list ------------------------------------------------------------------------------------------------------


def test_the_list_shows_every_lead_with_its_columns(logged_in_client, leads, session, clock):
    record_activity(session, leads["bob"], "form_submitted", EPOCH + timedelta(hours=3))
    session.commit()
    response = logged_in_client.get("/leads?sort=email")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert listed(html) == ["ada@example.com", "bob@example.com", "cy@example.org"]
    row = html[html.index(f'data-lead="{leads["bob"].id}"') :]
    row = row[: row.index("</tr>")]
    for cell in ("Bob", "Acme 100% Widgets", "Lead (prospect)", "warm", ">25<", "active", "2026-01-15 13:00 UTC"):
        assert cell in row, cell
    assert "Leads 1–3 of 3" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=ADA", ["ada@example.com"]),
        ("q=lovelace", ["ada@example.com"]),
        ("q=ada+lovelace", ["ada@example.com"]),
        ("q=engines", ["ada@example.com"]),
        ("q=100%25", ["bob@example.com"]),  # a literal %, not a wildcard
        ("q=example.org", ["cy@example.org"]),
        ("q=nobody", []),
        ("stage=mql", ["ada@example.com", "cy@example.org"]),
        ("stage=prospect", ["bob@example.com"]),  # the sales names work too
        ("temperature=hot", ["ada@example.com"]),
        ("status=unsubscribed", ["cy@example.org"]),
        ("stage=mql&status=active", ["ada@example.com"]),
        ("segment=warm-mql", ["ada@example.com"]),
        ("sort=score", ["ada@example.com", "bob@example.com", "cy@example.org"]),
    ],
)
def test_search_and_filters(logged_in_client, leads, session, clock, query, expected):
    create_segment(session, clock, "warm-mql", "Warm MQLs", {"all": [
        {"field": "stage", "op": "=", "value": "mql"}, {"field": "score", "op": ">=", "value": 20}]})  # fmt: skip
    session.commit()
    response = logged_in_client.get(f"/leads?{query}")
    assert response.status_code == 200
    found = listed(response.get_data(as_text=True))
    assert (sorted(found) if "sort=" not in query else found) == expected


def test_pages(logged_in_client, session, clock):
    for number in range(30):
        make(session, clock, f"lead{number:02d}@example.com")
    session.commit()
    first = logged_in_client.get("/leads?per_page=25&sort=email").get_data(as_text=True)
    assert len(listed(first)) == 25 and "Page 1 of 2" in first
    assert 'href="/leads?sort=email&amp;page=2&amp;per_page=25"' in first
    second = logged_in_client.get("/leads?sort=email&page=2&per_page=25").get_data(as_text=True)
    assert listed(second) == [f"lead{n}@example.com" for n in range(25, 30)]
    assert "Leads 26–30 of 30" in second
    beyond = logged_in_client.get("/leads?page=9").get_data(as_text=True)
    assert listed(beyond) == [] and "Page 9 is past the last page (1)" in beyond


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("stage=bogus", "stage: unknown stage &#39;bogus&#39;; expected one of subscriber, lead, mql"),
        ("temperature=lukewarm", "temperature: unknown value &#39;lukewarm&#39;; expected one of cold, warm, hot"),
        ("status=gone", "status: unknown value &#39;gone&#39;; expected one of active, unsubscribed"),
        ("sort=random", "sort: unknown value &#39;random&#39;"),
        ("page=0", "page: &#39;0&#39; is not a page number"),
        ("page=abc", "page: &#39;abc&#39; is not a page number"),
        ("page=99999999999999999999", "is not a page number"),
        ("per_page=7", "per_page: &#39;7&#39; is not a page size; expected one of 25, 50, 100"),
        ("segment=nope", "segment: no segment with slug &#39;nope&#39;"),
        ("q=" + "x" * 201, "q: longer than 200 characters"),
    ],
)
def test_bad_query_strings_get_a_clear_message(logged_in_client, leads, query, message):
    response = logged_in_client.get(f"/leads?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="query-problems"' in html
    assert message in html


def test_every_bad_parameter_is_named_at_once_and_the_good_ones_stay_in_the_form(logged_in_client):
    html = logged_in_client.get("/leads?stage=x&temperature=y&page=-1&status=bounced&q=acme").get_data(as_text=True)
    assert all(name in html for name in ("stage: ", "temperature: ", "page: "))
    assert '<option value="bounced" selected>' in html and 'name="q" value="acme"' in html


def test_a_segment_with_broken_rules_is_reported_not_a_500(logged_in_client, session, clock, leads):
    segment = create_segment(session, clock, "broken", "Broken", {"field": "stage", "op": "=", "value": "mql"})
    segment.rules = {"field": "no_such_field", "op": "=", "value": 1}
    session.commit()
    response = logged_in_client.get("/leads?segment=broken")
    assert response.status_code == 400
    assert "segment " in response.get_data(as_text=True)


# --- one lead ------------------------------------------------------------------------------------------------------


def test_the_lead_page(logged_in_client, session, clock, ctx):
    load_scoring(session, clock, RULES)
    lead = make(session, clock, "vp@example.com", first_name="Vera", job_title="VP Sales", country="France",
                tags=["trial", "webinar"], attributes={"plan": "pro", "seats": 12}, consent_basis="consent",
                consent_source="signup form")  # fmt: skip
    clock.advance(timedelta(days=2))
    change_stage(session, clock, lead, Stage.MQL, reason="demo request", actor=SYSTEM)
    record_event(session, clock, ctx, NewEvent(lead_id=lead.id, type="demo_requested", occurred_at=clock.now(),
                                               source=EventSource.API, dedupe_key=random_key("t")))  # fmt: skip
    result = load_campaign_files(session, clock, [FIXTURES / "valid" / "minimal.yaml"],
                                 template_exists=templates_in(FIXTURES / "email_templates"))  # fmt: skip
    campaign = result.saved[0].campaign
    session.add(Enrollment(campaign_id=campaign.id, lead_id=lead.id, state=EnrollmentState.WAITING, step_id="hello",
                           next_run_at=clock.now() + timedelta(hours=5), campaign_version=1, source="manual",
                           entered_at=clock.now(), updated_at=clock.now()))  # fmt: skip
    session.commit()
    clock.advance(timedelta(days=30))  # one half-life: the 40 points are worth 20 now

    response = logged_in_client.get(f"/leads/{lead.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in ("vp@example.com", "Vera", "VP Sales", "France", "trial", "webinar", "plan", "pro", "seats",
                 "signup form", "Marketing-qualified"):  # fmt: skip
        assert text in html, text
    score = html[html.index('id="score"') : html.index('id="stage-history"')]
    assert "Score 28" in score  # 8 fit + 20 engagement
    assert "demo-request" in score and "demo_requested #" in score and "+40" in score and "20.00" in score
    assert "vp" in score and "+8" in score
    history = html[html.index('id="stage-history"') : html.index('id="enrollments"')]
    assert re.search(r"Marketing-qualified <span class=\"badge\">current</span>.*?<td>30d</td>", history, re.S)
    assert re.search(r"Subscriber \(suspect\)</th>.*?<td>2d</td>", history, re.S)
    enrollments = html[html.index('id="enrollments"') : html.index('id="timeline"')]
    assert "Minimal" in enrollments and "waiting" in enrollments and "hello" in enrollments
    assert "2026-01-17 15:00 UTC" in enrollments  # next run
    timeline = html[html.index('id="timeline"') :]
    assert 'data-kind="stage_changed"' in timeline and 'data-kind="created"' in timeline


def test_the_timeline_has_pages(logged_in_client, session, clock):
    lead = make(session, clock, "busy@example.com")
    for minute in range(40):
        record_activity(session, lead, "page_viewed", EPOCH + timedelta(minutes=minute), {"n": minute})
    session.commit()
    total = session.query(Activity).filter(Activity.lead_id == lead.id).count()
    first = logged_in_client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert first.count("<li data-kind=") == 25 and f"({total})" in first
    assert f'href="/leads/{lead.id}?activity_page=2#timeline"' in first
    second = logged_in_client.get(f"/leads/{lead.id}?activity_page=2").get_data(as_text=True)
    assert second.count("<li data-kind=") == total - 25
    bad = logged_in_client.get(f"/leads/{lead.id}?activity_page=zero")
    assert bad.status_code == 400 and "activity_page: &#39;zero&#39; is not a page number" in bad.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/leads/999999", "/leads/abc", "/leads/-1"])
def test_an_unknown_lead_is_a_404_page(logged_in_client, path):
    response = logged_in_client.get(path)
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)


def test_forms_on_an_unknown_lead_are_404(logged_in_client):
    assert logged_in_client.post("/leads/999999/stage", data={"stage": "sql"}).status_code == 404
    assert logged_in_client.post("/leads/999999/tags", data={"action": "add", "tag": "x"}).status_code == 404


# --- changes -------------------------------------------------------------------------------------------------------


def test_a_stage_change_is_recorded_with_the_user(app, make_user, leads, session):
    sales = client_as(app, make_user, Role.SALES, "seller@example.com")
    lead_id = leads["ada"].id
    response = sales.post(f"/leads/{lead_id}/stage", data={"stage": "sql", "reason": "  called,  wants a demo "})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/leads/{lead_id}"
    session.expire_all()
    assert session.get(Lead, lead_id).stage is Stage.SQL
    change = session.scalars(select(StageChange).where(StageChange.lead_id == lead_id)
                             .order_by(StageChange.id.desc())).first()  # fmt: skip
    assert (change.from_stage, change.to_stage) == (Stage.MQL, Stage.SQL)
    assert (change.actor_kind, change.actor) == (ActorKind.USER, "seller@example.com")
    assert change.reason == "called, wants a demo"
    page = sales.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Moved ada@example.com to Sales-qualified." in page
    assert "user: seller@example.com" in page


def test_the_same_stage_records_nothing(logged_in_client, leads, session):
    before = session.query(StageChange).count()
    response = logged_in_client.post(f"/leads/{leads['ada'].id}/stage", data={"stage": "mql"}, follow_redirects=True)
    assert "already in stage Marketing-qualified" in response.get_data(as_text=True)
    assert session.query(StageChange).count() == before


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"stage": "won"}, "stage: unknown stage &#39;won&#39;"),
        ({}, "stage: unknown stage &#39;&#39;"),
        ({"stage": "sql", "reason": "x" * 501}, "reason: longer than 500 characters"),
    ],
)
def test_a_bad_stage_form_is_refused_with_a_message(logged_in_client, leads, session, form, message):
    response = logged_in_client.post(f"/leads/{leads['ada'].id}/stage", data=form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(Lead, leads["ada"].id).stage is Stage.MQL


def test_tags_are_added_and_removed(logged_in_client, leads, session):
    lead_id = leads["bob"].id
    added = logged_in_client.post(f"/leads/{lead_id}/tags", data={"action": "add", "tag": " vip "})
    assert added.status_code == 303
    session.expire_all()
    assert session.get(Lead, lead_id).tag_names == ["vip"]
    again = logged_in_client.post(f"/leads/{lead_id}/tags", data={"action": "add", "tag": "vip"}, follow_redirects=True)
    assert "Already tagged vip." in again.get_data(as_text=True)
    removed = logged_in_client.post(f"/leads/{lead_id}/tags", data={"action": "remove", "tag": "vip"})
    assert removed.status_code == 303
    session.expire_all()
    assert session.get(Lead, lead_id).tag_names == []
    kinds = [a.kind for a in session.scalars(select(Activity).where(Activity.lead_id == lead_id).order_by(Activity.id))]
    assert kinds[-2:] == ["tag_added", "tag_removed"]
    for form, message in (({"action": "add", "tag": "  "}, "tag: a tag needs a name"),
                          ({"action": "add", "tag": "t" * 101}, "longer than 100 characters"),
                          ({"action": "rename", "tag": "x"}, "action: expected add or remove")):  # fmt: skip
        refused = logged_in_client.post(f"/leads/{lead_id}/tags", data=form)
        assert refused.status_code == 400 and message in refused.get_data(as_text=True)


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_the_forms_need_a_csrf_token(csrf_app, make_user, leads, session):
    client = client_as(csrf_app, make_user, Role.SALES)
    lead_id = leads["ada"].id
    refused = client.post(f"/leads/{lead_id}/stage", data={"stage": "sql"})
    assert refused.status_code == 400 and b"Form expired" in refused.data
    assert client.post(f"/leads/{lead_id}/tags", data={"action": "add", "tag": "x"}).status_code == 400
    session.expire_all()
    assert session.get(Lead, lead_id).stage is Stage.MQL and session.get(Lead, lead_id).tag_names == []

    page = client.get(f"/leads/{lead_id}").get_data(as_text=True)
    token = re.search(r'id="stage-form".*?name="csrf_token" value="([^"]+)"', page, re.S)
    assert token
    accepted = client.post(f"/leads/{lead_id}/stage", data={"stage": "sql", "csrf_token": token.group(1)})
    assert accepted.status_code == 303
    session.expire_all()
    assert session.get(Lead, lead_id).stage is Stage.SQL


def test_owner_alert_links_open_the_lead_page(app, nurture_settings, leads):
    lead_id = leads["ada"].id
    link = OwnerAlertUrls(nurture_settings.base_url + "/").unsubscribe_url(lead_id)
    with app.test_request_context():
        assert link == nurture_settings.base_url + url_for("leads.show", lead_id=lead_id)


def test_navigation_links_to_the_pages(logged_in_client):
    html = logged_in_client.get("/").get_data(as_text=True)
    assert 'href="/leads"' in html and 'href="/campaigns"' in html

