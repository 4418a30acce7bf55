# -*- test-case-name: tests.test_errors -*-
"""
Errors squeak answers with, and the pages it renders for them.

Every failure that reaches a client becomes a L{ProxyError}: a Squid-style
error name (C{ERR_DNS_FAIL}), the HTTP status to answer with and a one-line
detail, in the way h11's C{ProtocolError} carries its C{error_status_hint}.
Pure code raises L{ProxyError} directly; the Twisted-facing code hands the
failures it receives to L{squeak.net.failures.error_for_failure}, the single
place where network exceptions are mapped to error names.
L{squeak.errorpages} turns the result into the HTML body, like Squid's
C{errors/templates/ERR_*}.

How a response body ended is said by the exception type, so that nothing
has to be guessed (the idea of Twisted's C{ResponseDone} and
C{PotentialDataLoss}, without their private modules): L{BodyComplete} and
L{BodyEndedByClose}, both L{BodyEnded}; any other exception is a failure.

This module is a pure vocabulary: it imports no network code (no Twisted
reactor, no TLS library, nothing from L{squeak.net}).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CATALOGUE",
    "ERROR_CONTENT_TYPE",
    "BodyComplete",
    "BodyEnded",
    "BodyEndedByClose",
    "ErrorInfo",
    "ErrorLike",
    "ProxyError",
    "error_headers",
]

ERROR_CONTENT_TYPE = b"text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """
    What an error name means, for the people who will read the page.

    @ivar status: The status answered when the raiser gives none.
    @ivar title: A short title, shown in bold on the page.
    @ivar explanation: One paragraph for the user and the operator: what
        happened and what may be done about it.
    """

    status: int
    title: str
    explanation: str


CATALOGUE: Mapping[str, ErrorInfo] = {
    "ERR_INVALID_REQ": ErrorInfo(
        400,
        "Invalid Request",
        "The request could not be understood by the proxy: its request line or headers "
        "are malformed, or its message framing is ambiguous. Check the client software "
        "that sent it.",
    ),
    "ERR_INVALID_URL": ErrorInfo(
        400,
        "Invalid URL",
        "Some aspect of the requested URL is incorrect: it may be missing the scheme or "
        "the host name, name a port that is not a number, or contain characters that are "
        "not allowed. Check the URL and try again.",
    ),
    "ERR_UNSUP_REQ": ErrorInfo(
        400,
        "Unsupported Request",
        "The proxy does not support this kind of request: the URL scheme or the request "
        "method cannot be forwarded by it.",
    ),
    "ERR_TOO_BIG": ErrorInfo(
        413,
        "The Request Is Too Large",
        "The request, or one of its parts, is larger than the proxy is configured to "
        "accept. Send a smaller request or ask the proxy's administrator to raise the "
        "limit.",
    ),
    "ERR_REQUEST_PARSE_TIMEOUT": ErrorInfo(
        408,
        "Request Timeout",
        "The client did not send a complete request head in the time the proxy allows "
        "(timeouts.request_head). The network may be very slow; otherwise the client "
        "is misbehaving.",
    ),
    "ERR_DNS_FAIL": ErrorInfo(
        503,
        "Unable to Determine IP Address",
        "The proxy could not resolve the host name in the URL into an address. Check that "
        "the host name is spelled correctly; if it is, the name server may be failing and "
        "a later retry may succeed.",
    ),
    "ERR_CONNECT_FAIL": ErrorInfo(
        502,
        "Connection Failed",
        "The proxy could not open a connection to the remote host. The server may be down "
        "or unreachable, or refusing connections on that port. Please try again later.",
    ),
    "ERR_READ_TIMEOUT": ErrorInfo(
        504,
        "Read Timeout",
        "The remote server did not send the response in time. The network or the server "
        "may be overloaded or congested. Please try again later.",
    ),
    "ERR_READ_ERROR": ErrorInfo(
        502,
        "Read Error",
        "The connection to the remote server failed while the proxy was reading the "
        "response. The server may have been restarted or the network interrupted. Please "
        "try again later.",
    ),
    "ERR_WRITE_ERROR": ErrorInfo(
        502,
        "Write Error",
        "The connection to the remote server failed while the proxy was sending the "
        "request. The server may have closed the connection early. Please try again later.",
    ),
    "ERR_INVALID_RESP": ErrorInfo(
        502,
        "Invalid Response",
        "The remote server sent a response the proxy could not understand: its status "
        "line, headers or body framing are malformed. Contact the operator of the remote "
        "site if the problem persists.",
    ),
    "ERR_ZERO_SIZE_OBJECT": ErrorInfo(
        502,
        "Zero Sized Reply",
        "The remote server closed the connection without sending any response. Please try "
        "again later; contact the operator of the remote site if the problem persists.",
    ),
    "ERR_FORWARDING_LOOP": ErrorInfo(
        508,
        "Forwarding Loop Detected",
        "The request has already passed through this proxy: forwarding it again would make "
        "it loop forever. The proxy or a peer of it is misconfigured; contact the proxy's "
        "administrator.",
    ),
    "ERR_ACCESS_DENIED": ErrorInfo(
        403,
        "Access Denied",
        "The proxy's access rules do not allow this request. Contact the proxy's "
        "administrator if you believe this is in error.",
    ),
    "ERR_CACHE_ACCESS_DENIED": ErrorInfo(
        407,
        "Proxy Authentication Required",
        "The proxy requires you to log in before it forwards this request. Configure your "
        "client with a user name and password for the proxy, or contact its administrator.",
    ),
    "ERR_SECURE_CONNECT_FAIL": ErrorInfo(
        502,
        "Secure Connection Failed",
        "The proxy could not establish a secure connection to the remote server: the TLS "
        "handshake failed or the server's certificate could not be verified.",
    ),
    "ERR_GATEWAY_FAILURE": ErrorInfo(
        500,
        "Gateway Failure",
        "The proxy met an unexpected internal error while handling the request. The event "
        "has been logged; contact the proxy's administrator if it persists.",
    ),
    "ERR_ONLY_IF_CACHED_MISS": ErrorInfo(
        504,
        "Valid Document Not Found in Cache",
        "The request asked for a cached copy only (Cache-Control: only-if-cached), and the "
        "proxy holds no fresh copy of this document (RFC 9111 section 5.2.1.7).",
    ),
    # Accelerator mode (squeak/proxy/accel.py).
    "ERR_ACCEL_NO_SITE": ErrorInfo(
        421,
        "Site Not Served Here",
        "This server does not serve the site named in the request (its Host). Check the "
        "address you used (RFC 9110 section 15.5.20, Misdirected Request).",
    ),
    "ERR_ACCEL_NO_ROUTE": ErrorInfo(
        404,
        "Not Found",
        "Nothing on this site answers at this path.",
    ),
    "ERR_ACCEL_POOL_DOWN": ErrorInfo(
        503,
        "Service Unavailable",
        "None of the servers that answer for this site is available just now. Please try "
        "again in a moment.",
    ),
    "ERR_ACCEL_NOT_A_PROXY": ErrorInfo(
        400,
        "Not a Proxy",
        "This port serves its own sites only: it does not forward requests for other "
        "addresses (absolute-URI requests) or open tunnels (CONNECT).",
    ),
}

_UNKNOWN = ErrorInfo(
    500, "Proxy Error", "The proxy could not complete the request; contact its administrator."
)


class ErrorLike(Protocol):
    """
    Anything that names an error the way L{ProxyError} does (such as
    C{squeak.http.target.TargetError}), and can therefore be rendered as a page.
    """

    @property
    def name(self) -> str:
        """The Squid-style error name, e.g. C{ERR_INVALID_URL}."""

    @property
    def status(self) -> int:
        """The HTTP status to answer with."""

    @property
    def detail(self) -> str:
        """One line of plain text saying what went wrong."""


class ProxyError(Exception):
    """
    A request cannot be served; the error carries the answer to give.

    @ivar name: The Squid-style error name, a key of L{CATALOGUE}.
    @ivar status: The HTTP status to answer with.
    @ivar detail: One line of plain text about this occurrence (not HTML).
    """

    def __init__(self, name: str, status: int | None = None, detail: str = "") -> None:
        """
        @param name: The error name, e.g. C{"ERR_DNS_FAIL"}.
        @param status: The status to answer with; L{None} takes the default
            status of C{name} from L{CATALOGUE} (500 for an unknown name).
        @param detail: What went wrong this time, e.g. C{"connection refused"}.
        """
        if status is None:
            status = CATALOGUE.get(name, _UNKNOWN).status
        super().__init__(name, status, detail)
        self.name = name
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        """
        @return: C{"ERR_NAME status: detail"}, for logs.
        """
        text = f"{self.name} {self.status}"
        return f"{text}: {self.detail}" if self.detail else text

    @property
    def info(self) -> ErrorInfo:
        """
        The catalogue entry of this error's name; names missing from the
        catalogue get a generic entry rather than an exception, so that
        rendering an error can never fail.
        """
        return CATALOGUE.get(self.name, _UNKNOWN)


# -- how a body ended ---------------------------------------------------------------------


class BodyEnded(Exception):  # noqa: N818 - an ending, not an error
    """
    A response body ended without an error: the reason handed to the body
    protocol's C{connectionLost}.  Only its subclasses are raised.
    """


class BodyComplete(BodyEnded):
    """
    The body is known to be complete: all of its C{Content-Length}, the last
    chunk of a chunked body, or a response without content (RFC 9112 §6.3).
    Only this ending may commit a cache entry.
    """


class BodyEndedByClose(BodyEnded):
    """
    A close-delimited body ended when the origin closed the connection
    (RFC 9112 §6.3 item 8): complete as far as anyone can tell, so it is
    relayed as finished, but a cut network would look the same, so it is
    never cached.
    """


# -- pages and headers ---------------------------------------------------------------------


def error_headers(
    error: ErrorLike,
    *,
    content_length: int | None = None,
    language: str | None = None,
    negotiated: bool = False,
) -> list[tuple[bytes, bytes]]:
    """
    The response headers sent with an error page.

    C{X-Squeak-Error} names the error, as Squid's C{X-Squid-Error} does;
    C{Cache-Control: no-store} keeps the page out of every cache.

    @param error: The error being answered.
    @param content_length: The length of the page, when it should be sent.
    @param language: The page's language, sent as C{Content-Language}.
    @param negotiated: Whether the language was chosen by the request's
        C{Accept-Language} (then C{Vary: Accept-Language}).
    @return: Header name and value pairs.
    """
    name = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in error.name)
    headers = [
        (b"Content-Type", ERROR_CONTENT_TYPE),
        (b"Cache-Control", b"no-store"),
        (b"X-Squeak-Error", name.encode("ascii") or b"ERR_GATEWAY_FAILURE"),
    ]
    if language:
        headers.append((b"Content-Language", language.encode("ascii", "replace")))
    if negotiated:
        headers.append((b"Vary", b"Accept-Language"))
    if content_length is not None:
        headers.append((b"Content-Length", str(content_length).encode("ascii")))
    return headers
