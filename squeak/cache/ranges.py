# -*- test-case-name: tests.test_cache_ranges -*-
"""
Range requests answered from a complete stored response (RFC 9110 §14).

A request for part of a representation carries C{Range} (RFC 9110 §14.2),
perhaps made conditional by C{If-Range} (RFC 9110 §13.1.5). When the cache
holds the whole of a C{200} response of known length, squeak can answer
such a request itself:

  - C{200} with the whole body, when there is nothing to do or C{Range}
    must or may be ignored (L{RangeKind.FULL});
  - C{206} with one C{Content-Range} (L{RangeKind.SINGLE}, RFC 9110
    §15.3.7.1);
  - C{206} with a C{multipart/byteranges} body (L{RangeKind.MULTIPART},
    RFC 9110 §14.6, §15.3.7.2);
  - C{416} with C{Content-Range: bytes */length} (L{RangeKind.UNSATISFIABLE},
    RFC 9110 §15.5.17).

L{plan_range_response} decides, and describes the body as L{Segment}s:
literal bytes followed by a slice of the stored body, plus a closing
L{RangePlan.epilogue}. The I/O layer can then stream the body straight from
the stored file (L{iter_body} with L{file_reader}) without loading it, and
knows the exact C{Content-Length} in advance.

Denial-of-service guard (RFC 9110 §14.2, §17.15): a C{Range} with more than
L{MAX_RANGES} range-specs is ignored (full C{200}). Otherwise satisfiable
ranges that overlap or touch are coalesced into one (RFC 9110 §14.2 "a
server MAY coalesce any of the ranges that overlap"), so the response never
carries a byte twice and is at most the representation plus
L{MAX_RANGES} part headers. When nothing was coalesced the parts keep the
order of the request (RFC 9110 §15.3.7.2 SHOULD); when something was, the
parts go in ascending order.

This module is pure: it imports neither Twisted nor diskcache, never reads
the clock, and performs no I/O itself (bytes come from a callable the
caller passes). Only the default multipart boundary uses randomness
(L{secrets}).
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from squeak.cache.directives import field_values, parse_dates, parse_http_date

__all__ = [
    "MAX_POSITION",
    "MAX_RANGES",
    "RangeKind",
    "RangePlan",
    "Segment",
    "ShortReadError",
    "file_reader",
    "if_range_allows",
    "iter_body",
    "parse_range",
    "plan_range_response",
]

MAX_RANGES = 100
"""
The most range-specs squeak honours in one C{Range}; more and the field is
ignored (RFC 9110 §14.2: a server MAY ignore a set of many small ranges).
"""

MAX_POSITION = 2**63 - 1
"""
Positions and lengths with more digits than fit are read as this value. No
stored body is that long, so the meaning of the range is unchanged: a first
position beyond the end stays unsatisfiable, a last position or suffix
length beyond the end still means "to the end".
"""

_OWS = b" \t"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_INT_RANGE = re.compile(rb"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(rb"-([0-9]+)")
_ENTITY_TAG = re.compile(rb'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
_BOUNDARY = re.compile(rb"[0-9A-Za-z'+_.\-]{1,70}")
_MAX_DIGITS = len(str(MAX_POSITION))

# Fields describing the whole stored content that are wrong for a part of it:
# its length, a digest of its bytes (RFC 9530 §2, RFC 1864) and any stray
# Content-Range.
_WHOLE_CONTENT_FIELDS = frozenset(
    {b"content-length", b"content-range", b"content-digest", b"content-md5"}
)


def _number(digits: bytes) -> int:
    """
    Read 1*DIGIT, capping at L{MAX_POSITION} without converting huge digit
    strings (Python refuses to convert more than 4300 digits).
    """
    significant = digits.lstrip(b"0")
    if len(significant) > _MAX_DIGITS:
        return MAX_POSITION
    return min(int(significant or b"0"), MAX_POSITION)


def _less(a: bytes, b: bytes) -> bool:
    """Whether the decimal C{a} is less than the decimal C{b}, exactly, at any size."""
    a, b = a.lstrip(b"0"), b.lstrip(b"0")
    return (len(a), a) < (len(b), b)


def parse_range(value: bytes) -> list[tuple[int | None, int | None]] | None:
    """
    Parse a C{Range} field value (RFC 9110 §14.1.1, §14.2) in the C{bytes}
    unit.

    Each range-spec becomes a pair: C{a-b} is C{(a, b)}, C{a-} is
    C{(a, None)} and the suffix C{-n} is C{(None, n)}. The unit is
    case-insensitive (RFC 9110 §14.1); whitespace is allowed around the
    commas and empty list elements are skipped (RFC 9110 §5.6.1.2), but not
    inside a range-spec or around C{=}.

    The result is L{None}, meaning the field is to be ignored (RFC 9110
    §14.2), when the value is syntactically invalid, including an int-range
    whose last position is less than its first (§14.1.1); when its unit is
    not C{bytes}; or when it has more than L{MAX_RANGES} range-specs (the
    denial-of-service guard of §14.2). Numbers too large to matter read as
    L{MAX_POSITION}. Whether a range is satisfiable depends on the length,
    so is left to L{plan_range_response}.

    @param value: The field value.
    @return: The range-specs in order, or L{None}; never raises.
    """
    unit, equals, range_set = value.strip(_OWS).partition(b"=")
    if not equals or not _TOKEN.fullmatch(unit) or unit.lower() != b"bytes":
        return None
    ranges: list[tuple[int | None, int | None]] = []
    for raw in range_set.split(b","):
        spec = raw.strip(_OWS)
        if not spec:
            continue
        if len(ranges) == MAX_RANGES:
            return None
        if match := _INT_RANGE.fullmatch(spec):
            first, last = match.groups()
            if not last:
                ranges.append((_number(first), None))
            elif _less(last, first):
                return None
            else:
                ranges.append((_number(first), _number(last)))
        elif match := _SUFFIX_RANGE.fullmatch(spec):
            ranges.append((None, _number(match.group(1))))
        else:
            return None
    return ranges or None


def _is_strong_tag(tag: bytes) -> bool:
    """Whether C{tag} is a well-formed strong entity-tag (RFC 9110 §8.8.3)."""
    return _ENTITY_TAG.fullmatch(tag) is not None and not tag.startswith(b"W/")


def if_range_allows(if_range: bytes | None, stored_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """
    Evaluate an C{If-Range} condition against a stored response (RFC 9110
    §13.1.5).

      - No C{If-Range}: true.
      - An entity-tag: true only if the stored response has exactly one
        strong C{ETag} equal to it by strong comparison (RFC 9110
        §8.8.3.2). A weak tag never matches, on either side.
      - An HTTP-date: true only if it is exactly the stored
        C{Last-Modified} (the same instant, however spelt) and that is a
        strong validator, which for a cache means the stored C{Date} is at
        least one second after it (RFC 9110 §8.8.2.2). Without a C{Date}
        the validator is weak.
      - Anything else (an invalid tag or date): false.

    A false condition means the C{Range} is ignored and the whole
    representation is sent with C{200}, which is always safe.

    @param if_range: The C{If-Range} field value, or L{None} if absent.
    @param stored_headers: The stored response's header section.
    @return: Whether the range may be served.
    """
    if if_range is None:
        return True
    if_range = if_range.strip(_OWS)
    stored = list(stored_headers)
    if if_range.startswith((b'"', b"W/")):
        if not _is_strong_tag(if_range):
            return False
        etags = set(field_values(stored, b"etag"))
        if len(etags) != 1:
            return False
        (etag,) = etags
        return _is_strong_tag(etag) and etag == if_range
    wanted = parse_http_date(if_range)
    if wanted is None:
        return False
    dates = parse_dates(stored)
    if dates.last_modified is None or dates.date is None:
        return False
    if dates.date - dates.last_modified < 1:
        return False
    return wanted == dates.last_modified


class RangeKind(enum.Enum):
    """How to answer a request from a complete stored response."""

    FULL = "full"
    """Serve the stored response as it is, normally a C{200}."""
    SINGLE = "single"
    """C{206} with one range and C{Content-Range} (RFC 9110 §15.3.7.1)."""
    MULTIPART = "multipart"
    """C{206} with C{multipart/byteranges} (RFC 9110 §14.6, §15.3.7.2)."""
    UNSATISFIABLE = "unsatisfiable"
    """C{416} with C{Content-Range: bytes */length} (RFC 9110 §15.5.17)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """
    One piece of a planned body: literal bytes, then a slice of the stored
    body.

    @ivar prefix: Bytes to send first (a multipart delimiter and part
        header); may be empty.
    @ivar offset: Where the slice of the stored body starts.
    @ivar size: How many bytes of the stored body follow C{prefix}.
    """

    prefix: bytes
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class RangePlan:
    """
    How to answer a request from a complete stored response, and with what
    body.

    The body is each segment's C{prefix} followed by C{size} bytes of the
    stored body at C{offset}, in order, then C{epilogue}; its length is
    C{content_length}. L{iter_body} produces it.

    @ivar kind: What sort of answer this is.
    @ivar status: The status code to send: the stored status for
        L{RangeKind.FULL}, C{206} or C{416}.
    @ivar reason: Why, citing the section followed (for logs and
        C{X-Cache-Lookup}).
    @ivar headers: The response's header section: the stored fields, with
        C{Content-Length} (always last), C{Content-Range} and, for
        multipart, C{Content-Type} replaced. For L{RangeKind.FULL} the
        stored fields unchanged.
    @ivar content_length: The exact length of the body.
    @ivar segments: The body's pieces in order.
    @ivar epilogue: Bytes to send after the last segment (the multipart
        close-delimiter); may be empty.
    @ivar ranges: The inclusive C{(first, last)} byte ranges served, in the
        order sent; empty unless C{kind} is C{SINGLE} or C{MULTIPART}.
    """

    kind: RangeKind
    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...]
    content_length: int
    segments: tuple[Segment, ...]
    epilogue: bytes = b""
    ranges: tuple[tuple[int, int], ...] = ()


def _resolve(specs: Sequence[tuple[int | None, int | None]], length: int) -> list[tuple[int, int]]:
    """
    The satisfiable range-specs as inclusive C{(first, last)} positions
    within C{length} bytes, in order (RFC 9110 §14.1.1, §14.1.2): an
    int-range is satisfiable if its first position is less than the length,
    its last position clipped to the end; a suffix if its length is non-zero,
    taking the whole representation when longer than it.
    """
    resolved: list[tuple[int, int]] = []
    for first, last in specs:
        if first is None:
            suffix = last or 0
            if suffix > 0:
                resolved.append((max(0, length - suffix), length - 1))
        elif first < length:
            resolved.append((first, length - 1 if last is None else min(last, length - 1)))
    return resolved


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    Merge ranges that overlap or touch (RFC 9110 §14.2 MAY). If none do, the
    ranges are returned in their original order (RFC 9110 §15.3.7.2);
    otherwise the merged ranges in ascending order.
    """
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return ranges if len(merged) == len(ranges) else merged


def _without(
    headers: Iterable[tuple[bytes, bytes]], names: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """The header fields whose lower-cased names are not in C{names}."""
    return [(name, value) for name, value in headers if name.lower() not in names]


def _content_type(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The stored C{Content-Type}, or L{None} if absent or unsafe to repeat in a part header."""
    values = field_values(headers, b"content-type")
    if not values or any(c in values[0] for c in (b"\r", b"\n", b"\0")):
        return None
    return values[0]


def _content_range(first: int, last: int, length: int) -> bytes:
    """A C{Content-Range} value for a satisfied range (RFC 9110 §14.4)."""
    return b"bytes %d-%d/%d" % (first, last, length)


def _full(
    stored_status: int, stored_headers: Sequence[tuple[bytes, bytes]], length: int, reason: str
) -> RangePlan:
    """A plan to serve the stored response whole."""
    return RangePlan(
        kind=RangeKind.FULL,
        status=stored_status,
        reason=reason,
        headers=tuple(stored_headers),
        content_length=length,
        segments=(Segment(b"", 0, length),) if length else (),
    )


def plan_range_response(
    method: bytes,
    request_headers: Iterable[tuple[bytes, bytes]],
    stored_status: int,
    stored_headers: Iterable[tuple[bytes, bytes]],
    length: int,
    *,
    boundary: bytes | None = None,
) -> RangePlan:
    """
    Decide how to answer a request from a complete stored response of
    C{length} bytes (RFC 9110 §14).

    The whole response (L{RangeKind.FULL}) is served when the method is not
    C{GET} (RFC 9110 §14.2: GET is the only method for which range handling
    is defined); when there is no C{Range}, or more than one field line of
    it; when the stored status is not C{200} (squeak only slices complete
    C{200} responses; RFC 9110 §14.2 lets a server ignore C{Range}); when
    L{parse_range} rejects it; when C{If-Range} is false
    (L{if_range_allows}; several C{If-Range} lines count as false); when the
    representation is empty (there is no byte to describe in a
    C{Content-Range}); and when several ranges of a content-coded
    representation are asked for (whether the coding would then apply to
    the parts or to the multipart whole is ambiguous, so squeak does not
    guess).

    Otherwise the satisfiable ranges are coalesced as the module docstring
    describes: none satisfiable gives L{RangeKind.UNSATISFIABLE}, one gives
    L{RangeKind.SINGLE}, several give L{RangeKind.MULTIPART}, whose parts
    each carry the stored C{Content-Type} (if any) and their
    C{Content-Range} (RFC 9110 §14.6).

    The other preconditions (C{If-Match}, C{If-None-Match} and the date
    conditions, RFC 9110 §13.2.2 steps 1-4) are evaluated before this, by
    the caller.

    @param method: The request method (case-sensitive, RFC 9110 §9.1).
    @param request_headers: The request's header section.
    @param stored_status: The stored response's status code.
    @param stored_headers: The stored response's header section.
    @param length: The length of the stored body in bytes.
    @param boundary: The multipart boundary; random hex when L{None}.
    @return: The plan.
    @raise ValueError: If C{boundary} is not a valid boundary token
        (RFC 2046 §5.1.1, and a token so it needs no quoting).
    """
    if boundary is not None and not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    stored = list(stored_headers)
    request = list(request_headers)
    values = field_values(request, b"range")

    def full(reason: str) -> RangePlan:
        return _full(stored_status, stored, length, reason)

    if not values:
        return full("no Range")
    if method != b"GET":
        return full("RFC 9110 §14.2: Range ignored, range handling is defined only for GET")
    if len(values) > 1:
        return full("RFC 9110 §14.2: Range ignored, given more than once")
    if stored_status != 200:
        return full(f"RFC 9110 §14.2: Range ignored, stored status is {stored_status}, not 200")
    specs = parse_range(values[0])
    if specs is None:
        return full(
            "RFC 9110 §14.2: Range ignored, invalid, not in bytes "
            f"or more than {MAX_RANGES} ranges"
        )
    if_ranges = field_values(request, b"if-range")
    if len(if_ranges) > 1 or not if_range_allows(if_ranges[0] if if_ranges else None, stored):
        return full("RFC 9110 §13.1.5: If-Range false, whole representation sent")
    if length <= 0:
        return full("RFC 9110 §14.1.2: Range ignored, representation is empty")
    ranges = _coalesce(_resolve(specs, length))
    if not ranges:
        headers = _without(stored, _WHOLE_CONTENT_FIELDS | {b"content-type", b"content-encoding"})
        headers.append((b"Content-Range", b"bytes */%d" % length))
        headers.append((b"Content-Length", b"0"))
        return RangePlan(
            kind=RangeKind.UNSATISFIABLE,
            status=416,
            reason="RFC 9110 §14.1.1, §15.5.17: no range is satisfiable",
            headers=tuple(headers),
            content_length=0,
            segments=(),
        )
    if len(ranges) == 1:
        ((first, last),) = ranges
        headers = _without(stored, _WHOLE_CONTENT_FIELDS)
        headers.append((b"Content-Range", _content_range(first, last, length)))
        headers.append((b"Content-Length", b"%d" % (last - first + 1)))
        return RangePlan(
            kind=RangeKind.SINGLE,
            status=206,
            reason="RFC 9110 §15.3.7.1: single range",
            headers=tuple(headers),
            content_length=last - first + 1,
            segments=(Segment(b"", first, last - first + 1),),
            ranges=tuple(ranges),
        )
    if field_values(stored, b"content-encoding"):
        return full("several ranges of a content-coded representation: whole representation sent")
    if boundary is None:
        boundary = secrets.token_hex(16).encode("ascii")
    content_type = _content_type(stored)
    part_type = b"Content-Type: " + content_type + b"\r\n" if content_type is not None else b""
    segments = []
    for index, (first, last) in enumerate(ranges):
        prefix = (
            (b"\r\n" if index else b"")
            + b"--"
            + boundary
            + b"\r\n"
            + part_type
            + b"Content-Range: "
            + _content_range(first, last, length)
            + b"\r\n\r\n"
        )
        segments.append(Segment(prefix, first, last - first + 1))
    epilogue = b"\r\n--" + boundary + b"--\r\n"
    total = sum(len(s.prefix) + s.size for s in segments) + len(epilogue)
    headers = _without(stored, _WHOLE_CONTENT_FIELDS | {b"content-type"})
    headers.append((b"Content-Type", b"multipart/byteranges; boundary=" + boundary))
    headers.append((b"Content-Length", b"%d" % total))
    return RangePlan(
        kind=RangeKind.MULTIPART,
        status=206,
        reason=f"RFC 9110 §14.6, §15.3.7.2: {len(ranges)} ranges as multipart/byteranges",
        headers=tuple(headers),
        content_length=total,
        segments=tuple(segments),
        epilogue=epilogue,
        ranges=tuple(ranges),
    )


class ShortReadError(Exception):
    """
    The stored body ended before a planned segment did: the C{Content-Length}
    already promised cannot be met, so the client connection must be aborted.
    """


def iter_body(
    plan: RangePlan, read: Callable[[int, int], bytes], *, chunk_size: int = 65536
) -> Iterator[bytes]:
    """
    Produce the body of C{plan}, reading the stored body in pieces of at most
    C{chunk_size} bytes.

    @param plan: The plan.
    @param read: C{read(offset, size)} returns up to C{size} stored bytes
        from C{offset} (fewer only at the end of the body); see
        L{file_reader}.
    @param chunk_size: The most stored bytes read at once.
    @return: The body's pieces; together exactly C{plan.content_length}
        bytes.
    @raise ShortReadError: If C{read} returns nothing before a segment is done,
        or more than asked for.
    """
    for segment in plan.segments:
        if segment.prefix:
            yield segment.prefix
        offset, remaining = segment.offset, segment.size
        while remaining > 0:
            wanted = min(chunk_size, remaining)
            data = read(offset, wanted)
            if not data or len(data) > wanted:
                raise ShortReadError(
                    f"stored body gave {len(data)} bytes at {offset}, expected up to {wanted}"
                )
            offset += len(data)
            remaining -= len(data)
            yield data
    if plan.epilogue:
        yield plan.epilogue


def file_reader(file: BinaryIO) -> Callable[[int, int], bytes]:
    """
    A C{read(offset, size)} for L{iter_body} over a seekable binary file.

    @param file: The open stored body; the caller keeps ownership.
    @return: A function that seeks to C{offset} and reads up to C{size}
        bytes.
    """

    def read(offset: int, size: int) -> bytes:
        file.seek(offset)
        return file.read(size)

    return read
