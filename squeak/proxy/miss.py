# -*- test-case-name: tests.test_proxy_miss -*-
"""
Answers from the origin: the request rebuilt and sent through the pooled
client, the answer relayed with backpressure and teed into the cache, and
validation of a stored entry (RFC 9111 §4.3) with stale-if-error (RFC 5861
§4), whose decisions are L{squeak.proxy.validate}'s.

The streaming contract (docs/architecture.md):
  - a response body is copied by a L{BodyRelay} handed to
    C{response.deliverBody}; the upstream transport is registered as the
    client response's streaming producer, so a slow client pauses the origin
    read and memory stays bounded whatever the body size;
  - only a L{BodyEnded} (L{BodyComplete}, or L{BodyEndedByClose} for a
    close-delimited body) finishes the client response cleanly; any other
    ending aborts the client connection, so a truncated body never looks
    complete; and only L{BodyComplete} commits a cache entry.

How a failure is named for its error page is
L{squeak.net.failures.error_for_failure}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from squeak.access.gatekeeper import AccessDeniedError
from squeak.access.rules import may_cache
from squeak.cache.facade import ResponseStorer, Transient
from squeak.errors import BodyComplete, BodyEnded, ProxyError
from squeak.http.fields import RawHeaders, downstream_response_headers
from squeak.http.methods import invalidates_cache
from squeak.http.target import Target
from squeak.net.connection import PendingRequest
from squeak.net.deadlines import Deadlines, deadline_resolution
from squeak.net.failures import error_for_failure, failure_of
from squeak.net.origin import UpstreamResponse
from squeak.proxy.context import ProxyContext
from squeak.proxy.exchange import ProxyExchange
from squeak.proxy.hops import fetch_through_hierarchy
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState
from squeak.proxy.validate import DiscardBody, answer_failed_validation, answer_validation
from squeak.proxy.xcache import X_CACHE_FIELDS

__all__ = ["BodyRelay", "MissHandler", "answer_upstream_failure"]

#: Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT_STATUSES = frozenset({204, 304})

#: HTTP-version bytes of the common (protocol, major, minor) triples.
_HTTP_VERSIONS = {(b"HTTP", 1, 1): b"HTTP/1.1", (b"HTTP", 1, 0): b"HTTP/1.0"}

_log = Logger()


def answer_upstream_failure(
    exchange: ProxyExchange, reason: Failure | BaseException, answer: Answer = Answer.ORIGIN
) -> None:
    """
    The origin could not be reached or answered badly: log it, and answer
    with the failure's page (a refusal by the rules at connection time,
    L{Gatekeeper.peer_check}, is a refusal, not a miss).

    @param answer: What the failure answers, for the log: C{ORIGIN} for a
        miss, C{REFRESH_FAILED} for a validation.
    """
    if exchange.disconnected:
        return
    error = error_for_failure(reason)
    exchange.answer = Answer.DENIED if isinstance(error, AccessDeniedError) else answer
    _log.info(
        "upstream failure for {url}: {name} {detail}",
        url=exchange.uri.decode("latin-1"),
        name=error.name,
        detail=error.detail,
    )
    exchange.send_error(error)


class MissHandler:
    """
    Fetches one request from the origin and relays (and perhaps stores)
    the answer; or validates a stored entry with it.
    """

    __slots__ = (
        "_context",
        "_exchange",
        "_overdue",
        "_pending",
        "_read_timed_out",
        "_relay",
        "_request_time",
        "_sent",
        "_storer",
        "_timing_answer",
        "_transient",
        "_validating",
    )

    def __init__(
        self,
        exchange: ProxyExchange,
        context: ProxyContext,
        *,
        validating: bool = False,
        transient: Transient | None = None,
    ) -> None:
        """
        @param validating: Whether the request validates the stored entry
            its lookup found (RFC 9111 §4.3.1).
        @param transient: The fetch this request leads, that identical
            requests wait for (collapsed forwarding).
        """
        self._exchange = exchange
        self._context = context
        self._validating = validating
        self._transient = transient
        self._storer: ResponseStorer | None = None
        self._relay: BodyRelay | None = None
        self._pending: PendingRequest | defer.Deferred[Any] | None = None
        self._request_time = 0.0
        self._timing_answer = False
        self._read_timed_out = False
        self._overdue: float | None = None
        #: The target and Max-Forwards fetched, for a retry (RFC 9111 §4.3.4).
        self._sent: tuple[Target, int | None] | None = None

    def fetch(self, target: Target, max_forwards: int | None) -> None:
        """
        Send the request upstream (as a validation if validating), with the
        spooled body from its start.
        """
        exchange = self._exchange
        context = self._context
        self._sent = (target, max_forwards)
        outgoing = exchange.outgoing_headers(target, max_forwards)
        lookup = exchange.lookup
        if self._validating and lookup is not None and lookup.hit is not None:
            outgoing = context.cache.validation_headers(outgoing, lookup)
        body = exchange.body
        if body is not None:
            body.seek(0)
        timeouts = context.config.timeouts
        exchange.state = ExchangeState.FETCHING
        exchange.hierarchy = "HIER_DIRECT"
        exchange.peer = target.host
        self._request_time = context.reactor.seconds()
        # A shared deadline sweep, not a timer (let alone Deferred.addTimeout)
        # per request: this runs on every miss (squeak/net/deadlines.py).
        # Set before sending: a request may fail at once (a refused peer).
        timeout = timeouts.connect + timeouts.read
        self._timing_answer = True
        context.deadlines.set(self, timeout, self._no_answer_in_time, timeout)
        # RFC 9110 §15.2: never to an HTTP/1.0 client.
        on_interim = self._interim if exchange.version == b"HTTP/1.1" else None
        parents = context.parents
        if parents is not None and exchange.through_hierarchy:
            # A cache hierarchy: parents and/or direct (squeak/proxy/hops.py).
            answer = fetch_through_hierarchy(
                exchange,
                context,
                parents,
                target,
                outgoing,
                body,
                check_peer=exchange.peer_check(),
                on_interim=on_interim,
            )
        elif type(exchange).request_upstream is ProxyExchange.request_upstream:
            # The proxy's own fetch from the target's origin, as
            # ProxyExchange.request_upstream sends it but with no Deferred:
            # the answer comes to response_received or request_failed
            # (about 2 µs less per miss, docs/performance.md).
            pending = context.upstream.send_request(
                exchange.method,
                target,
                outgoing,
                body,
                self,
                check_peer=exchange.peer_check(),
                on_interim=on_interim,
            )
            if not pending.done:
                self._pending = pending
            return
        else:
            # An accelerated request (its own pools, squeak/proxy/accel.py).
            answer = exchange.request_upstream(
                exchange.method,
                target,
                outgoing,
                body,
                check_peer=exchange.peer_check(),
                on_interim=on_interim,
            )
        self._pending = answer
        answer.addCallbacks(self.response_received, self.request_failed)

    def response_received(self, response: UpstreamResponse) -> None:
        """
        The origin's response head is in (L{ResponseReceiver}, or the
        hierarchy's L{Deferred}); a bug in handling it answers 500.
        """
        try:
            self._got_response(response)
        except Exception as error:
            self._exchange.internal_error(failure_of(error))

    def request_failed(self, reason: Failure) -> None:
        """
        No response from the origin (L{ResponseReceiver}, or the
        hierarchy's L{Deferred}).
        """
        try:
            self._upstream_failed(reason)
        except Exception as error:
            self._exchange.internal_error(failure_of(error))

    def _interim(self, code: int, reason: bytes, fields: RawHeaders) -> None:
        """
        Relay an interim response (102 Processing, 103 Early Hints with its
        C{Link} fields, a 100 Continue the channel did not send itself) to
        the HTTP/1.1 client as it arrives, ahead of the final one (RFC 9110
        §15.2: "A proxy MUST forward 1xx responses"), hop-by-hop fields
        removed as from a final response.  It is never stored: the cache
        sees only the final response.
        """
        exchange = self._exchange
        config = self._context.config
        exchange.send_interim(
            code,
            reason,
            downstream_response_headers(
                fields,
                visible_hostname=config.proxy.visible_hostname,
                via=config.proxy.via,
                response_version=b"HTTP/1.1",
            ),
        )

    def _no_answer_in_time(self, timeout: float) -> None:
        """
        The origin did not answer (connect plus read timeout): give up on
        it; L{_upstream_failed} answers 504.
        """
        self._timing_answer = False
        self._overdue = timeout
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _stop_timing_answer(self) -> None:
        if self._timing_answer:
            self._timing_answer = False
            self._context.deadlines.cancel(self)

    def _end_transient(self, stored: bool) -> None:
        if self._transient is not None:
            transient, self._transient = self._transient, None
            transient.finish(complete=stored)

    def _upstream_failed(self, reason: Failure) -> None:
        self._pending = None
        self._stop_timing_answer()
        failure: Failure | BaseException = reason
        if self._overdue is not None and isinstance(reason.value, defer.CancelledError):
            failure = ProxyError(
                "ERR_READ_TIMEOUT", 504, f"no response from the origin within {self._overdue:g}s"
            )
        self._end_transient(False)
        if error_for_failure(failure).name == "ERR_DNS_FAIL":
            # No connection was tried: Squid logs HIER_NONE/- then.
            self._exchange.hierarchy, self._exchange.peer = "HIER_NONE", "-"
        answer: Answer | None = Answer.ORIGIN
        if self._validating:
            # Stale-if-error, when the policy allows (squeak/proxy/validate.py).
            answer = answer_failed_validation(self._exchange, self._context, reason)
        if answer is not None:
            answer_upstream_failure(self._exchange, failure, answer)

    def _got_response(self, response: UpstreamResponse) -> None:
        self._pending = None
        self._stop_timing_answer()
        exchange = self._exchange
        if response.peer and exchange.hierarchy == "HIER_DIRECT":
            exchange.peer = response.peer
        if exchange.disconnected:
            response.deliverBody(DiscardBody())
            return
        exchange.answer = Answer.ORIGIN
        context = self._context
        config = context.config
        annotated = exchange.lookup is not None
        fields = downstream_response_headers(
            response.raw_headers,
            visible_hostname=config.proxy.visible_hostname,
            via=config.proxy.via,
            response_version=_HTTP_VERSIONS.get(response.version)
            or b"HTTP/%d.%d" % (response.version[1], response.version[2]),
            # Another cache's X-Cache fields, when ours are added.
            replaced=X_CACHE_FIELDS if annotated else frozenset(),
        )
        if self._validating and answer_validation(
            exchange,
            context,
            response,
            fields,
            request_time=self._request_time,
            retry=self._retry_unconditionally if self._sent is not None else None,
        ):
            return
        try:
            self._store_or_invalidate(response, fields)
        except Exception:
            # A store that fails never fails the download (nor the requests
            # waiting for it): relay without storing.
            self._abandon_store("start")
        exchange.state = ExchangeState.RELAYING_BODY
        exchange.set_status(response.code, response.phrase)
        exchange.response_fields += fields
        if annotated:
            exchange.annotate(hit=False, replace=False)
        if exchange.method == b"HEAD":
            if response.content_length is not None:
                exchange.content_length = response.content_length
        elif response.code not in _NO_CONTENT_STATUSES and isinstance(response.length, int):
            # A known length is relayed as Content-Length, so the channel does
            # not re-chunk it and a truncation is visible to the client.
            exchange.content_length = response.length
        # The response is decided: its head goes out now (at the end of this
        # reactor turn, with any body bytes that come in it), so that an
        # origin stalling before its first body byte shows the client a
        # status and then a cut body, not an empty reply.
        exchange.send_head()
        relay = BodyRelay(self, config.timeouts.read, context.reactor, context.deadlines)
        self._relay = relay
        response.deliverBody(relay)

    def _retry_unconditionally(self) -> None:
        """
        The origin's 304 was about another response than the one stored
        (its validator selects nothing, RFC 9111 §4.3.4): send the request
        again without squeak's validators (with the client's own
        conditionals, if it sent any) and relay that answer, so that a
        client that asked no conditional question never gets a 304.
        """
        exchange = self._exchange
        assert self._sent is not None
        _log.info(
            "validation of {url} answered 304 for another response; retrying unconditionally",
            url=exchange.uri.decode("latin-1"),
        )
        retry = MissHandler(exchange, self._context)
        exchange.hand_over(retry)
        retry.fetch(*self._sent)

    def _store_or_invalidate(self, response: UpstreamResponse, fields: RawHeaders) -> None:
        """
        Start storing a cacheable response as it streams, or invalidate
        after an unsafe method (RFC 9111 §4.4).
        """
        cache = self._context.cache
        if not cache.enabled:
            return
        exchange = self._exchange
        method = exchange.method
        if invalidates_cache(method):
            uri = exchange.cache_uri or exchange.uri.decode("latin-1")
            cache.invalidate_after(method, response.code, uri, fields)
            return
        lookup = exchange.lookup
        if lookup is not None and lookup.uncacheable:
            # Known not storable a moment ago: no storability decision per
            # request (the memo expires and the URL is tried again).
            return
        facts = exchange.facts
        context = self._context
        self._storer = cache.storer(
            lookup,
            method=method,
            request_headers=exchange.received,
            status=response.code,
            reason=response.phrase,
            response_headers=exchange.fields_to_store(fields),
            length=response.length if isinstance(response.length, int) else None,
            request_time=self._request_time,
            response_time=context.reactor.seconds(),
            allowed_by_rules=facts is None or may_cache(context.gatekeeper.policy.cache, facts),
        )
        if self._storer is None:
            if lookup is not None and method == b"GET":
                cache.note_uncacheable(lookup.primary, context.reactor.seconds())
            self._end_transient(False)

    def _abandon_store(self, step: str) -> None:
        """
        Storing the response raised (a bug, or a store fault nothing below
        absorbed): log it, drop what was written, remember the URL as not
        storable for a while, and release the requests waiting for this
        fetch, which fetch for themselves.  The download goes on.

        Called from an C{except} block, whose exception is logged.

        @param step: What raised: C{"start"} (deciding to store, or
            invalidating), C{"write"} or C{"commit"}.
        """
        exchange = self._exchange
        _log.failure(
            "storing {url} failed ({step}); not caching it, the download goes on",
            url=exchange.uri.decode("latin-1"),
            step=step,
        )
        storer, self._storer = self._storer, None
        if storer is not None:
            try:
                storer.finish(complete=False)
            except Exception:
                _log.failure(
                    "dropping the entry for {url} failed", url=exchange.uri.decode("latin-1")
                )
        lookup = exchange.lookup
        if lookup is not None:
            # Before the waiters are released: they then fetch at once,
            # side by side, rather than queue for another store attempt.
            self._context.cache.note_uncacheable(lookup.primary, self._context.reactor.seconds())
        self._end_transient(False)

    # What the BodyRelay drives.

    def register_producer(self, producer: Any, streaming: bool) -> None:
        """
        Let the client connection pause the relay (backpressure).
        """
        self._exchange.register_producer(producer, streaming)

    def write(self, data: bytes) -> None:
        """
        Relay body bytes to the client, teed into the entry being stored.
        """
        storer = self._storer
        if storer is not None and data:
            try:
                storer.data(data)
            except Exception:
                self._abandon_store("write")
        self._exchange.write(data)

    def note_read_timeout(self) -> None:
        """
        The relay stopped an origin that went silent mid-body.
        """
        self._read_timed_out = True

    def body_ended(self, reason: Failure) -> None:
        """
        The upstream body ended: finish cleanly only when it is known to be
        complete; otherwise abort the client connection.
        """
        # The relay is done: let go of it, so that this handler and its
        # relay (which refers back to it) are freed by reference counting
        # rather than left for the cyclic garbage collector.
        self._relay = None
        stored = False
        storer = self._storer
        if storer is not None:
            # Only a body known to be complete is committed; a close-delimited
            # one (BodyEndedByClose) might have been cut short.
            try:
                stored = storer.finish(complete=isinstance(reason.value, BodyComplete))
            except Exception:
                self._abandon_store("commit")
            self._storer = None
        self._end_transient(stored)
        exchange = self._exchange
        if exchange.disconnected or exchange.finished:
            return
        exchange.unregister_producer()
        if isinstance(reason.value, BodyEnded):
            exchange.finish()
            return
        exchange.body_cut = True
        why = (
            f"no data from the origin for {self._context.config.timeouts.read:g}s"
            if self._read_timed_out
            else error_for_failure(reason).detail
        )
        expected = "" if exchange.content_length is None else f" of {exchange.content_length}"
        _log.info(
            "origin response for {url} ended after {sent}{expected} body bytes ({why}); "
            "closing the client connection",
            url=exchange.uri.decode("latin-1"),
            sent=exchange.sent_length,
            expected=expected,
            why=why,
        )
        exchange.abort_client()

    def ended(self, reason: Failure | None) -> None:
        """
        The exchange is over; if the client left, stop the upstream work.
        """
        self._stop_timing_answer()
        if reason is not None:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                pending.cancel()
            if self._relay is not None and not self._relay.done:
                self._relay.stopProducing()


class BodyRelay:
    """
    Copies one upstream response body to the client, with backpressure and a
    read timeout.

    It is both the L{IProtocol} given to C{response.deliverBody} and the
    L{IPushProducer} registered with the client response.  It forwards pause
    and resume to the upstream transport, and it suspends the read timeout
    while paused: an origin is not to blame for a slow client.

    @ivar done: Whether the body ended.
    """

    __slots__ = ("_deadlines", "_paused", "_read_timeout", "_request", "done", "transport")

    #: Bodies of at most this many bytes (known in advance) are relayed
    #: without registering as the client connection's producer.
    SMALL_BODY = 65536

    def __init__(
        self,
        request: MissHandler,
        read_timeout: float,
        reactor: Any,
        deadlines: Deadlines | None = None,
    ) -> None:
        """
        @param request: What the body goes to (L{MissHandler}: C{write},
            C{register_producer}, C{body_ended}, C{note_read_timeout}).
        @param deadlines: Where the read timeout is kept (the proxy's,
            shared by every relay); by default the relay's own.
        """
        self._request = request
        self._read_timeout = read_timeout
        if deadlines is None:
            deadlines = Deadlines(reactor, deadline_resolution(read_timeout))
        self._deadlines = deadlines
        self._paused = False
        self.transport: Any = None
        self.done = False

    # IProtocol, driven by the upstream response
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        length = getattr(self.transport, "length", None)
        if not (isinstance(length, int) and length <= self.SMALL_BODY):
            # A body of unknown length, or a large one: let the client's
            # connection pause the origin as its buffer fills.  A small one
            # cannot fill it (and the request stops the relay itself if the
            # client leaves), so most small misses skip the bookkeeping.
            self._request.register_producer(self, True)
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        self._arm()
        self._request.write(data)

    def connectionLost(self, reason: Failure) -> None:
        self.done = True
        self._disarm()
        self._request.body_ended(reason)

    # IPushProducer, driven by the client channel
    def pauseProducing(self) -> None:
        self._paused = True
        self._disarm()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resumeProducing()
        if not self.done:
            self._arm()

    def stopProducing(self) -> None:
        """
        The client went away: stop reading from the origin.  Losing the
        upstream connection keeps a half-read response out of the pool.
        """
        self._disarm()
        if self.transport is not None and not self.done:
            self.transport.stopProducing()

    def _arm(self) -> None:
        if self._paused or self.done:
            return
        self._deadlines.set(self, self._read_timeout, self._timed_out)

    def _disarm(self) -> None:
        self._deadlines.cancel(self)

    def _timed_out(self) -> None:
        self._request.note_read_timeout()
        if self.transport is not None:
            self.transport.stopProducing()
