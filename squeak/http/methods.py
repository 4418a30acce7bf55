# -*- test-case-name: tests.test_http_methods -*-
"""
What a request method means to a proxy, as pure decisions.

  - I{safe} methods (RFC 9110 §9.2.1) ask for nothing to change on the
    origin: GET, HEAD, OPTIONS and TRACE;
  - a response to an I{unsafe} one invalidates what the cache holds for the
    URI (RFC 9111 §4.4);
  - TRACE and OPTIONS carry C{Max-Forwards}, and the proxy answers them
    itself when it reaches 0 (RFC 9110 §7.6.2);
  - a registered method spelt in another case (C{delete}) is refused
    (L{why_miscased}), since origins that upper-case methods would read it
    as the method an access rule may deny.

This module is pure: no Twisted, no clock.
"""

from __future__ import annotations

__all__ = [
    "MAX_FORWARDS_METHODS",
    "REGISTERED_METHODS",
    "SAFE_METHODS",
    "invalidates_cache",
    "is_safe",
    "uses_max_forwards",
    "why_miscased",
]

#: RFC 9110 §9.2.1: "Of the request methods defined by this specification,
#: the GET, HEAD, OPTIONS, and TRACE methods are defined to be safe."
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})

#: Methods the proxy answers itself when Max-Forwards reaches 0
#: (RFC 9110 §7.6.2).
MAX_FORWARDS_METHODS = frozenset({b"TRACE", b"OPTIONS"})

#: The IANA HTTP Method Registry (RFC 9110 §16.1.1), plus Squid's PURGE,
#: which squeak implements (docs/access.md).
REGISTERED_METHODS = frozenset(
    {
        b"ACL",
        b"BASELINE-CONTROL",
        b"BIND",
        b"CHECKIN",
        b"CHECKOUT",
        b"CONNECT",
        b"COPY",
        b"DELETE",
        b"GET",
        b"HEAD",
        b"LABEL",
        b"LINK",
        b"LOCK",
        b"MERGE",
        b"MKACTIVITY",
        b"MKCALENDAR",
        b"MKCOL",
        b"MKREDIRECTREF",
        b"MKWORKSPACE",
        b"MOVE",
        b"OPTIONS",
        b"ORDERPATCH",
        b"PATCH",
        b"POST",
        b"PRI",
        b"PROPFIND",
        b"PROPPATCH",
        b"PURGE",
        b"PUT",
        b"QUERY",
        b"REBIND",
        b"REPORT",
        b"SEARCH",
        b"TRACE",
        b"UNBIND",
        b"UNCHECKOUT",
        b"UNLINK",
        b"UNLOCK",
        b"UPDATE",
        b"UPDATEREDIRECTREF",
        b"VERSION-CONTROL",
    }
)


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


def why_miscased(method: bytes) -> str | None:
    """
    Why a request with this method is refused, when it is a registered
    method spelt in another case.

    RFC 9110 §9.1: "The method token is case-sensitive", so C{delete} is
    not C{DELETE} and a rule about C{DELETE} does not apply to it; yet
    many origin frameworks upper-case the method they receive, and would
    run C{DELETE} for it.  An access rule such as C{deny} of the C{method}
    ACL C{DELETE} could then be bypassed by changing case.  Refusing such
    spellings (no client sends them) closes that gap for every rule at
    once, where matching rules case-insensitively would still forward the
    odd spelling and leave the origin to guess.  Methods that are not
    registered (C{m-search}, C{Foo}) are extension methods and are not
    judged.

    @param method: The method token as received.
    @return: A one-line reason for the 400 page, or L{None} when the method
        may be forwarded.
    """
    if method in REGISTERED_METHODS:
        return None
    upper = method.upper()
    if upper not in REGISTERED_METHODS:
        return None
    shown = method.decode("ascii", "replace")
    return (
        f"method {shown} is {upper.decode('ascii')} in another case; methods are "
        "case-sensitive (RFC 9110 §9.1) and only the registered spelling is accepted"
    )
