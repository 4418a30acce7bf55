# -*- test-case-name: tests.test_net_accepts -*-
"""
Accepting connections when file descriptors run out: pause, do not spin.

When C{accept(2)} fails for want of a descriptor (C{EMFILE}: the process's
limit; C{ENFILE}: the system's; C{ENOBUFS}, C{ENOMEM}), the connection stays
in the listening socket's queue and the socket stays readable.  Twisted's
C{tcp.Port.doRead} then either logs the error and returns, so that the
reactor calls it again at once (a busy loop, one log line per turn), or,
for C{EMFILE}, frees its reserved descriptor, accepts every queued
connection and closes it unanswered (one log line per connection).

L{guard_accepts} makes a listening port do what Squid does instead: stop
reading the listening socket for a moment (L{AcceptGuard.FIRST_PAUSE}
seconds, doubling up to L{AcceptGuard.LONGEST_PAUSE}) and try again, so
that the queued connections wait, untouched, until the connections being
served have finished and freed their descriptors; say so once per episode,
and once more when no accept has failed for L{AcceptGuard.QUIET} seconds,
with the number of accepts that failed meanwhile.

The hook relies on one private detail of Twisted's C{tcp.Port}: its
C{doRead} accepts through C{self.socket.accept()} and stops quietly on
C{EAGAIN}.  L{guard_accepts} puts an L{AcceptGuard} in place of the
port's socket; the guard turns an exhausted C{accept} into C{EAGAIN}
after pausing the port (docs/architecture.md, "Private Twisted details
relied on"; C{tests.test_net_accepts} fails if Twisted changes it).
"""

from __future__ import annotations

import errno
import os
import resource
import socket
from typing import Any, cast

from twisted.internet import tcp
from twisted.logger import Logger

__all__ = ["EXHAUSTED", "AcceptGuard", "guard_accepts"]

#: The errors of C{accept(2)} that mean "no descriptor or buffer to give
#: the new connection" rather than "this connection failed".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class AcceptGuard:
    """
    Stands in for a listening port's socket: every attribute is the
    socket's, except C{accept}, which pauses the port when the process is
    out of descriptors.

    @ivar failures: The accepts that failed in the current episode (0 when
        accepting normally).
    """

    #: Seconds of the first pause, and of the longest: short enough that a
    #: queued client barely notices, long enough that the reactor does not
    #: spin on a socket that stays readable.
    FIRST_PAUSE = 0.1
    LONGEST_PAUSE = 0.5
    #: Seconds without a failed accept that end an episode: longer than
    #: the longest pause, so that an episode is not ended (and a new one
    #: logged) by every pause after which a few connections got in.
    QUIET = 2.0

    _log = Logger(namespace="squeak.net.accepts")

    def __init__(self, reactor: Any, port: Any, sock: socket.socket, address: str) -> None:
        """
        @param port: The L{tcp.Port} whose C{socket} this stands in for.
        @param sock: That socket.
        @param address: The listener's address, for the log.
        """
        self._reactor = reactor
        self._port = port
        self._socket = sock
        self._address = address
        self._pause = self.FIRST_PAUSE
        self._resume: Any = None
        self._quiet: Any = None
        self._since = 0.0
        self._last = 0.0
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        """
        Everything but C{accept} is the socket's own (C{fileno},
        C{getsockname}, C{shutdown}, C{close} ...).
        """
        return getattr(self._socket, name)

    def accept(self) -> tuple[socket.socket, Any]:
        """
        Accept one connection, as C{socket.accept}.

        @raise BlockingIOError: C{EAGAIN} when out of descriptors, after
            pausing the port: Twisted's accept loop then ends its turn
            quietly, and leaves the queued connections where they are.
        """
        try:
            return self._socket.accept()
        except OSError as error:
            if error.errno not in EXHAUSTED:
                raise
            self._exhausted(error.errno)
            raise BlockingIOError(errno.EAGAIN, "accepting paused") from None

    def _exhausted(self, code: int) -> None:
        """
        An accept failed for want of a descriptor: stop reading the
        listening socket and try again after a pause; log the first
        failure of an episode.
        """
        self._last = self._reactor.seconds()
        if not self.failures:
            self._since = self._last
            self._quiet = self._reactor.callLater(self.QUIET, self._check_quiet)
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            self._log.warn(
                "squeak cannot accept connections on {address}: {code} {reason} "
                "(the limit is {limit} file descriptors); pausing accepts for "
                "{first}-{longest} s at a time until descriptors are free",
                address=self._address,
                code=errno.errorcode.get(code, str(code)),
                reason=os.strerror(code),
                limit=soft,
                first=self.FIRST_PAUSE,
                longest=self.LONGEST_PAUSE,
            )
        self.failures += 1
        if self._resume is None:
            self._port.stopReading()
            self._resume = self._reactor.callLater(self._pause, self._resume_accepting)
            self._pause = min(self._pause * 2, self.LONGEST_PAUSE)

    def _resume_accepting(self) -> None:
        """
        The pause is over: read the listening socket again, unless the port
        has stopped listening meanwhile.
        """
        self._resume = None
        if self._port.connected and not self._port.disconnecting:
            self._port.startReading()

    def _check_quiet(self) -> None:
        """
        End the episode if no accept has failed for L{QUIET} seconds, else
        look again when that will be so.
        """
        self._quiet = None
        idle = self._reactor.seconds() - self._last
        if idle < self.QUIET:
            self._quiet = self._reactor.callLater(self.QUIET - idle, self._check_quiet)
            return
        self._log.info(
            "squeak accepting normally again on {address}: {failures} accepts "
            "waited for a free descriptor over {seconds:.1f} s",
            address=self._address,
            failures=self.failures,
            seconds=self._last - self._since,
        )
        self.failures = 0
        self._pause = self.FIRST_PAUSE

    def stop(self) -> None:
        """
        Cancel the pending resume and episode check (the port is stopping).
        """
        for pending in (self._resume, self._quiet):
            if pending is not None and pending.active():
                pending.cancel()
        self._resume = self._quiet = None


def guard_accepts(reactor: Any, port: Any) -> AcceptGuard | None:
    """
    Make C{port} pause rather than spin when out of descriptors.

    @param port: A listening port, as C{adoptStreamPort}, C{listenTCP} or
        C{listenSSL} return it.
    @return: The guard (call its C{stop} before the port stops
        listening), or L{None} for a port that is not a plain Twisted
        C{tcp.Port} (whose accept loop this does not know).
    """
    if not isinstance(port, tcp.Port) or not isinstance(port.socket, socket.socket):
        return None
    host = cast(Any, port).getHost()
    shown = f"[{host.host}]" if ":" in host.host else host.host
    guard = AcceptGuard(reactor, port, port.socket, f"{shown}:{host.port}")
    port.socket = guard
    return guard
