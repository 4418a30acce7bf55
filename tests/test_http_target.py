# -*- test-case-name: tests.test_http_target -*-
"""
Tests for L{squeak.http.target}: request-target parsing (RFC 9112 §3.2).
"""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http.target import (
    SUPPORTED_SCHEMES,
    Target,
    TargetError,
    format_authority,
    parse_absolute_target,
    parse_authority,
)

GOOD = [  # (why, request-target, expected Target)
    (
        "RFC 9112 §3.2.2: plain absolute-form, default port",
        b"http://example.com/a/b?c=d",
        Target("http", "example.com", 80, b"/a/b?c=d"),
    ),
    (
        "RFC 3986 §3.1: scheme is case-insensitive; RFC 3986 §6.2.2.1: host lower-cased",
        b"HTTP://Example.COM/Path",
        Target("http", "example.com", 80, b"/Path"),
    ),
    (
        "RFC 9110 §4.2.3: empty path becomes /",
        b"http://example.com",
        Target("http", "example.com", 80, b"/"),
    ),
    (
        "RFC 9110 §4.2.3: empty path before a query becomes /",
        b"http://example.com?q=1",
        Target("http", "example.com", 80, b"/?q=1"),
    ),
    (
        "RFC 3986 §3.2.3: explicit port",
        b"http://example.com:8080/",
        Target("http", "example.com", 8080, b"/"),
    ),
    (
        "RFC 3986 §3.2.3: empty port after the colon means the default port",
        b"http://example.com:/x",
        Target("http", "example.com", 80, b"/x"),
    ),
    (
        "RFC 3986 §3.2.3: port = *DIGIT, so leading zeros are allowed",
        b"http://example.com:0080/",
        Target("http", "example.com", 80, b"/"),
    ),
    (
        "RFC 3986 §3.2.3: highest port",
        b"http://example.com:65535/",
        Target("http", "example.com", 65535, b"/"),
    ),
    (
        "RFC 3986 §2.1: percent-encoding is kept exactly, %2F stays %2F",
        b"http://example.com/a%2Fb/%7e?x=%2F%2f&y=+",
        Target("http", "example.com", 80, b"/a%2Fb/%7e?x=%2F%2f&y=+"),
    ),
    (
        "RFC 3986 §5.2.4: dot segments are not removed by a proxy",
        b"http://example.com/a/../b/./c",
        Target("http", "example.com", 80, b"/a/../b/./c"),
    ),
    (
        "RFC 3986 §3.2.2: IPv4 address",
        b"http://192.0.2.1:81/",
        Target("http", "192.0.2.1", 81, b"/"),
    ),
    (
        "RFC 3986 §3.2.2: IPv6 literal, stored without brackets",
        b"http://[2001:db8::1]/",
        Target("http", "2001:db8::1", 80, b"/"),
    ),
    (
        "RFC 3986 §3.2.2: IPv6 literal with a port, normalized to compressed form",
        b"http://[2001:DB8:0:0::1]:8080/x",
        Target("http", "2001:db8::1", 8080, b"/x"),
    ),
    (
        "RFC 3986 §3.2.2: IPv6 literal with an embedded IPv4 address",
        b"http://[::ffff:192.0.2.1]/",
        Target("http", "::ffff:c000:201", 80, b"/"),
    ),
    (
        "RFC 1034 §3.1: a fully qualified name with its trailing dot",
        b"http://example.com./",
        Target("http", "example.com.", 80, b"/"),
    ),
    (
        "RFC 3986 §3.2.2: underscores and hyphens in host names",
        b"http://my_host-1.example/",
        Target("http", "my_host-1.example", 80, b"/"),
    ),
    (
        "RFC 3986 §3.3: characters outside pchar are passed through in the query",
        b"http://example.com/?a=|b|&c={d}",
        Target("http", "example.com", 80, b"/?a=|b|&c={d}"),
    ),
]

BAD = [  # (why, request-target, expected error name, detail fragment)
    (
        "RFC 9112 §3.2.2: ftp is not supported",
        b"ftp://example.com/",
        "ERR_UNSUP_REQ",
        "scheme 'ftp' is not supported",
    ),
    (
        "RFC 9112 §3.2.2: gopher is not supported",
        b"gopher://example.com/",
        "ERR_UNSUP_REQ",
        "scheme 'gopher' is not supported",
    ),
    (
        "RFC 9112 §3.2.2: gopher is not a scheme squeak fetches",
        b"gopher://example.com/",
        "ERR_UNSUP_REQ",
        "scheme 'gopher' is not supported",
    ),
    (
        "RFC 9112 §3.2.2: unsupported scheme is reported lower-cased",
        b"FTP://example.com/",
        "ERR_UNSUP_REQ",
        "scheme 'ftp' is not supported",
    ),
    (
        "RFC 9112 §3.2.2: origin-form sent to a proxy",
        b"/index.html",
        "ERR_INVALID_URL",
        "absolute URI required",
    ),
    (
        "RFC 9112 §3.2.4: asterisk-form is not accepted here",
        b"*",
        "ERR_INVALID_URL",
        "absolute URI required",
    ),
    (
        "RFC 9112 §3.2.3: authority-form is only for CONNECT",
        b"example.com:443",
        "ERR_INVALID_URL",
        "only for CONNECT",
    ),
    (
        "RFC 9112 §3.2.3: authority-form IPv6 is only for CONNECT",
        b"[::1]:443",
        "ERR_INVALID_URL",
        "only for CONNECT",
    ),
    ("RFC 9112 §3.2: empty request-target", b"", "ERR_INVALID_URL", "absolute URI required"),
    ("RFC 3986 §3: no scheme", b"example.com/x", "ERR_INVALID_URL", "absolute URI required"),
    (
        "RFC 3986 §3.1: invalid scheme characters",
        b"ht_tp://example.com/",
        "ERR_INVALID_URL",
        "absolute URI required",
    ),
    (
        "RFC 3986 §3: http without //authority",
        b"http:/example.com/",
        "ERR_INVALID_URL",
        "absolute URI required",
    ),
    ("RFC 9110 §4.2.1: empty host", b"http:///x", "ERR_INVALID_URL", "host is missing"),
    (
        "RFC 9110 §4.2.1: empty host before a port",
        b"http://:80/",
        "ERR_INVALID_URL",
        "host is missing",
    ),
    (
        "RFC 9110 §4.2.1: empty host before a query",
        b"http://?q",
        "ERR_INVALID_URL",
        "host is missing",
    ),
    (
        "RFC 9110 §4.2.4: userinfo with a password",
        b"http://user:pw@example.com/",
        "ERR_INVALID_URL",
        "userinfo",
    ),
    (
        "RFC 9110 §4.2.4: userinfo without a password",
        b"http://user@example.com/",
        "ERR_INVALID_URL",
        "userinfo",
    ),
    ("RFC 9110 §4.2.4: empty userinfo", b"http://@example.com/", "ERR_INVALID_URL", "userinfo"),
    (
        "RFC 3986 §3.2.3: port with letters",
        b"http://example.com:8o/",
        "ERR_INVALID_URL",
        "not a number",
    ),
    (
        "RFC 3986 §3.2.3: signed port",
        b"http://example.com:+80/",
        "ERR_INVALID_URL",
        "not a number",
    ),
    ("RFC 9110 §4.2.1: port 0", b"http://example.com:0/", "ERR_INVALID_URL", "out of range"),
    (
        "RFC 9110 §4.2.1: port over 65535",
        b"http://example.com:65536/",
        "ERR_INVALID_URL",
        "out of range",
    ),
    (
        "RFC 9110 §4.2.1: absurdly long port",
        b"http://example.com:" + b"9" * 5000 + b"/",
        "ERR_INVALID_URL",
        "out of range",
    ),
    (
        "RFC 3986 §3.2.2: two colons in a reg-name",
        b"http://example.com:80:80/",
        "ERR_INVALID_URL",
        "more than one ':'",
    ),
    (
        "RFC 3986 §3.2.2: unbracketed IPv6",
        b"http://2001:db8::1/",
        "ERR_INVALID_URL",
        "must be in brackets",
    ),
    (
        "RFC 3986 §3.2.2: IPv6 literal without ]",
        b"http://[2001:db8::1/",
        "ERR_INVALID_URL",
        "unterminated",
    ),
    (
        "RFC 3986 §3.2.2: invalid IPv6 literal",
        b"http://[2001:db8:::1]/",
        "ERR_INVALID_URL",
        "not a valid IPv6",
    ),
    (
        "RFC 3986 §3.2.2: IPv4 address in brackets",
        b"http://[192.0.2.1]/",
        "ERR_INVALID_URL",
        "not a valid IPv6",
    ),
    ("RFC 3986 §3.2.2: IPvFuture", b"http://[v1.fe80::a]/", "ERR_INVALID_URL", "not a valid IPv6"),
    (
        "RFC 6874: zone identifiers are refused",
        b"http://[fe80::1%25eth0]/",
        "ERR_INVALID_URL",
        "zone",
    ),
    (
        "RFC 3986 §3.2.2: garbage after the IPv6 literal",
        b"http://[::1]x/",
        "ERR_INVALID_URL",
        "after the IPv6 literal",
    ),
    (
        "RFC 3986 §3.2.2: bad port after the IPv6 literal",
        b"http://[::1]:x/",
        "ERR_INVALID_URL",
        "not a number",
    ),
    (
        "RFC 3986 §3.2.2: bracket inside a reg-name",
        b"http://a[b]/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "RFC 3986 §3.2.2: percent-encoded host",
        b"http://ex%61mple.com/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "RFC 3986 §3.2.2: sub-delims in a host",
        b"http://a,b.example/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "RFC 3986 §3.2.2: backslash in a host",
        b"http://evil.example\\@good.example/",
        "ERR_INVALID_URL",
        "userinfo",
    ),
    (
        "RFC 3986 §3.2.2: backslash in a host without @",
        b"http://a\\b/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    ("RFC 1123 §2.1: empty label", b"http://a..b/", "ERR_INVALID_URL", "not a valid host name"),
    (
        "RFC 1123 §2.1: leading dot",
        b"http://.example/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "RFC 1123 §2.1: label starting with a hyphen",
        b"http://-a.example/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "RFC 1034 §3.1: label longer than 63 octets",
        b"http://" + b"a" * 64 + b".example/",
        "ERR_INVALID_URL",
        "not a valid host name",
    ),
    (
        "WHATWG URL: a bare 32-bit number is not a host name",
        b"http://2130706433/",
        "ERR_INVALID_URL",
        "dotted-quad",
    ),
    ("WHATWG URL: hexadecimal IPv4", b"http://0x7f.0.0.1/", "ERR_INVALID_URL", "dotted-quad"),
    ("WHATWG URL: octal IPv4", b"http://0177.0.0.1/", "ERR_INVALID_URL", "dotted-quad"),
    ("WHATWG URL: short IPv4", b"http://127.1/", "ERR_INVALID_URL", "dotted-quad"),
    (
        "WHATWG URL: numeric top-level label",
        b"http://example.123/",
        "ERR_INVALID_URL",
        "dotted-quad",
    ),
    (
        "RFC 3986 §3.2.2: IPv4 octet over 255",
        b"http://192.0.2.256/",
        "ERR_INVALID_URL",
        "dotted-quad",
    ),
    (
        "RFC 9112 §3.2: space in the request-target",
        b"http://example.com/a b",
        "ERR_INVALID_URL",
        "0x20",
    ),
    ("RFC 9112 §3.2: tab in the host", b"http://exa\tmple.com/", "ERR_INVALID_URL", "0x09"),
    (
        "RFC 9112 §3.2: CR LF in the path",
        b"http://example.com/\r\nX: y",
        "ERR_INVALID_URL",
        "0x0d",
    ),
    ("RFC 9112 §3.2: NUL in the path", b"http://example.com/\x00", "ERR_INVALID_URL", "0x00"),
    ("RFC 9112 §3.2: DEL in the path", b"http://example.com/\x7f", "ERR_INVALID_URL", "0x7f"),
    (
        "RFC 3986 §2: non-ASCII byte in the path",
        b"http://example.com/\xc3\xa9",
        "ERR_INVALID_URL",
        "0xc3",
    ),
    (
        "RFC 9112 §3.2: a fragment is never sent",
        b"http://example.com/a#frag",
        "ERR_INVALID_URL",
        "fragment",
    ),
    (
        "RFC 9112 §3.2: a fragment right after the host",
        b"http://example.com#x",
        "ERR_INVALID_URL",
        "fragment",
    ),
]

AUTHORITY_GOOD = [  # (why, authority, default port, expected)
    ("RFC 9112 §3.2.3: host and port", b"example.com:443", None, ("example.com", 443)),
    ("RFC 9112 §3.2.3: host lower-cased", b"Example.COM:443", None, ("example.com", 443)),
    ("RFC 9112 §3.2.3: IPv6 host and port", b"[2001:db8::1]:443", None, ("2001:db8::1", 443)),
    ("RFC 9112 §3.2.3: IPv4 host and port", b"192.0.2.1:8443", None, ("192.0.2.1", 8443)),
    ("RFC 3986 §3.2.3: default port used when given", b"example.com", 443, ("example.com", 443)),
    ("RFC 3986 §3.2.3: empty port is the default", b"example.com:", 443, ("example.com", 443)),
    ("RFC 3986 §3.2.2: IPv6 without port and a default", b"[::1]", 443, ("::1", 443)),
]

AUTHORITY_BAD = [  # (why, authority, default port, detail fragment)
    ("RFC 9112 §3.2.3: CONNECT requires a port", b"example.com", None, "port is required"),
    ("RFC 9112 §3.2.3: empty port without a default", b"example.com:", None, "port is required"),
    ("RFC 9112 §3.2.3: IPv6 without a port", b"[::1]", None, "port is required"),
    ("RFC 9112 §3.2.3: empty authority", b"", None, "host is missing"),
    ("RFC 9112 §3.2.3: port only", b":443", None, "host is missing"),
    ("RFC 9110 §4.2.4: userinfo", b"user:pw@example.com:443", None, "userinfo"),
    (
        "RFC 9112 §3.2.3: absolute URI is not an authority",
        b"http://example.com:443",
        None,
        "more than one ':'",
    ),
    (
        "RFC 9112 §3.2.3: path is not part of an authority",
        b"example.com:443/x",
        None,
        "not a number",
    ),
    ("RFC 3986 §3.2.3: port 0", b"example.com:0", None, "out of range"),
    ("RFC 3986 §3.2.3: port over 65535", b"example.com:70000", None, "out of range"),
    ("RFC 3986 §3.2.2: bad IPv6", b"[::g]:443", None, "not a valid IPv6"),
    ("RFC 9112 §3.2: whitespace", b"example.com :443", None, "0x20"),
]


class ParseAbsoluteTargetTests(SynchronousTestCase):
    """
    Tests for L{parse_absolute_target}.
    """

    def test_good_table(self) -> None:
        """
        Each acceptable absolute-form request-target parses to the row's L{Target}.
        """
        wrong: list[object] = []
        for why, uri, want in GOOD:
            try:
                got: object = parse_absolute_target(uri)
            except TargetError as e:
                got = e
            if got != want:
                wrong.append((why, uri, got, want))
        self.assertEqual(wrong, [])

    def test_bad_table(self) -> None:
        """
        Each unacceptable request-target raises L{TargetError} with status 400,
        the row's error name and a detail naming the problem.
        """
        wrong: list[object] = []
        for why, uri, name, fragment in BAD:
            try:
                got = parse_absolute_target(uri)
            except TargetError as e:
                if (e.name, e.status) != (name, 400) or fragment not in e.detail:
                    wrong.append((why, uri, e.name, e.status, e.detail))
            else:
                wrong.append((why, uri, got))
        self.assertEqual(wrong, [])

    def test_unsupported_scheme_detail(self) -> None:
        """
        An unsupported scheme gives exactly the agreed error triple.
        """
        e = self.assertRaises(TargetError, parse_absolute_target, b"ftp://example.com/")
        self.assertEqual(
            (e.name, e.status, e.detail), ("ERR_UNSUP_REQ", 400, "scheme 'ftp' is not supported")
        )

    def test_error_detail_is_printable(self) -> None:
        """
        Hostile bytes in a request-target are escaped in the error detail, so
        they cannot split a log line or inject markup.
        """
        e = self.assertRaises(TargetError, parse_absolute_target, b"http://a,<script>.example/")
        self.assertTrue(e.detail.isprintable())
        e = self.assertRaises(
            TargetError, parse_absolute_target, b"http://example.com:" + b"9" * 200
        )
        self.assertTrue(e.detail.isprintable())
        self.assertLess(len(e.detail), 200)

    def test_str(self) -> None:
        """
        C{str(TargetError)} shows the name, status and detail.
        """
        self.assertEqual(
            str(TargetError("ERR_INVALID_URL", 400, "bad")), "ERR_INVALID_URL (400): bad"
        )

    def test_supported_schemes_table(self) -> None:
        """
        C{http} and C{https} are supported, with their RFC 9110 §4.2.1-4.2.2
        default ports.
        """
        self.assertEqual(dict(SUPPORTED_SCHEMES), {"http": 80, "https": 443})


class TargetTests(SynchronousTestCase):
    """
    Tests for L{Target.authority} and L{Target.uri}.
    """

    def test_authority_table(self) -> None:
        """
        The authority omits the default port and brackets IPv6 (RFC 3986 §3.2).
        """
        cases = [
            (Target("http", "example.com", 80, b"/"), b"example.com"),
            (Target("http", "example.com", 8080, b"/"), b"example.com:8080"),
            (Target("http", "::1", 80, b"/"), b"[::1]"),
            (Target("http", "2001:db8::1", 3128, b"/"), b"[2001:db8::1]:3128"),
            (Target("http", "192.0.2.1", 80, b"/"), b"192.0.2.1"),
        ]
        wrong = [(t, t.authority, want) for t, want in cases if t.authority != want]
        self.assertEqual(wrong, [])

    def test_uri(self) -> None:
        """
        The URI is rebuilt from the normalized parts, path kept as received.
        """
        target = parse_absolute_target(b"HTTP://[2001:DB8::1]:80?a=%2F")
        self.assertEqual(target.uri, b"http://[2001:db8::1]/?a=%2F")

    def test_format_authority(self) -> None:
        """
        L{format_authority} keeps the port when there is no default.
        """
        self.assertEqual(format_authority("example.com", 443, None), b"example.com:443")
        self.assertEqual(format_authority("::1", 443, 443), b"[::1]")

    def test_frozen(self) -> None:
        """
        A L{Target} is immutable and hashable, so it can key a cache.
        """
        target = Target("http", "example.com", 80, b"/")
        self.assertEqual(hash(target), hash(Target("http", "example.com", 80, b"/")))
        self.assertRaises(AttributeError, setattr, target, "host", "other")


class ParseAuthorityTests(SynchronousTestCase):
    """
    Tests for L{parse_authority}, used for C{CONNECT} (RFC 9112 §3.2.3).
    """

    def test_good_table(self) -> None:
        """
        Each acceptable authority parses to the row's C{(host, port)}.
        """
        wrong: list[object] = []
        for why, authority, default, want in AUTHORITY_GOOD:
            try:
                got: object = parse_authority(authority, default)
            except TargetError as e:
                got = e
            if got != want:
                wrong.append((why, authority, got, want))
        self.assertEqual(wrong, [])

    def test_bad_table(self) -> None:
        """
        Each unacceptable authority raises an C{ERR_INVALID_URL} 400 naming the problem.
        """
        wrong: list[object] = []
        for why, authority, default, fragment in AUTHORITY_BAD:
            try:
                got = parse_authority(authority, default)
            except TargetError as e:
                if (e.name, e.status) != ("ERR_INVALID_URL", 400) or fragment not in e.detail:
                    wrong.append((why, authority, e.name, e.status, e.detail))
            else:
                wrong.append((why, authority, got))
        self.assertEqual(wrong, [])


_LABEL = st.from_regex(r"[a-z_]([a-z0-9_\-]{0,10}[a-z0-9_])?", fullmatch=True)
_HOSTS = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).compressed),
)
_PATH_CHARS = "abcXYZ019-._~!$&'()*+,;=:@/%?|{}[]\"<>^`\\"
_PATHS = st.text(alphabet=_PATH_CHARS, max_size=30).map(lambda p: ("/" + p).encode("ascii"))
_TARGETS = st.builds(
    Target,
    scheme=st.sampled_from(sorted(SUPPORTED_SCHEMES)),
    host=_HOSTS,
    port=st.integers(min_value=1, max_value=65535),
    path=_PATHS,
)


class PropertyTests(SynchronousTestCase):
    """
    Property tests for L{squeak.http.target}.
    """

    @given(_TARGETS)
    def test_round_trip(self, target: Target) -> None:
        """
        Parsing a target's URI gives the same target back.
        """
        self.assertEqual(parse_absolute_target(target.uri), target)

    @given(_TARGETS)
    def test_authority_round_trip(self, target: Target) -> None:
        """
        Parsing a target's authority with its default port gives its host and port.
        """
        self.assertEqual(
            parse_authority(target.authority, SUPPORTED_SCHEMES[target.scheme]),
            (target.host, target.port),
        )

    @given(st.binary(max_size=80))
    def test_arbitrary_bytes(self, uri: bytes) -> None:
        """
        Arbitrary bytes either parse to a target that round-trips or raise
        L{TargetError}; nothing else escapes.
        """
        try:
            target = parse_absolute_target(uri)
        except TargetError as e:
            self.assertEqual(e.status, 400)
        else:
            self.assertEqual(parse_absolute_target(target.uri), target)

    @given(st.binary(max_size=40).map(lambda b: b"http://" + b))
    def test_arbitrary_after_scheme(self, uri: bytes) -> None:
        """
        Arbitrary bytes after C{http://} either parse and round-trip or raise
        L{TargetError}.
        """
        try:
            target = parse_absolute_target(uri)
        except TargetError:
            pass
        else:
            self.assertEqual(parse_absolute_target(target.uri), target)

    @given(st.binary(max_size=40), st.sampled_from([None, 443]))
    def test_arbitrary_authority(self, authority: bytes, default: int | None) -> None:
        """
        Arbitrary bytes given to L{parse_authority} raise nothing but L{TargetError}.
        """
        try:
            host, port = parse_authority(authority, default)
        except TargetError:
            pass
        else:
            self.assertTrue(1 <= port <= 65535)
            self.assertEqual(host, host.lower())
