# -*- test-case-name: tests.test_net_origin -*-
"""
An origin's response as the proxy sees it once its head is in: every field
as received, and a body streamed to one protocol with backpressure, whose
ending says how the body ended (L{squeak.errors.BodyComplete},
L{squeak.errors.BodyEndedByClose}, or a failure).

The bytes come from an L{squeak.net.connection.OriginConnection}; this
module only holds them until C{deliverBody} and hands them on.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.error import ConnectionAborted
from twisted.python.failure import Failure

from squeak.errors import BodyEnded
from squeak.http.fields import RawHeaders
from squeak.net.failures import ResponseTruncatedError, failure_of

__all__ = ["BodySource", "UpstreamResponse"]


class BodySource(Protocol):
    """
    Where a response's body bytes come from (an
    L{squeak.net.connection.OriginConnection}): what an L{UpstreamResponse}
    asks of it to pass on backpressure and to give up.  A protocol, so that
    this module does not import the connection that imports it.
    """

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading because the body's consumer is full."""

    def hold_reading(self, held: bool) -> None:
        """Hold (or release) reading until the body has a consumer."""

    def abort(self) -> None:
        """Close the connection at once: the body is not wanted."""


#: What an L{UpstreamResponse} keeps in place of its protocol once the body
#: was delivered whole (so that a second C{deliverBody} is still refused).
_BODY_DELIVERED: Any = object()


class UpstreamResponse:
    """
    An origin's response, delivered once its head is in.

    @ivar code: The status code.
    @ivar phrase: The reason phrase as received (may be empty).
    @ivar version: C{(b"HTTP", 1, minor)}.
    @ivar raw_headers: Every field line as received, in order, connection
        fields included (C{Connection}, C{Content-Length},
        C{Transfer-Encoding}, ...); callers remove hop-by-hop ones.
    @ivar length: The body length when known in advance (C{Content-Length};
        0 for HEAD, 101, 204 and 304), L{None} for chunked or close-delimited.
    @ivar content_length: The C{Content-Length} field's value when there is
        exactly one valid one, whatever the method (a HEAD response states the
        length of the body a GET would have); else L{None}.
    @ivar peer: The origin's address.

    It is also the transport given to the body protocol: C{pauseProducing}
    and C{resumeProducing} pause and resume reading from the origin;
    C{stopProducing} aborts the connection and ends the body with
    L{ResponseTruncatedError}.
    """

    __slots__ = (
        "_connection",
        "_delivering",
        "_ended",
        "_pending",
        "_pending_size",
        "_protocol",
        "code",
        "content_length",
        "length",
        "peer",
        "phrase",
        "raw_headers",
        "version",
    )

    #: Decoded body bytes held before C{deliverBody} is called; above this
    #: the origin is paused until a protocol takes them.
    hold_limit = 64 * 1024

    def __init__(
        self,
        code: int,
        phrase: bytes,
        minor: int,
        raw_headers: RawHeaders,
        length: int | None,
        content_length: int | None,
        peer: str,
        connection: BodySource | None,
    ) -> None:
        self.code = code
        self.phrase = phrase
        self.version = (b"HTTP", 1, minor)
        self.raw_headers = raw_headers
        self.length = length
        self.content_length = content_length
        self.peer = peer
        self._connection = connection
        self._protocol: Any = None
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._ended: Failure | None = None
        self._delivering = False

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.code} {self.phrase!r} length={self.length}>"

    # -- the consumer's side ---------------------------------------------

    def deliverBody(self, protocol: Any) -> None:
        """
        Give the body to C{protocol}: C{makeConnection(self)}, then
        C{dataReceived} for each piece, then C{connectionLost(reason)}.

        @raise RuntimeError: If called twice.
        """
        if self._protocol is not None:
            raise RuntimeError("deliverBody called twice")
        self._protocol = protocol
        self._delivering = True
        try:
            protocol.makeConnection(self)
            while self._pending:
                pending, self._pending = self._pending, None
                for chunk in pending:
                    if self._ended is not None and not isinstance(self._ended.value, BodyEnded):
                        break
                    protocol.dataReceived(chunk)
        finally:
            self._delivering = False
        if self._pending_size:
            self._pending_size = 0
            connection = self._connection
            if connection is not None:
                connection.hold_reading(False)
        if self._ended is not None:
            self._protocol = _BODY_DELIVERED
            protocol.connectionLost(self._ended)

    def pauseProducing(self) -> None:
        """
        Stop reading from the origin (the consumer is slow).
        """
        connection = self._connection
        if connection is not None:
            connection.pause_reading(True)

    def resumeProducing(self) -> None:
        """
        Read from the origin again.
        """
        connection = self._connection
        if connection is not None:
            connection.pause_reading(False)

    def stopProducing(self) -> None:
        """
        The body is not wanted: abort the connection (it is never pooled)
        and end the body with L{ResponseTruncatedError}.
        """
        connection = self._connection
        if connection is None or self._ended is not None:
            return
        self._connection = None
        connection.abort()
        self._end(failure_of(ResponseTruncatedError(ConnectionAborted("body not wanted"))))

    # -- the connection's side -------------------------------------------

    def _data(self, data: bytes) -> None:
        if self._ended is not None:
            return
        protocol = self._protocol
        if protocol is not None and not self._delivering:
            protocol.dataReceived(data)
            return
        if self._pending is None:
            self._pending = []
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > self.hold_limit and self._connection is not None:
            self._connection.hold_reading(True)

    def _end(self, reason: Failure) -> None:
        if self._ended is not None:
            return
        self._ended = reason
        self._connection = None
        protocol = self._protocol
        if protocol is not None and not self._delivering:
            # Let go of the protocol, which holds this response as its
            # transport: the pair is then freed by reference counting, not
            # left for the cyclic garbage collector (docs/performance.md).
            self._protocol = _BODY_DELIVERED
            protocol.connectionLost(reason)
