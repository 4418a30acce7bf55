# -*- test-case-name: tests.test_accesslog -*-
"""
What is logged about one transaction: the L{AccessRecord} the proxy fills
once per request, and every access-log formatter reads.

Pure: a plain value, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AccessRecord"]


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class AccessRecord:
    """
    What is logged about one transaction.

    @ivar timestamp: When the transaction ended, in seconds since the epoch.
    @ivar elapsed_ms: How long it took, in milliseconds.
    @ivar client: The client's IP address.
    @ivar code: Squid's result code, e.g. C{"TCP_MISS"}, C{"TCP_DENIED"},
        C{"TCP_MISS_ABORTED"} or C{"NONE"}.
    @ivar status: The status sent to the client, or 0 when none was sent.
    @ivar size: Bytes sent to the client, headers included.
    @ivar method: The request method.
    @ivar url: The request URL (C{host:port} for C{CONNECT}).
    @ivar user: The authenticated user name, or L{None}.
    @ivar hierarchy: Squid's hierarchy code, e.g. C{"HIER_DIRECT"} or
        C{"HIER_NONE"}.
    @ivar peer: The address of the server the request went to, or C{"-"}.
    @ivar content_type: The response's media type, or C{"-"}.
    @ivar referer: The request's I{Referer}, or L{None}.
    @ivar user_agent: The request's I{User-Agent}, or L{None}.
    @ivar version: The request's HTTP version, e.g. C{"HTTP/1.1"}.
    @ivar client_port: The client's source port, or 0 when unknown
        (C{%>p}).
    @ivar local_host: The local address the client connected to, or C{""}
        when unknown (C{%>la}, C{%la}).
    @ivar local_port: The local port the client connected to, or 0 when
        unknown (C{%>lp}, C{%lp}).
    """

    timestamp: float
    elapsed_ms: int
    client: str
    code: str
    status: int
    size: int
    method: str
    url: str
    user: str | None
    hierarchy: str
    peer: str
    content_type: str
    referer: str | None
    user_agent: str | None
    version: str
    # Appended with defaults: the proxy builds records positionally with the
    # fields above, and only custom formats log these.
    client_port: int = 0
    local_host: str = ""
    local_port: int = 0


# Characters logged as themselves; everything else (controls, space where it
# would split a field, quote, backslash, non-ASCII) becomes \xNN, so a hostile
# URL or header can neither forge a line nor shift a field.
