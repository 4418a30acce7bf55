"""
The parent side on fake transports: CONNECT through a parent (its answers,
good and bad), the request line and credentials sent to a parent, and the
prober's timer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squeak.net.parents import (
    ParentClient,
    ParentConnectFailedError,
    ParentRefusedError,
    Parents,
    ParentTunnelEndpoint,
    _ProbeFactory,
    connect_head,
)
from squeak.upstream.hierarchy import Hierarchy
from squeak.upstream.peers import CachePeer, HierarchyConfig


class _FakeEndpoint:
    """Connects a factory's protocol to a L{StringTransport} at once."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.lost = reason


class _RecorderFactory:
    def __init__(self) -> None:
        self.built: _Recorder | None = None

    def buildProtocol(self, addr: Any) -> _Recorder:
        self.built = _Recorder()
        return self.built


class TunnelEndpointTests(SynchronousTestCase):
    def connect(
        self, authorization: bytes | None = None
    ) -> tuple[_FakeEndpoint, _RecorderFactory, Deferred[Any]]:
        fake = _FakeEndpoint()
        factory = _RecorderFactory()
        endpoint = ParentTunnelEndpoint(fake, "north", b"origin.test:443", authorization)
        return fake, factory, endpoint.connect(factory)

    def test_connect_request(self) -> None:
        """CONNECT host:port with Host (RFC 9110 §9.3.6) and the parent's credentials."""
        fake, _, connected = self.connect(b"Basic Y2hpbGQ6cHc=")
        self.assertEqual(
            fake.transport.value(),
            b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n"
            b"Proxy-Authorization: Basic Y2hpbGQ6cHc=\r\n\r\n",
        )
        self.assertNoResult(connected)

    def test_200_hands_the_connection_over_with_early_bytes(self) -> None:
        """
        After a 2xx the tunnel's protocol gets the connection, and the bytes
        that came with the head.
        """
        fake, factory, connected = self.connect()
        fake.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\nearly")
        self.assertIs(self.successResultOf(connected), factory.built)
        assert factory.built is not None
        self.assertEqual(factory.built.received, b"early")
        fake.protocol.dataReceived(b" more")
        self.assertEqual(factory.built.received, b"early more")
        fake.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(factory.built.lost)

    def test_head_split_across_reads(self) -> None:
        """The parent's answer may come a byte at a time."""
        fake, factory, connected = self.connect()
        for byte in b"HTTP/1.0 200 OK\r\nX: y\r\n\r\n":
            fake.protocol.dataReceived(bytes([byte]))
        self.assertIs(self.successResultOf(connected), factory.built)

    def test_refusal_is_a_proxy_error_naming_the_parent(self) -> None:
        """A 403 or 407 from the parent fails with a 502 naming it and its status."""
        fake, _, connected = self.connect()
        fake.protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        error = self.failureResultOf(connected, ParentRefusedError).value
        self.assertEqual((error.status, error.code), (502, 403))
        self.assertIn("north", error.detail)
        self.assertTrue(fake.transport.disconnecting)
        fake, _, connected = self.connect()
        fake.protocol.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
        error = self.failureResultOf(connected, ParentRefusedError).value
        self.assertEqual((error.status, error.code), (502, 407))

    def test_garbage_and_close_are_connect_failures(self) -> None:
        """
        Not HTTP, too long, or closed before answering: ParentConnectFailedError
        (the parent counts as down).
        """
        fake, _, connected = self.connect()
        fake.protocol.dataReceived(b"SSH-2.0-OpenSSH\r\n\r\n")
        self.failureResultOf(connected, ParentConnectFailedError)
        fake, _, connected = self.connect()
        fake.protocol.dataReceived(b"x" * 20000)
        self.failureResultOf(connected, ParentConnectFailedError)
        fake, _, connected = self.connect()
        fake.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(connected, ParentConnectFailedError)

    def test_connect_head_without_credentials(self) -> None:
        """No login: no Proxy-Authorization."""
        self.assertNotIn(b"Proxy-Authorization", connect_head(b"h:1", None))


class ParentClientTests(SynchronousTestCase):
    def test_plain_request_in_absolute_form_with_login_to_the_parent(self) -> None:
        """
        An http request goes to the parent's pool in absolute form, with the
        parent's credentials.
        """
        from squeak.http.target import parse_absolute_target

        reactor = MemoryReactorClock()
        fake = _FakeEndpoint()
        peer = CachePeer("north", "10.0.0.1", 3128, login="child:pw")
        client = ParentClient(reactor, peer, connect_timeout=5, max_idle=2, idle_timeout=10)
        client.pool._endpoint_factory = lambda scheme, host, port: fake
        target = parse_absolute_target(b"http://origin.test/a?b")
        client.request(b"GET", target, [(b"Host", b"origin.test")], None)
        sent = fake.transport.value()
        self.assertTrue(
            sent.startswith(b"GET http://origin.test/a?b HTTP/1.1\r\nHost: origin.test\r\n")
        )
        self.assertIn(b"Proxy-Authorization: Basic Y2hpbGQ6cHc=\r\n", sent)
        self.assertEqual(client.busy_connections, 1)


class ProberTests(SynchronousTestCase):
    def test_timer_runs_only_while_a_parent_is_down(self) -> None:
        """The prober's one timer starts when a parent goes down and stops when none is."""
        reactor = MemoryReactorClock()
        config = HierarchyConfig(
            peers=(CachePeer("a", "127.0.0.1", 1),), max_fails=1, probe_interval=2.0
        )
        parents = Parents(
            reactor, Hierarchy(config), connect_timeout=1, max_idle=1, idle_timeout=1
        )
        peer = config.peers[0]
        self.assertEqual(reactor.getDelayedCalls(), [])
        parents.failed(peer, "refused")
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        parents.failed(peer, "refused again")
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        reactor.advance(2.0)
        self.assertEqual(parents.prober.probes_sent, 1)
        # The probe connects (a TCP probe succeeds on connect): up again.
        parents.succeeded(peer)
        parents.prober.stop()
        reactor.advance(2.0)
        self.assertFalse(parents.hierarchy.is_down(peer))
        self.assertEqual([call for call in reactor.getDelayedCalls() if call.active()], [])


class HealthLogTests(SynchronousTestCase):
    def test_down_and_up_are_logged_once_per_outage(self) -> None:
        """Many failures log one "is down"; many successes one "is up again"."""
        reactor = MemoryReactorClock()
        config = HierarchyConfig(peers=(CachePeer("a", "127.0.0.1", 1),), max_fails=2)
        parents = Parents(
            reactor, Hierarchy(config), connect_timeout=1, max_idle=1, idle_timeout=1
        )
        peer = config.peers[0]
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(5):
            parents.failed(peer, "Connection refused")
        for _ in range(3):
            parents.succeeded(peer)
        parents.prober.stop()
        texts = [formatEvent(event) for event in events if "parent a" in formatEvent(event)]
        self.assertEqual(
            texts,
            [
                "parent a (127.0.0.1:1) is down: Connection refused; probing it",
                "parent a (127.0.0.1:1) is up again",
            ],
        )


class ProbeAnswerTests(SynchronousTestCase):
    def probe(self, answer: bytes) -> Deferred[None]:
        answered: Deferred[None] = Deferred()
        factory = _ProbeFactory(
            b"HEAD / HTTP/1.1\r\nHost: p:1\r\nConnection: close\r\n\r\n", answered
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"HEAD / HTTP/1.1\r\n"))
        protocol.dataReceived(answer)
        return answered

    def test_any_http_answer_counts(self) -> None:
        """probe = "http": any status line is a sign of life, even a 400."""
        self.successResultOf(self.probe(b"HTTP/1.1 400 Bad Request\r\n"))

    def test_not_http_fails(self) -> None:
        """Something else than HTTP on the parent's port: still down."""
        self.failureResultOf(self.probe(b"SSH-2.0-OpenSSH_9\r\n"), ParentConnectFailedError)

    def test_tcp_probe_succeeds_on_connect(self) -> None:
        """probe = "tcp": the connection itself is the answer."""
        answered: Deferred[None] = Deferred()
        protocol = _ProbeFactory(b"", answered).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.successResultOf(answered)
        self.assertEqual(transport.value(), b"")
