"""
Tests for L{squeak.net.accepts}: a listening port out of descriptors pauses
instead of spinning, leaves the queued connections queued, says so once,
and accepts them when descriptors are free again.

These run Twisted's own C{tcp.Port} over a real loopback socket, so that a
Twisted release whose accept loop no longer goes through
C{self.socket.accept()} (the private detail L{guard_accepts} relies on)
fails here.  The same goes for L{SharedQueuePort}, which keeps the accept
queue the workers share fair, and relies on C{Port.doRead} accepting at
most C{numberAccepts} connections per call.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from squeak.net.accepts import (
    AcceptGuard,
    AcceptLedger,
    SharedQueuePort,
    WorkerAccepts,
    guard_accepts,
    over_share,
)

reactor: Any = _reactor


class _ExhaustedSocket:
    """
    A listening socket whose C{accept} fails with C{EMFILE} while
    C{exhausted} is set, as a process at its descriptor limit sees.

    @ivar accepts: How many times C{accept} was called.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.exhausted = True
        self.accepts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def accept(self) -> Any:
        self.accepts += 1
        if self.exhausted:
            raise OSError(errno.EMFILE, "Too many open files")
        return self._sock.accept()


class _Counting(Factory):
    """
    Counts the connections it was given.
    """

    protocol = Protocol

    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.built += 1
        return super().buildProtocol(addr)  # type: ignore[no-any-return]


async def _until(condition: Any, tries: int = 200) -> bool:
    """
    Wait (at most C{tries} times 10 ms) for C{condition()}.
    """
    for _ in range(tries):
        if condition():
            return True
        await deferLater(reactor, 0.01, lambda: None)
    return bool(condition())


class AcceptGuardTests(TestCase):
    """
    L{guard_accepts} over a real Twisted C{tcp.Port}.
    """

    def _listen(self) -> tuple[Any, AcceptGuard, _Counting, _ExhaustedSocket]:
        factory = _Counting()
        factory.noisy = False
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        guard = guard_accepts(reactor, port)
        assert guard is not None
        # Shorter than the 2 s in use, still longer than the longest pause.
        guard.QUIET = 0.6
        self.addCleanup(port.stopListening)
        self.addCleanup(guard.stop)
        self.assertIs(port.socket, guard)
        stub = _ExhaustedSocket(guard._socket)
        guard._socket = stub  # type: ignore[assignment]
        return port, guard, factory, stub

    def _connect(self, port: Any) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        self.addCleanup(client.close)
        return client

    async def test_pauses_without_spinning_then_accepts(self) -> None:
        """
        An accept failing with C{EMFILE} stops the port reading its socket
        for a pause (a handful of accepts a second, not one per reactor
        turn), leaves the connection queued rather than closing it, and
        once descriptors are free the queued connection is accepted.
        """
        port, guard, factory, stub = self._listen()
        client = self._connect(port)
        self.assertTrue(await _until(lambda: guard.failures >= 1))
        self.assertNotIn(port, reactor.getReaders())
        await deferLater(reactor, 0.6, lambda: None)
        # 0.1 + 0.2 + 0.4 s of pauses: at most 3 more tries, not thousands.
        self.assertLessEqual(stub.accepts, 4)
        self.assertEqual(factory.built, 0)
        client.setblocking(False)
        with self.assertRaises(BlockingIOError):
            client.recv(1)  # not closed: still queued
        stub.exhausted = False
        self.assertTrue(await _until(lambda: factory.built == 1))
        self.assertTrue(await _until(lambda: guard.failures == 0))
        self.assertIn(port, reactor.getReaders())

    async def test_logged_once_per_episode(self) -> None:
        """
        An episode is logged once when it starts (naming EMFILE), however
        many accepts fail, and once when no accept has failed for a while,
        with the number of accepts that failed.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        port, guard, factory, stub = self._listen()
        self._connect(port)
        self.assertTrue(await _until(lambda: stub.accepts >= 3))
        stub.exhausted = False
        self.assertTrue(await _until(lambda: factory.built == 1))
        self.assertTrue(await _until(lambda: guard.failures == 0))
        ours = [
            e for e in events if str(e.get("log_namespace", "")).startswith("squeak.net.accepts")
        ]
        self.assertEqual(len(ours), 2, ours)
        self.assertEqual(ours[0]["code"], "EMFILE")
        self.assertIn("cannot accept connections", ours[0]["log_format"])
        self.assertGreaterEqual(ours[1]["failures"], 3)
        self.assertIn("accepting normally again", ours[1]["log_format"])
        self.assertFalse(
            [e for e in events if "EMFILE" in str(e.get("log_format", ""))],
            "Twisted's own per-failure lines",
        )

    async def test_stopped_port_not_resumed(self) -> None:
        """
        A port that stops listening during a pause is not read again, and
        no timer is left behind.
        """
        port, guard, _, _ = self._listen()
        self._connect(port)
        self.assertTrue(await _until(lambda: guard.failures >= 1))
        guard.stop()
        await port.stopListening()
        await deferLater(reactor, guard.LONGEST_PAUSE, lambda: None)
        self.assertNotIn(port, reactor.getReaders())

    def test_only_plain_tcp_ports(self) -> None:
        """
        Anything but a Twisted C{tcp.Port} (whose accept loop the guard
        knows) is left alone.
        """
        self.assertIsNone(guard_accepts(reactor, object()))


class OverShareTests(SynchronousTestCase):
    """
    L{over_share}: when a worker leaves the next connection to its peers.
    """

    def test_cases(self) -> None:
        """
        Only beyond C{slack} more than the least busy peer; never alone.
        """
        cases = [
            # mine, peers, slack, yields
            (0, [], 2, False),
            (100, [], 2, False),
            (2, [0], 2, False),
            (3, [0], 2, True),
            (3, [1, 0], 2, True),
            (3, [1, 5], 2, False),
            (1, [0], 0, True),
        ]
        for mine, peers, slack, yields in cases:
            self.assertEqual(over_share(mine, peers, slack), yields, (mine, peers, slack))


class AcceptLedgerTests(SynchronousTestCase):
    """
    L{AcceptLedger}: what each worker holds, shared through one mapping.
    """

    def setUp(self) -> None:
        self.ledger = AcceptLedger.create()
        self.addCleanup(os.close, self.ledger.fd)
        self.addCleanup(self.ledger.close)

    def test_entries_handed_out_and_cleared(self) -> None:
        """
        The master hands out entries not taken, cleared of what a previous
        worker left.
        """
        first = self.ledger.hand_out(set())
        self.ledger.claim(first, 100, 0)
        self.ledger.add(first, 3, 7)
        second = self.ledger.hand_out({first})
        self.assertNotEqual(first, second)
        self.assertEqual(self.ledger.connections(first), 7)
        self.assertEqual(self.ledger.hand_out({second}), first)
        self.assertEqual(self.ledger.connections(first), 0)

    def test_peers_of_the_same_generation_that_accept(self) -> None:
        """
        A worker's peers are the other workers of its generation that
        listen: not retiring ones, draining ones or exited ones; a second
        mapping of the same descriptor (a worker) sees the same.
        """
        entries = [self.ledger.hand_out(set(range(1, n + 1))) for n in range(5)]
        me, peer, retiring, draining, gone = entries
        for entry, generation, listening, connections in (
            (me, 1, 1, 4),
            (peer, 1, 1, 2),
            (retiring, 0, 1, 0),
            (draining, 1, 0, 0),
            (gone, 1, 1, 0),
        ):
            self.ledger.claim(entry, 1000 + entry, generation)
            self.ledger.add(entry, 2, listening)
            self.ledger.add(entry, 3, connections)
        self.ledger.clear(gone)
        other = AcceptLedger(self.ledger.fd)
        self.addCleanup(other.close)
        self.assertEqual(other.peers(me), [2])
        self.assertEqual(other.peers(peer), [4])


class SharedQueuePortTests(TestCase):
    """
    L{SharedQueuePort}s over a real loopback socket: ports of two workers
    (here in one process, with entries of their own) share the queue
    fairly, and a yielding one still accepts what its peers leave.
    """

    def setUp(self) -> None:
        self.ledger = AcceptLedger.create()
        self.addCleanup(os.close, self.ledger.fd)
        self.addCleanup(self.ledger.close)
        self.sock = socket.socket()
        self.addCleanup(self.sock.close)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def _worker(self, slot: int) -> tuple[Any, _Counting]:
        entry = self.ledger.hand_out(set(range(1, slot + 1)))
        accepts = WorkerAccepts(reactor, slot, 3, self.ledger, entry)
        factory = _Counting()
        factory.noisy = False
        port = accepts.adopt(reactor, self.sock, factory)
        self.assertIsInstance(port, SharedQueuePort)
        self.addCleanup(port.stopListening)
        return port, factory

    def _connect(self, count: int) -> list[socket.socket]:
        clients = [socket.create_connection(self.address, timeout=5) for _ in range(count)]
        for client in clients:
            self.addCleanup(client.close)
        return clients

    async def test_two_ports_share_a_burst(self) -> None:
        """
        A burst of 20 connections queued at once is split within the
        slack; each port's connections are counted while they are open.
        """
        first, first_built = self._worker(0)
        second, second_built = self._worker(1)
        clients = self._connect(20)
        self.assertTrue(await _until(lambda: first_built.built + second_built.built == 20))
        self.assertLessEqual(abs(first_built.built - second_built.built), 3)
        entries = (first.accepts.entry, second.accepts.entry)
        self.assertEqual(
            [self.ledger.connections(entry) for entry in entries],
            [first_built.built, second_built.built],
        )
        for client in clients:
            client.close()
        self.assertTrue(
            await _until(lambda: [self.ledger.connections(e) for e in entries] == [0, 0])
        )

    async def test_yielding_port_accepts_after_its_patience(self) -> None:
        """
        With a peer that listens but never accepts (busy, or not scheduled),
        a port takes its slack's worth at once, then each further queued
        connection only after leaving it L{SharedQueuePort.patience}
        seconds to the peer.
        """
        peer = self.ledger.hand_out(set())
        self.ledger.claim(peer, 1, 3)
        self.ledger.add(peer, 2, 1)  # listening, holding nothing
        port, built = self._worker(1)
        self.assertNotEqual(port.accepts.entry, peer)
        started = reactor.seconds()
        self._connect(5)
        self.assertTrue(await _until(lambda: built.built == SharedQueuePort.slack + 1))
        self.assertTrue(await _until(lambda: built.built == 5))
        waited = reactor.seconds() - started
        self.assertGreaterEqual(waited, 2 * SharedQueuePort.patience)
