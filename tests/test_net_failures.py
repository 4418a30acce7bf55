# -*- test-case-name: tests.test_net_failures -*-
"""
Tests for L{squeak.net.failures}: the one mapping from the origin side's
failures to the L{ProxyError} answered.

Each row is a failure something in squeak or Twisted actually raises on the
origin side (the endpoint's connect errors, L{squeak.net.connection}'s
L{NoResponseError}, L{ResponseTruncatedError} and
L{MalformedResponseError}, TLS failures inside them); anything else is
C{ERR_GATEWAY_FAILURE} naming only its type.
"""

from __future__ import annotations

import service_identity
from OpenSSL.SSL import Error as OpenSSLError
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squeak.errors import ProxyError
from squeak.http.response import MalformedResponseError
from squeak.net.failures import NoResponseError, ResponseTruncatedError, error_for_failure

MAPPING = [  # (why, failure or exception, host, (name, status), detail must contain)
    (
        "DNS failure, bare",
        ierror.DNSLookupError("no results for hostname lookup: nx.test"),
        None,
        ("ERR_DNS_FAIL", 503),
        "cannot resolve host",
    ),
    (
        "DNS failure names the host when given",
        Failure(ierror.DNSLookupError("no results for hostname lookup: nx.test")),
        "nx.test",
        ("ERR_DNS_FAIL", 503),
        "cannot resolve host nx.test: no results",
    ),
    (
        "connection refused",
        Failure(ierror.ConnectionRefusedError(osError=111)),
        "o.test",
        ("ERR_CONNECT_FAIL", 502),
        "connection to o.test refused",
    ),
    (
        "connectTCP's own timeout",
        ierror.TimeoutError(),
        None,
        ("ERR_CONNECT_FAIL", 504),
        "connect timed out",
    ),
    (
        "the kernel's ETIMEDOUT",
        Failure(ierror.TCPTimedOutError()),
        None,
        ("ERR_CONNECT_FAIL", 504),
        "connect timed out",
    ),
    (
        "an endpoint connect cancelled",
        ierror.ConnectingCancelledError(None),
        "o.test",
        ("ERR_CONNECT_FAIL", 504),
        "connect to o.test timed out",
    ),
    (
        "a bare CancelledError: the request was cancelled",
        Failure(defer.CancelledError()),
        None,
        ("ERR_CONNECT_FAIL", 504),
        "connect timed out",
    ),
    (
        "origin closed cleanly before any response byte",
        Failure(NoResponseError(ierror.ConnectionDone())),
        None,
        ("ERR_ZERO_SIZE_OBJECT", 502),
        "without a response",
    ),
    (
        "origin reset before any response byte",
        NoResponseError(ierror.ConnectionLost()),
        None,
        ("ERR_ZERO_SIZE_OBJECT", 502),
        "without a response",
    ),
    (
        "origin closed part-way through the response head",
        ResponseTruncatedError(ierror.ConnectionDone()),
        None,
        ("ERR_READ_ERROR", 502),
        "before the response was complete",
    ),
    (
        "body cut short by a reset",
        Failure(ResponseTruncatedError(ierror.ConnectionLost())),
        None,
        ("ERR_READ_ERROR", 502),
        "before the response was complete",
    ),
    (
        "body abandoned by its consumer",
        ResponseTruncatedError(ierror.ConnectionAborted("body not wanted")),
        None,
        ("ERR_READ_ERROR", 502),
        "body not wanted",
    ),
    (
        "a response the reader refused",
        Failure(MalformedResponseError("bad status line b'HTTP/9.9 000'")),
        None,
        ("ERR_INVALID_RESP", 502),
        "malformed response: bad status line",
    ),
    (
        "no route to host carries the error text",
        ierror.NoRouteError(osError=113),
        "o.test",
        ("ERR_CONNECT_FAIL", 502),
        "cannot connect to o.test: No route to host",
    ),
    (
        "no descriptor for the origin's socket (connectTCP, EMFILE): the proxy's "
        "own shortage, 503, named",
        Failure(ierror.ConnectBindError(24, "Too many open files")),
        "o.test",
        ("ERR_CONNECT_FAIL", 503),
        "cannot connect to o.test: the proxy has no file descriptor left "
        "(EMFILE: Too many open files)",
    ),
    (
        "the system is out of descriptors (ENFILE)",
        ierror.ConnectBindError(23, "Too many open files in system"),
        None,
        ("ERR_CONNECT_FAIL", 503),
        "(ENFILE: Too many open files in system)",
    ),
    (
        "a name lookup that could not open its socket (getaddrinfo's EAI_SYSTEM)",
        Failure(OSError(24, "Too many open files")),
        "o.test",
        ("ERR_CONNECT_FAIL", 503),
        "(EMFILE: Too many open files)",
    ),
    (
        "a generic ConnectError carries the error text",
        Failure(ierror.ConnectError(string="boom")),
        None,
        ("ERR_CONNECT_FAIL", 502),
        "boom",
    ),
    (
        "TLS handshake failure before any response byte",
        NoResponseError(OpenSSLError([("SSL routines", "", "bad cert")])),
        None,
        ("ERR_SECURE_CONNECT_FAIL", 502),
        "TLS connection failed",
    ),
    (
        "certificate for another name",
        Failure(NoResponseError(service_identity.VerificationError(errors=[]))),
        "o.test",
        ("ERR_SECURE_CONNECT_FAIL", 502),
        "TLS certificate of o.test does not match its name",
    ),
    (
        "TLS failure part-way through a response",
        ResponseTruncatedError(OpenSSLError([("SSL routines", "", "bad record mac")])),
        None,
        ("ERR_SECURE_CONNECT_FAIL", 502),
        "TLS connection failed",
    ),
    (
        "anything else is a gateway failure naming the type",
        Failure(KeyError("secret")),
        None,
        ("ERR_GATEWAY_FAILURE", 500),
        "KeyError",
    ),
    (
        "a bare ValueError is not guessed to be a bad response",
        ValueError("x"),
        None,
        ("ERR_GATEWAY_FAILURE", 500),
        "ValueError",
    ),
]


class ErrorForFailureTests(SynchronousTestCase):
    """
    Tests for L{error_for_failure}.
    """

    def test_mapping_table(self) -> None:
        """
        Each row's failure maps to the expected error name and status, and
        the detail says what happened.
        """
        wrong = []
        for why, reason, host, want, needle in MAPPING:
            got = error_for_failure(reason, host=host)
            if (got.name, got.status) != want or needle not in got.detail:
                wrong.append((why, (got.name, got.status, got.detail), want, needle))
        self.assertEqual(wrong, [])

    def test_details_are_one_line(self) -> None:
        """
        Every detail is a single line of text, fit for a log and a page.
        """
        wrong = [
            (why, detail)
            for why, reason, host, _, _ in MAPPING
            if "\n" in (detail := error_for_failure(reason, host=host).detail) or not detail
        ]
        self.assertEqual(wrong, [])

    def test_proxy_error_returned_as_is(self) -> None:
        """
        A L{ProxyError}, such as the caller's own read timeout or the access
        check's refusal, is returned unchanged, bare or in a L{Failure}.
        """
        e = ProxyError("ERR_READ_TIMEOUT", 504, "no response within 300s")
        self.assertIs(error_for_failure(e), e)
        self.assertIs(error_for_failure(Failure(e)), e)

    def test_unknown_error_does_not_leak_message(self) -> None:
        """
        An unexpected exception's message (which may hold internals) is not
        put into the detail; only its type is.
        """
        got = error_for_failure(RuntimeError("password=hunter2"))
        self.assertNotIn("hunter2", got.detail)
