# -*- test-case-name: tests.test_http_fields -*-
"""
Tests for L{squeak.http.fields}: header rules for a forwarding intermediary
(RFC 9110 §7.6, RFC 9112 §6).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak import __version__
from squeak.http.fields import (
    HOP_BY_HOP,
    FramingError,
    RawHeaders,
    check_request_framing,
    check_response_framing,
    connection_options,
    downstream_response_headers,
    first_value,
    impersonated_field,
    is_forwarding_loop,
    parse_max_forwards,
    strip_hop_by_hop,
    upgrade_accepted,
    upgrade_offer,
    upstream_request_headers,
    via_entry,
)

VIA = b"(squeak/" + __version__.encode("ascii") + b")"

STRIP = [  # (why, headers, keep_upgrade, expected)
    (
        "RFC 9110 §7.6.1: the hop-by-hop fields are removed, others kept in order",
        [
            (b"Connection", b"close"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Accept", b"*/*"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"websocket"),
            (b"Proxy-Authorization", b"Basic eDp5"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"User-Agent", b"ua"),
        ],
        False,
        [(b"Accept", b"*/*"), (b"User-Agent", b"ua")],
    ),
    (
        "RFC 9110 §7.6.1: fields named by Connection are removed, case-insensitively",
        [
            (b"Connection", b"X-Private, x-OTHER"),
            (b"x-private", b"1"),
            (b"X-Other", b"2"),
            (b"X-Kept", b"3"),
        ],
        False,
        [(b"X-Kept", b"3")],
    ),
    (
        "RFC 9110 §5.6.1: Connection lists with odd whitespace and empty elements",
        [
            (b"Connection", b" ,a ,\t b,, "),
            (b"Connection", b"c"),
            (b"A", b"1"),
            (b"B", b"2"),
            (b"C", b"3"),
            (b"D", b"4"),
        ],
        False,
        [(b"D", b"4")],
    ),
    (
        "RFC 9110 §7.6.1: repeats and order of kept fields are preserved",
        [
            (b"Set-Cookie", b"a=1"),
            (b"Connection", b"close"),
            (b"Set-Cookie", b"b=2"),
            (b"Accept", b"x"),
            (b"set-cookie", b"c=3"),
        ],
        False,
        [
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
            (b"Accept", b"x"),
            (b"set-cookie", b"c=3"),
        ],
    ),
    (
        "RFC 9110 §7.6.1: end-to-end fields are never removed unless Connection names them",
        [
            (b"Cache-Control", b"no-cache"),
            (b"Authorization", b"Bearer x"),
            (b"Content-Length", b"3"),
        ],
        False,
        [
            (b"Cache-Control", b"no-cache"),
            (b"Authorization", b"Bearer x"),
            (b"Content-Length", b"3"),
        ],
    ),
    (
        "RFC 9110 §7.8: keep_upgrade keeps Connection and Upgrade, drops the rest",
        [
            (b"Connection", b"Upgrade, X-Hop"),
            (b"Upgrade", b"websocket"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"5"),
            (b"Sec-WebSocket-Key", b"k"),
        ],
        True,
        [
            (b"Connection", b"Upgrade, X-Hop"),
            (b"Upgrade", b"websocket"),
            (b"Sec-WebSocket-Key", b"k"),
        ],
    ),
    (
        "RFC 9110 §7.6.1: without keep_upgrade the same WebSocket request loses both",
        [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")],
        False,
        [(b"Sec-WebSocket-Key", b"k")],
    ),
]

REQUEST_FRAMING_GOOD = [  # (why, headers)
    ("RFC 9112 §6.3: no body fields at all", []),
    ("RFC 9110 §8.6: Content-Length = 1*DIGIT", [(b"Content-Length", b"5")]),
    ("RFC 9110 §8.6: zero", [(b"content-length", b"0")]),
    (
        "RFC 9110 §5.5: surrounding whitespace is not part of the value",
        [(b"Content-Length", b" 5\t")],
    ),
    ("RFC 9110 §8.6: leading zeros are still 1*DIGIT", [(b"Content-Length", b"007")]),
    ("RFC 9112 §6.1: chunked alone", [(b"Transfer-Encoding", b"chunked")]),
    ("RFC 9112 §7: coding names are case-insensitive", [(b"transfer-encoding", b"Chunked")]),
    ("RFC 9110 §5.6.1: empty list elements are ignored", [(b"Transfer-Encoding", b", chunked ,")]),
    ("RFC 9110 §6.4: other fields do not matter", [(b"Content-Type", b"text/plain")]),
]

REQUEST_FRAMING_BAD = [  # (why, headers, detail fragment)
    ("RFC 9110 §8.6: plus sign", [(b"Content-Length", b"+5")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: minus sign", [(b"Content-Length", b"-1")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: two numbers", [(b"Content-Length", b"5 5")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: hexadecimal", [(b"Content-Length", b"0x10")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: empty", [(b"Content-Length", b"")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: decimal point", [(b"Content-Length", b"1.0")], "not 1*DIGIT"),
    ("RFC 9110 §8.6: non-ASCII digits", [(b"Content-Length", "\u0665".encode())], "not 1*DIGIT"),
    (
        "RFC 9112 §6.3: equal values in a list, strict rather than repair",
        [(b"Content-Length", b"5, 5")],
        "is a list",
    ),
    ("RFC 9112 §6.3: different values in a list", [(b"Content-Length", b"5,6")], "is a list"),
    (
        "RFC 9112 §6.3: two fields, equal values, strict rather than repair",
        [(b"Content-Length", b"5"), (b"content-length", b"5")],
        "2 Content-Length fields",
    ),
    (
        "RFC 9112 §6.3: two fields, different values",
        [(b"Content-Length", b"5"), (b"Content-Length", b"6")],
        "2 Content-Length fields",
    ),
    (
        "RFC 9112 §6.1: Transfer-Encoding and Content-Length",
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")],
        "both",
    ),
    (
        "RFC 9112 §6.1: Content-Length first, then Transfer-Encoding",
        [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
        "both",
    ),
    (
        "RFC 9112 §6.3: final coding not chunked",
        [(b"Transfer-Encoding", b"gzip")],
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.3: chunked not last",
        [(b"Transfer-Encoding", b"chunked, gzip")],
        "does not end with chunked",
    ),
    (
        "RFC 9112 §7: other codings are not decoded",
        [(b"Transfer-Encoding", b"gzip, chunked")],
        "other than chunked",
    ),
    (
        "RFC 9112 §7: codings split over two fields",
        [(b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")],
        "other than chunked",
    ),
    ("RFC 9112 §6.1: chunked twice", [(b"Transfer-Encoding", b"chunked, chunked")], "twice"),
    (
        "RFC 9112 §6.1: chunked twice in two fields",
        [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
        "twice",
    ),
    ("RFC 9112 §6.1: empty Transfer-Encoding", [(b"Transfer-Encoding", b"")], "empty"),
    ("RFC 9112 §6.1: Transfer-Encoding of commas only", [(b"Transfer-Encoding", b" , ")], "empty"),
    (
        "RFC 9112 §7.1: chunked takes no parameters",
        [(b"Transfer-Encoding", b"chunked;x=1")],
        "does not end with chunked",
    ),
    (
        "RFC 9112 §6.1: an obfuscated chunked",
        [(b"Transfer-Encoding", b"xchunked")],
        "does not end with chunked",
    ),
]


def _framing_mismatches(
    check: Callable[[RawHeaders], None],
    good: list[tuple[str, RawHeaders]],
    bad: list[tuple[str, RawHeaders, str]],
) -> list[object]:
    """
    Run a framing check over good and bad rows and collect what went wrong.
    """
    wrong: list[object] = []
    for why, headers in good:
        try:
            check(headers)
        except FramingError as e:
            wrong.append((why, headers, e.detail))
    for why, headers, fragment in bad:
        try:
            check(headers)
        except FramingError as e:
            if fragment not in e.detail:
                wrong.append((why, headers, e.detail))
        else:
            wrong.append((why, headers, "accepted"))
    return wrong


IMPERSONATORS = [  # (why, name, impersonated field or None)
    ("CGI maps it to HTTP_CONTENT_LENGTH", b"Content_Length", b"content-length"),
    ("any case", b"CONTENT_LENGTH", b"content-length"),
    ("any case", b"content_length", b"content-length"),
    ("CGI maps it to HTTP_TRANSFER_ENCODING", b"Transfer_Encoding", b"transfer-encoding"),
    ("mixed case", b"tRaNsFeR_eNcOdInG", b"transfer-encoding"),
    ("a connection-specific field", b"Keep_Alive", b"keep-alive"),
    ("a connection-specific field", b"Proxy_Connection", b"proxy-connection"),
    ("credentials the proxy consumes", b"Proxy_Authorization", b"proxy-authorization"),
    ("addressed to the next client only", b"Proxy_Authenticate", b"proxy-authenticate"),
    ("the real field is not an impersonator", b"Content-Length", None),
    ("the real field is not an impersonator", b"Transfer-Encoding", None),
    ("other underscore names are the application's", b"X_Forwarded_For", None),
    ("other underscore names are the application's", b"Api_Key", None),
    ("no hyphen to impersonate", b"Host", None),
    ("no hyphen to impersonate", b"Connection", None),
    ("no hyphen to impersonate", b"Upgrade", None),
    ("two underscores are not a single-hyphen name", b"Content__Length", None),
    ("a prefix is another name", b"X_Content_Length", None),
    ("a suffix is another name", b"Content_Length_", None),
]


class ImpersonatedFieldTests(SynchronousTestCase):
    """
    Tests for L{impersonated_field}: names that a CGI-style gateway maps to
    the same variable as a framing or connection-specific field.
    """

    def test_table(self) -> None:
        """
        Only the underscore spellings of the hyphenated framing and
        connection-specific fields are recognised, in any case.
        """
        wrong = [
            (why, name, impersonated_field(name), expected)
            for why, name, expected in IMPERSONATORS
            if impersonated_field(name) != expected
        ]
        self.assertEqual(wrong, [])


UPGRADE_OFFERS = [  # (why, request fields, allowed, offered)
    (
        "RFC 9110 §7.8: an allowed protocol, named by Connection",
        [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
        ("websocket",),
        b"websocket",
    ),
    (
        "protocol names compare case-insensitively; the entry is kept as sent",
        [(b"connection", b"keep-alive, UPGRADE"), (b"upgrade", b"WebSocket")],
        ("websocket",),
        b"WebSocket",
    ),
    (
        "h2c is not relayed: nothing offered, the request goes plain",
        [(b"Connection", b"Upgrade, HTTP2-Settings"), (b"Upgrade", b"h2c")],
        ("websocket",),
        b"",
    ),
    (
        "only the allowed entries of a list are kept, in order",
        [(b"Connection", b"Upgrade"), (b"Upgrade", b"h2c, websocket"), (b"Upgrade", b"foo/2")],
        ("websocket", "foo"),
        b"websocket, foo/2",
    ),
    (
        "RFC 9110 §7.8: Upgrade without the upgrade connection option",
        [(b"Upgrade", b"websocket")],
        ("websocket",),
        b"",
    ),
    (
        "an empty setting allows no upgrade",
        [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
        (),
        b"",
    ),
]

UPGRADE_ANSWERS = [  # (why, offered, 101 fields, accepted)
    ("the protocol asked for", b"websocket", [(b"Upgrade", b"websocket")], True),
    ("case-insensitive", b"websocket", [(b"upgrade", b"WebSocket")], True),
    ("versions ignored", b"foo/1", [(b"Upgrade", b"foo/2")], True),
    ("RFC 9110 §7.8: another protocol", b"websocket", [(b"Upgrade", b"h2c")], False),
    ("one of two not asked for", b"websocket", [(b"Upgrade", b"websocket, h2c")], False),
    ("RFC 9110 §15.2.2: a 101 must name the protocol", b"websocket", [], False),
    ("an empty Upgrade names nothing", b"websocket", [(b"Upgrade", b" ")], False),
    ("nothing was asked", b"", [(b"Upgrade", b"websocket")], False),
]


class UpgradeTests(SynchronousTestCase):
    """
    Tests for L{upgrade_offer} and L{upgrade_accepted}: upgrades only to
    the protocols the proxy relays, and only when asked.
    """

    def test_offer_table(self) -> None:
        """
        Only the allowed protocols of a proper upgrade request are offered.
        """
        wrong = [
            (why, upgrade_offer(fields, allowed), offered)
            for why, fields, allowed, offered in UPGRADE_OFFERS
            if upgrade_offer(fields, allowed) != offered
        ]
        self.assertEqual(wrong, [])

    def test_accepted_table(self) -> None:
        """
        A 101 is accepted only when every protocol it names was offered.
        """
        wrong = [
            (why, accepted)
            for why, offered, fields, accepted in UPGRADE_ANSWERS
            if upgrade_accepted(offered, fields) != accepted
        ]
        self.assertEqual(wrong, [])


class FirstValueTests(SynchronousTestCase):
    """
    Tests for L{first_value}.
    """

    def test_first_of_repeated_fields_whatever_the_case(self) -> None:
        """
        Field names are case-insensitive (RFC 9110 §5.1); the first of
        repeated fields is returned as stored, and a missing one is L{None}.
        """
        fields: RawHeaders = [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X", b"")]
        self.assertEqual(first_value(fields, b"set-cookie"), b"a=1")
        self.assertEqual(first_value(fields, b"x"), b"")
        self.assertIsNone(first_value(fields, b"via"))


class StripHopByHopTests(SynchronousTestCase):
    """
    Tests for L{strip_hop_by_hop} and L{connection_options}.
    """

    def test_table(self) -> None:
        """
        Each row's headers are stripped to the expected list (RFC 9110 §7.6.1).
        """
        wrong: list[object] = []
        for why, headers, keep_upgrade, want in STRIP:
            got = strip_hop_by_hop(headers, keep_upgrade=keep_upgrade)
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_input_unchanged(self) -> None:
        """
        The input list is not modified.
        """
        headers = [(b"Connection", b"close"), (b"A", b"1")]
        strip_hop_by_hop(headers)
        self.assertEqual(headers, [(b"Connection", b"close"), (b"A", b"1")])

    def test_hop_by_hop_names(self) -> None:
        """
        L{HOP_BY_HOP} holds exactly the agreed lower-case names.
        """
        self.assertEqual(
            HOP_BY_HOP,
            {
                b"connection",
                b"keep-alive",
                b"proxy-connection",
                b"te",
                b"trailer",
                b"transfer-encoding",
                b"upgrade",
                b"proxy-authorization",
                b"proxy-authenticate",
            },
        )

    def test_connection_options(self) -> None:
        """
        L{connection_options} lower-cases and splits every Connection field (RFC 9110 §7.6.1).
        """
        self.assertEqual(
            connection_options([(b"Connection", b"Close, X-A"), (b"connection", b" keep-alive")]),
            {b"close", b"x-a", b"keep-alive"},
        )


class FramingTests(SynchronousTestCase):
    """
    Tests for L{check_request_framing} and L{check_response_framing}.
    """

    def test_request_table(self) -> None:
        """
        Each good row passes and each bad row raises L{FramingError} naming the problem.
        """
        wrong = _framing_mismatches(
            check_request_framing, REQUEST_FRAMING_GOOD, REQUEST_FRAMING_BAD
        )
        self.assertEqual(wrong, [])

    def test_response_table(self) -> None:
        """
        Responses follow the same rules (RFC 9112 §6.3), and a non-chunked
        Transfer-Encoding (a close-delimited body) is refused too.
        """
        wrong = _framing_mismatches(
            check_response_framing, REQUEST_FRAMING_GOOD, REQUEST_FRAMING_BAD
        )
        self.assertEqual(wrong, [])

    def test_detail_names_message(self) -> None:
        """
        The detail says whether a request or a response was at fault.
        """
        bad = [(b"Content-Length", b"x")]
        e = self.assertRaises(FramingError, check_request_framing, bad)
        self.assertTrue(e.detail.startswith("request "))
        e = self.assertRaises(FramingError, check_response_framing, bad)
        self.assertTrue(e.detail.startswith("response "))
        self.assertEqual(str(e), e.detail)

    def test_detail_is_printable(self) -> None:
        """
        Hostile bytes in Content-Length are escaped and truncated in the detail.
        """
        e = self.assertRaises(
            FramingError, check_request_framing, [(b"Content-Length", b"\r\n" * 100)]
        )
        self.assertTrue(e.detail.isprintable())
        self.assertLess(len(e.detail), 200)


class ViaTests(SynchronousTestCase):
    """
    Tests for L{is_forwarding_loop} and L{via_entry} (RFC 9110 §7.6.3).
    """

    def test_loop_table(self) -> None:
        """
        A loop is a Via entry whose received-by is our visible hostname.
        """
        cases = [  # (why, Via values, expected)
            ("RFC 9110 §7.6.3: our own entry", [b"1.1 squeak (squeak/0.1.0), 1.0 other"], True),
            ("RFC 9110 §7.6.3: ours after another", [b"1.0 other, 1.1 squeak"], True),
            ("RFC 9110 §7.6.3: received-by is case-insensitive", [b"1.1 SQUEAK"], True),
            ("RFC 9110 §7.6.3: in a second Via field", [b"1.0 a", b"HTTP/1.1 squeak"], True),
            ("RFC 9110 §7.6.3: someone else", [b"1.1 other (squeak)"], False),
            ("RFC 9110 §7.6.3: our name only in a comment", [b"1.1 other (via squeak)"], False),
            (
                "RFC 9110 §5.6.5: a comma inside a comment does not start an entry",
                [b"1.1 other (x, squeak y)"],
                False,
            ),
            (
                "RFC 9110 §5.6.5: nested comment with a quoted-pair",
                [b"1.1 a (b (c\\) , 1.1 squeak) d), 1.0 e"],
                False,
            ),
            (
                "RFC 9110 §7.6.3: received-by with a port is a different name",
                [b"1.1 squeak:3128"],
                False,
            ),
            ("RFC 9110 §7.6.3: prefix of our name", [b"1.1 squeaky"], False),
            ("RFC 9110 §7.6.3: no Via at all", [], False),
            ("RFC 9110 §7.6.3: malformed entry", [b"squeak"], False),
        ]
        wrong: list[object] = []
        for why, values, want in cases:
            headers = [(b"Via", v) for v in values] + [(b"Host", b"squeak")]
            if is_forwarding_loop(headers, "squeak") != want:
                wrong.append(why)
        self.assertEqual(wrong, [])

    def test_loop_hostname_case(self) -> None:
        """
        The visible hostname is compared case-insensitively, too.
        """
        self.assertTrue(is_forwarding_loop([(b"via", b"1.1 proxy.example")], "Proxy.Example"))

    def test_empty_hostname_never_loops(self) -> None:
        """
        An empty visible hostname matches nothing.
        """
        self.assertFalse(is_forwarding_loop([(b"Via", b"1.1 , 1.0 x")], ""))

    def test_via_entry(self) -> None:
        """
        The received-protocol omits the HTTP name (RFC 9110 §7.6.3).
        """
        self.assertEqual(via_entry(b"HTTP/1.0", "squeak"), b"1.0 squeak " + VIA)
        self.assertEqual(via_entry(b"HTTP/2", "p.example"), b"2 p.example " + VIA)
        self.assertRaises(ValueError, via_entry, b"HTTP/1.1x", "squeak")
        self.assertRaises(ValueError, via_entry, b"1.1", "squeak")


class MaxForwardsTests(SynchronousTestCase):
    """
    Tests for L{parse_max_forwards} (RFC 9110 §7.6.2).
    """

    def test_table(self) -> None:
        """
        Max-Forwards = 1*DIGIT; anything else is ignored.
        """
        cases = [  # (why, values, expected)
            ("RFC 9110 §7.6.2: absent", [], None),
            ("RFC 9110 §7.6.2: a number", [b"5"], 5),
            ("RFC 9110 §7.6.2: zero", [b"0"], 0),
            ("RFC 9110 §5.5: whitespace around the value", [b" 7 "], 7),
            ("RFC 9110 §7.6.2: leading zeros", [b"010"], 10),
            ("RFC 9110 §7.6.2: not digits, ignored", [b"abc"], None),
            ("RFC 9110 §7.6.2: signed, ignored", [b"-1"], None),
            ("RFC 9110 §7.6.2: empty, ignored", [b""], None),
            ("RFC 9110 §7.6.2: a list, ignored", [b"3, 4"], None),
            ("RFC 9110 §7.6.2: smallest valid value wins", [b"9", b"x", b"4"], 4),
            ("RFC 9110 §7.6.2: huge value capped", [b"9" * 5000], 2**31 - 1),
            ("RFC 9110 §7.6.2: large value capped", [b"99999999999"], 2**31 - 1),
        ]
        wrong: list[object] = []
        for why, values, want in cases:
            got = parse_max_forwards([(b"Max-Forwards", v) for v in values])
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])


def _upstream(headers: RawHeaders, **overrides: object) -> RawHeaders:
    """
    Call L{upstream_request_headers} with default arguments.
    """
    kwargs: dict[str, object] = {
        "authority": b"origin.example",
        "client_ip": "192.0.2.7",
        "visible_hostname": "squeak",
        "forwarded_for": "on",
        "via": True,
        "max_forwards": None,
        "request_version": b"HTTP/1.1",
    }
    kwargs.update(overrides)
    return upstream_request_headers(headers, **kwargs)  # type: ignore[arg-type]


class UpstreamRequestHeadersTests(SynchronousTestCase):
    """
    Tests for L{upstream_request_headers}.
    """

    def test_full_example(self) -> None:
        """
        Hop-by-hop and framing fields go, Host is replaced and first, and
        X-Forwarded-For and Via are appended (RFC 9110 §7.2, §7.6).
        """
        headers = [
            (b"User-Agent", b"ua"),
            (b"Host", b"wrong.example"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Connection", b"keep-alive, X-Secret"),
            (b"X-Secret", b"s"),
            (b"Proxy-Authorization", b"Basic eDp5"),
            (b"Content-Length", b"3"),
            (b"Accept", b"*/*"),
            (b"Cookie", b"a=1"),
            (b"Cookie", b"b=2"),
        ]
        self.assertEqual(
            _upstream(headers),
            [
                (b"Host", b"origin.example"),
                (b"User-Agent", b"ua"),
                (b"Accept", b"*/*"),
                (b"Cookie", b"a=1"),
                (b"Cookie", b"b=2"),
                (b"X-Forwarded-For", b"192.0.2.7"),
                (b"Via", b"1.1 squeak " + VIA),
            ],
        )

    def test_forwarded_for_table(self) -> None:
        """
        X-Forwarded-For follows Squid's C{forwarded_for} modes.
        """
        existing = [(b"X-Forwarded-For", b"198.51.100.1"), (b"x-forwarded-for", b" b ,")]
        cases = [  # (mode, client headers, expected XFF fields)
            ("on", [], [b"192.0.2.7"]),
            ("on", existing, [b"198.51.100.1, b, 192.0.2.7"]),
            ("off", [], [b"unknown"]),
            ("off", existing, [b"198.51.100.1, b, unknown"]),
            ("transparent", [], []),
            ("transparent", existing, [b"198.51.100.1", b" b ,"]),
            ("delete", [], []),
            ("delete", existing, []),
        ]
        wrong: list[object] = []
        for mode, headers, want in cases:
            got = _upstream(headers, forwarded_for=mode, via=False)
            xff = [v for n, v in got if n.lower() == b"x-forwarded-for"]
            if xff != want:
                wrong.append((mode, headers, xff, want))
        self.assertEqual(wrong, [])

    def test_forwarded_for_ipv6(self) -> None:
        """
        An IPv6 client address is appended as is.
        """
        got = _upstream([], client_ip="2001:db8::7", via=False)
        self.assertEqual(got[-1], (b"X-Forwarded-For", b"2001:db8::7"))

    def test_forwarded_for_unknown_mode(self) -> None:
        """
        An unknown C{forwarded_for} mode is a programming error.
        """
        self.assertRaises(ValueError, _upstream, [], forwarded_for="yes")

    def test_connection_can_name_xff(self) -> None:
        """
        A client that lists X-Forwarded-For in Connection loses its own value
        (RFC 9110 §7.6.1), but ours is still added.
        """
        got = _upstream(
            [(b"Connection", b"X-Forwarded-For"), (b"X-Forwarded-For", b"1.2.3.4")], via=False
        )
        self.assertEqual(got, [(b"Host", b"origin.example"), (b"X-Forwarded-For", b"192.0.2.7")])

    def test_via_table(self) -> None:
        """
        Via gets our entry with the client's protocol version, after existing
        entries (RFC 9110 §7.6.3).
        """
        cases = [  # (why, Via values, version, expected Via values)
            ("RFC 9110 §7.6.3: new field", [], b"HTTP/1.1", [b"1.1 squeak " + VIA]),
            (
                "RFC 9110 §7.6.3: received-protocol of an HTTP/1.0 request",
                [],
                b"HTTP/1.0",
                [b"1.0 squeak " + VIA],
            ),
            (
                "RFC 9110 §7.6.3: appended to the existing entry",
                [b"1.0 fred"],
                b"HTTP/1.1",
                [b"1.0 fred, 1.1 squeak " + VIA],
            ),
            (
                "RFC 9110 §7.6.3: appended to the last of several fields",
                [b"1.0 a", b"1.1 b "],
                b"HTTP/1.1",
                [b"1.0 a", b"1.1 b, 1.1 squeak " + VIA],
            ),
            (
                "RFC 9110 §5.3: an empty Via field is filled",
                [b""],
                b"HTTP/1.1",
                [b"1.1 squeak " + VIA],
            ),
        ]
        wrong: list[object] = []
        for why, values, version, want in cases:
            got = _upstream([(b"Via", v) for v in values], request_version=version)
            vias = [v for n, v in got if n.lower() == b"via"]
            if vias != want:
                wrong.append((why, vias, want))
        self.assertEqual(wrong, [])

    def test_no_via(self) -> None:
        """
        With C{via} false, existing Via fields pass through unchanged.
        """
        got = _upstream([(b"Via", b"1.0 fred")], via=False, forwarded_for="transparent")
        self.assertEqual(got, [(b"Host", b"origin.example"), (b"Via", b"1.0 fred")])

    def test_max_forwards_table(self) -> None:
        """
        Max-Forwards is replaced when the caller gives a value and left alone
        otherwise (RFC 9110 §7.6.2).
        """
        cases = [  # (client values, max_forwards, expected values)
            ([], None, []),
            ([b"5"], None, [b"5"]),
            ([b"5"], 4, [b"4"]),
            ([b"5", b"x"], 0, [b"0"]),
            ([], 9, [b"9"]),
        ]
        wrong: list[object] = []
        for values, max_forwards, want in cases:
            got = _upstream(
                [(b"Max-Forwards", v) for v in values], max_forwards=max_forwards, via=False
            )
            found = [v for n, v in got if n.lower() == b"max-forwards"]
            if found != want:
                wrong.append((values, max_forwards, found, want))
        self.assertEqual(wrong, [])

    def test_framing_and_host_dropped(self) -> None:
        """
        Every Host, Content-Length and Transfer-Encoding field goes; the only
        Host is the authority, first (RFC 9112 §3.2.2).
        """
        headers = [
            (b"host", b"a"),
            (b"HOST", b"b"),
            (b"Content-Length", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"X", b"y"),
        ]
        got = _upstream(headers, authority=b"[::1]:8080", via=False, forwarded_for="delete")
        self.assertEqual(got, [(b"Host", b"[::1]:8080"), (b"X", b"y")])

    def test_input_unchanged(self) -> None:
        """
        The client's header list is not modified.
        """
        headers = [(b"Via", b"1.0 fred"), (b"Host", b"h")]
        _upstream(headers)
        self.assertEqual(headers, [(b"Via", b"1.0 fred"), (b"Host", b"h")])


class DownstreamResponseHeadersTests(SynchronousTestCase):
    """
    Tests for L{downstream_response_headers}.
    """

    def test_example(self) -> None:
        """
        Hop-by-hop and framing fields go, Set-Cookie lines stay separate, and
        Via gets our entry with the response's version (RFC 9110 §7.6).
        """
        headers = [
            (b"Content-Type", b"text/html"),
            (b"Set-Cookie", b"a=1; Path=/"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Authenticate", b"Basic realm=upstream"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"10"),
            (b"Set-Cookie", b"b=2, c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
            (b"Via", b"1.1 origin-cache"),
        ]
        got = downstream_response_headers(
            headers, visible_hostname="squeak", via=True, response_version=b"HTTP/1.0"
        )
        self.assertEqual(
            got,
            [
                (b"Content-Type", b"text/html"),
                (b"Set-Cookie", b"a=1; Path=/"),
                (b"Set-Cookie", b"b=2, c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
                (b"Via", b"1.1 origin-cache, 1.0 squeak " + VIA),
            ],
        )

    def test_no_via(self) -> None:
        """
        With C{via} false nothing is added.
        """
        got = downstream_response_headers(
            [(b"Date", b"x")], visible_hostname="squeak", via=False, response_version=b"HTTP/1.1"
        )
        self.assertEqual(got, [(b"Date", b"x")])


_NAMES = st.sampled_from(
    [
        b"Connection",
        b"connection",
        b"Keep-Alive",
        b"TE",
        b"Upgrade",
        b"Transfer-Encoding",
        b"Proxy-Authorization",
        b"Proxy-Authenticate",
        b"Proxy-Connection",
        b"Trailer",
        b"X-A",
        b"x-a",
        b"X-B",
        b"Set-Cookie",
        b"Accept",
        b"Content-Length",
        b"Host",
    ]
) | st.from_regex(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}", fullmatch=True)
_CONNECTION_VALUES = st.lists(
    st.sampled_from([b"close", b"X-A", b"x-b", b"Accept", b"upgrade", b"", b" ", b"Set-Cookie"])
    | st.from_regex(rb"[A-Za-z-]{1,8}", fullmatch=True),
    max_size=4,
).map(lambda parts: b" ,".join(parts))
_FIELDS = st.lists(
    st.one_of(
        st.tuples(st.just(b"Connection"), _CONNECTION_VALUES),
        st.tuples(_NAMES, st.binary(max_size=6)),
    ),
    max_size=12,
)


class StripHopByHopPropertyTests(SynchronousTestCase):
    """
    Property tests for L{strip_hop_by_hop} (RFC 9110 §7.6.1).
    """

    @given(_FIELDS)
    def test_never_forwards_hop_by_hop(self, headers: RawHeaders) -> None:
        """
        No hop-by-hop or Connection-named field survives, and every other field
        is kept in its original order.
        """
        named = {
            element.strip(b" \t").lower()
            for name, value in headers
            if name.lower() == b"connection"
            for element in value.split(b",")
        }
        got = strip_hop_by_hop(headers)
        for name, _value in got:
            self.assertNotIn(name.lower(), HOP_BY_HOP)
            self.assertNotIn(name.lower(), named)
        expected = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP | named]
        self.assertEqual(got, expected)

    @given(_FIELDS)
    def test_keep_upgrade_only_adds_connection_and_upgrade(self, headers: RawHeaders) -> None:
        """
        With C{keep_upgrade} the result is the plain result plus exactly the
        Connection and Upgrade fields, in original order.
        """
        plain = strip_hop_by_hop(headers)
        kept = strip_hop_by_hop(headers, keep_upgrade=True)
        extra = [f for f in kept if f[0].lower() in (b"connection", b"upgrade")]
        self.assertEqual([f for f in kept if f not in extra], plain)
        self.assertEqual(
            extra, [f for f in headers if f[0].lower() in (b"connection", b"upgrade")]
        )

    @given(_FIELDS)
    def test_upstream_never_forwards_hop_by_hop(self, headers: RawHeaders) -> None:
        """
        The upstream request never carries a hop-by-hop field and has exactly one Host.
        """
        got = _upstream(headers)
        self.assertEqual([n for n, _ in got if n.lower() in HOP_BY_HOP], [])
        self.assertEqual([n for n, _ in got if n.lower() == b"host"], [b"Host"])

    @given(_FIELDS)
    def test_framing_raises_only_framing_error(self, headers: RawHeaders) -> None:
        """
        The framing checks either pass or raise L{FramingError}, whatever the input.
        """
        for check in (check_request_framing, check_response_framing):
            with contextlib.suppress(FramingError):
                check(headers)
