"""
Draining on shutdown (L{squeak.drain}, L{ClientChannel.close_when_idle}):
units on a fake clock and transports, then a real twistd stopped with
SIGTERM while a download is in flight, with one process and with workers.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from squeak.drain import NEW_CONNECTION_GRACE, Drain, track_connections
from squeak.net.channel import Exchange
from tests.sloworigin import Download, SlowOrigin, body_digest, fetch
from tests.test_net_channel import _Channel, _Transport, answer
from tests.twistdprocess import TwistdProxy


class _FakeChannel:
    """
    A client connection as the drain sees it: told to close when idle,
    removed from the live set when it closes.
    """

    def __init__(self, channels: set[Any], busy: bool) -> None:
        self.channels = channels
        self.busy = busy
        self.grace: float | None = None
        self.transport = self
        self.aborted = False
        channels.add(self)

    def close_when_idle(self, grace: float) -> None:
        self.grace = grace
        if not self.busy:
            self.channels.discard(self)

    def abortConnection(self) -> None:
        self.aborted = True
        self.channels.discard(self)


class DrainTests(unittest.SynchronousTestCase):
    """
    L{Drain} waits for busy connections within the lifetime, then cuts.
    """

    def test_nothing_open(self) -> None:
        """
        With no connection open the drain is over at once.
        """
        drain = Drain(MemoryReactorClock(), set(), 30.0)
        self.assertEqual(self.successResultOf(drain.start()), 0)

    def test_idle_close_at_once_busy_finish(self) -> None:
        """
        Idle connections close when told; a busy one that finishes in time
        ends the drain without a cut.
        """
        clock = MemoryReactorClock()
        channels: set[Any] = set()
        idle = _FakeChannel(channels, busy=False)
        busy = _FakeChannel(channels, busy=True)
        done = Drain(clock, channels, 30.0).start()
        self.assertEqual(channels, {busy})
        self.assertEqual((idle.grace, busy.grace), (NEW_CONNECTION_GRACE, NEW_CONNECTION_GRACE))
        clock.advance(10)
        self.assertNoResult(done)
        channels.discard(busy)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(done), 0)
        self.assertFalse(busy.aborted)

    def test_cut_at_the_lifetime(self) -> None:
        """
        What is still busy when the lifetime is over is cut.
        """
        clock = MemoryReactorClock()
        channels: set[Any] = set()
        busy = _FakeChannel(channels, busy=True)
        done = Drain(clock, channels, 5.0).start()
        clock.advance(4.9)
        self.assertFalse(busy.aborted)
        clock.advance(0.2)
        self.assertTrue(busy.aborted)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(done), 1)

    def test_cut_now(self) -> None:
        """
        A second stop signal cuts at once, before the lifetime is over.
        """
        clock = MemoryReactorClock()
        channels: set[Any] = set()
        busy = _FakeChannel(channels, busy=True)
        drain = Drain(clock, channels, 30.0)
        done = drain.start()
        clock.advance(1)
        drain.cut_now()
        self.assertTrue(busy.aborted)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(done), 1)

    def test_short_lifetime_shortens_the_grace(self) -> None:
        """
        A new connection's grace is never longer than the lifetime.
        """
        clock = MemoryReactorClock()
        channels: set[Any] = set()
        channel = _FakeChannel(channels, busy=True)
        Drain(clock, channels, 0.5).start()
        self.assertEqual(channel.grace, 0.5)


class TrackConnectionsTests(unittest.SynchronousTestCase):
    """
    L{track_connections} keeps the live set of a factory's connections
    (the intercept TLS splices), for the drain.
    """

    def _factory(self) -> tuple[Factory, set[Any]]:
        factory = Factory.forProtocol(Protocol)
        return factory, track_connections(factory)

    def test_joins_and_leaves(self) -> None:
        """
        A connection is in the set from its start to its loss.
        """
        factory, connections = self._factory()
        protocol = factory.buildProtocol(None)
        self.assertEqual(connections, {protocol})
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(connections, set())

    def test_forget_after_a_takeover(self) -> None:
        """
        A tunnel that took the connection over calls C{forget} instead.
        """
        factory, connections = self._factory()
        protocol: Any = factory.buildProtocol(None)
        protocol.connectionLost = lambda reason: None  # as Tunnel.attach does
        protocol.forget()
        self.assertEqual(connections, set())

    def test_left_to_finish(self) -> None:
        """
        Told to close when idle, a splice carries on; the drain waits for it
        and cuts it at the lifetime.
        """
        clock = MemoryReactorClock()
        factory, connections = self._factory()
        protocol: Any = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        done = Drain(clock, connections, 2.0).start()
        clock.advance(1)
        self.assertFalse(transport.disconnecting)
        clock.advance(1.1)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(done), 1)


class CloseWhenIdleTests(unittest.SynchronousTestCase):
    """
    L{ClientChannel.close_when_idle} on a fake transport.
    """

    def _channel(self, responder: Any = answer) -> tuple[_Channel, _Transport, MemoryReactorClock]:
        clock = MemoryReactorClock()
        channel = _Channel(responder)
        channel.reactor = clock
        transport = _Transport()
        channel.makeConnection(transport)
        return channel, transport, clock

    def test_idle_keep_alive_closes_at_once(self) -> None:
        """
        A connection waiting for its next request is closed at once, its
        write side first.
        """
        channel, transport, _ = self._channel()
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"hello", transport.value())
        channel.close_when_idle(2.0)
        self.assertTrue(transport.write_closed)

    def test_busy_closes_after_its_response(self) -> None:
        """
        A connection answering a request closes after the response, which
        says Connection: close.
        """
        pending: list[Exchange] = []
        channel, transport, _ = self._channel(pending.append)
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        channel.close_when_idle(2.0)
        self.assertFalse(transport.write_closed or transport.disconnecting)
        answer(pending[0])
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_new_connection_gets_a_grace(self) -> None:
        """
        A connection that has not sent a request yet gets the grace for it:
        a request arriving then is answered (with Connection: close).
        """
        channel, transport, clock = self._channel()
        channel.close_when_idle(2.0)
        clock.advance(1.0)
        self.assertFalse(transport.write_closed)
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)
        clock.advance(2.0)
        self.assertFalse(transport.write_closed)

    def test_new_connection_silent_through_the_grace(self) -> None:
        """
        A new connection that sends nothing within the grace is closed.
        """
        channel, transport, clock = self._channel()
        channel.close_when_idle(2.0)
        clock.advance(2.0)
        self.assertTrue(transport.write_closed)

    def test_partial_head_is_answered(self) -> None:
        """
        A connection part-way through a request head is left to finish it.
        """
        channel, transport, _ = self._channel()
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        channel.close_when_idle(2.0)
        self.assertFalse(transport.write_closed)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertIn(b"Connection: close\r\n", transport.value())


def proxy_config(
    directory: Path, *, workers: int = 1, lifetime: str = "10s", extra: str = ""
) -> str:
    """
    A configuration for the process tests: port 0, a file access log, a
    cache in C{directory}, the worker header on.
    """
    return f"""
[proxy]
http_port = ["127.0.0.1:0"]
visible_hostname = "squeak-test"
workers = {workers}
worker_header = true

[timeouts]
shutdown_lifetime = "{lifetime}"

[access_log]
path = "{directory}/access.log"

[cache]
dir = "{directory}/cache"
{extra}
"""


def wait_for(proxy: TwistdProxy, pattern: str, timeout: float = 20.0, count: int = 1) -> bool:
    """
    Wait (bounded) until C{pattern} occurs C{count} times in the output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, proxy.output)) >= count:
            return True
        time.sleep(0.05)
    return False


def wait_for_exit(proxy: TwistdProxy, timeout: float) -> int | None:
    """
    Wait (bounded) for the process to exit; its status, or None.
    """
    assert proxy.process is not None
    try:
        return proxy.process.wait(timeout)
    except Exception:
        return None


def access_lines(directory: Path, pattern: str, timeout: float = 5.0) -> list[str]:
    """
    The access log lines matching C{pattern}, waiting (bounded) for one.
    """
    path = directory / "access.log"
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            found = [line for line in path.read_text().splitlines() if re.search(pattern, line)]
            if found:
                return found
        time.sleep(0.05)
    return found


class DrainProcessTests(unittest.SynchronousTestCase):
    """
    SIGTERM to a real twistd: downloads in flight finish within
    shutdown_lifetime, or are cut and logged; a second signal stops at once.
    """

    timeout = 90
    workers = 1
    SIZE = 2 * 1024 * 1024

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.directory.mkdir(parents=True)

    def _start(self, lifetime: str, extra: str = "") -> TwistdProxy:
        config = proxy_config(self.directory, workers=self.workers, lifetime=lifetime, extra=extra)
        proxy = TwistdProxy(config)
        proxy.start()
        self.addCleanup(proxy.stop)
        if self.workers > 1:
            # Workers serve once they adopted the sockets; wait for them.
            self.assertTrue(
                wait_for(proxy, r"worker \d+: .*squeak listening on", count=self.workers)
            )
        return proxy

    def test_download_finishes_within_the_lifetime(self) -> None:
        """
        A 2 MiB download sent over ~2 s, in flight at SIGTERM with a 20 s
        lifetime, completes intact; the proxy then exits, and the request
        has its access-log line.
        """
        proxy = self._start("20s")
        download = Download(proxy.port, self.origin.url(f"/slow/{self.SIZE}/2"))
        self.assertTrue(download.started())
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        # The listeners stop at once: a new connection is not served.
        self.assertTrue(wait_for(proxy, r"stopping gracefully"))
        download.wait(30)
        self.assertTrue(download.complete, (download.received, download.error))
        self.assertEqual(download.digest, body_digest(self.SIZE))
        self.assertIsNotNone(wait_for_exit(proxy, 20))
        self.assertLess(time.monotonic() - started, 15)
        self.assertEqual(len(access_lines(self.directory, r"TCP_MISS/200 .* GET .*/slow/")), 1)

    def test_tunnel_finishes_within_the_lifetime(self) -> None:
        """
        A CONNECT tunnel carrying a download at SIGTERM is left to finish;
        it is logged when it closes, and the proxy then exits.
        """
        proxy = self._start("20s", '[access]\nhttp_access = ["allow localhost"]\n')
        download = Download(proxy.port, self.origin.url(f"/slow/{self.SIZE}/2"), tunnel=True)
        self.assertIn(" 200 ", download.tunnel_status)
        self.assertTrue(download.started())
        proxy.signal(signal.SIGTERM)
        download.wait(30)
        self.assertTrue(download.complete, (download.received, download.error))
        self.assertEqual(download.digest, body_digest(self.SIZE))
        self.assertIsNotNone(wait_for_exit(proxy, 20))
        self.assertEqual(len(access_lines(self.directory, r"TCP_TUNNEL/200 .* CONNECT ")), 1)

    def test_download_cut_at_the_lifetime(self) -> None:
        """
        A download that needs ~8 s, with a 1 s lifetime, is cut, logged as
        aborted, and the proxy exits soon after the lifetime.
        """
        proxy = self._start("1s")
        download = Download(proxy.port, self.origin.url(f"/slow/{self.SIZE}/8"))
        self.assertTrue(download.started())
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        download.wait(30)
        self.assertFalse(download.complete)
        self.assertLess(download.received, self.SIZE)
        self.assertIsNotNone(wait_for_exit(proxy, 20))
        self.assertLess(time.monotonic() - started, 6)
        self.assertTrue(wait_for(proxy, r"cutting 1 connection"))
        self.assertEqual(len(access_lines(self.directory, r"TCP_MISS_ABORTED/200 .*/slow/")), 1)

    def test_second_signal_stops_at_once(self) -> None:
        """
        A second SIGTERM cuts what the first was waiting for.
        """
        proxy = self._start("60s")
        download = Download(proxy.port, self.origin.url(f"/slow/{self.SIZE}/20"))
        self.assertTrue(download.started())
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertTrue(wait_for(proxy, r"stopping gracefully"))
        if self.workers > 1:
            self.assertTrue(wait_for(proxy, r"worker \d+: .*stopping gracefully"))
        proxy.signal(signal.SIGTERM)
        download.wait(30)
        self.assertFalse(download.complete)
        self.assertIsNotNone(wait_for_exit(proxy, 20))
        self.assertLess(time.monotonic() - started, 10)

    def test_idle_connection_closed_and_cache_closed(self) -> None:
        """
        An idle keep-alive connection does not hold the stop back; the
        proxy exits promptly and a cached entry is found after a restart.
        """
        proxy = self._start("30s")
        status, _, body = fetch(proxy.port, self.origin.url("/cacheable/1000"))
        self.assertEqual((status, len(body)), (200, 1000))
        import socket

        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.addCleanup(idle.close)
        idle.sendall(f"GET {self.origin.url('/body/10')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # The whole response (the head may come before the body, in its own
        # segment), so that what is read after the stop is only the EOF.
        answer = b""
        for _attempt in range(100):  # bounded; each recv blocks at most 10 s
            _, separator, body = answer.partition(b"\r\n\r\n")
            if separator and len(body) >= 10:
                break
            data = idle.recv(65536)
            if not data:
                break
            answer += data
        self.assertIn(b"200", answer.split(b"\r\n", 1)[0])
        self.assertEqual(len(answer.partition(b"\r\n\r\n")[2]), 10)
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertIsNotNone(wait_for_exit(proxy, 20))
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(idle.recv(65536), b"")
        again = TwistdProxy(proxy_config(self.directory, workers=self.workers)).start()
        self.addCleanup(again.stop)
        if self.workers > 1:
            self.assertTrue(
                wait_for(again, r"worker \d+: .*squeak listening on", count=self.workers)
            )
        status, fields, _ = fetch(again.port, self.origin.url("/cacheable/1000"))
        self.assertEqual(status, 200)
        self.assertIn("HIT", fields.get("x-cache", ""))
        self.assertEqual(self.origin.requests, 2)  # /cacheable once, /body once


class DrainWorkersProcessTests(unittest.SynchronousTestCase):
    """
    The same with a master and two workers (the signals pass through the
    master).
    """

    timeout = 90
    workers = 2
    SIZE = DrainProcessTests.SIZE
    setUp = DrainProcessTests.setUp
    _start = DrainProcessTests._start
    test_download_finishes_within_the_lifetime = (
        DrainProcessTests.test_download_finishes_within_the_lifetime
    )
    test_download_cut_at_the_lifetime = DrainProcessTests.test_download_cut_at_the_lifetime
    test_second_signal_stops_at_once = DrainProcessTests.test_second_signal_stops_at_once
    test_tunnel_finishes_within_the_lifetime = (
        DrainProcessTests.test_tunnel_finishes_within_the_lifetime
    )
