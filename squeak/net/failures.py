# -*- test-case-name: tests.test_net_failures -*-
"""
How the origin side fails, and the one mapping from those failures to the
L{ProxyError} answered to the client.

The origin client (L{squeak.net.origin}) and the connections the proxy opens
itself (protocol upgrades, CONNECT tunnels) fail with:

  - the endpoint's connect errors (L{HostnameEndpoint}): a failed name
    lookup (L{DNSLookupError}), a refused, unroutable or timed-out connect
    (subclasses of L{ConnectError}, and connectTCP's own L{TimeoutError}),
    a connect cancelled (L{ConnectingCancelledError}), a socket that
    could not be made for want of a file descriptor (connectTCP's
    L{ConnectBindError} with C{EMFILE}: 503, the proxy's own shortage);
  - L{NoResponseError}: the connection ended before any byte of a
    response, holding the reason it ended (a clean close, a reset, a TLS
    handshake or certificate failure);
  - L{ResponseTruncatedError}: it ended part-way through a response head
    or body, or the body was abandoned by its consumer;
  - L{squeak.http.response.MalformedResponseError}: the origin broke the
    protocol (a status line, a field, the framing or the chunking);
  - L{CancelledError}, when the caller gave up on a request;
  - a L{ProxyError} raised by a caller's hook (the access check on the
    address connected to), returned as it is.

L{error_for_failure} maps each of these, and nothing else, to an error name
(anything unexpected is C{ERR_GATEWAY_FAILURE} naming only its type).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import service_identity
from OpenSSL.SSL import Error as OpenSSLError
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.python.failure import Failure

from squeak.errors import ProxyError
from squeak.http.response import MalformedResponseError

__all__ = ["NoResponseError", "ResponseTruncatedError", "error_for_failure", "failure_of"]

#: L{Failure} wrapping an exception, typed: Twisted leaves
#: C{Failure.__init__} unannotated, so a direct call is an untyped call
#: under C{mypy --strict}.
failure_of: Callable[[BaseException], Failure] = Failure


class NoResponseError(Exception):
    """
    The connection to the origin ended before any byte of a response
    arrived (502 C{ERR_ZERO_SIZE_OBJECT}, or C{ERR_SECURE_CONNECT_FAIL}
    when TLS failed).

    @ivar cause: Why the connection ended.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class ResponseTruncatedError(Exception):
    """
    The connection to the origin ended part-way through a response head or
    body, or the body's consumer abandoned it (502 C{ERR_READ_ERROR}).
    Never a complete body: nothing ending this way is cached.

    @ivar cause: Why the connection ended.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


_CONNECTION_CLOSED = (ierror.ConnectionDone, ierror.ConnectionLost)
#: connectTCP's timeout (L{ierror.TimeoutError}), the kernel's ETIMEDOUT
#: (L{ierror.TCPTimedOutError}), and connects cancelled by the caller.
_CONNECT_TIMEOUTS = (
    ierror.TimeoutError,
    ierror.TCPTimedOutError,
    ierror.ConnectingCancelledError,
    defer.CancelledError,
)
#: A TLS handshake failure (pyOpenSSL), or a certificate that does not match
#: the host name (service_identity, through Twisted's client TLS options).
_TLS_FAILURES = (
    OpenSSLError,
    service_identity.VerificationError,
    service_identity.CertificateError,
)

#: A socket for the origin could not be made: the process (EMFILE) or the
#: system (ENFILE) is out of file descriptors (connectTCP's
#: L{ierror.ConnectBindError} carries the errno as C{osError}; a name
#: lookup's C{getaddrinfo} raises C{OSError} with it).
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def error_for_failure(reason: Failure | BaseException, *, host: str | None = None) -> ProxyError:
    """
    Map a failure from the origin side to the error to answer with.

    A timeout seen here is a connect timeout: the caller enforces its read
    timeout itself and raises its own L{ProxyError} (C{ERR_READ_TIMEOUT}),
    which, like any L{ProxyError}, is returned as it is.

    @param reason: The failure, or the exception itself.
    @param host: The origin's host name, mentioned in the detail when given.
    @return: The error; never raises.
    """
    exc = reason.value if isinstance(reason, Failure) else reason
    if exc is None:  # pragma: no cover - a Failure always has a value
        return ProxyError("ERR_GATEWAY_FAILURE", 500, "unexpected error: None")
    return _classify(exc, host)


def _classify(exc: BaseException, host: str | None) -> ProxyError:
    """
    Map one exception.

    @return: The error; C{ERR_GATEWAY_FAILURE} when nothing more specific fits.
    """
    on_host = f" {host}" if host else ""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, MalformedResponseError):
        return ProxyError("ERR_INVALID_RESP", 502, f"malformed response: {_text(exc)}")
    if isinstance(exc, NoResponseError):
        if isinstance(exc.cause, _CONNECTION_CLOSED):
            return ProxyError(
                "ERR_ZERO_SIZE_OBJECT", 502, "origin closed the connection without a response"
            )
        return _classify(exc.cause, host)
    if isinstance(exc, ResponseTruncatedError):
        if isinstance(exc.cause, _TLS_FAILURES):
            return _classify(exc.cause, host)
        return ProxyError(
            "ERR_READ_ERROR",
            502,
            f"connection lost before the response was complete: {_text(exc.cause)}",
        )
    if isinstance(exc, ierror.DNSLookupError):
        # DNSLookupError's str() adds "DNS lookup failed:"; its argument says enough.
        cause = _text(Exception(exc.args[0])) if exc.args and exc.args[0] else _text(exc)
        return ProxyError("ERR_DNS_FAIL", 503, f"cannot resolve host{on_host}: {cause}")
    if isinstance(exc, ierror.ConnectionRefusedError):
        return ProxyError("ERR_CONNECT_FAIL", 502, f"connection{_to(host)} refused")
    if isinstance(exc, _CONNECT_TIMEOUTS):
        return ProxyError("ERR_CONNECT_FAIL", 504, f"connect{_to(host)} timed out")
    if isinstance(exc, service_identity.VerificationError):
        return ProxyError(
            "ERR_SECURE_CONNECT_FAIL",
            502,
            f"TLS certificate of{on_host or ' the origin'} does not match its name",
        )
    if isinstance(exc, _TLS_FAILURES):
        return ProxyError(
            "ERR_SECURE_CONNECT_FAIL", 502, f"TLS connection{_to(host)} failed: {_text(exc)}"
        )
    shortage = _descriptor_shortage(exc)
    if shortage is not None:
        # The proxy's own fault, and passing: 503, not the origin's 502.
        return ProxyError(
            "ERR_CONNECT_FAIL",
            503,
            f"cannot connect{_to(host)}: the proxy has no file descriptor left "
            f"({errno.errorcode[shortage]}: {os.strerror(shortage)})",
        )
    if isinstance(exc, ierror.ConnectError):
        return ProxyError("ERR_CONNECT_FAIL", 502, f"cannot connect{_to(host)}: {_text(exc)}")
    return ProxyError("ERR_GATEWAY_FAILURE", 500, f"unexpected error: {type(exc).__name__}")


def _descriptor_shortage(exc: BaseException) -> int | None:
    """
    @return: C{EMFILE} or C{ENFILE} when C{exc} says the socket to the
        origin could not be made for want of a descriptor: connectTCP's
        L{ierror.ConnectBindError} (the errno in C{osError}), or the
        C{OSError} of a name lookup that could not open its own socket.
    """
    code = exc.osError if isinstance(exc, ierror.ConnectError) else None
    if isinstance(exc, OSError):
        code = exc.errno
    return code if code in _OUT_OF_DESCRIPTORS else None


def _to(host: str | None) -> str:
    """
    @return: C{" to HOST"}, or C{""} without a host.
    """
    return f" to {host}" if host else ""


def _text(exc: BaseException) -> str:
    """
    @return: The exception's message on one line, or its type name when the
        message is empty.
    """
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__
