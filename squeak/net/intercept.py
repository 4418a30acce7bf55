# -*- test-case-name: tests.test_net_intercept -*-
"""
Transparent (intercepting) listeners: connections a firewall redirected to
squeak without the client knowing it talks to a proxy.

A Linux gateway's C{REDIRECT} (iptables or nftables) rewrites the
destination of a LAN client's connection to squeak's own address and port;
the connection tracker keeps the original one, which the
C{SO_ORIGINAL_DST} socket option returns (L{original_destination}).

Three pieces live here:

  - L{original_destination} and L{is_proxy_itself}: where the client
    really wanted to go, and whether it came to squeak directly (no
    redirection happened; serving it would loop back into squeak).
  - L{host_matches_destination} (pure): the rule against cache poisoning
    by a forged C{Host} header on intercepted HTTP (the CVE-2009-0801
    class): the response to a request whose C{Host} does not belong to the
    address it was really sent to may be relayed, never cached.
  - L{SpliceProtocol}: the intercepting TLS listener.  It does not decrypt:
    it reads the ClientHello (bounded in bytes and time), takes the SNI host
    name with L{squeak.http.sni}, asks a decision callback, and then connects to
    the I{original destination address} (never to the SNI name, which would
    let a client steer squeak anywhere), replays the bytes it read, and
    relays with L{squeak.net.tunnel.Tunnel}.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from typing_extensions import override
from zope.interface import implementer

from squeak.http import sni
from squeak.http.target import TargetError, parse_authority
from squeak.net.tunnel import Tunnel, UpstreamEnd

__all__ = [
    "IP6T_SO_ORIGINAL_DST",
    "SO_ORIGINAL_DST",
    "HostCheck",
    "OriginalDestinationError",
    "SpliceFactory",
    "SpliceOutcome",
    "SpliceProtocol",
    "SpliceRecord",
    "host_matches_destination",
    "host_to_resolve",
    "is_proxy_itself",
    "original_destination",
]

#: C{<linux/netfilter_ipv4.h>}: C{getsockopt(SOL_IP, SO_ORIGINAL_DST)}
#: returns the pre-NAT destination as a C{struct sockaddr_in}.
SO_ORIGINAL_DST = 80
#: C{<linux/netfilter_ipv6/ip6_tables.h>}: the same for IPv6, at level
#: C{SOL_IPV6}, as a C{struct sockaddr_in6}.
IP6T_SO_ORIGINAL_DST = 80

_SOL_IP = getattr(socket, "SOL_IP", 0)
_SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28

Address = tuple[str, int]


class OriginalDestinationError(Exception):
    """
    The connection has no original destination: it was not redirected by
    the firewall's NAT (C{ENOENT}: no connection-tracking entry), the kernel
    has no NAT support for the family (C{ENOPROTOOPT}), or the platform is
    not Linux.  str(self) says which, for the log.
    """


def _normal(host: str) -> str:
    """
    An IP address in canonical form, an IPv4-mapped IPv6 address as plain
    IPv4; anything else lower-cased as is.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _parse_sockaddr(raw: bytes) -> Address:
    """
    Parse the C{struct sockaddr_in} or C{sockaddr_in6} the kernel returns.

    @raise OriginalDestinationError: if it is neither.
    """
    if len(raw) >= 2:
        (family,) = struct.unpack("=H", raw[:2])
        if family == socket.AF_INET and len(raw) >= 8:
            port, packed = struct.unpack("!H4s", raw[2:8])
            return socket.inet_ntop(socket.AF_INET, packed), port
        if family == socket.AF_INET6 and len(raw) >= 24:
            port, _flowinfo, packed = struct.unpack("!HI16s", raw[2:24])
            return _normal(socket.inet_ntop(socket.AF_INET6, packed)), port
    raise OriginalDestinationError(f"unexpected original destination structure {raw.hex()}")


def original_destination(transport: Any) -> Address:
    """
    The address a redirected client connection was originally sent to.

    Uses C{getsockopt(SOL_IP, SO_ORIGINAL_DST)} (IPv4) or
    C{getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)} (IPv6), which read the
    connection-tracking entry that the firewall's C{REDIRECT}/C{DNAT} made.
    A client on an IPv4-mapped address of a dual-stack socket is looked up
    as IPv4, the family its connection really has.

    A connection made to squeak directly (not redirected) still has a
    conntrack entry whenever C{nf_conntrack} is loaded, and then this
    returns squeak's own address: check with L{is_proxy_itself}.

    @param transport: a connected TCP transport (C{getHandle()} gives the
        socket), or a socket.
    @return: C{(host, port)}, IPv6 without brackets, IPv4-mapped addresses
        as IPv4.
    @raise OriginalDestinationError: when the kernel has none.
    """
    sock = transport.getHandle() if hasattr(transport, "getHandle") else transport
    try:
        if sock.family == socket.AF_INET6:
            if "." in sock.getpeername()[0]:  # ::ffff:a.b.c.d, an IPv4 client
                raw = sock.getsockopt(_SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
            else:
                raw = sock.getsockopt(_SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6)
        elif sock.family == socket.AF_INET:
            raw = sock.getsockopt(_SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
        else:
            raise OriginalDestinationError(f"socket family {sock.family} cannot be intercepted")
    except OSError as e:
        if e.errno == errno.ENOENT:
            why = "no NAT entry for this connection (it was not redirected)"
        elif e.errno == errno.ENOPROTOOPT:
            why = "the kernel has no SO_ORIGINAL_DST for this socket (NAT not available)"
        else:
            why = f"getsockopt SO_ORIGINAL_DST failed: {e.strerror or e}"
        raise OriginalDestinationError(why) from e
    return _parse_sockaddr(raw)


def is_proxy_itself(destination: Address, local_addresses: Iterable[Address]) -> bool:
    """
    Did the client connect to squeak directly, without a redirection?

    Then the original destination is the connection's own local address
    (C{transport.getHost()}), and relaying to it would loop back into
    squeak.  Addresses are compared as IP addresses (C{::ffff:1.2.3.4}
    equals C{1.2.3.4}).

    @param destination: from L{original_destination}.
    @param local_addresses: the accepted connection's local address, and
        optionally the listeners' own (non-wildcard) addresses.
    """
    host, port = _normal(destination[0]), destination[1]
    return any(_normal(h) == host and p == port for h, p in local_addresses)


class HostCheck(NamedTuple):
    """
    The verdict of L{host_matches_destination}: C{ok} and a reason for the
    log.  Unpacks as C{(ok, reason)}.
    """

    ok: bool
    reason: str


def host_to_resolve(host_header: bytes, default_port: int = 80) -> str | None:
    """
    The name the caller must resolve before calling
    L{host_matches_destination}, or L{None} if there is nothing to resolve
    (an IP literal, or a C{Host} that is not valid at all).

    @param host_header: the request's C{Host} field value.
    @param default_port: 80 for the intercepting HTTP listener.
    """
    try:
        host, _port = parse_authority(host_header.strip(b" \t"), default_port)
    except TargetError:
        return None
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def host_matches_destination(
    host_header: bytes,
    dst_ip: str,
    dst_port: int,
    resolved: list[str],
    *,
    default_port: int = 80,
) -> HostCheck:
    """
    Does the C{Host} of an intercepted request belong to the address the
    client really sent it to?

    An intercepted request goes to its original destination whatever its
    C{Host} says, but the cache files the response under the C{Host}.  A
    client (or a script it runs) that sends C{Host: bank.example} to an
    address it controls would otherwise poison everybody's cached
    C{bank.example} (CVE-2009-0801; Squid's C{host_verify_strict}).  So the
    response may be cached only if the C{Host} names the original
    destination: literally (an IP address equal to it) or by resolving to
    it, and with the same port (the listener's default when none is given,
    RFC 9110 §7.2).

    Pure: the caller resolves the name (L{host_to_resolve}) and passes the
    addresses it got.

    @param host_header: the C{Host} field value (RFC 9110 §7.2:
        C{uri-host [ ":" port ]}).
    @param dst_ip: the original destination address.
    @param dst_port: the original destination port.
    @param resolved: the addresses the C{Host} name resolves to (empty for a
        literal, or if resolution failed).
    @param default_port: the port a C{Host} without one means: 80 for HTTP,
        443 for HTTPS.
    @return: C{(ok, reason)}; the reason explains a mismatch, e.g.
        C{"Host example.com resolves to 1.2.3.4, not to the original
        destination 5.6.7.8: response not cached"}.
    """
    shown = host_header.decode("ascii", "backslashreplace")[:100]
    try:
        host, port = parse_authority(host_header.strip(b" \t"), default_port)
    except TargetError as e:
        return HostCheck(False, f"Host {shown!r} is not valid ({e.detail}): response not cached")
    host = host.rstrip(".")
    dst = _normal(dst_ip)
    shown_dst = f"[{dst}]" if ":" in dst else dst
    if port != dst_port:
        return HostCheck(
            False,
            f"Host {shown} names port {port}, not the original destination port "
            f"{dst_port} of {shown_dst}: response not cached",
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if _normal(host) == dst:
            return HostCheck(True, f"Host {shown} is the original destination")
        return HostCheck(
            False,
            f"Host {shown} is not the original destination {shown_dst}: response not cached",
        )
    addresses = sorted({_normal(a) for a in resolved})
    if dst in addresses:
        return HostCheck(True, f"Host {host} resolves to the original destination {shown_dst}")
    if not addresses:
        return HostCheck(
            False,
            f"Host {host} did not resolve, so it cannot be checked against the original "
            f"destination {shown_dst}: response not cached",
        )
    return HostCheck(
        False,
        f"Host {host} resolves to {', '.join(addresses)}, not to the original destination "
        f"{shown_dst}: response not cached",
    )


class SpliceOutcome(enum.Enum):
    """
    How an intercepted TLS connection ended, for the log.
    """

    #: Relayed to the original destination until one side closed.
    SPLICED = "spliced"
    #: Relayed, then closed for relaying nothing for the idle timeout.
    IDLE_TIMEOUT = "idle-timeout"
    #: The decision callback said no.
    DENIED = "denied"
    #: The client's first bytes are not TLS.
    NOT_TLS = "not-tls"
    #: TLS records or a ClientHello that L{squeak.http.sni} refused.
    MALFORMED = "malformed"
    #: No complete ClientHello within the time allowed.
    HELLO_TIMEOUT = "hello-timeout"
    #: The client closed before its ClientHello was complete, or while the
    #: decision or the upstream connection was pending.
    CLIENT_CLOSED = "client-closed"
    #: The socket has no original destination (L{OriginalDestinationError}).
    NO_DESTINATION = "no-destination"
    #: The original destination is squeak itself (no redirection happened).
    NOT_INTERCEPTED = "not-intercepted"
    #: Connecting to the original destination failed or timed out.
    CONNECT_FAILED = "connect-failed"
    #: The decision callback failed (a bug, logged).
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SpliceRecord:
    """
    What to log about one intercepted TLS connection; passed to the
    C{on_finished} callback once, when the connection is over.

    @ivar client: the client's C{(host, port)}.
    @ivar sni: the SNI host name, or L{None} (none sent, or not read).
    @ivar destination: the original destination, or L{None} if unknown.
    @ivar outcome: see L{SpliceOutcome}.
    @ivar reason: detail for the log (the parser's reason, the connect
        error), or empty.
    @ivar from_client: bytes received from the client (relayed or not).
    @ivar to_client: bytes relayed from the origin to the client.
    @ivar started: C{reactor.seconds()} when the connection was accepted.
    @ivar duration: seconds from accepting to the end.
    """

    client: Address
    sni: str | None
    destination: Address | None
    outcome: SpliceOutcome
    reason: str
    from_client: int
    to_client: int
    started: float
    duration: float


Decide = Callable[[str | None, Address, Address], "defer.Deferred[bool] | bool"]


class _SpliceUpstream(UpstreamEnd):
    """
    The origin side: an L{UpstreamEnd} that tells its splice when it is up.
    """

    def __init__(self, splice: SpliceProtocol) -> None:
        super().__init__()
        self._splice = splice

    @override
    def connectionMade(self) -> None:
        self._splice._upstream_connected(self)


class _SpliceUpstreamFactory(protocol.ClientFactory):
    """
    Connects one splice to its original destination.
    """

    noisy = False

    def __init__(self, splice: SpliceProtocol) -> None:
        self._splice = splice

    @override
    def buildProtocol(self, addr: Any) -> _SpliceUpstream:
        return _SpliceUpstream(self._splice)

    @override
    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._splice._upstream_failed(reason)


def _address(address: Any) -> Address:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    return (str(host), int(port)) if host is not None and port is not None else ("?", 0)


@implementer(IHalfCloseableProtocol)
class SpliceProtocol(protocol.Protocol):
    """
    An intercepted TLS connection: read the ClientHello, decide, splice.

    States: reading the hello (bounded by L{sni.MAX_PREFIX_SIZE} and
    C{hello_timeout}), deciding (reading paused), connecting (reading
    paused, C{connect_timeout}), relaying (handed over to L{Tunnel}), done.
    Whatever the path, C{on_finished} is called exactly once.

    @ivar hello_timeout: seconds allowed from accept to a complete
        ClientHello and a decision.
    @ivar connect_timeout: seconds allowed to connect to the original
        destination.
    @ivar idle_timeout: seconds a relay may carry nothing before it is
        closed (L{Tunnel}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        decide: Decide,
        on_finished: Callable[[SpliceRecord], None],
        *,
        hello_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        find_destination: Callable[[Any], Address] = original_destination,
        bind_address: Address | None = None,
    ) -> None:
        """
        @param reactor: provides C{callLater}, C{seconds} and C{connectTCP}.
        @param decide: C{decide(sni, original_destination, client_address)}
            returns (a L{Deferred} firing with) C{True} to splice, C{False}
            to close.  C{sni} is L{None} for a hello without one; the
            decision then rests on the destination address.
        @param on_finished: receives the L{SpliceRecord} once.
        @param find_destination: L{original_destination} (injectable for
            tests).
        @param bind_address: local address for the upstream connection, or
            L{None}.
        """
        self._reactor = reactor
        self._decide = decide
        self._on_finished = on_finished
        self.hello_timeout = hello_timeout
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._find_destination = find_destination
        self._bind_address = bind_address
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._state = "reading"
        self._timer: Any = None
        self._client: Address = ("?", 0)
        self._destination: Address | None = None
        self._sni: str | None = None
        self._started = 0.0
        self._finished = False
        self._client_eof = False
        self._tunnel: Tunnel | None = None
        self._connector: Any = None

    @property
    def _t(self) -> Any:
        """
        The client transport, untyped (Twisted types it as optional).
        """
        return self.transport

    # Client events
    @override
    def connectionMade(self) -> None:
        self._started = self._reactor.seconds()
        self._client = _address(self._t.getPeer())
        try:
            destination = self._find_destination(self.transport)
        except OriginalDestinationError as e:
            self._refuse(SpliceOutcome.NO_DESTINATION, str(e))
            return
        self._destination = destination
        if is_proxy_itself(destination, [_address(self._t.getHost())]):
            self._refuse(
                SpliceOutcome.NOT_INTERCEPTED,
                f"original destination {destination[0]}:{destination[1]} is this listener "
                "itself (the connection was not redirected)",
            )
            return
        self._timer = self._reactor.callLater(self.hello_timeout, self._hello_timed_out)

    @override
    def dataReceived(self, data: bytes) -> None:
        if self._state != "reading":
            # Deciding or connecting: keep what arrives (reading is paused,
            # so at most what was already in flight) and replay it.
            if self._state in ("deciding", "connecting"):
                self._buffer.append(data)
                self._buffered += len(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        result = sni.parse_client_hello(b"".join(self._buffer))
        if result.outcome is sni.Outcome.NEED_MORE:
            return
        if result.outcome is sni.Outcome.NOT_TLS:
            self._refuse(SpliceOutcome.NOT_TLS, result.reason)
            return
        if result.outcome is sni.Outcome.MALFORMED:
            self._refuse(SpliceOutcome.MALFORMED, result.reason)
            return
        self._sni = result.server_name
        self._state = "deciding"
        self._t.pauseProducing()
        destination = self._destination
        if destination is None:  # pragma: no cover - set in connectionMade
            self._refuse(SpliceOutcome.NO_DESTINATION, "no destination")
            return
        d = defer.maybeDeferred(self._decide, self._sni, destination, self._client)
        d.addCallbacks(self._decided, self._decision_failed)

    def readConnectionLost(self) -> None:
        """
        The client shut down its sending side.  Before a complete hello this
        ends the connection; after it, the half-close is relayed once the
        tunnel is up.
        """
        if self._state == "reading":
            self._refuse(SpliceOutcome.CLIENT_CLOSED, "client closed before its ClientHello")
        else:
            self._client_eof = True

    def writeConnectionLost(self) -> None:
        """
        Nothing to do: the tunnel, once attached, handles this.
        """

    @override
    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._cancel_timer()
        if self._connector is not None:
            connector, self._connector = self._connector, None
            with contextlib.suppress(error.NotConnectingError):
                connector.stopConnecting()
        if not self._finished:
            self._state = "done"
            self._finish(SpliceOutcome.CLIENT_CLOSED, "client closed before the splice")

    # Deciding
    def _decided(self, allowed: bool) -> None:
        if self._state != "deciding":
            return
        destination = self._destination
        if not allowed or destination is None:
            self._refuse(SpliceOutcome.DENIED, "")
            return
        self._state = "connecting"
        self._cancel_timer()
        host, port = destination
        self._connector = self._reactor.connectTCP(
            host,
            port,
            _SpliceUpstreamFactory(self),
            timeout=self.connect_timeout,
            bindAddress=self._bind_address,
        )

    def _decision_failed(self, failure: Failure) -> None:
        self._log.failure("intercept decision failed", failure)
        if self._state == "deciding":
            self._refuse(SpliceOutcome.ERROR, failure.getErrorMessage())

    # Upstream events
    def _upstream_connected(self, upstream: _SpliceUpstream) -> None:
        self._connector = None
        if self._state != "connecting":
            transport: Any = upstream.transport
            transport.loseConnection()
            return
        self._state = "relaying"
        tunnel = Tunnel(self._reactor, self.idle_timeout, self._tunnel_closed)
        self._tunnel = tunnel
        replay = b"".join(self._buffer)
        self._buffer = []
        tunnel.attach(self, upstream, from_client=replay)
        if self._client_eof:
            tunnel.client_read_closed()

    def _upstream_failed(self, reason: Failure) -> None:
        self._connector = None
        if self._state != "connecting":
            return
        self._refuse(SpliceOutcome.CONNECT_FAILED, reason.getErrorMessage())

    def _tunnel_closed(self, tunnel: Tunnel) -> None:
        outcome = SpliceOutcome.IDLE_TIMEOUT if tunnel.idle_timed_out else SpliceOutcome.SPLICED
        self._finish(outcome, "", to_client=tunnel.to_client, from_client=tunnel.from_client)

    # Endings
    def _hello_timed_out(self) -> None:
        self._timer = None
        if self._state == "reading":
            why = f"no complete ClientHello within {self.hello_timeout:g}s"
        else:
            why = f"no decision within {self.hello_timeout:g}s"
        self._refuse(SpliceOutcome.HELLO_TIMEOUT, why)

    def _refuse(self, outcome: SpliceOutcome, reason: str) -> None:
        """
        Close the client connection without relaying anything.
        """
        self._state = "done"
        self._cancel_timer()
        self._finish(outcome, reason)
        self._t.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(
        self,
        outcome: SpliceOutcome,
        reason: str,
        *,
        to_client: int = 0,
        from_client: int | None = None,
    ) -> None:
        if self._finished:
            return
        self._finished = True
        now = self._reactor.seconds()
        record = SpliceRecord(
            client=self._client,
            sni=self._sni,
            destination=self._destination,
            outcome=outcome,
            reason=reason,
            from_client=self._buffered if from_client is None else from_client,
            to_client=to_client,
            started=self._started,
            duration=max(0.0, now - self._started),
        )
        try:
            self._on_finished(record)
        except Exception:
            self._log.failure("on_finished callback failed")


class SpliceFactory(protocol.ServerFactory):
    """
    Builds a L{SpliceProtocol} per accepted connection of an intercepting
    TLS listener; the keyword arguments are passed on to each.
    """

    noisy = False

    def __init__(
        self,
        reactor: Any,
        decide: Decide,
        on_finished: Callable[[SpliceRecord], None],
        **options: Any,
    ) -> None:
        self._reactor = reactor
        self._decide = decide
        self._on_finished = on_finished
        self._options = options

    @override
    def buildProtocol(self, addr: Any) -> SpliceProtocol:
        splice = SpliceProtocol(self._reactor, self._decide, self._on_finished, **self._options)
        splice.factory = self
        return splice
