# -*- test-case-name: tests.test_cache_facade -*-
"""
The proxy's use of its HTTP cache: what to look up, what to serve, what to
store and what to invalidate, gluing the pure RFC 9111 policy
(L{squeak.cache.policy}) to the store (L{squeak.cache.store}).

The proxy's request code calls, in order:
  1. L{HttpCache.lookup} before forwarding a GET or HEAD: a decision (fresh,
     stale-but-servable, validate, miss) and the stored entry, if any;
  2. L{HttpCache.storer} when a response head arrives: a L{ResponseStorer}
     that receives the body as it streams to the client and commits the entry
     only if the body completed with the promised length;
  3. L{HttpCache.invalidate_after} for responses to unsafe methods.

Stored headers are the client-facing ones (hop-by-hop fields already gone,
this proxy's Via already added) minus framing and C{X-Cache}; a hit adds
C{Age}, C{X-Cache} and its own framing.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from squeak.cache.keys import primary_key, secondary_key, vary_fields
from squeak.cache.policy import (
    CacheRequest,
    FreshnessRules,
    Reuse,
    ReuseDecision,
    StoredResponse,
    decide_reuse,
    invalidation_targets,
    is_storable,
)
from squeak.cache.store import CacheHit, EntryWriter, Store
from squeak.http.fields import RawHeaders

#: Fields never stored with a response: framing (recomputed when serving)
#: and this proxy's own per-response annotations.
_NOT_STORED = frozenset(
    {b"content-length", b"transfer-encoding", b"x-cache", b"x-cache-lookup", b"age"}
)

#: Methods whose responses may be served from or stored into the cache.
CACHEABLE_METHODS = frozenset({b"GET", b"HEAD"})


@dataclass
class CacheLookup:
    """
    The result of looking a request up.

    @ivar primary: The primary cache key (GET and HEAD share it).
    @ivar decision: What the policy says to do with the stored entry.
    @ivar hit: The stored entry, if one was selected (Vary included).
    """

    primary: str
    uri: str
    request: CacheRequest
    decision: ReuseDecision
    hit: CacheHit | None
    #: Skipped: this key's recent responses could not be stored.
    uncacheable: bool = False

    def release(self) -> None:
        """
        Close the stored body if it will not be served.
        """
        if self.hit is not None:
            self.hit.close()


class ResponseStorer:
    """
    Tees one response body into the store and commits it only when the body
    ended cleanly with the length that was promised (or, for a body of
    unknown length, with what was received when the origin signalled a clean
    end).
    """

    _log = Logger()

    def __init__(self, writer: EntryWriter, expected_length: int | None, uri: str) -> None:
        self._writer = writer
        self._expected = expected_length
        self._uri = uri
        self.done = False
        self.stored = False

    def data(self, chunk: bytes) -> None:
        if not self.done:
            self._writer.write(chunk)

    def finish(self, complete: bool) -> bool:
        """
        The body ended: commit when complete, else drop the part.

        @param complete: Whether the origin's body ended unambiguously
            (Twisted's C{ResponseDone}); anything else is truncation.
        @return: Whether the entry was stored.
        """
        if self.done:
            return self.stored
        self.done = True
        if not complete:
            self._writer.abort()
            self._log.info("not caching {uri}: body cut short", uri=self._uri)
            return False
        length = self._expected if self._expected is not None else self._writer.written
        self.stored = self._writer.commit(length)
        if not self.stored and self._writer.failed:
            self._log.debug("not caching {uri}: {why}", uri=self._uri, why=self._writer.failed)
        return self.stored


class HttpCache:
    """
    The shared HTTP cache as the proxy sees it.

    @ivar store: The memory and disk tiers (L{None} when caching is off).
    """

    #: How long a URL whose response could not be stored skips the cache:
    #: no disk lookup and no collapsed forwarding for it (Squid collapses
    #: only what it can share, too).
    uncacheable_ttl = 30.0
    #: The most URLs remembered as uncacheable.
    uncacheable_limit = 10_000

    def __init__(self, store: Store | None, rules: FreshnessRules) -> None:
        self.store = store
        self.rules = rules
        self._uncacheable: dict[str, float] = {}

    def is_known_uncacheable(self, primary: str, now: float) -> bool:
        """
        Whether a recent response for this key could not be stored.
        """
        until = self._uncacheable.get(primary)
        if until is None:
            return False
        if until < now:
            del self._uncacheable[primary]
            return False
        return True

    def note_uncacheable(self, primary: str, now: float) -> None:
        """
        Remember that this key's response could not be stored, so the next
        requests for it skip the lookup and do not queue behind each other.
        """
        if len(self._uncacheable) >= self.uncacheable_limit:
            self._uncacheable.pop(next(iter(self._uncacheable)))
        self._uncacheable[primary] = now + self.uncacheable_ttl

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def lookup(
        self,
        method: bytes,
        uri: str,
        headers: RawHeaders,
        client: str,
        now: float,
        names: frozenset[bytes] | None = None,
    ) -> CacheLookup | None:
        """
        Look a GET or HEAD up; L{None} for other methods or with the cache
        off.

        @param names: The lower-cased names of C{headers}, if known.
        """
        if self.store is None or method not in CACHEABLE_METHODS:
            return None
        primary = primary_key(method, uri)
        request = CacheRequest(method, uri, tuple(headers), client, names)
        if self.is_known_uncacheable(primary, now):
            decision = ReuseDecision(Reuse.MISS, "a recent response could not be stored")
            return CacheLookup(primary, uri, request, decision, None, uncacheable=True)
        hit = self.store.lookup(primary, headers)
        decision = decide_reuse(request, hit.meta if hit else None, now, rules=self.rules)
        if hit is not None and decision.kind is Reuse.MISS:
            hit.close()
            hit = None
        return CacheLookup(primary, uri, request, decision, hit)

    def storer(
        self,
        lookup: CacheLookup | None,
        *,
        method: bytes,
        request_headers: RawHeaders,
        status: int,
        reason: bytes,
        response_headers: RawHeaders,
        length: int | None,
        request_time: float,
        response_time: float,
        client: str,
        allowed_by_rules: bool,
    ) -> ResponseStorer | None:
        """
        A storer for this response if the policy, the size limits and the
        C{cache} rules allow storing it; else L{None}.
        """
        if self.store is None or lookup is None or method != b"GET" or not allowed_by_rules:
            return None
        decision = is_storable(method, request_headers, status, response_headers)
        if not decision.store or not self.store.may_store_length(length):
            return None
        vary_key = secondary_key(vary_fields(response_headers), request_headers)
        if vary_key is None:
            # Vary: * never matches a later request (RFC 9111 §4.1): storing
            # it would only take space.
            return None
        headers = tuple(
            (name, value)
            for name, value in response_headers
            if name.lower() not in _NOT_STORED and name.lower() not in decision.strip_fields
        )
        meta = StoredResponse(
            uri=lookup.uri,
            status=status,
            reason=reason,
            headers=headers,
            request_time=request_time,
            response_time=response_time,
            vary_key=vary_key,
            client=client if decision.private_to_client else None,
        )
        writer = self.store.writer(lookup.primary, meta)
        return ResponseStorer(writer, length, lookup.uri)

    def invalidate_after(
        self, method: bytes, status: int, uri: str, response_headers: RawHeaders
    ) -> list[str]:
        """
        RFC 9111 §4.4: a successful unsafe request invalidates its URI and
        same-origin Location / Content-Location.
        """
        if self.store is None:
            return []
        targets = invalidation_targets(method, status, uri, response_headers)
        for target in targets:
            self.store.invalidate(target)
        return targets

    def freshen(self, lookup: CacheLookup, meta: StoredResponse) -> None:
        """
        Replace the stored metadata after a 304 (RFC 9111 §4.3.4).
        """
        if self.store is not None:
            self.store.update(lookup.primary, meta)

    def purge(self, uri: str) -> bool:
        """
        Remove every stored variant of C{uri}.
        """
        return self.store.purge(uri) if self.store is not None else False

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


__all__ = ["CACHEABLE_METHODS", "CacheLookup", "HttpCache", "ResponseStorer"]
