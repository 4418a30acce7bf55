# -*- test-case-name: tests.test_cache_ranges -*-
"""
Tests for L{squeak.cache.ranges}: Range requests answered from a complete
stored response (RFC 9110 §14, §13.1.5).
"""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.ranges import (
    MAX_POSITION,
    MAX_RANGES,
    RangeKind,
    RangePlan,
    Segment,
    ShortReadError,
    file_reader,
    if_range_allows,
    iter_body,
    parse_range,
    plan_range_response,
)

T = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
LM = b"Sun, 06 Nov 1994 08:49:37 GMT"
LM_850 = b"Sunday, 06-Nov-94 08:49:37 GMT"
LM_ASCTIME = b"Sun Nov  6 08:49:37 1994"
LM_MINUS_1 = b"Sun, 06 Nov 1994 08:49:36 GMT"
LM_PLUS_1 = b"Sun, 06 Nov 1994 08:49:38 GMT"
LM_PLUS_60 = b"Sun, 06 Nov 1994 08:50:37 GMT"

BODY = b"abcdefghijklmnopqrstuvwxyz"
STORED = [
    (b"Date", LM_PLUS_60),
    (b"Content-Type", b"text/plain"),
    (b"Content-Length", b"26"),
    (b"ETag", b'"abc"'),
    (b"Last-Modified", LM),
]

PARSE = [  # (why, value, expected)
    ("RFC 9110 §14.1.1: int-range", b"bytes=0-499", [(0, 499)]),
    ("RFC 9110 §14.1.1: int-range without last-pos", b"bytes=9500-", [(9500, None)]),
    ("RFC 9110 §14.1.1: suffix-range", b"bytes=-500", [(None, 500)]),
    ("RFC 9110 §14.1.1: bytes=0-0 is the first byte", b"bytes=0-0", [(0, 0)]),
    ("RFC 9110 §14.1.1: bytes=-0 parses (and is unsatisfiable)", b"bytes=-0", [(None, 0)]),
    ("RFC 9110 §14.1: range unit is case-insensitive", b"BYTES=1-2", [(1, 2)]),
    ("RFC 9110 §14.1: range unit is case-insensitive", b"ByTeS=1-2", [(1, 2)]),
    (
        "RFC 9110 §5.6.1: OWS around the commas of the range-set",
        b"bytes=0-1 ,\t2-3 , -4",
        [(0, 1), (2, 3), (None, 4)],
    ),
    (
        "RFC 9110 §5.6.1.2: empty list elements are ignored",
        b"bytes=,0-1,,2-3,",
        [(0, 1), (2, 3)],
    ),
    ("RFC 9110 §5.5: surrounding OWS is not part of the value", b" bytes=1-2\t", [(1, 2)]),
    ("RFC 9110 §14.1.1: DIGITs may have leading zeros", b"bytes=007-010", [(7, 10)]),
    (
        "RFC 9110 §14.1.1: a last-pos beyond any length means to the end",
        b"bytes=0-" + b"9" * 5000,
        [(0, MAX_POSITION)],
    ),
    (
        "RFC 9110 §14.1.1: a huge suffix means the whole representation",
        b"bytes=-" + b"9" * 5000,
        [(None, MAX_POSITION)],
    ),
    ("RFC 9110 §14.1.1: many leading zeros", b"bytes=" + b"0" * 5000 + b"1-2", [(1, 2)]),
    (
        "RFC 9110 §14.1.1: same-length last-pos compared exactly, not capped",
        b"bytes=" + b"9" * 29 + b"-" + b"9" * 30,
        [(MAX_POSITION, MAX_POSITION)],
    ),
    ("RFC 9110 §14.2: overlapping ranges still parse", b"bytes=0-5,3-8", [(0, 5), (3, 8)]),
    (
        f"RFC 9110 §14.2: {MAX_RANGES} ranges are accepted",
        b"bytes=" + b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(MAX_RANGES)),
        [(2 * i, 2 * i) for i in range(MAX_RANGES)],
    ),
    # Ignored (None): RFC 9110 §14.2 "MAY ignore ... invalid ranges-specifier".
    ("RFC 9110 §14.1.1: reversed int-range is invalid", b"bytes=5-4", None),
    (
        "RFC 9110 §14.1.1: reversed huge int-range is invalid",
        b"bytes=" + b"9" * 30 + b"-" + b"9" * 29,
        None,
    ),
    ("RFC 9110 §14.1.1: one invalid range-spec spoils the set", b"bytes=0-1,5-4", None),
    ("RFC 9110 §14.2: unknown unit is ignored", b"items=0-1", None),
    ("RFC 9110 §14.2: unknown unit is ignored", b"none", None),
    ("RFC 9110 §14.1: missing '='", b"bytes 0-1", None),
    ("RFC 9110 §14.1: no whitespace around '='", b"bytes = 0-1", None),
    ("RFC 9110 §14.1: empty unit", b"=0-1", None),
    ("RFC 9110 §14.1.1: empty range-set", b"bytes=", None),
    ("RFC 9110 §14.1.1: range-set of empty elements", b"bytes=, ,", None),
    ("RFC 9110 §14.1.1: a lone dash", b"bytes=-", None),
    ("RFC 9110 §14.1.1: three positions", b"bytes=1-2-3", None),
    ("RFC 9110 §14.1.1: sign is not a DIGIT", b"bytes=+1-2", None),
    ("RFC 9110 §14.1.1: negative suffix", b"bytes=--1", None),
    ("RFC 9110 §14.1.1: hex is not a DIGIT", b"bytes=0x1-2", None),
    ("RFC 9110 §14.1.1: non-ASCII digit", b"bytes=\xd9\xa1-2", None),
    ("RFC 9110 §14.1.1: no whitespace inside a range-spec", b"bytes=1 -2", None),
    ("RFC 9110 §14.1.1: letters", b"bytes=a-b", None),
    ("RFC 9110 §14.1.1: parameters are not allowed", b"bytes=0-1;q=1", None),
    ("RFC 9110 §14.1: empty value", b"", None),
    (
        f"RFC 9110 §14.2: more than {MAX_RANGES} ranges is a denial of service guard",
        b"bytes=" + b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(MAX_RANGES + 1)),
        None,
    ),
]


def stored(**replace: bytes | None) -> list[tuple[bytes, bytes]]:
    """
    L{STORED} with fields replaced, or removed when given L{None}; keyword
    names are field names lower-cased with C{_} for C{-} (C{last_modified}).
    """
    headers = []
    for name, value in STORED:
        key = name.lower().replace(b"-", b"_").decode("ascii")
        new = replace.get(key, value)
        if new is not None:
            headers.append((name, new))
    return headers


IF_RANGE = [  # (why, If-Range value, stored headers, expected)
    ("RFC 9110 §13.1.5: no If-Range, the range is served", None, STORED, True),
    ("RFC 9110 §13.1.5: strong entity-tag matches strongly", b'"abc"', STORED, True),
    ("RFC 9110 §13.1.5: different entity-tag", b'"abd"', STORED, False),
    ("RFC 9110 §8.8.3.2: entity-tags are case-sensitive", b'"ABC"', STORED, False),
    ("RFC 9110 §13.1.5: a weak If-Range tag never matches", b'W/"abc"', STORED, False),
    (
        "RFC 9110 §8.8.3.2: a weak stored ETag never matches strongly",
        b'"abc"',
        stored(etag=b'W/"abc"'),
        False,
    ),
    ("RFC 9110 §8.8.3.2: weak on both sides", b'W/"abc"', stored(etag=b'W/"abc"'), False),
    ("RFC 9110 §13.1.5: no stored ETag", b'"abc"', stored(etag=None), False),
    ("RFC 9110 §8.8.3: malformed entity-tag", b'"abc', STORED, False),
    ("RFC 9110 §8.8.3: unquoted tag is neither tag nor date", b"abc", STORED, False),
    (
        "RFC 9110 §8.8.3: conflicting stored ETags are no strong validator",
        b'"abc"',
        [*STORED, (b"ETag", b'"xyz"')],
        False,
    ),
    (
        "RFC 9110 §13.1.5: an entity-tag is not compared with Last-Modified",
        b'"abc"',
        stored(etag=None, last_modified=b'"abc"'),
        False,
    ),
    ("RFC 9110 §13.1.5: date equals a strong Last-Modified", LM, STORED, True),
    ("RFC 9110 §5.6.7: the same date in RFC 850 form", LM_850, STORED, True),
    ("RFC 9110 §5.6.7: the same date in asctime form", LM_ASCTIME, STORED, True),
    (
        "RFC 9110 §8.8.2.2: Date exactly 1 s after Last-Modified is strong",
        LM,
        stored(date=LM_PLUS_1),
        True,
    ),
    (
        "RFC 9110 §8.8.2.2: Date equal to Last-Modified is weak",
        LM,
        stored(date=LM),
        False,
    ),
    (
        "RFC 9110 §8.8.2.2: Date before Last-Modified is weak",
        LM,
        stored(date=LM_MINUS_1),
        False,
    ),
    ("RFC 9110 §8.8.2.2: without a stored Date, weak", LM, stored(date=None), False),
    ("RFC 9110 §13.1.5: earlier date does not match", LM_MINUS_1, STORED, False),
    ("RFC 9110 §13.1.5: later date does not match exactly", LM_PLUS_1, STORED, False),
    ("RFC 9110 §13.1.5: no stored Last-Modified", LM, stored(last_modified=None), False),
    (
        "RFC 9110 §13.1.5: invalid stored Last-Modified",
        LM,
        stored(last_modified=b"yesterday"),
        False,
    ),
    ("RFC 9110 §13.1.5: neither tag nor valid date", b"Sun, 32 Nov 1994", STORED, False),
    ("RFC 9110 §13.1.5: empty value", b"", STORED, False),
]


def plan(
    range_value: bytes | None,
    *,
    method: bytes = b"GET",
    extra: list[tuple[bytes, bytes]] | None = None,
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    length: int = len(BODY),
) -> RangePlan:
    """Plan a response to a request with C{Range: range_value} from a stored L{BODY}."""
    request = [(b"Host", b"o.test")]
    if range_value is not None:
        request.append((b"Range", range_value))
    request += extra or []
    return plan_range_response(
        method, request, status, STORED if headers is None else headers, length, boundary=b"B"
    )


PLAN = [  # (why, plan, expected kind, expected status, expected ranges)
    ("no Range: served normally", plan(None), RangeKind.FULL, 200, ()),
    (
        "RFC 9110 §14.2: Range is ignored on HEAD",
        plan(b"bytes=0-1", method=b"HEAD"),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §14.2: Range is ignored on POST",
        plan(b"bytes=0-1", method=b"POST"),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §9.1: methods are case-sensitive",
        plan(b"bytes=0-1", method=b"get"),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §14.2: a stored non-200 is served whole",
        plan(b"bytes=0-1", status=404),
        RangeKind.FULL,
        404,
        (),
    ),
    ("RFC 9110 §14.2: invalid Range ignored", plan(b"bytes=1-0"), RangeKind.FULL, 200, ()),
    ("RFC 9110 §14.2: unknown unit ignored", plan(b"lines=1-2"), RangeKind.FULL, 200, ()),
    (
        "RFC 9110 §14.2: Range given twice is ignored",
        plan(b"bytes=0-1", extra=[(b"Range", b"bytes=2-3")]),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §13.1.5: If-Range mismatch sends the whole representation",
        plan(b"bytes=0-1", extra=[(b"If-Range", b'"old"')]),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §13.1.5: If-Range false wins over an unsatisfiable Range",
        plan(b"bytes=100-", extra=[(b"If-Range", b'"old"')]),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §13.1.5: If-Range given twice is false",
        plan(b"bytes=0-1", extra=[(b"If-Range", b'"abc"'), (b"If-Range", b'"abc"')]),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §13.1.5: If-Range match serves the range",
        plan(b"bytes=0-1", extra=[(b"If-Range", b'"abc"')]),
        RangeKind.SINGLE,
        206,
        ((0, 1),),
    ),
    (
        "RFC 9110 §13.1.5: If-Range date match serves the range",
        plan(b"bytes=0-1", extra=[(b"If-Range", LM)]),
        RangeKind.SINGLE,
        206,
        ((0, 1),),
    ),
    (
        "RFC 9110 §14.1.2: an empty representation is served whole",
        plan(b"bytes=-5", length=0),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "RFC 9110 §14.1.2: bytes=0-0 is the first byte",
        plan(b"bytes=0-0"),
        RangeKind.SINGLE,
        206,
        ((0, 0),),
    ),
    (
        "RFC 9110 §14.1.2: open range to the end",
        plan(b"bytes=20-"),
        RangeKind.SINGLE,
        206,
        ((20, 25),),
    ),
    (
        "RFC 9110 §14.1.2: last-pos beyond the end is clipped",
        plan(b"bytes=20-1000"),
        RangeKind.SINGLE,
        206,
        ((20, 25),),
    ),
    ("RFC 9110 §14.1.2: suffix", plan(b"bytes=-3"), RangeKind.SINGLE, 206, ((23, 25),)),
    (
        "RFC 9110 §14.1.2: suffix longer than the representation takes all of it",
        plan(b"bytes=-100"),
        RangeKind.SINGLE,
        206,
        ((0, 25),),
    ),
    (
        "RFC 9110 §14.1.1: bytes=-0 is unsatisfiable",
        plan(b"bytes=-0"),
        RangeKind.UNSATISFIABLE,
        416,
        (),
    ),
    (
        "RFC 9110 §14.1.1: first-pos equal to the length is unsatisfiable",
        plan(b"bytes=26-"),
        RangeKind.UNSATISFIABLE,
        416,
        (),
    ),
    (
        "RFC 9110 §14.1.1: first-pos beyond the length is unsatisfiable",
        plan(b"bytes=100-200, 30-"),
        RangeKind.UNSATISFIABLE,
        416,
        (),
    ),
    (
        "RFC 9110 §15.3.7.2: unsatisfiable ranges are left out",
        plan(b"bytes=100-200, 3-4, -0"),
        RangeKind.SINGLE,
        206,
        ((3, 4),),
    ),
    (
        "RFC 9110 §14.6: disjoint ranges, in the order asked",
        plan(b"bytes=10-12, 0-1"),
        RangeKind.MULTIPART,
        206,
        ((10, 12), (0, 1)),
    ),
    (
        "RFC 9110 §14.2: overlapping ranges coalesced",
        plan(b"bytes=0-5, 3-8"),
        RangeKind.SINGLE,
        206,
        ((0, 8),),
    ),
    (
        "RFC 9110 §14.2: touching ranges coalesced",
        plan(b"bytes=0-4, 5-9"),
        RangeKind.SINGLE,
        206,
        ((0, 9),),
    ),
    (
        "RFC 9110 §14.2: coalesced parts go in ascending order",
        plan(b"bytes=20-22, 2-5, 0-3"),
        RangeKind.MULTIPART,
        206,
        ((0, 5), (20, 22)),
    ),
    (
        "RFC 9110 §14.2: a suffix overlapping an int-range is coalesced",
        plan(b"bytes=20-, -3"),
        RangeKind.SINGLE,
        206,
        ((20, 25),),
    ),
    (
        "RFC 9110 §14.2: many small ranges beyond the limit are ignored",
        plan(b"bytes=" + b",".join([b"0-0"] * (MAX_RANGES + 1))),
        RangeKind.FULL,
        200,
        (),
    ),
    (
        "one range of a content-coded representation is served",
        plan(b"bytes=0-1", headers=[*STORED, (b"Content-Encoding", b"gzip")]),
        RangeKind.SINGLE,
        206,
        ((0, 1),),
    ),
    (
        "several ranges of a content-coded representation are not guessed at",
        plan(b"bytes=0-1,4-5", headers=[*STORED, (b"Content-Encoding", b"gzip")]),
        RangeKind.FULL,
        200,
        (),
    ),
]


def header(plan: RangePlan, name: bytes) -> list[bytes]:
    """The values of the plan's header fields named C{name} (case-insensitively)."""
    return [value for key, value in plan.headers if key.lower() == name]


def body_of(plan: RangePlan, body: bytes = BODY, chunk_size: int = 65536) -> bytes:
    """The planned body, read from C{body}."""
    return b"".join(
        iter_body(plan, lambda offset, size: body[offset : offset + size], chunk_size=chunk_size)
    )


class ParseRangeTests(SynchronousTestCase):
    """Tests for L{parse_range}."""

    timeout = 30

    def test_parse_table(self) -> None:
        """Each row parses as the section it cites says."""
        wrong = [
            (why, value[:40], got, want)
            for why, value, want in PARSE
            if (got := parse_range(value)) != want
        ]
        self.assertEqual(wrong, [])

    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_never_raise(self, value: bytes) -> None:
        """Whatever bytes arrive, the result is L{None} or well-formed pairs."""
        result = parse_range(value)
        if result is not None:
            self.assertTrue(0 < len(result) <= MAX_RANGES)
            for first, last in result:
                self.assertTrue(first is not None or last is not None)
                if first is not None and last is not None:
                    self.assertLessEqual(first, last)

    @given(
        st.lists(
            st.sampled_from(
                [b"bytes=", b"BYTES=", b"-", b",", b" ", b"0", b"7", b"99", b"9" * 30, b"="]
            ),
            max_size=20,
        )
    )
    def test_near_valid_bytes_never_raise(self, pieces: list[bytes]) -> None:
        """Values assembled from the grammar's own pieces never raise."""
        parse_range(b"".join(pieces))

    @given(
        st.lists(
            st.one_of(
                st.tuples(st.integers(0, 10**6), st.none()),
                st.tuples(st.none(), st.integers(0, 10**6)),
                st.integers(0, 10**6).flatmap(
                    lambda a: st.tuples(st.just(a), st.integers(a, 10**6 + a))
                ),
            ),
            min_size=1,
            max_size=MAX_RANGES,
        )
    )
    def test_round_trip(self, specs: list[tuple[int | None, int | None]]) -> None:
        """RFC 9110 §14.1.1: any valid range-set parses back to its range-specs."""
        text = b", ".join(
            (b"" if first is None else b"%d" % first)
            + b"-"
            + (b"" if last is None else b"%d" % last)
            for first, last in specs
        )
        self.assertEqual(parse_range(b"bytes=" + text), specs)


class IfRangeTests(SynchronousTestCase):
    """Tests for L{if_range_allows}."""

    timeout = 30

    def test_if_range_table(self) -> None:
        """Each row's If-Range condition is as the section it cites says."""
        wrong = [
            (why, if_range, got)
            for why, if_range, headers, want in IF_RANGE
            if (got := if_range_allows(if_range, headers)) != want
        ]
        self.assertEqual(wrong, [])

    def test_accepts_iterators(self) -> None:
        """The stored headers may be any iterable, consumed once."""
        self.assertTrue(if_range_allows(LM, iter(STORED)))


class PlanTests(SynchronousTestCase):
    """Tests for L{plan_range_response}."""

    timeout = 30

    def test_plan_table(self) -> None:
        """Each row plans the kind, status and ranges the section it cites says."""
        wrong = [
            (why, got, (kind, status, ranges))
            for why, p, kind, status, ranges in PLAN
            if (got := (p.kind, p.status, p.ranges)) != (kind, status, ranges)
        ]
        self.assertEqual(wrong, [])

    def test_plans_carry_reasons(self) -> None:
        """Every plan says why."""
        self.assertEqual([why for why, p, *_ in PLAN if not p.reason], [])

    def test_full_keeps_stored_headers(self) -> None:
        """A full plan is the stored response as it is, its whole body in one segment."""
        p = plan(b"bytes=0-1", method=b"HEAD")
        self.assertEqual(p.headers, tuple(STORED))
        self.assertEqual(p.content_length, 26)
        self.assertEqual(p.segments, (Segment(b"", 0, 26),))
        self.assertEqual(body_of(p), BODY)

    def test_single(self) -> None:
        """RFC 9110 §15.3.7.1: one range is a 206 with Content-Range and its own Content-Length."""
        p = plan(b"bytes=2-4")
        self.assertEqual(header(p, b"content-range"), [b"bytes 2-4/26"])
        self.assertEqual(header(p, b"content-length"), [b"3"])
        self.assertEqual(header(p, b"content-type"), [b"text/plain"])
        self.assertEqual(header(p, b"etag"), [b'"abc"'])
        self.assertEqual(p.content_length, 3)
        self.assertEqual(body_of(p), b"cde")

    def test_single_drops_whole_content_digest(self) -> None:
        """RFC 9530 §2: a digest of the whole content is not sent with a part of it."""
        p = plan(b"bytes=2-4", headers=[*STORED, (b"Content-Digest", b"sha-256=:x:")])
        self.assertEqual(header(p, b"content-digest"), [])

    def test_unsatisfiable(self) -> None:
        """RFC 9110 §15.5.17: a 416 says the current length and has no body."""
        p = plan(b"bytes=30-")
        self.assertEqual(header(p, b"content-range"), [b"bytes */26"])
        self.assertEqual(header(p, b"content-length"), [b"0"])
        self.assertEqual(header(p, b"content-type"), [])
        self.assertEqual((p.content_length, p.segments, p.epilogue), (0, (), b""))
        self.assertEqual(body_of(p), b"")

    def test_multipart_exact_bytes(self) -> None:
        """RFC 9110 §14.6: the multipart/byteranges body, byte for byte."""
        p = plan(b"bytes=0-1, 5-6")
        expected = (
            b"--B\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Range: bytes 0-1/26\r\n"
            b"\r\n"
            b"ab\r\n"
            b"--B\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Range: bytes 5-6/26\r\n"
            b"\r\n"
            b"fg\r\n"
            b"--B--\r\n"
        )
        self.assertEqual(body_of(p), expected)
        self.assertEqual(body_of(p, chunk_size=1), expected)
        self.assertEqual(p.content_length, len(expected))
        self.assertEqual(header(p, b"content-length"), [b"%d" % len(expected)])
        self.assertEqual(header(p, b"content-type"), [b"multipart/byteranges; boundary=B"])
        self.assertEqual(header(p, b"content-range"), [])
        self.assertEqual(header(p, b"last-modified"), [LM])

    def test_multipart_without_content_type(self) -> None:
        """RFC 9110 §14.6: parts carry Content-Type only if the representation has one."""
        p = plan(b"bytes=0-0,2-2", headers=[(b"ETag", b'"abc"')])
        self.assertEqual(
            body_of(p),
            b"--B\r\nContent-Range: bytes 0-0/26\r\n\r\na"
            b"\r\n--B\r\nContent-Range: bytes 2-2/26\r\n\r\nc"
            b"\r\n--B--\r\n",
        )

    def test_random_boundary(self) -> None:
        """Without a boundary argument, each plan gets a fresh 32-digit hex boundary."""
        request = [(b"Range", b"bytes=0-0,2-2")]
        first = plan_range_response(b"GET", request, 200, STORED, 26)
        second = plan_range_response(b"GET", request, 200, STORED, 26)
        boundaries = [
            header(p, b"content-type")[0].partition(b"boundary=")[2] for p in (first, second)
        ]
        self.assertNotEqual(boundaries[0], boundaries[1])
        for boundary in boundaries:
            self.assertRegex(boundary, rb"\A[0-9a-f]{32}\Z")

    def test_invalid_boundary(self) -> None:
        """A boundary that is not a token of 1 to 70 boundary characters is refused."""
        for boundary in (b"", b"a b", b"x" * 71, b'"q"', b"a\r\nb"):
            self.assertRaises(
                ValueError,
                plan_range_response,
                b"GET",
                [(b"Range", b"bytes=0-0,2-2")],
                200,
                STORED,
                26,
                boundary=boundary,
            )

    @given(
        st.integers(1, 3000).flatmap(
            lambda length: st.tuples(
                st.just(length),
                st.lists(
                    st.one_of(
                        st.tuples(st.integers(0, length + 10), st.none()),
                        st.tuples(st.none(), st.integers(0, length + 10)),
                        st.integers(0, length + 10).flatmap(
                            lambda a: st.tuples(st.just(a), st.integers(a, length + 20))
                        ),
                    ),
                    min_size=1,
                    max_size=12,
                ),
            )
        )
    )
    def test_segments_cover_exactly_what_was_asked(
        self, case: tuple[int, list[tuple[int | None, int | None]]]
    ) -> None:
        """
        RFC 9110 §14.1.2, §14.2: segments stay within the body, serve exactly
        the satisfiable bytes asked for, once each, and the Content-Length is
        the length of what they produce.
        """
        length, specs = case
        body = bytes(i % 251 for i in range(length))
        value = b"bytes=" + b",".join(
            (b"" if a is None else b"%d" % a) + b"-" + (b"" if b is None else b"%d" % b)
            for a, b in specs
        )
        p = plan_range_response(b"GET", [(b"Range", value)], 200, STORED, length, boundary=b"B")
        asked: set[int] = set()
        for a, b in specs:
            if a is None:
                asked.update(range(max(0, length - (b or 0)), length) if b else ())
            else:
                asked.update(range(a, (length - 1 if b is None else min(b, length - 1)) + 1))
        produced = body_of(p, body, chunk_size=97)
        self.assertEqual(p.content_length, len(produced))
        self.assertEqual(header(p, b"content-length"), [b"%d" % len(produced)])
        if not asked:
            self.assertEqual(p.kind, RangeKind.UNSATISFIABLE)
            return
        self.assertIn(p.kind, (RangeKind.SINGLE, RangeKind.MULTIPART))
        served: list[int] = []
        for segment in p.segments:
            self.assertTrue(0 <= segment.offset < segment.offset + segment.size <= length)
            served.extend(range(segment.offset, segment.offset + segment.size))
        self.assertEqual(sorted(served), sorted(asked))
        self.assertEqual([(s.offset, s.offset + s.size - 1) for s in p.segments], list(p.ranges))
        if p.kind is RangeKind.SINGLE:
            ((first, last),) = p.ranges
            self.assertEqual(produced, body[first : last + 1])
            self.assertEqual(
                header(p, b"content-range"), [b"bytes %d-%d/%d" % (first, last, length)]
            )


class IterBodyTests(SynchronousTestCase):
    """Tests for L{iter_body} and L{file_reader}."""

    timeout = 30

    def test_file_reader(self) -> None:
        """A plan streams from a seekable file, in chunks of the requested size."""
        p = plan(b"bytes=0-1, 5-6")
        pieces = list(iter_body(p, file_reader(io.BytesIO(BODY)), chunk_size=1))
        self.assertEqual(b"".join(pieces), body_of(p))
        self.assertEqual(
            max(len(piece) for piece in pieces if piece in (b"a", b"b", b"f", b"g")), 1
        )

    def test_short_read(self) -> None:
        """A stored body shorter than planned raises L{ShortReadError} rather than mis-frame."""
        p = plan(b"bytes=20-")
        pieces = iter_body(p, file_reader(io.BytesIO(BODY[:22])))
        self.assertEqual(next(pieces), b"uv")
        self.assertRaises(ShortReadError, next, pieces)

    def test_overlong_read(self) -> None:
        """A reader returning more than asked raises L{ShortReadError}."""
        p = plan(b"bytes=0-1")
        self.assertRaises(ShortReadError, list, iter_body(p, lambda offset, size: b"xyz"))
