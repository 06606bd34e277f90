"""``nurture segments ...`` commands, the built-in segments, and segment counts on the dashboard."""

from __future__ import annotations

import json
from datetime import timedelta

from nurture.cli import cli
from nurture.leads.lifecycle import LeadStatus, Stage, Temperature
from nurture.leads.models import ActorKind
from nurture.leads.service import Actor, create_lead, record_activity
from nurture.segments.builtin import BUILTIN_SEGMENTS, ensure_builtin_segments
from nurture.segments.service import (
    count_segment,
    create_segment,
    get_segment,
    list_segments,
    segment_query,
    update_segment,
)

IMPORT = Actor(ActorKind.IMPORT, "test")
FRENCH = {"field": "country", "op": "=", "value": "FR"}


def invoke(app, *args: str, **kwargs):
    return app.test_cli_runner().invoke(cli, ["segments", *args], **kwargs)


def add_leads(session, clock) -> None:
    create_lead(session, clock, "ann@example.com", actor=IMPORT, country="FR", company="Acme", tags=["vip"])
    create_lead(session, clock, "bob@example.com", actor=IMPORT, country="FR", first_name="Bob")
    create_lead(session, clock, "cy@example.com", actor=IMPORT, country="DE")
    session.commit()


def test_create_from_inline_json_then_count_and_list(app, session, clock):
    add_leads(session, clock)
    created = invoke(app, "create", "french", "--name", "French leads", "--rules", json.dumps(FRENCH))
    assert created.exit_code == 0, created.output
    assert created.output == "Created segment french (2 leads match now).\n"

    counted = invoke(app, "count", "french")
    assert (counted.exit_code, counted.output) == (0, "2\n")

    listed = invoke(app, "list")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == ["SLUG    NAME          LEADS", "french  French leads      2"]


def test_create_from_file_and_stdin(app, session, clock, tmp_path):
    add_leads(session, clock)
    rules_file = tmp_path / "vip.json"
    rules_file.write_text(json.dumps({"field": "tags", "op": "contains", "value": "vip"}))
    from_file = invoke(app, "create", "vip", "--name", "VIP", "--rules", str(rules_file), "--description", "Top")
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output == "Created segment vip (1 lead matches now).\n"
    germans = '{"field": "country", "op": "=", "value": "DE"}'
    from_stdin = invoke(app, "create", "germans", "--name", "Germans", "--rules", "-", input=germans)
    assert from_stdin.exit_code == 0, from_stdin.output
    session.expire_all()
    assert get_segment(session, "vip").description == "Top"
    assert count_segment(session, clock, get_segment(session, "germans")) == 1


def test_invalid_rules_are_one_line_with_the_rule_path(app, session):
    rules = {"all": [FRENCH, FRENCH, {"field": "country", "op": "equals", "value": "FR"}]}
    result = invoke(app, "create", "bad", "--name", "Bad", "--rules", json.dumps(rules))
    assert result.exit_code == 2, result.output
    assert result.output == "Error: all[2].op: unknown operator 'equals'\n"
    assert list_segments(session) == []


def test_other_user_errors_are_one_line(app, session, clock, tmp_path):
    create_segment(session, clock, "french", "French", FRENCH)
    session.commit()
    cases = [
        (("create", "french", "--name", "Again", "--rules", "{}"), "Error: rules: empty rule;"),
        (("create", "x", "--name", "X", "--rules", str(tmp_path / "missing.json")), "Error: --rules: no such file"),
        (("create", "x", "--name", "X", "--rules", "{nope"), "Error: rules: not valid JSON: "),
        (("create", "Bad Slug", "--name", "X", "--rules", "{}"), "Error: slug: 'Bad Slug' is not a valid slug"),
        (("count", "nope"), "Error: no segment with slug 'nope'"),
        (("show", "nope"), "Error: no segment with slug 'nope'"),
        (("update", "french", "--rules", '{"field": "score"}'), "Error: op: missing"),
    ]
    for args, start in cases:
        result = invoke(app, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith(start), (args, result.output)
        assert len(result.output.splitlines()) == 1, result.output
        assert "Traceback" not in result.output


def test_update_changes_only_what_is_given(app, session, clock):
    add_leads(session, clock)
    create_segment(session, clock, "french", "French", FRENCH, "FR")
    session.commit()
    result = invoke(app, "update", "french", "--rules", '{"field": "country", "op": "in", "value": ["FR", "DE"]}')
    assert result.exit_code == 0, result.output
    assert result.output == "Updated segment french (3 leads match now).\n"
    session.expire_all()
    segment = get_segment(session, "french")
    assert (segment.name, segment.description) == ("French", "FR")


def test_show_prints_the_rules_and_first_leads(app, session, clock):
    add_leads(session, clock)
    create_segment(session, clock, "french", "French leads", FRENCH, "Leads in France")
    session.commit()
    result = invoke(app, "show", "french", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "French leads (french)",
        "Leads in France",
        'Rules: country = "FR"',
        "2 leads match; showing 1.",
        "",
        "EMAIL            NAME  COMPANY  COUNTRY  STAGE       STATUS  SCORE  TAGS",
        "ann@example.com        Acme     FR       subscriber  active      0  vip",
    ]
    bad_limit = invoke(app, "show", "french", "--limit", "0")
    assert bad_limit.exit_code == 2
    assert "Traceback" not in bad_limit.output


def test_list_with_no_segments(app):
    result = invoke(app, "list")
    assert result.exit_code == 0
    assert result.output.startswith("No segments yet.")


# --- built-in segments ---------------------------------------------------------------------------------------


def test_builtin_segments_are_created_once_and_edits_survive(session, clock):
    ensure_builtin_segments(session, clock)
    slugs = [segment.slug for segment in list_segments(session)]
    assert slugs == ["active", "hot-leads", "inactive-90-days", "lost-opportunities", "mql-not-sql"]
    assert len(slugs) == len(BUILTIN_SEGMENTS)
    assert all(segment.builtin for segment in list_segments(session))

    update_segment(session, clock, "hot-leads", name="Very hot leads")
    ensure_builtin_segments(session, clock)
    assert len(list_segments(session)) == len(BUILTIN_SEGMENTS)
    assert get_segment(session, "hot-leads").name == "Very hot leads"


def test_builtin_segments_select_the_intended_leads(session, clock):
    now = clock.now()
    clock.set(now - timedelta(days=120))
    veteran = create_lead(session, clock, "veteran@example.com", actor=IMPORT)
    opener = create_lead(session, clock, "opener@example.com", actor=IMPORT)
    gone = create_lead(session, clock, "gone@example.com", actor=IMPORT, stage=Stage.LOST)
    clock.set(now)
    create_lead(session, clock, "newbie@example.com", actor=IMPORT, stage=Stage.MQL)
    hot = create_lead(session, clock, "hot@example.com", actor=IMPORT, stage=Stage.MQL)
    hot.temperature = Temperature.HOT
    unsubscribed = create_lead(session, clock, "unsub@example.com", actor=IMPORT, stage=Stage.LOST)
    unsubscribed.status = LeadStatus.UNSUBSCRIBED
    unsubscribed.temperature = Temperature.HOT
    record_activity(session, opener, "opened", now - timedelta(days=10))
    record_activity(session, veteran, "opened", now - timedelta(days=100))
    record_activity(session, veteran, "sent", now - timedelta(days=5))
    session.flush()
    ensure_builtin_segments(session, clock)

    def members(slug: str) -> set[str]:
        return {lead.email for lead in session.scalars(segment_query(session, clock, get_segment(session, slug)))}

    assert members("active") == {
        "veteran@example.com",
        "opener@example.com",
        "gone@example.com",
        "newbie@example.com",
        "hot@example.com",
    }
    assert members("hot-leads") == {"hot@example.com"}
    assert members("mql-not-sql") == {"newbie@example.com", "hot@example.com"}
    assert members("lost-opportunities") == {gone.email}
    assert members("inactive-90-days") == {"veteran@example.com", "gone@example.com"}


def test_dashboard_shows_live_segment_counts(logged_in_client, session, clock):
    add_leads(session, clock)
    create_segment(session, clock, "french", "French leads", FRENCH)
    session.commit()
    page = logged_in_client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    row = html[html.index('data-segment="french"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="num"><a href="/leads?segment=french">2</a></td>' in row
