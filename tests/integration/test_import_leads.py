"""The domain importer end to end on both databases: real-world fixtures, bad rows with their physical
line numbers, duplicates, idempotence and the safety rules (status, stages)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.errors import ValidationError
from nurture.leads import importer
from nurture.leads.columns import MappingError
from nurture.leads.csv_source import SAMPLE_BYTES, UnusableFile
from nurture.leads.importer import DuplicatePolicy, ImportOptions, ImportReport, import_leads, import_may_move
from nurture.leads.lifecycle import LeadStatus, Stage
from nurture.leads.models import Activity, ActorKind, Lead, StageChange, Tag, lead_tags
from nurture.leads.service import Actor, change_stage, create_lead, find_lead, stage_history

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "import"
USER = Actor(ActorKind.USER, "marketer@example.com")


class CollectedRejects:
    def __init__(self) -> None:
        self.header: list[str] | None = None
        self.rows: list[tuple[int, list[str], str]] = []

    def start(self, header):
        self.header = list(header)

    def reject(self, line, values, reason):
        self.rows.append((line, list(values), reason))


def run(session, clock, file, **options) -> tuple[ImportReport, CollectedRejects]:
    rejects = CollectedRejects()
    if isinstance(file, str):
        file = FIXTURES / file
    report = import_leads(session, clock, file, ImportOptions(**options), rejects=rejects)
    session.expire_all()
    return report, rejects


def lead(session, email: str) -> Lead:
    found = find_lead(session, email)
    assert found is not None, email
    return found


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def counts(report: ImportReport) -> tuple[int, int, int, int, int]:
    return report.rows, report.created, report.updated, report.skipped, report.rejected


def table_sizes(session) -> tuple[int, int, int, int]:
    return (
        count(session, Lead),
        count(session, StageChange),
        count(session, Activity),
        session.scalar(select(func.count()).select_from(lead_tags)),
    )


# --- encodings, delimiters, headers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["utf8.csv", "utf8_bom.csv", "utf16le.csv", "utf16be.csv", "cp1252.csv"])
def test_every_encoding_imports_the_same_people(session, clock, name):
    report, rejects = run(session, clock, name)
    assert counts(report) == (2, 2, 0, 0, 0), rejects.rows
    chloe = lead(session, "chloe@example.com")
    assert (chloe.first_name, chloe.last_name, chloe.company) == ("Chloé", "Müller", "Café € Co")
    zoe = lead(session, "zoe@example.com")
    assert (zoe.first_name, zoe.last_name, zoe.company) == ("Zoë", "Ångström", "Smörgås AB")


def test_a_file_mixing_utf8_and_latin1_rows_stores_each_as_written(session, clock):
    # Issue 9, item 8: the whole file was decoded as Windows-1252 and Zoë silently became ZoÃ«.
    data = b"email,first_name\n" + "zoe@example.com,Zoë\n".encode() + "rene@example.com,René\n".encode("latin-1")
    report, rejects = run(session, clock, io.BytesIO(data))
    assert counts(report) == (2, 2, 0, 0, 0), rejects.rows
    assert lead(session, "zoe@example.com").first_name == "Zoë"
    assert lead(session, "rene@example.com").first_name == "René"
    assert report.warnings == [
        "the file mixes encodings: 1 row with accents was read as UTF-8 and 1 as windows-1252; "
        "the windows-1252 ones are at line 3"
    ]


def test_utf8_rows_after_a_windows_1252_sample_are_still_read_as_utf8(session, clock):
    filler = "".join(f"user{index:05d}@example.com,Léa\n" for index in range(3000)).encode("cp1252")
    assert len(filler) > SAMPLE_BYTES
    data = b"email,first_name\n" + filler + "zoe@example.com,Zoë\n".encode() + "ana@example.com,Anaïs\n".encode()
    report, _ = run(session, clock, io.BytesIO(data), batch_size=1000)
    assert counts(report) == (3002, 3002, 0, 0, 0)
    assert lead(session, "user00000@example.com").first_name == "Léa"
    assert (lead(session, "zoe@example.com").first_name, lead(session, "ana@example.com").first_name) == (
        "Zoë", "Anaïs",
    )
    assert report.warnings == [
        "the file mixes encodings: 2 rows with accents were read as UTF-8 and 3000 as windows-1252; "
        "the UTF-8 ones are at lines 3002, 3003"
    ]


def test_a_legacy_file_is_read_whole_in_its_encoding_and_says_so(session, clock):
    report, _ = run(session, clock, "cp1252.csv")
    assert report.warnings == [
        "the file is not UTF-8: 3 rows with accents were read as windows-1252 (detected); if they look wrong, "
        "save the file as UTF-8 and import it again"
    ]
    utf8, _ = run(session, clock, "utf8.csv", on_duplicate=DuplicatePolicy.SKIP)
    assert utf8.warnings == []


CYRILLIC = [("Иван", "Петров"), ("Ольга", "Смирнова"), ("Дмитрий", "Кузнецов"), ("Анастасия", "Волкова")]


def test_a_russian_export_is_detected_and_a_row_it_cannot_read_is_rejected(session, clock):
    rows = "".join(
        f"u{index:05d}@example.com,{CYRILLIC[index % 4][0]},{CYRILLIC[index % 4][1]}\n" for index in range(2000)
    )
    data = b"email,first_name,last_name\n" + rows.encode("cp1251")
    assert len(data) > SAMPLE_BYTES
    # 0x98 is the one byte Windows-1251 leaves undefined.
    data += b"bad@example.com,\x98,X\nlast@example.com,\xc8\xe2\xe0\xed,X\n"
    report, rejects = run(session, clock, io.BytesIO(data), batch_size=1000)
    assert counts(report) == (2002, 2001, 0, 0, 1)
    assert (lead(session, "u00001@example.com").first_name, lead(session, "u00001@example.com").last_name) == (
        "Ольга", "Смирнова",
    )
    assert lead(session, "last@example.com").first_name == "Иван"
    assert [(line, reason) for line, _, reason in rejects.rows] == [
        (2002, "cannot be decoded as UTF-8 or windows-1251 (byte 0x98 at byte 17)"),
    ]
    assert find_lead(session, "bad@example.com") is None
    assert report.warnings[0].startswith("the file is not UTF-8: 2001 rows with accents were read as windows-1251")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe"
        + "email,name\r\nbad@example.com,A\ud800b\r\nok@example.com,B\r\n".encode("utf-16-le", "surrogatepass"),
        b"email,name\nbad@example.com,A\xed\xa0\x80b\nok@example.com,B\n",
    ],
    ids=["utf-16", "utf-8-encoded-surrogate"],
)
def test_an_unpaired_surrogate_rejects_only_its_row(session, clock, data):
    # Issue 9, item 3: a stored lone surrogate broke every page showing the lead (SQLite), or gave a
    # DataError (PostgreSQL). A UTF-16 one made the whole file unusable.
    report, rejects = run(session, clock, io.BytesIO(data))
    assert counts(report) == (2, 1, 0, 0, 1)
    assert [(line, reason) for line, _, reason in rejects.rows] == [
        (2, "name: contains an unpaired surrogate U+D800 (at character 2)"),
    ]
    assert find_lead(session, "bad@example.com") is None
    assert lead(session, "ok@example.com").attributes == {"name": "B"}


def test_a_nul_in_any_column_rejects_the_row_naming_the_column(session, clock):
    data = b"email,first_name,notes\nnul@example.com,Ann,a\x00b\nsecond@example.com,B\x00,\nok@example.com,C,\n"
    report, rejects = run(session, clock, io.BytesIO(data))
    assert counts(report) == (3, 1, 0, 0, 2)
    assert [(line, reason) for line, _, reason in rejects.rows] == [
        (2, "notes: contains a NUL character (at character 2)"),
        (3, "first_name: contains a NUL character (at character 2)"),
    ]
    assert [lead.email for lead in session.scalars(select(Lead))] == ["ok@example.com"]


def test_duplicate_header_names_refuse_the_file(session, clock):
    # Issue 9, item 8: they imported silently, the second columns becoming attributes.
    data = b"email,email,first_name,First Name,tags,tags\nann@example.com,b@example.com,Ann,Anne,a,b\n"
    with pytest.raises(MappingError) as raised:
        run(session, clock, io.BytesIO(data), file_name="dup.csv")
    assert str(raised.value) == (
        "dup.csv: duplicate column names: 'email' (column 1) and 'email' (column 2); 'first_name' (column 3) and "
        "'First Name' (column 4); 'tags' (column 5) and 'tags' (column 6); rename or remove the extra columns so "
        "that each name is used once"
    )
    assert count(session, Lead) == 0


def test_a_second_column_for_a_field_is_kept_as_an_attribute_with_a_warning(session, clock):
    data = b"email,Phone,Mobile Phone\nann@example.com,111,222\n"
    report, _ = run(session, clock, io.BytesIO(data))
    ann = lead(session, "ann@example.com")
    assert (ann.phone, ann.attributes) == ("111", {"mobile_phone": "222"})
    assert report.warnings == [
        "column 3 'Mobile Phone' also means phone: column 2 'Phone' feeds it, and this one is kept as attribute "
        "mobile_phone"
    ]


def test_cells_neutralised_against_spreadsheet_formulas_import_as_they_were_written(session, clock):
    data = (
        b"email,phone,company,notes\n"
        b"ann@example.com,'+33 1 23 45 67 89,\"'=HYPERLINK(\"\"x\"\")\",'+cmd\\|' /C calc'!A0\n"
        b"bob@example.com,'-5,''=quoted,O'Brien\n"
    )
    report, rejects = run(session, clock, io.BytesIO(data))
    assert counts(report) == (2, 2, 0, 0, 0), rejects.rows
    ann = lead(session, "ann@example.com")
    assert (ann.phone, ann.company, ann.attributes) == (
        "+33 1 23 45 67 89", '=HYPERLINK("x")', {"notes": "+cmd|' /C calc'!A0"},
    )
    bob = lead(session, "bob@example.com")
    assert (bob.phone, bob.company, bob.attributes) == ("-5", "'=quoted", {"notes": "O'Brien"})


@pytest.mark.parametrize(("options", "where"), [({"tags": ("a\x00b",)}, "--tag"), ({"source": "s\ud800"}, "--source")])
def test_options_that_cannot_be_stored_are_refused(session, clock, options, where):
    with pytest.raises(ValidationError, match=f"^{where}: contains"):
        run(session, clock, "utf8.csv", **options)
    assert count(session, Lead) == 0


def test_a_file_name_that_is_not_utf8_is_stored_with_replacement_characters(session, clock, tmp_path):
    path = tmp_path / "caf\udce9.csv"  # b"caf\xe9.csv" on disk, as os.fsdecode gives it
    path.write_bytes(b"email\nann@example.com\n")
    report, _ = run(session, clock, path)
    assert report.created == 1
    assert set(session.scalars(select(StageChange.actor))) == {"caf\ufffd.csv"}


@pytest.mark.parametrize(
    ("name", "company"),
    [("semicolon.csv", "Dupont, Durand & Fils"), ("tab.csv", "Dupont, Durand; Fils"), ("excel_sep.csv", "Acme, Inc")],
)
def test_every_delimiter(session, clock, name, company):
    report, _ = run(session, clock, name)
    assert report.created >= 1
    assert lead(session, "ann@example.com").company == company


def test_embedded_newlines_and_the_lines_of_bad_rows(session, clock):
    report, rejects = run(session, clock, "embedded_newlines.csv")
    assert counts(report) == (5, 3, 0, 0, 2)
    assert lead(session, "ann@example.com").attributes == {"notes": "first line\r\nsecond line"}
    assert lead(session, "bob@example.com").attributes == {"notes": "one\ntwo\nthree"}
    assert lead(session, "dee@example.com").first_name == 'Dee "the boss"'
    assert [(line, values) for line, values, _ in rejects.rows] == [
        (7, ["not-an-email", "Carl", "also\r\nmulti"]),
        (10, ["also bad", "Eve", "x"]),
    ]


def test_headers_in_any_case_and_spacing(session, clock):
    report, _ = run(session, clock, "header_case.csv")
    assert report.created == 1
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.last_name, ann.company, ann.job_title, ann.phone, ann.country, ann.timezone) == (
        "Ann", "Lee", "Acme", "CTO", "+33 1 23 45 67 89", "FR", "Europe/Paris",
    )
    assert ann.attributes == {}


def test_french_aliases(session, clock):
    run(session, clock, "aliases_fr.csv")
    anne = lead(session, "ann@example.com")
    assert (anne.first_name, anne.last_name, anne.company, anne.phone, anne.country) == (
        "Anne", "Lefèvre", "Société Générale de Test", "+33 1 23 45 67 89", "France",
    )
    assert (anne.timezone, anne.locale, anne.stage) == ("Europe/Paris", "fr-FR", Stage.LEAD)
    assert anne.tag_names == ["clients", "vip"]


def test_mailchimp_export(session, clock):
    report, rejects = run(session, clock, "mailchimp.csv")
    assert counts(report) == (2, 2, 0, 0, 0), rejects.rows
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.last_name, ann.phone, ann.country, ann.timezone) == (
        "Ann", "Lee", "+33123456789", "FR", "Europe/Paris",
    )
    assert ann.consent_at == datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)
    assert ann.consent_ip == "203.0.113.7"
    assert ann.tag_names == ["Newsletter", "Webinar 2023"]
    assert ann.attributes == {
        "address": "12 Rue de la Paix  Paris  75002 FR",
        "member_rating": "4",
        "confirm_time": "2023-03-14 09:27:41",
        "confirm_ip": "198.51.100.4",
        "latitude": "48.8698",
        "longitude": "2.3316",
        "gmtoff": "1",
        "dstoff": "2",
        "region": "IDF",
        "last_changed": "2024-01-02 12:00:00",
        "leid": "123456789",
        "euid": "a1b2c3d4e5",
    }
    bob = lead(session, "bob@example.com")
    assert (bob.consent_ip, bob.timezone, bob.country) == ("2001:db8::1", "America/New_York", "US")
    assert bob.attributes["notes"] == "Met at booth 12"
    assert bob.tag_names == []


def test_hubspot_export(session, clock):
    report, rejects = run(session, clock, "hubspot.csv")
    assert counts(report) == (3, 3, 0, 0, 0), rejects.rows
    ann = lead(session, "ann@example.com")
    assert (ann.stage, ann.owner, ann.company, ann.job_title, ann.country, ann.timezone) == (
        Stage.MQL, "owner@example.com", "Acme", "CTO", "United States", "America/New_York",
    )
    assert ann.attributes == {"record_id": "1001", "create_date": "2024-01-15 09:30", "lead_status": "OPEN"}
    bob = lead(session, "BOB.STONE@example.com")
    assert (bob.email, bob.email_key) == ("Bob.Stone@example.com", "bob.stone@example.com")
    assert (bob.stage, bob.owner, bob.timezone) == (Stage.SQL, "jane@example.com", "Europe/Paris")
    assert lead(session, "cy@example.com").stage == Stage.CUSTOMER


# --- bad rows ----------------------------------------------------------------------------------------------


def test_each_kind_of_bad_row_is_rejected_with_its_line_and_reason(session, clock):
    report, rejects = run(session, clock, "bad_rows.csv")
    assert counts(report) == (12, 2, 0, 0, 10)
    assert rejects.header == [
        "email", "first_name", "time_zone", "stage", "owner", "consent_at", "consent_ip", "notes",
    ]
    reasons = [(line, reason) for line, _, reason in rejects.rows]
    assert reasons == [
        (4, "email 'not-an-email': An email address must have an @-sign."),
        (5, "time_zone: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Paris"),
        (6, "stage: unknown stage 'evangelistic'; expected one of subscriber, lead, mql, sql, opportunity, "
            "customer, lost"),
        (7, "first_name: 101 characters; at most 100 allowed"),
        (8, "has 2 columns; the header has 8"),
        (9, "has 9 columns; the header has 8"),
        (10, "owner: 'Jane Doe' is not an email address"),
        (11, "consent_at: '14/03/2023' is not an ISO 8601 date or time such as 2024-05-02 10:33:20"),
        (12, "consent_ip: '999.1.1.1' is not an IP address"),
        (13, "not valid CSV (',' expected after '\"')"),
    ]
    # Original values, as they were in the file.
    assert rejects.rows[3][1] == ["too-long@example.com", "N" * 101, "", "", "", "", "", ""]
    assert rejects.rows[5][1] == ["too-many@example.com", "Bad", "", "", "", "", "", "", "surplus"]
    assert rejects.rows[9][1] == ['bad-quote@example.com,"Bad"x,,,,,,']
    good = lead(session, "good1@example.com")
    assert (good.timezone, good.stage, good.consent_ip) == ("Europe/Paris", Stage.LEAD, "203.0.113.1")
    assert good.consent_at == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert good.attributes == {"notes": "spans\ntwo lines"}
    assert find_lead(session, "bad-tz@example.com") is None
    assert count(session, Lead) == 2


def test_trailing_empty_columns_are_tolerated(session, clock):
    report, _ = run(session, clock, io.BytesIO(b"email,name\na@example.com,A,,\n"))
    assert counts(report) == (1, 1, 0, 0, 0)


def test_a_nul_character_late_in_the_file_rejects_only_its_row(session, clock):
    filler = b"".join(b"user%05d@example.com,Filler\n" % index for index in range(2500))
    assert len(filler) > SAMPLE_BYTES
    data = b"email,name\n" + filler + b"nul@example.com,Bad\x00Name\nlast@example.com,Last\n"
    report, rejects = run(session, clock, io.BytesIO(data), batch_size=1000)
    assert counts(report) == (2502, 2501, 0, 0, 1)
    assert [(line, reason) for line, _, reason in rejects.rows] == [
        (2502, "name: contains a NUL character (at character 4)"),
    ]


def test_over_long_values_of_every_limited_kind(session, clock):
    data = (
        "email,company,phone,tags,notes\n"
        f"a@example.com,{'c' * 201},,,\n"
        f"b@example.com,,{'9' * 51},,\n"
        f"c@example.com,,,{'t' * 101},\n"
        f"d@example.com,,,,{'n' * 10_001}\n"
        f"{'e' * 64}@{'d' * 63}.{'d' * 63}.{'d' * 63}.{'d' * 50}.com,,,,\n"
        "ok@example.com,Acme,,,\n"
    ).encode()
    report, rejects = run(session, clock, io.BytesIO(data))
    assert counts(report) == (6, 1, 0, 0, 5)
    reasons = [reason for _, _, reason in rejects.rows]
    assert [line for line, _, _ in rejects.rows] == [2, 3, 4, 5, 6]
    assert reasons[:4] == [
        "company: 201 characters; at most 200 allowed",
        "phone: 51 characters; at most 50 allowed",
        f"tags (tag {'t' * 20!r}…): 101 characters; at most 100 allowed",
        "notes: 10001 characters; at most 10000 allowed",
    ]
    assert reasons[4].startswith("email 'eeee") and "too long" in reasons[4]


# --- duplicates --------------------------------------------------------------------------------------------


def test_a_repeated_address_only_fills_in_under_update(session, clock):
    report, _ = run(session, clock, "duplicates.csv")
    assert counts(report) == (4, 2, 2, 0, 0)
    ann = lead(session, "ann@example.com")
    # The first row wins; later rows add tags but overwrite nothing.
    assert (ann.email, ann.first_name, ann.company) == ("ann@example.com", "Ann", "Acme")
    assert ann.tag_names == ["a", "b", "c"]
    assert count(session, Lead) == 2


def test_a_repeated_address_fills_what_is_missing(session, clock):
    data = (
        b"email,first_name,phone,stage,notes,colour\n"
        b"ann@example.com,Ann,,lead,first,\n"
        b"ANN@example.com,Anne,555,sql,second,blue\n"
        b"ann@example.com,,,lost,,\n"
        b"ann@example.com,,,subscriber,,\n"
    )
    report, _ = run(session, clock, io.BytesIO(data))
    assert counts(report) == (4, 1, 1, 2, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.phone, ann.stage) == ("Ann", "555", Stage.SQL)
    assert ann.attributes == {"notes": "first", "colour": "blue"}
    clock.advance(timedelta(days=1))
    again, _ = run(session, clock, io.BytesIO(data))
    assert counts(again) == (4, 0, 0, 4, 0)


def test_duplicates_in_the_file_are_skipped_under_skip(session, clock):
    report, _ = run(session, clock, "duplicates.csv", on_duplicate=DuplicatePolicy.SKIP)
    assert counts(report) == (4, 2, 0, 2, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.company, ann.tag_names) == ("Ann", "Acme", ["a"])


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_batch_boundaries_do_not_change_the_outcome(session, clock, batch_size):
    report, _ = run(session, clock, "duplicates.csv", batch_size=batch_size)
    assert counts(report) == (4, 2, 2, 0, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.company, ann.tag_names) == ("Ann", "Acme", ["a", "b", "c"])


def test_an_existing_lead_is_updated(session, clock):
    existing = create_lead(
        session, clock, "Ann@Example.com", actor=USER, first_name="Old", phone="123", tags=["kept"],
        attributes={"plan": "pro", "notes": "old"},
    )
    session.commit()
    clock.advance(timedelta(hours=1))
    data = b"email,first_name,phone,company,notes,colour,tags\nann@example.com,Ann,,Acme,new,blue,added\n"
    report, _ = run(session, clock, io.BytesIO(data), tags=("import-tag",), source="Fair")
    assert counts(report) == (1, 0, 1, 0, 0)
    ann = lead(session, "ann@example.com")
    assert ann.id == existing.id
    assert ann.email == "Ann@example.com"  # identity kept as first stored
    assert (ann.first_name, ann.phone, ann.company, ann.source) == ("Ann", "123", "Acme", "Fair")
    assert ann.attributes == {"plan": "pro", "notes": "new", "colour": "blue"}
    assert ann.tag_names == ["added", "import-tag", "kept"]
    assert ann.updated_at == clock.now()
    update = session.scalars(select(Activity).where(Activity.kind == "import_updated")).one()
    assert update.data == {
        "file": "upload", "line": 2, "changed": ["attributes", "company", "first_name", "source", "tags"],
    }


def test_an_existing_lead_is_left_alone_under_skip(session, clock):
    create_lead(session, clock, "ann@example.com", actor=USER, first_name="Old")
    session.commit()
    before = lead(session, "ann@example.com").updated_at
    clock.advance(timedelta(hours=1))
    report, _ = run(
        session, clock, io.BytesIO(b"email,first_name,stage\nANN@example.com,New,customer\n"),
        on_duplicate=DuplicatePolicy.SKIP, tags=("t",),
    )
    assert counts(report) == (1, 0, 0, 1, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.stage, ann.tag_names, ann.updated_at) == ("Old", Stage.SUBSCRIBER, [], before)


def test_source_option_never_overwrites_a_known_source(session, clock):
    create_lead(session, clock, "known@example.com", actor=USER, source="Website")
    session.commit()
    data = b"email,source\nknown@example.com,\nnew@example.com,\nrow@example.com,Referral\n"
    run(session, clock, io.BytesIO(data), source="Fair")
    assert lead(session, "known@example.com").source == "Website"
    assert lead(session, "new@example.com").source == "Fair"
    assert lead(session, "row@example.com").source == "Referral"


def test_a_lead_created_meanwhile_is_treated_as_existing(session, clock, monkeypatch):
    create_lead(session, clock, "ann@example.com", actor=USER, first_name="Old")
    session.commit()
    # As if another process created the lead between the importer's lookup and its insert.
    real_existing = importer._CoreBulk.existing
    calls = []

    def blind_first_lookup(self, keys):
        calls.append(list(keys))
        return {} if len(calls) == 1 else real_existing(self, keys)

    monkeypatch.setattr(importer._CoreBulk, "existing", blind_first_lookup)
    monkeypatch.setattr(importer._PostgresBulk, "existing", blind_first_lookup)
    report, _ = run(session, clock, io.BytesIO(b"email,first_name\nann@example.com,New\nbob@example.com,Bob\n"))
    assert counts(report) == (2, 1, 1, 0, 0)
    assert len(calls) == 2
    assert lead(session, "ann@example.com").first_name == "New"
    assert count(session, Lead) == 2
    assert count(session, StageChange) == 2  # one each: the created lead's entry and the pre-existing one's


# --- idempotence -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["hubspot.csv", "mailchimp.csv", "bad_rows.csv", "embedded_newlines.csv", "duplicates.csv"]
)
def test_importing_the_same_file_twice_changes_nothing_the_second_time(session, clock, name):
    first, _ = run(session, clock, name, tags=("campaign-x",), source="Fair")
    sizes = table_sizes(session)
    stamps = dict(session.execute(select(Lead.email_key, Lead.updated_at)).all())
    clock.advance(timedelta(days=1))
    second, _ = run(session, clock, name, tags=("campaign-x",), source="Fair")
    assert (second.created, second.updated) == (0, 0)
    assert second.skipped == first.rows - first.rejected
    assert second.rejected == first.rejected
    assert table_sizes(session) == sizes
    assert dict(session.execute(select(Lead.email_key, Lead.updated_at)).all()) == stamps


# --- history, options and safety rules ---------------------------------------------------------------------


def test_new_leads_get_their_history(session, clock):
    run(session, clock, "hubspot.csv")
    ann = lead(session, "ann@example.com")
    [entry] = stage_history(session, ann)
    assert (entry.from_stage, entry.to_stage, entry.actor_kind, entry.actor, entry.changed_at) == (
        None, Stage.MQL, ActorKind.IMPORT, "hubspot.csv", clock.now(),
    )
    [activity] = session.scalars(select(Activity).where(Activity.lead_id == ann.id)).all()
    assert (activity.kind, activity.data, activity.occurred_at) == (
        "imported", {"file": "hubspot.csv", "line": 2}, clock.now(),
    )
    assert (ann.created_at, ann.updated_at, ann.stage_entered_at) == (clock.now(), clock.now(), clock.now())
    assert (ann.status, ann.score) == (LeadStatus.ACTIVE, 0)


def test_options_tag_source_and_stage_apply_to_new_leads(session, clock):
    data = b"email,stage\nplain@example.com,\nstaged@example.com,opportunity\n"
    run(session, clock, io.BytesIO(data), tags=("fair-2026", " vip "), source="Fair", stage=Stage.LEAD,
        file_name="fair.csv")
    plain = lead(session, "plain@example.com")
    assert (plain.stage, plain.source, plain.tag_names) == (Stage.LEAD, "Fair", ["fair-2026", "vip"])
    assert lead(session, "staged@example.com").stage == Stage.OPPORTUNITY
    assert set(session.scalars(select(StageChange.actor))) == {"fair.csv"}
    assert count(session, Tag) == 2


def test_stage_option_does_not_move_existing_leads(session, clock):
    create_lead(session, clock, "ann@example.com", actor=USER)
    session.commit()
    report, _ = run(session, clock, io.BytesIO(b"email\nann@example.com\n"), stage=Stage.SQL)
    assert counts(report) == (1, 0, 0, 1, 0)
    assert lead(session, "ann@example.com").stage == Stage.SUBSCRIBER


@pytest.mark.parametrize(
    ("current", "in_file", "after"),
    [
        (Stage.LEAD, "mql", Stage.MQL),
        (Stage.SUBSCRIBER, "customer", Stage.CUSTOMER),
        (Stage.CUSTOMER, "lead", Stage.CUSTOMER),
        (Stage.SQL, "subscriber", Stage.SQL),
        (Stage.MQL, "lost", Stage.LOST),
        (Stage.LOST, "lead", Stage.LEAD),
        (Stage.CUSTOMER, "closed_lost", Stage.LOST),
    ],
)
def test_stages_only_move_forward_or_to_and_from_lost(session, clock, current, in_file, after):
    existing = create_lead(session, clock, "ann@example.com", actor=USER, stage=current)
    session.commit()
    clock.advance(timedelta(minutes=5))
    report, _ = run(session, clock, io.BytesIO(f"email,stage\nann@example.com,{in_file}\n".encode()))
    ann = lead(session, "ann@example.com")
    assert ann.stage == after
    history = stage_history(session, ann)
    if after == current:
        assert counts(report) == (1, 0, 0, 1, 0)
        assert len(history) == 1
    else:
        assert counts(report) == (1, 0, 1, 0, 0)
        assert (history[-1].from_stage, history[-1].to_stage, history[-1].actor_kind, history[-1].actor) == (
            current, after, ActorKind.IMPORT, "upload",
        )
        assert ann.stage_entered_at == clock.now()
        kinds = set(session.scalars(select(Activity.kind).where(Activity.lead_id == existing.id)))
        assert {"stage_changed", "import_updated"} <= kinds


@pytest.mark.parametrize("status", [LeadStatus.UNSUBSCRIBED, LeadStatus.BOUNCED, LeadStatus.COMPLAINED])
def test_a_suppressed_lead_stays_suppressed(session, clock, status):
    existing = create_lead(session, clock, "ann@example.com", actor=USER)
    existing.status = status
    session.commit()
    data = b"email,first_name,status\nann@example.com,Ann,active\nnew@example.com,New,unsubscribed\n"
    report, _ = run(session, clock, io.BytesIO(data))
    assert counts(report) == (2, 1, 1, 0, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.status, ann.first_name, ann.attributes) == (status, "Ann", {})
    assert lead(session, "new@example.com").status == LeadStatus.ACTIVE


def test_an_erased_lead_is_never_touched(session, clock):
    existing = create_lead(session, clock, "gone@example.com", actor=USER)
    existing.status = LeadStatus.ERASED
    session.commit()
    report, _ = run(session, clock, io.BytesIO(b"email,first_name,stage\ngone@example.com,Back,customer\n"),
                    tags=("t",))
    assert counts(report) == (1, 0, 0, 1, 0)
    gone = lead(session, "gone@example.com")
    assert (gone.status, gone.first_name, gone.stage, gone.tag_names) == (
        LeadStatus.ERASED, None, Stage.SUBSCRIBER, [],
    )


def test_empty_cells_never_erase_stored_values(session, clock):
    create_lead(session, clock, "ann@example.com", actor=USER, first_name="Ann", company="Acme",
                attributes={"notes": "keep"})
    session.commit()
    report, _ = run(session, clock, io.BytesIO(b"email,first_name,company,notes\nann@example.com,,,\n"))
    assert counts(report) == (1, 0, 0, 1, 0)
    ann = lead(session, "ann@example.com")
    assert (ann.first_name, ann.company, ann.attributes) == ("Ann", "Acme", {"notes": "keep"})


def test_moves_made_by_the_import_go_through_change_stage(session, clock, monkeypatch):
    create_lead(session, clock, "ann@example.com", actor=USER, stage=Stage.LEAD)
    session.commit()
    moves = []

    def spy(session_, clock_, lead_, to, *, reason, actor):
        moves.append((lead_.email, lead_.stage, to, actor))
        return change_stage(session_, clock_, lead_, to, reason=reason, actor=actor)

    monkeypatch.setattr(importer, "change_stage", spy)
    run(session, clock, io.BytesIO(b"email,stage\nann@example.com,sql\nnew@example.com,sql\n"), file_name="x.csv")
    assert moves == [("ann@example.com", Stage.LEAD, Stage.SQL, Actor(ActorKind.IMPORT, "x.csv"))]


def test_import_may_move_rule():
    assert import_may_move(Stage.SUBSCRIBER, Stage.LEAD)
    assert not import_may_move(Stage.LEAD, Stage.LEAD)
    assert not import_may_move(Stage.CUSTOMER, Stage.OPPORTUNITY)
    assert import_may_move(Stage.CUSTOMER, Stage.LOST)
    assert import_may_move(Stage.LOST, Stage.SUBSCRIBER)
    assert import_may_move(Stage.LEAD, Stage.MQL, repeat=True)
    assert not import_may_move(Stage.MQL, Stage.LOST, repeat=True)
    assert not import_may_move(Stage.LOST, Stage.MQL, repeat=True)


# --- inputs, progress, unusable files ----------------------------------------------------------------------


def test_a_binary_stream_and_progress(session, clock):
    data = b"email,name\n" + b"".join(b"u%04d@example.com,U\n" % index for index in range(250))
    seen = []
    report = import_leads(
        session, clock, io.BytesIO(data), ImportOptions(batch_size=100, file_name="upload.csv"),
        progress=seen.append,
    )
    assert counts(report) == (250, 250, 0, 0, 0)
    assert [event.rows for event in seen] == [100, 200, 250]
    assert seen[-1].bytes_read == seen[-1].total_bytes == len(data)
    assert set(session.scalars(select(StageChange.actor))) == {"upload.csv"}


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("empty.csv", UnusableFile, "empty.csv: is empty"),
        ("binary.csv", UnusableFile, "binary.csv: looks binary"),
        ("no_email.csv", MappingError, "no_email.csv: no email column (found headers 'Name', 'Phone', 'Company')"),
    ],
)
def test_unusable_files_raise_and_write_nothing(session, clock, name, error, message):
    with pytest.raises(error) as raised:
        run(session, clock, name)
    assert str(raised.value).startswith(message)
    assert count(session, Lead) == 0


def test_unknown_mapping_target(session, clock):
    with pytest.raises(MappingError, match="unknown field 'nickname'"):
        run(session, clock, "utf8.csv", column_map={"first_name": "nickname"})


def test_mapping_to_attributes_and_ignore(session, clock):
    run(session, clock, "utf8.csv", column_map={"company": "attributes.Employer", "last_name": "ignore"})
    chloe = lead(session, "chloe@example.com")
    assert (chloe.company, chloe.last_name, chloe.attributes) == (None, None, {"employer": "Café € Co"})


@pytest.mark.parametrize(
    "options",
    [{"tags": ("x" * 101,)}, {"tags": ("  ",)}, {"source": "s" * 101}, {"batch_size": 0}],
)
def test_bad_options_are_refused(session, clock, options):
    with pytest.raises(ValidationError):
        run(session, clock, "utf8.csv", **options)


def test_a_failing_write_stops_the_import_with_its_error(session, clock, monkeypatch):
    real_write = importer._BatchWriter.write
    written = []

    def write(self, rows):
        if written:
            raise RuntimeError("disk full")
        written.append(len(rows))
        real_write(self, rows)

    monkeypatch.setattr(importer._BatchWriter, "write", write)
    data = b"email\n" + b"".join(b"u%03d@example.com\n" % index for index in range(50))
    with pytest.raises(RuntimeError, match="disk full"):
        run(session, clock, io.BytesIO(data), batch_size=10)
    assert written == [10]


def test_a_file_that_turns_undecodable_fails_whole_after_pending_writes(session, clock):
    rows = "".join(f"u{index:05d}@example.com,Name\r\n" for index in range(3000))
    data = b"\xff\xfe" + f"email,name\r\n{rows}".encode("utf-16-le") + b"\x41"
    assert len(data) > SAMPLE_BYTES
    with pytest.raises(UnusableFile, match="upload: cannot be decoded as utf-16 after line"):
        run(session, clock, io.BytesIO(data), batch_size=500)
    session.rollback()
    assert count(session, Lead) == 0
