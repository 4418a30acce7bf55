# -*- test-case-name: tests.test_proxy_miss -*-
"""
What a validation's answer means for the client (RFC 9111 §4.3.3): serve
the stored response freshened by a 304, retry without squeak's validators
when the 304 is about another response (§4.3.4), serve it stale when the
origin fails and the policy allows (§4.2.4, RFC 5861 stale-if-error), or
let the answer replace it as a miss does.

L{squeak.proxy.miss.MissHandler} sends the request and relays an answer;
these functions take the decisions that only a validation has, so the
handler stays about the fetch.  They are plain functions, not an object per
request: nothing is allocated for a miss that validates nothing, and
nothing refers back to the handler (the one thing that needs it, the retry,
is a callback).  The body sinks L{DrainBody} and L{DiscardBody} live here
too, since most of their uses are here; the handler uses L{DiscardBody}
for a client that left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from squeak.access.gatekeeper import AccessDeniedError
from squeak.cache.facade import Validation
from squeak.http.fields import RawHeaders
from squeak.net.origin import UpstreamResponse
from squeak.proxy.context import ProxyContext
from squeak.proxy.hit import HitHandler
from squeak.proxy.logtag import Answer

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["DiscardBody", "DrainBody", "answer_failed_validation", "answer_validation"]


def answer_validation(
    exchange: ProxyExchange,
    context: ProxyContext,
    response: UpstreamResponse,
    fields: RawHeaders,
    *,
    request_time: float,
    retry: Callable[[], None] | None,
) -> bool:
    """
    The origin answered a validation request (RFC 9111 §4.3.3): a 304
    freshens the stored response, which is served; a 304 about another
    response is retried unconditionally (§4.3.4); a server error may
    let a stale one be served (§4.2.4, stale-if-error); anything else
    replaces it, continuing as a miss.

    @param fields: The answer's fields as they would be relayed.
    @param request_time: When the validation request was sent.
    @param retry: Sends the request again without squeak's validators
        (L{squeak.proxy.miss.MissHandler}'s retry); L{None} if it cannot
        be, and the answer is then relayed.
    @return: Whether the answer was dealt with here; if not, the caller
        relays (and perhaps stores) it.
    """
    cache = context.cache
    lookup = exchange.lookup
    assert lookup is not None and lookup.hit is not None
    verdict = cache.validation_verdict(lookup, response.code, fields, context.reactor.seconds())
    if verdict.kind is Validation.FRESHEN:
        meta = cache.freshen(
            lookup,
            fields,
            request_time=request_time,
            response_time=context.reactor.seconds(),
        )
        response.deliverBody(DrainBody())
        HitHandler(exchange, context).serve(lookup.hit, meta, Answer.VALIDATED)
        return True
    if verdict.kind is Validation.SERVE_STALE:
        response.deliverBody(DiscardBody())
        HitHandler(exchange, context).serve(lookup.hit, lookup.hit.meta, Answer.STALE_ON_ERROR)
        return True
    lookup.release()
    if verdict.kind is Validation.RETRY and retry is not None:
        response.deliverBody(DrainBody())
        retry()
        return True
    # A 5xx relayed because the entry may not be served stale is a
    # failed refresh, as Squid logs it; other answers replace it.
    failed = 500 <= response.code <= 599
    exchange.answer = Answer.REFRESH_FAILED if failed else Answer.REPLACED
    return False


def answer_failed_validation(
    exchange: ProxyExchange, context: ProxyContext, reason: Failure
) -> Answer | None:
    """
    The origin could not be reached (or gave nothing usable) for a
    validation: serve the stale entry if the policy allows (RFC 9111
    §4.2.4, RFC 5861 stale-if-error).  A refusal (L{Gatekeeper.check_peer})
    is answered as one, never with a stale copy.

    @return: L{None} if the stale entry was served; otherwise what the
        error page the caller sends answers, for the log.
    """
    lookup = exchange.lookup
    if (
        isinstance(reason.value, AccessDeniedError)
        or lookup is None
        or lookup.hit is None
        or exchange.disconnected
    ):
        return Answer.ORIGIN
    if context.cache.stale_on_failure(lookup, context.reactor.seconds()).serve:
        HitHandler(exchange, context).serve(lookup.hit, lookup.hit.meta, Answer.STALE_ON_ERROR)
        return None
    return Answer.REFRESH_FAILED


class DrainBody:
    """
    Consumes a response body that carries nothing wanted (a 304's), leaving
    the upstream connection reusable.
    """

    __slots__ = ()

    def makeConnection(self, transport: Any) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class DiscardBody:
    """
    Drains and drops a response body nobody wants any more (its client
    left), stopping the upstream read at once.
    """

    __slots__ = ()

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass
