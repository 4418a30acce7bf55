"""
Socket-free transcripts of the proxy, in the manner of mitmproxy's layer
tests (C{Playbook(...) >> DataReceived(...) << SendData(...)}): a test says
what the client sends, what the origin must receive, what the origin
answers and what the client must receive, step by step, with no thread,
no port and no real time.

  - the proxy is squeak's own client channel (L{ForwardProxy}) on a
    L{StringTransport}, wired by L{build_context} on a
    L{MemoryReactorClock};
  - the origin client is squeak's own L{UpstreamClient}, its endpoint
    factory replaced by one that joins each connection to an in-memory
    origin through a pair of iosim L{FakeTransport}s (Twisted's test
    standard: "use twisted.test.iosim.connect with FakeTransport");
  - after every step the transcript runs the reactor's zero-delay calls
    (the write batcher, connection completion) and pumps every origin
    connection until nothing moves.

Usage::

    t = Transcript(self)
    t.client_sends(b"GET http://192.0.2.80/ HTTP/1.1\\r\\nHost: 192.0.2.80\\r\\n\\r\\n")
    self.assertIn(b"GET / HTTP/1.1", t.origin_received())
    t.origin_sends(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    self.assertTrue(t.client_received().endswith(b"hi"))
    self.assertEqual(t.log_tags(), ["TCP_MISS"])
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from squeak.accesslog import AccessLog, AccessRecord
from squeak.net.origin import UpstreamClient
from squeak.proxy.client import ForwardProxy, ForwardProxyFactory
from squeak.proxy.router import ForwardRequest
from squeak.service import build_context
from tests.proxyharness import make_config

#: The in-memory origins' address (TEST-NET-1, RFC 5737): not this host,
#: so the default rules let the proxy reach it.
ORIGIN_IP = "192.0.2.80"


class RecordingLog(AccessLog):
    """
    An access log that keeps its records instead of writing them.
    """

    def __init__(self) -> None:
        super().__init__("", "squid")
        self.records: list[AccessRecord] = []

    @property
    def is_open(self) -> bool:
        return True

    def start_buffering(self, reactor: Any, *, interval: float = 0.5, lines: int = 512) -> None:
        """
        Nothing is buffered: records are kept as they come.
        """

    def write(self, rec: AccessRecord) -> None:
        self.records.append(rec)


class ClientTransport(StringTransport):
    """
    The client connection's transport.  Unlike L{StringTransport}, and like
    Twisted's TCP transports, it lets a producer be paused or resumed after
    C{loseConnection} (a relay that ends at once does that).
    """

    def _checkState(self) -> None:
        pass


class OriginConnection(Protocol):
    """
    The origin's end of one connection: it records what it receives and
    sends what the test tells it to.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True


@dataclasses.dataclass
class ClientEnd:
    """
    One client connection: its channel, its transport, how much of what it
    received was read, and whether its loss was reported.
    """

    channel: ForwardProxy
    transport: ClientTransport
    seen: int = 0
    lost: bool = False


@dataclasses.dataclass
class _MemoryEndpoint:
    """
    An endpoint whose connections go to in-memory origin connections of a
    L{Transcript}, completing on the reactor's next turn as a real connect
    would.
    """

    transcript: Transcript
    port: int

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return self.transcript.open_origin_connection(factory, self.port)


class Transcript:
    """
    Client connections to a proxy whose origins are in memory.

    @ivar clock: The proxy's reactor.
    @ivar context: The proxy's L{ProxyContext}.
    @ivar clients: The client connections (L{connect_client} opens more).
    @ivar channel: The first client connection's channel.
    @ivar client: The first client connection's transport.
    @ivar log: The access-log records written.
    @ivar origins: Every origin connection opened, in order.
    """

    def __init__(
        self,
        testcase: SynchronousTestCase,
        *,
        client_ip: str = "127.0.0.1",
        **config: dict[str, Any],
    ) -> None:
        """
        @param testcase: The test, which gets the cleanup (the cache closed,
            its directory removed).
        @param client_ip: The client's address (the rules see it).
        @param config: Per-section configuration overrides, as for
            L{make_config}.
        """
        self.clock = MemoryReactorClock()
        self.log = RecordingLog()
        settings = make_config(**config)
        testcase.addCleanup(shutil.rmtree, settings.cache.dir, True)
        self.context = build_context(settings, self.clock, self.log)
        timeouts = self.context.config.timeouts
        self.context.upstream = UpstreamClient(
            self.clock,
            connect_timeout=timeouts.connect,
            max_idle_per_host=self.context.config.upstream.max_idle_per_host,
            idle_timeout=timeouts.server_idle,
            sender=self.context.batcher,
            endpoint_factory=lambda scheme, host, port: _MemoryEndpoint(self, port),
        )
        testcase.addCleanup(self.context.cache.close)
        self.origins: list[OriginConnection] = []
        self._pumps: list[iosim.IOPump] = []
        self._origin_seen: dict[int, int] = {}
        self.clients: list[ClientEnd] = []
        self.connect_client(client_ip)
        #: The first client connection's channel and transport.
        self.channel = self.clients[0].channel
        self.client = self.clients[0].transport

    def connect_client(self, client_ip: str = "127.0.0.1") -> int:
        """
        Open another client connection to the proxy.

        @return: Its index, for the C{client} arguments.
        """
        address = IPv4Address("TCP", client_ip, 40000 + len(self.clients))
        channel = ForwardProxyFactory(self.context, ForwardRequest).buildProtocol(address)
        assert isinstance(channel, ForwardProxy)
        transport = ClientTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 3128), peerAddress=address
        )
        channel.makeConnection(transport)
        self.clients.append(ClientEnd(channel, transport))
        return len(self.clients) - 1

    # -- the origin side ----------------------------------------------------

    def open_origin_connection(self, factory: Any, port: int) -> defer.Deferred[Any]:
        """
        Join a new proxy-side protocol from C{factory} to a new in-memory
        origin connection; the Deferred fires on the reactor's next turn.
        """
        proxy_side = factory.buildProtocol(IPv4Address("TCP", ORIGIN_IP, port))
        origin = OriginConnection()
        origin_transport = iosim.FakeTransport(
            origin,
            isServer=True,
            hostAddress=IPv4Address("TCP", ORIGIN_IP, port),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000 + len(self.origins)),
        )
        proxy_transport = iosim.FakeTransport(
            proxy_side,
            isServer=False,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 50000 + len(self.origins)),
            peerAddress=IPv4Address("TCP", ORIGIN_IP, port),
        )
        connected: defer.Deferred[Any] = defer.Deferred()

        def complete() -> None:
            self._pumps.append(
                iosim.connect(origin, origin_transport, proxy_side, proxy_transport, greet=False)
            )
            self.origins.append(origin)
            connected.callback(proxy_side)

        self.clock.callLater(0, complete)
        return connected

    def origin_received(self, index: int = -1) -> bytes:
        """
        What an origin connection (the last by default) received since the
        last call for it.
        """
        origin = self.origins[index]
        key = id(origin)
        seen = self._origin_seen.get(key, 0)
        self._origin_seen[key] = len(origin.received)
        return origin.received[seen:]

    def origin_sends(self, data: bytes, index: int = -1) -> None:
        """
        An origin connection (the last by default) sends C{data}.
        """
        transport = self.origins[index].transport
        assert transport is not None
        transport.write(data)
        self.run()

    def origin_closes(self, index: int = -1) -> None:
        """
        An origin connection (the last by default) closes.
        """
        transport = self.origins[index].transport
        assert transport is not None
        transport.loseConnection()
        self.run()

    # -- the client side ----------------------------------------------------

    def client_sends(self, data: bytes, client: int = 0) -> None:
        """
        A client (the first by default) sends C{data} (to its channel, or
        to whatever took the connection over).
        """
        self.clients[client].channel.dataReceived(data)
        self.run()

    def client_received(self, client: int = 0) -> bytes:
        """
        What a client (the first by default) received since the last call.
        """
        end = self.clients[client]
        value = end.transport.value()
        seen, end.seen = end.seen, len(value)
        return value[seen:]

    # -- running ------------------------------------------------------------

    def run(self) -> None:
        """
        Run the reactor's zero-delay calls and pump every origin connection
        until nothing moves.
        """
        for _ in range(1000):
            self.clock.advance(0)
            moved = False
            for pump in self._pumps:
                moved = pump.pump(advanceClock=False) or moved
            for end in self.clients:
                if end.transport.disconnecting and not end.lost:
                    # As a real transport does once it has closed.
                    end.lost = True
                    end.channel.connectionLost(Failure(ConnectionDone()))
                    moved = True
            if not moved and not any(
                call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls()
            ):
                return
        raise AssertionError("the transcript does not settle")

    def log_tags(self) -> list[str]:
        """
        The result codes of the access-log lines written so far.
        """
        return [str(record.code) for record in self.log.records]
