# -*- test-case-name: tests.test_http_request -*-
"""
Tests for L{squeak.http.request}: the strict request-head parser that replaces
Twisted's C{HTTPChannel} parsing (RFC 9112); the chunked decoder it shares
with the response side is tested in tests/test_http_chunked.py.

The rule under test is I{reject, never repair}: tables of valid heads and
bodies that must be read exactly, tables of malformed ones that must be
refused with a L{MessageError} naming the problem, and properties checking
that the verdict never depends on how the bytes were split by the network.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http.request import (
    FIELD_LINE,
    MessageError,
    RequestHead,
    find_head_end,
    parse_request_head,
    read_field_lines,
    read_request_head,
    why_bad_field,
)
from tests.splits import pieces_of

CRLF = b"\r\n"


def head(*lines: bytes) -> bytes:
    """
    A request head as L{parse_request_head} takes it: lines joined by CRLF,
    without the empty line that ends the head.
    """
    return CRLF.join(lines)


def parse(*lines: bytes, max_fields: int = 100) -> RequestHead:
    """
    Parse the head made of C{lines}.
    """
    return parse_request_head(head(*lines), max_fields=max_fields)


# --- request heads ----------------------------------------------------------

METHODS = [  # (why, method)
    ("RFC 9110 §9.3.1", b"GET"),
    ("RFC 9110 §9.3.2", b"HEAD"),
    ("RFC 9110 §9.3.3", b"POST"),
    ("RFC 9110 §9.3.4", b"PUT"),
    ("RFC 9110 §9.3.5", b"DELETE"),
    ("RFC 9110 §9.3.6", b"CONNECT"),
    ("RFC 9110 §9.3.7", b"OPTIONS"),
    ("RFC 9110 §9.3.8", b"TRACE"),
    ("RFC 5789: an extension method", b"PATCH"),
    ("RFC 4918: a WebDAV extension method", b"PROPFIND"),
    ("RFC 9110 §9.1: a method is any token", b"M-SEARCH"),
    ("RFC 9110 §5.6.2: every tchar", b"!#$%&'*+-.^_`|~09azAZ"),
    ("RFC 9110 §9.1: an unregistered method in any case is kept as sent", b"m-search"),
    ("RFC 9110 §9.1: an unregistered method in any case is kept as sent", b"Foo"),
]

TARGETS = [  # (why, target)
    ("RFC 9112 §3.2.1: origin-form", b"/"),
    ("RFC 9112 §3.2.1: origin-form with a query", b"/a/b?x=1&y=2"),
    ("RFC 3986 §2.1: percent-encoding kept, not decoded", b"/a%20b/%2F%2e%2E?q=%00%ff"),
    ("RFC 9112 §3.2.2: absolute-form", b"http://example.com/"),
    (
        "RFC 9112 §3.2.2: absolute-form with port, query and odd case",
        b"HTTP://Example.COM:8080/p;a=b/%7Euser?q=a+b&r=%26#",
    ),
    ("RFC 9112 §3.2.3: authority-form", b"example.com:443"),
    ("RFC 9112 §3.2.3: authority-form, IPv6", b"[::1]:443"),
    ("RFC 9112 §3.2.4: asterisk-form", b"*"),
    ("RFC 3986 §3.3: dot segments are not removed", b"/a/./b/../c//d"),
    ("RFC 9112 §3.2: form is judged later, by squeak.http.target", b"no-slash'\"<>{}"),
]

KEEP_ALIVE = [  # (why, version, Connection values, expected)
    ("RFC 9112 §9.3: HTTP/1.1 persists by default", b"1.1", [], True),
    ("RFC 9112 §9.3: HTTP/1.0 closes by default", b"1.0", [], False),
    ("RFC 9112 §9.6: close", b"1.1", [b"close"], False),
    ("RFC 9110 §7.6.1: option names are case-insensitive", b"1.1", [b"Close"], False),
    ("RFC 9110 §7.6.1: upper case", b"1.1", [b"CLOSE"], False),
    ("RFC 9110 §5.6.1: close in a list", b"1.1", [b"Upgrade, close"], False),
    ("RFC 9110 §5.6.1: list with OWS and empty elements", b"1.1", [b" ,\tclose , "], False),
    ("RFC 9110 §5.6.1: close in a second Connection field", b"1.1", [b"foo", b"close"], False),
    ("RFC 9112 §9.3: close wins over keep-alive", b"1.1", [b"keep-alive, close"], False),
    ("RFC 9112 §9.3: other options leave HTTP/1.1 persistent", b"1.1", [b"upgrade"], True),
    ("RFC 9112 §9.3: a near miss is not close", b"1.1", [b"closed"], True),
    ("RFC 9112 §C.2.2: HTTP/1.0 keep-alive", b"1.0", [b"keep-alive"], True),
    ("RFC 9112 §C.2.2: keep-alive is case-insensitive", b"1.0", [b"Keep-Alive"], True),
    ("RFC 9112 §C.2.2: keep-alive in a list", b"1.0", [b"foo,keep-alive"], True),
    ("RFC 9112 §C.2.2: keep-alive and close", b"1.0", [b"keep-alive", b"close"], False),
    ("RFC 9112 §C.2.2: a near miss is not keep-alive", b"1.0", [b"keep-alive-x"], False),
    ("RFC 9112 §C.2.2: keep-alive is redundant in HTTP/1.1", b"1.1", [b"keep-alive"], True),
]

EXPECT = [  # (why, version, Expect values, expected)
    ("RFC 9110 §10.1.1: 100-continue", b"1.1", [b"100-continue"], True),
    ("RFC 9110 §10.1.1: case-insensitive", b"1.1", [b"100-Continue"], True),
    ("RFC 9110 §5.5: OWS is not part of the value", b"1.1", [b" 100-continue\t"], True),
    ("RFC 9110 §10.1.1: no Expect", b"1.1", [], False),
    ("RFC 9110 §10.1.1: another expectation", b"1.1", [b"200-ok"], False),
    (
        "RFC 9110 §10.1.1: an HTTP/1.0 client never waits for 100 Continue",
        b"1.0",
        [b"100-continue"],
        False,
    ),
]

BAD_HEADS = [  # (why, head, status, detail fragment)
    (
        "RFC 9110 §9.1: delete is not DELETE, but an origin may upper-case it past a rule",
        head(b"delete / HTTP/1.1", b"Host: a"),
        400,
        "method delete is DELETE in another case",
    ),
    (
        "RFC 9110 §9.1: a registered method in mixed case",
        head(b"Get http://a/ HTTP/1.0"),
        400,
        "method Get is GET in another case",
    ),
    (
        "RFC 9110 §9.1: a registered WebDAV method in lower case",
        head(b"propfind / HTTP/1.1", b"Host: a"),
        400,
        "PROPFIND in another case",
    ),
    (
        "RFC 9112 §2.2: bare LF ending the request line",
        b"GET / HTTP/1.1\nHost: a",
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §2.2: bare LF ending a field line",
        head(b"GET / HTTP/1.1", b"Host: a\nX: b"),
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §2.2: bare LF inside a field value",
        head(b"GET / HTTP/1.1", b"X: a\nb"),
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §2.2: bare CR in the request line",
        b"GET /\r HTTP/1.1",
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §2.2: bare CR before CRLF",
        head(b"GET / HTTP/1.1\r", b"Host: a"),
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §2.2: bare CR inside a field value",
        head(b"GET / HTTP/1.1", b"X: a\rb"),
        400,
        "bare CR or LF",
    ),
    (
        "RFC 9112 §5.2: obs-fold with a space",
        head(b"GET / HTTP/1.1", b"X: a", b" b"),
        400,
        "obsolete line folding",
    ),
    (
        "RFC 9112 §5.2: obs-fold with a tab",
        head(b"GET / HTTP/1.1", b"X: a", b"\tb"),
        400,
        "obsolete line folding",
    ),
    (
        "RFC 9112 §5.2: a folded first field line",
        head(b"GET / HTTP/1.1", b" Host: a"),
        400,
        "obsolete line folding",
    ),
    (
        "RFC 9112 §5.1: space before the colon",
        head(b"GET / HTTP/1.1", b"Host : a"),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9112 §5.1: tab before the colon",
        head(b"GET / HTTP/1.1", b"Content-Length\t: 5"),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9110 §5.1: empty field name",
        head(b"GET / HTTP/1.1", b": a"),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9110 §5.1: a field name is a token",
        head(b"GET / HTTP/1.1", b"X(y): a"),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9110 §5.1: no NUL in a field name",
        head(b"GET / HTTP/1.1", b"Ho\x00st: a"),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9110 §5.1: no non-ASCII in a field name",
        head(b"GET / HTTP/1.1", "X-\u00e9: a".encode()),
        400,
        "invalid header field name",
    ),
    (
        "RFC 9112 §5: a field line needs a colon",
        head(b"GET / HTTP/1.1", b"Host a"),
        400,
        "without a colon",
    ),
    (
        "RFC 9112 §5: an empty field line inside the head",
        head(b"GET / HTTP/1.1", b"", b"Host: a"),
        400,
        "without a colon",
    ),
    (
        "RFC 9110 §5.5: NUL in a value",
        head(b"GET / HTTP/1.1", b"X: a\x00b"),
        400,
        "control character",
    ),
    (
        "RFC 9110 §5.5: a C0 control in a value",
        head(b"GET / HTTP/1.1", b"X: \x1b[31m"),
        400,
        "control character",
    ),
    (
        "RFC 9110 §5.5: DEL in a value",
        head(b"GET / HTTP/1.1", b"X: a\x7f"),
        400,
        "control character",
    ),
    (
        "RFC 9110 §9.1: a method is a token",
        b"GE(T / HTTP/1.1",
        400,
        "invalid method",
    ),
    (
        "RFC 9110 §9.1: no NUL in a method",
        b"GET\x00 / HTTP/1.1",
        400,
        "invalid method",
    ),
    (
        "RFC 9110 §9.1: no non-ASCII in a method",
        "G\u00c9T / HTTP/1.1".encode(),
        400,
        "invalid method",
    ),
    ("RFC 9110 §9.1: an empty method", b" / HTTP/1.1", 400, "invalid method"),
    ("RFC 9112 §3: missing version (HTTP/0.9 style)", b"GET /", 400, "malformed request line"),
    ("RFC 9112 §3: empty version", b"GET / ", 400, "invalid HTTP version"),
    ("RFC 9112 §3: only a method", b"GET", 400, "malformed request line"),
    ("RFC 9112 §3: empty request line", b"", 400, "malformed request line"),
    ("RFC 9112 §2.3: HTTP-name is case-sensitive", b"GET / http/1.1", 400, "invalid HTTP version"),
    ("RFC 9112 §2.3: one digit each side", b"GET / HTTP/1.10", 400, "invalid HTTP version"),
    ("RFC 9112 §2.3: the dot is required", b"GET / HTTP/11", 400, "invalid HTTP version"),
    ("RFC 9112 §2.3: no version of only a major", b"GET / HTTP/2", 400, "invalid HTTP version"),
    ("RFC 9112 §2.3: not HTTP at all", b"GET / FTP/1.1", 400, "invalid HTTP version"),
    ("RFC 9110 §15.6.6: HTTP/2.0 is refused with 505", b"GET / HTTP/2.0", 505, "HTTP/2.0"),
    ("RFC 9110 §15.6.6: HTTP/0.9 is refused with 505", b"GET / HTTP/0.9", 505, "HTTP/0.9"),
    ("RFC 9110 §15.6.6: HTTP/3.1 is refused with 505", b"GET / HTTP/3.1", 505, "HTTP/3.1"),
    ("RFC 9112 §3: two spaces after the method", b"GET  / HTTP/1.1", 400, "malformed"),
    ("RFC 9112 §3: two spaces before the version", b"GET /  HTTP/1.1", 400, "malformed"),
    ("RFC 9112 §3: a trailing space", b"GET / HTTP/1.1 ", 400, "malformed"),
    ("RFC 9112 §3: a leading space", b" GET / HTTP/1.1", 400, "malformed"),
    ("RFC 9112 §3: tabs are not SP", b"GET\t/\tHTTP/1.1", 400, "malformed"),
    ("RFC 9112 §3.2: a space inside the target", b"GET /a b HTTP/1.1", 400, "malformed"),
    (
        "RFC 9112 §3.2: a control character inside the target",
        b"GET /a\x01b HTTP/1.1",
        400,
        "request target",
    ),
    (
        "RFC 9112 §3.2: two Host fields",
        head(b"GET / HTTP/1.1", b"Host: a", b"Host: a"),
        400,
        "2 Host fields",
    ),
    (
        "RFC 9112 §3.2: two Host fields, names in different case",
        head(b"GET http://b/ HTTP/1.1", b"Host: a", b"X: y", b"host: b"),
        400,
        "2 Host fields",
    ),
    (
        "RFC 9112 §6.1: Content-Length and Transfer-Encoding",
        head(b"POST / HTTP/1.1", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        400,
        "both Transfer-Encoding and Content-Length",
    ),
    (
        "RFC 9112 §6.1: Transfer-Encoding first, then Content-Length",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked", b"content-length: 0"),
        400,
        "both Transfer-Encoding and Content-Length",
    ),
    (
        "RFC 9112 §6.3: two Content-Length fields, even equal ones",
        head(b"POST / HTTP/1.1", b"Content-Length: 5", b"Content-Length: 5"),
        400,
        "2 Content-Length fields",
    ),
    (
        "RFC 9112 §6.3: two Content-Length fields, different values",
        head(b"POST / HTTP/1.1", b"Content-Length: 5", b"CONTENT-LENGTH: 50"),
        400,
        "2 Content-Length fields",
    ),
    (
        "RFC 9112 §6.3: a Content-Length list of equal values",
        head(b"POST / HTTP/1.1", b"Content-Length: 5, 5"),
        400,
        "is a list",
    ),
    (
        "RFC 9112 §6.3: a Content-Length list of different values",
        head(b"POST / HTTP/1.1", b"Content-Length: 5,6"),
        400,
        "is a list",
    ),
    (
        "RFC 9110 §8.6, CVE-2022-24801: a plus sign",
        head(b"POST / HTTP/1.1", b"Content-Length: +5"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6, CVE-2022-24801: a minus sign",
        head(b"POST / HTTP/1.1", b"Content-Length: -1"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6: hexadecimal",
        head(b"POST / HTTP/1.1", b"Content-Length: 0x10"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6: empty",
        head(b"POST / HTTP/1.1", b"Content-Length:"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6: whitespace only",
        head(b"POST / HTTP/1.1", b"Content-Length:  \t "),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6: underscores (which Python's int() accepts)",
        head(b"POST / HTTP/1.1", b"Content-Length: 1_0"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9110 §8.6: two numbers",
        head(b"POST / HTTP/1.1", b"Content-Length: 5 5"),
        400,
        "not 1*DIGIT",
    ),
    (
        "RFC 9112 §6.3: a final coding other than chunked",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: gzip"),
        400,
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.3: identity is not a transfer coding any more",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: identity"),
        400,
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.3: chunked, then another coding",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked, gzip"),
        400,
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.1: chunked twice",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked, chunked"),
        400,
        "chunked twice",
    ),
    (
        "RFC 9112 §6.1: chunked twice, in two fields",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        400,
        "chunked twice",
    ),
    (
        "RFC 9112 §7: a coding this proxy does not decode",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: gzip, chunked"),
        400,
        "other than chunked",
    ),
    (
        "RFC 9112 §6.1: empty Transfer-Encoding",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding:"),
        400,
        "empty",
    ),
    (
        "RFC 9112 §6.1: an obfuscated chunked",
        head(b"POST / HTTP/1.1", b"Transfer-Encoding: xchunked"),
        400,
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing",
        head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"),
        400,
        "HTTP/1.0",
    ),
    (
        "RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding, even if kept alive",
        head(b"POST / HTTP/1.0", b"Connection: keep-alive", b"transfer-encoding: Chunked"),
        400,
        "HTTP/1.0",
    ),
]


class RequestHeadTests(SynchronousTestCase):
    """
    Tests for L{parse_request_head} on heads it must accept.
    """

    def test_methods(self) -> None:
        """
        Standard and extension methods are accepted and kept as sent (RFC
        9110 §9.1: the method token is case-sensitive).
        """
        wrong: list[object] = []
        for why, method in METHODS:
            got = parse(method + b" / HTTP/1.1", b"Host: a").method
            if got != method:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_targets(self) -> None:
        """
        Every request-target form is kept byte for byte (RFC 9112 §3.2):
        no decoding, normalisation or case folding happens here.
        """
        wrong: list[object] = []
        for why, target in TARGETS:
            got = parse(b"GET " + target + b" HTTP/1.1", b"Host: a").target
            if got != target:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_obs_text_in_target(self) -> None:
        """
        Bytes above 0x7F in the target are passed on unchanged; whether the
        target is acceptable is decided later, by L{squeak.http.target}.
        """
        target = "/caf\u00e9".encode()
        self.assertEqual(parse(b"GET " + target + b" HTTP/1.1", b"Host: a").target, target)

    def test_versions(self) -> None:
        """
        HTTP/1.0 and HTTP/1.1 are reported as sent, and a later HTTP/1.x
        minor version is accepted (RFC 9110 §2.5: a recipient handles a
        higher minor version as the highest it knows).
        """
        self.assertEqual(parse(b"GET / HTTP/1.1", b"Host: a").version, b"HTTP/1.1")
        self.assertEqual(parse(b"GET / HTTP/1.0").version, b"HTTP/1.0")
        later = parse(b"GET / HTTP/1.9", b"Host: a")
        self.assertEqual((later.version, later.keep_alive), (b"HTTP/1.9", True))

    def test_no_fields(self) -> None:
        """
        An HTTP/1.0 head of only a request line has no fields and no body
        (RFC 9112 §6.3 item 7: a request without framing fields has a
        zero-length body).
        """
        got = parse(b"GET http://a/ HTTP/1.0")
        self.assertEqual(
            got,
            RequestHead(
                method=b"GET",
                target=b"http://a/",
                version=b"HTTP/1.0",
                fields=[],
                content_length=0,
                keep_alive=False,
                expects_continue=False,
            ),
        )

    def test_host_is_required_in_http11(self) -> None:
        """
        An HTTP/1.1 request without Host is refused with a 400 (RFC 9112
        §3.2: a server MUST), in absolute form too, whatever its other
        fields; an HTTP/1.0 one is accepted without it.
        """
        for lines in (
            [b"GET http://a/ HTTP/1.1"],
            [b"GET http://a/ HTTP/1.1", b"User-Agent: x"],
            [b"POST http://a/ HTTP/1.1", b"Content-Length: 1"],
            [b"CONNECT a:443 HTTP/1.1"],
            [b"GET / HTTP/1.9", b"Accept: */*"],
        ):
            error = self.assertRaises(MessageError, parse, *lines)
            self.assertEqual(
                (error.status, error.detail),
                (400, "HTTP/1.1 request without a Host field (RFC 9112 §3.2)"),
                lines,
            )
        self.assertEqual(parse(b"GET http://a/ HTTP/1.0", b"Accept: */*").target, b"http://a/")
        self.assertEqual(parse(b"GET http://a/ HTTP/1.1", b"Host:").fields, [(b"Host", b"")])

    def test_fields_kept_in_order(self) -> None:
        """
        Every field line is kept, in order, with its name as sent; repeated
        fields (two Cookie lines, RFC 6265 §5.4 and RFC 9110 §5.3) are kept
        separately, not combined.
        """
        got = parse(
            b"GET / HTTP/1.1",
            b"Host: example.com",
            b"Cookie: a=1",
            b"accept: */*",
            b"Cookie: b=2",
            b"X-Empty:",
            b"cookie: c=3",
        )
        self.assertEqual(
            got.fields,
            [
                (b"Host", b"example.com"),
                (b"Cookie", b"a=1"),
                (b"accept", b"*/*"),
                (b"Cookie", b"b=2"),
                (b"X-Empty", b""),
                (b"cookie", b"c=3"),
            ],
        )

    def test_ows_stripped(self) -> None:
        """
        Leading and trailing OWS (spaces and tabs) are not part of a field
        value (RFC 9112 §5.1, RFC 9110 §5.5); whitespace inside it is kept,
        and so are obs-text bytes.
        """
        got = parse(
            b"GET / HTTP/1.0",
            b"A:value",
            b"B:   spaced   ",
            b"C:\t\ttabbed\t",
            b"D: \t inner  \t space \t ",
            b"E:  \t ",
            "F: caf\u00e9".encode(),
        )
        self.assertEqual(
            got.fields,
            [
                (b"A", b"value"),
                (b"B", b"spaced"),
                (b"C", b"tabbed"),
                (b"D", b"inner  \t space"),
                (b"E", b""),
                (b"F", "caf\u00e9".encode()),
            ],
        )

    def test_content_length(self) -> None:
        """
        C{Content-Length} gives the body length (RFC 9110 §8.6), with OWS
        and leading zeros allowed; without framing fields it is 0.
        """
        cases = [  # (why, fields, expected)
            ("RFC 9112 §6.3 item 7: no framing fields", [], 0),
            ("RFC 9110 §8.6", [b"Content-Length: 5"], 5),
            ("RFC 9110 §8.6: zero", [b"content-length: 0"], 0),
            ("RFC 9110 §8.6: leading zeros are 1*DIGIT", [b"Content-Length: 007"], 7),
            ("RFC 9110 §5.5: OWS around the value", [b"Content-Length: \t 12 \t"], 12),
            (
                "RFC 9110 §8.6: larger than 32 bits",
                [b"Content-Length: 98765432109876543210"],
                98765432109876543210,
            ),
            ("RFC 9112 §6.1: chunked", [b"Transfer-Encoding: chunked"], None),
            (
                "RFC 9112 §7: coding names are case-insensitive",
                [b"transfer-encoding: CHUNKED"],
                None,
            ),
            ("RFC 9110 §5.6.1: empty list elements", [b"Transfer-Encoding: , chunked ,"], None),
        ]
        wrong: list[object] = []
        for why, fields, want in cases:
            got = parse(b"POST / HTTP/1.1", b"Host: a", *fields).content_length
            if got != want:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_keep_alive(self) -> None:
        """
        Persistence follows the version and every C{Connection} field (RFC
        9112 §9.3, §9.6 and §C.2.2), options compared case-insensitively.
        """
        wrong: list[object] = []
        for why, version, values, want in KEEP_ALIVE:
            lines = [b"Connection: " + value for value in values]
            got = parse(b"GET / HTTP/" + version, b"Host: a", *lines).keep_alive
            if got != want:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_expects_continue(self) -> None:
        """
        Only an HTTP/1.1 request with C{Expect: 100-continue} waits for
        C{100 Continue} (RFC 9110 §10.1.1: a server MUST ignore that
        expectation in an HTTP/1.0 request).
        """
        wrong: list[object] = []
        for why, version, values, want in EXPECT:
            lines = [b"Expect: " + value for value in values]
            got = parse(
                b"PUT / HTTP/" + version, b"Host: a", b"Content-Length: 1", *lines
            ).expects_continue
            if got != want:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_framing_impersonators_dropped(self) -> None:
        """
        Fields whose names are a framing or connection-specific field's
        with C{_} for C{-} (C{Content_Length}, C{Transfer_Encoding}), which
        a CGI-style gateway reads as the real field, are dropped from the
        fields and their names, and reported in C{dropped}; other
        underscore names stay.
        """
        got = parse(
            b"POST / HTTP/1.1",
            b"Host: a",
            b"Content_Length: 5",
            b"X_Forwarded_For: 1.2.3.4",
            b"transfer_encoding: chunked",
            b"Content-Length: 0",
        )
        self.assertEqual(
            got.fields,
            [(b"Host", b"a"), (b"X_Forwarded_For", b"1.2.3.4"), (b"Content-Length", b"0")],
        )
        self.assertEqual(got.names, {b"host", b"x_forwarded_for", b"content-length"})
        self.assertEqual(got.dropped, (b"Content_Length", b"transfer_encoding"))
        self.assertEqual(got.content_length, 0)
        plain = parse(b"GET / HTTP/1.1", b"Host: a", b"Keep_Alive: 1")
        self.assertEqual((plain.fields, plain.dropped), ([(b"Host", b"a")], (b"Keep_Alive",)))
        self.assertEqual(parse(b"GET / HTTP/1.1", b"Host: a").dropped, ())

    def test_max_fields(self) -> None:
        """
        Exactly C{max_fields} field lines are accepted; one more is refused
        with a 400 (RFC 9110 §5.4: a server refuses a set of fields larger
        than it wishes to process with a 4xx).
        """
        lines = [b"Host: a"] + [b"X-%d: %d" % (i, i) for i in range(9)]
        self.assertEqual(len(parse(b"GET / HTTP/1.1", *lines, max_fields=10).fields), 10)
        error = self.assertRaises(MessageError, parse, b"GET / HTTP/1.1", *lines, max_fields=9)
        self.assertEqual(error.status, 400)
        self.assertIn("more than 9 header fields", error.detail)
        self.assertEqual(len(parse(b"GET / HTTP/1.0", max_fields=0).fields), 0)


class RequestHeadRejectionTests(SynchronousTestCase):
    """
    Tests for L{parse_request_head} on heads it must refuse.
    """

    def test_table(self) -> None:
        """
        Each bad head raises L{MessageError} with the row's status and a
        detail naming the problem.
        """
        wrong: list[object] = []
        for why, data, status, fragment in BAD_HEADS:
            try:
                parse_request_head(data, max_fields=100)
            except MessageError as error:
                if error.status != status or fragment not in error.detail:
                    wrong.append((why, error.status, error.detail))
            else:
                wrong.append((why, "accepted"))
        self.assertEqual(wrong, [])

    def test_details_are_short_and_printable(self) -> None:
        """
        Every detail is one printable line of bounded length, even for
        hostile bytes, since it goes on the error page and in the log; the
        exception's message is the detail.
        """
        hostile = [data for _why, data, _status, _fragment in BAD_HEADS]
        hostile += [
            b"\x00\r\n" * 500,
            b"\xff" * 5000 + b" / HTTP/1.1",
            b"GET / HTTP/1.1\r\n" + b"\x01" * 5000 + b": x",
            b"GET / HTTP/1.1\r\nX: " + b"\r" * 5000,
        ]
        wrong: list[object] = []
        for data in hostile:
            error = self.assertRaises(MessageError, parse_request_head, data, max_fields=100)
            if not error.detail.isprintable() or len(error.detail) > 200:
                wrong.append((data[:40], error.detail))
            if str(error) != error.detail:
                wrong.append((data[:40], str(error)))
        self.assertEqual(wrong, [])

    def test_default_status(self) -> None:
        """
        A L{MessageError} is a 400 unless told otherwise.
        """
        self.assertEqual(MessageError("x").status, 400)
        self.assertEqual(MessageError("x", 501).status, 501)

    @given(st.binary(max_size=200))
    @settings(max_examples=500)
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Random bytes either parse or raise L{MessageError}; nothing else
        escapes the parser.
        """
        try:
            parse_request_head(data, max_fields=5)
        except MessageError as error:
            self.assertTrue(error.detail.isprintable())

    @given(
        st.lists(
            st.sampled_from(
                [
                    b"GET / HTTP/1.1",
                    b"POST http://a/ HTTP/1.0",
                    b"\r\n",
                    b"\r",
                    b"\n",
                    b" ",
                    b":",
                    b"Host: a",
                    b"Content-Length: 5",
                    b"Transfer-Encoding: chunked",
                    b"Connection: close",
                    b"\x00",
                    b"\x7f",
                ]
            ),
            max_size=12,
        ).map(b"".join)
    )
    @settings(max_examples=500)
    def test_arbitrary_heads(self, data: bytes) -> None:
        """
        Near-valid heads either parse into fields that would re-serialise
        to a head with no CR or LF in any name or value, or raise
        L{MessageError}.
        """
        try:
            parsed = parse_request_head(data, max_fields=5)
        except MessageError:
            return
        for name, value in parsed.fields:
            self.assertNotIn(b"\r", name + value)
            self.assertNotIn(b"\n", name + value)
            self.assertNotIn(b"\x00", name + value)
        self.assertNotIn(b" ", parsed.method + parsed.target)


# --- find_head_end ----------------------------------------------------------


def _field_lines_one_by_one(lines: list[bytes]) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """
    The reading L{read_field_lines} must agree with: each line matched on
    its own; the first bad one refused with its reason.
    """
    fields = []
    for line in lines:
        field = FIELD_LINE.fullmatch(line)
        if field is None:
            return fields, why_bad_field(line)
        name, value = field.groups()
        fields.append((name, value.strip(b" \t")))
    return fields, None


class FieldLinesTests(SynchronousTestCase):
    """
    L{read_field_lines} checks all lines with one match; it reads and
    refuses exactly as a line-by-line reading does.
    """

    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            st.binary(min_size=0, max_size=12).map(
                lambda b: b.translate(bytes.maketrans(b"\x00\x01\x02\x03", b":\r\n "))
            )
            | st.sampled_from(
                [
                    b"Host: a",
                    b"Host: a:1",
                    b"X:  b ",
                    b"K:",
                    b": v",
                    b"a b: c",
                    b"A:\tb\x80",
                    b"A: b\rc",
                    b"A: b\nc",
                    b"A: \x7f",
                    b"A: \x00",
                ]
            ),
            max_size=6,
        )
    )
    def test_same_verdict_as_line_by_line(self, lines: list[bytes]) -> None:
        """
        Random lines (colons, CR, LF, spaces and controls made common):
        the same fields, or the same refusal.
        """
        want_fields, want_error = _field_lines_one_by_one(lines)
        try:
            fields, _ = read_field_lines(lines, frozenset())
        except MessageError as error:
            self.assertEqual(error.detail, want_error)
        else:
            self.assertEqual((fields, want_error), (want_fields, None))


class FindHeadEndTests(SynchronousTestCase):
    """
    Tests for L{find_head_end} (RFC 9112 §2.1: the head ends with an empty
    line).
    """

    REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

    def test_incomplete(self) -> None:
        """
        Every proper prefix of a head is incomplete: -1, not an error.
        """
        got = {find_head_end(self.REQUEST[:n], 1000) for n in range(len(self.REQUEST))}
        self.assertEqual(got, {-1})

    def test_complete(self) -> None:
        """
        The index returned is just past the CRLFCRLF, whatever follows it
        (a body, or a pipelined request, RFC 9112 §9.3.2).
        """
        self.assertEqual(find_head_end(self.REQUEST, 1000), len(self.REQUEST))
        self.assertEqual(find_head_end(self.REQUEST + self.REQUEST, 1000), len(self.REQUEST))
        self.assertEqual(find_head_end(self.REQUEST + b"body", 1000), len(self.REQUEST))

    def test_bare_lf_is_not_a_terminator(self) -> None:
        """
        LF LF, CR LF LF and LF CR LF do not end a head (RFC 9112 §2.2: this
        parser does not accept bare LF as a line terminator); they are
        refused at once rather than waited on, since no later byte can make
        the head valid; also when a real CRLFCRLF follows.  A bare LF line
        that is not followed by an empty line is left to
        L{parse_request_head}.
        """
        for head in (
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\n\n",
            b"GET / HTTP/1.1\nHost: a\n\r\n",
            b"GET / HTTP/1.1\n\r\n\r\n",
        ):
            with self.assertRaises(MessageError) as caught:
                find_head_end(head, 1000)
            self.assertIn("bare CR or LF", caught.exception.detail)
        self.assertEqual(find_head_end(b"GET / HTTP/1.1\nHost: a\n", 1000), -1)
        self.assertEqual(find_head_end(b"GET / HTTP/1.1\nHost: a\r\n\r\n", 1000), 26)

    def test_too_long(self) -> None:
        """
        A head that cannot end within C{limit} bytes is refused with a 400
        once it has arrived, whole or in part.
        """
        error = self.assertRaises(MessageError, find_head_end, b"x" * 100, 50)
        self.assertEqual(error.status, 400)
        self.assertIn("larger than 50 bytes", error.detail)
        long_head = b"GET / HTTP/1.1\r\nX: " + b"y" * 100 + b"\r\n\r\n"
        self.assertRaises(MessageError, find_head_end, long_head, 50)

    def test_terminator_at_the_limit(self) -> None:
        """
        A head of exactly C{limit} bytes (what L{parse_request_head} is
        given, without the final CRLFCRLF) is accepted, whether it arrives
        whole or one byte at a time; one byte more is refused.  The verdict
        must not depend on where the network split the bytes.
        """
        limit = 40
        exact = b"GET / HTTP/1.1\r\nX: " + b"y" * (limit - 19) + b"\r\n\r\n"
        self.assertEqual(len(exact), limit + 4)
        self.assertEqual(find_head_end(exact, limit), limit + 4)
        prefixes = [find_head_end(exact[:n], limit) for n in range(len(exact))]
        self.assertEqual(set(prefixes), {-1})
        over = exact[:-4] + b"y\r\n\r\n"
        self.assertRaises(MessageError, find_head_end, over, limit)
        self.assertRaises(MessageError, find_head_end, over[:-1], limit)

    @given(
        st.lists(
            st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"GET / HTTP/1.1", b"\r\n\r\n"]),
            max_size=20,
        ).map(b"".join),
        st.integers(0, 40),
        st.lists(st.integers(1, 8), max_size=30),
    )
    @settings(max_examples=1000)
    def test_split_independent(self, data: bytes, limit: int, sizes: list[int]) -> None:
        """
        Reading a growing buffer, as the channel does when bytes arrive in
        several segments, reaches the same verdict as reading all of it at
        once: the same head end, or an error in both cases.
        """

        def verdict(buffer: bytes) -> int | None:
            try:
                return find_head_end(buffer, limit)
            except MessageError:
                return None

        whole = verdict(data)
        received = b""
        seen: int | None = -1
        for piece in pieces_of(data, sizes):
            received += piece
            seen = verdict(received)
            if seen != -1:
                break
        self.assertEqual(seen, whole)


REQUEST_LINES = [
    b"GET http://o.test/ HTTP/1.1",
    b"POST / HTTP/1.0",
    b"GET / HTTP/2.0",
    b"GET  / HTTP/1.1",
    b"G\x00T / HTTP/1.1",
]
REQUEST_FIELD_LINES = [
    b"Host: o.test",
    b"Host: other.test",
    b"Content-Length: 5",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Expect: 100-continue",
    b" folded",
    b"X-Nul: a\x00b",
    b"No colon",
]


@st.composite
def request_messages(draw: st.DrawFn) -> bytes:
    """
    A request head made of valid and invalid lines, joined mostly by CRLF
    and sometimes by bare CR or LF, ended by an empty line (or not), and
    followed by a few more bytes.
    """
    parts = [draw(st.sampled_from(REQUEST_LINES))]
    for _ in range(draw(st.integers(0, 4))):
        parts.append(draw(st.sampled_from([CRLF, CRLF, CRLF, b"\n", b"\r", b"\n\n"])))
        parts.append(draw(st.sampled_from(REQUEST_FIELD_LINES)))
    end = draw(st.sampled_from([CRLF + CRLF, CRLF + CRLF, CRLF, b"\n\n", b""]))
    return b"".join(parts) + end + draw(st.sampled_from([b"", b"hello", b"\r\n\r\nX"]))


def read_request(data: bytes, sizes: Iterable[int], limit: int) -> object:
    """
    Read a request head from C{data} arriving in pieces of C{sizes}, as the
    client channel does.

    @return: The parse and the bytes after the head; or C{"waiting"}; or
        C{(status, detail)} of the refusal.
    """
    buffer = b""
    try:
        for piece in pieces_of(data, sizes):
            buffer += piece
            end = find_head_end(buffer, limit)
            if end >= 0:
                return parse_request_head(buffer[: end - 4], max_fields=3), data[end:]
    except MessageError as error:
        return error.status, error.detail
    return "waiting"


class RequestSplitPropertyTests(SynchronousTestCase):
    """
    Property tests: a request head's verdict and parse depend on its bytes
    alone, never on how the network split them.
    """

    @given(request_messages(), st.integers(0, 120))
    @settings(max_examples=1000)
    def test_every_split_point(self, data: bytes, limit: int) -> None:
        """
        Split in two at every byte boundary, a message gives exactly what it
        gives whole: the same parse and bytes after the head, or the same
        refusal (status and detail).
        """
        whole = read_request(data, [], limit)
        for at in range(1, len(data)):
            self.assertEqual(read_request(data, [at], limit), whole, at)

    @given(
        st.one_of(request_messages(), st.binary(max_size=80)),
        st.lists(st.integers(1, 12), max_size=30),
        st.integers(0, 120),
    )
    @settings(max_examples=1000)
    def test_random_pieces(self, data: bytes, sizes: list[int], limit: int) -> None:
        """
        Fed in random pieces, a message (or random bytes) gives exactly what
        it gives whole.
        """
        self.assertEqual(read_request(data, sizes, limit), read_request(data, [], limit))

    @given(st.one_of(request_messages(), st.binary(max_size=80)), st.integers(0, 120))
    @settings(max_examples=2000)
    def test_read_request_head_is_find_then_parse(self, data: bytes, limit: int) -> None:
        """
        L{read_request_head}, which skips the bare-LF search for a head its
        one pattern accepts, reaches exactly the verdict of L{find_head_end}
        followed by L{parse_request_head}: the same head and end, the same
        wait, or the same refusal (status and detail).
        """

        def separately() -> object:
            try:
                end = find_head_end(data, limit)
                if end < 0:
                    return None
                return parse_request_head(data[: end - 4], max_fields=3), end
            except MessageError as error:
                return error.status, error.detail

        def together() -> object:
            try:
                return read_request_head(data, limit, max_fields=3)
            except MessageError as error:
                return error.status, error.detail

        self.assertEqual(together(), separately())
