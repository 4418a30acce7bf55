# -*- test-case-name: tests.test_cache_facade -*-
"""
The cache's one door: everything outside L{squeak.cache} reaches the pure
RFC 9111 policy (L{squeak.cache.policy}, L{squeak.cache.ranges}) and the
store (L{squeak.cache.store}) through L{HttpCache} and the names this module
exports, as Squid's C{store/Controller} is the one door to its tiers.

The proxy's handlers call:
  1. L{HttpCache.lookup} before forwarding a GET or HEAD: a decision (fresh,
     stale-but-servable, validate, miss) and the stored entry, if any; and
     L{HttpCache.join_fetch} to wait for an identical fetch in flight
     (collapsed forwarding);
  2. to serve an entry: L{HttpCache.reuse_decision},
     L{HttpCache.headers_for_reuse} (or the fast path's
     L{HttpCache.stored_fields_for_reuse} and L{HttpCache.served_heads}),
     L{HttpCache.client_conditional_met} and
     L{HttpCache.not_modified_headers} (304), L{HttpCache.plan_range} and
     L{HttpCache.range_body} (206/416);
  3. to validate one: L{HttpCache.validation_headers},
     L{HttpCache.validation_verdict} and L{HttpCache.freshen}; and
     L{HttpCache.stale_on_failure} when the origin cannot be reached;
  4. L{HttpCache.storer} when a response head arrives: a L{ResponseStorer}
     that receives the body as it streams to the client and commits the entry
     only if the body completed with the promised length;
  5. L{HttpCache.invalidate_after} for responses to unsafe methods, and
     L{HttpCache.purge} (or L{purge_stored} from the command line).

Stored headers are the client-facing ones (hop-by-hop fields already gone,
this proxy's Via already added) minus framing, C{X-Cache} and
C{Set-Cookie} (never replayed to another client); the origin's C{Age} is
kept, as the C{age_value} of the entry's current age (RFC 9111 §4.2.3).
A hit replaces that C{Age} with the current age and adds C{X-Cache} and
its own framing.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from twisted.logger import Logger

from squeak.cache.directives import CACHE_VIEW_FIELD
from squeak.cache.disk import STORE_ERRORS, DiskTier
from squeak.cache.inventory import StoredVariant, describe_variants
from squeak.cache.keys import primary_key, secondary_key, vary_fields
from squeak.cache.policy import (
    DEFAULT_MAX_STALE,
    CacheRequest,
    FreshnessRules,
    Reuse,
    ReuseDecision,
    StaleOnFailure,
    StoredResponse,
    age_header_value,
    decide_reuse,
    headers_for_reuse,
    stale_on_failure,
    stored_fields_for_reuse,
)
from squeak.cache.ranges import (
    RangeKind,
    RangePlan,
    ShortReadError,
    file_reader,
    iter_body,
    plan_range_response,
)
from squeak.cache.sharedfetch import INFLIGHT, CallLater, RemoteWait
from squeak.cache.store import CacheHit, EntryWriter, Store, Transient
from squeak.cache.storing import UNSTORED_FIELDS, is_storable
from squeak.cache.validation import (
    Validation,
    ValidationDecision,
    answer_client_conditional,
    freshen_stored,
    handle_validation_response,
    invalidation_targets,
    not_modified_headers,
    validation_request_headers,
)
from squeak.http.fields import RawHeaders

if TYPE_CHECKING:
    from squeak.config import CacheConfig

#: Fields never stored with a response: framing (recomputed when serving),
#: this proxy's own per-response annotations, and C{Set-Cookie}
#: (L{UNSTORED_FIELDS}).  C{Age} is stored: it is the C{age_value} of the
#: current age (RFC 9111 §4.2.3), and a hit sends its own C{Age}.
_NOT_STORED = (
    frozenset({b"content-length", b"transfer-encoding", b"x-cache", b"x-cache-lookup"})
    | UNSTORED_FIELDS
)

#: Methods whose responses may be served from or stored into the cache.
CACHEABLE_METHODS = frozenset({b"GET", b"HEAD"})

#: Seconds the command line's purge and the start-up sweep may wait for the
#: index's lock (no reactor is waiting on them, unlike a worker's calls).
PURGE_LOCK_TIMEOUT = 10.0

_V = TypeVar("_V")


class EntryMemo(Generic[_V]):
    """
    Values derived from a stored entry alone (the proxy's serialised head
    of a hit), remembered for as long as that entry object lives.

    Keyed by the entry's identity, not its value: hashing a stored
    response's fields on every hit would cost what the memo saves.  A weak
    reference drops the memo with the entry, so a freshened entry (a new
    L{StoredResponse}) starts afresh and an evicted one takes its memo
    along.
    """

    __slots__ = ("_by_entry",)

    def __init__(self) -> None:
        self._by_entry: dict[int, tuple[weakref.ref[StoredResponse], dict[Hashable, _V]]] = {}

    def get(self, entry: StoredResponse, key: Hashable) -> _V | None:
        """
        The value remembered for C{entry} under C{key}, if any.
        """
        found = self._by_entry.get(id(entry))
        if found is None or found[0]() is not entry:
            return None
        return found[1].get(key)

    def put(self, entry: StoredResponse, key: Hashable, value: _V) -> None:
        """
        Remember C{value} for C{entry} under C{key}.
        """
        ident = id(entry)
        by_entry = self._by_entry
        found = by_entry.get(ident)
        if found is None or found[0]() is not entry:

            def forget(ref: weakref.ref[StoredResponse]) -> None:
                # The entry was freed: its values go too (unless the id was
                # reused by a newer entry already).
                current = by_entry.get(ident)
                if current is not None and current[0] is ref:
                    del by_entry[ident]

            found = (weakref.ref(entry, forget), {})
            by_entry[ident] = found
        found[1][key] = value

    def __len__(self) -> int:
        return len(self._by_entry)


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
            (L{squeak.errors.BodyComplete}); anything else is truncation.
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

    def __init__(
        self, store: Store | None, rules: FreshnessRules, max_stale: float = DEFAULT_MAX_STALE
    ) -> None:
        """
        @param max_stale: The most seconds an entry may be stale to be
            served when its origin fails (C{[cache] max_stale}).
        """
        self.store = store
        self.rules = rules
        self.max_stale = max_stale
        self._uncacheable: dict[str, float] = {}
        #: The serialised heads of entries served (the proxy's hit fast
        #: path), one per entry for as long as it lives.
        self.served_heads: EntryMemo[tuple[bytes, bytes | None]] = EntryMemo()

    @classmethod
    def from_config(cls, config: CacheConfig) -> HttpCache:
        """
        The cache C{[cache]} describes: its store when enabled, none
        (every lookup a miss, nothing stored) when not.
        """
        store = Store.from_config(config) if config.enabled else None
        return cls(store, FreshnessRules.from_config(config), config.max_stale)

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
        if primary in self._uncacheable and self.is_known_uncacheable(primary, now):
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

    def purge(self, uri: str) -> bool:
        """
        Remove every stored variant of C{uri}, and release a fetch of it
        still in flight (its waiters go on rather than wait for a leader
        that may never report; L{squeak.cache.store.CollapsedForwarding.release}).

        @return: Whether anything was removed (or released).
        """
        if self.store is None:
            return False
        primary = primary_key(b"GET", uri)
        if self.store.markers is not None:
            self.store.markers.clear(primary)  # another worker's, stuck or not
        released = self.store.inflight.release(primary)
        return self.store.purge(uri) or released

    def stored_variants(self, uri: str, now: float) -> list[StoredVariant]:
        """
        What the cache holds for a URI, per Vary variant, described for the
        manager's C{objects} page (L{squeak.cache.inventory}).
        """
        if self.store is None:
            return []
        return describe_variants(self.store.variants(uri), now, self.rules)

    def figures(self, *, disk: bool = True) -> dict[str, dict[str, int]]:
        """
        The tiers' objects, bytes and limits (L{Store.figures}); empty with
        the cache off.
        """
        return {} if self.store is None else self.store.figures(disk=disk)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    # -- collapsed forwarding ------------------------------------------------

    def join_fetch(
        self, lookup: CacheLookup, call_later: CallLater | None = None
    ) -> tuple[Transient, bool] | None:
        """
        Join the fetch in flight for C{lookup}'s key, or lead a new one
        (collapsed forwarding: identical misses wait for one fetch), in
        this worker and, through the shared cache directory, in the others
        (L{squeak.cache.sharedfetch}): when another worker leads, this
        worker's requests wait (polled on C{call_later}'s timer, bounded)
        and then look in the cache.

        @param call_later: Schedules the polls (C{reactor.callLater});
            without it, collapsing stays within this worker.
        @return: The fetch and whether this request leads it (and must
            L{Transient.finish} it); L{None} with the cache off.
        """
        store = self.store
        if store is None:
            return None
        primary = lookup.primary
        transient, leader = store.inflight.join(primary)
        markers = store.markers
        if not leader or markers is None or call_later is None:
            return transient, leader
        holder = markers.claim(primary)
        if holder is None:
            transient.on_finished(lambda complete: markers.release(primary))
            return transient, True
        wait = RemoteWait(
            markers,
            primary,
            lambda: transient.finish(complete=False),
            lambda: transient.done,
            call_later,
            holder[1],
        )
        wait.start()
        return transient, False

    # -- serving an entry ----------------------------------------------------

    def reuse_decision(
        self, lookup: CacheLookup | None, meta: StoredResponse, clock: Callable[[], float]
    ) -> ReuseDecision | None:
        """
        How C{meta} is reused for C{lookup}'s request: the decision the
        lookup made a moment ago when C{meta} is the entry it found, a new
        one for a freshened entry; L{None} without a lookup.

        @param clock: Gives the current time (C{reactor.seconds}), read only
            when a new decision is made: a plain hit does not need it.
        """
        if lookup is None:
            return None
        hit = lookup.hit
        if hit is not None and meta is hit.meta:
            return lookup.decision
        return decide_reuse(lookup.request, meta, clock(), rules=self.rules)

    def headers_for_reuse(
        self, meta: StoredResponse, decision: ReuseDecision | None, replaced: frozenset[bytes]
    ) -> RawHeaders:
        """
        The fields a served entry goes out with (RFC 9111 §4, with C{Age},
        §5.1), without those named in C{replaced} (the caller's own); with
        no decision, the stored fields less C{replaced} alone.
        """
        if decision is None:
            return [
                (n, v)
                for n, v in meta.headers
                if n.lower() not in replaced and n.lower() != CACHE_VIEW_FIELD
            ]
        return headers_for_reuse(meta, decision, replaced)

    #: L{headers_for_reuse} without C{Age}: what is the same for every
    #: request the entry answers under a decision (see L{served_heads}).
    stored_fields_for_reuse = staticmethod(stored_fields_for_reuse)

    #: The C{Age} field value for a current age (RFC 9111 §5.1).  These
    #: are the pure functions themselves (no wrapper call on a hit).
    age_value = staticmethod(age_header_value)
    #: Whether the client's own conditional request is answered 304 from
    #: the served fields (RFC 9111 §4.3.2, RFC 9110 §13.1).
    client_conditional_met = staticmethod(answer_client_conditional)
    #: The fields of a 304 answered from an entry (RFC 9110 §15.4.5).
    not_modified_headers = staticmethod(not_modified_headers)
    #: How to answer a Range request from a whole stored body (RFC 9110
    #: §14): the full response, 206 with one or several ranges, or 416.
    plan_range = staticmethod(plan_range_response)

    @staticmethod
    def range_body(plan: RangePlan, hit: CacheHit, chunk_size: int) -> Iterator[bytes]:
        """
        The pieces of a planned 206 body read from the entry (from memory,
        or from its file a piece at a time).

        @raise ShortReadError: While iterating, if the stored body is shorter
            than its metadata says.
        """
        body = hit.body
        if body is not None:
            stored = body

            def read(offset: int, size: int) -> bytes:
                return stored[offset : offset + size]

            return iter_body(plan, read, chunk_size=chunk_size)
        return iter_body(plan, file_reader(hit.open()), chunk_size=chunk_size)

    # -- validation ----------------------------------------------------------

    @staticmethod
    def validation_headers(outgoing: RawHeaders, lookup: CacheLookup) -> RawHeaders:
        """
        The fields of a request validating C{lookup}'s entry on behalf of
        its client (RFC 9111 §4.3.1): the client's conditionals replaced by
        the entry's validators.
        """
        assert lookup.hit is not None
        return validation_request_headers(outgoing, lookup.hit.meta.headers)

    def validation_verdict(
        self, lookup: CacheLookup, status: int, response_headers: RawHeaders, now: float
    ) -> ValidationDecision:
        """
        What the origin's answer to a validation means (RFC 9111 §4.3.3):
        freshen, replace, retry unconditionally (§4.3.4), or serve stale
        (L{stale_on_failure}, for a 5xx).
        """
        assert lookup.hit is not None
        serve_stale = 500 <= status <= 599 and self.stale_on_failure(lookup, now).serve
        return handle_validation_response(
            lookup.hit.meta, status, response_headers, serve_stale=serve_stale
        )

    def stale_on_failure(self, lookup: CacheLookup, now: float) -> StaleOnFailure:
        """
        Whether C{lookup}'s stored entry may be served because validating
        it failed (RFC 9111 §4.2.4, §4.3.3; RFC 5861 §4), within
        C{max_stale}.
        """
        assert lookup.hit is not None
        return stale_on_failure(
            lookup.request,
            lookup.hit.meta,
            now,
            stale_if_error=lookup.decision.stale_if_error,
            max_stale=self.max_stale,
            rules=self.rules,
        )

    def freshen(
        self,
        lookup: CacheLookup,
        response_headers: Iterable[tuple[bytes, bytes]],
        *,
        request_time: float,
        response_time: float,
    ) -> StoredResponse:
        """
        A 304 freshened C{lookup}'s entry (RFC 9111 §4.3.4): store its
        updated metadata and return it, to be served.
        """
        assert lookup.hit is not None
        meta = freshen_stored(
            lookup.hit.meta,
            response_headers,
            request_time=request_time,
            response_time=response_time,
        )
        if self.store is not None:
            self.store.update(lookup.primary, meta)
        return meta


def purge_stored(config: CacheConfig, uri: str) -> bool:
    """
    Remove every stored variant of C{uri} from the cache C{config}
    describes (C{python -m squeak purge}), opening and closing its store.
    It runs beside the workers: no sweep, and it may wait longer for the
    index's lock than a worker does (it is no reactor).
    """
    store = Store.from_config(config, lock_timeout=PURGE_LOCK_TIMEOUT)
    try:
        return store.purge(uri)
    finally:
        store.close()


def share_between_processes(shared: bool) -> None:
    """
    Say whether other processes (workers) use this process's cache
    directory at the same time, for the stores opened from now on: only
    then do misses mark their fetches in flight in the directory, for
    one origin fetch per URL across the workers
    (L{squeak.cache.sharedfetch}).
    """
    Store.shared_between_processes = shared


def sweep_disk_cache(config: CacheConfig) -> int:
    """
    Delete what a crash left in the disk cache C{config} describes (part
    files no writer holds, body files no index row names), once, at
    start-up, before any other process uses the directory: the master
    before it starts its workers, the single process before it serves
    (issue 15). Workers and reloads open the cache without sweeping: a
    body another process has just renamed into place, not yet indexed,
    looks exactly like a crash's leftover.

    @return: How many files were deleted (0 with the cache off, or when
        the disk tier cannot be opened: the servers then say why, once, as
        they open it, and run on their memory tiers).
    """
    if not config.enabled:
        return 0
    try:
        disk = DiskTier(
            config.dir,
            size_limit=config.size,
            maximum_object_size=config.maximum_object_size,
            minimum_object_size=config.minimum_object_size,
            lock_timeout=PURGE_LOCK_TIMEOUT,
            sweep=True,
        )
    except STORE_ERRORS:
        return 0
    # Fetch markers a crash left: no worker exists yet to hold one.
    shutil.rmtree(os.path.join(config.dir, INFLIGHT), ignore_errors=True)
    try:
        return disk.swept
    finally:
        disk.close()


__all__ = [
    "CACHEABLE_METHODS",
    "CACHE_VIEW_FIELD",
    "CacheHit",
    "CacheLookup",
    "EntryMemo",
    "HttpCache",
    "RangeKind",
    "RangePlan",
    "ResponseStorer",
    "Reuse",
    "ReuseDecision",
    "ShortReadError",
    "StaleOnFailure",
    "StoredResponse",
    "StoredVariant",
    "Transient",
    "Validation",
    "ValidationDecision",
    "purge_stored",
    "share_between_processes",
    "sweep_disk_cache",
]
