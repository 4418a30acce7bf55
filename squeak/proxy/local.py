# -*- test-case-name: tests.test_proxy_local -*-
"""
Answers the proxy gives itself: TRACE and OPTIONS when Max-Forwards
reaches 0 (RFC 9110 §7.6.2), PURGE, and error pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from squeak.access.purge import may_purge
from squeak.errors import ProxyError
from squeak.http.target import Target
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["LocalAnswers"]

#: Request fields never echoed back by a local TRACE (RFC 9110 §9.3.8:
#: exclude fields likely to hold sensitive data).
_TRACE_HIDDEN = frozenset({b"authorization", b"proxy-authorization", b"cookie"})

#: What a local OPTIONS answer says the proxy forwards.
_ALLOW = b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"


class LocalAnswers:
    """
    Answers one request without the origin or the cache's entries.
    """

    __slots__ = ("_context", "_exchange")

    def __init__(self, exchange: ProxyExchange, context: ProxyContext) -> None:
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
