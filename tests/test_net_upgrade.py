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

from twisted.internet import protocol, reactor, threads
from twisted.trial.unittest import SynchronousTestCase

from squeak.net.upgrade import BadResponseHeadError, parse_response_head
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
