# -*- test-case-name: tests.test_cache_directives -*-
"""
Parsing of the header fields that control caching (RFC 9111 §5).

C{Cache-Control} (RFC 9111 §5.2) in requests and responses, C{Pragma}
(RFC 9111 §5.4), and the date fields C{Date}, C{Expires}, C{Last-Modified}
(HTTP-date, RFC 9110 §5.6.7) and C{Age} (RFC 9111 §5.1) become frozen
dataclasses. Parsing never raises: whatever bytes arrive, the result is a
value, and malformed freshness information errs on the side of staleness
(RFC 9111 §4.2.1).

This module is pure: it imports neither Twisted nor diskcache and never reads
the clock; the one place a current time matters (two-digit years) takes it as
an argument.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CACHE_VIEW_FIELD",
    "DELTA_SECONDS_MAX",
    "CacheControl",
    "MessageDates",
    "field_values",
    "parse_age",
    "parse_cache_control",
    "parse_dates",
    "parse_http_date",
    "parse_request_cache_control",
    "parse_stored_cache_control",
    "pragma_no_cache",
    "split_list",
]

DELTA_SECONDS_MAX = 2**31
"""
The value used for a delta-seconds too large to represent: RFC 9111 §1.2.2
says to use 2147483648 (2^31) for any value that overflows.
"""

_OWS = b" \t"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]+")


def field_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    The values of every field line named C{name}, stripped of surrounding
    whitespace (RFC 9110 §5.5).

    @param headers: The header section.
    @param name: A lower-case field name.
    @return: The values, in order.
    """
    return [value.strip(_OWS) for key, value in headers if key.lower() == name]


def split_list(values: Iterable[bytes]) -> list[bytes]:
    """
    Split list-based field values into elements (RFC 9110 §5.6.1), keeping
    commas inside quoted strings (RFC 9110 §5.6.4) as part of the element.

    Empty elements are dropped (RFC 9110 §5.6.1.2). An unterminated quoted
    string runs to the end of its field line.

    @param values: Field values, one per field line.
    @return: The elements, stripped of surrounding whitespace, in order.
    """
    elements: list[bytes] = []
    for value in values:
        start = 0
        quoted = False
        escaped = False
        for index, byte in enumerate(value):
            if escaped:
                escaped = False
            elif quoted and byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # double quote
                quoted = not quoted
            elif byte == 0x2C and not quoted:  # comma
                element = value[start:index].strip(_OWS)
                if element:
                    elements.append(element)
                start = index + 1
        element = value[start:].strip(_OWS)
        if element:
            elements.append(element)
    return elements


def _unquote(argument: bytes) -> bytes:
    """Remove quoting from a quoted-string (RFC 9110 §5.6.4); tokens pass as they are."""
    if len(argument) >= 2 and argument[:1] == b'"' and argument[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", argument[1:-1], flags=re.DOTALL)
    return argument


def _delta_seconds(argument: bytes | None) -> int | None:
    """
    Parse delta-seconds (RFC 9111 §1.2.2), quoted or not (RFC 9111 §5.2:
    recipients ought to accept both forms); overflow becomes
    L{DELTA_SECONDS_MAX}.

    @return: The seconds, or L{None} if C{argument} is missing or invalid.
    """
    if argument is None:
        return None
    return _digits_value(_unquote(argument))


#: More digits than any delta-seconds below L{DELTA_SECONDS_MAX} has.
_MAX_DIGITS = len(str(DELTA_SECONDS_MAX))


def _digits_value(digits: bytes) -> int | None:
    """
    The value of C{1*DIGIT} (RFC 9111 §1.2.2), or L{None} for anything
    else (a sign, a fraction, a space, nothing).  A value too large to
    represent is L{DELTA_SECONDS_MAX} (§1.2.2); leading zeros are dropped
    first, so a long run of them is not mistaken for a huge value, and a
    long value is never handed to L{int} (Python refuses strings of more
    than 4300 digits with a L{ValueError}, which would escape from a
    parser that must never raise on what an origin sends).
    """
    if not _DIGITS.fullmatch(digits):
        return None
    significant = digits.lstrip(b"0")
    if len(significant) > _MAX_DIGITS:
        return DELTA_SECONDS_MAX
    return min(int(significant or b"0"), DELTA_SECONDS_MAX)


def _field_names(argument: bytes | None) -> frozenset[bytes]:
    """Parse the quoted list of field names of C{no-cache} or C{private}."""
    if argument is None:
        return frozenset()
    names = split_list([_unquote(argument)])
    return frozenset(name.lower() for name in names if _TOKEN.fullmatch(name))


@dataclass(frozen=True, slots=True)
class CacheControl:
    """
    The directives of C{Cache-Control} (RFC 9111 §5.2), of a request or a
    response. Directives absent from the message have their zero value.

    Duplicated or invalid freshness directives are made explicit (RFC 9111
    §4.2.1: "either the first occurrence should be used or the response
    should be considered stale"; invalid freshness information should be
    considered stale). squeak considers them stale: a C{max-age} or
    C{s-maxage} that is invalid, or given twice with different values, reads
    as C{0}, and its name is listed in L{invalid}.

    @ivar present: Whether the message had any C{Cache-Control} field line
        (RFC 9111 §5.4: then C{Pragma} is ignored).
    @ivar directives: Every directive as parsed, lower-cased names and
        unquoted arguments, in order; extensions included.
    @ivar no_store: C{no-store} (§5.2.1.5, §5.2.2.5).
    @ivar no_cache: Unqualified C{no-cache} (§5.2.1.4, §5.2.2.4), or
        C{Pragma: no-cache} in a request without C{Cache-Control} (§5.4).
    @ivar no_cache_fields: The lower-cased field names of a qualified
        C{no-cache="..."} (§5.2.2.4); empty if none.
    @ivar private: Unqualified C{private} (§5.2.2.7).
    @ivar private_fields: The field names of a qualified C{private="..."}.
    @ivar public: C{public} (§5.2.2.9).
    @ivar max_age: C{max-age} seconds (§5.2.1.1, §5.2.2.1), or L{None}.
    @ivar s_maxage: C{s-maxage} seconds (§5.2.2.10), or L{None}.
    @ivar max_stale: C{max-stale} seconds (§5.2.1.2); C{math.inf} when given
        without an argument; L{None} if absent.
    @ivar min_fresh: C{min-fresh} seconds (§5.2.1.3), or L{None}.
    @ivar must_revalidate: C{must-revalidate} (§5.2.2.2).
    @ivar proxy_revalidate: C{proxy-revalidate} (§5.2.2.8).
    @ivar must_understand: C{must-understand} (§5.2.2.3).
    @ivar no_transform: C{no-transform} (§5.2.1.6, §5.2.2.6).
    @ivar only_if_cached: C{only-if-cached} (§5.2.1.7).
    @ivar immutable: C{immutable} (RFC 8246 §2).
    @ivar stale_while_revalidate: C{stale-while-revalidate} seconds
        (RFC 5861 §3), or L{None}.
    @ivar stale_if_error: C{stale-if-error} seconds (RFC 5861 §4), or L{None}.
    @ivar pragma_no_cache: C{no-cache} came from C{Pragma} (§5.4).
    @ivar invalid: Names of freshness directives that were invalid or
        conflicting duplicates, and so read as C{0} (§4.2.1).
    """

    present: bool = False
    directives: tuple[tuple[str, bytes | None], ...] = ()
    no_store: bool = False
    no_cache: bool = False
    no_cache_fields: frozenset[bytes] = frozenset()
    private: bool = False
    private_fields: frozenset[bytes] = frozenset()
    public: bool = False
    max_age: int | None = None
    s_maxage: int | None = None
    max_stale: float | None = None
    min_fresh: int | None = None
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    immutable: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    pragma_no_cache: bool = False
    invalid: tuple[str, ...] = ()


_FLAGS = {
    "no-store": "no_store",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "must-understand": "must_understand",
    "no-transform": "no_transform",
    "only-if-cached": "only_if_cached",
    "immutable": "immutable",
}

_FRESHNESS = {"max-age": "max_age", "s-maxage": "s_maxage"}

_SECONDS = {
    "min-fresh": "min_fresh",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
}


def _parse_directives(elements: Sequence[bytes]) -> list[tuple[str, bytes | None]]:
    """Split C{Cache-Control} elements into C{(name, argument)} pairs; bad names are skipped."""
    parsed: list[tuple[str, bytes | None]] = []
    for element in elements:
        name, equals, argument = element.partition(b"=")
        name = name.strip(_OWS)
        if not _TOKEN.fullmatch(name):
            continue
        parsed.append(
            (name.decode("ascii").lower(), _unquote(argument.strip(_OWS)) if equals else None)
        )
    return parsed


@functools.lru_cache(maxsize=4096)
def _parse_values(values: tuple[bytes, ...]) -> CacheControl:
    """Parse C{Cache-Control} field values; cached, since stored responses are parsed often."""
    directives = _parse_directives(split_list(values))
    settings: dict[str, Any] = {"present": bool(values), "directives": tuple(directives)}
    invalid: list[str] = []
    seen: dict[str, int | None] = {}
    no_cache_fields: set[bytes] = set()
    private_fields: set[bytes] = set()
    for name, argument in directives:
        if name in _FLAGS:
            settings[_FLAGS[name]] = True
        elif name in _FRESHNESS:
            seconds = _delta_seconds(argument)
            if name in seen and seen[name] != seconds:
                seconds = None
            seen[name] = seconds
            if seconds is None:
                if name not in invalid:
                    invalid.append(name)
                seconds = 0
            settings[_FRESHNESS[name]] = seconds
        elif name in _SECONDS:
            seconds = _delta_seconds(argument)
            if seconds is not None and _SECONDS[name] not in settings:
                settings[_SECONDS[name]] = seconds
        elif name == "max-stale":
            if argument is None:
                settings["max_stale"] = math.inf
            else:
                seconds = _delta_seconds(argument)
                if seconds is not None and "max_stale" not in settings:
                    settings["max_stale"] = float(seconds)
        elif name == "no-cache":
            if argument is None:
                settings["no_cache"] = True
            else:
                names = _field_names(argument)
                if names:
                    no_cache_fields |= names
                else:
                    # An empty or unusable field list: the safe reading is
                    # the unqualified directive.
                    settings["no_cache"] = True
        elif name == "private":
            if argument is None:
                settings["private"] = True
            else:
                names = _field_names(argument)
                if names:
                    private_fields |= names
                else:
                    settings["private"] = True
    for name in invalid:
        settings[_FRESHNESS[name]] = 0
    return CacheControl(
        no_cache_fields=frozenset(no_cache_fields),
        private_fields=frozenset(private_fields),
        invalid=tuple(invalid),
        **settings,
    )


#: A stored field holding the cache directives this cache obeys for the
#: entry instead of C{Cache-Control}: the accelerator's view of a response
#: (a site's default TTL, C{Surrogate-Control}, a targeted field, RFC
#: 9213 §2.1: "a cache that uses a targeted field ... MUST ignore
#: Cache-Control").  Set only by squeak on the copy it stores
#: (L{squeak.accel.caching}), never served.
CACHE_VIEW_FIELD = b"squeak-cache-view"


def parse_stored_cache_control(headers: Iterable[tuple[bytes, bytes]]) -> CacheControl:
    """
    The directives this cache obeys for a response: its L{CACHE_VIEW_FIELD}
    when present, else its C{Cache-Control} (L{parse_cache_control}).
    """
    headers = tuple(headers)
    view = tuple(field_values(headers, CACHE_VIEW_FIELD))
    if view:
        return _parse_values(view)
    return parse_cache_control(headers)


def parse_cache_control(headers: Iterable[tuple[bytes, bytes]]) -> CacheControl:
    """
    Parse every C{Cache-Control} field line of a message (RFC 9111 §5.2).

    Directive names are case-insensitive; arguments may be tokens or quoted
    strings (§5.2). Unknown directives are kept in
    L{CacheControl.directives} and otherwise ignored (§5.2.3).

    @param headers: The header section.
    @return: The directives; never raises.
    """
    return _parse_values(tuple(field_values(headers, b"cache-control")))


def pragma_no_cache(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether C{Pragma} holds C{no-cache} (RFC 9111 §5.4)."""
    elements = split_list(field_values(headers, b"pragma"))
    return any(element.lower() == b"no-cache" for element in elements)


def parse_request_cache_control(headers: Iterable[tuple[bytes, bytes]]) -> CacheControl:
    """
    Parse a request's cache directives: C{Cache-Control}, or C{Pragma:
    no-cache} when there is no C{Cache-Control} (RFC 9111 §5.4: "When the
    Cache-Control header field is also present and understood in a request,
    Pragma is ignored").

    @param headers: The request's header section.
    @return: The directives; L{CacheControl.pragma_no_cache} says whether
        C{no-cache} came from C{Pragma}.
    """
    headers = list(headers)
    cc = parse_cache_control(headers)
    if not cc.present and pragma_no_cache(headers):
        return CacheControl(no_cache=True, pragma_no_cache=True)
    return cc


# --- Dates -----------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DAY_NAMES = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY_NAMES = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_FIXDATE = re.compile(
    rf"{_DAY_NAMES}, ([0-9]{{2}}) ([a-z]{{3}}) ([0-9]{{4}}) {_TIME} gmt", re.IGNORECASE
)
_RFC850_DATE = re.compile(
    rf"{_LONG_DAY_NAMES}, ([0-9]{{2}})-([a-z]{{3}})-([0-9]{{2}}) {_TIME} gmt", re.IGNORECASE
)
_ASCTIME_DATE = re.compile(
    rf"{_DAY_NAMES} ([a-z]{{3}}) ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})", re.IGNORECASE
)


def _timestamp(year: int, month: str, day: int, hh: str, mm: str, ss: str) -> float | None:
    """Convert date parts to POSIX seconds, or L{None} if they name no real time."""
    number = _MONTHS.get(month.lower())
    hour, minute, second = int(hh), int(mm), int(ss)
    if number is None or not 1 <= day <= calendar.monthrange(year, number)[1]:
        return None
    # RFC 9110 §5.6.7 allows second 60 (a leap second); it is folded into 59.
    if hour > 23 or minute > 59 or second > 60:
        return None
    return float(calendar.timegm((year, number, day, hour, minute, min(second, 59), 0, 0, 0)))


def parse_http_date(value: bytes, *, now: float | None = None) -> float | None:
    """
    Parse an HTTP-date (RFC 9110 §5.6.7) in any of its three formats:
    IMF-fixdate (C{Sun, 06 Nov 1994 08:49:37 GMT}), the obsolete RFC 850
    format (C{Sunday, 06-Nov-94 08:49:37 GMT}) and ANSI C's asctime
    (C{Sun Nov  6 08:49:37 1994}).

    Names are matched case-insensitively. The day name is not checked
    against the date. For the RFC 850 two-digit year, RFC 9110 §5.6.7 says
    to read a year that appears more than 50 years in the future as the most
    recent past year with the same last two digits; that needs C{now}.
    Without C{now}, years 70-99 are 1970-1999 and 00-69 are 2000-2069.

    @param value: The field value.
    @param now: The current time in POSIX seconds, for two-digit years.
    @return: POSIX seconds, or L{None} if C{value} is not an HTTP-date.
    """
    try:
        text = value.strip(_OWS).decode("ascii")
    except UnicodeDecodeError:
        return None
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hh, mm, ss = match.groups()
        return _timestamp(int(year), month, int(day), hh, mm, ss)
    if match := _RFC850_DATE.fullmatch(text):
        day, month, short_year, hh, mm, ss = match.groups()
        two = int(short_year)
        if now is None:
            year = 1900 + two if two >= 70 else 2000 + two
        else:
            current = _year_of(now)
            year = current - current % 100 + two
            if year > current + 50:
                year -= 100
        return _timestamp(year, month, int(day), hh, mm, ss)
    if match := _ASCTIME_DATE.fullmatch(text):
        month, day, hh, mm, ss, year = match.groups()
        return _timestamp(int(year), month, int(day.strip()), hh, mm, ss)
    return None


def _year_of(now: float) -> int:
    """The UTC calendar year at POSIX time C{now}."""
    days = math.floor(now / 86400)
    # Civil-from-days (Howard Hinnant's algorithm), avoiding time.gmtime's
    # platform limits on extreme values.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return int(yoe + era * 400 + (1 if month <= 2 else 0))


def parse_age(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """
    The C{Age} of a message (RFC 9111 §5.1: C{Age = delta-seconds}).

    RFC 9111 §5.1: "a cache encountering a message with a list-based Age
    field value SHOULD use the first member of the field value, discarding
    subsequent ones" (several C{Age} field lines are one list, RFC 9110
    §5.3), and "If the field value (after discarding additional members
    ...) is invalid (e.g., it contains something other than a non-negative
    integer), a cache SHOULD ignore the field".  So C{7, 9} is 7, while
    C{7200.0}, C{-1}, C{"5"} (delta-seconds is never quoted, unlike a
    directive's argument, §5.2) and an empty value are ignored.  A value
    too large to represent is 2147483648 (§1.2.2), so the response is
    stale, never an overflowed small number nor an error.

    @return: Seconds, capped at L{DELTA_SECONDS_MAX}, or L{None}.
    """
    elements = split_list(field_values(headers, b"age"))
    if not elements:
        return None
    return _digits_value(elements[0])


@dataclass(frozen=True, slots=True)
class MessageDates:
    """
    The date fields of a response, parsed.

    @ivar date: C{Date} (RFC 9110 §6.6.1) in POSIX seconds, or L{None} if
        absent or invalid.
    @ivar expires: C{Expires} (RFC 9111 §5.3) in POSIX seconds, or L{None}.
    @ivar expires_present: Whether any C{Expires} field line was present.
    @ivar expires_invalid: C{Expires} was present but invalid (e.g. C{0}) or
        given twice with different values: the response is already expired
        (RFC 9111 §5.3: "A cache recipient MUST interpret invalid date
        formats, especially the value '0', as representing a time in the
        past").
    @ivar last_modified: C{Last-Modified} (RFC 9110 §8.8.2), or L{None}.
    @ivar age: C{Age} seconds (RFC 9111 §5.1), or L{None}.
    """

    date: float | None = None
    expires: float | None = None
    expires_present: bool = False
    expires_invalid: bool = False
    last_modified: float | None = None
    age: int | None = None


def _single_date(values: Sequence[bytes], now: float | None) -> float | None:
    """The date of a singleton field: its first valid line, as RFC 9111 §4.2.1 allows."""
    for value in values:
        parsed = parse_http_date(value, now=now)
        if parsed is not None:
            return parsed
    return None


def parse_dates(
    headers: Iterable[tuple[bytes, bytes]], *, now: float | None = None
) -> MessageDates:
    """
    Parse C{Date}, C{Expires}, C{Last-Modified} and C{Age}.

    @param headers: The response's header section.
    @param now: The current time, for RFC 850 two-digit years.
    @return: The dates; never raises.
    """
    headers = list(headers)
    expires_values = field_values(headers, b"expires")
    expires: float | None = None
    invalid = False
    if expires_values:
        parsed = {parse_http_date(value, now=now) for value in expires_values}
        if len(parsed) == 1 and None not in parsed:
            expires = parsed.pop()
        else:
            invalid = True
    return MessageDates(
        date=_single_date(field_values(headers, b"date"), now),
        expires=expires,
        expires_present=bool(expires_values),
        expires_invalid=invalid,
        last_modified=_single_date(field_values(headers, b"last-modified"), now),
        age=parse_age(headers),
    )
