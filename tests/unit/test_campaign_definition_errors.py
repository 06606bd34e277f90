"""Every mistake in a campaign file is reported, each with its line, column and path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.campaigns.validation import (
    CampaignInvalid,
    Issue,
    campaign_files,
    check_data,
    check_file,
    check_text,
    load_yaml,
    parse_campaign,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "campaigns"
BAD = FIXTURES / "bad"


def known_templates(name: str) -> bool:
    return name in {"welcome", "tips"}


def issues_of(path: Path) -> list[str]:
    """The issues of a fixture file, without the file name that starts each of them."""
    checked = check_file(path, template_exists=known_templates)
    prefix = f"{path}:"
    return [str(issue).removeprefix(prefix) for issue in checked.issues]


DURATION_HINT = "a duration: a number and a unit (m, h, d, w), such as 90m, 2h, 3d or 1w"
STAGES = "subscriber, lead, mql, sql, opportunity, customer, lost"

EXPECTED: dict[str, list[str]] = {
    "yaml-syntax.yaml": [
        "8:4: error: YAML syntax error: did not find expected '-' indicator "
        "(while parsing a block collection at line 6)",
    ],
    "empty.yaml": [" error: the file is empty: a campaign is a YAML mapping"],
    "not-a-mapping.yaml": ["1:1: error: expected a mapping, got a list"],
    "unknown-keys.yaml": [
        "5:1: error: sendwindow: unknown key 'sendwindow'; did you mean 'send_window'?",
        "8:5: error: steps[0]: missing required key 'template'",
        "10:5: error: steps[0].tempalte: unknown key 'tempalte'; did you mean 'template'?",
        "15:5: error: steps[1].until_date: unknown key 'until_date'; did you mean 'until'?",
        "17:11: error: steps[2].type: 'sned' is not one of send, wait, branch, wait_for, set, notify, goto, exit; "
        "did you mean 'send'?",
    ],
    "wrong-types.yaml": [
        "1:7: error: slug: expected a slug: lowercase letters and digits in words joined by single hyphens, "
        "such as trial-onboarding, got 'Wrong_Types'",
        "2:7: error: name: expected non-blank text, got 42",
        "3:8: error: entry: expected a list, got a mapping",
        "4:25: error: frequency_cap.emails: expected a whole number, got 'three'",
        "4:37: error: frequency_cap.per: 'month' is not one of day, week",
        "5:10: error: reentry: expected never, or a mapping such as {after: 30d}, got '30d'",
        "9:14: error: steps[0].webhook: expected an http(s) URL, got 'crm.example.com/hook'",
        # YAML 1.2: yes is text, not true.
        "10:18: error: steps[0].email_owner: expected true or false, got 'yes'",
        "13:15: error: steps[1].add_tags: expected a list, got 'engaged'",
        "14:19: error: steps[1].adjust_score: expected a whole number, got 1.5",
    ],
    "duplicates.yaml": [
        "3:1: error: name: duplicate key 'name' (first given on line 2)",
        "11:9: error: steps[1].id: duplicate step id 'hello' (steps[0] has it)",
        "19:16: error: steps[2].variants[1].name: duplicate variant name 'a' (variants[0] has it)",
    ],
    "missing-targets.yaml": [
        "13:11: error: steps[1].step: no step has id 'helo'; did you mean 'hello'?",
        "15:9: error: steps[1].no: no step has id 'follow-up'; did you mean 'followup'?",
        "19:10: error: steps[2].yes: no step has id 'nowhere'",
        "22:9: error: steps[3].to: no step has id 'the-end'",
    ],
    "unreachable.yaml": [
        "12:5: error: steps[2]: step 'orphan' is unreachable: no step leads to it",
        "16:5: error: steps[3]: step 'also-orphan' is unreachable: no step leads to it",
    ],
    "loop-without-wait.yaml": [
        "10:5: error: steps[1]: steps engaged → bump → again → engaged loop without a wait or wait_for step: "
        "a lead would go round forever",
        "23:5: error: steps[5]: step 'spin' is unreachable: no step leads to it",
        "23:5: error: steps[5]: steps spin → spin loop without a wait or wait_for step: a lead would go round forever",
    ],
    "bad-durations.yaml": [
        "5:18: error: reentry.after: '99999w' is longer than 3650 days",
        f"9:10: error: steps[0].for: expected {DURATION_HINT}, got '3x'",
        "12:10: error: steps[1].for: '0m' is no time at all: use a duration longer than zero",
        # Units come largest first.
        f"15:10: error: steps[2].for: expected {DURATION_HINT}, got '1h1d'",
        f"19:13: error: steps[3].within: expected {DURATION_HINT}, got '2 days'",
        "22:46: error: steps[4].until.offset: expected a signed duration such as -30d, 2h or +1w, got 30",
    ],
    "bad-names-and-times.yaml": [
        "3:11: error: timezone: unknown time zone 'Europe/Pariss'; use an IANA name such as Europe/Paris",
        f"5:15: error: entry[0].on_stage: 'prospect' is not one of {STAGES}",
        f"7:15: error: exit[0].on_stage: 'won' is not one of {STAGES}",
        "9:9: error: send_window.days: lists 'mon' more than once",
        "9:15: error: send_window.days[1]: 'tuesday' is not one of mon, tue, wed, thu, fri, sat, sun; "
        "did you mean 'tue'?",
        "10:30: error: send_window.hours.to: the window closes (09:00) before it opens (18:00)",
        '14:33: error: steps[0].until.time: expected a time of day HH:MM on a 24-hour clock, such as "09:30", '
        "got '25:00'",
        '17:12: error: steps[1].until: a weekday needs a time, such as {weekday: tue, time: "09:30"}',
        "20:19: error: steps[2].until.date: '2026-02-30' is not a date: write YYYY-MM-DD, such as 2026-12-01",
        f"23:12: error: steps[3].stage: 'won' is not one of {STAGES}",
    ],
    "unknown-references.yaml": [
        "4:14: warning: entry[0].segment: segment 'no-such-segment' not checked: no database",
        "8:15: error: steps[0].template: no email template 'no-such-template'",
        "13:15: error: steps[1].template: no email template 'missing-owner-template'",
    ],
    "bad-rules.yaml": [
        "7:30: error: entry[0].rules.all[1].op: unknown operator 'equals'",
        "9:18: error: goal.rules.field: unknown field 'stag'; did you mean 'stage'?",
        "14:20: error: steps[0].if.rules.not: expected a rule object (a group (all, any, not), a condition "
        "(field, op, value), an engagement (event or no_event) or entered_stage), got a number",
    ],
    "bad-jinja.yaml": [
        "9:14: error: steps[0].subject: bad Jinja template: unexpected end of template, "
        "expected 'end of print statement'.",
        "10:16: error: steps[0].preheader: bad Jinja template: Unexpected end of template. Jinja was looking for "
        "the following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'.",
    ],
    "step-rules.yaml": [
        "10:5: error: steps[1]: give for: or until:, not both",
        "14:5: error: steps[2]: a wait step needs for: (a duration) or until: (a moment)",
        "16:5: error: steps[3]: a branch needs yes:, no: or both (a target left out means the next step)",
        "18:9: error: steps[3].if: rules and opened cannot be combined: a branch tests one thing",
        "21:31: error: steps[4].if.link: link applies to clicked:",
        "26:11: error: steps[5].step: step applies to email events (opened, clicked, replied), not 'demo_requested'",
        "28:5: error: steps[6]: a set step needs at least one of stage, add_tags, remove_tags, attributes, "
        "adjust_score, unsubscribe",
        "30:5: error: steps[7]: a notify step needs webhook:, email_owner: true, or both",
        "32:14: error: steps[7].subject: subject is for the owner's email: add email_owner: true",
        "36:19: error: steps[8].remove_tags[0]: tag 'hot' is both added and removed",
        "41:7: error: steps[9].variants: every variant has weight 0: give at least one a positive weight",
        "42:9: error: steps[9].variants[1]: no template: give one here or on the step",
        "45:18: error: steps[10].if.opened: step 'tags' is a set step: only emails sent by a send step are tracked",
        "49:19: error: steps[11].if.clicked: send step 'afterwards' never runs before this step",
    ],
}


def test_every_bad_fixture_has_expectations():
    assert sorted(path.name for path in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_reports_every_error_where_it_is(name):
    assert issues_of(BAD / name) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_file_with_errors_gives_no_definition(name):
    checked = check_file(BAD / name, template_exists=known_templates)
    assert checked.errors
    assert checked.definition is None


def test_issue_names_file_line_column_path_and_message():
    checked = check_file(BAD / "missing-targets.yaml", template_exists=known_templates)
    issue = checked.errors[2]
    assert (issue.line, issue.column, issue.path) == (19, 10, ("steps", 2, "yes"))
    assert str(issue) == f"{BAD / 'missing-targets.yaml'}:19:10: error: steps[2].yes: no step has id 'nowhere'"


MINIMAL = """\
slug: minimal
name: Minimal
entry:
  - on_event: signed_up
steps:
  - id: hello
    type: send
    template: welcome
    subject: Hello
"""


def with_steps(steps: str, head: str = "") -> str:
    return f"slug: s\nname: S\n{head}entry:\n  - on_event: x\nsteps:\n{steps}"


def errors_in(text: str) -> list[str]:
    return [str(issue) for issue in check_text(text, template_exists=known_templates).errors]


def test_minimal_campaign_is_valid():
    checked = check_text(MINIMAL, template_exists=known_templates)
    assert checked.issues == ()
    assert checked.definition is not None


def test_required_keys_are_reported_on_the_mapping():
    assert errors_in("slug: s\nname: S\n") == [
        "1:1: error: missing required key 'entry'",
        "1:1: error: missing required key 'steps'",
    ]


def test_the_yes_and_no_keys_stay_keys():
    # YAML 1.1 would read these keys as true and false, and the targets would be lost.
    text = with_steps(
        "  - {id: a, type: send, template: welcome, subject: A}\n"
        "  - {id: b, type: branch, if: {opened: a}, yes: c, no: d}\n"
        "  - {id: c, type: exit}\n"
        "  - {id: d, type: exit}\n"
    )
    definition = check_text(text, template_exists=known_templates).definition
    assert definition is not None
    assert definition.next_step_id("b", True) == "c"
    assert definition.next_step_id("b", False) == "d"


def test_unquoted_time_and_date_are_text():
    text = with_steps(
        "  - {id: a, type: wait, until: {weekday: mon, time: 10:30}}\n"
        "  - {id: b, type: wait, until: {date: 2026-12-01}}\n"
    )
    checked = check_text(text, template_exists=known_templates)
    assert checked.issues == ()


def test_unknown_yaml_tags_and_non_text_keys_are_errors():
    assert errors_in(with_steps("  - {id: a, type: wait, for: !!binary aGk=}\n")) == [
        "6:30: error: steps[0].for: unsupported YAML tag tag:yaml.org,2002:binary",
    ]
    assert errors_in("? [a]\n: b\n") == [
        "1:1: error: missing required key 'slug'",
        "1:1: error: missing required key 'name'",
        "1:1: error: missing required key 'entry'",
        "1:1: error: missing required key 'steps'",
        "1:3: error: a key must be plain text, not a list or mapping",
    ]


def test_self_referencing_alias_is_an_error():
    assert "1:4: error: a[0]: this alias contains itself" in [str(issue) for issue in load_yaml("a: &x [*x]")[2]]


def test_alias_bombs_are_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 7)]
    data, _, issues = load_yaml("\n".join(lines))
    assert data is None
    assert [issue.message for issue in issues] == ["more than 50000 YAML values: not a campaign"]


def test_several_documents_are_refused():
    assert errors_in(MINIMAL + "---\nslug: other\n") == [
        "10:1: error: YAML syntax error: but found another document "
        "(expected a single document in the stream at line 1)",
    ]


def test_control_characters_are_located():
    assert errors_in('slug: s\nname: "a\x00b"\n') == [
        "2:9: error: YAML error: control characters are not allowed (character U+0000)"
    ]


def test_nul_characters_cannot_be_stored():
    text = with_steps('  - {id: a, type: send, template: welcome, subject: "Hi\\0"}\n')
    assert errors_in(text) == ["6:53: error: steps[0].subject: contains a NUL character (\\0), which cannot be stored"]
    text = with_steps('  - {id: a, type: set, attributes: {"f\\0": 1}}\n')
    assert errors_in(text) == [
        """6:37: error: steps[0].attributes["f\\u0000"]: bad name 'f\\x00': expected an attribute name: """
        "1 to 100 characters without dots, quotes or backslashes"
    ]


def test_numbers_must_fit_json_columns():
    text = with_steps("  - {id: a, type: set, adjust_score: 1e400, attributes: {big: 9007199254740993, ok: 1e15}}\n")
    assert errors_in(text) == [
        "6:38: error: steps[0].adjust_score: 1e400 is too large a number (at most 2^53)",
        "6:63: error: steps[0].attributes.big: 9007199254740993 is too large a number (at most 2^53)",
    ]


def test_files_that_are_not_utf8_are_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("Minimal", "Caf\xe9").encode("latin-1"))
    assert [str(issue) for issue in check_file(path).issues] == [
        f"{path}:2: error: not UTF-8 text: byte 0xe9 cannot be decoded"
    ]


def test_utf16_files_with_a_byte_order_mark_are_read(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_bytes(MINIMAL.replace("Minimal", "Café").encode("utf-16"))
    checked = check_file(path, template_exists=known_templates)
    assert checked.definition is not None
    assert checked.definition.name == "Café"


def test_numbers_from_data_must_be_finite_and_within_2_53():
    data = {"slug": "s", "name": "S", "entry": [{"on_event": "x"}]}
    data["steps"] = [{"id": "a", "type": "set", "attributes": {"nan": float("nan"), "big": 2**60, "ok": 2**53}}]
    assert [str(issue) for issue in check_data(data).issues] == [
        "error: steps[0].attributes.nan: nan is not a finite number",
        "error: steps[0].attributes.big: 1152921504606846976 is too large a number (at most 2^53)",
    ]


def test_huge_files_are_refused_without_reading(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * 1_000_001)
    assert [issue.message for issue in check_file(path).issues] == ["larger than 1000000 bytes: not a campaign"]


def test_unreadable_path_is_an_issue(tmp_path):
    assert [issue.message for issue in check_file(tmp_path / "nope.yaml").issues] == [
        "cannot read: No such file or directory"
    ]


def test_wrong_target_does_not_also_report_unreachable_steps():
    # The broken target may be exactly what should have led to the later steps.
    text = with_steps(
        "  - {id: a, type: goto, to: c-typo}\n  - {id: b, type: wait, for: 1d}\n  - {id: c, type: exit}\n"
    )
    assert errors_in(text) == ["6:29: error: steps[0].to: no step has id 'c-typo'"]


def test_a_loop_through_a_wait_is_fine():
    text = with_steps(
        "  - {id: a, type: send, template: welcome, subject: A}\n"
        "  - {id: pause, type: wait, for: 1w}\n"
        "  - {id: again, type: goto, to: a}\n"
    )
    assert errors_in(text) == []


def test_a_loop_through_wait_for_is_fine():
    text = with_steps(
        "  - {id: a, type: send, template: welcome, subject: A}\n"
        "  - {id: click, type: wait_for, event: clicked, step: a, within: 3d, yes: done, no: a}\n"
        "  - {id: done, type: exit}\n"
    )
    assert errors_in(text) == []


def test_segment_checks_use_the_given_lookup_offline_only_warn():
    text = MINIMAL.replace("  - on_event: signed_up", "  - segment: hot-leads")
    checked = check_text(text, template_exists=known_templates)
    assert checked.definition is not None
    assert [str(issue) for issue in checked.warnings] == [
        "4:14: warning: entry[0].segment: segment 'hot-leads' not checked: no database"
    ]


def test_template_check_is_injectable():
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return True

    text = MINIMAL.replace("template: welcome", "template: onboarding/day-3")
    assert check_text(text, template_exists=exists).definition is not None
    assert asked == ["onboarding/day-3"]


def test_template_names_cannot_leave_the_template_directory():
    asked: list[str] = []
    text = MINIMAL.replace("template: welcome", "template: ../secrets")
    errors = check_text(text, template_exists=lambda name: asked.append(name) or True).errors
    assert [issue.path for issue in errors] == [("steps", 0, "template")]
    assert asked == []


def test_data_without_a_file_reports_paths_only():
    checked = check_data({"slug": "s", "name": "S", "entry": [{"on_event": "x"}], "steps": []})
    assert [str(issue) for issue in checked.issues] == ["error: steps: needs at least 1 item"]


def test_parse_campaign_raises_with_every_error():
    with pytest.raises(CampaignInvalid) as raised:
        parse_campaign({"slug": "Bad Slug", "name": "", "entry": [], "steps": []})
    assert [format(issue.path) for issue in raised.value.issues] == [
        "('slug',)",
        "('name',)",
        "('entry',)",
        "('steps',)",
    ]
    assert str(raised.value).count("\n") == 3


def test_an_entry_trigger_has_exactly_one_key():
    text = MINIMAL.replace("  - on_event: signed_up", "  - {on_event: signed_up, on_stage: mql}\n  - {}")
    assert errors_in(text) == [
        "4:5: error: entry[0]: expected one trigger: segment, rules, on_import, on_event or on_stage, got a mapping",
        "5:5: error: entry[1]: expected one trigger: segment, rules, on_import, on_event or on_stage, got a mapping",
    ]


def test_attribute_names_are_checked_at_the_key():
    text = with_steps("  - {id: a, type: set, attributes: {plan.tier: pro}}\n")
    assert errors_in(text) == [
        """6:37: error: steps[0].attributes["plan.tier"]: bad name 'plan.tier': expected an attribute name: """
        "1 to 100 characters without dots, quotes or backslashes"
    ]


def test_until_forms_cannot_be_mixed():
    text = with_steps("  - {id: a, type: wait, until: {date: 2026-12-01, attribute: renewal, offset: 1d}}\n")
    assert errors_in(text) == [
        "6:32: error: steps[0].until: date and attribute cannot be combined: until takes {weekday, time}, {time}, "
        "{date[, time]} or {attribute[, offset, time]}"
    ]


def test_offset_needs_an_attribute():
    text = with_steps("  - {id: a, type: wait, until: {time: '09:00', offset: 1d}}\n")
    assert errors_in(text) == [
        "6:56: error: steps[0].until.offset: offset applies to an attribute date: add attribute:"
    ]


def test_subject_must_be_one_line():
    text = with_steps('  - {id: a, type: send, template: welcome, subject: "Hi\\n"}\n')
    assert errors_in(text) == [
        "6:53: error: steps[0].subject: expected one line of text "
        """(a Jinja template such as "Hi {{ lead.first_name }}"), got 'Hi\\n'"""
    ]


def test_campaign_files_expands_directories_and_reports_missing_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "some" / "nested").mkdir(parents=True)
    for name in ("b.yaml", "a.yml", "nested/c.yaml", "notes.txt"):
        (tmp_path / "some" / name).write_text(MINIMAL)
    files, issues = campaign_files([tmp_path / "some", tmp_path / "empty", tmp_path / "missing.yaml"])
    assert [path.relative_to(tmp_path).as_posix() for path in files] == [
        "some/a.yml",
        "some/b.yaml",
        "some/nested/c.yaml",
    ]
    assert issues == [
        Issue("no campaign files (*.yaml, *.yml) in this directory", source=str(tmp_path / "empty")),
        Issue("no such file or directory", source=str(tmp_path / "missing.yaml")),
    ]


# --- whatever the data, a list of issues and never an exception ------------------------------------------------

ODD_VALUES = ["", " ", "\n", "09:00\n", "3d\n", "x\n", "0d", "-1d", "24:00", "2026-02-30", "yes", "null", "a.b", "*"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(ODD_VALUES) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def every_path(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            paths += every_path(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            paths += every_path(value, (*prefix, index))
    return paths


@pytest.fixture(scope="module")
def example_data() -> dict[str, Any]:
    checked = check_file(FIXTURES / "valid" / "trial-onboarding.yaml", template_exists=lambda name: True)
    return checked.data


@given(st.data())
def test_mangled_campaigns_give_issues_not_exceptions(example_data, data):
    campaign = copy.deepcopy(example_data)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(every_path(campaign)[1:]))
        parent = campaign
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    checked = check_data(campaign, template_exists=lambda name: True)
    assert (checked.definition is None) == bool(checked.errors)
    for issue in checked.issues:
        assert issue.message
