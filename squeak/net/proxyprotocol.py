# -*- test-case-name: tests.test_net_proxyprotocol -*-
"""
Listeners behind a TCP load balancer: the PROXY protocol header read
before anything else, and the connection handed on with the client address
it names.

L{ProxyHeaderFactory} wraps the factory of a listener named in
C{[proxy_protocol] listeners}.  Each connection first gets a
L{ProxyHeaderReader}, which:

  - closes it at once unless the peer is in C{[proxy_protocol] trusted}
    (anyone else could name any client address);
  - waits, across as many TCP segments as it takes, for a whole version 1
    or version 2 header (L{squeak.proxyheader.header_length} decides where
    it ends, or that the bytes can never be one), within
    C{timeouts.request_head};
  - reads its fields with Twisted's parsers (C{twisted.protocols.haproxy}:
    C{V1Parser.parse}, C{V2Parser.parse}), and checks the addresses they
    leave unchecked;
  - builds the listener's own protocol with the header's source address
    (C{buildProtocol(address)}: the address squeak's client channel takes
    as the client's, L{squeak.net.channel.ClientChannel.peer_address}),
    makes it the transport's protocol, and gives it the bytes that followed
    the header.

Why not Twisted's C{HAProxyWrappingFactory}: it closes a connection whose
first segment is shorter than 16 bytes (v2) or 8 bytes (v1), so a header
split across segments is refused; its v1 parser lets a non-numeric port
escape as C{ValueError}; it has no notion of trusted sources and says
nothing when it closes; and it stays between the transport and the channel
for the connection's whole life, which costs every read and write a call
and hides the TCP transport squeak's send batcher writes to directly
(L{squeak.net.wire}).  The reader here is gone once the header is read.

Every refusal closes the connection and logs one line saying why.  A
C{LOCAL} (v2) or C{UNKNOWN} (v1) header, which balancers send for their
own health checks, keeps the balancer's address as the client's, as the
specification says.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.python.failure import Failure
from typing_extensions import override

from squeak.proxyheader import HeaderError, header_length, is_trusted
from squeak.values import IPNetwork

__all__ = ["ProxyHeaderFactory", "ProxyHeaderReader", "read_source"]


def read_source(header: bytes) -> IPv4Address | IPv6Address | None:
    """
    The client address a whole PROXY header names.

    @param header: The header as L{header_length} delimited it.
    @return: The source address; L{None} for a header that names none
        (v2 C{LOCAL}, v1 C{UNKNOWN}, or a v2 family other than TCP or
        UDP over IPv4 or IPv6).
    @raise HeaderError: If the header is malformed.
    """
    if header == b"PROXY UNKNOWN\r\n" or header.startswith(b"PROXY UNKNOWN "):
        # Valid (§2.1: whatever follows UNKNOWN is ignored), but Twisted's
        # parser wants a space after UNKNOWN.
        return None
    try:
        if header.startswith(b"PROXY "):
            info = V1Parser.parse(header[:-2])
        else:
            info = V2Parser.parse(header)
    except (InvalidProxyHeader, ValueError, KeyError) as error:
        kind = "v1" if header.startswith(b"PROXY ") else "v2"
        reason = type(error).__name__
        raise HeaderError(f"malformed PROXY protocol {kind} header ({reason})") from None
    source = info.source
    if not isinstance(source, IPv4Address | IPv6Address):
        return None
    try:
        parsed = ipaddress.ip_address(source.host)
    except ValueError:
        raise HeaderError("PROXY protocol header with an invalid source address") from None
    if not 0 <= source.port <= 65535:
        raise HeaderError("PROXY protocol header with an invalid source port")
    cls = IPv4Address if parsed.version == 4 else IPv6Address
    return cls("TCP", str(parsed), source.port)


class ProxyHeaderReader(Protocol):
    """
    The first protocol of a connection on a PROXY protocol listener: reads
    the header, then hands the connection to the listener's own protocol.
    """

    _log = Logger()

    def __init__(self, factory: ProxyHeaderFactory) -> None:
        self._factory = factory
        self._buffer = b""
        self._timer: Any = None
        self._peer = "-"
        self._done = False

    @override
    def connectionMade(self) -> None:
        factory = self._factory
        transport: Any = self.transport
        self._peer = getattr(transport.getPeer(), "host", "-")
        if not is_trusted(self._peer, factory.trusted):
            self._refuse("not a trusted source of PROXY headers (proxy_protocol.trusted)")
            return
        if factory.timeout:
            self._timer = factory.reactor.callLater(factory.timeout, self._timed_out)

    @override
    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._buffer += data
        try:
            length = header_length(self._buffer)
            if length is None:
                return
            header, rest = self._buffer[:length], self._buffer[length:]
            source = read_source(header)
        except HeaderError as error:
            self._refuse(str(error))
            return
        self._hand_over(source, rest)

    def _hand_over(self, source: IPv4Address | IPv6Address | None, rest: bytes) -> None:
        """
        Make the listener's protocol, built for C{source} (or the peer's
        own address), the connection's protocol from now on.
        """
        self._done = True
        self._cancel_timer()
        self._buffer = b""
        transport: Any = self.transport
        address = source if source is not None else transport.getPeer()
        inner = self._factory.wrapped.buildProtocol(address)
        if inner is None:
            transport.loseConnection()
            return
        # Twisted's TCP transports deliver reads and the connection's loss
        # to their protocol attribute: from here on this reader is out of
        # the way.
        transport.protocol = inner
        inner.makeConnection(transport)
        if rest:
            inner.dataReceived(rest)

    def _timed_out(self) -> None:
        self._timer = None
        if not self._done:
            self._refuse(f"no whole PROXY protocol header within {self._factory.timeout:g}s")

    def _refuse(self, reason: str) -> None:
        """
        Close the connection, saying why in one log line.
        """
        self._done = True
        self._cancel_timer()
        self._buffer = b""
        self._log.warn(
            "PROXY protocol: closed connection from {peer} on {listener}: {reason}",
            peer=self._peer,
            listener=self._factory.name,
            reason=reason,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    @override
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._done = True
        self._cancel_timer()


class ProxyHeaderFactory(Factory):
    """
    Wraps a listener's factory: its connections start with a
    L{ProxyHeaderReader}.

    @ivar wrapped: The listener's own factory (the proxy's, or TLS around
        it: the header comes before the TLS handshake).
    @ivar trusted: The networks allowed to send a header.
    @ivar timeout: Seconds a trusted peer has to send the whole header.
    @ivar name: The listener, for the log.
    """

    noisy = False

    def __init__(
        self,
        wrapped: Any,
        trusted: tuple[IPNetwork, ...],
        reactor: Any,
        *,
        timeout: float,
        name: str,
    ) -> None:
        self.wrapped = wrapped
        self.trusted = trusted
        self.reactor = reactor
        self.timeout = timeout
        self.name = name

    @override
    def buildProtocol(self, addr: Any) -> ProxyHeaderReader:
        return ProxyHeaderReader(self)

    @override
    def doStart(self) -> None:
        self.wrapped.doStart()

    @override
    def doStop(self) -> None:
        self.wrapped.doStop()
