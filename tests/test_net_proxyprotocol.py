"""
The PROXY protocol on a listener (squeak.net.proxyprotocol): the header's
client address is what the access rules, X-Forwarded-For and the access
log see; an untrusted peer, a missing or malformed header close the
connection with one log line.  Over real loopback sockets, the trusted and
untrusted balancers being different 127.0.0.x source addresses; the
header timeout and the hand-over on fake transports.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from squeak.config import ListenAddress
from squeak.net.proxyprotocol import ProxyHeaderFactory, read_source
from squeak.proxyheader import V2_SIGNATURE, HeaderError
from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.tlsfixtures import make_server_files

TRUSTED = "127.0.0.2"
UNTRUSTED = "127.0.0.3"


def v1_header(source: str, port: int = 51000) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 3128\r\n".encode()


def v2_header(source: str, port: int = 51000, *, command: int = 1, tlvs: bytes = b"") -> bytes:
    """
    A version 2 header (§2.2): PROXY (1) or LOCAL (0), TCP over IPv4 or
    IPv6, with optional TLV bytes after the addresses.
    """
    address = ipaddress.ip_address(source)
    if address.version == 4:
        family = 0x11
        block = address.packed + ipaddress.IPv4Address("127.0.0.1").packed
    else:
        family = 0x21
        block = address.packed + ipaddress.IPv6Address("::1").packed
    block += struct.pack("!HH", port, 3128) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


class _Balancer:
    """
    A load balancer's side of one connection, from a chosen loopback source
    address: sends the pieces (with a pause between them, so each is its
    own TCP segment) and reads until the proxy closes.
    """

    def __init__(self, proxy_port: int, source: str) -> None:
        self.proxy_port = proxy_port
        self.source = source

    def send(self, *pieces: bytes, pause: float = 0.05) -> bytes:
        with socket.socket() as s:
            s.settimeout(10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.bind((self.source, 0))
            data = b""
            try:
                # A refused peer may be reset while connecting or sending.
                s.connect(("127.0.0.1", self.proxy_port))
                for number, piece in enumerate(pieces):
                    if number:
                        time.sleep(pause)
                    s.sendall(piece)
                while chunk := s.recv(65536):
                    data += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass
            return data


def _request(url: str) -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def _forwarded_for(raw: bytes) -> list[str]:
    """
    The X-Forwarded-For values the echoing origin saw, from its answer.
    """
    echoed = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return [value for name, value in echoed["headers"] if name.lower() == "x-forwarded-for"]


class ProxyProtocolListenerTests(ProxyTestCase):
    """
    A proxy.http_port listener named in [proxy_protocol] listeners, behind a
    balancer at 127.0.0.2.
    """

    config_overrides = {
        "proxy_protocol": {
            "listeners": (ListenAddress("127.0.0.1", 0),),
            "trusted": (ipaddress.ip_network(f"{TRUSTED}/32"),),
        }
    }

    def setUp(self) -> Any:
        super().setUp()
        self.messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            self.messages.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        # Clients the balancer speaks for: 192.0.2.0/24 and 2001:db8::/32.
        self.use_access_config(
            """
            [acl]
            lb_clients = { src = ["192.0.2.0/24", "2001:db8::/32"] }
            [access]
            http_access = ["allow lb_clients", "deny all"]
            """
        )
        self.origin = Origin(reactor)
        self.listen(self.origin)

    def _send(self, source: str, *pieces: bytes) -> Deferred[bytes]:
        return threads.deferToThread(_Balancer(self.proxy_port, source).send, *pieces)

    def _proxy_protocol_lines(self) -> list[str]:
        return [m for m in self.messages if m.startswith("PROXY protocol:")]

    async def test_v1_header_names_the_client_for_rules_forwarded_for_and_log(self) -> None:
        """
        A v1 header from the trusted balancer: the request is admitted by a
        src rule on the header's address, which the origin sees in
        X-Forwarded-For and the access log records as the client.
        """
        raw = await self._send(
            TRUSTED, v1_header("192.0.2.7") + _request(self.origin.url("/echo/v1"))
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:300])
        self.assertEqual(_forwarded_for(raw), ["192.0.2.7"])
        [line] = [line for line in self.access_log_lines() if "/echo/v1" in line]
        self.assertEqual(line.split()[2], "192.0.2.7", line)
        self.assertEqual(self._proxy_protocol_lines(), [])

    async def test_v2_header_with_ipv6_client_and_tlvs(self) -> None:
        """
        A v2 header naming an IPv6 client, with a TLV after the addresses
        (as AWS and Azure balancers add), works the same way.
        """
        tlv = b"\x04" + struct.pack("!H", 3) + b"abc"  # PP2_TYPE_NOOP
        raw = await self._send(
            TRUSTED, v2_header("2001:db8::7", tlvs=tlv) + _request(self.origin.url("/echo/v2"))
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:300])
        self.assertEqual(_forwarded_for(raw), ["2001:db8::7"])
        [line] = [line for line in self.access_log_lines() if "/echo/v2" in line]
        self.assertEqual(line.split()[2], "2001:db8::7", line)

    async def test_src_rule_denies_a_header_address_outside_it(self) -> None:
        """
        The rules judge the header's address, not the balancer's: a client
        outside lb_clients is denied, and logged under its own address.
        """
        raw = await self._send(
            TRUSTED, v2_header("198.51.100.9") + _request(self.origin.url("/echo/out"))
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 403 "), raw[:300])
        self.assertEqual(self.origin.requests, [])
        [line] = [line for line in self.access_log_lines() if "/echo/out" in line]
        self.assertEqual(line.split()[2], "198.51.100.9", line)
        self.assertIn("TCP_DENIED/403", line)

    async def test_header_split_across_segments(self) -> None:
        """
        Headers that arrive a few bytes at a time (v2 in three segments, the
        first shorter than its fixed part; v1 cut inside an address) are
        waited for, and the request after them is served.
        """
        header = v2_header("192.0.2.8")
        raw = await self._send(
            TRUSTED,
            header[:5],
            header[5:15],
            header[15:] + _request(self.origin.url("/echo/split2")),
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:300])
        self.assertEqual(_forwarded_for(raw), ["192.0.2.8"])
        header = v1_header("192.0.2.9")
        raw = await self._send(
            TRUSTED,
            header[:3],
            header[3:14],
            header[14:],
            _request(self.origin.url("/echo/split1")),
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:300])
        self.assertEqual(_forwarded_for(raw), ["192.0.2.9"])

    async def test_header_from_an_untrusted_source_closes_the_connection(self) -> None:
        """
        A header from a peer outside [proxy_protocol] trusted (v1 and v2) is
        not believed: the connection is closed unanswered, nothing reaches
        the origin, and one line per connection says why.
        """
        for header in (v1_header("192.0.2.7"), v2_header("192.0.2.7")):
            raw = await self._send(UNTRUSTED, header + _request(self.origin.url("/echo/u")))
            self.assertEqual(raw, b"")
        self.assertEqual(self.origin.requests, [])
        lines = self._proxy_protocol_lines()
        self.assertEqual(len(lines), 2, lines)
        for line in lines:
            self.assertIn(f"from {UNTRUSTED}", line)
            self.assertIn("not a trusted source", line)

    async def test_missing_header_closes_the_connection(self) -> None:
        """
        A trusted peer that sends a request without a header is cut off
        without an answer (anything it sends could be taken for a header
        otherwise), with one line saying what the connection began with.
        """
        raw = await self._send(TRUSTED, _request(self.origin.url("/echo/none")))
        self.assertEqual(raw, b"")
        self.assertEqual(self.origin.requests, [])
        [line] = self._proxy_protocol_lines()
        self.assertIn("no PROXY protocol header", line)
        self.assertIn('"GET http://', line)

    async def test_malformed_headers_close_the_connection(self) -> None:
        """
        A v1 header with a port that is not a number, one with an address
        that is not one, and a v2 header of an unknown version are refused
        with a line each; nothing reaches the origin.
        """
        bad_v2 = bytearray(v2_header("192.0.2.7"))
        bad_v2[12] = 0x31
        headers = [
            b"PROXY TCP4 192.0.2.7 127.0.0.1 port 3128\r\n",
            b"PROXY TCP4 not-an-address 127.0.0.1 5000 3128\r\n",
            bytes(bad_v2),
        ]
        for header in headers:
            raw = await self._send(TRUSTED, header + _request(self.origin.url("/echo/m")))
            self.assertEqual(raw, b"")
        self.assertEqual(self.origin.requests, [])
        lines = self._proxy_protocol_lines()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("malformed PROXY protocol v1 header", lines[0])
        self.assertIn("invalid source address", lines[1])
        self.assertIn("unknown version 3", lines[2])

    async def test_local_command_keeps_the_balancers_address(self) -> None:
        """
        A v2 LOCAL header (a balancer's own health check) names no client:
        the balancer's address is the client's, and the rules judge it.
        """
        raw = await self._send(
            TRUSTED, v2_header("192.0.2.7", command=0) + _request(self.origin.url("/echo/l"))
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 403 "), raw[:300])
        [line] = [line for line in self.access_log_lines() if "/echo/l" in line]
        self.assertEqual(line.split()[2], TRUSTED, line)


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class _RecordingFactory(Factory):
    def __init__(self) -> None:
        self.addresses: list[Any] = []
        self.protocols: list[_Recorder] = []

    def buildProtocol(self, addr: Any) -> _Recorder:
        self.addresses.append(addr)
        protocol = _Recorder()
        self.protocols.append(protocol)
        return protocol


class ProxyHeaderReaderTests(SynchronousTestCase):
    """
    The reader on a fake transport and clock.
    """

    def _reader(self, peer: str = "10.0.0.5") -> tuple[Any, Any, Any, Any]:
        clock = MemoryReactorClock()
        inner = _RecordingFactory()
        factory = ProxyHeaderFactory(
            inner,
            (ipaddress.ip_network("10.0.0.0/24"),),
            clock,
            timeout=5.0,
            name="proxy.http_port=10.0.0.1:3128",
        )
        reader = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        transport.protocol = reader
        reader.makeConnection(transport)
        return reader, transport, clock, inner

    def test_hands_over_with_the_header_address_and_following_bytes(self) -> None:
        """
        Once the header is in, the listener's protocol is built for the
        header's source, becomes the transport's protocol, and gets the
        bytes that came with the header; the reader's timer is cancelled.
        """
        reader, transport, clock, inner = self._reader()
        reader.dataReceived(v1_header("192.0.2.7", 5555) + b"GET / HTTP/1.1\r\n")
        self.assertEqual(inner.addresses, [IPv4Address("TCP", "192.0.2.7", 5555)])
        [protocol] = inner.protocols
        self.assertIs(transport.protocol, protocol)
        self.assertEqual(protocol.received, b"GET / HTTP/1.1\r\n")
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(transport.disconnecting)

    def test_header_not_complete_in_time_closes(self) -> None:
        """
        A trusted peer that sends part of a header and stalls is cut off
        after the timeout (timeouts.request_head), with a line saying so.
        """
        messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            messages.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        reader, transport, clock, inner = self._reader()
        reader.dataReceived(b"PROXY TCP4 192.0")
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(inner.protocols, [])
        self.assertTrue(any("within 5s" in m for m in messages), messages)

    def test_untrusted_peer_is_closed_before_reading(self) -> None:
        """
        A peer outside the trusted networks is closed as it connects, and
        no timer is left behind.
        """
        reader, transport, clock, inner = self._reader(peer="10.0.1.5")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])
        reader.dataReceived(v1_header("192.0.2.7"))
        self.assertEqual(inner.protocols, [])


class ReadSourceTests(SynchronousTestCase):
    """
    read_source over Twisted's parsers, with squeak's checks.
    """

    def test_table(self) -> None:
        """
        Each whole header gives its source address, none (LOCAL, UNKNOWN),
        or a HeaderError.
        """
        cases: list[tuple[str, bytes, Any]] = [
            ("v1 TCP4", v1_header("192.0.2.1", 1000), ("192.0.2.1", 1000)),
            ("v1 TCP6", v1_header("2001:db8::1", 1001), ("2001:db8::1", 1001)),
            ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n", None),
            ("v2 TCP4", v2_header("192.0.2.2", 1002), ("192.0.2.2", 1002)),
            ("v2 TCP6", v2_header("2001:db8::2", 1003), ("2001:db8::2", 1003)),
            ("v2 LOCAL", v2_header("192.0.2.2", command=0), None),
            ("v1 port not a number", b"PROXY TCP4 1.2.3.4 5.6.7.8 x 80\r\n", HeaderError),
            ("v1 address not one", b"PROXY TCP4 1.2.3.999 5.6.7.8 1 80\r\n", HeaderError),
            ("v1 missing port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", HeaderError),
            ("v1 unknown family", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 80\r\n", HeaderError),
            ("v2 address block short", V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), HeaderError),
            ("v2 unknown command", V2_SIGNATURE + b"\x25\x11\x00\x00", HeaderError),
        ]
        wrong = []
        for why, header, want in cases:
            try:
                source = read_source(header)
                got: Any = None if source is None else (source.host, source.port)
            except HeaderError:
                got = HeaderError
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])


class ProxyProtocolTlsListenerTests(ProxyTestCase):
    """
    A tls.https_port listener named in [proxy_protocol] listeners: the
    header comes first, in clear, then the TLS handshake.
    """

    def setUp(self) -> Any:
        directory = Path(os.path.abspath(self.mktemp()))
        self.files = make_server_files(directory, ["127.0.0.1"])
        listener = ListenAddress("127.0.0.1", 0)
        self.config_overrides = {
            "tls": {
                "https_port": (listener,),
                "certificate": str(self.files.certificate),
                "key": str(self.files.key),
            },
            # Port 0 in tests: both listeners match, and both take headers.
            "proxy_protocol": {
                "listeners": (listener,),
                "trusted": (ipaddress.ip_network(f"{TRUSTED}/32"),),
            },
        }
        result = super().setUp()
        self.tls_port = self.service.services[2].port.getHost().port
        self.use_access_config(
            """
            [acl]
            lb_clients = { src = ["192.0.2.0/24"] }
            [access]
            http_access = ["allow lb_clients", "deny all"]
            """
        )
        return result

    async def test_header_then_tls(self) -> None:
        """
        The header's client address is the one the rules and the access log
        see for a request sent inside TLS after it.
        """
        origin = Origin(reactor)
        self.listen(origin)
        context = ssl.create_default_context(cafile=str(self.files.ca))

        def fetch() -> bytes:
            with socket.socket() as raw:
                raw.settimeout(10)
                raw.bind((TRUSTED, 0))
                raw.connect(("127.0.0.1", self.tls_port))
                raw.sendall(v1_header("192.0.2.44"))
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(_request(origin.url("/echo/tls")))
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                    return data

        data = await threads.deferToThread(fetch)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        self.assertEqual(_forwarded_for(data), ["192.0.2.44"])
        [line] = [line for line in self.access_log_lines() if "/echo/tls" in line]
        self.assertEqual(line.split()[2], "192.0.2.44", line)
