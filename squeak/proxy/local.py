# -*- test-case-name: tests.test_proxy_local -*-
"""
Answers the proxy gives itself: TRACE and OPTIONS when Max-Forwards
reaches 0 (RFC 9110 §7.6.2), PURGE, and error pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from squeak.access.purge import may_purge
from squeak.errors import ProxyError, error_headers, render_error_page
from squeak.http.target import Target
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState

if TYPE_CHECKING:
    from squeak.proxy.exchange import ForwardRequest

__all__ = ["LocalAnswers", "send_error_page"]

#: Request fields never echoed back by a local TRACE (RFC 9110 §9.3.8:
#: exclude fields likely to hold sensitive data).
_TRACE_HIDDEN = frozenset({b"authorization", b"proxy-authorization", b"cookie"})

#: What a local OPTIONS answer says the proxy forwards.
_ALLOW = b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"

#: Error statuses after which the framing of what follows on the
#: connection is not trustworthy.
_CLOSING_STATUSES = frozenset({400, 413})


class LocalAnswers:
    """
    Answers one request without the origin or the cache's entries.
    """

    __slots__ = ("_context", "_exchange")

    def __init__(self, exchange: ForwardRequest, context: ProxyContext) -> None:
        self._exchange = exchange
        self._context = context

    def max_forwards_reached(self) -> None:
        """
        Max-Forwards reached 0 on TRACE or OPTIONS: this proxy is the final
        recipient (RFC 9110 §7.6.2).  TRACE echoes the request (without the
        fields RFC 9110 §9.3.8 says to exclude); OPTIONS says what may be
        forwarded.
        """
        exchange = self._exchange
        exchange.state = ExchangeState.ANSWERING
        exchange.answer = Answer.ORIGIN
        if exchange.method == b"TRACE":
            lines = [b"%s %s %s" % (exchange.method, exchange.uri, exchange.version)]
            lines += [
                name + b": " + value
                for name, value in exchange.received
                if name.lower() not in _TRACE_HIDDEN
            ]
            body = b"\r\n".join(lines) + b"\r\n\r\n"
            exchange.set_status(200)
            exchange.set_field(b"Content-Type", b"message/http")
        else:
            body = b""
            exchange.set_status(200)
            exchange.set_field(b"Allow", _ALLOW)
        exchange.content_length = len(body)
        exchange.write(body)
        exchange.finish()

    def purge(self, target: Target) -> None:
        """
        PURGE removes a URI from the cache; only from the addresses in
        C{cache.purge_from} (loopback by default): 200 when something was
        removed, 404 when nothing was stored.

        @raise ProxyError: 403 from any other address.
        """
        exchange = self._exchange
        context = self._context
        if not may_purge(exchange.client_host, context.config.cache.purge_from):
            exchange.answer = Answer.DENIED
            raise ProxyError("ERR_ACCESS_DENIED", 403, "PURGE is not allowed from this address")
        exchange.state = ExchangeState.ANSWERING
        purged = context.cache.purge(target.uri_text)
        exchange.answer = Answer.ORIGIN
        exchange.set_status(200 if purged else 404)
        exchange.content_length = 0
        exchange.finish()


def send_error_page(
    exchange: ForwardRequest, error: ProxyError, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """
    Answer with the error's page (Squid's, from C{templates/error.html}),
    or abort the client connection if a response already started: a
    response cannot be taken back, only shown to be cut short.
    """
    if exchange.disconnected or exchange.finished:
        return
    if exchange.started_writing:
        exchange.abort_client()
        return
    exchange.state = ExchangeState.ANSWERING
    exchange.error_status = error.status
    page = render_error_page(
        error,
        url=exchange.uri.decode("latin-1"),
        method=exchange.method.decode("latin-1"),
        client=exchange.client_host,
        visible_hostname=exchange.context.config.proxy.visible_hostname,
        now=exchange.context.reactor.seconds(),
    )
    exchange.set_status(error.status)
    for name, value in error_headers(error):
        exchange.set_field(name, value)
    for name, value in extra_headers:
        exchange.add_field(name, value)
    exchange.content_length = len(page)
    if error.status in _CLOSING_STATUSES:
        # After a malformed or refused request the framing of what
        # follows on this connection is not trustworthy.
        exchange.channel.persistent = False
    exchange.write(page)
    exchange.finish()
