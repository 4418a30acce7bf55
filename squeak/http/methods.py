# -*- test-case-name: tests.test_http_methods -*-
"""
What a request method means to a proxy, as pure decisions.

  - I{safe} methods (RFC 9110 §9.2.1) ask for nothing to change on the
    origin: GET, HEAD, OPTIONS and TRACE;
  - a response to an I{unsafe} one invalidates what the cache holds for the
    URI (RFC 9111 §4.4);
  - TRACE and OPTIONS carry C{Max-Forwards}, and the proxy answers them
    itself when it reaches 0 (RFC 9110 §7.6.2).

This module is pure: no Twisted, no clock.
"""

from __future__ import annotations

__all__ = [
    "MAX_FORWARDS_METHODS",
    "SAFE_METHODS",
    "invalidates_cache",
    "is_safe",
    "uses_max_forwards",
]

#: RFC 9110 §9.2.1: "Of the request methods defined by this specification,
#: the GET, HEAD, OPTIONS, and TRACE methods are defined to be safe."
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})

#: Methods the proxy answers itself when Max-Forwards reaches 0
#: (RFC 9110 §7.6.2).
MAX_FORWARDS_METHODS = frozenset({b"TRACE", b"OPTIONS"})


def is_safe(method: bytes) -> bool:
    """
    Whether C{method} is safe (RFC 9110 §9.2.1).  Method names are
    case-sensitive (RFC 9110 §9.1): C{get} is not C{GET}, and unknown
    methods are not safe.
    """
    return method in SAFE_METHODS


def invalidates_cache(method: bytes) -> bool:
    """
    Whether a (successful) response to C{method} invalidates the stored
    responses for its URI (RFC 9111 §4.4: "a cache MUST invalidate the
    target URI ... when it receives a non-error status code in response to
    an unsafe request method").
    """
    return method not in SAFE_METHODS


def uses_max_forwards(method: bytes) -> bool:
    """
    Whether C{Max-Forwards} applies to C{method} (RFC 9110 §7.6.2: TRACE
    and OPTIONS only; other methods ignore it).
    """
    return method in MAX_FORWARDS_METHODS
