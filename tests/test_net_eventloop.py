"""
L{squeak.net.eventloop.LeanEPollReactor}, a reactor of its own beside trial's:
real loopback connections work over it, and an error escaping an event's
handler is logged without stopping the other events of the same poll.
"""

from __future__ import annotations

import errno
import select
import socket
from typing import Any

from twisted.internet import error
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase

if not hasattr(select, "epoll"):
    raise SkipTest("no epoll on this platform")

from squeak.net.eventloop import LeanEPollReactor, install_default

#: Bound on reactor iterations for any exchange (each waits at most 10 ms).
_ITERATIONS = 500


def _lean_reactor(test: TestCase) -> LeanEPollReactor:
    """
    A new lean reactor, torn down after the test (as Twisted's own
    reactor tests do: internal readers, connections, timed calls, poller).
    """
    reactor = LeanEPollReactor()

    def tear_down() -> None:
        for reader in list(reactor._internalReaders):
            reactor.removeReader(reader)
            reader.connectionLost(None)
        reactor._internalReaders.clear()
        reactor.disconnectAll()
        for call in reactor.getDelayedCalls():
            call.cancel()
        reactor._poller.close()

    test.addCleanup(tear_down)
    return reactor


def _iterate_until(reactor: LeanEPollReactor, done: Any) -> None:
    for _ in range(_ITERATIONS):
        if done():
            return
        reactor.iterate(0.01)
    raise AssertionError(f"not done after {_ITERATIONS} reactor iterations")


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class _Client(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def connectionMade(self) -> None:
        self.transport.write(b"ping " * 1000)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class _Selectable:
    """A reader on one end of a socket pair, for driving the poll directly."""

    def __init__(self, sock: socket.socket, on_read: Any) -> None:
        self.sock = sock
        self._on_read = on_read
        self.lost: list[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "test-selectable"

    def doRead(self) -> Any:
        self.sock.recv(100)
        return self._on_read()

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)
        raise RuntimeError("connectionLost failed")


class LeanEPollReactorTests(TestCase):
    def test_carries_a_loopback_exchange(self) -> None:
        """
        A TCP client and server on the lean reactor exchange 5,000 bytes
        both ways and close cleanly.
        """
        reactor = _lean_reactor(self)
        port = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        client = _Client()
        reactor.connectTCP(
            "127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: client)
        )
        _iterate_until(reactor, lambda: len(client.received) == 5000)
        self.assertEqual(client.received, b"ping " * 1000)
        client.transport.loseConnection()
        _iterate_until(reactor, lambda: client.lost)
        port.stopListening()

    def test_error_escaping_a_handler_is_logged_and_the_poll_goes_on(self) -> None:
        """
        When handling one event raises past Twisted's own handler (here a
        connectionLost that fails), the error is logged and the other
        ready descriptor of the same poll is still handled, as
        C{log.callWithLogger} did for the stock reactor.
        """
        reactor = _lean_reactor(self)
        pairs = [socket.socketpair() for _ in range(2)]
        for pair in pairs:
            self.addCleanup(pair[0].close)
            self.addCleanup(pair[1].close)
        handled: list[str] = []

        def failing_read() -> Any:
            handled.append("failing")
            return error.ConnectionLost()

        def good_read() -> None:
            handled.append("good")

        failing = _Selectable(pairs[0][0], failing_read)
        good = _Selectable(pairs[1][0], good_read)
        reactor.addReader(failing)
        reactor.addReader(good)
        for pair in pairs:
            pair[1].send(b"x")
        reactor.doIteration(1.0)
        self.assertEqual(sorted(handled), ["failing", "good"])
        self.assertEqual(len(failing.lost), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # The failed descriptor was removed before its connectionLost ran.
        self.assertNotIn(failing, reactor.getReaders())
        self.assertIn(good, reactor.getReaders())
        reactor.removeReader(good)

    def test_interrupted_poll_is_a_quiet_empty_turn(self) -> None:
        """
        epoll_wait interrupted by a signal (EINTR) ends the turn without an
        error; any other poll error is raised.
        """
        reactor = _lean_reactor(self)

        class _Poller:
            def __init__(self, errno_value: int) -> None:
                self.errno_value = errno_value

            def poll(self, timeout: float, most: int) -> Any:
                raise OSError(self.errno_value, "poll failed")

            def close(self) -> None:
                pass

        real = reactor._poller
        self.addCleanup(setattr, reactor, "_poller", real)
        reactor._poller = _Poller(errno.EINTR)
        reactor.doIteration(0)
        reactor._poller = _Poller(errno.EBADF)
        self.assertRaises(OSError, reactor.doIteration, 0)


class InstallDefaultTests(TestCase):
    def test_keeps_an_installed_reactor(self) -> None:
        """
        With a reactor already installed (trial's, or twistd --reactor),
        nothing is replaced.
        """
        from twisted.internet import reactor

        self.assertFalse(install_default())
        from twisted.internet import reactor as after

        self.assertIs(after, reactor)
