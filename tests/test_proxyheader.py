"""
Where a PROXY protocol header ends, who may send one, and the
[proxy_protocol] checks (squeak.proxyheader, pure).
"""

from __future__ import annotations

import ipaddress
import struct

from twisted.trial.unittest import SynchronousTestCase

from squeak.config import ConfigError, ListenAddress, parse_config
from squeak.proxyheader import (
    V1_MAX_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    HeaderError,
    ProxyProtocolConfig,
    header_length,
    is_trusted,
    proxy_protocol_problem,
)

V1 = b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 3128\r\n"
V2 = (
    V2_SIGNATURE
    + b"\x21\x11"
    + struct.pack("!H", 12)
    + bytes([192, 0, 2, 7, 10, 0, 0, 2])
    + struct.pack("!HH", 51000, 3128)
)


class HeaderLengthTests(SynchronousTestCase):
    """
    header_length: the spec's framing (§2.1 for v1, §2.2 for v2).
    """

    def test_every_prefix_waits_and_the_whole_header_is_measured(self) -> None:
        """
        Split anywhere before its end, a header is waited for (None); whole,
        with or without bytes after it, its length is given.  So how the
        bytes were cut into segments never changes the verdict.
        """
        wrong = []
        for header in (V1, V2, b"PROXY UNKNOWN\r\n"):
            for cut in range(len(header)):
                if (got := header_length(header[:cut])) is not None:
                    wrong.append((header, cut, got))
            for after in (b"", b"GET / HTTP/1.1\r\n"):
                if (got := header_length(header + after)) != len(header):
                    wrong.append((header, after, got))
        self.assertEqual(wrong, [])

    def test_refusals(self) -> None:
        """
        Bytes that can never become a header are refused as soon as that
        is certain, each with its reason.
        """
        cases = [
            (b"GET http://x/ HTTP/1.1\r\n", "no PROXY protocol header"),
            (b"G", "no PROXY protocol header"),
            (b"PROXX", "no PROXY protocol header"),
            (b"\r\n\r\n\x00\r\nQUIX", "no PROXY protocol header"),
            (b"\r\nGET / HTTP/1.1\r\n", "no PROXY protocol header"),
            (V2_SIGNATURE + b"\x11\x11\x00\x0c", "unknown version 1"),
            (V2_SIGNATURE + b"\x21\x11\xff\xff", f"most accepted: {V2_MAX_LENGTH}"),
            (b"PROXY " + b"1" * (V1_MAX_LENGTH - 6), f"first {V1_MAX_LENGTH} bytes"),
            (b"PROXY TCP4 1.2.3.4\n", "malformed PROXY protocol v1 header"),
        ]
        wrong = []
        for data, reason in cases:
            try:
                got = str(header_length(data))
            except HeaderError as error:
                got = str(error)
            if reason not in got:
                wrong.append((data, got, reason))
        self.assertEqual(wrong, [])

    def test_longest_v1_header_is_accepted(self) -> None:
        """
        A v1 header of exactly 107 bytes, CRLF included, is one.
        """
        header = b"PROXY " + b"x" * (V1_MAX_LENGTH - 8) + b"\r\n"
        self.assertEqual(len(header), V1_MAX_LENGTH)
        self.assertEqual(header_length(header), V1_MAX_LENGTH)


class TrustTests(SynchronousTestCase):
    """
    is_trusted: only peers in [proxy_protocol] trusted may send a header.
    """

    def test_table(self) -> None:
        """
        Addresses in and out of the trusted networks, IPv4-mapped peers as
        their IPv4 address, and a peer that is not an address.
        """
        trusted = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8::/64"))
        cases = [
            ("10.0.0.5", True),
            ("10.0.1.5", False),
            ("::ffff:10.0.0.9", True),
            ("2001:db8::1", True),
            ("2001:db9::1", False),
            ("fe80::1%eth0", False),
            ("-", False),
        ]
        wrong = [(peer, want) for peer, want in cases if is_trusted(peer, trusted) != want]
        self.assertEqual(wrong, [])


class ConfigTests(SynchronousTestCase):
    """
    [proxy_protocol] in a configuration file.
    """

    def test_problems(self) -> None:
        """
        A listener that is not a proxy or TLS port, an intercept listener,
        and listeners without trusted networks are each refused.
        """
        plain = ListenAddress("10.0.0.1", 3128)
        tls = ListenAddress("10.0.0.1", 3129)
        intercept = ListenAddress("10.0.0.1", 3130)
        net = (ipaddress.ip_network("10.0.0.0/24"),)
        cases = [
            (ProxyProtocolConfig((plain, tls), net), None),
            (ProxyProtocolConfig((), ()), None),
            (ProxyProtocolConfig((intercept,), net), "an intercept listener"),
            (ProxyProtocolConfig((ListenAddress("10.0.0.1", 1),), net), "is not one of"),
            (ProxyProtocolConfig((plain,), ()), "need the networks"),
        ]
        wrong = []
        for settings, want in cases:
            problem = proxy_protocol_problem(settings, [plain], [tls], [intercept])
            got = None if problem is None else problem[2]
            if (want is None) != (got is None) or (want and got and want not in got):
                wrong.append((settings, got, want))
        self.assertEqual(wrong, [])

    def test_loaded_and_errors_name_key_and_line(self) -> None:
        """
        The table loads; a wrong listener is a ConfigError naming the key
        and its line; an open trusted network is refused.
        """
        config = parse_config(
            '[proxy]\nhttp_port = ["0.0.0.0:3128"]\n'
            '[proxy_protocol]\nlisteners = ["0.0.0.0:3128"]\ntrusted = ["10.0.0.5/32"]\n',
            "squeak.toml",
        )
        self.assertEqual(config.proxy_protocol.listeners, (ListenAddress("0.0.0.0", 3128),))
        with self.assertRaises(ConfigError) as raised:
            parse_config(
                '[proxy_protocol]\ntrusted = ["10.0.0.5/32"]\nlisteners = ["127.0.0.1:80"]\n',
                "squeak.toml",
            )
        self.assertEqual(
            str(raised.exception),
            "squeak.toml:3: proxy_protocol.listeners: 127.0.0.1:80 is not one of the "
            "proxy.http_port or tls.https_port addresses",
        )
        with self.assertRaises(ConfigError) as raised:
            parse_config('[proxy_protocol]\ntrusted = ["0.0.0.0/0"]\n', "squeak.toml")
        self.assertIn("proxy_protocol.trusted", str(raised.exception))
        self.assertIn("anyone claim any client address", str(raised.exception))
