# -*- test-case-name: tests.test_cache_policy -*-
"""
RFC 9111 §3: whether (and how) a response may be stored by a shared cache,
as a pure decision whose reason cites the section it follows.

This module is pure: it imports neither Twisted nor diskcache and never reads
the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from squeak.cache.directives import (
    CacheControl,
    MessageDates,
    parse_dates,
    parse_request_cache_control,
    parse_stored_cache_control,
)
from squeak.cache.keys import VARY_ANY, vary_fields
from squeak.cache.policy import HEURISTICALLY_CACHEABLE, UNDERSTOOD_STATUSES

__all__ = ["UNSTORED_FIELDS", "StoreDecision", "is_storable"]

UNSTORED_FIELDS = frozenset({b"set-cookie", b"set-cookie2"})
"""
Fields never stored, so never replayed from the cache: C{Set-Cookie} (and
the obsolete C{Set-Cookie2}, RFC 2965) is meant for the one client whose
request drew it.  RFC 9111 §3 lets a response with C{Set-Cookie} be
stored and reused ("Set-Cookie ... does not inhibit caching"), and RFC
6265 §8.6 warns that caches must not share the cookie itself.  squeak
does what Squid does (its hits never carry C{Set-Cookie}): the response
is stored and shared without the field, and the client whose request
fetched it gets the field on that (relayed) answer.  Keying the entry by
the client's address instead would share a session between everyone
behind one NAT address or child proxy.
"""


@dataclass(frozen=True, slots=True)
class StoreDecision:
    """
    Whether to store a response (RFC 9111 §3).

    @ivar store: Whether to store it.
    @ivar reason: Why, citing the section.
    @ivar strip_fields: Lower-cased field names to remove before storing:
        those a qualified C{private="..."} names (RFC 9111 §5.2.2.7), and
        L{UNSTORED_FIELDS} (C{Set-Cookie}) when present.
    """

    store: bool
    reason: str
    strip_fields: frozenset[bytes] = frozenset()


# --- Storing -----------------------------------------------------------------------------


def _has(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bool:
    """Whether a field named C{name} (lower-case) is present."""
    return any(key.lower() == name for key, _ in headers)


def _has_explicit_freshness(cc: CacheControl, dates: MessageDates, shared: bool) -> bool:
    """Whether a response carries explicit freshness (RFC 9111 §4.2.1)."""
    return (shared and cc.s_maxage is not None) or cc.max_age is not None or dates.expires_present


def is_storable(
    method: bytes,
    request_headers: Sequence[tuple[bytes, bytes]],
    status: int,
    response_headers: Sequence[tuple[bytes, bytes]],
    *,
    shared: bool = True,
    has_authorization: bool | None = None,
) -> StoreDecision:
    """
    Whether a cache may store a response (RFC 9111 §3).

    squeak stores complete responses to GET only (a HEAD is answered from a
    stored GET); not 206 (partial content is not stored, §3.3) nor 304
    (which freshens, §4.3.4).

    @param method: The request method.
    @param request_headers: The request's header fields.
    @param status: The response status code.
    @param response_headers: The response's header fields.
    @param shared: Whether the cache is shared (squeak's is).
    @param has_authorization: Whether the request carried C{Authorization};
        by default, whether C{request_headers} has it.
    @return: The decision.
    """
    if method.upper() != b"GET":
        return StoreDecision(
            False, f"RFC 9111 §3: squeak stores GET responses only, not {_m(method)}"
        )
    if status < 200 or status > 999:
        return StoreDecision(False, f"RFC 9111 §3: {status} is not a final response")
    if status == 206:
        return StoreDecision(False, "RFC 9111 §3.3: partial content (206) is not stored")
    if status == 304:
        return StoreDecision(False, "RFC 9111 §4.3.4: a 304 freshens a stored response")
    request_cc = parse_request_cache_control(request_headers)
    if request_cc.no_store:
        return StoreDecision(False, "RFC 9111 §5.2.1.5: request no-store")
    cc = parse_stored_cache_control(response_headers)
    if cc.must_understand:
        if status not in UNDERSTOOD_STATUSES:
            return StoreDecision(
                False, f"RFC 9111 §5.2.2.3: must-understand and status {status} is not understood"
            )
    elif cc.no_store:
        return StoreDecision(False, "RFC 9111 §5.2.2.5: response no-store")
    if shared and cc.private:
        return StoreDecision(False, "RFC 9111 §5.2.2.7: private, and this is a shared cache")
    if has_authorization is None:
        has_authorization = _has(request_headers, b"authorization")
    if (
        shared
        and has_authorization
        and not (cc.public or cc.s_maxage is not None or cc.must_revalidate)
    ):
        return StoreDecision(
            False,
            "RFC 9111 §3.5: request had Authorization and the response has none of "
            "public, s-maxage, must-revalidate",
        )
    if VARY_ANY in vary_fields(response_headers):
        return StoreDecision(False, "RFC 9111 §4.1: Vary: * never matches a request")
    dates = parse_dates(response_headers)
    if cc.public:
        why = "RFC 9111 §3: public"
    elif _has_explicit_freshness(cc, dates, shared):
        why = "RFC 9111 §3: explicit freshness"
    elif status in HEURISTICALLY_CACHEABLE:
        why = f"RFC 9111 §3: status {status} is heuristically cacheable (RFC 9110 §15.1)"
    elif not shared and cc.private:
        why = "RFC 9111 §3: private, in a private cache"
    else:
        return StoreDecision(
            False,
            f"RFC 9111 §3: status {status} is not cacheable by default and has no "
            "explicit freshness",
        )
    if cc.must_understand and cc.no_store:
        why += "; must-understand overrides no-store (RFC 9111 §5.2.2.3)"
    strip = cc.private_fields if shared else frozenset()
    if strip:
        why += "; qualified private fields not stored (RFC 9111 §5.2.2.7)"
    cookies = frozenset(n.lower() for n, _ in response_headers) & UNSTORED_FIELDS
    if cookies:
        # RFC 9111 §3 stores it; RFC 6265 §8.6: never the cookie itself.
        strip |= cookies
        why += "; Set-Cookie not stored, never replayed (RFC 6265 §8.6)"
    return StoreDecision(True, why, strip)


def _m(method: bytes) -> str:
    """Show a method in a reason."""
    return method.decode("latin-1")
