# -*- test-case-name: tests.test_proxy_hops -*-
"""
Forwarding one request (a plain one, a CONNECT, or a protocol upgrade)
along its hops (L{squeak.upstream.hierarchy}): through a parent or direct,
falling over to the next hop when a connection cannot be made, and telling
the hierarchy what happened to each parent.

Only a failure to connect (or a parent that dropped the connection before
answering an idempotent request) moves on to the next hop: once a parent or
an origin answered, its answer is the answer.  With C{never_direct} and no
parent that answers, the client gets a 503 C{ERR_CANNOT_FORWARD} naming the
parents.

The hop going on is in the exchange's C{hierarchy} and C{peer} (the access
log's C{FIRSTUP_PARENT/north}, C{HIER_DIRECT/192.0.2.1}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from squeak.errors import ProxyError
from squeak.http.fields import RawHeaders, first_value
from squeak.http.target import Target
from squeak.net.failures import NoResponseError, failure_of
from squeak.net.origin import IDEMPOTENT
from squeak.net.parents import ParentConnectFailedError, Parents
from squeak.net.tunnel import UpstreamEndFactory
from squeak.net.upgrade import request_head
from squeak.upstream.hierarchy import Hop, Route

if TYPE_CHECKING:
    from squeak.proxy.context import ProxyContext
    from squeak.proxy.exchange import ProxyExchange

__all__ = [
    "HopAttempts",
    "connect_through_hierarchy",
    "fetch_through_hierarchy",
    "upgrade_through_hierarchy",
]

_log = Logger()

#: Failures meaning the hop was never reached: try the next one.
_UNREACHED = (
    ierror.ConnectError,
    ierror.DNSLookupError,
    ierror.TimeoutError,
    ParentConnectFailedError,
)


#: How a connection that was dropped before any answer ended.
_CLOSED = (ierror.ConnectionDone, ierror.ConnectionLost)


def _unreached(reason: Failure, method: bytes) -> bool:
    """
    Whether C{reason} says the hop was not reached, so the request can go
    to the next one: a failed connect, or for an idempotent method a
    connection dropped before any byte of an answer (RFC 9110 §9.2.2).
    """
    value = reason.value
    if isinstance(value, _UNREACHED):
        return True
    # A TLS failure (to a parent, or to an origin through a tunnel) is no
    # sign that the hop is down: it is answered as it is.
    return (
        isinstance(value, NoResponseError)
        and isinstance(value.cause, _CLOSED)
        and method in IDEMPOTENT
    )


class HopAttempts:
    """
    Tries the hops of one request in turn; L{result} fires with the first
    answer (whatever C{send} returns: a response, a connected protocol), or
    fails with the last failure (a 503 naming the parents under
    C{never_direct}).  Cancelling L{result} cancels the attempt going on.
    """

    def __init__(
        self,
        exchange: ProxyExchange,
        parents: Parents,
        route: Route,
        send: Callable[[Hop], Deferred[Any]],
        direct_peer: str,
    ) -> None:
        self._exchange = exchange
        self._parents = parents
        self._route = route
        self._send = send
        self._direct_peer = direct_peer
        self._next_hop = 0
        self._current: Deferred[Any] | None = None
        self._last: Failure | None = None
        self._tried: list[str] = []
        self.result: Deferred[Any] = Deferred(self._cancel)

    def start(self) -> Deferred[Any]:
        """Try the first hop; return L{result}."""
        self._try_next()
        return self.result

    def _cancel(self, _: Deferred[Any]) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.cancel()

    def _try_next(self) -> None:
        route = self._route
        if self._next_hop >= len(route.hops):
            self._give_up()
            return
        hop = route.hops[self._next_hop]
        self._next_hop += 1
        exchange = self._exchange
        exchange.hierarchy = hop.code
        exchange.peer = self._direct_peer if hop.peer is None else hop.peer.name
        if hop.peer is not None:
            self._tried.append(hop.peer.name)
        try:
            attempt = self._send(hop)
        except Exception as error:
            self.result.errback(failure_of(error))
            return
        self._current = attempt
        attempt.addCallbacks(self._answered, self._failed, callbackArgs=(hop,), errbackArgs=(hop,))

    def _answered(self, answer: Any, hop: Hop) -> None:
        self._current = None
        if hop.peer is not None:
            self._parents.succeeded(hop.peer)
        if not self.result.called:
            self.result.callback(answer)
        elif hasattr(answer, "transport") and answer.transport is not None:
            answer.transport.loseConnection()

    def _failed(self, reason: Failure, hop: Hop) -> None:
        self._current = None
        if self.result.called:
            return
        if isinstance(reason.value, CancelledError) or not _unreached(
            reason, self._exchange.method
        ):
            if hop.peer is not None and not isinstance(reason.value, CancelledError):
                # It answered, if badly: it is up.
                self._parents.succeeded(hop.peer)
            self.result.errback(reason)
            return
        if hop.peer is not None:
            self._parents.failed(hop.peer, reason.getErrorMessage())
        self._last = reason
        if self._next_hop < len(self._route.hops):
            _log.info(
                "{url}: {where} not reached ({why}); trying the next hop",
                url=self._exchange.uri.decode("latin-1"),
                where="direct" if hop.peer is None else f"parent {hop.peer.name}",
                why=reason.getErrorMessage(),
            )
        self._try_next()

    def _give_up(self) -> None:
        route = self._route
        if route.never_direct:
            names = ", ".join(self._parents.hierarchy.names_for(self._exchange.facts)) or "none"
            tried = ", ".join(self._tried)
            detail = (
                f"never_direct: no parent answered (tried {tried}; parents: {names})"
                if tried
                else f"never_direct: no parent is up (parents: {names})"
            )
            if self._last is not None:
                detail += f"; last failure: {self._last.getErrorMessage()}"
            self._exchange.hierarchy = "HIER_NONE"
            self._exchange.peer = "-"
            self.result.errback(failure_of(ProxyError("ERR_CANNOT_FORWARD", 503, detail)))
            return
        if self._last is not None:
            self.result.errback(self._last)
            return
        self.result.errback(
            failure_of(ProxyError("ERR_CANNOT_FORWARD", 503, "no hop to forward the request to"))
        )


def fetch_through_hierarchy(
    exchange: ProxyExchange,
    context: ProxyContext,
    parents: Parents,
    target: Target,
    outgoing: RawHeaders,
    body: IO[bytes] | None,
    *,
    check_peer: Callable[[str], None] | None,
    on_interim: Callable[[int, bytes, RawHeaders], None] | None,
) -> Deferred[Any]:
    """
    Send a request along its hops: parents in absolute form (or through a
    CONNECT tunnel for https), direct through the origin client.
    """
    route = parents.hierarchy.route(
        exchange.facts, target.uri, context.reactor.seconds(), parents.in_flight
    )
    client_authorization = first_value(exchange.received, b"proxy-authorization")
    start = body.tell() if body is not None else 0

    def send(hop: Hop) -> Deferred[Any]:
        if body is not None:
            body.seek(start)
        if hop.peer is None:
            return context.upstream.request(
                exchange.method,
                target,
                outgoing,
                body,
                check_peer=check_peer,
                on_interim=on_interim,
            )
        return parents.clients[hop.peer.name].request(
            exchange.method,
            target,
            outgoing,
            body,
            client_authorization=client_authorization,
            on_interim=on_interim,
        )

    return HopAttempts(exchange, parents, route, send, target.host).start()


def connect_through_hierarchy(
    exchange: ProxyExchange, context: ProxyContext, parents: Parents, host: str, port: int
) -> Deferred[Any]:
    """
    Open a CONNECT tunnel's upstream end along its hops: through a parent
    with C{CONNECT host:port} (its C{login}, or the client's own with
    C{PASSTHRU}), or direct.
    """
    shown = f"[{host}]" if ":" in host else host
    route = parents.hierarchy.route(
        exchange.facts,
        f"{shown}:{port}".encode("idna"),
        context.reactor.seconds(),
        parents.in_flight,
    )
    client_authorization = first_value(exchange.received, b"proxy-authorization")

    def send(hop: Hop) -> Deferred[Any]:
        factory = UpstreamEndFactory()
        if hop.peer is None:
            endpoint: Any = HostnameEndpoint(
                context.reactor, host, port, timeout=context.config.timeouts.connect
            )
            connecting: Deferred[Any] = endpoint.connect(factory)
            return connecting
        client = parents.clients[hop.peer.name]
        authorization = hop.peer.proxy_authorization(client_authorization)
        result: Deferred[Any] = client.tunnel_endpoint(host, port, authorization).connect(factory)
        return result

    return HopAttempts(exchange, parents, route, send, host).start()


def upgrade_through_hierarchy(
    exchange: ProxyExchange,
    context: ProxyContext,
    parents: Parents,
    target: Target,
    outgoing: RawHeaders,
    factory_for: Callable[[bytes, Callable[[str], None] | None], Any],
) -> Deferred[Any]:
    """
    Open the raw connection of a protocol upgrade (WebSocket) along its
    hops: to a parent with the request in absolute form (its C{login}
    added), through a parent's CONNECT tunnel for C{https}, or direct.

    @param factory_for: Builds the upstream protocol's factory from the
        request head to send and the check of the address connected to
        (only for direct hops: through a parent it is the parent's).
    """
    route = parents.hierarchy.route(
        exchange.facts, target.uri, context.reactor.seconds(), parents.in_flight
    )
    client_authorization = first_value(exchange.received, b"proxy-authorization")
    method = exchange.method

    def send(hop: Hop) -> Deferred[Any]:
        endpoint: Any
        if hop.peer is None:
            head = request_head(method, target.path, outgoing)
            endpoint = context.upstream.endpoint(target.scheme, target.host, target.port)
            connecting: Deferred[Any] = endpoint.connect(factory_for(head, exchange.peer_check()))
            return connecting
        client = parents.clients[hop.peer.name]
        if target.scheme == "https":
            endpoint = client.tunnel_endpoint(
                target.host, target.port, hop.peer.proxy_authorization(None), tls=True
            )
            head = request_head(method, target.path, outgoing)
        else:
            fields = list(outgoing)
            authorization = hop.peer.proxy_authorization(client_authorization)
            if authorization:
                fields.append((b"Proxy-Authorization", authorization))
            endpoint = client.parent_endpoint()
            head = request_head(method, target.uri, fields)
        connecting = endpoint.connect(factory_for(head, None))
        return connecting

    return HopAttempts(exchange, parents, route, send, target.host).start()
