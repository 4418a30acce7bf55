# -*- test-case-name: tests.test_cache_directives -*-
"""
Tests for L{squeak.cache.directives}: Cache-Control, Pragma and the date
fields (RFC 9111 §5, RFC 9110 §5.6.7).
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.directives import (
    DELTA_SECONDS_MAX,
    MessageDates,
    parse_age,
    parse_cache_control,
    parse_dates,
    parse_http_date,
    parse_request_cache_control,
    split_list,
)

CC = b"Cache-Control"
T = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT

CACHE_CONTROL = [  # (why, headers, attribute, expected)
    ("RFC 9111 §5.2.2.1: max-age", [(CC, b"max-age=60")], "max_age", 60),
    ("RFC 9111 §5.2: directive names are case-insensitive", [(CC, b"Max-Age=60")], "max_age", 60),
    ("RFC 9111 §5.2: quoted argument accepted", [(CC, b'max-age="60"')], "max_age", 60),
    ("RFC 9111 §5.2.2.10: s-maxage", [(CC, b"s-maxage=5, max-age=1")], "s_maxage", 5),
    (
        "RFC 9111 §4.2.1: conflicting max-age duplicates read as stale",
        [(CC, b"max-age=60"), (CC, b"max-age=30")],
        "max_age",
        0,
    ),
    (
        "RFC 9111 §4.2.1: conflicting duplicates are listed as invalid",
        [(CC, b"max-age=60, max-age=30")],
        "invalid",
        ("max-age",),
    ),
    (
        "RFC 9111 §4.2.1: identical duplicates are fine",
        [(CC, b"max-age=60"), (CC, b"max-age=60")],
        "max_age",
        60,
    ),
    ("RFC 9111 §4.2.1: non-integer max-age is stale", [(CC, b"max-age=1.5")], "max_age", 0),
    ("RFC 9111 §4.2.1: negative max-age is stale", [(CC, b"max-age=-1")], "max_age", 0),
    ("RFC 9111 §4.2.1: max-age without value is stale", [(CC, b"max-age")], "max_age", 0),
    (
        "RFC 9111 §1.2.2: overflowing delta-seconds become 2^31",
        [(CC, b"max-age=99999999999999999999")],
        "max_age",
        DELTA_SECONDS_MAX,
    ),
    ("RFC 9111 §5.2.2.5: no-store", [(CC, b"no-store")], "no_store", True),
    ("RFC 9111 §5.2.2.4: unqualified no-cache", [(CC, b"no-cache")], "no_cache", True),
    (
        "RFC 9111 §5.2.2.4: qualified no-cache is not unqualified",
        [(CC, b'no-cache="Set-Cookie, X-Foo"')],
        "no_cache",
        False,
    ),
    (
        "RFC 9111 §5.2.2.4: qualified no-cache lists lower-cased field names",
        [(CC, b'no-cache="Set-Cookie, X-Foo", max-age=5')],
        "no_cache_fields",
        frozenset({b"set-cookie", b"x-foo"}),
    ),
    (
        "RFC 9111 §5.2.2.4: a comma inside the quotes does not split directives",
        [(CC, b'no-cache="a,b", max-age=5')],
        "max_age",
        5,
    ),
    (
        "RFC 9111 §5.2.2.4: an empty field list reads as unqualified (safe)",
        [(CC, b'no-cache=""')],
        "no_cache",
        True,
    ),
    ("RFC 9111 §5.2.2.7: private", [(CC, b"private")], "private", True),
    (
        "RFC 9111 §5.2.2.7: qualified private",
        [(CC, b'private="Set-Cookie"')],
        "private_fields",
        frozenset({b"set-cookie"}),
    ),
    ("RFC 9111 §5.2.2.9: public", [(CC, b"public")], "public", True),
    ("RFC 9111 §5.2.2.2: must-revalidate", [(CC, b"must-revalidate")], "must_revalidate", True),
    ("RFC 9111 §5.2.2.8: proxy-revalidate", [(CC, b"proxy-revalidate")], "proxy_revalidate", True),
    ("RFC 9111 §5.2.2.3: must-understand", [(CC, b"must-understand")], "must_understand", True),
    ("RFC 8246 §2: immutable", [(CC, b"immutable")], "immutable", True),
    (
        "RFC 9111 §5.2.1.2: max-stale without value is any",
        [(CC, b"max-stale")],
        "max_stale",
        math.inf,
    ),
    ("RFC 9111 §5.2.1.2: max-stale with value", [(CC, b"max-stale=10")], "max_stale", 10.0),
    ("RFC 9111 §5.2.1.3: min-fresh", [(CC, b"min-fresh=7")], "min_fresh", 7),
    ("RFC 9111 §5.2.1.7: only-if-cached", [(CC, b"only-if-cached")], "only_if_cached", True),
    (
        "RFC 5861 §3: stale-while-revalidate",
        [(CC, b"stale-while-revalidate=30")],
        "stale_while_revalidate",
        30,
    ),
    ("RFC 5861 §4: stale-if-error", [(CC, b"stale-if-error=600")], "stale_if_error", 600),
    (
        "RFC 9111 §5.2.3: unknown extensions are kept and ignored",
        [(CC, b'foo="bar", max-age=3')],
        "directives",
        (("foo", b"bar"), ("max-age", b"3")),
    ),
    ("RFC 9110 §5.6.1: empty list elements are skipped", [(CC, b", ,max-age=3,")], "max_age", 3),
    ("no Cache-Control: not present", [(b"Pragma", b"no-cache")], "present", False),
    (
        "RFC 9111 §5.2: repeated lines are combined",
        [(CC, b"public"), (CC, b"max-age=4")],
        "public",
        True,
    ),
    ("malformed directive names are skipped", [(CC, b"m@x-age=4, max-age=9")], "max_age", 9),
]

REQUEST_CACHE_CONTROL = [  # (why, headers, attribute, expected)
    (
        "RFC 9111 §5.4: Pragma no-cache without Cache-Control",
        [(b"Pragma", b"no-cache")],
        "no_cache",
        True,
    ),
    (
        "RFC 9111 §5.4: Pragma no-cache is flagged as such",
        [(b"Pragma", b"no-cache")],
        "pragma_no_cache",
        True,
    ),
    (
        "RFC 9111 §5.4: Pragma is ignored when Cache-Control is present",
        [(b"Pragma", b"no-cache"), (CC, b"max-age=5")],
        "no_cache",
        False,
    ),
    ("RFC 9111 §5.4: Pragma is case-insensitive", [(b"pragma", b"NO-CACHE")], "no_cache", True),
    ("RFC 9111 §5.4: other Pragma values do nothing", [(b"Pragma", b"x=1")], "no_cache", False),
]

HTTP_DATES = [  # (why, value, expected)
    ("RFC 9110 §5.6.7: IMF-fixdate", b"Sun, 06 Nov 1994 08:49:37 GMT", T),
    ("RFC 9110 §5.6.7: obsolete RFC 850 date", b"Sunday, 06-Nov-94 08:49:37 GMT", T),
    ("RFC 9110 §5.6.7: obsolete asctime date", b"Sun Nov  6 08:49:37 1994", T),
    ("RFC 9110 §5.6.7: names are case-insensitive", b"sun, 06 NOV 1994 08:49:37 gmt", T),
    ("RFC 9110 §5.6.7: surrounding whitespace ignored", b"  Sun, 06 Nov 1994 08:49:37 GMT ", T),
    ("RFC 9111 §5.3: 0 is not a date", b"0", None),
    (
        "RFC 9110 §5.6.7: a time zone other than GMT is invalid",
        b"Sun, 06 Nov 1994 08:49:37 PST",
        None,
    ),
    ("RFC 9110 §5.6.7: 31 Feb does not exist", b"Sun, 31 Feb 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7: hour 24 is invalid", b"Sun, 06 Nov 1994 24:00:00 GMT", None),
    ("RFC 9110 §5.6.7: a leap second is accepted", b"Sun, 06 Nov 1994 08:49:60 GMT", T + 22),
    (
        "RFC 9110 §5.6.7: non-ASCII is invalid",
        "Sun, 06 Nov 1994 08:49:37 GMT\u00e9".encode(),
        None,
    ),
    ("empty is invalid", b"", None),
]


class CacheControlTests(SynchronousTestCase):
    """
    Tests for L{parse_cache_control} and L{parse_request_cache_control}.
    """

    def test_cache_control_table(self) -> None:
        """
        Each row's directive parses as the section it cites says.
        """
        wrong = [
            (why, got, want)
            for why, headers, attribute, want in CACHE_CONTROL
            if (got := getattr(parse_cache_control(headers), attribute)) != want
        ]
        self.assertEqual(wrong, [])

    def test_request_table(self) -> None:
        """
        Request directives honour Pragma only without Cache-Control.
        """
        wrong = [
            (why, got, want)
            for why, headers, attribute, want in REQUEST_CACHE_CONTROL
            if (got := getattr(parse_request_cache_control(headers), attribute)) != want
        ]
        self.assertEqual(wrong, [])

    def test_split_list_quotes(self) -> None:
        """
        Commas and escaped quotes inside quoted strings stay in the element
        (RFC 9110 §5.6.4).
        """
        self.assertEqual(split_list([b'a="x,\\"y", b', b"c"]), [b'a="x,\\"y"', b"b", b"c"])

    @given(st.lists(st.tuples(st.sampled_from([CC, b"pragma", b"x"]), st.binary())))
    def test_never_raises(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        Arbitrary bytes never make the parsers raise.
        """
        parse_cache_control(headers)
        parse_request_cache_control(headers)


class DateTests(SynchronousTestCase):
    """
    Tests for L{parse_http_date}, L{parse_dates} and L{parse_age}.
    """

    def test_http_date_table(self) -> None:
        """
        Each row parses to the time the section it cites says.
        """
        wrong = [
            (why, got, want)
            for why, value, want in HTTP_DATES
            if (got := parse_http_date(value)) != want
        ]
        self.assertEqual(wrong, [])

    def test_two_digit_year(self) -> None:
        """
        RFC 9110 §5.6.7: a two-digit year more than 50 years ahead of now
        is the most recent past year with those digits.
        """
        now = parse_http_date(b"Sat, 01 Jan 2050 00:00:00 GMT")
        got = [
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now=now),
            parse_http_date(b"Monday, 06-Nov-00 08:49:37 GMT", now=now),
            parse_http_date(b"Monday, 06-Nov-99 08:49:37 GMT", now=now),
        ]
        want = [
            parse_http_date(b"Sun, 06 Nov 2094 08:49:37 GMT"),
            parse_http_date(b"Mon, 06 Nov 2000 08:49:37 GMT"),
            parse_http_date(b"Mon, 06 Nov 2099 08:49:37 GMT"),
        ]
        self.assertEqual(got, want)

    def test_dates(self) -> None:
        """
        Date, Expires, Last-Modified and Age are parsed; invalid or
        conflicting Expires means already expired (RFC 9111 §5.3, §4.2.1).
        """
        d = b"Sun, 06 Nov 1994 08:49:37 GMT"
        cases = [
            (
                "all present",
                [(b"Date", d), (b"Expires", d), (b"Last-Modified", d), (b"Age", b"5")],
                MessageDates(T, T, True, False, T, 5),
            ),
            (
                "RFC 9111 §5.3: Expires 0 is invalid",
                [(b"Expires", b"0")],
                MessageDates(None, None, True, True, None, None),
            ),
            (
                "RFC 9111 §4.2.1: conflicting Expires lines",
                [(b"Expires", d), (b"Expires", b"x")],
                MessageDates(None, None, True, True, None, None),
            ),
            (
                "RFC 9111 §4.2.1: identical Expires lines",
                [(b"Expires", d), (b"expires", d)],
                MessageDates(None, T, True, False, None, None),
            ),
            ("RFC 9111 §5.1: invalid Age is ignored", [(b"Age", b"-3")], MessageDates()),
            (
                "RFC 9111 §5.1: list Age uses the first member",
                [(b"Age", b"7, 9")],
                MessageDates(age=7),
            ),
            ("RFC 9110 §6.6.1: invalid Date is absent", [(b"Date", b"yesterday")], MessageDates()),
        ]
        wrong = [
            (why, got, want)
            for why, headers, want in cases
            if (got := parse_dates(headers)) != want
        ]
        self.assertEqual(wrong, [])

    def test_age(self) -> None:
        """
        RFC 9111 §1.2.2: a huge Age is capped at 2^31.
        """
        self.assertEqual(parse_age([(b"Age", b"9" * 30)]), DELTA_SECONDS_MAX)

    def test_age_values(self) -> None:
        """
        RFC 9111 §5.1: C{Age} is delta-seconds; a list uses its first
        member; anything else that is not a non-negative integer is
        ignored; a value too large to represent is 2^31 (§1.2.2), however
        many digits it has.
        """
        cases: list[tuple[str, list[tuple[bytes, bytes]], int | None]] = [
            ("§5.1: a non-negative integer", [(b"Age", b"7200")], 7200),
            ("§5.1: zero", [(b"Age", b"0")], 0),
            ("§5.1: leading zeros are digits", [(b"Age", b"0042")], 42),
            ("§5.1: surrounding whitespace is not the value", [(b"Age", b" 12 ")], 12),
            ("§5.1: a list uses its first member", [(b"Age", b"1, 2")], 1),
            ("§5.1: several lines are a list", [(b"Age", b"3"), (b"age", b"4")], 3),
            ("§5.1: a fraction is ignored", [(b"Age", b"7200.0")], None),
            ("§5.1: a sign is ignored", [(b"Age", b"-1")], None),
            ("§5.1: a plus sign is ignored", [(b"Age", b"+1")], None),
            ("§5.1: delta-seconds is never quoted", [(b"Age", b'"5"')], None),
            ("§5.1: an invalid first member is ignored", [(b"Age", b"x, 5")], None),
            ("§5.1: an empty value is ignored", [(b"Age", b"")], None),
            ("§5.1: no Age", [], None),
            ("§1.2.2: just below 2^31", [(b"Age", b"2147483647")], 2147483647),
            ("§1.2.2: 2^31 + 1 is 2^31", [(b"Age", b"2147483649")], DELTA_SECONDS_MAX),
            ("§1.2.2: 5000 digits is 2^31", [(b"Age", b"9" * 5000)], DELTA_SECONDS_MAX),
            ("§1.2.2: 5000 zeros then 7", [(b"Age", b"0" * 5000 + b"7")], 7),
        ]
        wrong = [
            (why, got, want) for why, headers, want in cases if (got := parse_age(headers)) != want
        ]
        self.assertEqual(wrong, [])

    def test_huge_directive_argument(self) -> None:
        """
        RFC 9111 §1.2.2: a delta-seconds directive argument of thousands of
        digits is 2^31, not an error.
        """
        cc = parse_cache_control([(b"Cache-Control", b"max-age=" + b"9" * 5000)])
        self.assertEqual(cc.max_age, DELTA_SECONDS_MAX)

    @given(st.binary(), st.none() | st.floats(min_value=-1e12, max_value=1e12))
    def test_never_raises(self, value: bytes, now: float | None) -> None:
        """
        Arbitrary bytes never make the date parsers raise.
        """
        parse_http_date(value, now=now)
        parse_dates(
            [(b"Date", value), (b"Expires", value), (b"Last-Modified", value), (b"Age", value)],
            now=now,
        )
