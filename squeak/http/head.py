# -*- test-case-name: tests.test_http_request -*-
"""
What reading a request head and reading a response head share (RFC 9112
§2-§5): finding where a head ends, reading its field lines, deciding whether
the connection persists, and the error that carries the status to answer.

L{squeak.http.request} and L{squeak.http.response} are built on these, so
that both directions of the proxy refuse the same malformed bytes in the same
way, whichever way the network split them.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from squeak.http.fields import RawHeaders
from squeak.http.grammar import FIELD_BLOCK, FIELD_LINE, TOKEN_RE

__all__ = [
    "MessageError",
    "find_head_end",
    "persists",
    "read_field_lines",
    "read_valid_field_lines",
    "why_bad_field",
]


class MessageError(Exception):
    """
    A message that must be refused before it is processed; it carries the
    status to answer with, as h11's C{error_status_hint} does.

    @ivar status: 400, 501 (a method or coding not implemented) or 505 for a
        request; 502 for a response (L{squeak.http.response}).
    @ivar detail: One line for the error page and the log.
    """

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def find_head_end(
    buffer: bytes,
    limit: int,
    *,
    message: str = "request",
    error: Callable[[str], MessageError] = MessageError,
) -> int:
    """
    Where the head at the start of C{buffer} ends.

    The verdict depends on the bytes alone, never on how they were split
    into reads: a head of exactly C{limit} bytes is accepted however late
    its terminator arrives, and a bare-LF empty line is refused wherever
    the split falls.

    @param message: C{"request"} or C{"response"}, for the detail.
    @param error: Builds the exception raised, from its detail.
    @return: The index just past the empty line that ends the head, or -1
        when it has not all arrived yet.
    @raise MessageError: The head is longer than C{limit} bytes, or a head
        still incomplete already holds an empty line made with a bare LF
        (a peer typing LF-only lines is told at once instead of waiting
        for a terminator that will never come).
    """
    end = buffer.find(b"\r\n\r\n", 0, limit + 4)
    # An empty line made with a bare LF (LF LF, or LF CR LF) before the
    # first CRLFCRLF: searched up to where that terminator starts, or
    # without one, within the first limit + 4 bytes (all of which are here
    # before the head is refused as too large), so the verdict and its
    # detail are the same however the bytes were split into reads.
    stop = end + 3 if end >= 0 else limit + 3
    if buffer.find(b"\n\n", 0, stop + 1) >= 0 or buffer.find(b"\n\r\n", 0, stop) >= 0:
        raise error(f"bare CR or LF in the {message} head (lines end with CRLF)")
    if end >= 0:
        return end + 4
    if len(buffer) >= limit + 4:
        # Only now can no CRLFCRLF end within limit + 4 bytes: refusing any
        # earlier would refuse a head of exactly limit bytes whose
        # terminator arrives in a later segment.
        raise error(f"{message} head larger than {limit} bytes")
    return -1


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
    if not TOKEN_RE.fullmatch(name):
        return f"invalid header field name {name[:40]!r}"
    shown = name[:40].decode("latin-1")
    return f"header {shown} value contains NUL, CR, LF or a control character"


def read_field_lines(
    lines: Sequence[bytes],
    watch: frozenset[bytes],
    *,
    why_bad: Callable[[bytes], str] = why_bad_field,
    names: set[bytes] | None = None,
    error: Callable[[str], MessageError] = MessageError,
) -> tuple[RawHeaders, RawHeaders]:
    """
    Read the field lines of a request or response head (RFC 9112 §5).

    @param watch: Lower-case names of the fields the caller decides on.
    @param why_bad: Says why a line was refused (the wording of requests
        and responses differs).
    @param names: If given, every field's lower-cased name is added to it.
    @param error: Builds the exception raised, from its detail.
    @return: Every field as sent (value without surrounding whitespace,
        repeated fields kept in order), and the C{(lower-case name, value)}
        pairs of the fields named in C{watch}.
    @raise MessageError: A line is not a valid field line.
    """
    if lines and FIELD_BLOCK.fullmatch(b"\r\n".join(lines)) is None:
        # Some line is bad: find the first, to say why.
        for line in lines:
            if FIELD_LINE.fullmatch(line) is None:
                raise error(why_bad(line))
    return read_valid_field_lines(lines, watch, names)


def read_valid_field_lines(
    lines: Sequence[bytes], watch: frozenset[bytes], names: set[bytes] | None = None
) -> tuple[RawHeaders, RawHeaders]:
    """
    L{read_field_lines} for lines already known to be valid field lines: a
    caller that matched them as part of a larger pattern (the whole request
    head, L{squeak.http.grammar.REQUEST_HEAD}) need not match them again.
    """
    fields: RawHeaders = []
    watched: RawHeaders = []
    for line in lines:
        # Every line is a valid field line: the name is all before the
        # first colon, which a token cannot hold, and the value holds no
        # whitespace but SP and HTAB (FIELD_VALUE), so strip() with no
        # argument (cheaper to call) strips exactly the OWS around it.
        name, _, value = line.partition(b":")
        value = value.strip()
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
