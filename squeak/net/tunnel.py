# -*- test-case-name: tests.test_net_tunnel -*-
"""
Byte relays that take over a client connection: CONNECT tunnels and
upgraded (WebSocket) connections.

Once a tunnel is established the client's L{squeak.net.channel.ClientChannel}
stops parsing HTTP: its C{dataReceived} and connection-loss handlers are
replaced by the tunnel's, so it works the same over plain TCP and TLS client
transports.  Bytes the client sent after its request head and before the
tunnel was up (a pipelined TLS ClientHello) wait in the channel; they are
handed on first (L{ClientChannel.take_over}).

Flow control runs both ways: each transport is registered as the other's
streaming producer (as in L{twisted.protocols.portforward}), so a fast
sender facing a slow receiver is paused instead of filling memory.

Half-close: when one side shuts down its writing, the tunnel shuts down
writing to the other side after the data in flight is delivered, and the
connection ends when both directions are done (RFC 9110 §9.3.6: a tunnel
closes when both sides have closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer


@implementer(IHalfCloseableProtocol)
class UpstreamEnd(protocol.Protocol):
    """
    The origin side of a tunnel.  Until the tunnel is attached it only
    buffers (an upgraded connection's first bytes may arrive with the head).
    """

    #: A connected TCP transport, or a TLS wrapper around one.  Twisted
    #: types it C{ITransport | None}, which declares neither the producer
    #: and consumer methods nor C{abortConnection} that both provide.
    transport: Any

    def __init__(self) -> None:
        self.tunnel: Tunnel | None = None
        self.early: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is None:
            self.early.append(data)
        else:
            self.tunnel.upstream_data(data)

    def readConnectionLost(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_read_closed()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_write_closed()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lost = True
        if self.tunnel is not None:
            self.tunnel.upstream_lost()


class UpstreamEndFactory(protocol.ClientFactory):
    """
    Builds the L{UpstreamEnd} for one tunnel.
    """

    noisy = False
    protocol = UpstreamEnd


#: Bytes read per recv() on connections that carry bulk data.
BULK_READ_SIZE = 512 * 1024


class Tunnel:
    """
    Relays bytes between a client channel and an L{UpstreamEnd}.

    @ivar to_client: Bytes relayed from the origin to the client.
    @ivar from_client: Bytes relayed from the client to the origin.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        idle_timeout: float,
        on_closed: Callable[[Tunnel], None],
        *,
        limit_to_client: int | None = None,
    ) -> None:
        """
        @param limit_to_client: Close the tunnel once this many bytes reached
            the client (a relayed response of known length), or L{None}.
        """
        self._limit = limit_to_client
        self._reactor = reactor
        self._idle_timeout = idle_timeout
        self._on_closed = on_closed
        self.to_client = 0
        self.from_client = 0
        self._client: Any = None
        self._upstream: UpstreamEnd | None = None
        self._client_read_done = False
        self._upstream_read_done = False
        self._closed = False
        self._idle_call: Any = None
        self._seen = -1
        self.idle_timed_out = False

    def start(self, channel: Any, upstream: UpstreamEnd, first_to_client: bytes = b"") -> None:
        """
        Take over C{channel}'s transport and start relaying.

        @param first_to_client: Bytes to send the client before relaying
            (the C{200 Connection established} or C{101} head).
        """
        self.attach(channel, upstream, channel.take_over(), first_to_client)

    def attach(
        self,
        channel: Any,
        upstream: UpstreamEnd,
        from_client: bytes = b"",
        first_to_client: bytes = b"",
    ) -> None:
        """
        Take over any connected protocol's transport and start relaying: the
        part of L{start} that does not depend on L{ClientChannel}, used
        directly by L{squeak.net.intercept.SpliceProtocol}.

        @param channel: the client-side protocol; its event handlers are
            replaced by the tunnel's.  If it has a C{forget} method, it is
            called when the client connection is lost.
        @param from_client: Bytes the client already sent (a ClientHello
            that was read to decide on the connection), relayed to the
            upstream first and counted in L{from_client}.
        @param first_to_client: see L{start}.
        """
        client = channel.transport
        self._client = client
        self._channel_gone = getattr(channel, "forget", lambda: None)
        self._upstream = upstream
        buffered = from_client
        channel.dataReceived = self.client_data
        channel.connectionLost = self.client_lost
        channel.readConnectionLost = self.client_read_closed
        channel.writeConnectionLost = self.client_write_closed
        alsoProvides(channel, IHalfCloseableProtocol)
        upstream.tunnel = self
        if first_to_client:
            client.write(first_to_client)
        # Bulk relays read 256 KiB per recv() instead of Twisted's 64 KiB:
        # a quarter of the Python work per byte (measured in bench/).
        for transport in (client, upstream.transport):
            if hasattr(transport, "bufferSize"):
                transport.bufferSize = BULK_READ_SIZE
        client.registerProducer(upstream.transport, True)
        upstream.transport.registerProducer(client, True)
        early, upstream.early = b"".join(upstream.early), []
        if early:
            self.upstream_data(early)
        if buffered:
            self.client_data(buffered)
        client.resumeProducing()
        self._schedule_idle_check()
        if upstream.lost:
            self.upstream_lost()

    # client side
    def client_data(self, data: bytes) -> None:
        self.from_client += len(data)
        if self._upstream is not None:
            self._upstream.transport.write(data)

    def client_read_closed(self) -> None:
        self._client_read_done = True
        self._shutdown_write(self._upstream.transport if self._upstream else None)
        self._maybe_finish()

    def client_write_closed(self) -> None:
        pass

    def client_lost(self, reason: Failure = protocol.connectionDone) -> None:
        self._client_read_done = True
        self._channel_gone()
        if self._upstream is not None:
            self._upstream.transport.loseConnection()
        self._finish()

    # upstream side
    def upstream_data(self, data: bytes) -> None:
        if self._limit is not None:
            data = data[: max(0, self._limit - self.to_client)]
        self.to_client += len(data)
        self._client.write(data)
        if self._limit is not None and self.to_client >= self._limit:
            self._client.loseConnection()
            if self._upstream is not None:
                self._upstream.transport.loseConnection()

    def upstream_read_closed(self) -> None:
        self._upstream_read_done = True
        self._shutdown_write(self._client)
        self._maybe_finish()

    def upstream_write_closed(self) -> None:
        pass

    def upstream_lost(self) -> None:
        self._upstream_read_done = True
        if self._client is not None:
            self._client.loseConnection()
        self._finish()

    # both
    def _shutdown_write(self, transport: Any) -> None:
        """
        Half-close one direction after its pending data is written; a
        transport that cannot half-close is closed whole.
        """
        if transport is None:
            return
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            transport.loseConnection()

    def _maybe_finish(self) -> None:
        if self._client_read_done and self._upstream_read_done:
            self._client.loseConnection()
            if self._upstream is not None:
                self._upstream.transport.loseConnection()

    def _schedule_idle_check(self) -> None:
        """
        Idle detection without per-chunk timer resets: every
        C{idle_timeout} seconds, a tunnel that relayed nothing since the
        last check is closed.
        """
        self._idle_call = self._reactor.callLater(self._idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_call = None
        moved = self.to_client + self.from_client
        if moved == self._seen:
            self.idle_timed_out = True
            self._log.info("closing idle tunnel")
            if self._upstream is not None:
                self._upstream.transport.abortConnection()
            self._client.abortConnection()
            return
        self._seen = moved
        self._schedule_idle_check()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self._on_closed(self)
