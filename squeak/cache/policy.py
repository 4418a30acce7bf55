# -*- test-case-name: tests.test_cache_policy -*-
"""
RFC 9111 freshness, age and reuse decisions for a shared cache, as pure
functions; with L{squeak.cache.storing} (what may be stored) and
L{squeak.cache.validation} (validation, conditionals, invalidation), the
whole RFC 9111 policy.

Each function takes parsed values (method, URI, header pairs, times) and
returns a frozen decision whose C{reason} cites the section it follows, as
Squid's refresh.cc names its outcomes. The reason is meant for
C{X-Cache-Lookup}, the debug log, statistics and test assertions.

The caller (the cache's one door, squeak/cache/facade.py, for the proxy's
handlers) collects the facts, passes C{now} (and the request and response
times it measured), and acts on the decision:

  1. L{decide_reuse} for a request and the stored response the store found
     (or L{None}): serve it (C{FRESH}, C{STALE_SERVE}), validate it
     (C{VALIDATE}, with L{squeak.cache.validation.validation_request_headers}),
     or forward the request (C{MISS}); answer 504 instead of forwarding when
     L{ReuseDecision.only_if_cached} is set.
  2. After a validation, L{squeak.cache.validation.handle_validation_response}
     says whether to freshen the stored response, replace it, retry
     unconditionally or serve it stale.
  3. For a response from the origin, L{squeak.cache.storing.is_storable}
     says whether (and how) to store it.
  4. For an unsafe request, L{squeak.cache.validation.invalidation_targets}
     lists the URIs whose entries must go.

This module is pure: it imports neither Twisted nor diskcache and never reads
the clock.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squeak.cache.directives import (
    CACHE_VIEW_FIELD,
    CacheControl,
    MessageDates,
    parse_dates,
    parse_request_cache_control,
    parse_stored_cache_control,
)
from squeak.cache.freshness import (
    DEFAULT_RULES,
    HEURISTICALLY_CACHEABLE,
    Freshness,
    FreshnessRules,
    RefreshRule,
    age_header_value,
    current_age,
    freshness_lifetime,
)
from squeak.cache.keys import normalise_uri, secondary_key, vary_fields
from squeak.http.fields import RawHeaders

if TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_MAX_STALE",
    "DEFAULT_RULES",
    "HEURISTICALLY_CACHEABLE",
    "UNDERSTOOD_STATUSES",
    "CacheRequest",
    "Freshness",
    "FreshnessRules",
    "RefreshRule",
    "Reuse",
    "ReuseDecision",
    "StaleOnFailure",
    "StoredResponse",
    "age_header_value",
    "current_age",
    "decide_reuse",
    "freshness_lifetime",
    "headers_for_reuse",
    "stale_on_failure",
    "stored_fields_for_reuse",
]

UNDERSTOOD_STATUSES: frozenset[int] = HEURISTICALLY_CACHEABLE | {302, 303, 307}
"""
Status codes whose caching requirements squeak conforms to, for
C{must-understand} (RFC 9111 §5.2.2.3).
"""

_OWS = b" \t"


# --- Decisions ------------------------------------------------------------------------


class Reuse(enum.Enum):
    """What to do with a stored response for a request (RFC 9111 §4)."""

    FRESH = "fresh"
    """Serve it: it is fresh and nothing asks for validation."""
    STALE_SERVE = "stale_serve"
    """Serve it although stale, as C{max-stale} or C{stale-while-revalidate} allows."""
    VALIDATE = "validate"
    """Send a conditional request (RFC 9111 §4.3) before using it."""
    MISS = "miss"
    """It cannot be used: forward the request."""


# Not frozen: it owns a memo of what is parsed from it (_facts), written
# once on first use.  Treat its fields as immutable: changed copies are
# made with dataclasses.replace (freshen_stored).  Weakly referable, so
# values derived from one entry elsewhere (the served-head memo in
# squeak.cache.facade) live exactly as long as it.
@dataclass(slots=True, weakref_slot=True)
class StoredResponse:
    """
    What the cache keeps about a stored response besides its body.

    @ivar uri: The normalised absolute target URI.
    @ivar status: The status code.
    @ivar reason: The reason phrase.
    @ivar headers: The stored header fields (hop-by-hop fields removed).
    @ivar request_time: When the request that got it was sent (§4.2.3).
    @ivar response_time: When it was received (§4.2.3).
    @ivar vary_key: The secondary key of the request it answered
        (L{squeak.cache.keys.secondary_key}); C{""} when it does not vary.
    @ivar client: The only client it may be served to; L{None} means any
        client.  No longer set: entries stored before
        issue 13 kept C{Set-Cookie} and were tied to the address of the
        client that fetched them, and keep that restriction until
        replaced; C{Set-Cookie} is now never stored
        (L{squeak.cache.storing.UNSTORED_FIELDS}).
    @ivar body_length: The length of the stored body in bytes.
    """

    uri: str
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    request_time: float
    response_time: float
    vary_key: str = ""
    client: str | None = None
    body_length: int = 0
    # What reuse decisions read from the fields above, parsed once per
    # object by _facts_of (a hot entry answers thousands of requests a
    # second).  Not part of the value: not compared, not copied by
    # dataclasses.replace, never stored.
    _facts: _StoredFacts | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class CacheRequest:
    """
    The facts about a request that reuse depends on.

    @ivar method: The request method.
    @ivar uri: The absolute target URI.
    @ivar headers: The request's header fields.
    @ivar client: An identity of the client (its address), compared with
        L{StoredResponse.client}.
    @ivar names: The lower-cased names of C{headers}, when the caller has
        them already; computed from C{headers} otherwise.
    """

    method: bytes
    uri: str
    headers: tuple[tuple[bytes, bytes], ...]
    client: str | None = None
    names: frozenset[bytes] | None = None


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class ReuseDecision:
    """
    Whether and how a stored response may answer a request (RFC 9111 §4).

    @ivar kind: The outcome.
    @ivar reason: Why, citing the section.
    @ivar age: The stored response's current age (§4.2.3), in seconds.
    @ivar lifetime: Its freshness lifetime (§4.2.1), in seconds.
    @ivar revalidate_in_background: With C{STALE_SERVE}: start a validation
        after serving (C{stale-while-revalidate}, RFC 5861 §3).
    @ivar stale_if_error: If the validation or forwarded request fails
        (no response, or a 5xx) the stored response may be served instead
        (C{stale-if-error}, RFC 5861 §4; RFC 9111 §4.3.3).
    @ivar strip_fields: Field names to remove from the stored response when
        it is served without validation (qualified C{no-cache}, §5.2.2.4).
    @ivar only_if_cached: The request has C{only-if-cached} and the stored
        response cannot be used as it is: answer 504 instead of contacting
        the origin (§5.2.1.7).
    """

    kind: Reuse
    reason: str
    age: float = 0.0
    lifetime: float = 0.0
    revalidate_in_background: bool = False
    stale_if_error: bool = False
    strip_fields: frozenset[bytes] = frozenset()
    only_if_cached: bool = False


# --- Reuse -------------------------------------------------------------------------------


class _StoredFacts:
    """
    What L{decide_reuse} and L{headers_for_reuse} need from a stored
    response, parsed from its fields once (L{_facts_of}) rather than on
    every request it answers.  The time-dependent parts are remembered for
    the last day and rules they were computed for.
    """

    __slots__ = (
        "_dates",
        "_day",
        "_fresh_reason",
        "_freshness",
        "_freshness_for",
        "_plain",
        "_plain_for",
        "_reused",
        "_reused_for",
        "cc",
        "headers",
        "request_time",
        "response_time",
        "status",
        "stored_uri",
        "uri",
        "varying",
    )

    def __init__(self, stored: StoredResponse) -> None:
        # The stored response's values, not the response itself: it holds
        # these facts, and a reference back would make a cycle that only
        # the cyclic garbage collector frees.
        self.headers = stored.headers
        self.status = stored.status
        self.request_time = stored.request_time
        self.response_time = stored.response_time
        self.stored_uri = stored.uri
        self.uri = normalise_uri(stored.uri)
        self.cc = parse_stored_cache_control(stored.headers)
        self.varying = vary_fields(stored.headers)
        self._day = -1
        self._dates = MessageDates()
        self._freshness_for: tuple[int, FreshnessRules] | None = None
        self._freshness = Freshness(0.0, "")
        self._fresh_reason = ""
        self._reused_for: frozenset[bytes] | None = None
        self._reused: tuple[tuple[bytes, bytes], ...] = ()
        self._plain_for: tuple[int, FreshnessRules] | None = None
        self._plain: tuple[float, float, str, bool] = (0.0, 0.0, "", False)

    def dates(self, day: int) -> MessageDates:
        """
        The stored dates, parsed as of C{day} (days since the epoch): the
        current time only matters for RFC 850 two-digit years (RFC 9110
        §5.6.7), where a day's precision is plenty.
        """
        if day != self._day:
            self._dates = parse_dates(self.headers, now=day * 86400.0)
            self._day = day
        return self._dates

    def freshness(self, day: int, rules: FreshnessRules, shared: bool) -> Freshness:
        """L{freshness_lifetime}, remembered for the last day and rules."""
        key = (day, rules)
        if self._freshness_for != key or not shared:
            freshness = freshness_lifetime(
                self.cc,
                self.dates(day),
                self.status,
                response_time=self.response_time,
                uri=self.stored_uri,
                shared=shared,
                rules=rules,
            )
            if not shared:
                return freshness
            self._freshness = freshness
            self._fresh_reason = f"fresh ({freshness.reason})"
            self._freshness_for = key
        return self._freshness

    def plain_freshness(self, day: int, rules: FreshnessRules) -> tuple[float, float, str, bool]:
        """
        For a shared cache and a request without cache directives: the
        freshness lifetime, the age when received (§4.2.3's
        C{corrected_initial_age}: the current age is that plus the time
        since C{response_time}), the reason a fresh answer gives, and
        whether C{stale-if-error} applies while it is fresh; everything
        L{_decide} computes for such a request but the current time.
        """
        key = (day, rules)
        if self._plain_for != key:
            cc = self.cc
            freshness = self.freshness(day, rules, True)
            initial_age = current_age(
                self.dates(day),
                request_time=self.request_time,
                response_time=self.response_time,
                now=self.response_time,
            )
            reason = (
                f"fresh ({freshness.reason}); immutable (RFC 8246 §2)"
                if cc.immutable
                else self.fresh_reason(freshness)
            )
            # Fresh means no staleness: within any stale-if-error window.
            stale_if_error = (
                not _revalidates_when_stale(cc, shared=True) and cc.stale_if_error is not None
            )
            self._plain = (freshness.lifetime, initial_age, reason, stale_if_error)
            self._plain_for = key
        return self._plain

    def fresh_reason(self, freshness: Freshness) -> str:
        """C{"fresh (...)"} for the freshness L{freshness} returned."""
        if freshness is self._freshness:
            return self._fresh_reason
        return f"fresh ({freshness.reason})"

    def reused_fields(self, removed: frozenset[bytes]) -> tuple[tuple[bytes, bytes], ...]:
        """The stored fields without C{Age} and those named in C{removed}."""
        if removed != self._reused_for:
            dropped = removed | {b"age", CACHE_VIEW_FIELD}
            self._reused = tuple((n, v) for n, v in self.headers if n.lower() not in dropped)
            self._reused_for = removed
        return self._reused


def _revalidates_when_stale(cc: CacheControl, *, shared: bool) -> bool:
    """
    Whether a stale response must be validated before it is reused:
    C{must-revalidate} (§5.2.2.2), and for a shared cache
    C{proxy-revalidate} (§5.2.2.8) or C{s-maxage} (§5.2.2.10).
    """
    return cc.must_revalidate or (shared and (cc.proxy_revalidate or cc.s_maxage is not None))


def _facts_of(stored: StoredResponse) -> _StoredFacts:
    """The L{_StoredFacts} of C{stored}, parsed on first use."""
    facts = stored._facts
    if facts is None:
        facts = stored._facts = _StoredFacts(stored)
    return facts


#: What a request without Cache-Control or Pragma asks for: nothing.
_NO_REQUEST_DIRECTIVES = parse_request_cache_control(())
#: Request fields that carry cache directives (RFC 9111 §5.2, §5.4).
_DIRECTIVE_FIELDS = frozenset({b"cache-control", b"pragma"})
#: Request fields whose presence changes whether a stored response is
#: reused (§3.5, §4.3.2); looked up in one set of names per request.
_PRECONDITION_FIELDS = frozenset({b"if-match", b"if-unmodified-since"})


def decide_reuse(
    request: CacheRequest,
    stored: StoredResponse | None,
    now: float,
    *,
    shared: bool = True,
    rules: FreshnessRules = DEFAULT_RULES,
) -> ReuseDecision:
    """
    Whether a stored response may answer a request, and how (RFC 9111 §4).

    Checks, in order: a stored response exists; the method is GET or HEAD
    and the URIs match (§4); C{Vary} (§4.1); the C{Set-Cookie} owner; the
    C{Authorization} rule (§3.5); preconditions meant for the origin
    (§4.3.2); then request C{no-cache} (§5.2.1.4), response C{no-cache}
    (§5.2.2.4), freshness against request C{max-age} (§5.2.1.1) and
    C{min-fresh} (§5.2.1.3) - both ignored for a fresh C{immutable}
    response (RFC 8246 §2) - and for a stale response C{must-revalidate} /
    C{proxy-revalidate} / C{s-maxage} (§5.2.2.2, §5.2.2.8, §5.2.2.10),
    C{max-stale} (§5.2.1.2) and C{stale-while-revalidate} (RFC 5861 §3).

    @param request: The request.
    @param stored: The stored response the store found for it, or L{None}.
    @param now: The current time.
    @param shared: Whether the cache is shared.
    @param rules: The heuristic settings.
    @return: The decision; with C{only_if_cached} set when the request has
        C{only-if-cached} and the outcome is not a stored response.
    """
    names = request.names
    if names is None:
        names = frozenset(name.lower() for name, _ in request.headers)
    if names.isdisjoint(_DIRECTIVE_FIELDS):
        request_cc = _NO_REQUEST_DIRECTIVES
    else:
        request_cc = parse_request_cache_control(request.headers)
    decision = _decide(request, names, request_cc, stored, now, shared, rules)
    if request_cc.only_if_cached and decision.kind in (Reuse.VALIDATE, Reuse.MISS):
        return dataclasses.replace(
            decision,
            only_if_cached=True,
            reason=decision.reason + "; only-if-cached: answer 504 (RFC 9111 §5.2.1.7)",
        )
    return decision


def _decide(
    request: CacheRequest,
    names: frozenset[bytes],
    request_cc: CacheControl,
    stored: StoredResponse | None,
    now: float,
    shared: bool,
    rules: FreshnessRules,
) -> ReuseDecision:
    """The body of L{decide_reuse}, before C{only-if-cached} is considered."""
    if stored is None:
        return ReuseDecision(Reuse.MISS, "RFC 9111 §4: nothing stored")
    method = request.method.upper()
    if method not in (b"GET", b"HEAD"):
        return ReuseDecision(Reuse.MISS, f"RFC 9111 §4: {_m(method)} is not answered from cache")
    facts = _facts_of(stored)
    # The same text as stored needs no normalising (the common hit).
    if request.uri != facts.stored_uri and normalise_uri(request.uri) != facts.uri:
        return ReuseDecision(Reuse.MISS, "RFC 9111 §4: target URI differs")
    # Most responses do not vary: then the key is "" without a call.
    key = secondary_key(facts.varying, request.headers) if facts.varying else ""
    if key is None:
        return ReuseDecision(Reuse.MISS, "RFC 9111 §4.1: Vary: * never matches")
    if key != stored.vary_key:
        return ReuseDecision(Reuse.MISS, "RFC 9111 §4.1: Vary-named request fields differ")
    if stored.client is not None and stored.client != request.client:
        return ReuseDecision(
            Reuse.MISS,
            "Set-Cookie response stored for another client (RFC 6265 §8.6, RFC 9111 §7.3)",
        )
    cc = facts.cc
    if (
        shared
        and b"authorization" in names
        and not (cc.public or cc.s_maxage is not None or cc.must_revalidate)
    ):
        return ReuseDecision(
            Reuse.MISS,
            "RFC 9111 §3.5: request has Authorization and the stored response has none of "
            "public, s-maxage, must-revalidate",
        )
    if not names.isdisjoint(_PRECONDITION_FIELDS):
        return ReuseDecision(
            Reuse.MISS, "RFC 9111 §4.3.2: If-Match/If-Unmodified-Since are for the origin"
        )
    day = int(now // 86400)
    if request_cc is _NO_REQUEST_DIRECTIVES and shared and not cc.no_cache:
        # The common hit: what follows, with the parts that depend only on
        # the stored response worked out once (_StoredFacts.plain_freshness).
        lifetime, initial_age, reason, stale_if_error = facts.plain_freshness(day, rules)
        resident_time = now - stored.response_time
        age = initial_age + (resident_time if resident_time > 0.0 else 0.0)
        if lifetime > age:
            # Positional, in the order of the fields (keywords to a class
            # are passed as a dict, built on every hit).
            return ReuseDecision(
                Reuse.FRESH,
                reason,
                age,
                lifetime,
                False,  # revalidate_in_background
                stale_if_error,
                cc.no_cache_fields,  # strip_fields
            )
    age = current_age(
        facts.dates(day),
        request_time=stored.request_time,
        response_time=stored.response_time,
        now=now,
    )
    freshness = facts.freshness(day, rules, shared)
    lifetime = freshness.lifetime
    fresh = lifetime > age
    staleness = max(0.0, age - lifetime)
    revalidate_when_stale = _revalidates_when_stale(cc, shared=shared)
    error_window = max(
        cc.stale_if_error if cc.stale_if_error is not None else -1,
        request_cc.stale_if_error if request_cc.stale_if_error is not None else -1,
    )
    stale_if_error = not revalidate_when_stale and staleness <= error_window

    def decide(
        kind: Reuse,
        why: str,
        *,
        strip_fields: frozenset[bytes] = frozenset(),
        revalidate_in_background: bool = False,
    ) -> ReuseDecision:
        """Make the decision, with the age and lifetime computed above."""
        return ReuseDecision(
            kind,
            why,
            age=age,
            lifetime=lifetime,
            revalidate_in_background=revalidate_in_background,
            stale_if_error=stale_if_error,
            strip_fields=strip_fields,
        )

    if request_cc.no_cache:
        source = (
            "Pragma: no-cache (RFC 9111 §5.4)"
            if request_cc.pragma_no_cache
            else ("request no-cache (RFC 9111 §5.2.1.4)")
        )
        return decide(Reuse.VALIDATE, source)
    if cc.no_cache:
        return decide(Reuse.VALIDATE, "RFC 9111 §5.2.2.4: response no-cache")
    strip = cc.no_cache_fields
    if fresh:
        if cc.immutable:
            return decide(
                Reuse.FRESH,
                f"fresh ({freshness.reason}); immutable (RFC 8246 §2)",
                strip_fields=strip,
            )
        if request_cc.max_age is not None and age > request_cc.max_age:
            return decide(Reuse.VALIDATE, "RFC 9111 §5.2.1.1: older than request max-age")
        if request_cc.min_fresh is not None and lifetime - age < request_cc.min_fresh:
            return decide(Reuse.VALIDATE, "RFC 9111 §5.2.1.3: fresh for less than min-fresh")
        return decide(Reuse.FRESH, facts.fresh_reason(freshness), strip_fields=strip)
    stale = f"stale ({freshness.reason})"
    if revalidate_when_stale:
        which = (
            "must-revalidate (RFC 9111 §5.2.2.2)"
            if cc.must_revalidate
            else "proxy-revalidate (RFC 9111 §5.2.2.8)"
            if cc.proxy_revalidate
            else "s-maxage implies proxy-revalidate (RFC 9111 §5.2.2.10)"
        )
        return decide(Reuse.VALIDATE, f"{stale}; {which}")
    if request_cc.max_age is not None and age > request_cc.max_age:
        return decide(Reuse.VALIDATE, f"{stale}; older than request max-age (RFC 9111 §5.2.1.1)")
    if request_cc.max_stale is not None and staleness <= request_cc.max_stale:
        return decide(
            Reuse.STALE_SERVE,
            f"{stale}; within request max-stale (RFC 9111 §5.2.1.2)",
            strip_fields=strip,
        )
    if (
        cc.stale_while_revalidate is not None
        and staleness <= cc.stale_while_revalidate
        and request_cc.max_age is None
        and request_cc.min_fresh is None
    ):
        return decide(
            Reuse.STALE_SERVE,
            f"{stale}; within stale-while-revalidate (RFC 5861 §3)",
            revalidate_in_background=True,
            strip_fields=strip,
        )
    return decide(Reuse.VALIDATE, f"{stale}; validate (RFC 9111 §4.3)")


DEFAULT_MAX_STALE = 7 * 86400.0
"""
The most a stored response may be stale to be served when its origin
fails: Squid's C{max_stale} default, one week.
"""


@dataclass(frozen=True, slots=True)
class StaleOnFailure:
    """
    Whether a stored response may answer a request whose validation failed
    (no answer from the origin, or a 5xx).

    @ivar serve: Whether to serve the stored response.
    @ivar reason: Why, citing the section.
    """

    serve: bool
    reason: str


def stale_on_failure(
    request: CacheRequest,
    stored: StoredResponse,
    now: float,
    *,
    stale_if_error: bool,
    max_stale: float = DEFAULT_MAX_STALE,
    shared: bool = True,
    rules: FreshnessRules = DEFAULT_RULES,
) -> StaleOnFailure:
    """
    Whether to serve C{stored} when validating it failed: the origin could
    not be reached or gave no usable answer, or it answered with a 5xx
    (RFC 9111 §4.3.3: "the cache can send a previously stored response,
    subject to its restrictions on serving stale responses").

    RFC 9111 §4.2.4 lets a disconnected cache serve a stale response, but
    never against "an explicit in-protocol directive": the stored
    response's C{no-cache} (§5.2.2.4), C{must-revalidate} (§5.2.2.2: "the
    cache MUST generate an error response"), and in a shared cache
    C{proxy-revalidate} (§5.2.2.8) or C{s-maxage} (§5.2.2.10).  Nor
    against the request's own: C{no-cache} (§5.2.1.4, and C{Pragma},
    §5.4) or a C{max-age} the response is older than (§5.2.1.1, so
    C{max-age=0}) ask for a validated answer, C{min-fresh} (§5.2.1.3) for
    a fresh one, and a C{max-stale} the response is staler than
    (§5.2.1.2) sets the client's own bound.  Beyond those, squeak bounds
    the staleness with C{max_stale}, as Squid does with its option of
    that name.

    C{stale-if-error} (RFC 5861 §4) within its window allows it whatever
    C{max_stale} says, as before (its own checks,
    L{ReuseDecision.stale_if_error}, already exclude the revalidation
    directives); beyond its window it forbids it: the origin (or client)
    set that bound.

    @param stale_if_error: L{ReuseDecision.stale_if_error} of the decision
        that led to the validation.
    @param max_stale: The most seconds the response may be stale.
    """
    if stale_if_error:
        return StaleOnFailure(True, "RFC 5861 §4: stale-if-error allows the stored response")
    facts = _facts_of(stored)
    cc = facts.cc
    if cc.no_cache:
        return StaleOnFailure(False, "RFC 9111 §4.2.4, §5.2.2.4: response no-cache")
    if _revalidates_when_stale(cc, shared=shared):
        which = (
            "must-revalidate (RFC 9111 §5.2.2.2)"
            if cc.must_revalidate
            else "proxy-revalidate (RFC 9111 §5.2.2.8)"
            if cc.proxy_revalidate
            else "s-maxage implies proxy-revalidate (RFC 9111 §5.2.2.10)"
        )
        return StaleOnFailure(False, f"RFC 9111 §4.2.4: {which}")
    request_cc = parse_request_cache_control(request.headers)
    if request_cc.no_cache:
        return StaleOnFailure(
            False,
            "RFC 9111 §5.4: Pragma: no-cache asks for validation"
            if request_cc.pragma_no_cache
            else "RFC 9111 §5.2.1.4: request no-cache asks for validation",
        )
    day = int(now // 86400)
    age = current_age(
        facts.dates(day),
        request_time=stored.request_time,
        response_time=stored.response_time,
        now=now,
    )
    if request_cc.max_age is not None and age > request_cc.max_age:
        return StaleOnFailure(False, "RFC 9111 §5.2.1.1: older than request max-age")
    if request_cc.min_fresh is not None:
        return StaleOnFailure(False, "RFC 9111 §5.2.1.3: request min-fresh wants a fresh response")
    staleness = max(0.0, age - facts.freshness(day, rules, shared).lifetime)
    if request_cc.max_stale is not None and staleness > request_cc.max_stale:
        return StaleOnFailure(False, "RFC 9111 §5.2.1.2: staler than request max-stale")
    if cc.stale_if_error is not None or request_cc.stale_if_error is not None:
        # RFC 5861 §4: "when the cached response is more stale than the
        # indicated amount, the cached response SHOULD NOT be used"; an
        # explicit window is the bound, not max_stale (as Squid's
        # refresh.cc: "stale-if-error period expired").
        return StaleOnFailure(False, "RFC 5861 §4: staler than stale-if-error allows")
    if staleness > max_stale:
        return StaleOnFailure(
            False, f"RFC 9111 §4.2.4: stale for more than max_stale ({max_stale:g}s)"
        )
    return StaleOnFailure(
        True, "RFC 9111 §4.2.4: the origin failed; a disconnected cache may serve it stale"
    )


def stored_fields_for_reuse(
    stored: StoredResponse, decision: ReuseDecision, replaced: frozenset[bytes] = frozenset()
) -> tuple[tuple[bytes, bytes], ...]:
    """
    The stored fields sent with a stored response served from cache,
    before its new C{Age}: without C{Age} and those a qualified
    C{no-cache} names (RFC 9111 §5.2.2.4).  Worked out once per stored
    response and decision.

    @param replaced: Lower-cased names of fields the caller sends values of
        its own for, left out here too.
    """
    removed = decision.strip_fields | replaced if decision.strip_fields else replaced
    return _facts_of(stored).reused_fields(removed)


def headers_for_reuse(
    stored: StoredResponse, decision: ReuseDecision, replaced: frozenset[bytes] = frozenset()
) -> RawHeaders:
    """
    The header fields to send with a stored response served from cache:
    L{stored_fields_for_reuse} and an C{Age} for the current age (RFC 9111
    §5.1: a cache MUST send C{Age} on a response served from cache).
    """
    headers = list(stored_fields_for_reuse(stored, decision, replaced))
    headers.append((b"Age", age_header_value(decision.age)))
    return headers


def _m(method: bytes) -> str:
    """Show a method in a reason."""
    return method.decode("latin-1")
