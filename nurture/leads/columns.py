"""The columns of a lead list: which header means which lead field, and how each field's values are read.

Headers match in any case, spacing, punctuation and accents ("E-mail", "Email Address", "Prénom",
"Country/Region"), with the aliases used by common exports, Mailchimp's and HubSpot's among them. A
column that matches no field is kept as a custom attribute under a snake_case key of its header.

Two columns whose names match the same way ("email" and "E-mail", "first_name" and "First Name") make the
file ambiguous: ``build_mapping`` refuses it, naming them. Two different names for one field ("Phone" and
"Mobile Phone") are not ambiguous: the first column feeds the field, the other is kept as an attribute,
and ``ColumnMapping.notes`` says so for the import summary.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from nurture.errors import ValidationError
from nurture.leads.emails import InvalidEmail, normalise_email
from nurture.leads.lifecycle import Stage, parse_stage
from nurture.leads.models import Lead
from nurture.leads.service import validate_timezone

EMAIL = "email"
STAGE = "stage"
TAGS = "tags"
CONSENT_AT = "consent_at"
CONSENT_IP = "consent_ip"
OWNER = "owner"
TIMEZONE = "timezone"

# Text fields stored as given (trimmed), limited by their column length.
TEXT_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "company",
    "job_title",
    "phone",
    "country",
    "locale",
    "source",
    "consent_basis",
    "consent_source",
)
FIELDS: tuple[str, ...] = (EMAIL, *TEXT_FIELDS, TIMEZONE, OWNER, STAGE, TAGS, CONSENT_AT, CONSENT_IP)
FIELD_LENGTHS: dict[str, int] = {
    name: Lead.__table__.c[name].type.length  # type: ignore[attr-defined]
    for name in (*TEXT_FIELDS, EMAIL, TIMEZONE, OWNER, CONSENT_IP)
}
TAG_LENGTH = 100
ATTRIBUTE_VALUE_LENGTH = 10_000
ATTRIBUTE_KEY_LENGTH = 100
IGNORE = "ignore"
ATTRIBUTE_PREFIX = "attributes."

# Spellings seen in real exports; matched after `compact_header`, so case, spaces and accents do not matter.
_ALIASES: dict[str, tuple[str, ...]] = {
    EMAIL: (
        "email", "e-mail", "email address", "e-mail address", "mail", "email_address", "courriel",
        "adresse email", "adresse e-mail", "adresse mail", "e-mail-adresse", "correo", "correo electronico",
        "work email", "business email", "primary email",
    ),
    "first_name": ("first name", "firstname", "first", "fname", "given name", "prénom", "prenom", "vorname",
                   "nombre"),
    "last_name": ("last name", "lastname", "last", "lname", "surname", "family name", "nom", "nom de famille",
                  "nachname", "apellido", "apellidos"),
    "company": ("company", "company name", "organization", "organisation", "organization name",
                "organisation name", "société", "entreprise", "firma", "unternehmen", "empresa", "account name",
                "employer"),
    "job_title": ("job title", "title", "position", "job", "role", "poste", "fonction", "titre", "berufsbezeichnung",
                  "cargo"),
    "phone": ("phone", "phone number", "telephone", "téléphone", "tel", "tél", "mobile", "mobile phone",
              "mobile phone number", "cell phone", "telefon", "telefono", "numéro de téléphone"),
    "country": ("country", "country/region", "country region", "country code", "cc", "pays", "land", "país"),
    TIMEZONE: ("time zone", "timezone", "tz", "fuseau horaire", "zeitzone"),
    "locale": ("locale", "language", "lang", "preferred language", "langue", "sprache", "idioma"),
    "source": ("source", "lead source", "original source", "origin", "provenance", "quelle"),
    OWNER: ("owner", "contact owner", "lead owner", "owner email", "assigned to", "propriétaire"),
    STAGE: ("stage", "lifecycle stage", "lifecycle", "lead stage", "funnel stage", "étape", "stade"),
    TAGS: ("tags", "tag", "labels", "label", "étiquettes", "schlagworte"),
    CONSENT_AT: ("consent at", "consent date", "consent time", "consent timestamp", "consented at", "optin time",
                 "opt-in time", "opt in date", "optin date", "opt-in date"),
    CONSENT_IP: ("consent ip", "optin ip", "opt-in ip", "opt in ip"),
    "consent_basis": ("consent basis", "lawful basis", "legal basis"),
    "consent_source": ("consent source", "optin source", "opt-in source"),
}


def compact_header(header: str) -> str:
    """Lower-case ASCII letters and digits only: 'Prénom' -> 'prenom', 'Country/Region' -> 'countryregion'."""
    return "".join(char for char in _ascii_fold(header) if char.isalnum())


def attribute_key(header: str) -> str:
    """A snake_case key for a custom attribute: 'Lead Status' -> 'lead_status', 'MEMBER_RATING' ->
    'member_rating'. At most ``ATTRIBUTE_KEY_LENGTH`` characters, which segment rules can name."""
    return "_".join(re.findall(r"[a-z0-9]+", _ascii_fold(header)))[:ATTRIBUTE_KEY_LENGTH].rstrip("_")


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if char.isascii())


HEADER_ALIASES: dict[str, str] = {compact_header(alias): field for field, aliases in _ALIASES.items()
                                  for alias in (field, *aliases)}

# Lead columns that nurture manages itself and an import never sets. A file that has them (such as the
# output of `nurture leads list --format csv`) has them ignored rather than copied into attributes; a
# --map can still keep one as an attribute.
MANAGED_COLUMNS = frozenset(
    compact_header(name) for name in ("status", "score", "temperature", "created_at", "updated_at")
)


@dataclass(frozen=True)
class Column:
    """What one column of the file feeds: a lead field, a custom attribute, or nothing (``ignore``)."""

    index: int
    header: str
    field: str | None = None
    attribute: str | None = None

    @property
    def target(self) -> str:
        if self.field:
            return self.field
        if self.attribute:
            return f"{ATTRIBUTE_PREFIX}{self.attribute}"
        return IGNORE


@dataclass(frozen=True)
class ColumnMapping:
    columns: tuple[Column, ...]
    width: int
    # For the import summary: columns kept as attributes because an earlier one claimed their field.
    notes: tuple[str, ...] = ()

    @property
    def email_index(self) -> int:
        return next(column.index for column in self.columns if column.field == EMAIL)

    def describe(self) -> list[str]:
        return [f"{column.header or f'column {column.index + 1}'} -> {column.target}" for column in self.columns]


class MappingError(ValidationError):
    """The header and the ``--map`` options cannot give a usable mapping (no email column, unknown field)."""


def parse_map_option(raw: str) -> tuple[str, str]:
    """'CSV Column=field' -> ('CSV Column', 'field'); the column name may itself contain '='."""
    column, separator, target = raw.rpartition("=")
    if not separator or not column.strip():
        raise MappingError(f"--map {raw!r}: expected \"CSV Column=field\"")
    return column.strip(), target.strip()


def _resolve_target(column: str, target: str) -> tuple[str | None, str | None]:
    """(field, attribute) for a --map target: a field name, 'attributes.<key>', or 'ignore' (or empty)."""
    lowered = target.strip().lower()
    if lowered in ("", IGNORE):
        return None, None
    if lowered.startswith(ATTRIBUTE_PREFIX):
        key = attribute_key(target[len(ATTRIBUTE_PREFIX):])
        if not key:
            raise MappingError(f"--map {column!r}: attribute name is empty")
        return None, key
    if lowered in FIELDS:
        return lowered, None
    raise MappingError(
        f"--map {column!r}: unknown field {target!r}; expected one of {', '.join(FIELDS)}, "
        f"attributes.<name> or {IGNORE}"
    )


def _header_matches(wanted: str, header: str) -> bool:
    return " ".join(wanted.split()).casefold() == " ".join(header.split()).casefold()


def build_mapping(headers: Sequence[str], overrides: Mapping[str, str] | None = None) -> ColumnMapping:
    """Map each header to a field (explicit ``overrides`` first, then aliases) or to an attribute.

    When two columns claim the same field the first one wins and the others become attributes (with a
    note saying so). Raises ``MappingError`` for an override naming an unknown field or a missing column,
    for two columns with the same name, and when no column holds the email address."""
    _refuse_duplicate_names(headers)
    resolved: dict[int, tuple[str | None, str | None]] = {}
    for wanted, target in (overrides or {}).items():
        matches = [index for index, header in enumerate(headers) if _header_matches(wanted, header)]
        if not matches:
            raise MappingError(f"--map {wanted!r}: no such column; the file has {_list_headers(headers)}")
        resolved[matches[0]] = _resolve_target(wanted, target)

    claimed = {field for field, _ in resolved.values() if field}
    if len(claimed) < sum(1 for field, _ in resolved.values() if field):
        raise MappingError("--map: two columns are mapped to the same field")
    used_keys = {attribute for _, attribute in resolved.values() if attribute}
    first_for: dict[str, int] = {field: index for index, (field, _) in resolved.items() if field}
    notes: list[str] = []
    columns: list[Column] = []
    for index, header in enumerate(headers):
        if index in resolved:
            field, attribute = resolved[index]
        elif compact_header(header) in MANAGED_COLUMNS:
            field = attribute = None
        else:
            field = HEADER_ALIASES.get(compact_header(header))
            attribute = None
            if field is None or field in claimed:
                attribute = _unique_key(attribute_key(header) or f"column_{index + 1}", used_keys)
                if field is not None:
                    first = first_for[field]
                    notes.append(
                        f"column {index + 1} {header!r} also means {field}: column {first + 1} "
                        f"{headers[first]!r} feeds it, and this one is kept as attribute {attribute}"
                    )
                field = None
            else:
                claimed.add(field)
                first_for[field] = index
        columns.append(Column(index, header, field, attribute))
    if EMAIL not in claimed:
        raise MappingError(
            f"no email column (found {_list_headers(headers)}); name one with --map \"Column=email\""
        )
    return ColumnMapping(tuple(columns), len(headers), tuple(notes))


def _name_key(header: str) -> str:
    """What two headers share when they name the same column: their compact form, or for a header with no
    ASCII letter or digit (Cyrillic, Japanese...), its words in any case."""
    return compact_header(header) or " ".join(header.split()).casefold()


def _refuse_duplicate_names(headers: Sequence[str]) -> None:
    columns_by_name: dict[str, list[int]] = {}
    for index, header in enumerate(headers):
        if header.strip():
            columns_by_name.setdefault(_name_key(header), []).append(index)
    repeated = [indexes for indexes in columns_by_name.values() if len(indexes) > 1]
    if repeated:
        described = "; ".join(
            " and ".join(f"{headers[index]!r} (column {index + 1})" for index in indexes) for indexes in repeated
        )
        raise MappingError(
            f"duplicate column names: {described}; rename or remove the extra columns so that each name is used once"
        )


def _unique_key(key: str, used: set[str]) -> str:
    candidate, suffix = key, 2
    while candidate in used:
        candidate = f"{key[: ATTRIBUTE_KEY_LENGTH - len(str(suffix)) - 1]}_{suffix}"
        suffix += 1
    used.add(candidate)
    return candidate


def _list_headers(headers: Sequence[str]) -> str:
    shown = [repr(header) for header in headers[:20]]
    more = f" and {len(headers) - 20} more" if len(headers) > 20 else ""
    return f"headers {', '.join(shown)}{more}" if shown else "no headers"


# --- values ---------------------------------------------------------------------------------------------


class EmailNormaliser:
    """``normalise_email`` with a fast path that gives the same answer for the common case.

    email-validator costs about 70 µs an address, most of it checking the domain, which repeats across a
    list. An address whose local part is a plain ASCII dot-atom (and not one of the RFC 2142 names the
    validator lower-cases) is valid exactly when its domain is; each distinct domain is validated once by
    the real validator (on a probe address) and remembered. Anything else goes through
    ``normalise_email`` unchanged. The domain memory holds at most ``max_domains`` entries."""

    _SIMPLE = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([A-Za-z0-9.-]+)")
    _PROBE_LOCAL = "probe"

    def __init__(self, max_domains: int = 20_000) -> None:
        self._domains: dict[str, str | None] = {}
        self._max_domains = max_domains
        self._case_insensitive = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)

    def __call__(self, raw: str) -> str:
        candidate = raw.strip()
        match = self._SIMPLE.fullmatch(candidate)
        if match is None or len(candidate) > 254:
            return normalise_email(raw)
        local, domain = match.groups()
        if len(local) > 64 or local.lower() in self._case_insensitive:
            return normalise_email(raw)
        try:
            normalised_domain = self._domains[domain]
        except KeyError:
            normalised_domain = self._check_domain(domain)
        if normalised_domain is None:
            # Invalid: let the validator explain this very address.
            return normalise_email(raw)
        return f"{local}@{normalised_domain}"

    def _check_domain(self, domain: str) -> str | None:
        try:
            probe = normalise_email(f"{self._PROBE_LOCAL}@{domain}")
        except InvalidEmail:
            result = None
        else:
            result = probe.rpartition("@")[2]
        if len(self._domains) >= self._max_domains:
            self._domains.clear()
        self._domains[domain] = result
        return result


_OWNER_WITH_NAME = re.compile(r".*?[<(]\s*([^<>()\s]+@[^<>()\s]+)\s*[>)]\s*")


def owner_email(raw: str, normalise: EmailNormaliser) -> str:
    """The owner's email; 'Jane Doe <jane@acme.com>' and 'Jane Doe (jane@acme.com)' give the address."""
    match = _OWNER_WITH_NAME.fullmatch(raw)
    candidate = match.group(1) if match else raw
    try:
        return normalise(candidate)
    except InvalidEmail as exc:
        if "@" not in candidate:
            raise ValueError(f"{raw!r} is not an email address") from None
        raise ValueError(f"{raw!r}: {exc}") from None


@lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


_GMT_PREFIX = re.compile(r"\(\s*(?:GMT|UTC)\s*[+\-−]?\s*\d{0,2}:?\d{0,2}\s*\)\s*", re.IGNORECASE)


@lru_cache(maxsize=4096)
def parse_timezone(raw: str) -> str:
    """An IANA zone from an export's spelling: 'Europe/Paris', 'europe/paris', 'europe_slash_paris'
    (HubSpot's internal value) or '(GMT+01:00) Europe/Paris'."""
    candidate = _GMT_PREFIX.sub("", raw.strip()).replace("_slash_", "/").strip()
    try:
        return validate_timezone(candidate)
    except ValueError:
        pass
    canonical = _zones_by_lower_name().get(candidate.lower().replace(" ", "_"))
    if canonical is None:
        raise ValueError(f"unknown time zone {raw!r}; use an IANA name such as Europe/Paris")
    return validate_timezone(canonical)


@lru_cache(maxsize=64)
def parse_stage_value(raw: str) -> Stage:
    return parse_stage(raw)


def parse_consent_at(raw: str, latest: datetime) -> datetime:
    """An ISO 8601 date or time ('2024-05-02 10:33:20', '2024-05-02T10:33:20+02:00', '2024-05-02');
    without an offset it is taken as UTC, which is what Mailchimp and HubSpot export. Times after
    ``latest`` are refused as being in the future."""
    text = raw.strip()
    if text[-4:].upper() in (" UTC", " GMT"):
        text = text[:-4]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO 8601 date or time such as 2024-05-02 10:33:20") from None
    try:
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is before year 1 in UTC.
        raise ValueError(f"{raw!r} is out of range") from None
    if parsed > latest:
        raise ValueError(f"{raw!r} is in the future")
    return parsed


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def parse_ip(raw: str) -> str:
    """An IPv4 or IPv6 address in its canonical form."""
    if _CANONICAL_IPV4.fullmatch(raw):
        # Already what ipaddress would print: four decimal octets without leading zeros.
        return raw
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address") from None


_TAG_SEPARATORS = re.compile(r"[,;|]")


def parse_tags(raw: str) -> list[str]:
    """'a, b; c' or Mailchimp's '"Newsletter","Webinar 2023"' -> ['a', 'b', 'c'] / ['Newsletter', ...]."""
    tags = []
    for part in _TAG_SEPARATORS.split(raw):
        tag = part.strip().strip('"').strip()
        if tag:
            tags.append(tag)
    return tags
