"""
CONNECT tunnels over real loopback sockets: establishment, pipelined
bytes, half-close, failures, idle timeout, flow control.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

from twisted.internet import protocol, reactor, threads
from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from tests.proxyharness import ProxyTestCase
from tests.slowreader import read_slowly


class _Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


@implementer(IHalfCloseableProtocol)
class _AnswerAfterEOF(protocol.Protocol):
    """
    Reads until the peer half-closes, then answers with what it got and
    closes: works only if the half-close is relayed and the answer still
    gets through.
    """

    def connectionMade(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.transport.write(b"got:" + self.received)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class _Flood(protocol.Protocol):
    """
    Sends C{size} bytes as fast as the transport takes them, as a
    streaming producer, so the sender itself stays bounded.
    """

    size = 256 * 1024 * 1024
    block = b"\xab" * 65536

    def connectionMade(self) -> None:
        self.left = self.size
        self.paused = False
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            piece = self.block[: min(len(self.block), self.left)]
            self.left -= len(piece)
            self.transport.write(piece)
        if self.left == 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self.left = 0


class _Server:
    def __init__(self, protocol_class: type[protocol.Protocol]) -> None:
        self.factory = protocol.ServerFactory.forProtocol(protocol_class)
        self.factory.noisy = False
        self.port: Any = None

    def listen(self) -> int:
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        return int(self.port.getHost().port)


def _rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


class TunnelTests(ProxyTestCase):
    """
    CONNECT relays bytes both ways once the target connection is open.
    """

    config_overrides = {"timeouts": {"tunnel_idle": 0.5}}

    def _allow(self, port: int) -> None:
        self.use_access_config(f"[acl]\nSSL_ports = {{ port = [443, {port}] }}\n")

    def _connect(self, port: int, extra: bytes = b"") -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10)
        s.sendall(
            f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() + extra
        )
        return s

    @staticmethod
    def _read_head(s: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    async def test_tunnel_relays_both_ways_including_pipelined_bytes(self) -> None:
        """
        The 200 comes once the target is connected; bytes the client sent
        right behind the CONNECT head (as a pipelined ClientHello) are not
        lost; later bytes are echoed too; the log says TCP_TUNNEL/200.
        """
        server = _Server(_Echo)
        port = self.listen(server)
        self._allow(port)

        def exchange() -> tuple[bytes, bytes]:
            with self._connect(port, b"early-bytes|") as s:
                head, rest = self._read_head(s)
                s.sendall(b"later-bytes")
                want = len(b"early-bytes|later-bytes")
                while len(rest) < want:
                    rest += s.recv(4096)
                return head, rest

        head, echoed = await threads.deferToThread(exchange)
        self.assertEqual(head, b"HTTP/1.1 200 Connection established")
        self.assertEqual(echoed, b"early-bytes|later-bytes")
        deadline = time.monotonic() + 5
        while not self.access_log_lines() and time.monotonic() < deadline:
            await _sleep(0.05)
        [line] = self.access_log_lines()
        self.assertRegex(
            line, rf" TCP_TUNNEL/200 23 CONNECT 127\.0\.0\.1:{port} - HIER_DIRECT/127\.0\.0\.1 "
        )

    async def test_half_close_is_relayed(self) -> None:
        """
        A client that shuts down its writing still gets the answer the
        target sends after seeing that end of input.
        """
        server = _Server(_AnswerAfterEOF)
        port = self.listen(server)
        self._allow(port)

        def exchange() -> bytes:
            with self._connect(port) as s:
                _, rest = self._read_head(s)
                s.sendall(b"question")
                s.shutdown(socket.SHUT_WR)
                data = rest
                while chunk := s.recv(4096):
                    data += chunk
                return data

        self.assertEqual(await threads.deferToThread(exchange), b"got:question")

    async def test_refused_target_gets_502_before_any_tunnel(self) -> None:
        """
        CONNECT to a closed port is answered 502 ERR_CONNECT_FAIL.
        """
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self._allow(port)
        raw = await threads.deferToThread(
            self.raw_exchange,
            f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 502"), raw[:60])
        self.assertIn(b"ERR_CONNECT_FAIL", raw)

    async def test_connect_to_disallowed_port_is_denied(self) -> None:
        """
        CONNECT to a port outside the tunnel ports (22) gets 403 and no
        connection is attempted.
        """
        raw = await threads.deferToThread(
            self.raw_exchange,
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 403"), raw[:60])
        self.assertIn(b"ERR_ACCESS_DENIED", raw)

    async def test_idle_tunnel_is_closed(self) -> None:
        """
        A tunnel that relays nothing for tunnel_idle is closed (within two
        idle periods).
        """
        server = _Server(_Echo)
        port = self.listen(server)
        self._allow(port)

        def wait_for_close() -> float:
            with self._connect(port) as s:
                self._read_head(s)
                started = time.monotonic()
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                return time.monotonic() - started

        elapsed = await threads.deferToThread(wait_for_close)
        self.assertLess(elapsed, 3.0)

    async def test_slow_reader_keeps_memory_flat(self) -> None:
        """
        256 MiB pushed through a tunnel into a slow reader: this process's
        RSS (proxy and target together) grows by less than 8 MiB.
        """
        server = _Server(_Flood)
        port = self.listen(server)
        self._allow(port)

        def slow_read() -> tuple[int, int]:
            baseline = _rss_kib()
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                s.settimeout(20)
                s.connect(("127.0.0.1", self.proxy_port))
                s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                _, rest = self._read_head(s)
                received, peak = read_slowly(s, len(rest), _Flood.size, _rss_kib)
            return received, peak - baseline

        received, growth = await threads.deferToThread(slow_read)
        self.assertEqual(received, _Flood.size)
        self.assertLess(growth / 1024, 8, f"RSS grew {growth / 1024:.1f} MiB")


def _sleep(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
