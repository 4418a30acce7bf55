# -*- test-case-name: tests.test_drain -*-
"""
Stopping without dropping what is in flight.

One running configuration is a L{Serving}: the service tree that
L{squeak.service.build_service} makes, started and stopped in the order a
clean stop needs.  Twisted's C{MultiService} stops its children all at once,
which would close the access log and the cache while responses are still
being sent; L{Serving.stopService} instead

  1. stops every listener (queued connections stay in the listening
     socket, which the process that bound it still holds, for whoever
     serves it next);
  2. drains: every client connection is told to close when idle
     (L{squeak.net.channel.ClientChannel.close_when_idle}), and the
     requests and tunnels in flight get C{timeouts.shutdown_lifetime}
     seconds to finish; what is left then is cut, each cut request logged
     (C{TCP_MISS_ABORTED}) as its connection is lost;
  3. stops the rest: the upstream pool, the access log (flushed) and the
     cache (closed cleanly).

L{StopSignals} turns C{SIGTERM} and C{SIGINT} into that graceful stop, and
a second one into an immediate stop, which Twisted's own handlers cannot do
(a second C{reactor.stop()} only logs C{ReactorNotRunning}).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Collection
from types import FrameType
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from typing_extensions import override

__all__ = ["Drain", "Serving", "StopSignals"]

#: Seconds a connection accepted just before the drain has to send its
#: request, which is then answered; at most the rest of the lifetime.
NEW_CONNECTION_GRACE = 2.0

#: How often the drain looks at the connections still open, in seconds.
POLL_INTERVAL = 0.05

_log = Logger(namespace="squeak.drain")


class Drain:
    """
    Lets the client connections in a live collection finish, within a
    lifetime, then cuts what is left.

    @ivar cut: How many connections had to be cut.
    """

    def __init__(
        self,
        reactor: Any,
        channels: Collection[Any],
        lifetime: float,
        *,
        poll: float = POLL_INTERVAL,
    ) -> None:
        """
        @param channels: The open client connections, a collection that
            shrinks as they close (L{squeak.proxy.exchange.ProxyContext.channels}).
        @param lifetime: Seconds until what is still open is cut.
        """
        self._reactor = reactor
        self._channels = channels
        self._lifetime = lifetime
        self._deadline = reactor.seconds() + lifetime
        self._poll = poll
        self._cutting = False
        self.cut = 0
        self.done: Deferred[int] = Deferred()
        self._call: Any = None

    def start(self) -> Deferred[int]:
        """
        Tell every connection to close when idle, and start waiting.

        @return: L{done}: fires, once every connection is closed, with how
            many had to be cut.
        """
        grace = min(NEW_CONNECTION_GRACE, self._lifetime)
        for channel in list(self._channels):
            channel.close_when_idle(grace)
        self._check()
        return self.done

    def cut_now(self) -> None:
        """
        Do not wait any longer: cut what is still open.
        """
        self._deadline = self._reactor.seconds()
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._check()

    def _check(self) -> None:
        self._call = None
        channels = self._channels
        if not channels:
            if self.cut:
                _log.info("cut {count} connection(s) still busy at shutdown", count=self.cut)
            self.done.callback(self.cut)
            return
        if not self._cutting and self._reactor.seconds() >= self._deadline:
            self._cutting = True
            busy = list(channels)
            self.cut = len(busy)
            _log.info(
                "shutdown_lifetime ({lifetime:g}s) is over: cutting {count} connection(s)",
                lifetime=self._lifetime,
                count=self.cut,
            )
            for channel in busy:
                channel.transport.abortConnection()
        self._call = self._reactor.callLater(self._poll, self._check)


def track_connections(factory: Any) -> set[Any]:
    """
    Keep the set of open connections of a factory whose protocols are not
    L{squeak.net.channel.ClientChannel}s (the intercept TLS splices), so a
    drain can wait for them too: each joins the set when built and leaves
    it when its connection is lost, also after a L{squeak.net.tunnel.Tunnel}
    took it over (which calls its C{forget}).  Told to close when idle, a
    splice carries on: it is a tunnel, left to finish within the lifetime.

    @return: The live set.
    """
    connections: set[Any] = set()
    build = factory.buildProtocol

    def build_tracked(addr: Any) -> Any:
        protocol = build(addr)
        if protocol is None:
            return None
        connections.add(protocol)
        lost = protocol.connectionLost

        def connection_lost(reason: Any = None) -> None:
            connections.discard(protocol)
            if reason is None:
                lost()
            else:
                lost(reason)

        protocol.connectionLost = connection_lost
        protocol.forget = lambda: connections.discard(protocol)
        protocol.close_when_idle = lambda grace: None
        return protocol

    factory.buildProtocol = build_tracked
    return connections


class _Union:
    """
    Live sets seen as one collection (the drain's view of the proxy's
    channels and the splices).
    """

    def __init__(self, *parts: Collection[Any]) -> None:
        self._parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def __iter__(self) -> Any:
        for part in self._parts:
            yield from list(part)

    def __contains__(self, item: object) -> bool:
        return any(item in part for part in self._parts)


class Serving(Service):
    """
    One running configuration: the tree of L{squeak.service.build_service},
    stopped gracefully (listeners, then a drain, then the rest).

    @ivar tree: The built service tree (a C{MultiService}).
    @ivar context: The configuration's L{squeak.proxy.exchange.ProxyContext}.
    """

    def __init__(self, tree: Any, lifetime: float) -> None:
        """
        @param tree: The built service tree, with its C{context}.
        @param lifetime: The drain's bound (C{timeouts.shutdown_lifetime}).
        """
        self.tree = tree
        self.context: Any = tree.context
        self.lifetime = lifetime
        self._drain: Drain | None = None

    def stop_now(self) -> None:
        """
        Make a stop under way (or the next one) cut everything now.
        """
        self.lifetime = 0.0
        if self._drain is not None:
            self._drain.cut_now()

    def listeners(self) -> list[Any]:
        """
        The listener services of the tree (they have a C{port}).
        """
        return [service for service in self.tree if hasattr(service, "port")]

    @override
    def startService(self) -> None:
        cast(Any, super()).startService()
        self.tree.startService()

    @override
    def stopService(self) -> Deferred[None]:
        cast(Any, super()).stopService()
        stopping: Deferred[Any] = DeferredList(
            [maybeDeferred(listener.stopService) for listener in self.listeners()]
        )
        reactor = self.context.reactor

        def drain(_: object) -> Deferred[int]:
            connections = _Union(self.context.channels, getattr(self.tree, "splices", set()))
            self._drain = Drain(reactor, connections, self.lifetime)
            return self._drain.start()

        def rest(_: object) -> Any:
            return self.tree.stopService()

        stopping.addCallback(drain)
        stopping.addCallback(rest)
        stopping.addCallback(lambda _: None)
        return stopping


class StopSignals:
    """
    C{SIGTERM} and C{SIGINT}: the first asks for a graceful stop, a second
    for an immediate one.  Installed once the reactor runs (it installs its
    own handlers as it starts, after the services started).
    """

    def __init__(
        self, reactor: Any, graceful: Callable[[], object], immediate: Callable[[], object]
    ) -> None:
        self._reactor = reactor
        self._graceful = graceful
        self._immediate = immediate
        self.received = 0

    def install(self) -> None:
        """
        Replace the handlers of C{SIGTERM} and C{SIGINT}.
        """
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._received)

    def _received(self, number: int, frame: FrameType | None) -> None:
        # In a signal handler: no I/O, only hand over to the reactor.
        self.received += 1
        first = self.received == 1
        self._reactor.callFromThread(self._act, signal.Signals(number).name, first)

    def _act(self, name: str, first: bool) -> None:
        if first:
            _log.info("{signal}: stopping gracefully (again to stop at once)", signal=name)
            self._graceful()
        else:
            _log.info("{signal} again: stopping at once", signal=name)
            self._immediate()
