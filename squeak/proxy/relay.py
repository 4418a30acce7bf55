# -*- test-case-name: tests.test_proxy_relay -*-
"""
Answers that turn the client connection into a byte relay: CONNECT tunnels
(RFC 9110 §9.3.6) and protocol upgrades such as WebSocket (RFC 9110 §7.8),
relayed by L{squeak.net.tunnel.Tunnel} with backpressure both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from squeak.access.gatekeeper import AccessDeniedError
from squeak.errors import ProxyError
from squeak.http.fields import (
    downstream_response_headers,
    first_value,
    upgrade_accepted,
)
from squeak.http.target import Target
from squeak.net.tunnel import Tunnel, UpstreamEnd, UpstreamEndFactory
from squeak.net.upgrade import (
    BadResponseHeadError,
    ResponseHead,
    UpgradeUpstream,
    content_length,
    request_head,
    response_head,
)
from squeak.proxy.context import ProxyContext
from squeak.proxy.hops import connect_through_hierarchy, upgrade_through_hierarchy
from squeak.proxy.logtag import Answer
from squeak.proxy.miss import answer_upstream_failure
from squeak.proxy.state import ExchangeState

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["RelayHandler"]


def _transport(protocol: UpstreamEnd | UpgradeUpstream) -> Any:
    """
    The connected transport of an upstream end (a zope interface, which
    mypy reads without its plugin as an untyped attribute: L{Any}).
    """
    return protocol.transport


class _UpgradeFactory(ClientFactory):
    """
    Builds the L{UpgradeUpstream} that carries one upgrade request.
    """

    noisy = False

    def __init__(self, head: bytes, check_peer: Callable[[str], None] | None) -> None:
        self._head = head
        self._check_peer = check_peer

    def buildProtocol(self, addr: Any) -> UpgradeUpstream:
        upstream = UpgradeUpstream(self._head, self._check_peer)
        upstream.factory = self
        return upstream


class RelayHandler:
    """
    Opens the upstream connection of a CONNECT or an upgrade, and hands the
    client connection to a L{Tunnel} once the origin agreed.
    """

    __slots__ = ("_context", "_exchange", "_offered", "_pending")
    _log = Logger()

    def __init__(self, exchange: ProxyExchange, context: ProxyContext) -> None:
        self._exchange = exchange
        self._context = context
        self._pending: defer.Deferred[Any] | None = None
        self._offered = b""

    # -- CONNECT ------------------------------------------------------------

    def connect(self, host: str, port: int) -> None:
        """
        CONNECT (RFC 9110 §9.3.6): connect to the authority, answer 200 only
        once the connection is open, then relay bytes both ways.
        """
        exchange = self._exchange
        exchange.state = ExchangeState.FETCHING
        exchange.hierarchy = "HIER_DIRECT"
        exchange.peer = host
        parents = self._context.parents
        if parents is not None:
            # A cache hierarchy: CONNECT through a parent, or direct.
            pending = connect_through_hierarchy(exchange, self._context, parents, host, port)
            self._pending = pending
            pending.addCallbacks(self._tunnel_connected, self._failed)
            pending.addErrback(exchange.internal_error)
            return
        endpoint = HostnameEndpoint(
            self._context.reactor, host, port, timeout=self._context.config.timeouts.connect
        )
        self._connect(endpoint, UpstreamEndFactory(), self._tunnel_connected)

    def _connect(self, endpoint: Any, factory: Any, connected: Any) -> None:
        """
        Open the upstream connection; C{connected} is called with its
        protocol, failures are answered by L{_failed}.
        """
        pending = endpoint.connect(factory)
        self._pending = pending
        pending.addCallbacks(connected, self._failed)
        pending.addErrback(self._exchange.internal_error)

    def _still_wanted(self, upstream: UpstreamEnd) -> bool:
        """
        The upstream connection is open: close it if the client left
        meanwhile, else note the address it reached for the log.
        """
        self._pending = None
        exchange = self._exchange
        if exchange.disconnected:
            _transport(upstream).loseConnection()
            return False
        if exchange.hierarchy == "HIER_DIRECT":
            exchange.peer = getattr(_transport(upstream).getPeer(), "host", exchange.peer)
        return True

    def _tunnel_connected(self, upstream: UpstreamEnd) -> None:
        if not self._still_wanted(upstream):
            return
        exchange = self._exchange
        # Through a parent, the address connected to is the parent's.
        check_peer = exchange.peer_check() if exchange.hierarchy == "HIER_DIRECT" else None
        if check_peer is not None:
            try:
                check_peer(exchange.peer)
            except AccessDeniedError as error:
                # Nothing was sent to it: close, and refuse the client.
                _transport(upstream).abortConnection()
                exchange.answer = Answer.DENIED
                exchange.send_error(error)
                return
        exchange.answer = Answer.TUNNEL
        self._start_tunnel()
        tunnel = Tunnel(
            self._context.reactor, self._context.config.timeouts.tunnel_idle, self._tunnel_closed
        )
        tunnel.start(exchange.channel, upstream, b"HTTP/1.1 200 Connection established\r\n\r\n")

    def _tunnel_closed(self, tunnel: Tunnel) -> None:
        """
        Log the tunnel: Squid's size field is the bytes relayed to the
        client; both directions go to the service log.
        """
        self._log.info(
            "tunnel to {target} closed: {down} bytes to client, {up} from client{idle}",
            target=self._exchange.uri.decode("latin-1"),
            down=tunnel.to_client,
            up=tunnel.from_client,
            idle=" (idle timeout)" if tunnel.idle_timed_out else "",
        )
        self._count_closed(tunnel)
        self._exchange.write_access_log(status=200, size=tunnel.to_client)

    def _count_closed(self, tunnel: Tunnel) -> None:
        """Count a tunnel's end and the bytes its client sent (squeak.stats)."""
        counters = self._context.counters
        counters.tunnels_closed += 1
        counters.client_bytes_in += tunnel.from_client

    def _start_tunnel(self) -> None:
        """
        The tunnel takes the connection over: nothing is left to cancel, and
        the exchange lets go of this handler (the tunnel holds it).
        """
        self._context.counters.tunnels_opened += 1
        self._exchange.state = ExchangeState.TUNNELLING
        self._exchange.hand_over(None)

    def _failed(self, reason: Failure) -> None:
        self._pending = None
        answer_upstream_failure(self._exchange, reason)

    # -- Upgrade --------------------------------------------------------------

    def upgrade(self, target: Target, offered: bytes) -> None:
        """
        A protocol upgrade (WebSocket, RFC 9110 §7.8): the request goes over
        a raw connection so the origin's 101 can be seen
        (L{squeak.net.upgrade}).

        @param offered: The protocols to ask for, those of the client's
            C{Upgrade} that C{proxy.upgrade_protocols} allows
            (L{squeak.http.fields.upgrade_offer}).
        """
        exchange = self._exchange
        self._offered = offered
        outgoing = exchange.outgoing_headers(target, None)
        outgoing += [(b"Connection", b"Upgrade"), (b"Upgrade", offered)]
        head = request_head(exchange.method, target.path, outgoing)
        exchange.state = ExchangeState.FETCHING
        exchange.hierarchy = "HIER_DIRECT"
        exchange.peer = target.host
        parents = self._context.parents
        if parents is not None:
            # A cache hierarchy: through a parent, or direct.
            pending = upgrade_through_hierarchy(
                exchange, self._context, parents, target, outgoing, _UpgradeFactory
            )
            self._pending = pending
            pending.addCallbacks(self._upgrade_connected, self._failed)
            pending.addErrback(exchange.internal_error)
            return
        endpoint = self._context.upstream.endpoint(target.scheme, target.host, target.port)
        self._connect(
            endpoint, _UpgradeFactory(head, exchange.peer_check()), self._upgrade_connected
        )

    def _upgrade_connected(self, upstream: UpgradeUpstream) -> None:
        if not self._still_wanted(upstream):
            return
        exchange = self._exchange
        waiting = upstream.head_received
        self._pending = waiting
        waiting.addTimeout(
            self._context.config.timeouts.read,
            self._context.reactor,
            onTimeoutCancel=self._response_timed_out,
        )
        waiting.addCallback(self._upgrade_answered, upstream)
        waiting.addErrback(self._upgrade_failed, upstream)
        waiting.addErrback(exchange.internal_error)

    @staticmethod
    def _response_timed_out(result: Any, timeout: float) -> Any:
        """
        The origin did not answer an upgrade request in time: 504.
        """
        if isinstance(result, Failure) and isinstance(result.value, defer.CancelledError):
            raise ProxyError(
                "ERR_READ_TIMEOUT", 504, f"no response from the origin within {timeout:g}s"
            )
        return result

    def _upgrade_failed(self, reason: Failure, upstream: UpgradeUpstream) -> None:
        self._pending = None
        _transport(upstream).abortConnection()
        failure: Failure | BaseException = reason
        if isinstance(reason.value, BadResponseHeadError):
            failure = ProxyError("ERR_INVALID_RESP", 502, reason.getErrorMessage())
        answer_upstream_failure(self._exchange, failure)

    def _upgrade_answered(
        self, answer: tuple[ResponseHead, bytes], upstream: UpgradeUpstream
    ) -> None:
        """
        Relay the origin's answer: a 101 turns the connection into a tunnel;
        anything else is relayed once and the connection closes.
        """
        self._pending = None
        head, rest = answer
        exchange = self._exchange
        if exchange.disconnected:
            _transport(upstream).loseConnection()
            return
        if head.status == 101 and not upgrade_accepted(self._offered, head.headers):
            # RFC 9110 §7.8, §15.2.2: a switch to a protocol the request did
            # not ask for (or to none named) would tunnel bytes past every
            # check: refused, and the connection to the origin closed.
            _transport(upstream).abortConnection()
            switched = first_value(head.headers, b"upgrade") or b"nothing"
            answer_upstream_failure(
                exchange,
                ProxyError(
                    "ERR_INVALID_RESP",
                    502,
                    f"the origin switched to {switched[:40].decode('latin-1')!r}, "
                    f"not to a protocol asked for ({self._offered.decode('latin-1')}) "
                    "(RFC 9110 §7.8)",
                ),
            )
            return
        config = self._context.config
        fields = downstream_response_headers(
            head.headers,
            visible_hostname=config.proxy.visible_hostname,
            via=config.proxy.via,
            response_version=head.version,
        )
        limit = None
        if head.status == 101:
            switched = b", ".join(v for n, v in head.headers if n.lower() == b"upgrade")
            fields += [(b"Connection", b"Upgrade"), (b"Upgrade", switched)]
        else:
            framing = [(n, v) for n, v in head.headers if n.lower() == b"transfer-encoding"]
            length = content_length(head.headers)
            if length is not None:
                fields.append((b"Content-Length", b"%d" % length))
                limit = length
            fields += [*framing, (b"Connection", b"close")]
        first = response_head(head, fields)
        exchange.code = head.status
        exchange.head_bytes = len(first)
        exchange.set_field(b"Content-Type", first_value(head.headers, b"content-type") or b"-")
        if rest:
            upstream.early.append(rest)
        self._start_tunnel()
        tunnel = Tunnel(
            self._context.reactor,
            config.timeouts.tunnel_idle,
            self._upgrade_closed,
            limit_to_client=limit,
        )
        tunnel.start(exchange.channel, upstream, first)
        if limit == 0:
            tunnel.upstream_data(b"")

    def _upgrade_closed(self, tunnel: Tunnel) -> None:
        self._count_closed(tunnel)
        exchange = self._exchange
        exchange.write_access_log(
            status=exchange.code, size=exchange.head_bytes + tunnel.to_client
        )

    def ended(self, reason: Failure | None) -> None:
        """
        The exchange is over: if the client left, stop connecting.
        """
        if reason is not None and self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()
