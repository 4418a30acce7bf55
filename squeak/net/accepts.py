# -*- test-case-name: tests.test_net_accepts -*-
"""
Accepting connections: when file descriptors run out, pause, do not spin;
in worker processes, say what the port is, and keep the accept queue the
workers share fair (L{SharedQueuePort}, after the first part).

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
import mmap
import os
import resource
import select
import socket
from collections.abc import Collection, Sequence
from typing import Any, cast

from twisted.internet import tcp
from twisted.logger import Logger
from typing_extensions import override

__all__ = [
    "EXHAUSTED",
    "AcceptGuard",
    "AcceptLedger",
    "AdoptedPort",
    "SharedQueuePort",
    "WorkerAccepts",
    "guard_accepts",
    "over_share",
]

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

    @property
    def paused(self) -> bool:
        """Whether accepting is paused for want of descriptors."""
        return self._resume is not None

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


# -- workers: one accept queue shared fairly ---------------------------------

#: Words per ledger entry: the worker's PID, its reload generation, its
#: listening ports, its open connections.
_PID, _GENERATION, _LISTENING, _CONNECTIONS = range(4)
_WORDS = 4


class AcceptLedger:
    """
    What each worker process holds, shared by the master and its workers
    (an anonymous C{memfd} the master creates and every worker inherits
    and maps): per worker, its PID, its reload generation, how many
    listening ports it accepts on, and how many connections it has open.

    Entry 0 is the header: its first word is one past the highest entry
    the master has handed out, so that readers scan no further.  Each
    worker entry has one writer, its worker; the master clears an entry
    before handing it to a worker and after that worker has exited.  The
    words are aligned 64-bit integers, read and written whole.
    """

    #: Entries, the header included: more than twice the workers (a reload
    #: overlaps the old and the new), with room for restarts meanwhile.
    entries = 1024

    def __init__(self, fd: int) -> None:
        """
        Map the ledger in C{fd} (the master's, or inherited).
        """
        self.fd = fd
        self._map = mmap.mmap(fd, self.entries * _WORDS * 8)
        self.words = memoryview(self._map).cast("q")

    @classmethod
    def create(cls) -> AcceptLedger:
        """
        A new, zeroed ledger (in the master).

        @raise OSError: If the memory cannot be had.
        """
        fd = os.memfd_create("squeak-accepts")
        try:
            os.ftruncate(fd, cls.entries * _WORDS * 8)
        except OSError:
            os.close(fd)
            raise
        return cls(fd)

    def hand_out(self, taken: Collection[int]) -> int:
        """
        A free worker entry (not in C{taken}), cleared (in the master).

        @raise RuntimeError: If every entry is taken.
        """
        for entry in range(1, self.entries):
            if entry not in taken:
                self.clear(entry)
                self.words[0] = max(self.words[0], entry + 1)
                return entry
        raise RuntimeError("no free entry in the accept ledger")

    def clear(self, entry: int) -> None:
        """Forget what the worker at C{entry} held (it exited)."""
        base = entry * _WORDS
        for word in range(_WORDS):
            self.words[base + word] = 0

    def add(self, entry: int, word: int, delta: int) -> None:
        """Add C{delta} to one word of the (caller's own) C{entry}."""
        self.words[entry * _WORDS + word] += delta

    def claim(self, entry: int, pid: int, generation: int) -> None:
        """A worker takes its entry: its PID and generation, nothing held."""
        base = entry * _WORDS
        self.words[base + _LISTENING] = 0
        self.words[base + _CONNECTIONS] = 0
        self.words[base + _GENERATION] = generation
        self.words[base + _PID] = pid

    def connections(self, entry: int) -> int:
        """The connections the worker at C{entry} has open."""
        return self.words[entry * _WORDS + _CONNECTIONS]

    def peers(self, entry: int) -> list[int]:
        """
        The open connections of every other worker of C{entry}'s generation
        that accepts (a worker of an older generation is retiring; one that
        has stopped listening is draining; neither takes new connections).
        """
        words = self.words
        generation = words[entry * _WORDS + _GENERATION]
        found = []
        for other in range(1, min(words[0], self.entries)):
            if other == entry:
                continue
            base = other * _WORDS
            if (
                words[base + _PID]
                and words[base + _LISTENING] > 0
                and words[base + _GENERATION] == generation
            ):
                found.append(words[base + _CONNECTIONS])
        return found

    def close(self) -> None:
        """Unmap (the descriptor is the caller's to close)."""
        self.words.release()
        self._map.close()


def over_share(mine: int, peers: Sequence[int], slack: int) -> bool:
    """
    Whether a worker holding C{mine} connections should leave the next one
    to a peer: it holds more than C{slack} beyond the least busy peer that
    accepts on the same queue.  Never with no such peer.
    """
    return bool(peers) and mine > min(peers) + slack


class WorkerAccepts:
    """
    How a worker process accepts on the listening sockets it inherited:
    through L{AdoptedPort}, which says in the log what it is, and, when the
    workers share one accept queue, L{SharedQueuePort}, which keeps that
    queue fair (see its docstring).

    @ivar slot: The worker's slot (the master's numbering).
    @ivar ledger: The shared ledger (a shared queue), else L{None}.
    @ivar entry: The worker's entry in it.
    """

    def __init__(
        self,
        reactor: Any,
        slot: int,
        generation: int,
        ledger: AcceptLedger | None = None,
        entry: int = 0,
    ) -> None:
        self.reactor = reactor
        self.slot = slot
        self.ledger = ledger
        self.entry = entry
        if ledger is not None:
            ledger.claim(entry, os.getpid(), generation)

    @classmethod
    def parse(cls, reactor: Any, spec: str) -> WorkerAccepts:
        """
        From the master's C{--accepting} argument:
        C{slot=S,generation=G[,ledger=FD,entry=E]}.

        @raise ValueError: If it is malformed.
        """
        fields = dict(part.partition("=")[::2] for part in spec.split(","))
        ledger = AcceptLedger(int(fields["ledger"])) if "ledger" in fields else None
        return cls(
            reactor,
            int(fields["slot"]),
            int(fields["generation"]),
            ledger,
            int(fields.get("entry", "0")),
        )

    def adopt(self, reactor: Any, sock: socket.socket, factory: Any) -> Any:
        """
        Start accepting on C{sock}, inherited from the master, as
        L{squeak.net.listeners.adopt} does: on a duplicate of its
        descriptor.
        """
        kind = AdoptedPort if self.ledger is None else SharedQueuePort
        port = cast(Any, kind)._fromListeningDescriptor(
            reactor, sock.fileno(), sock.family, factory
        )
        port.accepts = self
        port.startListening()
        return port


class AdoptedPort(tcp.Port):
    """
    A worker's port on a listening socket the master bound: as Twisted's
    own (C{adoptStreamPort} builds the same through
    C{tcp.Port._fromListeningDescriptor}), but its log lines say what it
    is, a worker accepting on the master's socket, rather than
    C{ForwardProxyFactory starting on 3128}, which reads as if each worker
    had bound the port.
    """

    accepts: WorkerAccepts
    _log = Logger(namespace="squeak.net.accepts")
    #: How the log describes the queue.
    queue = "its own SO_REUSEPORT queue, bound by the master"

    def _address(self) -> str:
        host = cast(Any, self).getHost()
        shown = f"[{host.host}]" if ":" in host.host else host.host
        return f"{shown}:{host.port}"

    @override
    def startListening(self) -> None:
        # Twisted's startListening for an adopted socket, but for the log
        # line: it would say "<factory> starting on <port>".
        cast(Any, tcp._reservedFD).reserve()
        sock = self._preexistingSocket
        assert sock is not None, "AdoptedPort listens only on an adopted socket"
        self._preexistingSocket = None
        self._shouldShutdown = False
        self._realPortNumber = sock.getsockname()[1]
        self.socket = sock
        self._log.info(
            "worker in slot {slot} (pid {pid}) accepting on {address} ({queue})",
            slot=self.accepts.slot,
            pid=os.getpid(),
            address=self._address(),
            queue=self.queue,
        )
        cast(Any, self.factory).doStart()
        self.connected = True
        self.fileno = sock.fileno  # type: ignore[method-assign]
        self.numberAccepts = 100
        self.started()
        cast(Any, self).startReading()

    def started(self) -> None:
        """The port is about to read (subclasses)."""

    @override
    def _logConnectionLostMsg(self) -> None:
        self._log.info(
            "worker in slot {slot} (pid {pid}) stopped accepting on {address}",
            slot=self.accepts.slot,
            pid=os.getpid(),
            address=f"port {self._realPortNumber}",
        )


class _CountedServer(tcp.Server):
    """
    A connection accepted by a L{SharedQueuePort}: counted in the ledger
    while it is open.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Counted as soon as accepted, so that a peer reading the ledger
        # next sees it.
        cast(SharedQueuePort, self.server).connection_opened()

    @override
    def connectionLost(self, reason: Any) -> None:
        try:
            cast(Any, super()).connectionLost(reason)
        finally:
            cast(SharedQueuePort, self.server).connection_closed()


class SharedQueuePort(AdoptedPort):
    """
    A worker's port on the accept queue it shares with the other workers,
    kept fair.

    Why: every worker polls the one listening socket, and Twisted's
    C{Port.doRead} accepts up to C{numberAccepts} connections per wake-up
    (100 at first, growing by 20 while it finds more), so the first
    worker to wake drains the whole backlog.  With 64 keep-alive
    connections opened at once, one worker took 41-54 of them (measured,
    docs/performance.md) and kept them for as long as they lived: two
    workers served about what one does.

    What others do: nginx by default accepts one connection per event
    (C{multi_accept off}); before C{EPOLLEXCLUSIVE} it let one worker at a
    time poll the socket (C{accept_mutex}, retried every
    C{accept_mutex_delay}, 500 ms), and a worker with more than 7/8 of its
    connections in use stops trying for the mutex for a while.  Squid's SMP
    workers share the queue with no mutex, and accept one connection per
    readiness event (C{Comm::TcpAcceptor::doAccept} calls C{acceptOne}
    once).
    Python's C{epoll} has C{EPOLLEXCLUSIVE}, but Twisted's reactor
    registers descriptors itself, and an exclusive wake-up does not
    balance either: the kernel wakes the worker that waits, which is
    again the least busy only by chance.

    What this does, both of nginx's ideas by connection count:
      - one accept per wake-up (nginx's default): the workers woken by a
        connection take turns rather than one draining the queue;
      - a worker that holds more than L{slack} connections beyond the least
        busy peer on the queue (the L{AcceptLedger}) leaves the queue to
        its peers: it stops polling the socket, and every L{tick} seconds
        looks whether a connection is still waiting.  If none is, the
        peers took it, and it polls again; if one has waited L{patience}
        seconds, the peers are not taking it (busy, stopped, or slow to be
        scheduled), and this worker accepts it anyway.  So the balance is
        by the connections each worker holds, and a queued connection
        waits at most L{patience} for a worker that yields.

    A connection is counted from its accept to its end, whatever it does
    (idle keep-alive or busy): the count is what a worker has to serve
    from then on, which is what the benchmark's pile-up was.
    """

    transport: Any = _CountedServer
    queue = "the master's socket, one accept queue shared by the workers"
    #: Connections a worker may hold beyond its least busy peer before it
    #: yields: enough that two workers do not hand the queue back and forth
    #: at every connection, few against the 64 a benchmark opens.
    slack = 2
    #: Seconds between looks at the queue while yielding (the reactor's
    #: timers have millisecond resolution).
    tick = 0.002
    #: Seconds a queued connection is left to the peers before a yielding
    #: worker accepts it anyway (nginx's C{accept_mutex_delay} is 0.5 s):
    #: longer than a busy two-core machine makes a runnable worker wait.
    patience = 0.05

    _yield_call: Any = None
    _yield_since: float | None = None
    _force = False

    @property
    def _ledger(self) -> AcceptLedger:
        assert self.accepts.ledger is not None
        return self.accepts.ledger

    @override
    def started(self) -> None:
        self.numberAccepts = 1
        self._ledger.add(self.accepts.entry, _LISTENING, 1)

    def connection_opened(self) -> None:
        """This port accepted a connection."""
        self._ledger.add(self.accepts.entry, _CONNECTIONS, 1)

    def connection_closed(self) -> None:
        """One of this port's connections ended."""
        self._ledger.add(self.accepts.entry, _CONNECTIONS, -1)

    def over_share(self) -> bool:
        """Whether this worker should leave the next connection to a peer."""
        entry = self.accepts.entry
        ledger = self._ledger
        return over_share(ledger.connections(entry), ledger.peers(entry), self.slack)

    @override
    def doRead(self) -> Any:
        if self._force:
            self._force = False
        elif self.over_share():
            self._yield()
            return None
        self._yield_since = None
        # One accept per wake-up, whatever Twisted's loop made of the last.
        self.numberAccepts = 1
        return cast(Any, super()).doRead()

    def _yield(self) -> None:
        """Stop polling the queue; look again in L{tick} seconds."""
        if self._yield_since is None:
            self._yield_since = self.reactor.seconds()
        cast(Any, self).stopReading()
        if self._yield_call is None:
            self._yield_call = self.reactor.callLater(self.tick, self._look)

    def _look(self) -> None:
        """
        While yielding: poll again once the queue is empty or this worker
        is no longer over its share; accept anyway once a connection has
        waited L{patience} seconds.
        """
        self._yield_call = None
        if not self.connected or self.disconnecting:
            return
        if getattr(self.socket, "paused", False):
            # Out of descriptors: the AcceptGuard resumes reading itself.
            self._yield_since = None
            return
        if not self._waiting():
            self._yield_since = None
            cast(Any, self).startReading()
            return
        since = self._yield_since if self._yield_since is not None else self.reactor.seconds()
        if self.reactor.seconds() - since >= self.patience:
            self._force = True
            cast(Any, self).startReading()
        elif self.over_share():
            self._yield_call = self.reactor.callLater(self.tick, self._look)
        else:
            cast(Any, self).startReading()

    def _waiting(self) -> bool:
        """Whether a connection waits in the queue (without taking it)."""
        poller = select.poll()
        poller.register(self.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    @override
    def connectionLost(self, reason: Any) -> None:
        if self._yield_call is not None and self._yield_call.active():
            self._yield_call.cancel()
        self._yield_call = None
        self._ledger.add(self.accepts.entry, _LISTENING, -1)
        cast(Any, super()).connectionLost(reason)
