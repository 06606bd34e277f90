"""Which header means which lead field, and how each field's values are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nurture.leads import columns as cols
from nurture.leads.emails import InvalidEmail, normalise_email

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        # email
        ("Email", "email"), ("E-mail", "email"), ("EMAIL ADDRESS", "email"), ("email_address", "email"),
        ("Adresse e-mail", "email"), ("Courriel", "email"),
        # names
        ("First Name", "first_name"), ("firstname", "first_name"), ("FNAME", "first_name"), ("Prénom", "first_name"),
        ("Vorname", "first_name"), ("Last Name", "last_name"), ("Surname", "last_name"), ("Nom", "last_name"),
        ("Nachname", "last_name"),
        # company and title
        ("Company", "company"), ("Company Name", "company"), ("Société", "company"), ("Organisation", "company"),
        ("Job Title", "job_title"), ("Title", "job_title"), ("Poste", "job_title"),
        # phone
        ("Phone", "phone"), ("Phone Number", "phone"), ("Téléphone", "phone"), ("Mobile Phone Number", "phone"),
        # place and language
        ("Country", "country"), ("Country/Region", "country"), ("CC", "country"), ("Pays", "country"),
        ("Time Zone", "timezone"), ("TIMEZONE", "timezone"), ("Fuseau horaire", "timezone"),
        ("Language", "locale"), ("Locale", "locale"),
        # marketing
        ("Lead Source", "source"), ("Original Source", "source"), ("Lifecycle Stage", "stage"), ("Stage", "stage"),
        ("Contact Owner", "owner"), ("Lead owner", "owner"), ("Tags", "tags"), ("TAGS", "tags"), ("Labels", "tags"),
        # consent
        ("OPTIN_TIME", "consent_at"), ("Consent date", "consent_at"), ("OPTIN_IP", "consent_ip"),
        ("Consent IP", "consent_ip"), ("Lawful basis", "consent_basis"), ("Consent source", "consent_source"),
    ],
)
def test_alias_families(header, field):
    assert cols.HEADER_ALIASES[cols.compact_header(header)] == field


@pytest.mark.parametrize("header", ["  EMAIL  ", "e - mail", "E_Mail", "eMail", "É-MAIL"])
def test_headers_match_in_any_case_spacing_and_accents(header):
    mapping = cols.build_mapping([header, "x"])
    assert mapping.columns[0].field == "email"


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Lead Status", "lead_status"), ("MEMBER_RATING", "member_rating"), ("Record ID", "record_id"),
        ("  Préférence  de contact ", "preference_de_contact"), ("Country/Region (2)", "country_region_2"),
        ("x" * 150, "x" * 100),
    ],
)
def test_attribute_keys_are_snake_case(header, key):
    assert cols.attribute_key(header) == key


MAILCHIMP = [
    "Email Address", "First Name", "Last Name", "Address", "Phone Number", "MEMBER_RATING", "OPTIN_TIME", "OPTIN_IP",
    "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE", "LONGITUDE", "GMTOFF", "DSTOFF", "TIMEZONE", "CC", "REGION",
    "LAST_CHANGED", "LEID", "EUID", "NOTES", "TAGS",
]
HUBSPOT = [
    "Record ID", "First Name", "Last Name", "Email", "Phone Number", "Company Name", "Job Title", "Lifecycle Stage",
    "Contact owner", "Create Date", "Lead Status", "Country/Region", "Time Zone",
]


def test_mailchimp_export_maps_without_help():
    targets = [column.target for column in cols.build_mapping(MAILCHIMP).columns]
    assert targets == [
        "email", "first_name", "last_name", "attributes.address", "phone", "attributes.member_rating", "consent_at",
        "consent_ip", "attributes.confirm_time", "attributes.confirm_ip", "attributes.latitude",
        "attributes.longitude", "attributes.gmtoff", "attributes.dstoff", "timezone", "country",
        "attributes.region", "attributes.last_changed", "attributes.leid", "attributes.euid", "attributes.notes",
        "tags",
    ]


def test_hubspot_export_maps_without_help():
    targets = [column.target for column in cols.build_mapping(HUBSPOT).columns]
    assert targets == [
        "attributes.record_id", "first_name", "last_name", "email", "phone", "company", "job_title", "stage", "owner",
        "attributes.create_date", "attributes.lead_status", "country", "timezone",
    ]


def test_a_second_column_for_the_same_field_becomes_an_attribute_and_a_note_says_so():
    mapping = cols.build_mapping(["Email", "Work Email", "Phone", "Mobile", "notes"])
    assert [column.target for column in mapping.columns] == [
        "email", "attributes.work_email", "phone", "attributes.mobile", "attributes.notes",
    ]
    assert mapping.email_index == 0
    assert mapping.notes == (
        "column 2 'Work Email' also means email: column 1 'Email' feeds it, and this one is kept as attribute "
        "work_email",
        "column 4 'Mobile' also means phone: column 3 'Phone' feeds it, and this one is kept as attribute mobile",
    )
    assert cols.build_mapping(MAILCHIMP).notes == cols.build_mapping(HUBSPOT).notes == ()


def test_duplicate_column_names_are_refused_naming_them():
    # Issue 9, item 8: these imported silently, the second columns becoming attributes.
    with pytest.raises(cols.MappingError) as error:
        cols.build_mapping(["email", "email", "first_name", "First Name", "tags", "tags"])
    assert str(error.value) == (
        "duplicate column names: 'email' (column 1) and 'email' (column 2); 'first_name' (column 3) and "
        "'First Name' (column 4); 'tags' (column 5) and 'tags' (column 6); rename or remove the extra columns "
        "so that each name is used once"
    )


@pytest.mark.parametrize(
    "headers",
    [["Email", "E-mail"], ["email", "notes", " Notes "], ["email", "Имя", "имя"], ["email", "status", "Status"]],
)
def test_names_that_match_alike_are_duplicates(headers):
    with pytest.raises(cols.MappingError, match="duplicate column names"):
        cols.build_mapping(headers)


def test_blank_and_distinct_non_ascii_headers_are_not_duplicates():
    mapping = cols.build_mapping(["email", "", "", "Имя", "Город"])
    assert [column.target for column in mapping.columns] == [
        "email", "attributes.column_2", "attributes.column_3", "attributes.column_4", "attributes.column_5",
    ]


def test_columns_nurture_manages_are_ignored():
    mapping = cols.build_mapping(["email", "status", "Score", "temperature", "created_at", "Updated At"])
    assert [column.target for column in mapping.columns] == ["email", "ignore", "ignore", "ignore", "ignore", "ignore"]


def test_overrides_come_first():
    mapping = cols.build_mapping(
        ["Contact", "Email", "Status", "Junk"],
        {"contact": "email", "EMAIL": "attributes.Secondary Email", "Status": "attributes.crm status", "junk": ""},
    )
    assert [column.target for column in mapping.columns] == [
        "email", "attributes.secondary_email", "attributes.crm_status", "ignore",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Email": "e-mail-address"}, "--map 'Email': unknown field 'e-mail-address'"),
        ({"Nope": "email"}, "--map 'Nope': no such column; the file has headers 'Email', 'Name'"),
        ({"Email": "email", "Name": "email"}, "two columns are mapped to the same field"),
        ({"Name": "attributes."}, "attribute name is empty"),
    ],
)
def test_bad_overrides_are_refused(overrides, message):
    with pytest.raises(cols.MappingError) as error:
        cols.build_mapping(["Email", "Name"], overrides)
    assert message in str(error.value)


def test_no_email_column_lists_the_headers_found():
    with pytest.raises(cols.MappingError, match="no email column \\(found headers 'Name', 'Phone'\\)"):
        cols.build_mapping(["Name", "Phone"])
    mapping = cols.build_mapping(["Name", "Contact"], {"Contact": "email"})
    assert mapping.email_index == 1


def test_parse_map_option():
    assert cols.parse_map_option("Adresse mail = email") == ("Adresse mail", "email")
    assert cols.parse_map_option("a=b=attributes.c") == ("a=b", "attributes.c")
    assert cols.parse_map_option("Junk=") == ("Junk", "")
    with pytest.raises(cols.MappingError, match="expected"):
        cols.parse_map_option("no equals sign")
    with pytest.raises(cols.MappingError, match="expected"):
        cols.parse_map_option("=email")


@pytest.mark.parametrize(
    ("raw", "zone"),
    [
        ("Europe/Paris", "Europe/Paris"),
        ("europe/paris", "Europe/Paris"),
        ("europe_slash_paris", "Europe/Paris"),
        ("america_slash_new_york", "America/New_York"),
        ("(GMT+01:00) Europe/Paris", "Europe/Paris"),
        ("(UTC-05:00) America/New York", "America/New_York"),
        ("UTC", "UTC"),
    ],
)
def test_time_zones_in_export_spellings(raw, zone):
    assert cols.parse_timezone(raw) == zone


@pytest.mark.parametrize("raw", ["Mars/Olympus", "GMT+25", "../../etc/passwd", "Paris"])
def test_unknown_time_zones_are_refused(raw):
    with pytest.raises(ValueError, match="unknown time zone"):
        cols.parse_timezone(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-03-14 09:26:53", datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2023-03-14T09:26:53Z", datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2023-03-14T11:26:53+02:00", datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2023-03-14 09:26:53 UTC", datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2023-03-14", datetime(2023, 3, 14, tzinfo=UTC)),
    ],
)
def test_consent_times(raw, expected):
    assert cols.parse_consent_at(raw, NOW) == expected


def test_consent_times_refused():
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        cols.parse_consent_at("14/03/2023", NOW)
    with pytest.raises(ValueError, match="in the future"):
        cols.parse_consent_at((NOW + timedelta(seconds=1)).isoformat(), NOW)
    later_offset = NOW.astimezone(timezone(timedelta(hours=5)))
    assert cols.parse_consent_at(later_offset.isoformat(), NOW) == NOW


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+14:00", "0001-01-01 00:00:00+00:01"])
def test_consent_times_before_year_one_in_utc_are_refused_not_overflowing(raw):
    with pytest.raises(ValueError, match="out of range"):
        cols.parse_consent_at(raw, NOW)


@pytest.mark.parametrize(
    ("raw", "ip"),
    [("203.0.113.7", "203.0.113.7"), ("0.0.0.0", "0.0.0.0"), ("2001:DB8:0:0::1", "2001:db8::1"), ("::1", "::1")],
)
def test_ip_addresses_are_canonical(raw, ip):
    assert cols.parse_ip(raw) == ip


@pytest.mark.parametrize("raw", ["999.1.1.1", "1.2.3", "010.1.1.1", "example.com", "1.2.3.4.5"])
def test_bad_ip_addresses(raw):
    with pytest.raises(ValueError, match="not an IP address"):
        cols.parse_ip(raw)


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("vip, news", ["vip", "news"]),
        ('"Newsletter","Webinar 2023"', ["Newsletter", "Webinar 2023"]),
        ("a;b | c", ["a", "b", "c"]),
        (" , ;", []),
    ],
)
def test_tags(raw, tags):
    assert cols.parse_tags(raw) == tags


def test_owner_email_accepts_a_display_name():
    normalise = cols.EmailNormaliser()
    assert cols.owner_email("owner@Example.COM", normalise) == "owner@example.com"
    assert cols.owner_email("Jane Owner <jane@example.com>", normalise) == "jane@example.com"
    assert cols.owner_email("Jane Owner (jane@example.com)", normalise) == "jane@example.com"
    with pytest.raises(ValueError, match="'Jane Doe' is not an email address"):
        cols.owner_email("Jane Doe", normalise)
    with pytest.raises(ValueError, match="jane@"):
        cols.owner_email("jane@", normalise)


# --- the email fast path gives exactly the validator's answer ----------------------------------------------

TRICKY_ADDRESSES = [
    "ann@example.com", "Ann.Lee@Example.COM", " ann@example.com ", "ann+tag@sub.example.co.uk",
    "o'brien@example.ie", "user@localhost", "user@example", "user@example.local", "user@example.test",
    "user@123.123.123.123", "user@[127.0.0.1]", "user@exa_mple.com", "user@-example.com", "user@example-.com",
    "user@ex--ample.com", "user@xn--80ak6aa92e.com", "user@xn--invalid.com", "user..dots@example.com",
    ".user@example.com", "user.@example.com", "info@example.com", "Postmaster@example.com", "a@b.c",
    "x" * 64 + "@example.com", "x" * 65 + "@example.com", "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 60] * 4) + ".com", "user@exämple.com", "üser@example.com", '"quoted"@example.com',
    "Ann <ann@example.com>", "ann@example.com.", "ann@@example.com", "", "   ", "ann@example.c0m", "ann@example.123",
]


def _outcome(function, raw: str) -> str:
    try:
        return "ok:" + function(raw)
    except InvalidEmail:
        return "invalid"


@pytest.mark.parametrize("raw", TRICKY_ADDRESSES)
def test_fast_path_agrees_with_the_validator_on_tricky_addresses(raw):
    normalise = cols.EmailNormaliser()
    assert _outcome(normalise, raw) == _outcome(normalise_email, raw)
    # A second time: now the domain comes from the cache.
    assert _outcome(normalise, raw) == _outcome(normalise_email, raw)


_LOCAL = st.text(alphabet="abcXYZ019.+-_'!#~\"@ ", min_size=0, max_size=70)
_DOMAIN = st.lists(
    st.text(alphabet="abcz09-_é", min_size=0, max_size=65), min_size=1, max_size=5
).map(".".join) | st.sampled_from(["example.com", "localhost", "example.local", "xn--bcher-kva.example", "a.b"])


@given(local=_LOCAL, domain=_DOMAIN)
@example(local="info", domain="example.com")
def test_fast_path_agrees_with_the_validator(local, domain):
    raw = f"{local}@{domain}"
    normalise = cols.EmailNormaliser()
    assert _outcome(normalise, raw) == _outcome(normalise_email, raw)


def test_domain_memory_is_bounded():
    normalise = cols.EmailNormaliser(max_domains=10)
    for index in range(50):
        normalise(f"a@d{index}.example.com")
    assert len(normalise._domains) <= 10


@given(
    local=st.text(alphabet="aZ09.+-_'", min_size=1, max_size=66),
    labels=st.lists(st.text(alphabet="aZ09-", min_size=0, max_size=64), min_size=1, max_size=4),
    tld=st.sampled_from(["com", "fr", "local", "test", "c0m", "co-uk", "invalid", ""]),
)
def test_fast_path_agrees_on_plain_addresses(local, labels, tld):
    raw = f"{local}@{'.'.join([*labels, tld])}"
    normalise = cols.EmailNormaliser()
    assert _outcome(normalise, raw) == _outcome(normalise_email, raw)
