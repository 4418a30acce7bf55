# -*- test-case-name: tests.test_upstream -*-
"""
Requests to origin servers: pooled persistent HTTP/1.1 with strict framing.

Twisted's L{Agent} with a persistent L{HTTPConnectionPool} does the wire
work.  Two things it does not do for a proxy are added here, in one place:

  - it hides connection-level response fields (C{Connection},
    C{Content-Length}, C{Transfer-Encoding}, ...) from L{Response.headers}.
    A proxy must know them: to remove the fields that C{Connection} names
    (RFC 9110 §7.6.1) and to refuse ambiguous framing (RFC 9112 §6.3).
    L{_StrictClientProtocol} hooks the response parser once the status line
    and fields are in and (a) rejects bad framing, so that the request fails
    with L{ResponseFailed} instead of relaying a doubtful body, and
    (b) attaches the connection fields to the response as
    C{squeak_connection_headers}.
  - its connect timeout and DNS come from an endpoint; L{_EndpointFactory}
    builds a L{HostnameEndpoint} with the configured connect timeout.

An upstream connection goes back to the pool only when Twisted has read its
response completely (L{ResponseDone}); a response that fails framing or ends
early closes its connection.  Both are tested against loopback origins.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.web._newclient import HTTP11ClientProtocol, HTTPClientParser
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from squeak.headers import FramingError, RawHeaders, check_response_framing


def _conn_fields(parser: HTTPClientParser) -> RawHeaders:
    """
    The connection-level fields the parser kept apart, in received order per
    name.
    """
    return [
        (name, value) for name, values in parser.connHeaders.getAllRawHeaders() for value in values
    ]


def _install_framing_check(parser: HTTPClientParser, peer: str) -> None:
    """
    Wrap C{parser.allHeadersReceived} so framing is checked before Twisted
    picks a body decoder, and the connection fields ride on the response.

    Raising from here makes L{HTTP11ClientProtocol.dataReceived} give the
    connection up and fail the response L{Deferred} with L{ResponseFailed}
    whose reasons hold the L{FramingError}.

    @param peer: The origin's address, for the access log's peer field.
    """
    original = parser.allHeadersReceived

    def allHeadersReceived() -> None:
        response = getattr(parser, "response", None)
        fields = _conn_fields(parser)
        if response is not None and not 100 <= response.code < 200:
            is_head = parser.request.method == b"HEAD"
            if not is_head:
                check_response_framing(fields)
            response.squeak_connection_headers = fields
            response.squeak_peer = peer
        original()

    parser.allHeadersReceived = allHeadersReceived  # type: ignore[method-assign]


class _StrictClientProtocol(HTTP11ClientProtocol):
    """
    L{HTTP11ClientProtocol} that checks each response's framing and exposes
    its connection fields (see the module docstring).
    """

    def request(self, request: Any) -> Deferred[IResponse]:
        result = super().request(request)
        parser = self._parser
        if parser is not None:
            peer = getattr(self.transport.getPeer(), "host", "-")
            _install_framing_check(parser, peer)
        return result


class _StrictClientFactory(_HTTP11ClientFactory):
    """
    Builds L{_StrictClientProtocol}s for the pool.
    """

    def buildProtocol(self, addr: Any) -> HTTP11ClientProtocol:
        return _StrictClientProtocol(self._quiescentCallback)


def tls_policy(ca_file: str) -> BrowserLikePolicyForHTTPS:
    """
    The certificate policy for C{https://} origins: browser-like
    verification (chain and host name, through C{service_identity}) against
    the system's trust store, or against the CAs in C{ca_file}.
    """
    if not ca_file:
        return BrowserLikePolicyForHTTPS()
    with open(ca_file, "rb") as handle:
        pem = handle.read()
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    return BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certificates))


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """
    Endpoints to origins, with the configured connect timeout; TLS with
    verification for C{https}.

    L{HostnameEndpoint} resolves names off the reactor thread and tries every
    address (happy eyeballs), so IPv6 and IPv4 origins both work.
    """

    def __init__(
        self, reactor: Any, connect_timeout: float, policy: BrowserLikePolicyForHTTPS
    ) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._policy = policy

    def endpointForURI(self, uri: Any) -> Any:
        host = uri.host
        if host.startswith(b"[") and host.endswith(b"]"):
            host = host[1:-1]
        endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._connect_timeout)
        if uri.scheme == b"https":
            return wrapClientTLS(self._policy.creatorForNetloc(host, uri.port), endpoint)
        return endpoint


class UpstreamClient:
    """
    Sends requests to origins over pooled persistent connections.

    @ivar pool: The L{HTTPConnectionPool}; its C{maxPersistentPerHost} is a
        client default of 2, far too low for a proxy, so it comes from config.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        connect_timeout: float,
        max_idle_per_host: int,
        idle_timeout: float,
        ca_file: str = "",
    ) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = max_idle_per_host
        self.pool.cachedConnectionTimeout = idle_timeout
        self.pool.retryAutomatically = True
        self.pool._factory = _StrictClientFactory
        self._endpoints = _EndpointFactory(reactor, connect_timeout, tls_policy(ca_file))
        self._agent = Agent.usingEndpointFactory(reactor, self._endpoints, self.pool)

    def endpoint(self, scheme: str, host: str, port: int) -> Any:
        """
        A fresh (unpooled) endpoint to an origin, TLS-verified for https:
        for raw exchanges such as protocol upgrades.
        """
        shown = f"[{host}]" if ":" in host else host
        return self._endpoints.endpointForURI(
            URI.fromBytes(f"{scheme}://{shown}:{port}/".encode("ascii"))
        )

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: RawHeaders,
        body: IBodyProducer | None,
    ) -> Deferred[IResponse]:
        """
        Send one request; the L{Deferred} fires with the response once its
        head is in.

        @param headers: Complete end-to-end request fields, including
            C{Host}; framing fields are written by Twisted from C{body}.
        """
        twisted_headers = Headers()
        for name, value in headers:
            twisted_headers.addRawHeader(name, value)
        return self._agent.request(method, uri, twisted_headers, body)

    def close(self) -> Deferred[None]:
        """
        Close idle pooled connections (at shutdown and in tests).
        """
        return self.pool.closeCachedConnections()


__all__ = ["FramingError", "UpstreamClient"]
