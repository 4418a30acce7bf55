# -*- test-case-name: tests.test_http_request -*-
"""
Strict HTTP/1.1 request syntax (RFC 9112), without I/O.

The client side of the proxy reads requests with this module instead of
Twisted's C{HTTPChannel}.  Two reasons, both measured (docs/performance.md):
C{HTTPChannel} alone answers at most about 9,700 small requests a second on
one core of the benchmark machine, below what squeak's targets need, while a
lean reader answers 40,000; and one strict reading of message framing, shared
by the tests that probe request smuggling, is easier to trust than a
permissive parser with checks added on top.

The rule everywhere is I{reject, never repair}: anything that two HTTP
implementations could read differently (bare LF line endings, obsolete line
folding, whitespace before a colon, duplicate or malformed C{Content-Length},
C{Content-Length} with C{Transfer-Encoding}, chunk sizes with signs or
prefixes, several C{Host} fields) is refused with a L{MessageError} whose
detail goes on the 400 page.

The grammar is L{squeak.http.grammar}'s and the field reader
L{squeak.http.head}'s, shared with the response reader
(L{squeak.http.response}); chunked bodies are decoded by
L{squeak.http.chunked}, whose names are re-exported here for older imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squeak.http.chunked import ChunkedDecoder
from squeak.http.fields import (
    IMPERSONATOR_NAMES,
    FramingError,
    RawHeaders,
    check_request_framing,
)
from squeak.http.grammar import (
    CHUNK_SIZE_LINE,
    FIELD_LINE,
    HTTP_VERSION,
    REQUEST_HEAD,
    REQUEST_LINE,
    TOKEN,
)
from squeak.http.head import (
    MessageError,
    find_head_end,
    persists,
    read_field_lines,
    read_valid_field_lines,
    why_bad_field,
)
from squeak.http.methods import REGISTERED_METHODS, why_miscased

__all__ = [
    "CHUNK_SIZE_LINE",
    "FIELD_LINE",
    "TOKEN",
    "ChunkedDecoder",
    "MessageError",
    "RequestHead",
    "find_head_end",
    "parse_request_head",
    "persists",
    "read_field_lines",
    "read_request_head",
    "why_bad_field",
]

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
#: The request fields L{parse_request_head} decides on: the look-alikes of
#: framing fields (L{squeak.http.fields.impersonated_field}) among them, so
#: that finding one costs the common head nothing.
_WATCHED_REQUEST_FIELDS = _FRAMING | {b"connection", b"host", b"expect"} | IMPERSONATOR_NAMES


@dataclass(slots=True)
class RequestHead:
    """
    A parsed request head.

    @ivar fields: Every field line in order, names as sent, values without
        surrounding whitespace (repeated fields are kept separately).
    @ivar content_length: The body length, 0 when there is no body, or
        L{None} for a chunked body.
    @ivar keep_alive: Whether the client wants the connection kept open
        after this exchange (RFC 9112 §9.3).
    @ivar expects_continue: Whether an HTTP/1.1 client waits for
        C{100 Continue} before sending the body (RFC 9110 §10.1.1).
    @ivar names: The lower-cased names of C{fields}: most requests have
        none of the fields conditional, range, cache or upgrade handling
        look for, and one set says so at once.
    @ivar dropped: The names, as sent, of the fields removed from C{fields}
        because they impersonate a framing or connection-specific field
        (L{squeak.http.fields.impersonated_field}), for the service log.
    """

    method: bytes
    target: bytes
    version: bytes
    fields: RawHeaders
    content_length: int | None
    keep_alive: bool
    expects_continue: bool
    names: frozenset[bytes] = frozenset()
    dropped: tuple[bytes, ...] = ()


def read_request_head(
    buffer: bytes, limit: int, *, max_fields: int
) -> tuple[RequestHead, int] | None:
    """
    Read the request head at the start of C{buffer}: what L{find_head_end}
    and L{parse_request_head} do together, with the same verdicts, for less
    work on a valid head.

    L{find_head_end}'s search for bare-LF empty lines is skipped when the
    head is complete and matches L{REQUEST_HEAD}, a pattern that holds no
    LF outside a CRLF, so that search could not have found one.  Any other
    head goes through both functions, in their order, for their refusal.

    @param limit: The largest head accepted, in bytes.
    @return: The head and the index just past its final empty line, or
        L{None} when it has not all arrived yet.
    @raise MessageError: As L{find_head_end} and L{parse_request_head}.
    """
    end = buffer.find(b"\r\n\r\n", 0, limit + 4)
    if end >= 0:
        head = buffer[:end]
        whole = REQUEST_HEAD.fullmatch(head)
        if whole is not None:
            return _parse(head, whole, max_fields), end + 4
    end = find_head_end(buffer, limit)
    if end < 0:
        return None
    return parse_request_head(buffer[: end - 4], max_fields=max_fields), end


def parse_request_head(head: bytes, *, max_fields: int) -> RequestHead:
    """
    Parse one request head: the request line and the field lines, without the
    final empty line.

    @raise MessageError: The head breaks RFC 9112, is ambiguous, or asks for
        something this proxy does not implement.
    """
    return _parse(head, REQUEST_HEAD.fullmatch(head), max_fields)


def _parse(head: bytes, whole: re.Match[bytes] | None, max_fields: int) -> RequestHead:
    """
    L{parse_request_head}, given the head's L{REQUEST_HEAD} match.

    One match for the whole head is the common case; when it fails, the
    request line and then the field lines are matched apart, so that the
    refusal gives the reason (and the same one, in the same order of
    checks) that reading them one by one would.
    """
    lines = head.split(b"\r\n")
    request_line = whole if whole is not None else REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        raise MessageError(_why_bad_request_line(lines[0]))
    method, target, major, minor = request_line.groups()
    if major != b"1":
        raise MessageError(f"HTTP/{major.decode()}.{minor.decode()} is not supported", 505)
    if method not in REGISTERED_METHODS:
        # A registered method in another case (delete for DELETE) would
        # slip past a method rule to an origin that upper-cases it.
        why = why_miscased(method)
        if why is not None:
            raise MessageError(why)
    if len(lines) - 1 > max_fields:
        raise MessageError(f"more than {max_fields} header fields")
    names: set[bytes] = set()
    if whole is not None:
        fields, watched = read_valid_field_lines(lines[1:], _WATCHED_REQUEST_FIELDS, names)
    else:
        # Raises: the request line is valid, so some field line is not.
        fields, watched = read_field_lines(lines[1:], _WATCHED_REQUEST_FIELDS, names=names)
    http11 = minor != b"0"
    version = b"HTTP/1.1" if minor == b"1" else b"HTTP/1." + minor
    if len(watched) == 1 and watched[0][0] == b"host":
        # The common head: a Host and no other watched field, so no body,
        # no Expect, and the version's persistence (what the general case
        # below concludes for it).
        return RequestHead(method, target, version, fields, 0, http11, False, frozenset(names))
    framing = [(name, value) for name, value in watched if name in _FRAMING]
    hosts = sum(1 for name, _ in watched if name == b"host")
    dropped: tuple[bytes, ...] = ()
    if not names.isdisjoint(IMPERSONATOR_NAMES):
        # Content_Length and its kind: dropped, never forwarded, since a
        # CGI-style gateway behind the origin would read them as the real
        # field (squeak.http.fields.impersonated_field).
        dropped = tuple(name for name, _ in fields if name.lower() in IMPERSONATOR_NAMES)
        fields = [field for field in fields if field[0].lower() not in IMPERSONATOR_NAMES]
        names -= IMPERSONATOR_NAMES
    expects = [value.lower() for name, value in watched if name == b"expect"]
    expect = expects[-1] if expects else None
    if hosts > 1:
        # RFC 9112 §3.2: more than one Host is answered 400 (the two could
        # name different origins to the cache and to the next hop).
        raise MessageError(f"{hosts} Host fields (RFC 9112 §3.2)")
    content_length: int | None = 0
    if framing:
        try:
            check_request_framing(framing)
        except FramingError as error:
            raise MessageError(error.detail) from None
        name, value = framing[0]
        if name == b"transfer-encoding" and not http11:
            # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is
            # treated "as if the framing is faulty".
            raise MessageError("HTTP/1.0 request with Transfer-Encoding (RFC 9112 §6.1)")
        content_length = None if name == b"transfer-encoding" else int(value)
    # After the framing checks, whose reasons matter more.
    if not hosts and http11:
        # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
        # status code to any HTTP/1.1 request message that lacks a Host
        # header field" - even in absolute form, where the URI names the
        # origin: a client that omits it is not speaking HTTP/1.1.
        raise MessageError("HTTP/1.1 request without a Host field (RFC 9112 §3.2)")
    return RequestHead(
        method=method,
        target=target,
        version=version,
        fields=fields,
        content_length=content_length,
        keep_alive=persists(http11, watched),
        expects_continue=expect == b"100-continue" and http11,
        names=frozenset(names),
        dropped=dropped,
    )


def _why_bad_request_line(line: bytes) -> str:
    """
    Say why a request line was refused.
    """
    if b"\n" in line or b"\r" in line:
        return "bare CR or LF in the request head (lines end with CRLF)"
    if line.count(b" ") != 2:
        return "malformed request line (expected: method SP target SP version)"
    method, _target, version = line.split(b" ")
    if not re.fullmatch(TOKEN, method):
        return f"invalid method {method[:32]!r}"
    if not re.fullmatch(HTTP_VERSION, version):
        return f"invalid HTTP version {version[:16]!r}"
    return "invalid characters in the request target"
