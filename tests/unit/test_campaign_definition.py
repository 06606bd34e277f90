"""The parsed campaign: what each part of the format means, and the API the engine walks steps with."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from nurture.campaigns.definition import (
    ALL_WEEKDAYS,
    STEP_SHAPES,
    BranchStep,
    CampaignDefinition,
    CapPeriod,
    Duration,
    EmailEvent,
    EngagementCondition,
    EventEntry,
    ExitOutcome,
    ExitStep,
    FrequencyCap,
    GotoStep,
    ImportEntry,
    Reentry,
    RulesCondition,
    RulesEntry,
    SegmentEntry,
    SendStep,
    SendWindow,
    SetStep,
    StageEntry,
    StageExit,
    StepType,
    TagExit,
    UnknownStep,
    Variant,
    WaitForStep,
    WaitStep,
    WaitUntilAttribute,
    WaitUntilDate,
    WaitUntilTime,
    Weekday,
    link_matches,
)
from nurture.campaigns.validation import campaign_schema, check_file, check_text, dump_yaml, templates_in
from nurture.leads.lifecycle import Stage
from nurture.segments.rules import parse_rules
from nurture.segments.service import SLUG_PATTERN

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "campaigns"
TEMPLATES = templates_in(FIXTURES / "email_templates")
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="module")
def trial() -> CampaignDefinition:
    checked = check_file(FIXTURES / "valid" / "trial-onboarding.yaml", template_exists=TEMPLATES)
    assert checked.errors == ()
    assert checked.definition is not None
    return checked.definition


# --- durations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes", "canonical"),
    [
        ("90m", 90, "90m"),
        ("2h", 120, "2h"),
        ("3d", 3 * 1440, "3d"),
        ("1w", 7 * 1440, "1w"),
        ("14d", 14 * 1440, "2w"),
        ("24h", 1440, "1d"),
        ("1d12h", 36 * 60, "36h"),
        ("1w2d3h4m", 9 * 1440 + 3 * 60 + 4, "13144m"),
        ("0m", 0, "0d"),
        ("3650d", 3650 * 1440, "3650d"),
    ],
)
def test_duration_grammar_and_canonical_spelling(text, minutes, canonical):
    duration = Duration.parse(text)
    assert duration.minutes == minutes
    assert str(duration) == canonical
    assert Duration.parse(str(duration)) == duration


@pytest.mark.parametrize(
    "text", ["", "3", "d", "3x", "1h1d", "2 days", "3D", "1.5h", " 3d", "3d ", "3d\n", "+3d", "٣d"]
)
def test_bad_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        Duration.parse(text)


def test_signed_durations_and_the_upper_bound():
    assert Duration.parse("-30d", signed=True) == Duration(-30 * 1440)
    assert Duration.parse("+2h", signed=True) == Duration(120)
    assert str(Duration.parse("-30d", signed=True)) == "-30d"
    with pytest.raises(ValueError, match="longer than 3650 days"):
        Duration.parse("3651d")


# --- the schema agrees with the code -------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(campaign_schema())


def test_schema_spells_names_as_the_code_does():
    definitions = campaign_schema()["$defs"]
    assert definitions["stage"]["enum"] == [stage.value for stage in Stage]
    assert definitions["weekday"]["enum"] == [day.label for day in Weekday]
    assert definitions["step"]["properties"]["type"]["enum"] == [step_type.value for step_type in StepType]
    assert definitions["slug"]["pattern"] == SLUG_PATTERN.pattern
    assert campaign_schema()["properties"]["frequency_cap"]["properties"]["per"]["enum"] == list(CapPeriod)
    assert definitions["exitStep"]["properties"]["as"]["enum"] == list(ExitOutcome)


def test_schema_has_a_step_shape_for_every_type_with_its_jump_fields():
    definitions = campaign_schema()["$defs"]
    branches = definitions["step"]["allOf"]
    assert [branch["if"]["properties"]["type"]["const"] for branch in branches] == list(StepType)
    for branch, step_type in zip(branches, StepType, strict=True):
        shape = definitions[branch["then"]["$ref"].rsplit("/", 1)[-1]]
        for jump in STEP_SHAPES[step_type].jumps:
            assert shape["properties"][jump] == {"$ref": "#/$defs/stepId"}


# --- the example campaign, parsed ------------------------------------------------------------------------------


def test_campaign_wide_settings(trial):
    assert trial.slug == "trial-onboarding"
    assert trial.description == "Welcome new trial users, teach them the product, and hand the engaged ones to sales."
    assert trial.timezone == "Europe/Paris"
    assert trial.entry == (
        SegmentEntry("active"),
        RulesEntry(parse_rules({"all": [{"field": "source", "op": "=", "value": "webinar"}]})),
        ImportEntry(tag="webinar-2026"),
        EventEntry("trial_started"),
        StageEntry(Stage.LEAD),
    )
    assert trial.reentry == Reentry(Duration.parse("90d"))
    assert trial.goal == parse_rules({"entered_stage": "customer"})
    assert trial.exit_conditions == (StageExit(Stage.LOST), TagExit("do-not-nurture"))
    assert trial.send_window == SendWindow(
        frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI}), time(9), time(17, 30)
    )
    assert trial.frequency_cap == FrequencyCap(3, CapPeriod.WEEK)


def test_steps_parse_into_their_types(trial):
    assert trial.step("welcome") == SendStep(
        "welcome", "welcome", "Welcome, {{ lead.first_name or 'there' }}!", "Your trial starts today"
    )
    assert trial.step("pause-2d") == WaitStep("pause-2d", duration=Duration(2 * 1440))
    assert trial.step("opened-welcome") == BranchStep(
        "opened-welcome", EngagementCondition(EmailEvent.OPENED, "welcome"), None, "resend-welcome"
    )
    assert trial.step("tips") == SendStep(
        "tips",
        "tips",
        variants=(
            Variant("a", 50, subject="3 tips to get started"),
            Variant("b", 50, subject="Get more from your trial, {{ lead.first_name }}"),
        ),
    )
    assert trial.step("wait-click") == WaitForStep(
        "wait-click", "clicked", Duration(3 * 1440), "tips", "https://example.com/pricing*", "qualify", "next-tuesday"
    )
    assert trial.step("next-tuesday") == WaitStep("next-tuesday", until=WaitUntilTime(time(9, 30), Weekday.TUE))
    assert trial.step("engaged") == BranchStep(
        "engaged",
        RulesCondition(parse_rules({"all": [{"field": "score", "op": ">=", "value": 20}]})),
        "qualify",
        "before-renewal",
    )
    assert trial.step("qualify") == SetStep(
        "qualify", Stage.MQL, ("engaged",), ("cold",), {"nurtured": True, "trial_plan": "pro"}, 10
    )
    handoff = trial.step("handoff")
    assert (handoff.webhook, handoff.email_owner, handoff.template) == (
        "https://crm.example.com/hooks/nurture",
        True,
        "owner-handoff",
    )
    assert trial.step("converted") == ExitStep("converted", ExitOutcome.CONVERTED)
    assert trial.step("before-renewal") == WaitStep(
        "before-renewal", until=WaitUntilAttribute("renewal_date", Duration(-30 * 1440), time(10))
    )
    assert trial.step("demo-day") == WaitStep("demo-day", until=WaitUntilDate(date(2026, 12, 1)))
    assert trial.step("again") == GotoStep("again", "next-tuesday")


# --- walking the steps -------------------------------------------------------------------------------------------


def test_walking_by_id(trial):
    assert trial.first_step_id == "welcome"
    assert trial.step_ids[:3] == ("welcome", "pause-2d", "opened-welcome")
    assert trial.next_step_id("welcome") == "pause-2d"
    # A branch target left out falls through.
    assert trial.next_step_id("opened-welcome", True) == "tips"
    assert trial.next_step_id("opened-welcome", False) == "resend-welcome"
    assert trial.next_step_id("wait-click", True) == "qualify"
    assert trial.next_step_id("wait-click", False) == "next-tuesday"
    assert trial.next_step_id("again") == "next-tuesday"
    assert trial.next_step_id("converted") is None
    assert trial.next_step_id("wait-reply", False) == "again"


def test_the_end_of_the_list_ends_the_enrollment():
    checked = check_text(
        "slug: s\nname: S\nentry: [{on_event: x}]\nsteps:\n  - {id: only, type: wait, for: 1d}\n",
        template_exists=TEMPLATES,
    )
    assert checked.definition is not None
    assert checked.definition.next_step_id("only") is None
    assert checked.definition.successors("only") == (None,)


def test_successors_list_every_way_on(trial):
    assert trial.successors("opened-welcome") == ("tips", "resend-welcome")
    assert trial.successors("wait-reply") == ("converted", "again")
    assert trial.successors("converted") == ()
    assert trial.successors("again") == ("next-tuesday",)


def test_outcome_is_required_exactly_for_branching_steps(trial):
    with pytest.raises(ValueError, match="its outcome decides"):
        trial.next_step_id("engaged")
    with pytest.raises(ValueError, match="it has no outcome"):
        trial.next_step_id("welcome", True)


def test_unknown_step_ids_raise_not_found(trial):
    assert not trial.has_step("removed-in-an-edit")
    with pytest.raises(UnknownStep, match="campaign 'trial-onboarding' has no step 'removed-in-an-edit'"):
        trial.step("removed-in-an-edit")


def test_definitions_refuse_duplicate_ids_and_no_steps():
    with pytest.raises(ValueError, match="unique"):
        CampaignDefinition(slug="s", name="S", entry=(), steps=(ExitStep("a"), ExitStep("a")))
    with pytest.raises(ValueError, match="at least one step"):
        CampaignDefinition(slug="s", name="S", entry=(), steps=())


# --- what sends, waits and windows mean ------------------------------------------------------------------------


def test_variants_fall_back_to_the_step_and_are_chosen_by_weight(trial):
    tips = trial.step("tips")
    assert isinstance(tips, SendStep)
    a, b = tips.messages()
    assert (a.template, a.subject, a.variant) == ("tips", "3 tips to get started", "a")
    assert (b.template, b.variant) == ("tips", "b")
    assert tips.choose(0.0) == a
    assert tips.choose(0.4999) == a
    assert tips.choose(0.5) == b
    assert tips.choose(0.9999) == b


def test_zero_weight_variants_are_never_chosen():
    step = SendStep("s", "t", "S", variants=(Variant("off", 0), Variant("on", 3), Variant("also-off", 0)))
    assert {step.choose(roll / 10).variant for roll in range(10)} == {"on"}


def test_a_send_without_variants_has_one_message(trial):
    (message,) = trial.step("welcome").messages()
    assert (message.template, message.variant, message.preheader) == ("welcome", None, "Your trial starts today")


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("https://example.com/pricing", "https://example.com/pricing", True),
        ("https://example.com/pricing", "https://example.com/pricing?x=1", False),
        ("https://example.com/pricing*", "https://example.com/pricing?plan=pro", True),
        ("*/pricing*", "https://example.com/pricing/team", True),
        ("https://example.com/p?ge", "https://example.com/page", False),
        ("https://*.example.com/*", "https://docs.example.com/start", True),
        ("https://*.example.com/*", "https://example.org/start", False),
    ],
)
def test_link_patterns(pattern, url, matches):
    assert link_matches(pattern, url) is matches


def test_engagement_conditions_match_links():
    assert EngagementCondition(EmailEvent.CLICKED, "a").matches_link("https://anything")
    assert not EngagementCondition(EmailEvent.CLICKED, "a", "https://x/*").matches_link("https://y/")


def test_wait_for_knows_email_events():
    assert WaitForStep("w", "clicked", Duration(60)).email_event is EmailEvent.CLICKED
    assert WaitForStep("w", "demo_requested", Duration(60)).email_event is None


def test_wait_for_a_duration_is_elapsed_time():
    started = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    # The night Paris moves to summer time is still 24 hours long here.
    assert WaitStep("w", duration=Duration(1440)).wake_at(started, PARIS, {}) == datetime(2026, 3, 29, 12, tzinfo=UTC)


def test_wait_until_weekday_and_time_on_the_leads_clock():
    until = WaitStep("w", until=WaitUntilTime(time(9, 30), Weekday.TUE))
    # Monday 2026-01-12 10:00 UTC is 11:00 in Paris: next Tuesday 09:30 Paris is 08:30 UTC.
    assert until.wake_at(datetime(2026, 1, 12, 10, tzinfo=UTC), PARIS, {}) == datetime(2026, 1, 13, 8, 30, tzinfo=UTC)
    # On a Tuesday after 09:30, the next one is a week later.
    assert until.wake_at(datetime(2026, 1, 13, 9, tzinfo=UTC), PARIS, {}) == datetime(2026, 1, 20, 8, 30, tzinfo=UTC)
    # Exactly at the time: strictly after, so next week.
    assert until.wake_at(datetime(2026, 1, 13, 8, 30, tzinfo=UTC), PARIS, {}) == datetime(
        2026, 1, 20, 8, 30, tzinfo=UTC
    )


def test_wait_until_a_time_alone_is_the_next_one():
    until = WaitStep("w", until=WaitUntilTime(time(9)))
    assert until.wake_at(datetime(2026, 1, 12, 7, tzinfo=UTC), PARIS, {}) == datetime(2026, 1, 12, 8, tzinfo=UTC)
    assert until.wake_at(datetime(2026, 1, 12, 9, tzinfo=UTC), PARIS, {}) == datetime(2026, 1, 13, 8, tzinfo=UTC)


def test_wait_until_a_date_may_be_past():
    until = WaitStep("w", until=WaitUntilDate(date(2026, 1, 1), time(10)))
    assert until.wake_at(datetime(2026, 6, 1, tzinfo=UTC), PARIS, {}) == datetime(2026, 1, 1, 9, tzinfo=UTC)


def test_wait_until_an_attribute_date_with_an_offset_keeps_the_wall_clock():
    until = WaitStep("w", until=WaitUntilAttribute("renewal_date", Duration(-30 * 1440), time(10)))
    started = datetime(2026, 1, 1, tzinfo=UTC)
    # 30 days before 2026-04-20 crosses the switch to summer time; 10:00 stays 10:00 in Paris.
    assert until.wake_at(started, PARIS, {"renewal_date": "2026-04-20"}) == datetime(2026, 3, 21, 9, tzinfo=UTC)
    assert until.wake_at(started, PARIS, {"renewal_date": "2026-04-20T18:45:00+00:00"}) == datetime(
        2026, 3, 21, 9, tzinfo=UTC
    )


def test_wait_until_an_attribute_without_a_usable_date_does_not_wait():
    until = WaitStep("w", until=WaitUntilAttribute("renewal_date"))
    started = datetime(2026, 1, 1, tzinfo=UTC)
    assert until.wake_at(started, PARIS, {}) is None
    assert until.wake_at(started, PARIS, {"renewal_date": "soon"}) is None
    assert until.wake_at(started, PARIS, {"renewal_date": 20260420}) is None


def test_wait_until_an_attribute_datetime_keeps_its_time_without_at():
    until = WaitStep("w", until=WaitUntilAttribute("call_at", Duration(-60)))
    started = datetime(2026, 1, 1, tzinfo=UTC)
    assert until.wake_at(started, PARIS, {"call_at": "2026-02-10T15:00:00"}) == datetime(2026, 2, 10, 13, tzinfo=UTC)


def test_send_window_on_the_leads_clock(trial):
    window = trial.send_window
    assert window is not None
    # Friday 16:00 UTC is 17:00 in Paris: open; 16:30 UTC is 17:30: closed.
    assert window.is_open(datetime(2026, 1, 16, 16, tzinfo=UTC), PARIS)
    assert not window.is_open(datetime(2026, 1, 16, 16, 30, tzinfo=UTC), PARIS)
    # Closed on Friday evening: opens Monday 09:00 Paris.
    assert window.next_opening(datetime(2026, 1, 16, 16, 30, tzinfo=UTC), PARIS) == datetime(2026, 1, 19, 8, tzinfo=UTC)
    # Early on a weekday: opens that morning.
    assert window.next_opening(datetime(2026, 1, 19, 5, tzinfo=UTC), PARIS) == datetime(2026, 1, 19, 8, tzinfo=UTC)
    open_now = datetime(2026, 1, 19, 10, tzinfo=UTC)
    assert window.next_opening(open_now, PARIS) == open_now


def test_a_window_open_until_midnight():
    window = SendWindow(frozenset({Weekday.SAT}), time(20), None)
    assert window.is_open(datetime(2026, 1, 17, 22, 59, tzinfo=UTC), PARIS)
    assert not window.is_open(datetime(2026, 1, 17, 23, tzinfo=UTC), PARIS)


def test_a_window_open_all_week_is_no_window():
    text = (
        "slug: s\nname: S\nentry: [{on_event: x}]\n"
        "send_window: {days: [mon, tue, wed, thu, fri, sat, sun], hours: {from: '00:00', to: '24:00'}}\n"
        "steps:\n  - {id: a, type: exit}\n"
    )
    definition = check_text(text, template_exists=TEMPLATES).definition
    assert definition is not None
    assert definition.send_window is None
    assert SendWindow().days == ALL_WEEKDAYS


def test_on_import_true_and_an_empty_mapping_mean_the_same():
    def entry(value: str) -> object:
        text = f"slug: s\nname: S\nentry: [{{on_import: {value}}}]\nsteps:\n  - {{id: a, type: exit}}\n"
        definition = check_text(text, template_exists=TEMPLATES).definition
        assert definition is not None
        return definition.entry

    assert entry("true") == entry("{}") == (ImportEntry(),)


# --- spellings --------------------------------------------------------------------------------------------------


def test_normalised_data_is_json_and_reads_back_equal(trial):
    data = trial.to_data()
    assert CampaignDefinition.from_data(json.loads(json.dumps(data))) == trial


def test_exported_yaml_reads_back_equal(trial):
    checked = check_text(dump_yaml(trial.to_data()), template_exists=TEMPLATES)
    assert checked.errors == ()
    assert checked.definition == trial


def test_normalisation_drops_defaults_and_spells_names_canonically():
    text = (
        "slug: s\nname: '  Spaced  '\ndescription: ''\nentry: [{on_stage: mql}]\nreentry: never\n"
        "steps:\n"
        "  - {id: w, type: wait, for: 1d12h}\n"
        "  - {id: t, type: set, add_tags: [' a ', b], attributes: {k: 1}}\n"
        "  - {id: e, type: exit, as: exited}\n"
    )
    definition = check_text(text, template_exists=TEMPLATES).definition
    assert definition is not None
    assert definition.to_data() == {
        "slug": "s",
        "name": "Spaced",
        "entry": [{"on_stage": "mql"}],
        "steps": [
            {"id": "w", "type": "wait", "for": "36h"},
            {"id": "t", "type": "set", "add_tags": ["a", "b"], "attributes": {"k": 1}},
            {"id": "e", "type": "exit"},
        ],
    }


def test_exported_text_is_quoted_where_other_yaml_readers_would_misread_it():
    text = dump_yaml({"time": "10:30", "op": "=", "word": "on", "yes": "no", "number": "12"})
    assert text == "time: '10:30'\nop: '='\nword: 'on'\nyes: no\nnumber: '12'\n"


def test_the_example_in_the_documentation_is_valid():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "campaigns.md").read_text()
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    checked = check_text(example, template_exists=lambda name: name in {"welcome", "tips", "owner-handoff"})
    assert checked.errors == ()
    assert [issue.message for issue in checked.warnings] == ["segment 'trial-users' not checked: no database"]
    assert checked.definition is not None
    assert checked.definition.next_step_id("clicked-pricing", True) == "handoff"
