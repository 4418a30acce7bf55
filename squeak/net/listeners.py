# -*- test-case-name: tests.test_net_listeners -*-
"""
Listening sockets, bound once and adopted by whoever serves them.

squeak binds its listeners itself rather than through C{listenTCP}, for
three reasons:
  - a bind that fails (a port in use, a port below 1024 without the right
    to it) is found before the service starts, and reported as one line
    naming the key and the address, like a configuration error;
  - the socket can outlive the code that accepts on it: the process that
    bound it keeps it open while a reload replaces the servers behind it,
    so that connections queued meanwhile are accepted by the new servers
    rather than reset;
  - worker processes inherit it (L{squeak.master}) and adopt it with
    C{IReactorSocket.adoptStreamPort}, sharing one accept queue, or each
    adopt their own C{SO_REUSEPORT} socket (Twisted has no reuseport
    listener: ticket 9101).

A L{ListenerKey} names one listener of the configuration: the key it comes
from (C{proxy.http_port}, C{tls.https_port}, C{intercept.http_port},
C{intercept.https_port}) and its address.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from squeak.config import Config, ConfigError, ListenAddress

__all__ = [
    "LISTENER_KEYS",
    "BoundListeners",
    "ListenerKey",
    "adopt",
    "adopt_with",
    "bind_all",
    "bind_socket",
    "describe",
    "listener_keys",
]

#: The configuration keys that name listeners, in start-up order.
LISTENER_KEYS = (
    "proxy.http_port",
    "tls.https_port",
    "intercept.http_port",
    "intercept.https_port",
    "accel.http_port",
    "accel.https_port",
    "metrics.http_port",
)

#: The listen backlog, as C{ListenerService} used with C{listenTCP}.
BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class ListenerKey:
    """
    One listener of a configuration.

    @ivar key: The dotted configuration key that lists it.
    @ivar address: Where it listens.
    """

    key: str
    address: ListenAddress

    def __str__(self) -> str:
        return f"{self.key}={self.address}"

    @classmethod
    def parse(cls, text: str) -> ListenerKey:
        """
        The inverse of C{str()}: C{proxy.http_port=127.0.0.1:3128}.

        @raise ValueError: If C{text} names no listener.
        """
        from squeak.config import parse_listen_address

        key, _, address = text.partition("=")
        if key not in LISTENER_KEYS:
            raise ValueError(f"not a listener key: {key!r}")
        return cls(key, parse_listen_address(address))


def listener_keys(config: Config) -> list[ListenerKey]:
    """
    Every listener C{config} asks for, in start-up order.
    """
    tables = (
        config.proxy.http_port,
        config.tls.https_port,
        config.intercept.http_port,
        config.intercept.https_port,
        tuple(address for entry in config.accel.listeners for address in entry.http_port),
        tuple(address for entry in config.accel.listeners for address in entry.https_port),
        config.metrics.http_port,
    )
    return [
        ListenerKey(key, address)
        for key, addresses in zip(LISTENER_KEYS, tables, strict=True)
        for address in addresses
    ]


def _problem(error: OSError, address: ListenAddress) -> str:
    """
    Say why C{address} could not be bound, in the operator's terms.
    """
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {address}: the address is already in use"
    if error.errno == errno.EACCES:
        return (
            f"cannot listen on {address}: permission denied (a port below 1024 needs "
            "root or CAP_NET_BIND_SERVICE)"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: no interface of this host has that address"
    return f"cannot listen on {address}: {error.strerror or error}"


def bind_socket(listener: ListenerKey, source: str, *, reuseport: bool = False) -> socket.socket:
    """
    Create, bind and listen a non-blocking, close-on-exec TCP socket.

    @param source: The configuration file, for the error.
    @param reuseport: Set C{SO_REUSEPORT}, so that more sockets (each a
        queue of its own) can be bound to the same address.
    @raise ConfigError: If it cannot be bound, naming the key and address.
    """
    address = listener.address
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As listenTCP does: rebinding right after a restart must not wait
        # for TIME_WAIT connections of the previous process.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ConfigError(source, listener.key, _problem(error, address)) from None
    return sock


#: How this process adopts a socket, when not with C{adoptStreamPort}: a
#: worker sets its own (L{squeak.net.accepts.WorkerAccepts.adopt}) once,
#: at start-up, for every listener it serves.
_adopter: Callable[[Any, socket.socket, Any], Any] | None = None


def adopt_with(adopter: Callable[[Any, socket.socket, Any], Any] | None) -> None:
    """
    Make L{adopt} use C{adopter} in this process (a worker), or
    C{adoptStreamPort} again (L{None}).
    """
    global _adopter
    _adopter = adopter


def adopt(reactor: Any, sock: socket.socket, factory: Any) -> Any:
    """
    Start accepting on C{sock} with C{factory}.

    The reactor works on a duplicate of the descriptor: closing the
    returned port (C{stopListening}) leaves C{sock} listening, its queued
    connections kept for the next adopter.

    @return: The L{twisted.internet.interfaces.IListeningPort}.
    """
    if _adopter is not None:
        return _adopter(reactor, sock, factory)
    return reactor.adoptStreamPort(sock.fileno(), sock.family, factory)


class BoundListeners:
    """
    The listening sockets of the running configuration, owned by the process
    that bound them (the master, or the only process).

    With C{copies} above 1 (C{reuseport}), each listener has that many
    C{SO_REUSEPORT} sockets, one per worker slot; otherwise one socket that
    every worker shares.

    @ivar sockets: For each listener, its sockets (one per slot).
    """

    def __init__(self, *, reuseport: bool = False) -> None:
        self.reuseport = reuseport
        self.sockets: dict[ListenerKey, list[socket.socket]] = {}

    def update(
        self, wanted: Iterable[ListenerKey], source: str, copies: int
    ) -> dict[ListenerKey, list[socket.socket]]:
        """
        Bind what C{wanted} adds, keep what it keeps (the same sockets, so no
        queued connection is lost), and set aside what it drops.

        All or nothing: if a new listener cannot be bound, the sockets bound
        so far for it are closed and nothing changes.

        @param copies: Sockets per listener wanted; only honoured with
            C{reuseport} (more or fewer worker slots).
        @return: The sockets no longer wanted, for the caller to close once
            their servers have stopped (or to L{restore}).
        @raise ConfigError: If a new listener cannot be bound.
        """
        wanted = list(wanted)
        copies = copies if self.reuseport else 1
        fresh: dict[ListenerKey, list[socket.socket]] = {}
        try:
            for listener in wanted:
                have = self.sockets.get(listener, [])
                more = fresh[listener] = []
                for _ in range(copies - len(have)):
                    more.append(
                        bind_socket(
                            self._same_port(listener, have + more),
                            source,
                            reuseport=self.reuseport,
                        )
                    )
        except ConfigError:
            for socks in fresh.values():
                for sock in socks:
                    sock.close()
            raise
        dropped: dict[ListenerKey, list[socket.socket]] = {}
        kept: dict[ListenerKey, list[socket.socket]] = {}
        for listener in wanted:
            have = self.sockets.pop(listener, []) + fresh[listener]
            kept[listener] = have[:copies]
            if have[copies:]:
                dropped[listener] = have[copies:]
        dropped.update(self.sockets)
        self.sockets = kept
        return dropped

    def restore(self, dropped: Mapping[ListenerKey, list[socket.socket]]) -> None:
        """
        Take back sockets L{update} set aside (a reload that failed: what
        still serves them keeps them).
        """
        for listener, socks in dropped.items():
            self.sockets.setdefault(listener, []).extend(socks)

    @staticmethod
    def _same_port(listener: ListenerKey, bound: list[socket.socket]) -> ListenerKey:
        """
        Where one more C{SO_REUSEPORT} copy of C{listener} binds: for a
        configured port 0, the port the first copy got, not another one.
        """
        if listener.address.port or not bound:
            return listener
        port = bound[0].getsockname()[1]
        return ListenerKey(listener.key, ListenAddress(listener.address.host, port))

    def for_slot(self, slot: int) -> Mapping[ListenerKey, socket.socket]:
        """
        The socket of each listener that worker slot C{slot} serves: the
        shared one, or with C{reuseport} the slot's own.
        """
        return {listener: socks[slot % len(socks)] for listener, socks in self.sockets.items()}

    def close(self) -> None:
        """
        Close every socket (the process is done listening).
        """
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        self.sockets = {}


def bind_all(config: Config, *, copies: int = 1) -> BoundListeners:
    """
    Bind every listener of C{config}.

    @param copies: With C{proxy.reuseport}: sockets per listener, one per
        worker.
    @raise ConfigError: If one cannot be bound; none is left open then.
    """
    bound = BoundListeners(reuseport=config.proxy.reuseport and copies > 1)
    bound.update(listener_keys(config), config.source, copies)
    return bound


def describe(sock: socket.socket) -> str:
    """
    The address C{sock} really got, as C{host:port} (IPv6 in brackets):
    the form the "squeak listening on" log line gives.
    """
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"
