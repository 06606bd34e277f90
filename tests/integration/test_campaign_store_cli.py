"""`nurture campaigns ...`: thin over the store, one clear line per problem, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.campaigns.models import Campaign, CampaignStatus
from nurture.campaigns.store import get_campaign
from nurture.campaigns.validation import check_text, templates_in
from nurture.cli.campaigns import campaigns_group
from nurture.segments.builtin import ensure_builtin_segments

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "campaigns"
TEMPLATES_DIR = FIXTURES / "email_templates"


@pytest.fixture
def run(app, session, clock):
    ensure_builtin_segments(session, clock)
    session.commit()
    runner = app.test_cli_runner()

    def invoke(*args: str):
        result = runner.invoke(campaigns_group, list(args))
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return invoke


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    target = tmp_path / "campaigns"
    shutil.copytree(FIXTURES / "valid", target)
    return target


def stored_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Campaign))


def test_load_tells_what_happened_to_each_campaign(run, campaigns_dir, session):
    result = run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"created minimal: version 1, 1 steps, draft ({campaigns_dir / 'minimal.yaml'})",
        f"created trial-onboarding: version 1, 16 steps, draft ({campaigns_dir / 'trial-onboarding.yaml'})",
    ]
    path = campaigns_dir / "minimal.yaml"
    path.write_text(path.read_text().replace("subject: Hello", "subject: Hello there"))
    result = run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    assert result.stdout.splitlines() == [
        f"updated minimal: version 1 → 2, 1 steps ({path})",
        f"unchanged trial-onboarding: version 1 ({campaigns_dir / 'trial-onboarding.yaml'})",
    ]
    assert get_campaign(session, "minimal").version == 2


def test_load_with_a_bad_file_exits_2_with_every_error_and_loads_nothing(run, campaigns_dir, session):
    shutil.copy(FIXTURES / "bad" / "unreachable.yaml", campaigns_dir / "unreachable.yaml")
    result = run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    assert result.exit_code == 2
    bad = campaigns_dir / "unreachable.yaml"
    assert result.stderr.splitlines() == [
        f"{bad}:12:5: error: steps[2]: step 'orphan' is unreachable: no step leads to it",
        f"{bad}:16:5: error: steps[3]: step 'also-orphan' is unreachable: no step leads to it",
        "2 errors; nothing was loaded.",
    ]
    assert result.stdout == ""
    assert stored_count(session) == 0


def test_load_reports_yaml_syntax_errors_with_line_and_column(run, tmp_path):
    result = run("load", str(FIXTURES / "bad" / "yaml-syntax.yaml"))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"{FIXTURES / 'bad' / 'yaml-syntax.yaml'}:8:4: error: YAML syntax error: did not find expected '-' "
        "indicator (while parsing a block collection at line 6)"
    )


def test_load_of_a_missing_path(run, tmp_path):
    result = run("load", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.yaml'}: error: no such file or directory",
        "1 error; nothing was loaded.",
    ]


def test_validate_reports_every_error_of_every_file(run):
    bad = FIXTURES / "bad"
    result = run(
        "validate",
        str(bad / "missing-targets.yaml"),
        str(bad / "bad-jinja.yaml"),
        str(FIXTURES / "valid" / "minimal.yaml"),
        "--templates",
        str(TEMPLATES_DIR),
    )
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 7
    assert lines[0].startswith(f"{bad / 'missing-targets.yaml'}:13:11: error: steps[1].step:")
    assert lines[4].startswith(f"{bad / 'bad-jinja.yaml'}:9:14: error: steps[0].subject: bad Jinja template")
    assert lines[-1] == "6 errors."


def test_validate_good_files_against_the_database(run):
    result = run("validate", str(FIXTURES / "valid"), "--templates", str(TEMPLATES_DIR))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{FIXTURES / 'valid' / 'minimal.yaml'}: ok (minimal, 1 steps)",
        f"{FIXTURES / 'valid' / 'trial-onboarding.yaml'}: ok (trial-onboarding, 16 steps)",
    ]


def test_validate_offline_warns_about_segments(run):
    result = run("validate", "--offline", str(FIXTURES / "valid"), "--templates", str(TEMPLATES_DIR))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{FIXTURES / 'valid' / 'trial-onboarding.yaml'}:10:14: warning: entry[0].segment: segment 'active' not "
        "checked: no database"
    ]


def test_validate_checks_templates_in_the_given_directory(run, tmp_path):
    result = run("validate", "--offline", str(FIXTURES / "valid" / "minimal.yaml"), "--templates", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].endswith(
        "minimal.yaml:8:15: error: steps[0].template: no email template 'welcome'"
    )


def test_export_round_trips_through_load(run, campaigns_dir, tmp_path, session):
    run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    result = run("export", "trial-onboarding")
    assert result.exit_code == 0
    assert result.stdout.startswith("# Campaign trial-onboarding, version 1 (draft), exported by nurture.\n")
    exported = check_text(result.stdout, template_exists=templates_in(TEMPLATES_DIR)).definition
    assert exported == get_campaign(session, "trial-onboarding").parsed

    out = tmp_path / "exported.yaml"
    result = run("export", "trial-onboarding", "--out", str(out))
    assert result.stdout == f"Wrote trial-onboarding to {out}.\n"
    result = run("load", str(out), "--templates", str(TEMPLATES_DIR))
    assert result.stdout == f"unchanged trial-onboarding: version 1 ({out})\n"


def test_export_of_an_unknown_campaign(run):
    result = run("export", "nope")
    assert result.exit_code != 0
    assert result.stderr == "Error: no campaign with slug 'nope'\n"


def test_list(run, campaigns_dir):
    assert run("list").stdout == "No campaigns yet: load some with `nurture campaigns load campaigns/`.\n"
    run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    run("activate", "minimal", "--templates", str(TEMPLATES_DIR))
    assert run("list").stdout.splitlines() == [
        "SLUG              NAME              STATUS  VERSION  STEPS",
        "minimal           Minimal           active  1        1",
        "trial-onboarding  Trial onboarding  draft   1        16",
    ]


def test_status_commands(run, campaigns_dir, session):
    run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    assert run("activate", "minimal", "--templates", str(TEMPLATES_DIR)).stdout == "Activated minimal (version 1).\n"
    assert run("activate", "minimal", "--templates", str(TEMPLATES_DIR)).stdout == "minimal is already active.\n"
    assert run("pause", "minimal").stdout == "Paused minimal.\n"
    assert run("pause", "minimal").stdout == "minimal is already paused.\n"
    assert run("archive", "minimal").stdout == "Archived minimal.\n"
    assert run("archive", "minimal").stdout == "minimal is already archived.\n"
    assert get_campaign(session, "minimal").status is CampaignStatus.ARCHIVED
    refused = run("pause", "trial-onboarding")
    assert refused.exit_code != 0
    assert refused.stderr == "Error: campaign 'trial-onboarding' is draft: only an active campaign pauses\n"


def test_activate_refuses_a_campaign_whose_template_is_gone(run, campaigns_dir, session, tmp_path):
    run("load", str(campaigns_dir), "--templates", str(TEMPLATES_DIR))
    result = run("activate", "minimal", "--templates", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "campaign minimal: error: steps[0].template: no email template 'welcome'",
        "1 error; minimal was not activated.",
    ]
    assert get_campaign(session, "minimal").status is CampaignStatus.DRAFT
