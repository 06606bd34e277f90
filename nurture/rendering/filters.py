"""Filters for email copy: fallbacks that read naturally and dates in the lead's language and time zone.

``{{ lead.first_name | default('there') }}`` falls back on a missing, ``None`` or blank value (Jinja's own
``default`` only on an undefined one, so a lead with no first name would get "Hi ,").

``{{ event_date | date('long') }}`` formats a date, a datetime (shown in the lead's time zone) or an ISO 8601
string (custom attributes are stored as JSON) in the lead's locale: en, fr, de and es, by language (``fr_CA``
uses French), with day-first English for ``en_GB`` and friends. Formats: ``short``, ``medium``, ``long``,
``full``, or a pattern of ``{d} {dd} {M} {MM} {MMM} {MMMM} {yy} {yyyy} {EEE} {EEEE}``. ``{{ now | time }}``
gives the time of day, 12-hour in American English and 24-hour elsewhere.

No Babel here: a small table covers the four languages we send in, and an unknown language falls back to
English.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import pass_context
from jinja2.runtime import Context

LOCALE_VARIABLE = "_nurture_locale"
TIMEZONE_VARIABLE = "_nurture_timezone"
DEFAULT_LANGUAGE = "en"
_UTC = ZoneInfo("UTC")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATTERN_FIELD = re.compile(r"\{(d|dd|M|MM|MMM|MMMM|yy|yyyy|EEE|EEEE)\}")


@dataclass(frozen=True)
class DateNames:
    months: tuple[str, ...]
    months_short: tuple[str, ...]
    days: tuple[str, ...]  # Monday first, as date.weekday()
    days_short: tuple[str, ...]
    formats: dict[str, str]
    time_12h: bool = False


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ENGLISH_MONTHS = _words("January February March April May June July August September October November December")
_ENGLISH_DAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")

DATE_NAMES: dict[str, DateNames] = {
    "en": DateNames(
        months=_ENGLISH_MONTHS,
        months_short=tuple(month[:3] for month in _ENGLISH_MONTHS),
        days=_ENGLISH_DAYS,
        days_short=tuple(day[:3] for day in _ENGLISH_DAYS),
        formats={
            "short": "{M}/{d}/{yy}",
            "medium": "{MMM} {d}, {yyyy}",
            "long": "{MMMM} {d}, {yyyy}",
            "full": "{EEEE}, {MMMM} {d}, {yyyy}",
        },
        time_12h=True,
    ),
    "en-day-first": DateNames(
        months=_ENGLISH_MONTHS,
        months_short=tuple(month[:3] for month in _ENGLISH_MONTHS),
        days=_ENGLISH_DAYS,
        days_short=tuple(day[:3] for day in _ENGLISH_DAYS),
        formats={
            "short": "{dd}/{MM}/{yyyy}",
            "medium": "{d} {MMM} {yyyy}",
            "long": "{d} {MMMM} {yyyy}",
            "full": "{EEEE} {d} {MMMM} {yyyy}",
        },
    ),
    "fr": DateNames(
        months=_words("janvier février mars avril mai juin juillet août septembre octobre novembre décembre"),
        months_short=_words("janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc."),
        days=_words("lundi mardi mercredi jeudi vendredi samedi dimanche"),
        days_short=_words("lun. mar. mer. jeu. ven. sam. dim."),
        formats={
            "short": "{dd}/{MM}/{yyyy}",
            "medium": "{d} {MMM} {yyyy}",
            "long": "{d} {MMMM} {yyyy}",
            "full": "{EEEE} {d} {MMMM} {yyyy}",
        },
    ),
    "de": DateNames(
        months=_words("Januar Februar März April Mai Juni Juli August September Oktober November Dezember"),
        months_short=_words("Jan. Feb. März Apr. Mai Juni Juli Aug. Sept. Okt. Nov. Dez."),
        days=_words("Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag"),
        days_short=_words("Mo. Di. Mi. Do. Fr. Sa. So."),
        formats={
            "short": "{dd}.{MM}.{yy}",
            "medium": "{dd}.{MM}.{yyyy}",
            "long": "{d}. {MMMM} {yyyy}",
            "full": "{EEEE}, {d}. {MMMM} {yyyy}",
        },
    ),
    "es": DateNames(
        months=_words("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"),
        months_short=_words("ene feb mar abr may jun jul ago sept oct nov dic"),
        days=_words("lunes martes miércoles jueves viernes sábado domingo"),
        days_short=_words("lun mar mié jue vie sáb dom"),
        formats={
            "short": "{d}/{M}/{yy}",
            "medium": "{d} {MMM} {yyyy}",
            "long": "{d} de {MMMM} de {yyyy}",
            "full": "{EEEE}, {d} de {MMMM} de {yyyy}",
        },
    ),
}
# English-speaking regions that write the day first.
_DAY_FIRST_ENGLISH = {"GB", "IE", "AU", "NZ", "IN", "ZA"}


def date_names(locale: str | None) -> DateNames:
    language, _, region = (locale or "").replace("-", "_").partition("_")
    language = language.lower()
    if language == "en" and region.upper() in _DAY_FIRST_ENGLISH:
        return DATE_NAMES["en-day-first"]
    return DATE_NAMES.get(language, DATE_NAMES[DEFAULT_LANGUAGE])


def _compiled_pattern(pattern: str, locale: str | None) -> tuple[DateNames, tuple[tuple[str, str], ...]]:
    """``(literal, field)`` pairs of a named or literal pattern: parsed once, formatted per lead (a long
    pattern, which a template may make per recipient, is parsed each time rather than kept)."""
    if len(pattern) <= _FORMATTED_TEXT_CHARS:
        return _remembered_pattern(pattern, locale)
    return _parsed_pattern(pattern, locale)


@lru_cache(maxsize=256)
def _remembered_pattern(pattern: str, locale: str | None) -> tuple[DateNames, tuple[tuple[str, str], ...]]:
    return _parsed_pattern(pattern, locale)


def _parsed_pattern(pattern: str, locale: str | None) -> tuple[DateNames, tuple[tuple[str, str], ...]]:
    names = date_names(locale)
    pattern = names.formats.get(pattern, pattern)
    pairs = []
    position = 0
    for match in _PATTERN_FIELD.finditer(pattern):
        pairs.append((pattern[position : match.start()], match.group(1)))
        position = match.end()
    pairs.append((pattern[position:], ""))
    return names, tuple(pairs)


def format_date(value: date, pattern: str, locale: str | None) -> str:
    names, pairs = _compiled_pattern(pattern, locale)
    out = []
    for literal, name in pairs:
        out.append(literal)
        if name:
            out.append(_FIELDS[name](value, names))
    return "".join(out)


_FIELDS: dict[str, Callable[[date, DateNames], str]] = {
    "d": lambda value, names: str(value.day),
    "dd": lambda value, names: f"{value.day:02d}",
    "M": lambda value, names: str(value.month),
    "MM": lambda value, names: f"{value.month:02d}",
    "MMM": lambda value, names: names.months_short[value.month - 1],
    "MMMM": lambda value, names: names.months[value.month - 1],
    "yy": lambda value, names: f"{value.year % 100:02d}",
    "yyyy": lambda value, names: str(value.year),
    "EEE": lambda value, names: names.days_short[value.weekday()],
    "EEEE": lambda value, names: names.days[value.weekday()],
}


def format_time(value: datetime, locale: str | None) -> str:
    if date_names(locale).time_12h:
        hour = value.hour % 12 or 12
        return f"{hour}:{value.minute:02d} {'AM' if value.hour < 12 else 'PM'}"
    return f"{value.hour:02d}:{value.minute:02d}"


def _is_missing(value: Any) -> bool:
    return value is None or isinstance(value, jinja2.Undefined) or (isinstance(value, str) and not value.strip())


def default_filter(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """The fallback when ``value`` is undefined, ``None`` or blank (or any false value with ``boolean``)."""
    if _is_missing(value) or (boolean and not value):
        return default_value
    return value


def _coerce(value: Any, zone: tzinfo) -> date | None:
    """A date or an aware datetime in ``zone``; ``None`` for what is not a date."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_DATE.fullmatch(text):
                return date.fromisoformat(text)
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return value.astimezone(zone)
    if isinstance(value, date):
        return value
    return None


def _locale_and_zone(context: Context, locale: str | None) -> tuple[str | None, tzinfo]:
    # The render's variables (context.get would look at the template's own assignments first, which never
    # hold these names, at several times the cost).
    variables = context.parent
    return locale or variables.get(LOCALE_VARIABLE), variables.get(TIMEZONE_VARIABLE) or _UTC


# Dates given as text (campaign data, custom attributes) come back for recipient after recipient: each is
# formatted once per format, locale and zone. Only short text is kept (a date is short; a cache of long text
# would keep what a template made for each recipient).
_FORMATTED_TEXT: dict[tuple[str, str, str | None, tzinfo], Any] = {}
_FORMATTED_TEXT_MAX = 4096
_FORMATTED_TEXT_CHARS = 64


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium", locale: str | None = None) -> Any:
    """Blank for a missing value (so ``| date | default('soon')`` works), unchanged for one that is not a date."""
    if _is_missing(value):
        return ""
    locale, zone = _locale_and_zone(context, locale)
    short = type(value) is str and len(value) <= _FORMATTED_TEXT_CHARS and type(format) is str
    key = (value, format, locale, zone) if short and len(format) <= _FORMATTED_TEXT_CHARS else None
    if key is not None:
        found = _FORMATTED_TEXT.get(key)
        if found is not None:
            return found
    moment = _coerce(value, zone)
    formatted = value if moment is None else format_date(moment, format, locale)
    if key is not None:
        if len(_FORMATTED_TEXT) >= _FORMATTED_TEXT_MAX:
            _FORMATTED_TEXT.clear()
        _FORMATTED_TEXT[key] = formatted
    return formatted


@pass_context
def time_filter(context: Context, value: Any, locale: str | None = None) -> Any:
    if _is_missing(value):
        return ""
    locale, zone = _locale_and_zone(context, locale)
    moment = _coerce(value, zone)
    if not isinstance(moment, datetime):
        return value
    return format_time(moment, locale)


FILTERS = {"default": default_filter, "d": default_filter, "date": date_filter, "time": time_filter}
