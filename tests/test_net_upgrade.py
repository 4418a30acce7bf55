"""
Protocol upgrades (WebSocket) through the proxy: a real handshake and a
hand-checked frame exchange with a loopback WebSocket echo server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from typing import Any

from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from squeak.net.upgrade import BadResponseHeadError, UpgradeUpstream, parse_response_head
from tests.proxyharness import ProxyTestCase

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept(key: bytes) -> bytes:
    """RFC 6455 §4.2.2: the Sec-WebSocket-Accept for a key."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class _WebSocketEcho(protocol.Protocol):
    """
    A minimal RFC 6455 server: checks the handshake, answers 101, then
    unmasks each client frame and echoes its payload in an unmasked frame.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.upgraded = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.factory.heads.append(head)
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            }
            if fields.get(b"upgrade", b"").lower() != b"websocket":
                body = b"upgrade required"
                self.transport.write(
                    b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                return
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + _accept(fields[b"sec-websocket-key"])
                + b"\r\n\r\n"
            )
            self.upgraded = True
        while len(self.buffer) >= 6:
            first, second = self.buffer[0], self.buffer[1]
            length = second & 0x7F
            if length > 125 or not second & 0x80:
                self.transport.loseConnection()
                return
            if len(self.buffer) < 6 + length:
                return
            mask = self.buffer[2:6]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buffer[6 : 6 + length]))
            self.buffer = self.buffer[6 + length :]
            self.transport.write(bytes([first, len(payload)]) + payload)


def _masked_text_frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + body


class UpgradeTests(ProxyTestCase):
    """
    An upgrade request answered 101 becomes a tunnel; otherwise the answer
    is relayed and the connection closes.
    """

    def _origin(self) -> tuple[Any, int]:
        factory = protocol.ServerFactory.forProtocol(_WebSocketEcho)
        factory.noisy = False
        factory.heads = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    async def test_websocket_echo_through_the_proxy(self) -> None:
        """
        The handshake reaches the origin with its Upgrade fields, the 101
        comes back with a correct Sec-WebSocket-Accept, and a masked text
        frame is echoed through the tunnel.
        """
        factory, port = self._origin()
        key = base64.b64encode(os.urandom(16))

        def exchange() -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10) as s:
                s.sendall(
                    f"GET http://127.0.0.1:{port}/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key.decode()}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                data = b""
                while b"\r\n\r\n" not in data:
                    data += s.recv(4096)
                head, _, rest = data.partition(b"\r\n\r\n")
                s.sendall(_masked_text_frame(b"hello through squeak"))
                while len(rest) < 2 + len(b"hello through squeak"):
                    rest += s.recv(4096)
                return head, rest

        head, frame = await threads.deferToThread(exchange)
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 101 Switching Protocols")
        self.assertIn(b"Sec-WebSocket-Accept: " + _accept(key), lines)
        self.assertIn(b"Upgrade: websocket", lines)
        self.assertEqual(frame, b"\x81\x14hello through squeak")
        [origin_head] = factory.heads
        self.assertIn(b"Upgrade: websocket", origin_head)
        self.assertIn(b"Connection: Upgrade", origin_head)
        self.assertTrue(origin_head.startswith(b"GET /chat HTTP/1.1\r\n"))

    async def test_refused_upgrade_is_relayed_then_closed(self) -> None:
        """
        An origin that answers the upgrade request with 426 has its answer
        relayed whole, and the client connection then closes.
        """
        _factory, port = self._origin()
        request = (
            f"GET http://127.0.0.1:{port}/chat HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        ).encode()
        raw = await threads.deferToThread(self.raw_exchange, request)
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 426"), head)
        self.assertEqual(body, b"upgrade required")


#: Response heads the pooled client refuses with 502, each with the detail
#: it gives; the upgrade path must refuse them too (RFC 9112 §4, RFC 9110
#: §5.5, RFC 9112 §6.3).
_REFUSED_HEADS = [
    (b"HTTP/9.9 000 Nonsense\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "invalid characters"),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "2 Content-Length fields",
    ),
]


class _CannedOrigin(protocol.Protocol):
    """
    Answers any request with the factory's canned bytes and records when
    its connection is lost.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(self.factory.answer)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.callback(None)


class UpgradeRefusalTests(ProxyTestCase):
    """
    The upgrade path refuses what the pooled client refuses: the client is
    answered 502 and the connection to the origin is closed.
    """

    async def test_refused_heads_are_answered_502(self) -> None:
        """
        A status line C{HTTP/9.9 000}, a NUL inside a field value and a
        duplicated C{Content-Length} are answered with 502
        C{ERR_INVALID_RESP}, never relayed, and the origin connection is
        closed.
        """
        for answer, _detail in _REFUSED_HEADS:
            factory = protocol.ServerFactory.forProtocol(_CannedOrigin)
            factory.noisy = False
            factory.answer = answer
            factory.lost = defer.Deferred()
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            number = port.getHost().port
            request = (
                f"GET http://127.0.0.1:{number}/chat HTTP/1.1\r\nHost: 127.0.0.1:{number}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n"
            ).encode()
            raw = await threads.deferToThread(self.raw_exchange, request)
            self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), (answer, raw[:200]))
            self.assertIn(b"ERR_INVALID_RESP", raw, answer)
            await factory.lost


class UpgradeUpstreamTests(SynchronousTestCase):
    """
    L{UpgradeUpstream} reads the origin's head with the pooled client's
    reader (L{squeak.http.response}).
    """

    def _answered(self, data: bytes) -> tuple[UpgradeUpstream, StringTransport]:
        upstream = UpgradeUpstream(b"GET /chat HTTP/1.1\r\nHost: o.test\r\n\r\n")
        transport = StringTransport()
        upstream.makeConnection(transport)
        upstream.dataReceived(data)
        return upstream, transport

    def test_refused_heads_close_the_connection(self) -> None:
        """
        Each refused head fails C{head_received} with L{BadResponseHeadError}
        (the response reader's L{MalformedResponseError}, status 502)
        saying why, and closes the connection to the origin.
        """
        for answer, detail in _REFUSED_HEADS:
            upstream, transport = self._answered(answer)
            failure = self.failureResultOf(upstream.head_received, BadResponseHeadError)
            self.assertIn(detail, failure.value.detail, answer)
            self.assertEqual(failure.value.status, 502)
            self.assertTrue(transport.disconnecting, answer)

    def test_head_split_anywhere(self) -> None:
        """
        A 101 head and the bytes after it are read the same however the
        network split them.
        """
        data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
        for at in range(1, len(data)):
            upstream = UpgradeUpstream(b"GET / HTTP/1.1\r\n\r\n")
            upstream.makeConnection(StringTransport())
            upstream.dataReceived(data[:at])
            upstream.dataReceived(data[at:])
            head, rest = self.successResultOf(upstream.head_received)
            self.assertEqual((head.status, head.headers), (101, [(b"Upgrade", b"websocket")]))
            self.assertEqual(b"".join([rest, *upstream.early]), b"\x81\x00")

    def test_interim_responses_are_skipped(self) -> None:
        """
        RFC 9110 §15.2: interim responses before the final one are read and
        dropped, so the final head (here a 101) is the one judged, and is
        never relayed as a bodiless answer with the 101 after it.
        """
        data = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00"
        )
        for at in (1, 20, 30, len(data) - 3):
            upstream = UpgradeUpstream(b"GET / HTTP/1.1\r\n\r\n")
            upstream.makeConnection(StringTransport())
            upstream.dataReceived(data[:at])
            upstream.dataReceived(data[at:])
            head, rest = self.successResultOf(upstream.head_received)
            self.assertEqual((head.status, head.headers), (101, [(b"Upgrade", b"h2c")]))
            self.assertEqual(b"".join([rest, *upstream.early]), b"\x00\x00")

    def test_oversized_head_is_refused(self) -> None:
        """
        A head above the pooled client's 64 KiB limit is refused, even when
        its end arrives in the same read.
        """
        upstream, transport = self._answered(
            b"HTTP/1.1 101 OK\r\nX-Big: " + b"a" * (65 * 1024) + b"\r\n\r\n"
        )
        failure = self.failureResultOf(upstream.head_received, BadResponseHeadError)
        self.assertIn("larger than 65536 bytes", failure.value.detail)
        self.assertTrue(transport.disconnecting)


class ParseResponseHeadTests(SynchronousTestCase):
    """
    The upgrade path's response-head parser is strict.
    """

    def test_parses_status_and_fields(self) -> None:
        """
        Status, reason and repeated fields are kept.
        """
        head = parse_response_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-A: 1\r\nX-A: 2"
        )
        self.assertEqual(
            (head.version, head.status, head.reason, head.headers),
            (
                b"HTTP/1.1",
                101,
                b"Switching Protocols",
                [(b"Upgrade", b"websocket"), (b"X-A", b"1"), (b"X-A", b"2")],
            ),
        )

    def test_rejects_malformed_heads(self) -> None:
        """
        Bad status lines, header lines without a colon, obsolete folding and
        whitespace before the colon are refused.
        """
        bad = [
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 200 OK\r\nno colon",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n continued",
            b"HTTP/1.1 200 OK\r\nX-A : 1",
            b"SPDY/3 200 OK",
        ]
        accepted = []
        for head in bad:
            try:
                parse_response_head(head)
            except BadResponseHeadError:
                continue
            accepted.append(head)
        self.assertEqual(accepted, [])
