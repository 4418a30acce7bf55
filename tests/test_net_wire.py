"""
L{squeak.net.wire.SendBatcher} over real loopback TCP connections: what a
reactor turn writes is sent at its end, in order, without registering the
socket for writability; what the kernel does not take, errors and closing
stay Twisted's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from squeak.net.wire import SendBatcher

reactor: Any = _reactor


class _Collector(Protocol):
    """The far end: collects what it receives and says when it closes."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.paused = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class _Producer:
    """A streaming producer that writes through the batcher until paused."""

    def __init__(self, batcher: SendBatcher, transport: Any, chunk: bytes, total: int) -> None:
        self.batcher, self.transport = batcher, transport
        self.chunk, self.left = chunk, total
        self.paused = 0

    def pauseProducing(self) -> None:
        self.paused += 1
        self._running = False

    def resumeProducing(self) -> None:
        self._running = True
        while self._running and self.left > 0:
            self.left -= 1
            self.batcher.write(self.transport, self.chunk)
        if self.left == 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self._running = False


class SendBatcherTests(TestCase):
    """
    Tests for L{SendBatcher} on a real connection: the proxy's side is the
    client end (a C{tcp.Client}), the collector the server end.
    """

    async def _connect(self) -> tuple[Any, _Collector]:
        """A connected pair: our transport and the far end's protocol."""
        far = _Collector()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: far), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        made: defer.Deferred[Any] = defer.Deferred()

        class _Near(Protocol):
            def connectionMade(self) -> None:
                made.callback(self.transport)

        factory = ClientFactory.forProtocol(_Near)
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        transport = await made
        return transport, far

    async def _until(self, condition: Any, what: str) -> None:
        """Let the reactor run until C{condition()} (at most 5 s)."""
        for _ in range(500):
            if condition():
                return
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"timed out waiting for {what}")

    async def test_turn_is_sent_at_its_end_in_order(self) -> None:
        """
        Writes made during one turn wait for its end, are not registered
        with the reactor as a writer, and arrive in order.
        """
        transport, far = await self._connect()
        batcher = SendBatcher(reactor)
        for piece in (b"one ", b"two ", b"three"):
            batcher.write(transport, piece)
        self.assertNotIn(transport, reactor.getWriters())
        self.assertEqual((transport.dataBuffer, transport._tempDataLen), (b"", 0))
        await self._until(lambda: bytes(far.received) == b"one two three", "the bytes")
        self.assertNotIn(transport, reactor.getWriters())

    async def test_more_than_the_kernel_takes_is_buffered_by_twisted(self) -> None:
        """
        A turn's bytes beyond what the socket takes go to the transport's
        buffer, and later writes queue behind them: all arrive, in order.
        """
        transport, far = await self._connect()
        batcher = SendBatcher(reactor)
        big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
        for offset in range(0, len(big), 60000):
            batcher.write(transport, big[offset : offset + 60000])
        batcher.write(transport, b"tail")
        await task.deferLater(reactor, 0, lambda: None)
        batcher.write(transport, b"after")
        await self._until(lambda: len(far.received) == len(big) + 9, "every byte")
        self.assertEqual(bytes(far.received), big + b"tailafter")

    async def test_close_from_a_timed_call_sends_first(self) -> None:
        """
        Bytes written from a timed call and flushed before
        C{loseConnection} (as the client channel does) arrive before the
        close, although Twisted would close before the end-of-turn send.
        """
        transport, far = await self._connect()
        batcher = SendBatcher(reactor)

        def answer_and_close() -> None:
            batcher.write(transport, b"last words")
            batcher.flush(transport)
            transport.loseConnection()

        reactor.callLater(0, answer_and_close)
        await far.closed
        self.assertEqual(bytes(far.received), b"last words")

    async def test_limit_sends_at_once(self) -> None:
        """
        Past C{limit} bytes for one connection, what was collected goes
        out at once instead of waiting for the end of the turn.
        """
        transport, far = await self._connect()
        batcher = SendBatcher(reactor)
        batcher.limit = 10
        batcher.write(transport, b"12345")
        self.assertEqual(len(batcher._pending), 1)
        batcher.write(transport, b"678901")
        self.assertEqual(batcher._pending, {})
        await self._until(lambda: bytes(far.received) == b"12345678901", "the bytes")

    async def test_producer_meets_backpressure(self) -> None:
        """
        A producer writing in a loop through the batcher is paused by the
        transport as its buffer fills, and everything still arrives.
        """
        transport, far = await self._connect()
        batcher = SendBatcher(reactor)
        chunk = b"x" * 16384
        producer = _Producer(batcher, transport, chunk, 2048)  # 32 MiB
        transport.registerProducer(producer, True)
        producer.resumeProducing()
        await far.closed
        self.assertEqual(len(far.received), 32 * 1024 * 1024)
        self.assertGreater(producer.paused, 0)

    def test_other_transports_are_written_at_once(self) -> None:
        """
        A transport that is not Twisted's plain TCP (here a fake) gets the
        bytes at once: nothing is collected for it.
        """
        batcher = SendBatcher(reactor)
        fake = StringTransport()
        batcher.write(fake, b"now")
        self.assertEqual((fake.value(), batcher._pending), (b"now", {}))
