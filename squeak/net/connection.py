# -*- test-case-name: tests.test_net_origin -*-
"""
One connection to an origin server: squeak's own lean HTTP/1.1 client
protocol, used by the pool in L{squeak.net.origin}.

  - L{OriginConnection} writes a request head in one C{write} (the body of
    a small request goes in the same write; a large one is streamed from
    its spool file with backpressure by L{_BodySender}), reads the response
    head with L{squeak.http.response} (the one response reader, strict and
    bounded: RFC 9112 §2-§5), lets L{squeak.http.response.response_body}
    choose how the body is framed (RFC 9112 §6.3), hands interim 1xx
    responses to the request's C{on_interim} (if any) and reads on, refuses
    a C{101} (no pooled request asks to switch protocols), and decodes
    C{Content-Length}, chunked (L{squeak.http.chunked}, the decoder the
    client side uses for requests) and close-delimited bodies as they
    arrive, never buffering a whole body.  No L{Deferred} is used on this
    path except the one per request that L{UpstreamClient.request}'s caller
    gets; the miss path has none (a L{ResponseReceiver} is told instead).
  - L{UpstreamResponse} (L{squeak.net.body}) carries every field as received (C{raw_headers})
    and gives the body to a protocol through C{deliverBody}, telling how it
    ended by the exception type: L{BodyComplete} for a complete body,
    L{BodyEndedByClose} for a close-delimited one ended by the close, and
    anything else for a failure: L{ResponseTruncatedError} (the connection
    ended early, or the consumer called C{stopProducing}) or
    L{MalformedResponseError} (bad chunking).

A request fails with L{NoResponseError} (the connection ended before any
response byte), L{ResponseTruncatedError} (part-way through the head),
L{MalformedResponseError} (a head or framing refused), or the endpoint's own
connect errors; L{squeak.net.failures.error_for_failure} maps them all.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from squeak.errors import BodyComplete, BodyEndedByClose
from squeak.http.chunked import MAX_CHUNK_LINE, ChunkedDecoder
from squeak.http.fields import RawHeaders
from squeak.http.response import (
    MAX_FIELDS,
    MAX_HEAD_SIZE,
    Body,
    MalformedResponseError,
    find_response_head_end,
    is_interim,
    parse_response_head,
    response_body,
    why_bad_response_field,
)
from squeak.net.body import UpstreamResponse
from squeak.net.failures import NoResponseError, ResponseTruncatedError, failure_of
from squeak.net.tunnel import BULK_READ_SIZE
from squeak.net.wire import Sender


class ConnectionPool(typing.Protocol):
    """
    What an L{OriginConnection} tells the pool that owns it (an
    L{squeak.net.origin.UpstreamClient}) and the sender it writes through.
    A protocol, so that this module does not import the pool that imports
    it.
    """

    sender: Sender

    def _opened(self, connection: OriginConnection) -> None: ...

    def _closed(self, connection: OriginConnection) -> None: ...

    def _forget(self, connection: OriginConnection) -> None: ...

    def _put_idle(self, connection: OriginConnection) -> None: ...

    def _drop_idle(self, connection: OriginConnection) -> None: ...

    def _retry(self, exchange: PendingRequest) -> None: ...


class ResponseReceiver(typing.Protocol):
    """
    What a request sent with L{squeak.net.origin.UpstreamClient.send_request}
    is answered to, instead of a L{Deferred}: the miss path sends one
    request per client request, and a L{Deferred} with its callbacks costs
    about 2 µs of each (docs/performance.md).  Exactly one of the two is
    called, once; neither may raise.
    """

    def response_received(self, response: UpstreamResponse) -> None:
        """The response head is in; the body follows through C{deliverBody}."""

    def request_failed(self, reason: Failure) -> None:
        """No response: the reason, as a L{Deferred} would have failed with
        it (L{CancelledError} after L{PendingRequest.cancel})."""


__all__ = [
    "IDEMPOTENT",
    "MalformedResponseError",
    "OriginConnection",
    "PendingRequest",
    "ResponseReceiver",
]

#: Methods that may be retried on a new connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# Connection states.
NEW = 0  # connected, not yet given a request
IDLE = 1  # in the pool
_HEAD = 2  # request sent, reading the response head
_BODY_LENGTH = 3  # reading a Content-Length body
_BODY_CLOSE = 4  # reading a close-delimited body
_CHUNKED = 5  # reading a chunked body
CLOSED = 9
_NO_CONTENT = 10  # a bodiless response handed over, to be completed

_CONNECTION_DONE = failure_of(ConnectionDone())
# Shared, like _CONNECTION_DONE: every complete response ends with it, and a
# Failure costs microseconds to build.
_BODY_COMPLETE = failure_of(BodyComplete("Response body fully received"))


def _cause(reason: Failure) -> BaseException:
    """
    The exception a connection was lost with (a L{Failure} always holds
    one; L{ConnectionDone} stands in should it not).
    """
    return reason.value if reason.value is not None else ConnectionDone()


class PendingRequest:
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
        "on_interim",
        "receiver",
        "retried",
        "reused",
        "small_body",
    )

    def __init__(
        self,
        client: ConnectionPool,
        key: tuple[str, str, int],
        method: bytes,
        head: bytes,
        body: IO[bytes] | None,
        body_start: int,
        body_length: int | None,
        small_body: bytes | None,
        receiver: ResponseReceiver | None = None,
    ) -> None:
        """
        @param receiver: Told of the response or the failure; L{None} for
            a L{Deferred} (C{deferred}) instead.
        """
        self.client = client
        self.key = key
        self.method = method
        self.head = head
        self.body = body
        self.body_start = body_start
        self.body_length = body_length
        self.small_body = small_body
        self.receiver = receiver
        self.deferred: Deferred[UpstreamResponse] | None = (
            Deferred(self._cancel) if receiver is None else None
        )
        self.connecting: Deferred[Any] | None = None
        self.connection: OriginConnection | None = None
        self.reused = False
        self.retried = False
        self.done = False
        self.check_peer: Callable[[str], None] | None = None
        #: Told of each interim response (status, reason, fields) before
        #: the final one, in order; L{None} to drop them.
        self.on_interim: Callable[[int, bytes, RawHeaders], None] | None = None

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
        self.on_interim = None  # no more interim responses; no cycle kept
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.response_received(response)
        elif self.deferred is not None:
            self.deferred.callback(response)

    def fail(self, reason: Failure | BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.connection = None
        self.on_interim = None
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.request_failed(reason if isinstance(reason, Failure) else failure_of(reason))
        elif self.deferred is not None:
            self.deferred.errback(reason)

    def cancel(self) -> None:
        """
        The caller gives up (read timeout, client gone): abort the
        connection and fail with L{CancelledError}, as cancelling the
        L{Deferred} does.  Nothing happens once answered.
        """
        if self.deferred is not None:
            self.deferred.cancel()
            return
        if self.done:
            return
        receiver = self.receiver
        self._cancel(None)
        self.receiver = None
        if receiver is not None:
            receiver.request_failed(failure_of(CancelledError()))

    def _cancel(self, _: Deferred[UpstreamResponse] | None) -> None:
        """
        The caller gave up (read timeout, client gone): abort the
        connection; the L{Deferred} then fails with L{CancelledError}.
        """
        self.done = True
        self.on_interim = None
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

    def __init__(self, connection: OriginConnection, body: IO[bytes], length: int | None) -> None:
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


class OriginConnection(Protocol):
    """
    One connection to an origin, carrying one request at a time.

    @ivar key: C{(scheme, host, port)}, the pool key.
    @ivar peer: The origin's address, for the access log.
    @ivar idle_since: When it last went back to the pool.
    @ivar reused: Whether it has carried a request before.
    """

    #: Most bytes of a response head (status line and fields), or of a
    #: chunked body's trailer section.
    max_head_size = MAX_HEAD_SIZE
    #: Most field lines in a head, or in a chunked body's trailer section.
    max_fields = MAX_FIELDS
    #: Longest chunk-size line, extensions included.
    max_chunk_line = MAX_CHUNK_LINE
    #: A connected TCP transport, or a TLS wrapper around one.  Twisted
    #: types it C{ITransport | None}, which declares neither the producer
    #: and consumer methods nor C{abortConnection} that both provide.
    transport: Any

    def __init__(self, client: ConnectionPool, key: tuple[str, str, int]) -> None:
        self._client = client
        self.key = key
        self.peer = "-"
        self.idle_since = 0.0
        self.reused = False
        self._state = NEW
        self._buffer = b""
        self._exchange: PendingRequest | None = None
        self._response: UpstreamResponse | None = None
        self._method = b""
        self._got_bytes = False
        self._keep_alive = False
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
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
        if state == _CHUNKED and not self._buffer:
            try:
                self._chunked_body(data)
            except MalformedResponseError as error:
                self._protocol_error(error)
            return
        if state == CLOSED:
            return
        if state in (IDLE, NEW):
            # Nothing was asked: an origin that talks now breaks framing.
            self._client._drop_idle(self)
            self.close()
            return
        self._got_bytes = True
        self._buffer = self._buffer + data if self._buffer else data
        try:
            self._advance()
        except MalformedResponseError as error:
            self._protocol_error(error)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        state, self._state = self._state, CLOSED
        self._client._closed(self)
        lost, self._lost = self._lost, []
        for waiter in lost:
            waiter.callback(None)
        if self._sender is not None:
            self._sender.stopProducing()
            self._sender = None
        if state == IDLE:
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
                exchange.fail(ResponseTruncatedError(_cause(reason)))
            else:
                exchange.fail(NoResponseError(_cause(reason)))
            return
        response, self._response = self._response, None
        if response is None:
            return
        if state == _BODY_CLOSE:
            # RFC 9112 §6.3 item 8: the close ends the body, which may or
            # may not be all of it.
            response._end(failure_of(BodyEndedByClose()))
        elif state in (_BODY_LENGTH, _CHUNKED):
            response._end(failure_of(ResponseTruncatedError(_cause(reason))))

    # -- requests -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Write request bytes through the client's sender.  Every write of a
        request comes here, so their order is kept.
        """
        self._client.sender.write(self.transport, data)

    def send(self, exchange: PendingRequest) -> None:
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
            elif state == _CHUNKED:
                self._buffer = b""
                if buffer:
                    self._chunked_body(buffer)
                return
            elif state == _BODY_CLOSE:
                self._buffer = b""
                if buffer:
                    self._deliver(buffer)
                return
            else:
                # IDLE after a complete response with bytes left over, or
                # CLOSED: nothing more is read.
                self._buffer = b""
                return

    def _parse_head(self) -> bool:
        """
        Parse one response head from the buffer.

        @return: Whether one was consumed (the state changed).
        @raise MalformedResponseError: For a head that breaks RFC 9112.
        """
        buffer = self._buffer
        end = find_response_head_end(buffer, self.max_head_size)
        if end < 0:
            return False
        self._buffer = buffer[end:]
        head = parse_response_head(buffer[: end - 4], max_fields=self.max_fields)
        _version, code, reason, fields, minor, keep_alive, content_length, _framing = head
        if code < 200:
            if code == 101:
                # RFC 9110 §7.8: a server switches protocols only when the
                # request asked to, and no request on a pooled connection
                # does (Upgrade is hop-by-hop, stripped; upgrades go over
                # squeak.net.upgrade).  Relaying it would hand the client a
                # byte stream no check applies to.
                raise MalformedResponseError(
                    "101 Switching Protocols to a request that did not ask to "
                    "upgrade (RFC 9110 §7.8)"
                )
            # Interim responses (100, 102, 103, ...) precede the final one
            # (RFC 9110 §15.2): told to the request, which may relay them,
            # never part of the response (nor of what the cache stores).
            exchange = self._exchange
            if exchange is not None and exchange.on_interim is not None and is_interim(code):
                exchange.on_interim(code, reason, fields)
            return True
        body, length = response_body(self._method, head)
        if body is Body.LENGTH:
            state = _BODY_LENGTH
        elif body is Body.CHUNKED:
            state = _CHUNKED
            self._chunked = ChunkedDecoder(
                max_line=self.max_chunk_line,
                max_trailer=self.max_head_size,
                max_trailer_fields=self.max_fields,
                error=MalformedResponseError,
                why_bad=why_bad_response_field,
            )
        elif body is Body.CLOSE:
            # RFC 9112 §6.3 item 8: read until the connection closes.
            state, keep_alive = _BODY_CLOSE, False
        else:
            state = _NO_CONTENT
        self._keep_alive = keep_alive
        self._remaining = length or 0
        response = UpstreamResponse(
            code, reason, minor, fields, length, content_length, self.peer, self
        )
        self._response = response
        exchange, self._exchange = self._exchange, None
        self._state = state
        if exchange is not None:
            exchange.respond(response)
        if self._state == _NO_CONTENT and self._response is response:
            self._complete()
        return True

    def _chunked_body(self, data: bytes) -> None:
        """
        Decode and deliver chunked body bytes; complete the response at the
        last chunk.

        @raise MalformedResponseError: The chunking is malformed.
        """
        decoder = self._chunked
        assert decoder is not None
        pieces, rest = decoder.feed(data)
        for piece in pieces:
            self._deliver(piece)
        if decoder.done and self._state == _CHUNKED:
            self._chunked = None
            self._buffer = rest
            self._complete()

    def _length_body(self, data: bytes) -> None:
        left = self._remaining
        size = len(data)
        if size < left:
            self._remaining = left - size
            piece, extra = data, None
        elif size == left:
            piece, extra = data, b""
        else:
            piece, extra = data[:left], data[left:]
        self._deliver(piece)
        if extra is None:
            return
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
        reused, then end the body with L{BodyComplete}.
        """
        response, self._response = self._response, None
        leftover = self._buffer
        self._buffer = b""
        if response is not None:
            response._connection = None
        if self._keep_alive and not leftover and not self._body_pending:
            self._state = IDLE
            self._held = self._paused_by_consumer = False
            if self._reading_paused:
                self._sync_reading()
            self._client._put_idle(self)
        else:
            self.close()
        if response is not None:
            response._end(_BODY_COMPLETE)

    def _protocol_error(self, error: Exception) -> None:
        """
        The origin broke the protocol: fail the request or the body, and
        drop the connection.
        """
        exchange, self._exchange = self._exchange, None
        response, self._response = self._response, None
        self.abort()
        failure = failure_of(error)
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
        if want == self._reading_paused or self._state == CLOSED:
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
        return self._state == IDLE and not getattr(transport, "disconnecting", False)

    def close(self) -> None:
        """
        Close cleanly (an idle connection, or one not to be reused).
        """
        if self._state != CLOSED:
            self._state = CLOSED
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
        if self._state != CLOSED:
            self._state = CLOSED
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
