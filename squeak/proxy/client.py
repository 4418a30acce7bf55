# -*- test-case-name: tests.test_proxy_units -*-
"""
The proxy's client connections: one L{ForwardProxy} channel per client
connection, running a L{ForwardRequest} per request on it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from typing_extensions import override

from squeak.accesslog import AccessRecord
from squeak.errors import ProxyError, error_headers
from squeak.http.request import MessageError
from squeak.net.channel import ClientChannel, Exchange
from squeak.net.intercept import original_destination
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import LogTag

__all__ = ["ForwardProxy", "ForwardProxyFactory"]

#: The error page of a request refused while it was read, by status
#: (L{ForwardProxy.reject_message}); any other is ERR_INVALID_REQ.
_REJECTION_NAMES = {
    408: "ERR_REQUEST_PARSE_TIMEOUT",
    413: "ERR_TOO_BIG",
    505: "ERR_UNSUP_REQ",
}


def _text(value: bytes) -> str:
    """
    Bytes from the wire as text for logs and pages, never failing.
    """
    return value.decode("latin-1")


class ForwardProxy(ClientChannel):
    """
    A client connection of the proxy: runs an exchange per request (the
    class its factory was given: L{squeak.proxy.router.ForwardRequest}),
    answers unreadable requests with a reasoned error page, and keeps the
    per-client connection counts the access rules use.
    """

    _log = Logger()
    #: Whether this connection was redirected here by the firewall
    #: (an intercept listener): its requests are in origin form.
    intercepting = False
    context: ProxyContext
    _original_destination: tuple[str, int] | None = None

    @override
    def reject_message(self, error: MessageError) -> None:
        name = _REJECTION_NAMES.get(error.status, "ERR_INVALID_REQ")
        self.reject(ProxyError(name, error.status, error.detail))

    def reject(self, error: ProxyError) -> None:
        """
        Refuse a request before it was fully received: write the error page
        straight to the transport, log it, and close the connection.
        """
        self.rejected = True
        context = self.context
        now = context.reactor.seconds()
        method_seen, uri_seen, version_seen = self.request_line
        uri = _text(uri_seen or b"-")
        method = _text(method_seen or b"-")
        client = self.client_host
        rendered = context.error_pages.render(
            error,
            # The head was not read: no Accept-Language to go by.
            accept_language=None,
            url=uri,
            method=method,
            client=client,
            visible_hostname=context.config.proxy.visible_hostname,
            now=now,
        )
        head = [b"HTTP/1.1 %d %s" % (error.status, http.RESPONSES.get(error.status, b"Error"))]
        page = rendered.body
        fields = error_headers(error, language=rendered.language)
        head += [name + b": " + value for name, value in fields]
        head += [b"Content-Length: %d" % len(page), b"Connection: close"]
        data = b"\r\n".join(head) + b"\r\n\r\n" + page
        self.send(data)
        self._log.info(
            "rejected request from {client}: {detail}", client=client, detail=error.detail
        )
        context.counters.request_done(method, LogTag.TAG_NONE, error.status, len(data), 0.0)
        context.access_log.write(
            AccessRecord(
                timestamp=now,
                elapsed_ms=0,
                client=client,
                code=LogTag.TAG_NONE,
                status=error.status,
                size=len(data),
                method=method,
                url=uri,
                user=None,
                hierarchy="HIER_NONE",
                peer="-",
                content_type="text/html",
                referer=None,
                user_agent=None,
                version=_text(version_seen or b"HTTP/1.1"),
            )
        )
        self.lingering_close()

    @override
    def connectionMade(self) -> None:
        super().connectionMade()
        context = self.context
        context.channels.add(self)
        context.counters.client_connections += 1
        counts = context.connections_by_client
        counts[self.client_host] = counts.get(self.client_host, 0) + 1

    def original_destination(self) -> tuple[str, int]:
        """
        Where the client really connected before the firewall redirected
        it (read from the socket once per connection).

        @raise OriginalDestinationError: No redirection is recorded.
        """
        cached = self._original_destination
        if cached is None:
            cached = self._original_destination = original_destination(self.transport)
        return cached

    def forget(self) -> None:
        """
        Stop counting this connection (when it closes, also after a tunnel
        took it over).
        """
        context = self.context
        if self not in context.channels:
            return
        context.channels.discard(self)
        # What it read, for the counters (squeak.stats); the open
        # connections' bytes are added when a snapshot is taken.
        context.counters.client_bytes_in += self.bytes_received
        counts = context.connections_by_client
        left = counts.get(self.client_host, 1) - 1
        if left > 0:
            counts[self.client_host] = left
        else:
            counts.pop(self.client_host, None)

    @override
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.forget()
        super().connectionLost(reason)


class ForwardProxyFactory(Factory):
    """
    Builds L{ForwardProxy} channels with the configured limits and the
    client-idle timeout.
    """

    protocol = ForwardProxy
    noisy = False

    def __init__(
        self,
        context: ProxyContext,
        exchange_factory: type[Exchange],
        *,
        intercepting: bool = False,
    ) -> None:
        """
        @param exchange_factory: The class of the exchange run per request
            (L{squeak.proxy.router.ForwardRequest}; given by the
            composition root, so that this module needs no handler).
        """
        self.context = context
        self.exchange_factory = exchange_factory
        self.intercepting = intercepting

    @override
    def buildProtocol(self, addr: Any) -> ForwardProxy:
        channel = ForwardProxy()
        channel.factory = self
        # The client: the listening port's peer, or behind a load balancer
        # the one its PROXY header names (squeak.net.proxyprotocol).
        channel.peer_address = addr
        config = self.context.config
        channel.context = self.context
        channel.reactor = self.context.reactor
        channel.sender = self.context.batcher
        channel.idle_timeout = config.timeouts.client_idle
        channel.head_timeout = config.timeouts.request_head
        channel.max_head_size = config.limits.request_header_size
        channel.max_fields = config.limits.request_headers
        channel.max_body_size = config.limits.request_body_size
        channel.intercepting = self.intercepting
        channel.exchange_factory = self.exchange_factory
        return channel
