"""
Tests for L{squeak.http.sni}: ClientHellos from Python's own TLS stack, tables of
hand-built hellos that break one rule each, and fuzzing.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http.sni import (
    MAX_HELLO_RECORDS,
    MAX_HELLO_SIZE,
    MAX_PREFIX_SIZE,
    ClientHelloResult,
    Outcome,
    parse_client_hello,
)


def real_hello(
    server_hostname: str | None, maximum_version: ssl.TLSVersion | None = None
) -> bytes:
    """
    The first flight Python's C{ssl} module (OpenSSL) sends for a client
    connection to C{server_hostname}.
    """
    context = ssl.create_default_context()
    if server_hostname is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if maximum_version is not None:
        context.maximum_version = maximum_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def record(fragment: bytes, content_type: int = 22, version: bytes = b"\x03\x01") -> bytes:
    """
    One TLSPlaintext record (RFC 8446 §5.1).
    """
    return bytes([content_type]) + version + len(fragment).to_bytes(2, "big") + fragment


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    """
    One handshake message (RFC 8446 §4).
    """
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def vector(data: bytes, length_size: int) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def extension(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2, "big") + vector(data, 2)


def server_name(*names: bytes, name_type: int = 0) -> bytes:
    """
    A C{server_name} extension (RFC 6066 §3) listing C{names}.
    """
    entries = b"".join(bytes([name_type]) + vector(name, 2) for name in names)
    return extension(0, vector(entries, 2))


def hello_body(
    extensions: Iterable[bytes] | None = (),
    *,
    version: bytes = b"\x03\x03",
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01\x13\x02",
    compression: bytes = b"\x00",
    trailing: bytes = b"",
) -> bytes:
    """
    A ClientHello body (RFC 8446 §4.1.2); C{extensions=None} leaves the
    extensions block out entirely, as TLS 1.0-1.2 allow.
    """
    body = version + b"\x07" * 32 + vector(session_id, 1) + vector(suites, 2)
    body += vector(compression, 1)
    if extensions is not None:
        body += vector(b"".join(extensions), 2)
    return body + trailing


def hello(*extensions: bytes, **options: bytes) -> bytes:
    """
    A complete hello in one record.
    """
    return record(handshake(hello_body(extensions, **options)))


def split_into_records(data: bytes, sizes: Iterable[int]) -> bytes:
    """
    Re-frame the handshake bytes of a single-record hello into records of
    the given sizes (the rest in a last record).
    """
    message = data[5:]
    out = b""
    for size in sizes:
        if not message:
            break
        out += record(message[:size])
        message = message[size:]
    if message:
        out += record(message)
    return out


TLS13_SNI = real_hello("Www.Example.COM")
TLS12_SNI = real_hello("example.org", ssl.TLSVersion.TLSv1_2)
TLS13_NONE = real_hello(None)
TLS12_NONE = real_hello(None, ssl.TLSVersion.TLSv1_2)
IDN = real_hello("xn--bcher-kva.example")


class RealClientHelloTests(SynchronousTestCase):
    """
    Hellos that OpenSSL, through Python's C{ssl}, really sends.
    """

    def test_tls13_hello_with_sni(self) -> None:
        """
        A default (TLS 1.3) hello yields its server name, lower-cased
        (RFC 6066 §3; DNS names are case-insensitive).
        """
        result = parse_client_hello(TLS13_SNI)
        self.assertEqual(
            result,
            ClientHelloResult(
                Outcome.SNI, server_name="www.example.com", hello_end=len(TLS13_SNI)
            ),
        )

    def test_tls12_hello_with_sni(self) -> None:
        """
        A TLS 1.2-only hello (no supported_versions) yields its name too.
        """
        result = parse_client_hello(TLS12_SNI)
        self.assertEqual((result.outcome, result.server_name), (Outcome.SNI, "example.org"))

    def test_hellos_without_sni(self) -> None:
        """
        With C{server_hostname=None} OpenSSL sends no server_name: NO_SNI,
        for TLS 1.3 and 1.2 hellos.
        """
        got = [parse_client_hello(data).outcome for data in (TLS13_NONE, TLS12_NONE)]
        self.assertEqual(got, [Outcome.NO_SNI, Outcome.NO_SNI])

    def test_ip_address_target_sends_no_sni(self) -> None:
        """
        A client connecting to an IP address sends no SNI (RFC 6066 §3
        forbids literals), so its hello is NO_SNI, not an error.
        """
        self.assertEqual(parse_client_hello(real_hello("127.0.0.1")).outcome, Outcome.NO_SNI)

    def test_a_label_names(self) -> None:
        """
        Internationalized names arrive as A-labels and are accepted.
        """
        self.assertEqual(parse_client_hello(IDN).server_name, "xn--bcher-kva.example")

    def test_every_prefix_needs_more(self) -> None:
        """
        Each strict prefix of a real hello asks for more bytes, never more
        than are still to come.
        """
        wrong = []
        for data in (TLS13_SNI, TLS12_NONE):
            for cut in range(len(data)):
                result = parse_client_hello(data[:cut])
                if result.outcome is not Outcome.NEED_MORE or not (
                    0 < result.needed <= len(data) - cut
                ):
                    wrong.append((cut, result))
        self.assertEqual(wrong, [])

    def test_bytes_after_the_hello_are_ignored(self) -> None:
        """
        What follows the hello's records (early data, a ChangeCipherSpec)
        does not change the verdict; C{hello_end} says where the hello ended.
        """
        result = parse_client_hello(TLS13_SNI + record(b"\x01", content_type=20))
        self.assertEqual(
            (result.outcome, result.server_name, result.hello_end),
            (Outcome.SNI, "www.example.com", len(TLS13_SNI)),
        )

    def test_hello_split_across_records(self) -> None:
        """
        RFC 8446 §5.1: a handshake message may be fragmented across several
        records, even inside its 4-byte header.
        """
        wrong = []
        for sizes in ([1], [2, 1], [3, 100], [200], [4, 4, 4, 4, 4, 4, 4]):
            data = split_into_records(TLS13_SNI, sizes)
            result = parse_client_hello(data)
            if (result.outcome, result.server_name, result.hello_end) != (
                Outcome.SNI,
                "www.example.com",
                len(data),
            ):
                wrong.append((sizes, result))
        self.assertEqual(wrong, [])


# (why, input, expected outcome, a part of the reason)
CASES: list[tuple[str, bytes, Outcome, str]] = [
    ("empty input", b"", Outcome.NEED_MORE, ""),
    ("plain HTTP", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Outcome.NOT_TLS, "0x47"),
    ("SSLv2-style hello", b"\x80\x2e\x01\x03\x01", Outcome.NOT_TLS, "0x80"),
    (
        "RFC 8446 §5.1: application data first",
        record(b"x", content_type=23),
        Outcome.NOT_TLS,
        "content type 22",
    ),
    ("record version major 2", b"\x16\x02\x00\x00\x05", Outcome.NOT_TLS, "major 2"),
    ("record version 3.9", b"\x16\x03\x09\x00\x05", Outcome.NOT_TLS, "3.9"),
    (
        "RFC 8446 §5.1: zero-length handshake record",
        record(b"") + hello(),
        Outcome.MALFORMED,
        "empty",
    ),
    (
        "RFC 8446 §5.1: record over 2^14 bytes",
        b"\x16\x03\x01\x40\x01",
        Outcome.MALFORMED,
        "2^14",
    ),
    (
        "RFC 8446 §4: first handshake message is not a ClientHello",
        record(handshake(hello_body(), msg_type=2)),
        Outcome.MALFORMED,
        "not client_hello",
    ),
    (
        "ClientHello over the size limit",
        record(b"\x01" + (MAX_HELLO_SIZE).to_bytes(3, "big")),
        Outcome.MALFORMED,
        "limit",
    ),
    (
        "RFC 8446 §5.1: another record type between fragments",
        record(handshake(hello_body())[:10]) + record(b"\x01", content_type=21),
        Outcome.MALFORMED,
        "interleaved",
    ),
    (
        "too many fragments",
        split_into_records(hello(), [1] * (MAX_HELLO_RECORDS + 1)),
        Outcome.MALFORMED,
        "more than",
    ),
    (
        "RFC 8446 §4: the hello's fields run past the handshake length",
        record(b"\x01" + (len(hello_body()) - 1).to_bytes(3, "big") + hello_body()[:-1]),
        Outcome.MALFORMED,
        "",
    ),
    (
        "RFC 8446 §4.1.2: ClientHello version major 2",
        hello(version=b"\x02\x00"),
        Outcome.MALFORMED,
        "major 2",
    ),
    (
        "RFC 8446 §4.1.2: session id over 32 bytes",
        hello(session_id=b"s" * 33),
        Outcome.MALFORMED,
        "legacy_session_id",
    ),
    (
        "RFC 8446 §4.1.2: no cipher suites",
        hello(suites=b""),
        Outcome.MALFORMED,
        "cipher_suites",
    ),
    (
        "RFC 8446 §4.1.2: odd cipher suites length",
        hello(suites=b"\x13\x01\x13"),
        Outcome.MALFORMED,
        "odd",
    ),
    (
        "RFC 8446 §4.1.2: no compression methods",
        hello(compression=b""),
        Outcome.MALFORMED,
        "compression",
    ),
    (
        "RFC 8446 §4.1.2: bytes after the extensions",
        hello(server_name(b"a.example"), trailing=b"\x00"),
        Outcome.MALFORMED,
        "follow the extensions",
    ),
    (
        "extension length past the block",
        record(handshake(hello_body([b"\x00\x0a\x00\x05ab"]))),
        Outcome.MALFORMED,
        "extension 10",
    ),
    (
        "RFC 8446 §4.2: the same extension twice",
        hello(extension(10, b"\x00\x02\x00\x17"), extension(10, b"\x00\x02\x00\x17")),
        Outcome.MALFORMED,
        "appears twice",
    ),
    (
        "RFC 8446 §4.2: server_name twice",
        hello(server_name(b"a.example"), server_name(b"b.example")),
        Outcome.MALFORMED,
        "appears twice",
    ),
    (
        "RFC 6066 §3: two host names in one list",
        hello(server_name(b"a.example", b"b.example")),
        Outcome.MALFORMED,
        "more than one host_name",
    ),
    (
        "RFC 6066 §3: an empty server_name extension in a ClientHello",
        hello(extension(0, b"")),
        Outcome.MALFORMED,
        "server_name_list",
    ),
    (
        "RFC 6066 §3: an empty server_name_list",
        hello(extension(0, b"\x00\x00")),
        Outcome.MALFORMED,
        "server_name_list",
    ),
    (
        "RFC 6066 §3: bytes after the server_name_list",
        hello(extension(0, vector(b"\x00" + vector(b"a.example", 2), 2) + b"\x00")),
        Outcome.MALFORMED,
        "follow the server_name_list",
    ),
    (
        "RFC 6066 §3: unknown name type",
        hello(server_name(b"a.example", name_type=1)),
        Outcome.MALFORMED,
        "name type 1",
    ),
    (
        "RFC 6066 §3: empty HostName",
        hello(server_name(b"")),
        Outcome.MALFORMED,
        "HostName",
    ),
    (
        "RFC 6066 §3: non-ASCII HostName",
        hello(server_name("bücher.example".encode())),
        Outcome.MALFORMED,
        "not ASCII",
    ),
    (
        "RFC 6066 §3: IPv4 literal",
        hello(server_name(b"192.0.2.1")),
        Outcome.MALFORMED,
        "IP literal",
    ),
    (
        "RFC 6066 §3: IPv6 literal",
        hello(server_name(b"2001:db8::1")),
        Outcome.MALFORMED,
        "IP literal",
    ),
    (
        "RFC 6066 §3: bracketed IPv6 literal",
        hello(server_name(b"[2001:db8::1]")),
        Outcome.MALFORMED,
        "IP literal",
    ),
    (
        "RFC 6066 §3: numeric last label, read as IPv4 by resolvers",
        hello(server_name(b"0x7f.1")),
        Outcome.MALFORMED,
        "numeric",
    ),
    (
        "RFC 6066 §3: trailing dot",
        hello(server_name(b"a.example.")),
        Outcome.MALFORMED,
        "trailing dot",
    ),
    (
        "RFC 1123 §2.1: label starting with a hyphen",
        hello(server_name(b"-a.example")),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
    (
        "RFC 1123 §2.1: empty label",
        hello(server_name(b"a..example")),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
    (
        "RFC 1035 §2.3.4: label over 63 bytes",
        hello(server_name(b"a" * 64 + b".example")),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
    (
        "RFC 1035 §2.3.4: name over 253 bytes",
        hello(server_name(b".".join([b"a" * 60] * 5))),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
    (
        "a NUL in the name",
        hello(server_name(b"a.example\x00.evil")),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
    (
        "a space in the name",
        hello(server_name(b"a example")),
        Outcome.MALFORMED,
        "not a valid DNS host name",
    ),
]

# (why, input, expected outcome, expected server name)
VALID: list[tuple[str, bytes, Outcome, str | None]] = [
    ("RFC 5246 §7.4.1.2: no extensions block at all", hello_body(None), Outcome.NO_SNI, None),
    ("an empty extensions block", hello_body([]), Outcome.NO_SNI, None),
    (
        "other extensions only",
        hello_body([extension(10, b"\x00\x02\x00\x17")]),
        Outcome.NO_SNI,
        None,
    ),
    ("a host name", hello_body([server_name(b"a.example")]), Outcome.SNI, "a.example"),
    ("upper case is folded", hello_body([server_name(b"A.EXAMPLE")]), Outcome.SNI, "a.example"),
    ("a single label", hello_body([server_name(b"intranet")]), Outcome.SNI, "intranet"),
    ("an underscore", hello_body([server_name(b"a_b.example")]), Outcome.SNI, "a_b.example"),
    (
        "a numeric non-final label",
        hello_body([server_name(b"1.2.example")]),
        Outcome.SNI,
        "1.2.example",
    ),
    (
        "server_name after other extensions",
        hello_body([extension(43, b"\x02\x03\x04"), server_name(b"b.example")]),
        Outcome.SNI,
        "b.example",
    ),
    ("SSL 3.0 hello version", hello_body(None, version=b"\x03\x00"), Outcome.NO_SNI, None),
]


class ClientHelloTableTests(SynchronousTestCase):
    """
    Hand-built hellos that each break, or keep, one rule.
    """

    def test_refused_inputs(self) -> None:
        """
        Each row gets its outcome, with a reason naming the problem.
        """
        wrong = []
        for why, data, outcome, reason in CASES:
            result = parse_client_hello(data)
            if result.outcome is not outcome or reason not in result.reason:
                wrong.append((why, result))
            elif outcome in (Outcome.NOT_TLS, Outcome.MALFORMED) and not result.reason:
                wrong.append((why, "no reason", result))
        self.assertEqual(wrong, [])

    def test_accepted_inputs(self) -> None:
        """
        Each valid hello gets its outcome and name, in every record version
        a client may use (RFC 8446 §5.1: 0x0301 for the first hello, 0x0303
        otherwise, 0x0300 for SSL 3.0).
        """
        wrong = []
        for why, body, outcome, name in VALID:
            for version in (b"\x03\x00", b"\x03\x01", b"\x03\x03"):
                data = record(handshake(body), version=version)
                result = parse_client_hello(data)
                if (result.outcome, result.server_name, result.hello_end) != (
                    outcome,
                    name,
                    len(data),
                ):
                    wrong.append((why, version, result))
        self.assertEqual(wrong, [])

    def test_largest_hello_is_read(self) -> None:
        """
        A hello of exactly L{MAX_HELLO_SIZE} bytes, in two records, is read;
        until it is complete the parser asks for more, and only below
        L{MAX_PREFIX_SIZE} bytes.
        """
        padding = extension(21, b"\x00" * 100)
        base = len(handshake(hello_body([server_name(b"big.example"), padding])))
        pad = extension(21, b"\x00" * (100 + MAX_HELLO_SIZE - base))
        message = handshake(hello_body([server_name(b"big.example"), pad]))
        self.assertEqual(len(message), MAX_HELLO_SIZE)
        data = record(message[: 2**13]) + record(message[2**13 :])
        self.assertLessEqual(len(data), MAX_PREFIX_SIZE)
        self.assertEqual(parse_client_hello(data).server_name, "big.example")
        partial = parse_client_hello(data[:-1])
        self.assertEqual((partial.outcome, partial.needed), (Outcome.NEED_MORE, 1))

    def test_one_byte_over_the_limit(self) -> None:
        """
        A hello one byte larger than L{MAX_HELLO_SIZE} is refused as soon as
        its header is seen, without waiting for the rest.
        """
        header = b"\x01" + (MAX_HELLO_SIZE - 3).to_bytes(3, "big")
        result = parse_client_hello(record(header + b"\x03\x03"))
        self.assertEqual(result.outcome, Outcome.MALFORMED)
        self.assertIn("limit", result.reason)

    def test_bad_record_header_is_seen_early(self) -> None:
        """
        Garbage is refused at its first byte, without waiting for a whole
        record header.
        """
        self.assertEqual(parse_client_hello(b"\x00").outcome, Outcome.NOT_TLS)
        self.assertEqual(parse_client_hello(b"\x16").outcome, Outcome.NEED_MORE)
        self.assertEqual(parse_client_hello(b"\x16\x00").outcome, Outcome.NOT_TLS)


REAL = [TLS13_SNI, TLS12_SNI, TLS13_NONE, TLS12_NONE]


@st.composite
def mutated_hellos(draw: st.DrawFn) -> bytes:
    """
    A real hello with a few bytes replaced, removed or inserted.
    """
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        if action == "replace":
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:]
        if not data:
            break
    return bytes(data)


def _consistent(result: ClientHelloResult, data: bytes) -> bool:
    """
    The fields of a result agree with its outcome.
    """
    if result.outcome is Outcome.NEED_MORE:
        return result.needed > 0 and len(data) < MAX_PREFIX_SIZE and result.server_name is None
    if result.outcome in (Outcome.NOT_TLS, Outcome.MALFORMED):
        return bool(result.reason) and result.server_name is None and result.needed == 0
    if result.outcome is Outcome.NO_SNI:
        return result.server_name is None and 0 < result.hello_end <= len(data)
    name = result.server_name or ""
    return (
        name == name.lower()
        and name.isascii()
        and 0 < len(name) <= 253
        and 0 < result.hello_end <= len(data)
    )


class ClientHelloFuzzTests(SynchronousTestCase):
    """
    Property tests: the parser returns a consistent result for any input.
    """

    @given(st.binary(max_size=600))
    @settings(max_examples=500)
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Random bytes never make the parser raise.
        """
        self.assertTrue(_consistent(parse_client_hello(data), data))

    @given(st.binary(max_size=400))
    @settings(max_examples=300)
    def test_arbitrary_handshake_records(self, payload: bytes) -> None:
        """
        Random bytes inside a valid handshake record header (so the
        parser gets past the record layer) never make it raise.
        """
        for data in (record(payload), record(b"\x01" + payload)):
            self.assertTrue(_consistent(parse_client_hello(data), data))

    @given(mutated_hellos())
    @settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
    def test_mutated_real_hellos(self, data: bytes) -> None:
        """
        Real hellos with a few bytes changed, removed or added never make
        the parser raise, and any name it returns is a valid one.
        """
        self.assertTrue(_consistent(parse_client_hello(data), data))

    @given(
        st.sampled_from(REAL),
        st.lists(st.integers(1, 600), min_size=1, max_size=MAX_HELLO_RECORDS - 1),
    )
    def test_fragmentation_does_not_change_the_verdict(
        self, data: bytes, sizes: list[int]
    ) -> None:
        """
        However a hello is split into records, the verdict is the same
        (RFC 8446 §5.1).
        """
        expected = parse_client_hello(data)
        result = parse_client_hello(split_into_records(data, sizes))
        self.assertEqual(
            (result.outcome, result.server_name), (expected.outcome, expected.server_name)
        )

    @given(st.sampled_from(REAL), st.binary(max_size=100))
    def test_trailing_bytes_do_not_change_the_verdict(self, data: bytes, tail: bytes) -> None:
        """
        Bytes after the hello's records are not looked at.
        """
        self.assertEqual(parse_client_hello(data + tail), parse_client_hello(data))
