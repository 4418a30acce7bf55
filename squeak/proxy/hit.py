# -*- test-case-name: tests.test_proxy_hit -*-
"""
Answers from a stored entry: the stored status, fields (with C{Age}) and
body; 304 to a client's conditional request that the entry satisfies
(RFC 9111 §4.3.2); 206 or 416 to a Range request (RFC 9110 §14).

Every decision is the cache's (L{squeak.cache.facade}); this module writes
the answer.  The common hit is the fast path: the entry's fields and ours
are serialised once per entry (L{HttpCache.served_heads}), and only C{Age}
is new per request; a small body from the memory tier is one write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from squeak.cache.facade import CacheHit, RangeKind, RangePlan, ShortReadError, StoredResponse
from squeak.http.fields import first_value
from squeak.net.channel import serialise_fields
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState
from squeak.proxy.xcache import X_CACHE_FIELDS

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["HitHandler", "StoredBodySender"]

#: Request fields that make a request conditional (RFC 9110 §13.1).
_CONDITIONAL_FIELDS = frozenset({b"if-none-match", b"if-modified-since"})

#: Request fields that take a hit off the fast path (a conditional or a
#: Range request): one set test per hit finds that none is there.
_SLOW_PATH_FIELDS = _CONDITIONAL_FIELDS | {b"range"}

#: Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT_STATUSES = frozenset({204, 304})


class HitHandler:
    """
    Serves one request from a stored entry.
    """

    __slots__ = ("_context", "_exchange")

    def __init__(self, exchange: ProxyExchange, context: ProxyContext) -> None:
        self._exchange = exchange
        self._context = context

    def serve(self, hit: CacheHit, meta: StoredResponse, answer: Answer) -> None:
        """
        Answer from a stored response: 304 to a matching conditional
        request, else the stored status, headers (with Age) and body.

        @param meta: The entry's metadata as served: C{hit.meta}, or its
            freshened form after a validation.
        @param answer: Why it is served (a hit, a validated entry, a stale
            one after an error), for the log.
        """
        exchange = self._exchange
        context = self._context
        cache = context.cache
        exchange.state = ExchangeState.SERVING
        # The hierarchy note stays: a hit is logged HIER_NONE/- (logtag's
        # hierarchy_note), a validated or stale-on-error entry HIER_DIRECT
        # with the origin its validation went to, as Squid logs them.
        exchange.answer = answer
        lookup = exchange.lookup
        decision = cache.reuse_decision(lookup, meta, context.reactor.seconds)
        names = exchange.field_names
        if decision is None or not names.isdisjoint(_SLOW_PATH_FIELDS):
            conditional = not names.isdisjoint(_CONDITIONAL_FIELDS)
            headers = cache.headers_for_reuse(meta, decision, X_CACHE_FIELDS)
            if conditional and cache.client_conditional_met(
                exchange.received, headers, method=exchange.method, status=meta.status
            ):
                hit.close()
                exchange.client_conditional_met = True
                exchange.set_status(304)
                for name, value in cache.not_modified_headers(headers):
                    exchange.add_field(name, value)
                exchange.annotate(hit=True, replace=False)
                exchange.finish()
                return
            if b"range" in names:
                plan = cache.plan_range(
                    exchange.method, exchange.received, meta.status, headers, meta.body_length
                )
                if plan.kind is not RangeKind.FULL:
                    self._serve_ranges(hit, plan)
                    return
            exchange.set_status(meta.status, meta.reason)
            exchange.response_fields += headers
            exchange.annotate(hit=True, replace=False)
        else:
            # The common hit: the stored fields and ours, serialised once
            # per entry; only Age is new.
            exchange.set_status(meta.status, meta.reason)
            # A decision implies a lookup; X-Cache-Lookup says whether it
            # found an entry.
            found = lookup is not None and lookup.hit is not None
            key = (decision.strip_fields, context.config.proxy.visible_hostname, found)
            served = cache.served_heads.get(meta, key)
            if served is None:
                fields = [
                    *cache.stored_fields_for_reuse(meta, decision, X_CACHE_FIELDS),
                    *exchange.x_cache_fields(hit=True),
                ]
                served = (serialise_fields(fields), first_value(fields, b"content-type"))
                cache.served_heads.put(meta, key, served)
            exchange.field_block, exchange.content_type = served
            exchange.response_fields.append((b"Age", cache.age_value(decision.age)))
        no_content = meta.status in _NO_CONTENT_STATUSES
        if not no_content:
            exchange.content_length = meta.body_length
        if no_content or exchange.method == b"HEAD":
            # finish() writes the head when no body was written.
            hit.close()
            exchange.finish()
            return
        body = hit.body
        if body is not None and len(body) <= StoredBodySender.CHUNK:
            # A small memory hit: one write, no producer.
            exchange.write(body)
            exchange.finish()
            return
        StoredBodySender(exchange, hit, hit.chunks(StoredBodySender.CHUNK)).start()

    def _serve_ranges(self, hit: CacheHit, plan: RangePlan) -> None:
        """
        RFC 9110 §14: a Range request answered from a fully stored
        response: 206 with one range or multipart/byteranges, or 416.
        """
        exchange = self._exchange
        exchange.set_status(plan.status)
        for name, value in plan.headers:
            exchange.add_field(name, value)
        exchange.annotate(hit=True)
        if plan.kind is RangeKind.UNSATISFIABLE or exchange.method == b"HEAD":
            hit.close()
            exchange.finish()
            return
        pieces = self._context.cache.range_body(plan, hit, StoredBodySender.CHUNK)
        StoredBodySender(exchange, hit, pieces).start()


class StoredBodySender:
    """
    Streams a stored body to the client as a push producer: reads a chunk
    whenever the client connection can take more, so a large disk hit is
    never read whole into memory.
    """

    __slots__ = ("_chunks", "_done", "_exchange", "_hit", "_paused")

    CHUNK = 64 * 1024

    def __init__(self, exchange: ProxyExchange, hit: CacheHit, pieces: Iterator[bytes]) -> None:
        self._exchange = exchange
        self._hit = hit
        self._chunks = pieces
        self._paused = False
        self._done = False

    def start(self) -> None:
        self._exchange.register_producer(self, True)
        self._exchange.notify_finish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and not self._done:
            try:
                chunk = next(self._chunks, None)
            except ShortReadError:
                # The stored body is shorter than its metadata says: never
                # finish a response that cannot be whole.
                self.stopProducing()
                self._exchange.abort_client()
                return
            if chunk is None:
                self._finish()
                return
            self._exchange.write(chunk)

    def stopProducing(self) -> None:
        if not self._done:
            self._done = True
            self._hit.close()

    def _finish(self) -> None:
        self._done = True
        self._hit.close()
        exchange = self._exchange
        exchange.unregister_producer()
        if not exchange.disconnected and not exchange.finished:
            exchange.finish()
