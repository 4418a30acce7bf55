# -*- test-case-name: tests.test_net_origin -*-
"""
Requests to origin servers: squeak's own lean, strict HTTP/1.1 client and
connection pool.

Why not Twisted's L{Agent}: profiled under load (docs/performance.md), Agent
and its C{_newclient} parser, its L{HTTPConnectionPool} and the L{Deferred}s
between them cost most of the proxy's per-request CPU, and a new
L{HostnameEndpoint} (with IDNA decoding) was built for every request even
when a pooled connection was waiting.  Agent also hides what a proxy must
see and control: it keeps the connection-level response fields
(C{Connection}, C{Content-Length}, C{Transfer-Encoding}) apart, drops 1xx
responses (101 included), and its pool could only be given a strict parser
through private hooks.  A proxy needs exact control of framing and reuse
anyway, so this module does the wire work itself:

  - L{_UpstreamConnection} is one origin connection.  It writes a request
    head in one C{write} (the body of a small request goes in the same
    write; a large one is streamed from its spool file with backpressure by
    L{_BodySender}), parses the response head strictly (bounded size and
    field count, no obs-fold, field names must be tokens, RFC 9112 §2-§5),
    checks framing with L{squeak.http.fields.check_response_framing} before
    choosing how to read the body (RFC 9112 §6.3), skips interim 1xx
    responses (returning 101 as a bodiless response), and decodes
    C{Content-Length}, chunked (RFC 9112 §7.1) and close-delimited bodies
    as they arrive, never buffering a whole body.  No L{Deferred} is used
    on this path except the one per request that the caller gets.
  - L{UpstreamResponse} carries every field as received (C{raw_headers})
    and gives the body to a protocol through C{deliverBody}, with
    Twisted's contract: L{ResponseDone} for a complete body,
    L{PotentialDataLoss} for a close-delimited one ended by the close, and
    L{ResponseFailed} for anything else (truncation, bad chunking, a
    C{stopProducing}).
  - L{UpstreamClient} pools connections per C{(scheme, host, port)}: LIFO
    reuse, a connection goes back only after a response read completely and
    unambiguously that did not end the connection (C{Connection: close}, or
    HTTP/1.0 without keep-alive), at most C{max_idle_per_host} idle per
    origin, closed after C{idle_timeout}.  A request on a reused connection
    that dies before any response byte is retried once on a new connection
    when the method is idempotent and the body can be re-read (the
    keep-alive race, RFC 9112 §9.3.1).  Endpoints (with TLS for https) are
    built once per origin and cached.

Failures use Twisted's wrapper exceptions so L{squeak.errors} maps them as
before: L{ResponseNeverReceived} (closed before any response byte: 502
ERR_ZERO_SIZE_OBJECT, or a TLS failure: ERR_SECURE_CONNECT_FAIL),
L{ResponseFailed} holding a L{MalformedResponseError} or
L{squeak.http.fields.FramingError} (502 ERR_INVALID_RESP), and the endpoint's
own connect errors (DNS: 503 ERR_DNS_FAIL; refused: 502 ERR_CONNECT_FAIL).
Cancelling the L{Deferred} returned by L{UpstreamClient.request} aborts its
connection, which is never pooled again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, Any

from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.http import PotentialDataLoss, _DataLoss

from squeak.http.fields import FramingError, RawHeaders, check_response_framing
from squeak.http.request import (
    CHUNK_SIZE_LINE,
    FIELD_LINE,
    TOKEN,
    MessageError,
    persists,
    read_field_lines,
)
from squeak.net.tunnel import BULK_READ_SIZE
from squeak.net.wire import DIRECT, Sender

__all__ = [
    "FramingError",
    "MalformedResponseError",
    "UpstreamClient",
    "UpstreamResponse",
    "tls_policy",
]

#: RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
#: The second SP is tolerated when the reason is absent.
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")

#: Methods that may be retried on a new connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: Methods for which an absent body is sent as C{Content-Length: 0}
#: (RFC 9110 §8.6: a user agent SHOULD send it when the method defines a
#: meaning for content).
_EXPECTS_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
#: Request fields written by this module from the body, never copied.
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})
#: The response fields the head parser decides on.
_WATCHED_FIELDS = _FRAMING_FIELDS | {b"connection"}
#: Statuses whose responses never have content (RFC 9112 §6.3 item 1).
_NO_BODY = frozenset({204, 304})

# Connection states.
_NEW = 0  # connected, not yet given a request
_IDLE = 1  # in the pool
_HEAD = 2  # request sent, reading the response head
_BODY_LENGTH = 3  # reading a Content-Length body
_BODY_CLOSE = 4  # reading a close-delimited body
_CHUNK_SIZE_LINE = 5
_CHUNK_DATA = 6
_CHUNK_CRLF = 7
_TRAILER = 8
_CLOSED = 9
_NO_CONTENT = 10  # a bodiless response handed over, to be completed

_CONNECTION_DONE = Failure(ConnectionDone())
# Shared, like _CONNECTION_DONE: every complete response ends with it, and a
# Failure costs microseconds to build.
_RESPONSE_DONE = Failure(ResponseDone("Response body fully received"))


class MalformedResponseError(Exception):
    """
    An origin sent a response that cannot be parsed: a bad status line, a
    field line that is not C{token ":" value}, obs-fold, an oversized head,
    bad chunking (RFC 9112 §2-§7).  Mapped to 502 C{ERR_INVALID_RESP} by
    L{squeak.errors.error_for_failure}.

    @ivar detail: One line saying what was wrong.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def tls_policy(ca_file: str) -> BrowserLikePolicyForHTTPS:
    """
    The certificate policy for C{https://} origins: browser-like
    verification (chain and host name, through C{service_identity}) against
    the system's trust store, or against the CAs in C{ca_file}.
    """
    if not ca_file:
        return BrowserLikePolicyForHTTPS()
    with open(ca_file, "rb") as handle:
        pem = handle.read()
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    return BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certificates))


def _response_failed(reason: BaseException | Failure, *more: BaseException) -> ResponseFailed:
    """
    A L{ResponseFailed} holding C{reason} and C{more} as failures.
    """
    first = reason if isinstance(reason, Failure) else Failure(reason)
    return ResponseFailed([first, *(Failure(exc) for exc in more)])


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
    L{ResponseFailed}.
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
        connection: _UpstreamConnection | None,
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
                    if self._ended is not None and not isinstance(
                        self._ended.value, (ResponseDone, PotentialDataLoss)
                    ):
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
        and end the body with L{ResponseFailed}.
        """
        connection = self._connection
        if connection is None or self._ended is not None:
            return
        self._connection = None
        connection.abort()
        self._end(Failure(_response_failed(ConnectionAborted("body not wanted"))))

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


class _Exchange:
    """
    One request, from L{UpstreamClient.request} until its response head
    (across one retry).
    """

    __slots__ = (
        "body",
        "body_length",
        "body_start",
        "check_peer",
        "client",
        "connecting",
        "connection",
        "deferred",
        "done",
        "head",
        "key",
        "method",
        "retried",
        "reused",
        "small_body",
    )

    def __init__(
        self,
        client: UpstreamClient,
        key: tuple[str, str, int],
        method: bytes,
        head: bytes,
        body: IO[bytes] | None,
        body_start: int,
        body_length: int | None,
        small_body: bytes | None,
    ) -> None:
        self.client = client
        self.key = key
        self.method = method
        self.head = head
        self.body = body
        self.body_start = body_start
        self.body_length = body_length
        self.small_body = small_body
        self.deferred: Deferred[UpstreamResponse] = Deferred(self._cancel)
        self.connecting: Deferred[Any] | None = None
        self.connection: _UpstreamConnection | None = None
        self.reused = False
        self.retried = False
        self.done = False
        self.check_peer: Callable[[str], None] | None = None

    def may_retry(self) -> bool:
        """
        Whether a failure before any response byte may be retried on a new
        connection: once, idempotent methods only, and only when the body
        can be sent again.
        """
        if self.retried or not self.reused or self.method not in IDEMPOTENT:
            return False
        if self.body is None or self.small_body is not None:
            return True
        try:
            self.body.seek(self.body_start)
        except (AttributeError, OSError, ValueError):
            return False
        return True

    def respond(self, response: UpstreamResponse) -> None:
        if self.done:
            return
        self.done = True
        self.connection = None
        self.deferred.callback(response)

    def fail(self, reason: Failure | BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.connection = None
        self.deferred.errback(reason if isinstance(reason, Failure) else Failure(reason))

    def _cancel(self, _: Deferred[UpstreamResponse]) -> None:
        """
        The caller gave up (read timeout, client gone): abort the
        connection; the L{Deferred} then fails with L{CancelledError}.
        """
        self.done = True
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()


class _BodySender:
    """
    Streams a large request body from its spool file: a push producer that
    reads a block whenever the connection can take more.
    """

    BLOCK = 64 * 1024

    def __init__(
        self, connection: _UpstreamConnection, body: IO[bytes], length: int | None
    ) -> None:
        self._connection = connection
        self._body = body
        self._remaining = length
        self._paused = False
        self.done = False

    def start(self) -> None:
        self._connection.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        connection = self._connection
        while not self._paused and not self.done:
            remaining = self._remaining
            size = self.BLOCK if remaining is None else min(self.BLOCK, remaining)
            data = self._body.read(size) if size else b""
            if remaining is None:
                # Unknown length: chunked (RFC 9112 §7.1).
                if data:
                    connection.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    connection.write(b"0\r\n\r\n")
                    self._finish(True)
                continue
            if size and not data:
                # The file is shorter than the length sent: the framing is
                # broken, so the connection is.
                self._finish(False)
                return
            self._remaining = remaining - len(data)
            if data:
                connection.write(data)
            if self._remaining == 0:
                self._finish(True)

    def stopProducing(self) -> None:
        self.done = True

    def _finish(self, complete: bool) -> None:
        self.done = True
        transport = self._connection.transport
        transport.unregisterProducer()
        self._connection.body_sent(complete)


class _UpstreamConnection(Protocol):
    """
    One connection to an origin, carrying one request at a time.

    @ivar key: C{(scheme, host, port)}, the pool key.
    @ivar peer: The origin's address, for the access log.
    @ivar idle_since: When it last went back to the pool.
    @ivar reused: Whether it has carried a request before.
    """

    #: Most bytes of a response head (status line and fields).
    max_head_size = 64 * 1024
    #: Most field lines in a head, or in a chunked body's trailer section.
    max_fields = 500
    #: Longest chunk-size line, extensions included.
    max_chunk_line = 4096

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int]) -> None:
        self._client = client
        self.key = key
        self.peer = "-"
        self.idle_since = 0.0
        self.reused = False
        self._state = _NEW
        self._buffer = b""
        self._exchange: _Exchange | None = None
        self._response: UpstreamResponse | None = None
        self._method = b""
        self._got_bytes = False
        self._keep_alive = False
        self._remaining = 0
        self._trailer_lines = 0
        self._sender: _BodySender | None = None
        self._body_pending = False
        self._paused_by_consumer = False
        self._held = False
        self._reading_paused = False
        self._lost: list[Deferred[None]] = []

    # -- Protocol -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = getattr(self.transport.getPeer(), "host", "-")
        # Response bodies are bulk data: read 512 KiB per recv(), not 64 KiB.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = BULK_READ_SIZE
        if ITCPTransport.providedBy(self.transport):
            # A request head and its body are separate writes: with Nagle's
            # algorithm the body's first segment could wait for the origin's
            # delayed ACK of the head.
            self.transport.setTcpNoDelay(True)
        self._client._opened(self)

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _BODY_LENGTH and not self._buffer:
            self._length_body(data)
            return
        if state == _CLOSED:
            return
        if state in (_IDLE, _NEW):
            # Nothing was asked: an origin that talks now breaks framing.
            self._client._drop_idle(self)
            self.close()
            return
        self._got_bytes = True
        self._buffer = self._buffer + data if self._buffer else data
        try:
            self._advance()
        except (MalformedResponseError, FramingError) as error:
            self._protocol_error(error)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        state, self._state = self._state, _CLOSED
        self._client._closed(self)
        lost, self._lost = self._lost, []
        for waiter in lost:
            waiter.callback(None)
        if self._sender is not None:
            self._sender.stopProducing()
            self._sender = None
        if state == _IDLE:
            self._client._drop_idle(self)
            return
        if state == _HEAD:
            exchange, self._exchange = self._exchange, None
            if exchange is None or exchange.done:
                return
            if not self._got_bytes and exchange.may_retry():
                self._client._retry(exchange)
                return
            if self._got_bytes:
                exchange.fail(_response_failed(reason, _DataLoss()))
            else:
                exchange.fail(ResponseNeverReceived([reason]))
            return
        response, self._response = self._response, None
        if response is None:
            return
        if state == _BODY_CLOSE:
            # RFC 9112 §6.3 item 8: the close ends the body, which may or
            # may not be all of it.
            response._end(Failure(PotentialDataLoss()))
        elif _BODY_LENGTH <= state <= _TRAILER:
            response._end(Failure(_response_failed(reason, _DataLoss())))

    # -- requests -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Write request bytes through the client's sender.  Every write of a
        request comes here, so their order is kept.
        """
        self._client.sender.write(self.transport, data)

    def send(self, exchange: _Exchange) -> None:
        """
        Write C{exchange}'s request and wait for its response.
        """
        self._exchange = exchange
        exchange.connection = self
        exchange.reused = self.reused
        self.reused = True
        self._state = _HEAD
        self._method = exchange.method
        self._got_bytes = False
        self._buffer = b""
        body = exchange.body
        if body is None or exchange.small_body is not None:
            self._body_pending = False
            self.write(
                exchange.head + exchange.small_body if exchange.small_body else exchange.head
            )
            return
        self._body_pending = True
        self.write(exchange.head)
        if exchange.retried:
            body.seek(exchange.body_start)
        self._sender = _BodySender(self, body, exchange.body_length)
        self._sender.start()

    def body_sent(self, complete: bool) -> None:
        """
        The request body has been written (or could not be).
        """
        self._sender = None
        self._body_pending = False
        if not complete:
            self.abort()

    # -- parsing ------------------------------------------------------------

    def _advance(self) -> None:
        """
        Consume C{self._buffer} as far as the current state allows.
        """
        while True:
            state = self._state
            buffer = self._buffer
            if state == _HEAD:
                if not self._parse_head():
                    return
            elif state == _BODY_LENGTH:
                self._buffer = b""
                if buffer:
                    self._length_body(buffer)
                return
            elif state == _CHUNK_DATA:
                if not buffer:
                    return
                left = self._remaining
                if len(buffer) < left:
                    self._buffer = b""
                    self._remaining = left - len(buffer)
                    self._deliver(buffer)
                    return
                self._buffer = buffer[left:]
                self._state = _CHUNK_CRLF
                self._deliver(buffer[:left])
            elif state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    if buffer and buffer != b"\r":
                        raise MalformedResponseError("chunk data not followed by CRLF")
                    return
                if buffer[:2] != b"\r\n":
                    raise MalformedResponseError("chunk data not followed by CRLF")
                self._buffer = buffer[2:]
                self._state = _CHUNK_SIZE_LINE
            elif state == _CHUNK_SIZE_LINE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > self.max_chunk_line:
                        raise MalformedResponseError("chunk-size line too long")
                    return
                match = CHUNK_SIZE_LINE.fullmatch(buffer, 0, end)
                if match is None:
                    raise MalformedResponseError(f"bad chunk-size line {buffer[: min(end, 40)]!r}")
                size = int(match.group(1), 16)
                self._buffer = buffer[end + 2 :]
                if size:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                else:
                    self._trailer_lines = 0
                    self._state = _TRAILER
            elif state == _TRAILER:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > self.max_head_size:
                        raise MalformedResponseError("trailer section too large")
                    return
                self._buffer = buffer[end + 2 :]
                if end == 0:
                    self._complete()
                    return
                # Trailer fields are read and dropped (RFC 9112 §7.1.2).
                self._trailer_lines += 1
                if self._trailer_lines > self.max_fields or not FIELD_LINE.fullmatch(
                    buffer, 0, end
                ):
                    raise MalformedResponseError("malformed or too many trailer fields")
            elif state == _BODY_CLOSE:
                self._buffer = b""
                if buffer:
                    self._deliver(buffer)
                return
            else:
                # _IDLE after a complete response with bytes left over, or
                # _CLOSED: nothing more is read.
                self._buffer = b""
                return

    def _parse_head(self) -> bool:
        """
        Parse one response head from the buffer.

        @return: Whether one was consumed (the state changed).
        @raise MalformedResponseError: For a head that breaks RFC 9112.
        """
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > self.max_head_size:
                raise MalformedResponseError(
                    f"response head larger than {self.max_head_size} bytes"
                )
            return False
        if end > self.max_head_size:
            raise MalformedResponseError(f"response head larger than {self.max_head_size} bytes")
        lines = buffer[:end].split(b"\r\n")
        self._buffer = buffer[end + 4 :]
        status = _STATUS_LINE.fullmatch(lines[0])
        if status is None:
            raise MalformedResponseError(f"bad status line {lines[0][:80]!r}")
        minor = int(status.group(1))
        code = int(status.group(2))
        if len(lines) > self.max_fields + 1:
            raise MalformedResponseError(f"more than {self.max_fields} response fields")
        try:
            fields, watched = read_field_lines(lines[1:], _WATCHED_FIELDS, why_bad=_why_bad_field)
        except MessageError as error:
            raise MalformedResponseError(error.detail) from None
        framing = [(name, value) for name, value in watched if name in _FRAMING_FIELDS]
        if 100 <= code < 200 and code != 101:
            # Interim responses (100, 102, 103, ...) are read and dropped
            # (RFC 9110 §15.2); the final response follows.
            return True
        method = self._method
        content_length = None
        lengths = [v for n, v in framing if n == b"content-length"]
        if len(lengths) == 1 and _DIGITS.fullmatch(lengths[0]):
            content_length = int(lengths[0])
        keep_alive = persists(minor >= 1, watched)
        if method == b"HEAD" or code in _NO_BODY or code == 101:
            # RFC 9112 §6.3 item 1: no content, whatever the fields say.
            length: int | None = 0
            state = _NO_CONTENT
            if code == 101:
                keep_alive = False  # the connection now speaks another protocol
        else:
            if framing:
                check_response_framing(framing)
            if any(n == b"transfer-encoding" for n, _ in framing):
                length, state = None, _CHUNK_SIZE_LINE
            elif content_length is not None:
                length = content_length
                state = _BODY_LENGTH if length else _NO_CONTENT
            else:
                # RFC 9112 §6.3 item 8: read until the connection closes.
                length, state, keep_alive = None, _BODY_CLOSE, False
        self._keep_alive = keep_alive
        self._remaining = length or 0
        phrase = status.group(3) or b""
        response = UpstreamResponse(
            code, phrase, minor, fields, length, content_length, self.peer, self
        )
        self._response = response
        exchange, self._exchange = self._exchange, None
        self._state = state
        if exchange is not None:
            exchange.respond(response)
        if self._state == _NO_CONTENT and self._response is response:
            self._complete()
        return True

    def _length_body(self, data: bytes) -> None:
        left = self._remaining
        size = len(data)
        if size < left:
            self._remaining = left - size
            self._deliver(data)
            return
        if size == left:
            self._deliver(data)
            extra = b""
        else:
            self._deliver(data[:left])
            extra = data[left:]
        if self._state == _BODY_LENGTH:
            self._buffer = extra
            self._complete()

    def _deliver(self, data: bytes) -> None:
        response = self._response
        if response is not None:
            response._data(data)

    def _complete(self) -> None:
        """
        The response was read completely: pool the connection if it may be
        reused, then end the body with L{ResponseDone}.
        """
        response, self._response = self._response, None
        leftover = self._buffer
        self._buffer = b""
        if response is not None:
            response._connection = None
        if self._keep_alive and not leftover and not self._body_pending:
            self._state = _IDLE
            self._held = self._paused_by_consumer = False
            self._sync_reading()
            self._client._put_idle(self)
        else:
            self.close()
        if response is not None:
            response._end(_RESPONSE_DONE)

    def _protocol_error(self, error: Exception) -> None:
        """
        The origin broke the protocol: fail the request or the body, and
        drop the connection.
        """
        exchange, self._exchange = self._exchange, None
        response, self._response = self._response, None
        self.abort()
        failure = Failure(_response_failed(error))
        if response is not None:
            response._end(failure)
        elif exchange is not None:
            exchange.fail(failure)

    # -- flow control -------------------------------------------------------

    def pause_reading(self, paused: bool) -> None:
        """
        The body's consumer asks to pause or resume.
        """
        self._paused_by_consumer = paused
        self._sync_reading()

    def hold_reading(self, held: bool) -> None:
        """
        Pause while decoded body bytes wait for C{deliverBody}.
        """
        self._held = held
        self._sync_reading()

    def _sync_reading(self) -> None:
        want = self._paused_by_consumer or self._held
        if want == self._reading_paused or self._state == _CLOSED:
            return
        self._reading_paused = want
        if want:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    # -- ending -------------------------------------------------------------

    def usable(self) -> bool:
        """
        Whether an idle connection can carry a request.
        """
        transport = self.transport
        return self._state == _IDLE and not getattr(transport, "disconnecting", False)

    def close(self) -> None:
        """
        Close cleanly (an idle connection, or one not to be reused).
        """
        if self._state != _CLOSED:
            self._state = _CLOSED
            self._stop_sending()
            self._client.sender.flush(self.transport)
            self.transport.loseConnection()

    def _stop_sending(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done:
            sender.stopProducing()
            self.transport.unregisterProducer()

    def abort(self) -> None:
        """
        Close at once, dropping whatever is in flight.
        """
        self._exchange = None
        if self._state != _CLOSED:
            self._state = _CLOSED
            self._client._forget(self)
            self._stop_sending()
            self.transport.abortConnection()

    def when_lost(self) -> Deferred[None]:
        """
        A L{Deferred} that fires when the connection is lost.
        """
        waiter: Deferred[None] = Deferred()
        self._lost.append(waiter)
        return waiter


def _why_bad_field(line: bytes) -> str:
    """
    Say why a response field line was refused (RFC 9112 §5).
    """
    if line[:1] in (b" ", b"\t"):
        return "obsolete line folding in a response field (RFC 9112 §5.2)"
    name, colon, _value = line.partition(b":")
    if not colon:
        return f"response field line without a colon: {line[:40]!r}"
    if not re.fullmatch(TOKEN, name):
        return f"invalid response field name {name[:40]!r}"
    return f"invalid characters in response field {name[:40]!r}"


class _ConnectionFactory(ClientFactory):
    """
    Builds L{_UpstreamConnection}s for one origin.
    """

    noisy = False

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int]) -> None:
        self._client = client
        self._key = key

    def buildProtocol(self, addr: Any) -> _UpstreamConnection:
        connection = _UpstreamConnection(self._client, self._key)
        connection.factory = self
        return connection


class UpstreamClient:
    """
    Sends requests to origins over pooled persistent connections.

    @ivar max_idle_per_host: Most idle connections kept per origin.
    @ivar idle_timeout: Seconds an idle connection is kept.
    """

    #: Most origins whose endpoints are kept.
    max_endpoints = 4096

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        connect_timeout: float,
        max_idle_per_host: int,
        idle_timeout: float,
        ca_file: str = "",
        endpoint_factory: Callable[[str, str, int], Any] | None = None,
        sender: Sender = DIRECT,
    ) -> None:
        """
        @param connect_timeout: Seconds to wait for a TCP connection.
        @param max_idle_per_host: Most idle pooled connections per origin.
        @param idle_timeout: Seconds an idle pooled connection is kept.
        @param ca_file: PEM CAs to verify https origins against; the
            system's trust store when empty.
        @param endpoint_factory: Builds the endpoint for C{(scheme, host,
            port)}; by default a L{HostnameEndpoint}, TLS-wrapped for https
            (tests pass fakes).
        @param sender: Writes requests: the proxy's L{SendBatcher} sends
            a reactor turn's writes together; by default they are written
            at once.
        """
        self._reactor: Any = reactor
        self.sender = sender
        self._endpoint_factory = endpoint_factory or self._default_endpoint
        self._connect_timeout = connect_timeout
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._policy = tls_policy(ca_file)
        self._idle: dict[tuple[str, str, int], list[_UpstreamConnection]] = {}
        self._endpoints: dict[tuple[str, str, int], tuple[Any, _ConnectionFactory]] = {}
        self._open: set[_UpstreamConnection] = set()
        self._sweep: Any = None

    # -- endpoints ----------------------------------------------------------

    def _endpoint_for(self, key: tuple[str, str, int]) -> tuple[Any, _ConnectionFactory]:
        found = self._endpoints.get(key)
        if found is not None:
            return found
        if len(self._endpoints) >= self.max_endpoints:
            del self._endpoints[next(iter(self._endpoints))]
        found = (self._endpoint_factory(*key), _ConnectionFactory(self, key))
        self._endpoints[key] = found
        return found

    def _default_endpoint(self, scheme: str, host: str, port: int) -> Any:
        """
        A L{HostnameEndpoint} with the connect timeout; TLS with browser-like
        verification for C{https}.
        """
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        # HostnameEndpoint resolves names off the reactor thread and tries
        # every address (happy eyeballs), so IPv6 and IPv4 origins both work.
        endpoint: Any = HostnameEndpoint(self._reactor, host, port, timeout=self._connect_timeout)
        if scheme == "https":
            hostname = host.encode("ascii") if host.isascii() else host.encode("idna")
            creator = self._policy.creatorForNetloc(hostname, port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def endpoint(self, scheme: str, host: str, port: int) -> Any:
        """
        The (cached) endpoint to an origin, TLS-verified for https: for raw
        exchanges such as protocol upgrades, whose connections are not
        pooled.
        """
        return self._endpoint_for((scheme, host, port))[0]

    # -- requests -----------------------------------------------------------

    def request(
        self,
        method: bytes,
        target: Any,
        headers: RawHeaders,
        body: IO[bytes] | None,
        *,
        check_peer: Callable[[str], None] | None = None,
    ) -> Deferred[UpstreamResponse]:
        """
        Send one request; the L{Deferred} fires with the response once its
        head is in.  Cancelling it aborts the connection.

        @param target: A L{squeak.http.target.Target} (scheme, host, port, path),
            or an absolute URI as bytes.
        @param headers: Complete end-to-end request fields, C{Host} first;
            C{Content-Length} and C{Transfer-Encoding} are written here from
            C{body}, never copied.
        @param body: A file to send from its current position to its end
            (with C{Content-Length}), or L{None} for no body.
        @param check_peer: Called with the remote address of the connection
            chosen for the request (new or pooled) before anything is sent
            on it; an exception it raises fails the request instead, and
            the connection stays in the pool.  The proxy checks there that
            the access rules allow the address actually connected to.
        """
        if isinstance(target, bytes):
            from squeak.http.target import TargetError, parse_absolute_target

            try:
                target = parse_absolute_target(target)
            except TargetError as error:
                return fail(error)
        key = (target.scheme, target.host, target.port)
        small_body: bytes | None = None
        body_start = 0
        length: int | None = None
        if body is not None:
            try:
                body_start = body.tell()
                length = body.seek(0, 2) - body_start
                body.seek(body_start)
            except (AttributeError, OSError, ValueError):
                length = None
            if length is not None and length <= _BodySender.BLOCK:
                small_body = body.read(length)
        lines = [b"%s %s HTTP/1.1" % (method, target.path)]
        if headers and headers[0][0].lower() != b"host":
            headers = sorted(headers, key=lambda field: field[0].lower() != b"host")
        lines += [
            name + b": " + value for name, value in headers if name.lower() not in _FRAMING_FIELDS
        ]
        if body is not None:
            if length is None:
                lines.append(b"Transfer-Encoding: chunked")
            else:
                lines.append(b"Content-Length: %d" % length)
        elif method in _EXPECTS_BODY:
            lines.append(b"Content-Length: 0")
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        exchange = _Exchange(self, key, method, head, body, body_start, length, small_body)
        exchange.check_peer = check_peer
        self._dispatch(exchange)
        return exchange.deferred

    def _dispatch(self, exchange: _Exchange, *, fresh: bool = False) -> None:
        if not fresh:
            idle = self._idle.get(exchange.key)
            while idle:
                connection = idle.pop()
                if connection.usable():
                    self._send_on(connection, exchange)
                    return
                connection.close()
        endpoint, factory = self._endpoint_for(exchange.key)
        connecting = endpoint.connect(factory)
        exchange.connecting = connecting
        connecting.addCallbacks(
            self._connected,
            self._connect_failed,
            callbackArgs=(exchange,),
            errbackArgs=(exchange,),
        )

    def _connected(self, connection: _UpstreamConnection, exchange: _Exchange) -> None:
        exchange.connecting = None
        if exchange.done:
            # Cancelled meanwhile: the new connection is still good.
            if connection._state == _NEW:
                self._put_idle(connection)
            return
        if connection._state != _NEW:
            exchange.fail(ResponseNeverReceived([Failure(ConnectionDone())]))
            return
        self._send_on(connection, exchange)

    def _send_on(self, connection: _UpstreamConnection, exchange: _Exchange) -> None:
        """
        Send C{exchange} on C{connection}, unless its caller refuses the
        address the connection goes to (L{request}'s C{check_peer}): then
        the request fails with the caller's error and the connection, which
        is sound, goes back to the pool.
        """
        check = exchange.check_peer
        if check is not None:
            try:
                check(connection.peer)
            except Exception as error:
                self._put_idle(connection)
                exchange.fail(error)
                return
        connection.send(exchange)

    def _connect_failed(self, reason: Failure, exchange: _Exchange) -> None:
        exchange.connecting = None
        exchange.fail(reason)

    def _retry(self, exchange: _Exchange) -> None:
        """
        A reused connection died before answering: send again, once, on a
        new connection (the keep-alive race).
        """
        exchange.retried = True
        exchange.connection = None
        self._dispatch(exchange, fresh=True)

    # -- the pool -----------------------------------------------------------

    def _opened(self, connection: _UpstreamConnection) -> None:
        self._open.add(connection)

    def _closed(self, connection: _UpstreamConnection) -> None:
        self._open.discard(connection)

    def _forget(self, connection: _UpstreamConnection) -> None:
        self._drop_idle(connection)

    def _put_idle(self, connection: _UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle is None:
            idle = self._idle[connection.key] = []
        if self.max_idle_per_host <= 0:
            connection.close()
            return
        connection._state = _IDLE
        connection.reused = True
        if len(idle) >= self.max_idle_per_host:
            # Keep the most recently used ones (LIFO); close the oldest.
            idle.pop(0).close()
        now = self._reactor.seconds()
        connection.idle_since = now
        idle.append(connection)
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self.idle_timeout, self._swept)

    def _drop_idle(self, connection: _UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _swept(self) -> None:
        """
        Close connections idle for C{idle_timeout}; come back when the next
        one will be.
        """
        self._sweep = None
        now = self._reactor.seconds()
        deadline = now - self.idle_timeout
        oldest: float | None = None
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= deadline:
                idle.pop(0).close()
            if idle:
                since = idle[0].idle_since
                oldest = since if oldest is None else min(oldest, since)
            else:
                del self._idle[key]
        if oldest is not None:
            self._sweep = self._reactor.callLater(
                max(0.0, oldest + self.idle_timeout - now), self._swept
            )

    def idle_count(self, scheme: str, host: str, port: int) -> int:
        """
        How many idle connections to an origin are pooled (for tests and
        stats).
        """
        return len(self._idle.get((scheme, host, port), ()))

    def close(self) -> Deferred[None]:
        """
        Close idle pooled connections (at shutdown and in tests); fires when
        they are closed.
        """
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        waiting: list[Deferred[None]] = []
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                if connection._state != _CLOSED:
                    waiting.append(connection.when_lost())
                    connection.close()
        if not waiting:
            return succeed(None)
        done: Deferred[Any] = gatherResults(waiting)
        return done.addCallback(lambda _: None)
