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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from squeak.http.fields import FramingError, RawHeaders, check_request_framing

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
    "why_bad_field",
]

#: RFC 9110 §5.6.2 token characters.
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: RFC 9112 §5: field-line = field-name ":" OWS field-value OWS; the value
#: holds VCHAR, obs-text, SP and HTAB only (no NUL, CR, LF or other CTL).
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
#: Field lines joined by CRLF, each a valid L{FIELD_LINE}: the value
#: excludes CR and LF, so the lines cannot be read any other way.
_FIELD_BLOCK = re.compile(
    rb"(?:" + TOKEN + rb":[\t\x20-\x7e\x80-\xff]*)(?:\r\n" + TOKEN + rb":[\t\x20-\x7e\x80-\xff]*)*"
)
#: RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG
#: (bounded here to 16 digits), chunk-ext = *( BWS ";" BWS ext... ).
CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?")
#: RFC 9112 §3: request-line = method SP request-target SP HTTP-version; the
#: target is any run of visible characters (its form is checked later, by
#: L{squeak.http.target}).
_REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])")
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
#: The request fields L{parse_request_head} decides on.
_WATCHED_REQUEST_FIELDS = _FRAMING | {b"connection", b"host", b"expect"}


class MessageError(Exception):
    """
    A request that must be refused before it is processed.

    @ivar status: 400, 501 (a method or coding not implemented) or 505.
    @ivar detail: One line for the error page and the log.
    """

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


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
    """

    method: bytes
    target: bytes
    version: bytes
    fields: RawHeaders
    content_length: int | None
    keep_alive: bool
    expects_continue: bool
    names: frozenset[bytes] = frozenset()


def find_head_end(buffer: bytes, limit: int) -> int:
    """
    Where the head at the start of C{buffer} ends.

    @return: The index just past the empty line that ends the head, or -1
        when it has not all arrived yet.
    @raise MessageError: The head is longer than C{limit} bytes, or a head
        still incomplete already holds an empty line made with a bare LF
        (a client typing LF-only lines is told at once instead of waiting
        for a terminator that will never come).
    """
    end = buffer.find(b"\r\n\r\n", 0, limit + 4)
    # An empty line made with a bare LF (LF LF, or LF CR LF) before the
    # first CRLFCRLF: searched up to where that terminator starts, so the
    # verdict is the same however the bytes were split into reads.
    stop = end + 3 if end >= 0 else limit + 4
    if buffer.find(b"\n\n", 0, stop + 1) >= 0 or buffer.find(b"\n\r\n", 0, stop) >= 0:
        raise MessageError("bare CR or LF in the request head (lines end with CRLF)")
    if end >= 0:
        return end + 4
    if len(buffer) >= limit + 4:
        # Only now can no CRLFCRLF end within limit + 4 bytes: refusing any
        # earlier would refuse a head of exactly limit bytes whose
        # terminator arrives in a later segment.
        raise MessageError(f"request head larger than {limit} bytes")
    return -1


def parse_request_head(head: bytes, *, max_fields: int) -> RequestHead:
    """
    Parse one request head: the request line and the field lines, without the
    final empty line.

    @raise MessageError: The head breaks RFC 9112, is ambiguous, or asks for
        something this proxy does not implement.
    """
    lines = head.split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        raise MessageError(_why_bad_request_line(lines[0]))
    method, target, major, minor = request_line.groups()
    if major != b"1":
        raise MessageError(f"HTTP/{major.decode()}.{minor.decode()} is not supported", 505)
    if len(lines) - 1 > max_fields:
        raise MessageError(f"more than {max_fields} header fields")
    names: set[bytes] = set()
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
    if not re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
        return f"invalid HTTP version {version[:16]!r}"
    return "invalid characters in the request target"


def why_bad_field(line: bytes) -> str:
    """
    Say why a request field line was refused (RFC 9112 §5).
    """
    if b"\n" in line or b"\r" in line:
        return "bare CR or LF in the request head (lines end with CRLF)"
    if line[:1] in (b" ", b"\t"):
        return "obsolete line folding in a header field (RFC 9112 §5.2)"
    name, colon, _value = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if not re.fullmatch(TOKEN, name):
        return f"invalid header field name {name[:40]!r}"
    shown = name[:40].decode("latin-1")
    return f"header {shown} value contains NUL, CR, LF or a control character"


def read_field_lines(
    lines: Sequence[bytes],
    watch: frozenset[bytes],
    *,
    why_bad: Callable[[bytes], str] = why_bad_field,
    names: set[bytes] | None = None,
) -> tuple[RawHeaders, RawHeaders]:
    """
    Read the field lines of a request or response head (RFC 9112 §5).

    @param watch: Lower-case names of the fields the caller decides on.
    @param why_bad: Says why a line was refused (the wording of requests
        and responses differs).
    @param names: If given, every field's lower-cased name is added to it.
    @return: Every field as sent (value without surrounding whitespace,
        repeated fields kept in order), and the C{(lower-case name, value)}
        pairs of the fields named in C{watch}.
    @raise MessageError: A line is not a valid field line.
    """
    fields: RawHeaders = []
    watched: RawHeaders = []
    if not lines:
        return fields, watched
    if _FIELD_BLOCK.fullmatch(b"\r\n".join(lines)) is None:
        # Some line is bad: find the first, to say why.
        for line in lines:
            if FIELD_LINE.fullmatch(line) is None:
                raise MessageError(why_bad(line))
    for line in lines:
        # Every line is a valid field line (one match over them all is
        # cheaper than one per line): the name is all before the first
        # colon, which a token cannot hold.
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        fields.append((name, value))
        lower = name.lower()
        if names is not None:
            names.add(lower)
        if lower in watch:
            watched.append((lower, value))
    return fields, watched


def persists(http11: bool, watched: RawHeaders) -> bool:
    """
    Whether a connection stays open after this message (RFC 9112 §9.3):
    an HTTP/1.1 one unless C{Connection} says C{close}, an HTTP/1.0 one only
    when it says C{keep-alive}.

    @param watched: Lower-case field names and values, C{Connection}'s among
        them (L{read_field_lines}).
    """
    connection = [value.lower() for name, value in watched if name == b"connection"]
    if not connection:
        return http11
    options = {o.strip(b" \t") for o in b",".join(connection).split(b",")}
    return b"close" not in options and (http11 or b"keep-alive" in options)


# ChunkedDecoder states
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4


class ChunkedDecoder:
    """
    Decodes a chunked request body (RFC 9112 §7.1) as it arrives.

    Strict: a chunk-size is hexadecimal digits only (no sign, no C{0x}, no
    whitespace before it), every line ends with CRLF, chunk data is followed
    by CRLF, and trailer fields are read and dropped.
    """

    def __init__(self, *, max_line: int = 4096, max_trailer: int = 16384) -> None:
        self._state = _SIZE
        self._pending = b""
        self._left = 0
        self._max_line = max_line
        self._max_trailer = max_trailer
        self._trailer_size = 0

    @property
    def done(self) -> bool:
        """
        Whether the last chunk and the trailer section were read.
        """
        return self._state == _DONE

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """
        Decode what C{data} holds.

        @return: The body pieces decoded, and the bytes that follow the end
            of the body (the start of the next request), which are only
            returned once L{done}.
        @raise MessageError: The body's framing is malformed.
        """
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        pieces: list[bytes] = []
        while buffer:
            state = self._state
            if state == _DATA:
                left = self._left
                if len(buffer) <= left:
                    pieces.append(buffer)
                    self._left = left - len(buffer)
                    if self._left == 0:
                        self._state = _DATA_END
                    return pieces, b""
                pieces.append(buffer[:left])
                buffer = buffer[left:]
                self._left = 0
                self._state = _DATA_END
            elif state == _DATA_END:
                if len(buffer) < 2:
                    if buffer != b"\r":
                        raise MessageError("chunk data not followed by CRLF")
                    self._pending = buffer
                    return pieces, b""
                if buffer[:2] != b"\r\n":
                    raise MessageError("chunk data not followed by CRLF")
                buffer = buffer[2:]
                self._state = _SIZE
            elif state == _SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    self._wait_for_line(buffer, self._max_line, "chunk-size line too long")
                    return pieces, b""
                if end > self._max_line:
                    raise MessageError("chunk-size line too long")
                size_line = CHUNK_SIZE_LINE.fullmatch(buffer, 0, end)
                if size_line is None:
                    raise MessageError(f"malformed chunk-size line {buffer[: min(end, 40)]!r}")
                size = int(size_line.group(1), 16)
                buffer = buffer[end + 2 :]
                if size:
                    self._left = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            elif state == _TRAILER:
                end = buffer.find(b"\r\n")
                if end < 0:
                    self._wait_for_line(buffer, self._max_trailer, "trailer section too large")
                    return pieces, b""
                line, buffer = buffer[:end], buffer[end + 2 :]
                if not line:
                    self._state = _DONE
                    return pieces, buffer
                self._trailer_size += end + 2
                if self._trailer_size > self._max_trailer:
                    raise MessageError("trailer section too large")
                if FIELD_LINE.fullmatch(line) is None:
                    raise MessageError(why_bad_field(line))
            else:
                return pieces, buffer
        return pieces, b""

    def _wait_for_line(self, buffer: bytes, limit: int, too_long: str) -> None:
        # A last CR may start the CRLF: it is not counted as part of the
        # line, so the verdict is the same as when the line arrives whole.
        if len(buffer) - buffer.endswith(b"\r") > limit:
            raise MessageError(too_long)
        if b"\n" in buffer:
            raise MessageError("bare LF in the chunked body (lines end with CRLF)")
        self._pending = buffer
