# -*- test-case-name: tests.test_net_parents -*-
"""
Connections to parent proxies: requests in absolute form over a pool per
parent, C{CONNECT} tunnels through a parent (for clients' CONNECT requests
and for the C{https://} requests squeak fetches itself, then TLS to the
origin through the tunnel, verified against the origin's name), and the
prober that brings a parent marked down back when it answers again.

The pure decisions (which parent, in what order, whether it is up) are
L{squeak.upstream.hierarchy}'s; this module only connects and reports.

A parent's pool is an L{UpstreamClient} of its own, whose pool keys are
C{("parent", host, port)} for the connection to the parent itself (plain
requests, their request line in absolute form, RFC 9112 §3.2.2) and
C{("https", origin, port)} for tunnels to origins through it, so both kinds
of connection are reused and never mixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, NamedTuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from squeak.errors import ProxyError
from squeak.http.fields import RawHeaders
from squeak.net.body import UpstreamResponse
from squeak.net.origin import UpstreamClient, tls_policy
from squeak.net.wire import DIRECT, Sender
from squeak.upstream.hierarchy import Hierarchy
from squeak.upstream.peers import CachePeer

__all__ = [
    "ParentClient",
    "ParentConnectFailedError",
    "ParentRefusedError",
    "ParentTunnelEndpoint",
    "Parents",
    "Prober",
    "connect_head",
]

#: Twisted leaves these unannotated: typed here, so that calling them is
#: not an untyped call under C{mypy --strict}.
_connect_error_init: Callable[..., None] = ConnectError.__init__

#: The pool key scheme of connections to the parent itself.
_TO_PARENT = "parent"

#: Most bytes of a parent's answer to CONNECT (status line and fields).
_MAX_CONNECT_ANSWER = 16384


class ParentConnectFailedError(ConnectError):
    """
    The parent closed the connection, or broke the protocol, before
    answering a CONNECT or a probe: counted against its health like a
    refused connect (and answered as C{ERR_CONNECT_FAIL}).
    """

    def __init__(self, detail: str) -> None:
        _connect_error_init(self, string=detail)


class ParentRefusedError(ProxyError):
    """
    The parent answered a CONNECT with something else than 2xx (its access
    rules, its demand for credentials, or the origin unreachable from it):
    a 502 naming the parent and its status.  The parent is up.

    @ivar code: The parent's status.
    """

    def __init__(self, peer: str, code: int, reason: str) -> None:
        super().__init__(
            "ERR_CONNECT_FAIL", 502, f"the parent {peer} answered CONNECT with {code} {reason}"
        )
        self.code = code


class _ParentTarget(NamedTuple):
    """What L{UpstreamClient.request} reads of a target: pool key and path."""

    scheme: str
    host: str
    port: int
    path: bytes


def connect_head(authority: bytes, authorization: bytes | None) -> bytes:
    """The C{CONNECT} request for C{authority} (RFC 9110 §9.3.6)."""
    lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
    if authorization:
        lines.append(b"Proxy-Authorization: " + authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@implementer(IHalfCloseableProtocol)
class _ConnectHandshake(Protocol):
    """
    Sends C{CONNECT} to a parent and waits for its 2xx; then builds the
    protocol that uses the tunnel and passes the connection's events on to
    it (it stays the transport's protocol: the endpoint's wrapper and TLS
    layers hold it).
    """

    transport: Any

    def __init__(self, head: bytes, peer: str, factory: Any, connected: Deferred[Any]) -> None:
        self._head = head
        self._peer = peer
        self._factory = factory
        self._connected: Deferred[Any] | None = connected
        self._buffer = b""
        self._inner: Any = None

    def connectionMade(self) -> None:
        self.transport.write(self._head)

    def dataReceived(self, data: bytes) -> None:
        inner = self._inner
        if inner is not None:
            inner.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_CONNECT_ANSWER:
                self._fail(ParentConnectFailedError(f"{self._peer}: CONNECT answer too long"))
            return
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        self._buffer = b""
        status_line = head.split(b"\r\n", 1)[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._fail(ParentConnectFailedError(f"{self._peer}: not an HTTP answer to CONNECT"))
            return
        code = int(parts[1])
        if not 200 <= code < 300:
            reason = parts[2].decode("latin-1", "replace")[:80] if len(parts) > 2 else ""
            self._fail(ParentRefusedError(self._peer, code, reason))
            return
        connected, self._connected = self._connected, None
        if connected is None or connected.called:
            # Given up on meanwhile.
            self.transport.abortConnection()
            return
        inner = self._factory.buildProtocol(self.transport.getPeer())
        self._inner = inner
        inner.makeConnection(self.transport)
        connected.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _fail(self, error: Exception) -> None:
        connected, self._connected = self._connected, None
        self.transport.abortConnection()
        if connected is not None and not connected.called:
            connected.errback(error)

    def readConnectionLost(self) -> None:
        inner = self._inner
        if inner is not None and IHalfCloseableProtocol.providedBy(inner):
            inner.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        inner = self._inner
        if inner is not None and IHalfCloseableProtocol.providedBy(inner):
            inner.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        inner = self._inner
        if inner is not None:
            inner.connectionLost(reason)
            return
        connected, self._connected = self._connected, None
        if connected is not None and not connected.called:
            connected.errback(
                ParentConnectFailedError(
                    f"{self._peer} closed the connection before answering CONNECT"
                )
            )


class _HandshakeFactory(ClientFactory):
    noisy = False

    def __init__(self, head: bytes, peer: str, factory: Any) -> None:
        self._head, self._peer, self._factory = head, peer, factory
        self.connected: Deferred[Any] | None = None
        self.built: _ConnectHandshake | None = None

    def buildProtocol(self, addr: Any) -> _ConnectHandshake:
        assert self.connected is not None
        self.built = _ConnectHandshake(self._head, self._peer, self._factory, self.connected)
        return self.built


class ParentTunnelEndpoint:
    """
    An endpoint to C{authority} through a parent: connects to the parent,
    sends C{CONNECT}, and fires with the protocol C{factory} built once the
    parent answered 2xx (wrap it with C{wrapClientTLS} for TLS to the
    origin through the tunnel).
    """

    def __init__(
        self, parent_endpoint: Any, peer: str, authority: bytes, authorization: bytes | None
    ) -> None:
        self._parent_endpoint = parent_endpoint
        self._peer = peer
        self._head = connect_head(authority, authorization)

    def connect(self, factory: Any) -> Deferred[Any]:
        handshake = _HandshakeFactory(self._head, self._peer, factory)

        def cancel(_: Deferred[Any]) -> None:
            opening.cancel()
            if handshake.built is not None and handshake.built.transport is not None:
                handshake.built.transport.abortConnection()

        connected: Deferred[Any] = Deferred(cancel)
        handshake.connected = connected
        opening = self._parent_endpoint.connect(handshake)

        def failed(reason: Failure) -> None:
            if not connected.called:
                connected.errback(reason)

        opening.addErrback(failed)
        return connected


class ParentClient:
    """
    One parent: its pooled connections, its endpoints, and how many
    connections to it carry a request (C{max_connections}).
    """

    def __init__(
        self,
        reactor: Any,
        peer: CachePeer,
        *,
        connect_timeout: float,
        max_idle: int,
        idle_timeout: float,
        ca_file: str = "",
        sender: Sender = DIRECT,
    ) -> None:
        self._reactor = reactor
        self.peer = peer
        self.connect_timeout = peer.connect_timeout or connect_timeout
        self._policy = tls_policy(ca_file)
        self.pool = UpstreamClient(
            reactor,
            connect_timeout=self.connect_timeout,
            max_idle_per_host=max_idle,
            idle_timeout=idle_timeout,
            ca_file=ca_file,
            endpoint_factory=self._endpoint,
            sender=sender,
        )

    @property
    def busy_connections(self) -> int:
        """Connections to this parent carrying a request now (C{max_connections})."""
        return self.pool.busy_count

    def parent_endpoint(self) -> Any:
        """A new connection to the parent itself (TLS if C{tls}, verified)."""
        peer = self.peer
        endpoint: Any = HostnameEndpoint(
            self._reactor, peer.host, peer.port, timeout=self.connect_timeout
        )
        if peer.tls:
            name = peer.host.encode("idna")
            endpoint = wrapClientTLS(self._policy.creatorForNetloc(name, peer.port), endpoint)
        return endpoint

    def tunnel_endpoint(
        self, host: str, port: int, authorization: bytes | None, *, tls: bool = False
    ) -> Any:
        """
        An endpoint to C{host:port} through this parent, with TLS to the
        origin (verified against C{host}) if C{tls}.
        """
        shown = f"[{host}]" if ":" in host else host
        endpoint: Any = ParentTunnelEndpoint(
            self.parent_endpoint(),
            self.peer.name,
            f"{shown}:{port}".encode("idna"),
            authorization,
        )
        if tls:
            name = host.encode("ascii") if host.isascii() else host.encode("idna")
            endpoint = wrapClientTLS(self._policy.creatorForNetloc(name, port), endpoint)
        return endpoint

    def _endpoint(self, scheme: str, host: str, port: int) -> Any:
        if scheme == _TO_PARENT:
            return self.parent_endpoint()
        # An https origin squeak fetches itself: through a CONNECT tunnel,
        # shared by every client (so never with a client's credentials).
        authorization = self.peer.proxy_authorization(None)
        return self.tunnel_endpoint(host, port, authorization, tls=scheme == "https")

    def request(
        self,
        method: bytes,
        target: Any,
        headers: RawHeaders,
        body: IO[bytes] | None,
        *,
        client_authorization: bytes | None = None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None = None,
    ) -> Deferred[UpstreamResponse]:
        """
        Send one request through this parent: C{http} in absolute form with
        the parent's C{Proxy-Authorization}; C{https} over a tunnel, in
        origin form, with nothing of the parent's in it.
        """
        peer = self.peer
        if target.scheme == "http":
            authorization = peer.proxy_authorization(client_authorization)
            if authorization:
                headers = [*headers, (b"Proxy-Authorization", authorization)]
            target = _ParentTarget(_TO_PARENT, peer.host, peer.port, target.uri)
        return self.pool.request(method, target, headers, body, on_interim=on_interim)

    def close(self) -> Deferred[None]:
        return self.pool.close()


class Parents:
    """
    Every parent's client, the hierarchy's decisions, and its prober: what
    the proxy's handlers use to go through parents.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        hierarchy: Hierarchy,
        *,
        connect_timeout: float,
        max_idle: int,
        idle_timeout: float,
        ca_file: str = "",
        sender: Sender = DIRECT,
    ) -> None:
        self._reactor = reactor
        self.hierarchy = hierarchy
        self.clients = {
            peer.name: ParentClient(
                reactor,
                peer,
                connect_timeout=connect_timeout,
                max_idle=max_idle,
                idle_timeout=idle_timeout,
                ca_file=ca_file,
                sender=sender,
            )
            for peer in hierarchy.config.peers
        }
        self.prober = Prober(reactor, self)

    def in_flight(self, name: str) -> int:
        """Connections to the parent C{name} carrying a request now."""
        return self.clients[name].busy_connections

    def failed(self, peer: CachePeer, reason: object) -> None:
        """A connection to C{peer} failed: count it, log a change once."""
        change = self.hierarchy.failed(peer, self._reactor.seconds())
        if change is not None:
            self._log.warn(
                "parent {name} ({address}) is down: {reason}; {next}",
                name=peer.name,
                address=peer.address,
                reason=reason,
                next="probing it" if self.hierarchy.config.probe != "off" else "resting it",
            )
            self.prober.start()

    def succeeded(self, peer: CachePeer) -> None:
        """C{peer} answered: log a change once."""
        change = self.hierarchy.succeeded(peer, self._reactor.seconds())
        if change is not None:
            self._log.info(
                "parent {name} ({address}) is up again", name=peer.name, address=peer.address
            )

    def close(self) -> Deferred[None]:
        """Stop probing and close idle connections."""
        from twisted.internet.defer import gatherResults

        self.prober.stop()
        closing: Deferred[Any] = gatherResults([c.close() for c in self.clients.values()])
        return closing.addCallback(lambda _: None)


class _ProbeAnswer(Protocol):
    """Sends a cheap HTTP request and is satisfied by any status line."""

    transport: Any

    def __init__(self, head: bytes, answered: Deferred[None]) -> None:
        self._head = head
        self._answered: Deferred[None] | None = answered
        self._buffer = b""

    def connectionMade(self) -> None:
        if self._head:
            self.transport.write(self._head)
            return
        self._done(None)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n" in self._buffer:
            ok = self._buffer.startswith(b"HTTP/1.")
            self._done(None if ok else ParentConnectFailedError("not an HTTP answer to the probe"))
        elif len(self._buffer) > 1024:
            self._done(ParentConnectFailedError("not an HTTP answer to the probe"))

    def _done(self, error: Exception | None) -> None:
        answered, self._answered = self._answered, None
        self.transport.loseConnection()
        if answered is not None and not answered.called:
            if error is None:
                answered.callback(None)
            else:
                answered.errback(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        answered, self._answered = self._answered, None
        if answered is not None and not answered.called:
            answered.errback(ParentConnectFailedError("closed before answering the probe"))


class _ProbeFactory(ClientFactory):
    noisy = False

    def __init__(self, head: bytes, answered: Deferred[None]) -> None:
        self._head, self._answered = head, answered
        self.built: _ProbeAnswer | None = None

    def buildProtocol(self, addr: Any) -> _ProbeAnswer:
        self.built = _ProbeAnswer(self._head, self._answered)
        return self.built


class Prober:
    """
    Probes the parents marked down, every C{probe_interval}, until each
    answers: a TCP connect (C{probe = "tcp"}, as Squid does), or a C{HEAD}
    request whose any HTTP answer counts (C{"http"}).  One timer, running
    only while some parent is down; at most one probe per parent at once,
    each bounded by the parent's connect timeout.
    """

    def __init__(self, reactor: Any, parents: Parents) -> None:
        self._reactor = reactor
        self._parents = parents
        self._timer: Any = None
        self._probing: dict[str, Deferred[Any]] = {}
        self.probes_sent = 0

    def start(self) -> None:
        """Make sure the timer runs (a parent just went down)."""
        config = self._parents.hierarchy.config
        if config.probe == "off" or self._timer is not None:
            return
        self._timer = self._reactor.callLater(config.probe_interval, self._tick)

    def stop(self) -> None:
        """Stop the timer and the probes in flight."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for probing in list(self._probing.values()):
            probing.cancel()
        self._probing.clear()

    def _tick(self) -> None:
        self._timer = None
        down = self._parents.hierarchy.to_probe()
        for peer in down:
            if peer.name not in self._probing:
                self._probe(peer)
        if down:
            self._timer = self._reactor.callLater(
                self._parents.hierarchy.config.probe_interval, self._tick
            )

    def _probe(self, peer: CachePeer) -> None:
        client = self._parents.clients[peer.name]
        head = b""
        if self._parents.hierarchy.config.probe == "http":
            head = b"HEAD / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
                peer.address.encode("idna")
            )
        factory: _ProbeFactory

        def cancel(_: Deferred[None]) -> None:
            connecting.cancel()
            built = factory.built
            if built is not None and built.transport is not None:
                built.transport.abortConnection()

        answered: Deferred[None] = Deferred(cancel)
        factory = _ProbeFactory(head, answered)
        self.probes_sent += 1
        connecting = client.parent_endpoint().connect(factory)

        def not_connected(reason: Failure) -> None:
            if not answered.called:
                answered.errback(reason)

        connecting.addErrback(not_connected)
        answered.addTimeout(client.connect_timeout, self._reactor)
        self._probing[peer.name] = answered

        def ended(result: object) -> None:
            self._probing.pop(peer.name, None)
            if isinstance(result, Failure):
                # Still down: nothing to log (it was logged going down).
                return
            self._parents.succeeded(peer)

        answered.addBoth(ended)
