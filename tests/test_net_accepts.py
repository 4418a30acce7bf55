"""
Tests for L{squeak.net.accepts}: a listening port out of descriptors pauses
instead of spinning, leaves the queued connections queued, says so once,
and accepts them when descriptors are free again.

These run Twisted's own C{tcp.Port} over a real loopback socket, so that a
Twisted release whose accept loop no longer goes through
C{self.socket.accept()} (the private detail L{guard_accepts} relies on)
fails here.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from squeak.net.accepts import AcceptGuard, guard_accepts

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
