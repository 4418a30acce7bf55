# -*- test-case-name: tests.test_cache_policy -*-
"""
Tests for L{squeak.cache.policy}: RFC 9111 decisions as tables of cases,
each citing the section it comes from.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from email.utils import formatdate

from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.directives import parse_cache_control, parse_dates
from squeak.cache.keys import secondary_key, vary_fields
from squeak.cache.policy import (
    CacheRequest,
    FreshnessRules,
    RefreshRule,
    Reuse,
    StoredResponse,
    age_header_value,
    current_age,
    decide_reuse,
    freshness_lifetime,
    headers_for_reuse,
    stale_on_failure,
)
from squeak.cache.storing import is_storable
from squeak.cache.validation import (
    Validation,
    answer_client_conditional,
    conditional_request_headers,
    freshen,
    freshen_stored,
    handle_validation_response,
    invalidation_targets,
    not_modified_headers,
    selects_for_update,
    validation_request_headers,
)
from squeak.config import ConfigError, parse_config

NOW = 1_700_000_000.0
URI = "http://example.com/a"
CC = b"Cache-Control"
AUTH = [(b"Authorization", b"Basic eDp5")]


def date(t: float) -> bytes:
    """An IMF-fixdate for POSIX time C{t}."""
    return formatdate(t, usegmt=True).encode("ascii")


def cc(value: bytes) -> list[tuple[bytes, bytes]]:
    """A Cache-Control field."""
    return [(CC, value)]


STORABLE = [  # (why, method, request headers, status, response headers, store?)
    ("RFC 9111 §3: GET 200 with max-age", b"GET", [], 200, cc(b"max-age=60"), True),
    ("RFC 9111 §3: 200 is heuristically cacheable", b"GET", [], 200, [], True),
    ("RFC 9110 §15.1: 203 by default", b"GET", [], 203, [], True),
    ("RFC 9110 §15.1: 204 by default", b"GET", [], 204, [], True),
    ("RFC 9110 §15.1: 300 by default", b"GET", [], 300, [], True),
    ("RFC 9110 §15.1: 301 by default", b"GET", [], 301, [], True),
    ("RFC 9110 §15.1: 308 by default", b"GET", [], 308, [], True),
    ("RFC 9110 §15.1: 404 by default", b"GET", [], 404, [], True),
    ("RFC 9110 §15.1: 405 by default", b"GET", [], 405, [], True),
    ("RFC 9110 §15.1: 410 by default", b"GET", [], 410, [], True),
    ("RFC 9110 §15.1: 414 by default", b"GET", [], 414, [], True),
    ("RFC 9110 §15.1: 501 by default", b"GET", [], 501, [], True),
    (
        "RFC 9111 §3.3: 206 not stored (no partial storage)",
        b"GET",
        [],
        206,
        cc(b"max-age=60"),
        False,
    ),
    ("RFC 9111 §4.3.4: 304 freshens, is not stored", b"GET", [], 304, cc(b"max-age=60"), False),
    ("RFC 9111 §3: 302 without explicit freshness", b"GET", [], 302, [], False),
    ("RFC 9111 §3: 302 with max-age", b"GET", [], 302, cc(b"max-age=60"), True),
    ("RFC 9111 §3: 500 without explicit freshness", b"GET", [], 500, [], False),
    ("RFC 9111 §3: 500 with Expires", b"GET", [], 500, [(b"Expires", date(NOW + 60))], True),
    ("RFC 9111 §3: 307 with public", b"GET", [], 307, cc(b"public"), True),
    ("RFC 9111 §3: 100 is not final", b"GET", [], 100, cc(b"max-age=60"), False),
    ("RFC 9111 §3: POST responses are not stored", b"POST", [], 200, cc(b"max-age=60"), False),
    ("RFC 9111 §3: HEAD responses are not stored", b"HEAD", [], 200, cc(b"max-age=60"), False),
    ("RFC 9111 §5.2.2.5: response no-store", b"GET", [], 200, cc(b"max-age=60, no-store"), False),
    (
        "RFC 9111 §5.2.1.5: request no-store",
        b"GET",
        cc(b"no-store"),
        200,
        cc(b"max-age=60"),
        False,
    ),
    (
        "RFC 9111 §5.2.2.7: private in a shared cache",
        b"GET",
        [],
        200,
        cc(b"private, max-age=60"),
        False,
    ),
    ("RFC 9111 §5.2.2.4: no-cache may be stored", b"GET", [], 200, cc(b"no-cache"), True),
    (
        "RFC 9111 §3.5: Authorization without permission",
        b"GET",
        AUTH,
        200,
        cc(b"max-age=60"),
        False,
    ),
    (
        "RFC 9111 §3.5: Authorization with public",
        b"GET",
        AUTH,
        200,
        cc(b"public, max-age=60"),
        True,
    ),
    ("RFC 9111 §3.5: Authorization with s-maxage", b"GET", AUTH, 200, cc(b"s-maxage=60"), True),
    (
        "RFC 9111 §3.5: Authorization with must-revalidate",
        b"GET",
        AUTH,
        200,
        cc(b"must-revalidate, max-age=60"),
        True,
    ),
    (
        "RFC 9111 §5.2.2.3: must-understand overrides no-store for an understood status",
        b"GET",
        [],
        200,
        cc(b"must-understand, no-store, max-age=60"),
        True,
    ),
    (
        "RFC 9111 §5.2.2.3: must-understand with a status not understood",
        b"GET",
        [],
        299,
        cc(b"must-understand, no-store, max-age=60"),
        False,
    ),
    (
        "RFC 9111 §4.1: Vary: * never matches, so is not stored",
        b"GET",
        [],
        200,
        [(CC, b"max-age=60"), (b"Vary", b"*")],
        False,
    ),
    (
        "RFC 9111 §4.2.1: invalid Expires still counts as explicit",
        b"GET",
        [],
        500,
        [(b"Expires", b"0")],
        True,
    ),
]


class StorableTests(SynchronousTestCase):
    """
    Tests for L{is_storable} (RFC 9111 §3).
    """

    def test_storable_table(self) -> None:
        """
        Each row's storability is what the section it cites says.
        """
        wrong = [
            (why, got.reason)
            for why, method, request, status, response, want in STORABLE
            if (got := is_storable(method, request, status, response)).store != want
        ]
        self.assertEqual(wrong, [])

    def test_reason_cites_section(self) -> None:
        """
        Every decision's reason cites an RFC section.
        """
        missing = [
            why
            for why, method, request, status, response, _ in STORABLE
            if "RFC" not in is_storable(method, request, status, response).reason
        ]
        self.assertEqual(missing, [])

    def test_set_cookie_is_not_stored(self) -> None:
        """
        RFC 9111 §3 and RFC 6265 §8.6: a response with Set-Cookie (or the
        obsolete Set-Cookie2), public or not, is stored without the field,
        so the cookie is never replayed to another client; others are not
        stripped of anything.
        """
        cases = [  # (why, response fields, stored?, fields stripped)
            ("Set-Cookie", [(CC, b"max-age=60"), (b"Set-Cookie", b"a=b")], True, {b"set-cookie"}),
            (
                "Set-Cookie, public",
                [(CC, b"max-age=60, public"), (b"set-cookie", b"a=b")],
                True,
                {b"set-cookie"},
            ),
            (
                "Set-Cookie2",
                [(CC, b"max-age=60"), (b"Set-Cookie2", b"a=b")],
                True,
                {b"set-cookie2"},
            ),
            (
                "with qualified private",
                [(CC, b'max-age=60, private="X-U"'), (b"Set-Cookie", b"a=b")],
                True,
                {b"set-cookie", b"x-u"},
            ),
            ("no cookie", cc(b"max-age=60"), True, set()),
        ]
        wrong = [
            (why, d)
            for why, fields, store, strip in cases
            if ((d := is_storable(b"GET", [], 200, fields)).store, d.strip_fields)
            != (store, strip)
        ]
        self.assertEqual(wrong, [])

    def test_private_fields_stripped(self) -> None:
        """
        RFC 9111 §5.2.2.7: a qualified private names fields not to store.
        """
        decision = is_storable(b"GET", [], 200, cc(b'private="X-User", max-age=60'))
        self.assertEqual((decision.store, decision.strip_fields), (True, frozenset({b"x-user"})))

    def test_private_cache(self) -> None:
        """
        RFC 9111 §3: a private cache may store private responses.
        """
        self.assertTrue(is_storable(b"GET", [], 200, cc(b"private"), shared=False).store)


RULES = FreshnessRules(
    refresh_rules=(RefreshRule(re.compile(r"\.jpg$"), min=600.0, percent=50.0, max=7200.0),)
)

FRESHNESS = [  # (why, status, headers, uri, expected lifetime, heuristic)
    (
        "RFC 9111 §5.2.2.10: s-maxage wins in a shared cache",
        200,
        cc(b"max-age=10, s-maxage=60"),
        URI,
        60.0,
        False,
    ),
    ("RFC 9111 §5.2.2.1: max-age", 200, cc(b"max-age=10"), URI, 10.0, False),
    (
        "RFC 9111 §4.2.1: max-age beats Expires",
        200,
        [(CC, b"max-age=10"), (b"Date", date(NOW)), (b"Expires", date(NOW + 100))],
        URI,
        10.0,
        False,
    ),
    (
        "RFC 9111 §4.2.1: Expires minus Date",
        200,
        [(b"Date", date(NOW)), (b"Expires", date(NOW + 100))],
        URI,
        100.0,
        False,
    ),
    (
        "RFC 9111 §4.2.1: Expires without Date uses the response time",
        200,
        [(b"Expires", date(NOW + 50))],
        URI,
        50.0,
        False,
    ),
    (
        "RFC 9111 §5.3: Expires in the past",
        200,
        [(b"Date", date(NOW)), (b"Expires", date(NOW - 100))],
        URI,
        0.0,
        False,
    ),
    (
        "RFC 9111 §5.3: invalid Expires is already expired",
        200,
        [(b"Expires", b"0")],
        URI,
        0.0,
        False,
    ),
    (
        "RFC 9111 §4.2.1: conflicting max-age is stale",
        200,
        cc(b"max-age=10, max-age=20"),
        URI,
        0.0,
        False,
    ),
    (
        "RFC 9111 §4.2.2: 10% of the time since Last-Modified",
        200,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 1000))],
        URI,
        100.0,
        True,
    ),
    (
        "RFC 9111 §4.2.2: heuristic capped at a day",
        200,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 10**8))],
        URI,
        86400.0,
        True,
    ),
    (
        "RFC 9111 §4.2.2: no Last-Modified, no heuristic",
        200,
        [(b"Date", date(NOW))],
        URI,
        0.0,
        False,
    ),
    (
        "RFC 9111 §4.2.2: not for a status that is not heuristically cacheable",
        302,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 1000))],
        URI,
        0.0,
        False,
    ),
    (
        "RFC 9111 §4.2.2: public allows a heuristic for any status",
        302,
        [(CC, b"public"), (b"Date", date(NOW)), (b"Last-Modified", date(NOW - 1000))],
        URI,
        100.0,
        True,
    ),
    (
        "refresh_pattern: percent of the time since Last-Modified",
        200,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 2000))],
        "http://e/x.jpg",
        1000.0,
        True,
    ),
    (
        "refresh_pattern: at least min",
        200,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 20))],
        "http://e/x.jpg",
        600.0,
        True,
    ),
    (
        "refresh_pattern: at most max",
        200,
        [(b"Date", date(NOW)), (b"Last-Modified", date(NOW - 10**6))],
        "http://e/x.jpg",
        7200.0,
        True,
    ),
    (
        "refresh_pattern: min without Last-Modified",
        200,
        [(b"Date", date(NOW))],
        "http://e/x.jpg",
        600.0,
        True,
    ),
    (
        "refresh_pattern: never overrides explicit freshness",
        200,
        [(CC, b"max-age=5"), (b"Last-Modified", date(NOW - 10**6))],
        "http://e/x.jpg",
        5.0,
        False,
    ),
]


class FreshnessTests(SynchronousTestCase):
    """
    Tests for L{freshness_lifetime}, L{current_age} and L{age_header_value}.
    """

    def test_freshness_table(self) -> None:
        """
        Each row's lifetime is what the section it cites says.
        """
        wrong = []
        for why, status, headers, uri, want, heuristic in FRESHNESS:
            got = freshness_lifetime(
                parse_cache_control(headers),
                parse_dates(headers),
                status,
                response_time=NOW,
                uri=uri,
                rules=RULES,
            )
            if (got.lifetime, got.heuristic) != (want, heuristic) or "RFC" not in got.reason:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_private_cache_ignores_s_maxage(self) -> None:
        """
        RFC 9111 §5.2.2.10: s-maxage applies to shared caches only.
        """
        got = freshness_lifetime(
            parse_cache_control(cc(b"s-maxage=60, max-age=10")),
            parse_dates([]),
            200,
            response_time=NOW,
            shared=False,
        )
        self.assertEqual(got.lifetime, 10.0)

    def test_current_age_table(self) -> None:
        """
        RFC 9111 §4.2.3: the current age from Date, Age and the times.
        """
        cases = [  # (why, headers, request_time, response_time, now, want)
            ("resident time only", [(b"Date", date(NOW))], NOW, NOW, NOW + 30, 30.0),
            (
                "apparent age from a Date in the past",
                [(b"Date", date(NOW - 10))],
                NOW,
                NOW,
                NOW,
                10.0,
            ),
            (
                "Age plus response delay",
                [(b"Date", date(NOW)), (b"Age", b"5")],
                NOW - 2,
                NOW,
                NOW,
                7.0,
            ),
            (
                "larger of apparent and corrected age",
                [(b"Date", date(NOW - 100)), (b"Age", b"5")],
                NOW,
                NOW,
                NOW,
                100.0,
            ),
            (
                "a Date in the future gives no negative age",
                [(b"Date", date(NOW + 100))],
                NOW,
                NOW,
                NOW,
                0.0,
            ),
            ("no Date", [], NOW - 1, NOW, NOW + 1, 2.0),
        ]
        wrong = [
            (why, got, want)
            for why, headers, req, resp, now, want in cases
            if (
                got := current_age(
                    parse_dates(headers), request_time=req, response_time=resp, now=now
                )
            )
            != want
        ]
        self.assertEqual(wrong, [])

    def test_age_header_value(self) -> None:
        """
        RFC 9111 §5.1: Age is whole seconds, capped at 2^31 (§1.2.2).
        """
        self.assertEqual(
            [
                age_header_value(a)
                for a in (
                    0.0,
                    1.9,
                    2.0**40,
                    float("inf"),
                    -3.0,
                    2.0**31 - 0.5,
                    2.0**31,
                    float("nan"),
                    float("-inf"),
                )
            ],
            [
                b"0",
                b"1",
                b"2147483648",
                b"2147483648",
                b"0",
                b"2147483647",
                b"2147483648",
                b"2147483648",
                b"2147483648",
            ],
        )


def stored(
    headers: list[tuple[bytes, bytes]],
    *,
    age: float = 0.0,
    status: int = 200,
    vary_request: list[tuple[bytes, bytes]] | None = None,
    client: str | None = None,
) -> StoredResponse:
    """A stored response received C{age} seconds before L{NOW}, dated then."""
    received = NOW - age
    headers = [(b"Date", date(received)), *headers]
    vary_key = secondary_key(vary_fields(headers), vary_request or []) or ""
    return StoredResponse(URI, status, b"OK", tuple(headers), received, received, vary_key, client)


def request(
    headers: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
    uri: str = URI,
    client: str | None = None,
) -> CacheRequest:
    """A request for L{URI}."""
    return CacheRequest(method, uri, tuple(headers or []), client)


REUSE = [  # (why, request, stored response or None, expected kind)
    ("RFC 9111 §4: nothing stored", request(), None, Reuse.MISS),
    ("RFC 9111 §4.2: fresh by max-age", request(), stored(cc(b"max-age=60"), age=10), Reuse.FRESH),
    (
        "RFC 9111 §4.2: stale by max-age",
        request(),
        stored(cc(b"max-age=60"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §4.2.3: Age counts towards staleness",
        request(),
        stored([(CC, b"max-age=60"), (b"Age", b"55")], age=10),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §4: HEAD answered from a stored GET",
        request(method=b"HEAD"),
        stored(cc(b"max-age=60")),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §4: POST never answered from cache",
        request(method=b"POST"),
        stored(cc(b"max-age=60")),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §4: URI must match",
        request(uri="http://example.com/b"),
        stored(cc(b"max-age=60")),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §4: equivalent URIs match",
        request(uri="HTTP://EXAMPLE.com:80/a"),
        stored(cc(b"max-age=60")),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §4.1: Vary field matches",
        request([(b"Accept-Encoding", b"gzip")]),
        stored(
            [(CC, b"max-age=60"), (b"Vary", b"Accept-Encoding")],
            vary_request=[(b"Accept-Encoding", b"gzip")],
        ),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §4.1: Vary field differs",
        request([(b"Accept-Encoding", b"br")]),
        stored(
            [(CC, b"max-age=60"), (b"Vary", b"Accept-Encoding")],
            vary_request=[(b"Accept-Encoding", b"gzip")],
        ),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §4.1: Vary field absent vs present",
        request([]),
        stored(
            [(CC, b"max-age=60"), (b"Vary", b"Accept-Encoding")],
            vary_request=[(b"Accept-Encoding", b"gzip")],
        ),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §4.1: Vary: * never matches",
        request(),
        stored([(CC, b"max-age=60"), (b"Vary", b"*")]),
        Reuse.MISS,
    ),
    (
        "Set-Cookie entry: same client",
        request(client="10.0.0.1"),
        stored(cc(b"max-age=60"), client="10.0.0.1"),
        Reuse.FRESH,
    ),
    (
        "Set-Cookie entry: other client",
        request(client="10.0.0.2"),
        stored(cc(b"max-age=60"), client="10.0.0.1"),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §3.5: Authorization request, stored response without permission",
        request(AUTH),
        stored(cc(b"max-age=60")),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §3.5: Authorization request, public response",
        request(AUTH),
        stored(cc(b"max-age=60, public")),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §3.5: Authorization request, s-maxage response",
        request(AUTH),
        stored(cc(b"s-maxage=60")),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.1.4: request no-cache validates",
        request(cc(b"no-cache")),
        stored(cc(b"max-age=60")),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.4: Pragma no-cache validates",
        request([(b"Pragma", b"no-cache")]),
        stored(cc(b"max-age=60")),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.4: Pragma ignored with Cache-Control",
        request([(b"Pragma", b"no-cache"), (CC, b"max-stale=0")]),
        stored(cc(b"max-age=60")),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.2.4: response no-cache always validates",
        request(),
        stored(cc(b"no-cache, max-age=60")),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.2.4: qualified no-cache serves without the fields",
        request(),
        stored(cc(b'no-cache="Set-Cookie", max-age=60')),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.1.1: request max-age older than allowed",
        request(cc(b"max-age=5")),
        stored(cc(b"max-age=60"), age=10),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.1.1: request max-age satisfied",
        request(cc(b"max-age=20")),
        stored(cc(b"max-age=60"), age=10),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.1.1: request max-age=0",
        request(cc(b"max-age=0")),
        stored(cc(b"max-age=60"), age=1),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.1.3: min-fresh not met",
        request(cc(b"min-fresh=55")),
        stored(cc(b"max-age=60"), age=10),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.1.3: min-fresh met",
        request(cc(b"min-fresh=30")),
        stored(cc(b"max-age=60"), age=10),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.1.2: max-stale serves stale",
        request(cc(b"max-stale=100")),
        stored(cc(b"max-age=60"), age=100),
        Reuse.STALE_SERVE,
    ),
    (
        "RFC 9111 §5.2.1.2: max-stale exceeded",
        request(cc(b"max-stale=10")),
        stored(cc(b"max-age=60"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.1.2: max-stale without value",
        request(cc(b"max-stale")),
        stored(cc(b"max-age=60"), age=10**6),
        Reuse.STALE_SERVE,
    ),
    (
        "RFC 9111 §5.2.2.2: must-revalidate beats max-stale",
        request(cc(b"max-stale")),
        stored(cc(b"max-age=60, must-revalidate"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.2.8: proxy-revalidate beats max-stale in a shared cache",
        request(cc(b"max-stale")),
        stored(cc(b"max-age=60, proxy-revalidate"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.2.10: s-maxage implies proxy-revalidate",
        request(cc(b"max-stale")),
        stored(cc(b"s-maxage=60"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.2.2.2: must-revalidate while fresh is served",
        request(),
        stored(cc(b"max-age=60, must-revalidate"), age=10),
        Reuse.FRESH,
    ),
    (
        "RFC 5861 §3: within stale-while-revalidate",
        request(),
        stored(cc(b"max-age=60, stale-while-revalidate=60"), age=100),
        Reuse.STALE_SERVE,
    ),
    (
        "RFC 5861 §3: past stale-while-revalidate",
        request(),
        stored(cc(b"max-age=60, stale-while-revalidate=10"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 5861 §3: must-revalidate beats stale-while-revalidate",
        request(),
        stored(cc(b"max-age=60, stale-while-revalidate=60, must-revalidate"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 8246 §2: a fresh immutable response satisfies request max-age=0",
        request(cc(b"max-age=0")),
        stored(cc(b"max-age=600, immutable"), age=10),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §5.2.1.4: immutable does not override request no-cache",
        request(cc(b"no-cache")),
        stored(cc(b"max-age=600, immutable"), age=10),
        Reuse.VALIDATE,
    ),
    (
        "RFC 8246 §2: a stale immutable response is validated",
        request(),
        stored(cc(b"max-age=60, immutable"), age=100),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §4.2.2: heuristic freshness",
        request(),
        stored([(b"Last-Modified", date(NOW - 10**5))], age=10),
        Reuse.FRESH,
    ),
    (
        "RFC 9111 §4.2.2: no freshness at all is stale",
        request(),
        stored([], age=1),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §5.3: invalid Expires is stale",
        request(),
        stored([(b"Expires", b"0")]),
        Reuse.VALIDATE,
    ),
    (
        "RFC 9111 §4.3.2: If-Match is for the origin",
        request([(b"If-Match", b'"x"')]),
        stored(cc(b"max-age=60")),
        Reuse.MISS,
    ),
    (
        "RFC 9111 §4.3.2: If-None-Match is answered by the cache",
        request([(b"If-None-Match", b'"x"')]),
        stored(cc(b"max-age=60")),
        Reuse.FRESH,
    ),
]


class ReuseTests(SynchronousTestCase):
    """
    Tests for L{decide_reuse} (RFC 9111 §4).
    """

    def test_reuse_table(self) -> None:
        """
        Each row's outcome is what the section it cites says.
        """
        wrong = [
            (why, got.kind, got.reason)
            for why, req, entry, want in REUSE
            if (got := decide_reuse(req, entry, NOW)).kind != want
        ]
        self.assertEqual(wrong, [])

    def test_reasons_cite_sections(self) -> None:
        """
        Every reuse decision's reason cites an RFC section.
        """
        missing = [
            (why, got.reason)
            for why, req, entry, _ in REUSE
            if not re.search(r"RFC \d+ §", (got := decide_reuse(req, entry, NOW)).reason)
        ]
        self.assertEqual(missing, [])

    def test_only_if_cached(self) -> None:
        """
        RFC 9111 §5.2.1.7: with only-if-cached, a miss or a needed
        validation becomes a 504; a fresh hit is served.
        """
        oic = request(cc(b"only-if-cached"))
        self.assertEqual(
            [
                (d.kind, d.only_if_cached)
                for d in (
                    decide_reuse(oic, None, NOW),
                    decide_reuse(oic, stored(cc(b"max-age=60"), age=100), NOW),
                    decide_reuse(oic, stored(cc(b"max-age=60")), NOW),
                )
            ],
            [(Reuse.MISS, True), (Reuse.VALIDATE, True), (Reuse.FRESH, False)],
        )

    def test_stale_if_error(self) -> None:
        """
        RFC 5861 §4: stale-if-error (in the response or the request) allows
        serving stale on error within its window; must-revalidate forbids it.
        """
        cases = [
            (request(), stored(cc(b"max-age=60, stale-if-error=100"), age=100), True),
            (request(), stored(cc(b"max-age=60, stale-if-error=10"), age=100), False),
            (request(cc(b"stale-if-error=100")), stored(cc(b"max-age=60"), age=100), True),
            (request(), stored(cc(b"max-age=60"), age=100), False),
            (
                request(),
                stored(cc(b"max-age=60, stale-if-error=100, must-revalidate"), age=100),
                False,
            ),
        ]
        self.assertEqual(
            [decide_reuse(req, entry, NOW).stale_if_error for req, entry, _ in cases],
            [want for _, _, want in cases],
        )

    def test_stale_while_revalidate_in_background(self) -> None:
        """
        RFC 5861 §3: a stale response served within stale-while-revalidate
        asks for a background validation.
        """
        decision = decide_reuse(
            request(), stored(cc(b"max-age=60, stale-while-revalidate=60"), age=100), NOW
        )
        self.assertTrue(decision.revalidate_in_background)

    def test_plain_request_decides_as_any_other(self) -> None:
        """
        A request without cache directives takes a shortcut through the
        parts of the decision that depend only on the stored response
        (remembered per entry); its decision is the one a request whose
        Cache-Control holds only an unknown extension gets by the full
        path.  Every combination of up to three response directives, with
        each kind of date field, at several ages, asked at two times of
        the same entry, shared cache or not.
        """
        directives = [
            b"max-age=60",
            b"s-maxage=30",
            b"no-cache",
            b'no-cache="Set-Cookie"',
            b"must-revalidate",
            b"proxy-revalidate",
            b"immutable",
            b"public",
            b"stale-if-error=50",
            b"stale-while-revalidate=40",
        ]
        extras = [
            [],
            [(b"Age", b"20")],
            [(b"Expires", b"0")],
            [(b"Last-Modified", date(NOW - 900))],
        ]
        probe = request(cc(b"x-unknown-extension"))
        differ = []
        for size in range(4):
            for chosen in itertools.combinations(directives, size):
                fields = [(CC, b", ".join(chosen))] if chosen else []
                for extra, age, shared in itertools.product(
                    extras, (0.0, 25.0, 70.0), (True, False)
                ):
                    # Sent 2 s before it came back: a response delay (§4.2.3).
                    entry = stored(fields + extra, age=age)
                    entry = dataclasses.replace(entry, request_time=entry.request_time - 2.0)
                    twin = dataclasses.replace(entry)
                    for now in (NOW, NOW + 45.5):
                        plain = decide_reuse(request(), entry, now, shared=shared)
                        full = decide_reuse(probe, twin, now, shared=shared)
                        if plain != full:
                            differ.append((chosen, extra, age, shared, now, plain, full))
        self.assertEqual(differ, [])

    def test_replaced_stored_response_is_decided_afresh(self) -> None:
        """
        What is remembered about a stored response belongs to that object:
        a copy with other fields (as a 304 freshening makes) is decided on
        its own fields.
        """
        entry = stored(cc(b"max-age=60"), age=30)
        self.assertEqual(decide_reuse(request(), entry, NOW).kind, Reuse.FRESH)
        replaced = dataclasses.replace(entry, headers=(*entry.headers[:1], (CC, b"max-age=10")))
        self.assertEqual(
            (
                decide_reuse(request(), replaced, NOW).kind,
                decide_reuse(request(), entry, NOW).kind,
            ),
            (Reuse.VALIDATE, Reuse.FRESH),
        )

    def test_headers_for_reuse(self) -> None:
        """
        RFC 9111 §5.1 and §5.2.2.4: served headers carry a new Age and lack
        the fields a qualified no-cache names.
        """
        entry = stored(
            [(CC, b'no-cache="Set-Cookie", max-age=60'), (b"Set-Cookie", b"a=b"), (b"Age", b"3")],
            age=10,
        )
        decision = decide_reuse(request(), entry, NOW)
        headers = headers_for_reuse(entry, decision)
        self.assertEqual(
            ([n for n, _ in headers], headers[-1]),
            ([b"Date", CC, b"Age"], (b"Age", b"13")),
        )


class ValidationTests(SynchronousTestCase):
    """
    Tests for validation (RFC 9111 §4.3).
    """

    def test_conditional_request_headers(self) -> None:
        """
        RFC 9111 §4.3.1: ETag becomes If-None-Match, Last-Modified
        If-Modified-Since.
        """
        lm = date(NOW - 100)
        cases = [
            (
                [(b"ETag", b'"v1"'), (b"Last-Modified", lm)],
                [(b"If-None-Match", b'"v1"'), (b"If-Modified-Since", lm)],
            ),
            ([(b"ETag", b'W/"v1"')], [(b"If-None-Match", b'W/"v1"')]),
            ([(b"Last-Modified", lm)], [(b"If-Modified-Since", lm)]),
            ([(b"Last-Modified", b"garbage")], []),
            ([], []),
        ]
        self.assertEqual([conditional_request_headers(h) for h, _ in cases], [w for _, w in cases])

    def test_validation_request_replaces_client_conditionals(self) -> None:
        """
        RFC 9111 §4.3.2: the client's own validators are replaced by the
        stored response's; other fields are kept.
        """
        got = validation_request_headers(
            [(b"Accept", b"*/*"), (b"If-None-Match", b'"client"')], [(b"ETag", b'"v1"')]
        )
        self.assertEqual(got, [(b"Accept", b"*/*"), (b"If-None-Match", b'"v1"')])

    def test_selects_for_update_table(self) -> None:
        """
        RFC 9111 §4.3.4: which 304 selects the stored response.
        """
        lm = date(NOW - 100)
        cases = [  # (why, stored, new, selected)
            ("same strong ETag", [(b"ETag", b'"a"')], [(b"ETag", b'"a"')], True),
            ("different strong ETag", [(b"ETag", b'"a"')], [(b"ETag", b'"b"')], False),
            ("strong in 304, weak stored", [(b"ETag", b'W/"a"')], [(b"ETag", b'"a"')], False),
            ("weak ETag matches", [(b"ETag", b'W/"a"')], [(b"ETag", b'W/"a"')], True),
            ("same Last-Modified", [(b"Last-Modified", lm)], [(b"Last-Modified", lm)], True),
            (
                "different Last-Modified",
                [(b"Last-Modified", lm)],
                [(b"Last-Modified", date(NOW))],
                False,
            ),
            ("no validators at all", [], [], True),
            (
                "squeak: a 304 without validators answers our conditional",
                [(b"ETag", b'"a"')],
                [(CC, b"max-age=5")],
                True,
            ),
        ]
        wrong = [why for why, s, n, want in cases if selects_for_update(s, n) != want]
        self.assertEqual(wrong, [])

    def test_freshen(self) -> None:
        """
        RFC 9111 §3.2 and §4.3.4: the 304's fields replace the stored ones,
        except Content-Length and hop-by-hop fields.
        """
        got = freshen(
            [
                (b"Date", b"old"),
                (b"Content-Length", b"10"),
                (CC, b"max-age=1"),
                (b"X-A", b"1"),
                (b"X-A", b"2"),
                (b"ETag", b'"a"'),
            ],
            [
                (b"Date", b"new"),
                (b"Content-Length", b"0"),
                (CC, b"max-age=60"),
                (b"X-A", b"3"),
                (b"Connection", b"x-hop"),
                (b"X-Hop", b"1"),
                (b"Keep-Alive", b"5"),
            ],
        )
        self.assertEqual(
            got,
            [
                (b"Content-Length", b"10"),
                (b"ETag", b'"a"'),
                (b"Date", b"new"),
                (CC, b"max-age=60"),
                (b"X-A", b"3"),
            ],
        )

    def test_freshen_stored_resets_age(self) -> None:
        """
        RFC 9111 §4.3.4, §4.2.3: a freshened response takes the validation's
        times, so its age restarts.
        """
        old = stored(cc(b"max-age=60"), age=1000)
        new = freshen_stored(old, [(b"Date", date(NOW))], request_time=NOW, response_time=NOW)
        self.assertEqual(decide_reuse(request(), new, NOW + 1).kind, Reuse.FRESH)

    def test_freshen_age(self) -> None:
        """
        RFC 9111 §4.3.4 and §4.2.3: after a 304 the stored response is aged
        from the validation's times, so its Age is the 304's, or none: the
        first response's Age is never counted again.  A 304's Set-Cookie
        is not stored (RFC 6265 §8.6).
        """
        old = [(CC, b"max-age=3600"), (b"Age", b"7200"), (b"ETag", b'"a"')]
        cases = [  # (why, 304 fields, stored fields after)
            (
                "304 without Age: the old Age goes",
                [(b"ETag", b'"a"')],
                [(CC, b"max-age=3600"), (b"ETag", b'"a"')],
            ),
            (
                "304 with Age: its Age replaces the old",
                [(b"Age", b"5"), (b"ETag", b'"a"')],
                [(CC, b"max-age=3600"), (b"Age", b"5"), (b"ETag", b'"a"')],
            ),
            (
                "304 with Set-Cookie: not stored",
                [(b"Set-Cookie", b"s=1"), (b"ETag", b'"a"')],
                [(CC, b"max-age=3600"), (b"ETag", b'"a"')],
            ),
        ]
        wrong = [(why, got) for why, new, want in cases if (got := freshen(old, new)) != want]
        self.assertEqual(wrong, [])

    def test_freshened_age_value(self) -> None:
        """
        RFC 9111 §4.2.3: a response stored with C{Age: 7200} and
        C{max-age=3600} is stale; freshened by a 304 without Age it is
        fresh and served with the age since the validation; with the 304's
        C{Age: 100}, that age counts.
        """
        entry = stored([(CC, b"max-age=3600"), (b"Age", b"7200"), (b"ETag", b'"a"')])
        fresh = freshen_stored(
            entry, [(b"Date", date(NOW)), (b"ETag", b'"a"')], request_time=NOW, response_time=NOW
        )
        aged = freshen_stored(
            entry,
            [(b"Date", date(NOW)), (b"Age", b"100"), (b"ETag", b'"a"')],
            request_time=NOW,
            response_time=NOW,
        )
        decisions = [decide_reuse(request(), e, NOW + 10) for e in (entry, fresh, aged)]
        self.assertEqual(
            [(d.kind, d.age) for d in decisions],
            [(Reuse.VALIDATE, 7210.0), (Reuse.FRESH, 10.0), (Reuse.FRESH, 110.0)],
        )

    def test_stale_on_failure_table(self) -> None:
        """
        RFC 9111 §4.2.4 and §4.3.3: when validating fails, a stale response
        is served unless a directive of the response or the request
        forbids it, and within C{max_stale}; C{stale-if-error} (RFC 5861
        §4) allows it regardless.
        """
        week = 7 * 86400.0
        cases = [  # (why, request fields, stored fields, age, stale-if-error, max_stale, serve)
            ("§4.2.4: disconnected, stale", [], cc(b"max-age=60"), 100.0, False, week, True),
            ("§4.2.4: heuristic, stale", [], [], 100.0, False, week, True),
            ("§4.2.4: fresh but validated", [], cc(b"max-age=600"), 100.0, False, week, True),
            (
                "§5.2.2.2: must-revalidate",
                [],
                cc(b"max-age=60, must-revalidate"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.2.8: proxy-revalidate",
                [],
                cc(b"max-age=60, proxy-revalidate"),
                100.0,
                False,
                week,
                False,
            ),
            ("§5.2.2.10: s-maxage", [], cc(b"s-maxage=60"), 100.0, False, week, False),
            (
                "§5.2.2.4: response no-cache",
                [],
                cc(b"max-age=60, no-cache"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.1.4: request no-cache",
                cc(b"no-cache"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.4: Pragma: no-cache",
                [(b"Pragma", b"no-cache")],
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.1.1: request max-age=0",
                cc(b"max-age=0"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.1.1: request max-age above the age",
                cc(b"max-age=200"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                True,
            ),
            (
                "§5.2.1.3: request min-fresh",
                cc(b"min-fresh=1"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.1.2: staler than request max-stale",
                cc(b"max-stale=10"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "§5.2.1.2: within request max-stale",
                cc(b"max-stale=50"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                True,
            ),
            ("max_stale: just within", [], cc(b"max-age=60"), 160.0, False, 100.0, True),
            ("max_stale: beyond", [], cc(b"max-age=60"), 161.0, False, 100.0, False),
            ("max_stale 0: only a fresh one", [], cc(b"max-age=60"), 61.0, False, 0.0, False),
            (
                "§1.2.2: Age 2^31 is beyond a week",
                [],
                [(CC, b"max-age=60"), (b"Age", b"9" * 20)],
                0.0,
                False,
                week,
                False,
            ),
            ("RFC 5861 §4: stale-if-error", [], cc(b"max-age=60"), 10 * week, True, week, True),
            (
                "RFC 5861 §4: beyond the stale-if-error window",
                [],
                cc(b"max-age=60, stale-if-error=10"),
                100.0,
                False,
                week,
                False,
            ),
            (
                "RFC 5861 §4: beyond the request's stale-if-error window",
                cc(b"stale-if-error=10"),
                cc(b"max-age=60"),
                100.0,
                False,
                week,
                False,
            ),
        ]
        wrong = [
            (why, decision)
            for why, req, fields, age, sie, max_stale, serve in cases
            if (
                decision := stale_on_failure(
                    request(req),
                    stored(fields, age=age),
                    NOW,
                    stale_if_error=sie,
                    max_stale=max_stale,
                )
            ).serve
            != serve
            or "RFC" not in decision.reason
        ]
        self.assertEqual(wrong, [])

    def test_handle_validation_table(self) -> None:
        """
        RFC 9111 §4.3.3: what a validation's answer means.
        """
        entry = stored([(b"ETag", b'"a"'), (CC, b"max-age=1")], age=100)
        cases = [  # (why, status, headers, stale_if_error, expected)
            ("304 matching", 304, [(b"ETag", b'"a"')], False, Validation.FRESHEN),
            ("304 not matching", 304, [(b"ETag", b'"b"')], False, Validation.RETRY),
            ("200 replaces", 200, [(b"ETag", b'"b"')], False, Validation.REPLACE),
            ("5xx without stale-if-error is forwarded", 503, [], False, Validation.REPLACE),
            ("5xx with stale-if-error serves stale", 500, [], True, Validation.SERVE_STALE),
            ("404 replaces", 404, [], True, Validation.REPLACE),
        ]
        wrong = [
            why
            for why, status, headers, sie, want in cases
            if handle_validation_response(entry, status, headers, serve_stale=sie).kind != want
        ]
        self.assertEqual(wrong, [])


class ClientConditionalTests(SynchronousTestCase):
    """
    Tests for L{answer_client_conditional} and L{not_modified_headers}.
    """

    def test_table(self) -> None:
        """
        RFC 9110 §13.1.1-§13.1.3: when a client's conditional is answered 304.
        """
        lm = NOW - 1000
        entry = [(b"ETag", b'W/"a"'), (b"Last-Modified", date(lm)), (b"Date", date(NOW))]
        cases = [  # (why, request headers, stored headers, method, status, expected)
            (
                "§13.1.2: weak comparison matches W/ and strong",
                [(b"If-None-Match", b'"a"')],
                entry,
                b"GET",
                200,
                True,
            ),
            (
                "§13.1.2: any of a list",
                [(b"If-None-Match", b'"x", W/"a"')],
                entry,
                b"GET",
                200,
                True,
            ),
            ("§13.1.2: no match", [(b"If-None-Match", b'"b"')], entry, b"GET", 200, False),
            ("§13.1.2: * matches", [(b"If-None-Match", b"*")], entry, b"GET", 200, True),
            (
                "§13.1.3: not modified since",
                [(b"If-Modified-Since", date(lm))],
                entry,
                b"GET",
                200,
                True,
            ),
            (
                "§13.1.3: modified since",
                [(b"If-Modified-Since", date(lm - 1))],
                entry,
                b"GET",
                200,
                False,
            ),
            (
                "§13.1.3: ignored when If-None-Match is present",
                [(b"If-None-Match", b'"b"'), (b"If-Modified-Since", date(NOW))],
                entry,
                b"GET",
                200,
                False,
            ),
            (
                "§13.1.3: invalid date ignored",
                [(b"If-Modified-Since", b"x")],
                entry,
                b"GET",
                200,
                False,
            ),
            (
                "RFC 9111 §4.3.2: Date stands in for Last-Modified",
                [(b"If-Modified-Since", date(NOW))],
                [(b"Date", date(NOW))],
                b"GET",
                200,
                True,
            ),
            ("§13.1.3: HEAD too", [(b"If-None-Match", b'"a"')], entry, b"HEAD", 200, True),
            (
                "§13.2.1: not for other methods",
                [(b"If-None-Match", b'"a"')],
                entry,
                b"POST",
                200,
                False,
            ),
            (
                "§13.2.1: not for a non-2xx response",
                [(b"If-None-Match", b"*")],
                entry,
                b"GET",
                404,
                False,
            ),
            ("no conditional", [], entry, b"GET", 200, False),
        ]
        wrong = [
            why
            for why, req, st, method, status, want in cases
            if answer_client_conditional(req, st, method=method, status=status) != want
        ]
        self.assertEqual(wrong, [])

    def test_not_modified_headers(self) -> None:
        """
        RFC 9110 §15.4.5: a 304 carries the listed fields only.
        """
        got = not_modified_headers(
            [
                (b"Content-Type", b"text/html"),
                (b"ETag", b'"a"'),
                (CC, b"max-age=5"),
                (b"Content-Length", b"10"),
                (b"Vary", b"Accept"),
            ]
        )
        self.assertEqual(got, [(b"ETag", b'"a"'), (CC, b"max-age=5"), (b"Vary", b"Accept")])


class InvalidationTests(SynchronousTestCase):
    """
    Tests for L{invalidation_targets} (RFC 9111 §4.4).
    """

    def test_table(self) -> None:
        """
        Each row's invalidated URIs are what RFC 9111 §4.4 says.
        """
        cases = [  # (why, method, status, headers, expected)
            ("POST 200 invalidates the target", b"POST", 200, [], [URI]),
            ("PUT 204 too", b"PUT", 204, [], [URI]),
            ("DELETE 302 (non-error) too", b"DELETE", 302, [], [URI]),
            ("PATCH 200 too", b"PATCH", 200, [], [URI]),
            ("an error status invalidates nothing", b"POST", 500, [], []),
            ("a 404 invalidates nothing", b"DELETE", 404, [], []),
            ("a safe method invalidates nothing", b"GET", 200, [], []),
            (
                "same-origin Location",
                b"POST",
                201,
                [(b"Location", b"/new")],
                [URI, "http://example.com/new"],
            ),
            (
                "same-origin Content-Location",
                b"PUT",
                200,
                [(b"Content-Location", b"http://EXAMPLE.com:80/c")],
                [URI, "http://example.com/c"],
            ),
            (
                "other-origin Location ignored",
                b"POST",
                201,
                [(b"Location", b"http://other.example/x")],
                [URI],
            ),
            (
                "scheme differs: other origin",
                b"POST",
                201,
                [(b"Location", b"https://example.com/x")],
                [URI],
            ),
        ]
        wrong = [
            (why, got)
            for why, method, status, headers, want in cases
            if (got := invalidation_targets(method, status, URI, headers)) != want
        ]
        self.assertEqual(wrong, [])


class ConfigTests(SynchronousTestCase):
    """
    Tests for the C{[cache]} configuration keys and L{FreshnessRules.from_config}.
    """

    def test_from_config(self) -> None:
        """
        refresh_pattern rules compile in order, with case-insensitivity.
        """
        config = parse_config(
            '[cache]\nheuristic_fraction = 0.2\nheuristic_max = "2h"\n'
            "refresh_pattern = [{ regex = 'JPG$', case_insensitive = true, min = \"1min\","
            ' percent = 50, max = "1h" }]\n',
            "/etc/squeak.toml",
        )
        rules = FreshnessRules.from_config(config.cache)
        rule = rules.refresh_rules[0]
        self.assertEqual(
            (
                rules.heuristic_fraction,
                rules.heuristic_max,
                rule.min,
                rule.percent,
                rule.max,
                bool(rule.pattern.search("http://e/a.jpg")),
            ),
            (0.2, 7200.0, 60.0, 50.0, 3600.0, True),
        )

    def test_errors(self) -> None:
        """
        Bad [cache] values are reported naming the key.
        """
        cases = [
            ("[cache]\nheuristic_fraction = 2\n", "cache.heuristic_fraction: expected a number"),
            ('[cache]\nenabled = "yes"\n', "cache.enabled: expected true or false"),
            ('[cache]\nsize = "lots"\n', "cache.size: expected a size"),
            (
                "[cache]\nrefresh_pattern = [{ regex = '(' }]\n",
                "cache.refresh_pattern: invalid regex",
            ),
            (
                "[cache]\nrefresh_pattern = [{ rgex = 'a' }]\n",
                "cache.refresh_pattern: unknown key rgex in a rule (did you mean regex?)",
            ),
            (
                '[cache]\nrefresh_pattern = [{ regex = \'a\', min = "2d", max = "1d" }]\n',
                "cache.refresh_pattern: min is more than max",
            ),
            ('[cache]\nrefresh_pattern = "x"\n', "cache.refresh_pattern: expected an array"),
        ]
        wrong = []
        for text, want in cases:
            try:
                parse_config(text, "s.toml")
            except ConfigError as e:
                if want not in str(e):
                    wrong.append((text, str(e)))
            else:
                wrong.append((text, "no error"))
        self.assertEqual(wrong, [])
