# -*- test-case-name: tests.test_http_response -*-
"""
Tests for L{squeak.http.response}: the one response-head reader (RFC 9112
§4-§5) and the response framing decision (RFC 9112 §6.3).

Tables of heads that must be read exactly and heads that must be refused
with a 502 L{MalformedResponseError} naming the problem, the framing table,
and properties checking that the verdict and the parse never depend on how
the bytes were split by the network.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http.response import (
    Body,
    MalformedResponseError,
    ResponseHead,
    find_response_head_end,
    is_interim,
    parse_response_head,
    response_body,
)
from tests.splits import pieces_of

CRLF = b"\r\n"

# (why, head without its empty line, (version, status, reason, headers, keep_alive, length))
GOOD = [
    (
        "RFC 9112 §4: a status line with a reason",
        b"HTTP/1.1 200 OK",
        (b"HTTP/1.1", 200, b"OK", [], True, None),
    ),
    (
        "RFC 9112 §4: the reason may be empty",
        b"HTTP/1.1 204 ",
        (b"HTTP/1.1", 204, b"", [], True, None),
    ),
    (
        "leniency: no SP when the reason is absent",
        b"HTTP/1.1 304",
        (b"HTTP/1.1", 304, b"", [], True, None),
    ),
    (
        "RFC 9112 §4: the reason holds SP, HTAB and obs-text",
        b"HTTP/1.1 404 Not\tFound \xe9",
        (b"HTTP/1.1", 404, b"Not\tFound \xe9", [], True, None),
    ),
    (
        "RFC 9112 §9.3: HTTP/1.0 does not persist by default",
        b"HTTP/1.0 200 OK",
        (b"HTTP/1.0", 200, b"OK", [], False, None),
    ),
    (
        "RFC 9112 §9.3: HTTP/1.0 with keep-alive persists",
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive",
        (b"HTTP/1.0", 200, b"OK", [(b"Connection", b"Keep-Alive")], True, None),
    ),
    (
        "RFC 9112 §9.6: Connection: close ends an HTTP/1.1 connection",
        b"HTTP/1.1 200 OK\r\nconnection: Close",
        (b"HTTP/1.1", 200, b"OK", [(b"connection", b"Close")], False, None),
    ),
    (
        "RFC 9112 §9.6: Connection: close beside the framing still ends the connection",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close",
        (
            b"HTTP/1.1",
            200,
            b"OK",
            [(b"Content-Length", b"3"), (b"Connection", b"close")],
            False,
            3,
        ),
    ),
    (
        "RFC 9112 §9.3: HTTP/1.0 with only framing fields does not persist",
        b"HTTP/1.0 200 OK\r\nContent-Length: 3",
        (b"HTTP/1.0", 200, b"OK", [(b"Content-Length", b"3")], False, 3),
    ),
    (
        "RFC 9112 §5: OWS around the value is not part of it; repeats kept in order",
        b"HTTP/1.1 200 OK\r\nSet-Cookie:  a=1 \r\nSet-Cookie:\tb=2\r\nContent-Length: 12",
        (
            b"HTTP/1.1",
            200,
            b"OK",
            [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Content-Length", b"12")],
            True,
            12,
        ),
    ),
    (
        "RFC 9110 §5.5: an empty field value",
        b"HTTP/1.1 200 OK\r\nX-Empty:",
        (b"HTTP/1.1", 200, b"OK", [(b"X-Empty", b"")], True, None),
    ),
    (
        "a Content-Length over 18 digits is not a usable length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789",
        (b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"1234567890123456789")], True, None),
    ),
]

BAD = [  # (why, head, detail must contain)
    ("RFC 9112 §4: no status code", b"HTTP/1.1 OK", "bad status line"),
    ("RFC 9112 §2.3: only HTTP/1.x is read", b"HTTP/2.0 200 OK", "bad status line"),
    ("RFC 9112 §2.3: HTTP/9.9", b"HTTP/9.9 000 Nonsense", "bad status line"),
    ("RFC 9110 §15: no status code starts with 0", b"HTTP/1.1 099 Low", "bad status line"),
    ("RFC 9112 §4: three digits", b"HTTP/1.1 20 OK", "bad status line"),
    ("RFC 9112 §4: four digits", b"HTTP/1.1 2000 OK", "bad status line"),
    ("RFC 9112 §2.3: HTTP-name is case-sensitive", b"http/1.1 200 OK", "bad status line"),
    ("not HTTP at all", b"ICY 200 OK", "bad status line"),
    ("a control character in the reason", b"HTTP/1.1 200 O\x00K", "bad status line"),
    (
        "RFC 9112 §5.2: obs-fold",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded",
        "obsolete line folding",
    ),
    ("RFC 9112 §5: no colon", b"HTTP/1.1 200 OK\r\nNo colon", "without a colon"),
    (
        "RFC 9112 §5.1: whitespace before the colon",
        b"HTTP/1.1 200 OK\r\nX-A : 1",
        "invalid response field name",
    ),
    (
        "RFC 9110 §5.1: a field name is a token",
        b"HTTP/1.1 200 OK\r\nBad Name: 1",
        "invalid response field name",
    ),
    (
        "RFC 9110 §5.5: NUL in a value",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b",
        "invalid characters in response field",
    ),
    (
        "RFC 9110 §5.5: a bare CR in a value",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb",
        "invalid characters in response field",
    ),
    (
        "RFC 9112 §2.2: an empty line made with a bare LF",
        b"HTTP/1.1 200 OK\r\nX-A: 1\n\nX-B: 2",
        "bare CR or LF in the response head",
    ),
]

FRAMING = [  # (why, method, head, expected (Body, length) or refusal detail)
    (
        "RFC 9112 §6.3 item 1: HEAD",
        b"HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5",
        (Body.NONE, 0),
    ),
    ("RFC 9112 §6.3 item 1: 204", b"GET", b"HTTP/1.1 204 No Content", (Body.NONE, 0)),
    ("RFC 9112 §6.3 item 1: 304", b"GET", b"HTTP/1.1 304 Not Modified", (Body.NONE, 0)),
    ("RFC 9112 §6.3 item 1: 1xx, 101 too", b"GET", b"HTTP/1.1 101 Switching", (Body.NONE, 0)),
    (
        "item 1 ignores even ambiguous framing fields",
        b"GET",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nContent-Length: 2",
        (Body.NONE, 0),
    ),
    (
        "RFC 9112 §6.3 item 4: chunked",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        (Body.CHUNKED, None),
    ),
    (
        "RFC 9112 §6.3 item 6: Content-Length",
        b"POST",
        b"HTTP/1.1 200 OK\r\nContent-Length: 42",
        (Body.LENGTH, 42),
    ),
    (
        "Content-Length: 0 is no content",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0",
        (Body.NONE, 0),
    ),
    ("RFC 9112 §6.3 item 8: until close", b"GET", b"HTTP/1.1 200 OK", (Body.CLOSE, None)),
    (
        "RFC 9112 §6.3 item 3: Transfer-Encoding with Content-Length",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
        "both Transfer-Encoding and Content-Length",
    ),
    (
        "RFC 9112 §6.3 item 5: two Content-Length fields, even equal",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5",
        "2 Content-Length fields",
    ),
    (
        "RFC 9110 §8.6: Content-Length is 1*DIGIT",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5",
        "is not 1*DIGIT",
    ),
    (
        "RFC 9112 §6.3 item 4: a final coding other than chunked",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
        "does not end with chunked",
    ),
]


class ParseResponseHeadTests(SynchronousTestCase):
    """
    Tests for L{parse_response_head}.
    """

    def test_good_heads(self) -> None:
        """
        Each good head is read exactly as its row says.
        """
        wrong = []
        for why, head, want in GOOD:
            parsed = parse_response_head(head)
            got = (
                parsed.version,
                parsed.status,
                parsed.reason,
                parsed.headers,
                parsed.keep_alive,
                parsed.content_length,
            )
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_bad_heads(self) -> None:
        """
        Each bad head is refused with a 502 L{MalformedResponseError} whose
        detail says why.
        """
        wrong = []
        for why, head, needle in BAD:
            try:
                parse_response_head(head)
            except MalformedResponseError as error:
                if needle not in error.detail or error.status != 502:
                    wrong.append((why, error.detail, error.status))
            else:
                wrong.append((why, "accepted", 0))
        self.assertEqual(wrong, [])

    def test_field_count_limit(self) -> None:
        """
        More than C{max_fields} field lines are refused; exactly that many
        are read.
        """
        head = b"HTTP/1.1 200 OK" + b"\r\nX-A: 1" * 3
        self.assertEqual(len(parse_response_head(head, max_fields=3).headers), 3)
        with self.assertRaises(MalformedResponseError) as caught:
            parse_response_head(head, max_fields=2)
        self.assertIn("more than 2 response fields", caught.exception.detail)

    def test_head_is_a_value(self) -> None:
        """
        A L{ResponseHead} is immutable and compares by value.
        """
        head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1")
        self.assertEqual(head, parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1"))
        with self.assertRaises(AttributeError):
            head.status = 500  # type: ignore[misc]
        self.assertIsInstance(head, ResponseHead)

    def test_interim(self) -> None:
        """
        RFC 9110 §15.2: 1xx responses other than 101 are interim.
        """
        self.assertEqual(
            [code for code in (100, 101, 102, 103, 199, 200, 204) if is_interim(code)],
            [100, 102, 103, 199],
        )


class ResponseBodyTests(SynchronousTestCase):
    """
    Tests for L{response_body}, the framing decision (RFC 9112 §6.3).
    """

    def test_framing_table(self) -> None:
        """
        Each row's method and head give the row's reader, or are refused
        with the row's detail.
        """
        wrong = []
        for why, method, head, want in FRAMING:
            parsed = parse_response_head(head)
            try:
                got: object = response_body(method, parsed)
            except MalformedResponseError as error:
                got = error.detail
                if isinstance(want, str) and want in got and error.status == 502:
                    continue
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])


def read(data: bytes, sizes: Iterable[int], limit: int, max_fields: int) -> object:
    """
    Read a response head from C{data} arriving in pieces of C{sizes}, as the
    origin connection does: look for its end after each piece, parse it
    once it is all here, then decide its framing for a GET.

    @return: The parse, its framing and the bytes after the head; or
        C{"waiting"}; or C{(status, detail)} of the refusal.
    """
    buffer = b""
    try:
        for piece in pieces_of(data, sizes):
            buffer += piece
            end = find_response_head_end(buffer, limit)
            if end >= 0:
                head = parse_response_head(buffer[: end - 4], max_fields=max_fields)
                return head, response_body(b"GET", head), data[end:]
    except MalformedResponseError as error:
        return error.status, error.detail
    return "waiting"


STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 404 Not Found",
    b"HTTP/1.1 304",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/9.9 000 Nonsense",
    b"HTTP/1.1 20 OK",
]
FIELD_LINES = [
    b"Content-Length: 5",
    b"Content-Length: 7",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"X-A:  1 ",
    b"X-Empty:",
    b" folded",
    b"Bad Name: 1",
    b"X-Nul: a\x00b",
    b"No colon",
]
SEPARATORS = [CRLF, CRLF, CRLF, b"\n", b"\r", b"\n\n", b"\n\r\n"]


@st.composite
def response_messages(draw: st.DrawFn) -> bytes:
    """
    A response head made of valid and invalid status and field lines, joined
    mostly by CRLF and sometimes by bare CR or LF, ended by an empty line (or
    not), and followed by a few body bytes.
    """
    parts = [draw(st.sampled_from(STATUS_LINES))]
    for _ in range(draw(st.integers(0, 4))):
        parts.append(draw(st.sampled_from(SEPARATORS)))
        parts.append(draw(st.sampled_from(FIELD_LINES)))
    end = draw(st.sampled_from([CRLF + CRLF, CRLF + CRLF, CRLF, b"\n\n", b""]))
    return b"".join(parts) + end + draw(st.sampled_from([b"", b"hello", b"\r\n\r\nX"]))


class SplitPropertyTests(SynchronousTestCase):
    """
    Property tests: a response head's verdict and parse depend on its bytes
    alone, never on how the network split them.
    """

    @given(response_messages(), st.integers(0, 200), st.integers(0, 4))
    @settings(max_examples=1000)
    def test_every_split_point(self, data: bytes, limit: int, max_fields: int) -> None:
        """
        Split in two at every byte boundary, a message gives exactly what it
        gives whole: the same parse and framing and the same bytes after
        the head, or the same refusal (status and detail).
        """
        whole = read(data, [], limit, max_fields)
        for at in range(1, len(data)):
            self.assertEqual(read(data, [at], limit, max_fields), whole, at)

    @given(
        st.one_of(response_messages(), st.binary(max_size=80)),
        st.lists(st.integers(1, 12), max_size=30),
        st.integers(0, 200),
    )
    @settings(max_examples=1000)
    def test_random_pieces(self, data: bytes, sizes: list[int], limit: int) -> None:
        """
        Fed in random pieces, a message (or random bytes) gives exactly what
        it gives whole.
        """
        self.assertEqual(read(data, sizes, limit, 3), read(data, [], limit, 3))
