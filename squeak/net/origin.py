# -*- test-case-name: tests.test_net_origin -*-
"""
Requests to origin servers: squeak's own lean, strict HTTP/1.1 client and
its connection pool (the connection protocol is L{squeak.net.connection}).

Why not Twisted's L{Agent}: profiled under load (docs/performance.md), Agent
and its C{_newclient} parser, its L{HTTPConnectionPool} and the L{Deferred}s
between them cost most of the proxy's per-request CPU, and a new
L{HostnameEndpoint} (with IDNA decoding) was built for every request even
when a pooled connection was waiting.  Agent also hides what a proxy must
see and control: it keeps the connection-level response fields
(C{Connection}, C{Content-Length}, C{Transfer-Encoding}) apart, drops 1xx
responses (101 included), and its pool could only be given a strict parser
through private hooks.  A proxy needs exact control of framing and reuse
anyway, so this module does the wire work itself:

  - L{squeak.net.connection.OriginConnection} is one origin connection:
    it writes requests and reads responses with the pure readers of
    L{squeak.http.response} and L{squeak.http.chunked}; its
    L{UpstreamResponse} hands the body to a protocol through
    C{deliverBody} and says how it ended by the exception type
    (L{squeak.errors.BodyComplete}, L{squeak.errors.BodyEndedByClose}, or
    a failure).
  - L{UpstreamClient} pools connections per C{(scheme, host, port)}: LIFO
    reuse, a connection goes back only after a response read completely and
    unambiguously that did not end the connection (C{Connection: close}, or
    HTTP/1.0 without keep-alive), at most C{max_idle_per_host} idle per
    origin, closed after C{idle_timeout}.  A request on a reused connection
    that dies before any response byte is retried once on a new connection
    when the method is idempotent and the body can be re-read (the
    keep-alive race, RFC 9112 §9.3.1).  Endpoints (with TLS for https) are
    built once per origin and cached.

Failures are those listed in L{squeak.net.failures}, which maps them to
the error answered.  Cancelling the L{Deferred} returned by
L{UpstreamClient.request} aborts its connection, which is never pooled
again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS

from squeak.http.fields import RawHeaders
from squeak.http.response import MalformedResponseError
from squeak.net.body import UpstreamResponse
from squeak.net.connection import (
    CLOSED,
    IDEMPOTENT,
    IDLE,
    NEW,
    OriginConnection,
    PendingRequest,
    ResponseReceiver,
    _BodySender,
)
from squeak.net.failures import NoResponseError
from squeak.net.wire import DIRECT, Sender

if TYPE_CHECKING:
    from squeak.http.target import Target

__all__ = [
    "IDEMPOTENT",
    "MalformedResponseError",
    "UpstreamClient",
    "UpstreamResponse",
    "tls_policy",
]

#: Twisted leaves these two unannotated (C{twisted.web.client},
#: C{twisted.internet._sslverify}): typed here, so that calling them is not
#: an untyped call under C{mypy --strict}.
_browser_like_policy: Callable[..., BrowserLikePolicyForHTTPS] = BrowserLikePolicyForHTTPS
_trust_root_from: Callable[[list[ssl.Certificate]], Any] = ssl.trustRootFromCertificates

#: Methods for which an absent body is sent as C{Content-Length: 0}
#: (RFC 9110 §8.6: a user agent SHOULD send it when the method defines a
#: meaning for content).
_EXPECTS_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
#: Request fields written by this module from the body, never copied.
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})


def tls_policy(ca_file: str) -> BrowserLikePolicyForHTTPS:
    """
    The certificate policy for C{https://} origins: browser-like
    verification (chain and host name, through C{service_identity}) against
    the system's trust store, or against the CAs in C{ca_file}.
    """
    if not ca_file:
        return _browser_like_policy()
    with open(ca_file, "rb") as handle:
        pem = handle.read()
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    return _browser_like_policy(trustRoot=_trust_root_from(certificates))


class _ConnectionFactory(ClientFactory):
    """
    Builds L{OriginConnection}s for one origin.
    """

    noisy = False

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int]) -> None:
        self._client = client
        self._key = key

    def buildProtocol(self, addr: Any) -> OriginConnection:
        connection = OriginConnection(self._client, self._key)
        connection.factory = self
        return connection


class UpstreamClient:
    """
    Sends requests to origins over pooled persistent connections.

    @ivar max_idle_per_host: Most idle connections kept per origin.
    @ivar idle_timeout: Seconds an idle connection is kept.
    """

    #: Most origins whose endpoints are kept.
    max_endpoints = 4096

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        connect_timeout: float,
        max_idle_per_host: int,
        idle_timeout: float,
        ca_file: str = "",
        endpoint_factory: Callable[[str, str, int], Any] | None = None,
        sender: Sender = DIRECT,
    ) -> None:
        """
        @param connect_timeout: Seconds to wait for a TCP connection.
        @param max_idle_per_host: Most idle pooled connections per origin.
        @param idle_timeout: Seconds an idle pooled connection is kept.
        @param ca_file: PEM CAs to verify https origins against; the
            system's trust store when empty.
        @param endpoint_factory: Builds the endpoint for C{(scheme, host,
            port)}; by default a L{HostnameEndpoint}, TLS-wrapped for https
            (tests pass fakes).
        @param sender: Writes requests: the proxy's L{SendBatcher} sends
            a reactor turn's writes together; by default they are written
            at once.
        """
        self._reactor: Any = reactor
        self.sender = sender
        self._endpoint_factory = endpoint_factory or self._default_endpoint
        self._connect_timeout = connect_timeout
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._policy = tls_policy(ca_file)
        self._idle: dict[tuple[str, str, int], list[OriginConnection]] = {}
        self._endpoints: dict[tuple[str, str, int], tuple[Any, _ConnectionFactory]] = {}
        self._open: set[OriginConnection] = set()
        self._sweep: Any = None

    # -- endpoints ----------------------------------------------------------

    def _endpoint_for(self, key: tuple[str, str, int]) -> tuple[Any, _ConnectionFactory]:
        found = self._endpoints.get(key)
        if found is not None:
            return found
        if len(self._endpoints) >= self.max_endpoints:
            del self._endpoints[next(iter(self._endpoints))]
        found = (self._endpoint_factory(*key), _ConnectionFactory(self, key))
        self._endpoints[key] = found
        return found

    def _default_endpoint(self, scheme: str, host: str, port: int) -> Any:
        """
        A L{HostnameEndpoint} with the connect timeout; TLS with browser-like
        verification for C{https}.
        """
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        # HostnameEndpoint resolves names off the reactor thread and tries
        # every address (happy eyeballs), so IPv6 and IPv4 origins both work.
        endpoint: Any = HostnameEndpoint(self._reactor, host, port, timeout=self._connect_timeout)
        if scheme == "https":
            hostname = host.encode("ascii") if host.isascii() else host.encode("idna")
            creator = self._policy.creatorForNetloc(hostname, port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def endpoint(self, scheme: str, host: str, port: int) -> Any:
        """
        The (cached) endpoint to an origin, TLS-verified for https: for raw
        exchanges such as protocol upgrades, whose connections are not
        pooled.
        """
        return self._endpoint_for((scheme, host, port))[0]

    # -- requests -----------------------------------------------------------

    def request(
        self,
        method: bytes,
        target: Any,
        headers: RawHeaders,
        body: IO[bytes] | None,
        *,
        check_peer: Callable[[str], None] | None = None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None = None,
    ) -> Deferred[UpstreamResponse]:
        """
        Send one request; the L{Deferred} fires with the response once its
        head is in.  Cancelling it aborts the connection.

        @param target: A L{squeak.http.target.Target} (scheme, host, port, path),
            or an absolute URI as bytes.
        @param headers: Complete end-to-end request fields, C{Host} first;
            C{Content-Length} and C{Transfer-Encoding} are written here from
            C{body}, never copied.
        @param body: A file to send from its current position to its end
            (with C{Content-Length}), or L{None} for no body.
        @param check_peer: Called with the remote address of the connection
            chosen for the request (new or pooled) before anything is sent
            on it; an exception it raises fails the request instead, and
            the connection stays in the pool.  The proxy checks there that
            the access rules allow the address actually connected to.
        @param on_interim: Called with the status, reason and fields of each
            interim (1xx) response that precedes the final one, in order
            (RFC 9110 §15.2); L{None} drops them.
        """
        if isinstance(target, bytes):
            from squeak.http.target import TargetError, parse_absolute_target

            try:
                target = parse_absolute_target(target)
            except TargetError as error:
                return fail(error)
        exchange = self._pending(method, target, headers, body, None, check_peer, on_interim)
        # Without a receiver, the request has a Deferred.
        deferred = cast(Deferred[UpstreamResponse], exchange.deferred)
        self._dispatch(exchange)
        return deferred

    def send_request(
        self,
        method: bytes,
        target: Target,
        headers: RawHeaders,
        body: IO[bytes] | None,
        receiver: ResponseReceiver,
        *,
        check_peer: Callable[[str], None] | None = None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None = None,
    ) -> PendingRequest:
        """
        L{request} without a L{Deferred}: C{receiver} is told of the
        response or the failure (the miss path, once per client request).

        @return: The request in flight; its C{cancel} gives up on it.  It
            may already have failed (and told C{receiver}) when returned.
        """
        exchange = self._pending(method, target, headers, body, receiver, check_peer, on_interim)
        self._dispatch(exchange)
        return exchange

    def _pending(
        self,
        method: bytes,
        target: Target,
        headers: RawHeaders,
        body: IO[bytes] | None,
        receiver: ResponseReceiver | None,
        check_peer: Callable[[str], None] | None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None,
    ) -> PendingRequest:
        """
        The request's head (and a small body) ready to send, as a
        L{PendingRequest}.
        """
        key = (target.scheme, target.host, target.port)
        small_body: bytes | None = None
        body_start = 0
        length: int | None = None
        if body is not None:
            try:
                body_start = body.tell()
                length = body.seek(0, 2) - body_start
                body.seek(body_start)
            except (AttributeError, OSError, ValueError):
                length = None
            if length is not None and length <= _BodySender.BLOCK:
                small_body = body.read(length)
        lines = [b"%s %s HTTP/1.1" % (method, target.path)]
        if headers and headers[0][0].lower() != b"host":
            headers = sorted(headers, key=lambda field: field[0].lower() != b"host")
        lines += [
            name + b": " + value for name, value in headers if name.lower() not in _FRAMING_FIELDS
        ]
        if body is not None:
            if length is None:
                lines.append(b"Transfer-Encoding: chunked")
            else:
                lines.append(b"Content-Length: %d" % length)
        elif method in _EXPECTS_BODY:
            lines.append(b"Content-Length: 0")
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        exchange = PendingRequest(
            self, key, method, head, body, body_start, length, small_body, receiver
        )
        exchange.check_peer = check_peer
        exchange.on_interim = on_interim
        return exchange

    def _dispatch(self, exchange: PendingRequest, *, fresh: bool = False) -> None:
        if not fresh:
            idle = self._idle.get(exchange.key)
            while idle:
                connection = idle.pop()
                if connection.usable():
                    self._send_on(connection, exchange)
                    return
                connection.close()
        endpoint, factory = self._endpoint_for(exchange.key)
        connecting = endpoint.connect(factory)
        exchange.connecting = connecting
        connecting.addCallbacks(
            self._connected,
            self._connect_failed,
            callbackArgs=(exchange,),
            errbackArgs=(exchange,),
        )

    def _connected(self, connection: OriginConnection, exchange: PendingRequest) -> None:
        exchange.connecting = None
        if exchange.done:
            # Cancelled meanwhile: the new connection is still good.
            if connection._state == NEW:
                self._put_idle(connection)
            return
        if connection._state != NEW:
            exchange.fail(NoResponseError(ConnectionDone()))
            return
        self._send_on(connection, exchange)

    def _send_on(self, connection: OriginConnection, exchange: PendingRequest) -> None:
        """
        Send C{exchange} on C{connection}, unless its caller refuses the
        address the connection goes to (L{request}'s C{check_peer}): then
        the request fails with the caller's error and the connection, which
        is sound, goes back to the pool.
        """
        check = exchange.check_peer
        if check is not None:
            try:
                check(connection.peer)
            except Exception as error:
                self._put_idle(connection)
                exchange.fail(error)
                return
        connection.send(exchange)

    def _connect_failed(self, reason: Failure, exchange: PendingRequest) -> None:
        exchange.connecting = None
        exchange.fail(reason)

    def _retry(self, exchange: PendingRequest) -> None:
        """
        A reused connection died before answering: send again, once, on a
        new connection (the keep-alive race).
        """
        exchange.retried = True
        exchange.connection = None
        self._dispatch(exchange, fresh=True)

    # -- the pool -----------------------------------------------------------

    def _opened(self, connection: OriginConnection) -> None:
        self._open.add(connection)

    def _closed(self, connection: OriginConnection) -> None:
        self._open.discard(connection)

    def _forget(self, connection: OriginConnection) -> None:
        self._drop_idle(connection)

    def _put_idle(self, connection: OriginConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle is None:
            idle = self._idle[connection.key] = []
        if self.max_idle_per_host <= 0:
            connection.close()
            return
        connection._state = IDLE
        connection.reused = True
        if len(idle) >= self.max_idle_per_host:
            # Keep the most recently used ones (LIFO); close the oldest.
            idle.pop(0).close()
        now = self._reactor.seconds()
        connection.idle_since = now
        idle.append(connection)
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self.idle_timeout, self._swept)

    def _drop_idle(self, connection: OriginConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _swept(self) -> None:
        """
        Close connections idle for C{idle_timeout}; come back when the next
        one will be.
        """
        self._sweep = None
        now = self._reactor.seconds()
        deadline = now - self.idle_timeout
        oldest: float | None = None
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= deadline:
                idle.pop(0).close()
            if idle:
                since = idle[0].idle_since
                oldest = since if oldest is None else min(oldest, since)
            else:
                del self._idle[key]
        if oldest is not None:
            self._sweep = self._reactor.callLater(
                max(0.0, oldest + self.idle_timeout - now), self._swept
            )

    @property
    def busy_count(self) -> int:
        """How many connections of this client carry a request now (open, not idle)."""
        return len(self._open) - sum(len(idle) for idle in self._idle.values())

    def idle_count(self, scheme: str, host: str, port: int) -> int:
        """
        How many idle connections to an origin are pooled (for tests and
        stats).
        """
        return len(self._idle.get((scheme, host, port), ()))

    def pool_sizes(self) -> tuple[int, int]:
        """
        Connections to origins open now, and how many of them are idle in
        the pool (for the manager pages and metrics).
        """
        return len(self._open), sum(len(idle) for idle in self._idle.values())

    def close(self) -> Deferred[None]:
        """
        Close idle pooled connections (at shutdown and in tests); fires when
        they are closed.
        """
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        waiting: list[Deferred[None]] = []
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                if connection._state != CLOSED:
                    waiting.append(connection.when_lost())
                    connection.close()
        if not waiting:
            return succeed(None)
        done: Deferred[Any] = gatherResults(waiting)
        return done.addCallback(lambda _: None)
