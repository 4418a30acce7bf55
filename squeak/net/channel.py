# -*- test-case-name: tests.test_net_channel -*-
"""
The client connection: HTTP/1.1 requests in, responses out.

L{ClientChannel} reads requests with the strict parser of L{squeak.http.request}
and hands each one, complete with its body, to an L{Exchange}: the object a
request handler (L{squeak.proxy.router.ForwardRequest}) subclasses to answer it.
It replaces Twisted's C{HTTPChannel} and C{Request} on this side of the
proxy; docs/architecture.md says why (speed, measured, and one strict
reading of framing).

What the channel guarantees:
  - Requests on a connection are answered strictly in order, one at a time.
    Bytes of pipelined requests wait in the channel; past a bound it stops
    reading from the socket until the current exchange is over.
  - A request body is spooled (in memory up to 100 kB, then to a temporary
    file) and bounded by C{limits.request_body_size}, by a
    L{squeak.net.requestbody.RequestBodyReader} built for that request; the
    exchange starts once the body is complete.
  - Framing of responses is the channel's: C{Content-Length} when the
    handler says how long the body is, chunked for HTTP/1.1 clients
    otherwise, or a close-delimited body for HTTP/1.0 clients, who never see
    chunked bodies or interim responses other than none at all.
  - A connection with no exchange in progress is closed after
    C{timeouts.client_idle} seconds of silence, and a request head must
    arrive whole within C{timeouts.request_head} seconds of its first byte
    (408 otherwise), so a client trickling bytes cannot hold a connection
    forever.
"""

from __future__ import annotations

from typing import IO, Any

from twisted.internet import defer
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES

from squeak.http.fields import RawHeaders, first_value
from squeak.http.request import (
    MessageError,
    RequestHead,
    read_request_head,
)
from squeak.net.requestbody import BODY_IN_MEMORY, RequestBodyReader
from squeak.net.wire import DIRECT, Sender

__all__ = ["BODY_IN_MEMORY", "ClientChannel", "Exchange", "serialise_fields"]

#: Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT = frozenset({204, 304})

#: Response fields the channel writes itself; a handler's are dropped.
_CHANNEL_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})

_HEAD = 0  # reading a request head
_BODY = 1  # reading a request body
_EXCHANGE = 2  # an exchange is being answered
_CLOSING = 3  # rejected or taken over: nothing more is parsed

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    """
    One request and its response.

    The request is read-only: L{method}, L{uri}, L{version}, L{received}
    (every field in order, repeated ones kept), L{field_names} (their
    lower-cased names) and L{body} (the spooled content, or L{None}).  The
    response is built with L{set_status}, L{set_field}, L{add_field} and
    L{content_length}, then sent with L{write} and L{finish}; the head goes
    out with the first write, or earlier with L{send_head}.

    @ivar content_length: The length of the response body, when known; it
        becomes C{Content-Length}, otherwise the body is chunked (or, for an
        HTTP/1.0 client, ends with the connection).
    @ivar sent_length: Body bytes written so far.
    @ivar head_bytes: Size of the response head, for the access log.
    """

    # Response state.  Initial values are class attributes, shadowed when
    # set: one exchange is built per request.
    code = 200
    reason = b"OK"
    content_length: int | None = None
    started_writing = False
    finished = False
    disconnected = False
    sent_length = 0
    head_bytes = 0
    #: More response fields, already serialised by L{serialise_fields}; sent
    #: after L{response_fields}.  For a handler that sends the same fields
    #: many times (a cache hit), which then serialises them once.
    field_block = b""
    #: Whether the channel answered the client's C{Expect: 100-continue}
    #: with its own C{100 Continue} (L{send_interim} sends no second one).
    continue_sent = False
    _chunked = False
    _body_allowed = True
    _producer: Any = None
    #: The L{notify_finish} waiters: most exchanges have none, so the list
    #: is made by the first (an empty tuple until then).
    _waiters: list[defer.Deferred[None]] | tuple[()] = ()

    def __init__(self, channel: ClientChannel, head: RequestHead, body: IO[bytes] | None) -> None:
        self.channel = channel
        self.method = head.method
        self.uri = head.target
        self.version = head.version
        self.received = head.fields
        self.body = body
        self.keep_alive = head.keep_alive
        self.field_names = head.names
        self.response_fields: RawHeaders = []

    # -- the request -----------------------------------------------------

    def field(self, name: bytes) -> bytes | None:
        """
        The first value of a request field.

        @param name: The field name in lower case.
        """
        return first_value(self.received, name)

    @property
    def client_host(self) -> str:
        """
        The client's address as text.
        """
        return self.channel.client_host

    def process(self) -> None:
        """
        Answer the request; subclasses override this.
        """
        self.set_status(501)
        self.finish()

    # -- the response ------------------------------------------------------

    def set_status(self, code: int, reason: bytes | None = None) -> None:
        """
        Set the response's status; the reason phrase defaults to the
        standard one.
        """
        self.code = code
        self.reason = reason if reason is not None else RESPONSES.get(code, b"Unknown")

    def add_field(self, name: bytes, value: bytes) -> None:
        """
        Add a response field (repeated names are kept).
        """
        self.response_fields.append((name, value))

    def set_field(self, name: bytes, value: bytes) -> None:
        """
        Set a response field, replacing every field of that name.
        """
        lower = name.lower()
        self.response_fields = [
            (key, old) for key, old in self.response_fields if key.lower() != lower
        ]
        self.response_fields.append((name, value))

    def response_field(self, name: bytes) -> bytes | None:
        """
        The first value of a response field.

        @param name: The field name in lower case.
        """
        return first_value(self.response_fields, name)

    def send_interim(self, code: int, reason: bytes, fields: RawHeaders) -> bool:
        """
        Send an interim (1xx) response ahead of the final one.

        RFC 9110 §15.2: "A proxy MUST forward 1xx responses unless the proxy
        itself requested the generation of the 1xx response", but "a server
        MUST NOT send a 1xx response to an HTTP/1.0 client", so it is sent
        only to an HTTP/1.1 client and only before the final head.  A
        C{100 Continue} is not sent when the channel already answered the
        client's expectation with its own (RFC 9110 §10.1.1): the client
        must not see two.

        @param fields: The fields to send, hop-by-hop ones already removed;
            framing fields are dropped here too (an interim response has no
            content, RFC 9110 §15.2).
        @return: Whether it was sent.
        """
        if (
            self.version != b"HTTP/1.1"
            or self.started_writing
            or self.disconnected
            or (code == 100 and self.continue_sent)
        ):
            return False
        if code == 100:
            self.continue_sent = True
        lines = [b"HTTP/1.1 %d %s" % (code, reason)]
        lines += [
            name + b": " + value for name, value in fields if name.lower() not in _CHANNEL_FIELDS
        ]
        lines.append(b"\r\n")
        self.channel.send(b"\r\n".join(lines))
        return True

    def write(self, data: bytes) -> None:
        """
        Send body bytes (the head first, if not sent yet).
        """
        if self.finished or self.disconnected:
            return
        # ClientChannel.send's work, without a call of its own on every
        # body write: through the channel's sender, as every write goes.
        channel = self.channel
        write, transport = channel.sender.write, channel.transport
        if not self.started_writing:
            head = self._head()
            if not data or not self._body_allowed:
                write(transport, head)
                return
            if self._chunked:
                write(transport, b"%s%x\r\n%s\r\n" % (head, len(data), data))
            else:
                write(transport, head + data)
        elif not data or not self._body_allowed:
            return
        elif self._chunked:
            write(transport, b"%x\r\n%s\r\n" % (len(data), data))
        else:
            write(transport, data)
        # Counted here rather than in a method of its own: this runs for
        # every body write.
        sent = self.sent_length = self.sent_length + len(data)
        if self.content_length is not None and sent > self.content_length:
            self._overrun()

    def send_head(self) -> None:
        """
        Send the response head now, if it has not gone out: once a handler
        has decided the response, so that a client whose body then stalls
        still sees the status and fields (and a cut body), never an empty
        reply.  It goes through the channel's sender like every write, so
        with the proxy's batcher it still leaves in one send with the body
        bytes written in the same reactor turn.
        """
        if not self.started_writing and not self.finished and not self.disconnected:
            self.channel.send(self._head())

    def _overrun(self) -> None:
        """
        More body was written than announced: it would be read as the start
        of the next response, and a handler bug must never desynchronise
        the client.
        """
        self.channel.persistent = False
        self.channel.transport.abortConnection()

    def finish(self) -> None:
        """
        End the response; the channel goes on with the next request.
        """
        if self.finished or self.disconnected:
            return
        if not self.started_writing:
            if self.content_length is None and self._allows_body():
                self.content_length = 0
            self.channel.send(self._head())
        elif self._chunked:
            self.channel.send(b"0\r\n\r\n")
        elif (
            self._body_allowed
            and self.content_length is not None
            and self.sent_length < self.content_length
        ):
            # Shorter than announced: only closing shows the client that the
            # body was cut short (the next response must not complete it).
            self.channel.persistent = False
        self.finished = True
        if self._producer is not None:
            self.unregister_producer()
        if self._waiters:
            waiters, self._waiters = self._waiters, ()
            for waiter in waiters:
                waiter.callback(None)
        self.ended(None)
        self.channel.exchange_finished(self)

    def notify_finish(self) -> defer.Deferred[None]:
        """
        A L{Deferred} that fires when the response is finished, or fails
        when the client connection is lost first.
        """
        waiter: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            waiter.callback(None)
        elif self.disconnected:
            waiter.errback(ConnectionError("client connection lost"))
        elif self._waiters:
            self._waiters.append(waiter)
        else:
            self._waiters = [waiter]
        return waiter

    def register_producer(self, producer: Any, streaming: bool) -> None:
        """
        Let the client connection pause and resume C{producer} as its send
        buffer fills and drains (backpressure).
        """
        self._producer = producer
        self.channel.transport.registerProducer(producer, streaming)

    def unregister_producer(self) -> None:
        if self._producer is not None:
            self._producer = None
            self.channel.transport.unregisterProducer()

    def connection_lost(self, reason: Failure) -> None:
        """
        The client went away before the response finished.
        """
        self.disconnected = True
        self._producer = None
        waiters, self._waiters = self._waiters, ()
        for waiter in waiters:
            waiter.errback(reason)
        self.ended(reason)

    def ended(self, reason: Failure | None) -> None:
        """
        Called once when the exchange is over: with L{None} when its
        response finished, with the reason when the client left first.
        Subclasses override it (cheaper than a L{notify_finish} callback
        on every request).
        """

    def _allows_body(self) -> bool:
        code = self.code
        return not (code in _NO_CONTENT or code < 200 or self.method == b"HEAD")

    def _head(self) -> bytes:
        """
        The response head, with the channel's framing and persistence
        fields.
        """
        self.started_writing = True
        code = self.code
        lines = [b"HTTP/1.1 %d %s" % (code, self.reason)]
        # A loop, not a list comprehension: on Python 3.11 that is a
        # function call of its own, on every response.
        for name, value in self.response_fields:
            if name.lower() not in _CHANNEL_FIELDS:
                lines.append(name + b": " + value)
        if self.field_block:
            lines.append(self.field_block)
        channel = self.channel
        if channel.identity_field:
            lines.append(channel.identity_field)
        http10 = self.version == b"HTTP/1.0"
        # _allows_body(), without a call of its own on every response.
        self._body_allowed = not (code in _NO_CONTENT or code < 200 or self.method == b"HEAD")
        length = self.content_length
        if length is not None:
            if code not in _NO_CONTENT:
                lines.append(b"Content-Length: %d" % length)
        elif self._body_allowed:
            if http10:
                # RFC 9112 §6.3: the body ends when the connection does.
                channel.persistent = False
            else:
                self._chunked = True
                lines.append(b"Transfer-Encoding: chunked")
        if not self.keep_alive:
            channel.persistent = False
        if not channel.persistent:
            lines.append(b"Connection: close")
        elif http10:
            lines.append(b"Connection: keep-alive")
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        self.head_bytes = len(head)
        return head


def serialise_fields(fields: RawHeaders) -> bytes:
    """
    Field lines for L{Exchange.field_block}: C{name: value} joined by CRLF,
    without the framing and persistence fields the channel writes itself.
    """
    return b"\r\n".join(
        name + b": " + value for name, value in fields if name.lower() not in _CHANNEL_FIELDS
    )


class ClientChannel(Protocol):
    """
    One client connection: reads requests, runs one L{Exchange} at a time.

    @ivar persistent: Whether the connection stays open after the current
        exchange; an exchange or the client may clear it.
    @ivar bytes_received: Bytes read from the client so far (for the
        counters of L{squeak.stats}; a tunnel that takes the connection
        over counts its own).
    """

    #: The L{Exchange} subclass built for each request.
    exchange_factory: type[Exchange] = Exchange
    #: Limits, set per connection by the factory.
    max_head_size = 65536
    max_fields = 100
    max_body_size = 2**63
    idle_timeout: float | None = 60.0
    #: Seconds a client has to send a whole request head once part of it
    #: arrived (Squid's request_timeout, nginx's client_header_timeout):
    #: bytes trickling in restart the idle clock, not this one.
    head_timeout: float | None = 60.0
    #: Sends what the channel writes: the factory sets the proxy's
    #: L{SendBatcher}, which sends a reactor turn's writes at its end; by
    #: default they go to the transport at once (L{squeak.net.wire.DIRECT}).
    sender: Sender = DIRECT
    #: Seconds a rejected client may keep sending before it is cut off.
    linger_timeout = 2.0
    #: The client's address as the factory was given it (the listening
    #: port's, or a PROXY protocol header's: squeak.net.proxyprotocol);
    #: L{None}: the transport's peer.
    peer_address: Any = None
    #: A field line added to every response, naming the process that
    #: served it (C{proxy.worker_header}, a debugging aid); empty: none.
    identity_field = b""
    reactor: Any = None
    transport: Any
    _log = Logger()

    def __init__(self) -> None:
        self.persistent = True
        self.rejected = False
        self.client_host = "-"
        self.bytes_received = 0
        self._buffer = b""
        self._state = _HEAD
        self._exchange: Exchange | None = None
        self._processing = False
        self._read_paused = False
        self._last_activity = 0.0
        # Runs while a request head is incomplete (head_timeout).
        self._head_call: Any = None
        self._idle_call: Any = None
        self._linger_call: Any = None
        # The body being read (state _BODY), with its request.
        self._body: RequestBodyReader | None = None
        self.request_line = (b"", b"", b"")

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.peer_address if self.peer_address is not None else self.transport.getPeer()
        self.client_host = getattr(peer, "host", "-")
        if ITCPTransport.providedBy(self.transport):
            # Responses and tunnelled bytes go out as soon as written: with
            # Nagle's algorithm a response's last small segment can wait for
            # the client's delayed ACK (up to 40 ms).  Twisted's HTTPChannel
            # does the same.
            self.transport.setTcpNoDelay(True)
        self._last_activity = self.reactor.seconds()
        if self.idle_timeout:
            self._idle_call = self.reactor.callLater(self.idle_timeout, self._check_idle)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = _CLOSING
        for call in (self._idle_call, self._linger_call, self._head_call):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._linger_call = self._head_call = None
        self._close_spool()
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.finished:
            exchange.connection_lost(reason)

    def _check_idle(self) -> None:
        """
        Close a connection that was silent for C{idle_timeout} seconds while
        no exchange was in progress (a slow response is not the client's
        silence).
        """
        self._idle_call = None
        if self._state == _CLOSING:
            return
        timeout = self.idle_timeout
        assert timeout
        quiet = self.reactor.seconds() - self._last_activity
        if self._state == _EXCHANGE or quiet < timeout:
            wait = timeout if self._state == _EXCHANGE else timeout - quiet
            self._idle_call = self.reactor.callLater(wait, self._check_idle)
            return
        self.persistent = False
        self.lose_connection()

    def _head_incomplete(self) -> None:
        """
        Part of a request head is in: its clock starts, once per head.  A
        timer of its own (rather than moving the idle one sooner, which
        costs a linear search of the reactor's timers) that the complete
        head cancels.
        """
        if self._head_call is None and self.head_timeout:
            self._head_call = self.reactor.callLater(self.head_timeout, self._head_timed_out)

    def _head_complete(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()

    def _head_timed_out(self) -> None:
        """
        The head did not arrive whole within C{head_timeout}: 408, close.
        """
        self._head_call = None
        if self._state != _HEAD:
            return
        self.request_line = _request_line_of(self._buffer)
        self.reject_message(
            MessageError(f"request head not complete within {self.head_timeout:g}s", 408)
        )

    def send(self, data: bytes) -> None:
        """
        Write to the client through the L{sender}.  Every write of the
        channel and its exchanges goes through it (L{Exchange.write} calls
        the sender itself, for one call less per body write), so their
        order is kept.
        """
        self.sender.write(self.transport, data)

    def flush(self) -> None:
        """
        Send what the L{sender} holds for this connection now: before the
        connection is closed or handed to something that writes to it
        directly.
        """
        self.sender.flush(self.transport)

    def lose_connection(self) -> None:
        """
        Close the connection once everything written has been sent.

        Twisted's C{loseConnection} alone could close before a batching
        sender's end-of-turn send when called from a timed call.
        """
        self.flush()
        self.transport.loseConnection()

    # -- reading -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        self._last_activity = self.reactor.seconds()
        self.bytes_received += len(data)
        if state == _HEAD:
            self._buffer = self._buffer + data if self._buffer else data
            self._read_requests()
        elif state == _BODY:
            self._body_data(data)
        elif state == _EXCHANGE:
            # A pipelined request: kept until the current one is answered.
            self._buffer += data
            if len(self._buffer) > self.max_head_size and not self._read_paused:
                self._read_paused = True
                self.transport.pauseProducing()

    def _read_requests(self) -> None:
        """
        Start exchanges for the complete requests in the buffer, in order,
        while none is in progress.
        """
        if self._processing:
            return
        self._processing = True
        try:
            while self._state == _HEAD and self._buffer:
                buffer = self._buffer
                if buffer[:2] == b"\r\n":
                    # RFC 9112 §2.2: empty lines before a request line are
                    # ignored.  Whole CRLFs only: lstrip(b"\r\n") would also
                    # eat a bare LF, and a CR whose LF is still to come, so
                    # the verdict would depend on how the bytes were split.
                    start = 2
                    while buffer.startswith(b"\r\n", start):
                        start += 2
                    self._buffer = buffer[start:]
                    continue
                try:
                    read = read_request_head(
                        buffer, self.max_head_size, max_fields=self.max_fields
                    )
                except MessageError as error:
                    self.request_line = _request_line_of(buffer)
                    self.reject_message(error)
                    return
                if read is None:
                    self._head_incomplete()
                    return
                head, end = read
                if self._head_call is not None:
                    self._head_complete()
                self._buffer = buffer[end:]
                self.request_line = (head.method, head.target, head.version)
                if head.dropped:
                    self._log_dropped(head)
                if head.content_length == 0:
                    self._start(head, None)
                else:
                    self._start_body(head)
        finally:
            self._processing = False

    def _log_dropped(self, head: RequestHead) -> None:
        """
        Say in the service log that a request's look-alikes of framing
        fields were dropped (L{squeak.http.fields.impersonated_field}): a
        client that sends them is broken or probing for request smuggling.
        """
        self._log.warn(
            "dropped request field(s) {fields} from {client} ({method} {target}): "
            "underscore spellings of framing or connection fields",
            fields=", ".join(name.decode("latin-1") for name in head.dropped),
            client=self.client_host,
            method=head.method.decode("latin-1"),
            target=head.target[:200].decode("latin-1"),
        )

    def _start_body(self, head: RequestHead) -> None:
        refusal = RequestBodyReader.refuse_declared(head.content_length, self.max_body_size)
        if refusal is not None:
            self.reject_message(refusal)
            return
        self._body = RequestBodyReader(head, self.max_body_size)
        self._state = _BODY
        if head.expects_continue:
            self.send(_CONTINUE)
        rest, self._buffer = self._buffer, b""
        if rest:
            self._body_data(rest)

    def _body_data(self, data: bytes) -> None:
        reader = self._body
        assert reader is not None
        try:
            rest = reader.feed(data)
        except MessageError as error:
            self.reject_message(error)
            return
        if rest is None:
            return
        self._body = None
        self._buffer = rest
        self._state = _HEAD
        self._start(reader.head, reader.spool)
        self._read_requests()

    def _close_spool(self) -> None:
        reader, self._body = self._body, None
        if reader is not None:
            reader.close()

    def _start(self, head: RequestHead, body: IO[bytes] | None) -> None:
        exchange = self.exchange_factory(self, head, body)
        if body is not None and head.expects_continue:
            # _start_body answered the expectation with our own 100.
            exchange.continue_sent = True
        self._exchange = exchange
        self._state = _EXCHANGE
        exchange.process()

    def exchange_finished(self, exchange: Exchange) -> None:
        """
        The current exchange's response is complete: close, or go on with
        the next request.
        """
        if exchange is not self._exchange:
            return
        self._exchange = None
        if exchange.body is not None:
            exchange.body.close()
        if self._state == _CLOSING:
            return
        if not self.persistent:
            self._state = _CLOSING
            self.lose_connection()
            return
        self._state = _HEAD
        self._last_activity = self.reactor.seconds()
        if self._read_paused:
            self._read_paused = False
            self.transport.resumeProducing()
        if self._buffer:
            self._read_requests()

    # -- draining ----------------------------------------------------------

    def close_when_idle(self, grace: float) -> None:
        """
        The proxy is stopping (or this process is being replaced by a
        reload): keep nothing alive.

        A connection answering a request closes after that response (which
        says C{Connection: close} if its head is not sent yet).  An idle
        keep-alive connection, which served a request and waits for the
        next, closes at once, its write side first (L{lingering_close}), so
        a request racing the close gets an end of stream, which clients
        retry, rather than a reset.  A connection that never sent a whole
        request was most likely just accepted, its request on the way: it
        gets C{grace} seconds to arrive and is then answered and closed, or
        closed.  A tunnel (the channel was taken over) is left to finish.
        """
        self.persistent = False
        if self._state != _HEAD or self._buffer or self._head_call is not None:
            return
        if self.request_line == (b"", b"", b""):
            self._linger_call = self.reactor.callLater(grace, self._close_if_idle)
        else:
            self.lingering_close()

    def _close_if_idle(self) -> None:
        """
        The grace of a draining connection that had sent nothing is over.
        """
        self._linger_call = None
        if self._state == _HEAD and not self._buffer and self._head_call is None:
            self.lingering_close()

    # -- taking over and refusing -----------------------------------------

    def take_over(self) -> bytes:
        """
        Stop speaking HTTP on this connection (a tunnel takes it over).

        @return: Bytes the client sent after the last request head, which
            belong to whatever the connection now carries.
        """
        self._stop_http()
        rest, self._buffer = self._buffer, b""
        return rest

    def _stop_http(self) -> None:
        """
        No more requests are read on this connection: no idle or head timer, reads
        resumed (a tunnel relays them, a lingering close discards them),
        and what was written so far sent, since what follows writes to the
        transport itself.
        """
        self._state = _CLOSING
        self.flush()
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self._head_complete()
        if self._read_paused:
            self._read_paused = False
            self.transport.resumeProducing()

    def reject_message(self, error: MessageError) -> None:
        """
        A request that cannot be read: answer and close; subclasses render
        the page.
        """
        self.reject_plainly(error.status, error.detail)

    def reject_plainly(self, status: int, detail: str) -> None:
        self.rejected = True
        body = detail.encode("utf-8", "replace") + b"\n"
        self.send(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s"
            % (status, RESPONSES.get(status, b"Error"), len(body), body)
        )
        self.lingering_close()

    def lingering_close(self) -> None:
        """
        Close after an early answer without losing it.

        Closing a socket that still has unread request bytes makes the kernel
        send a reset, which can destroy the answer before the client reads
        it.  So: send a FIN after the answer, keep reading and discarding
        what the client still sends, and close for good when it closes or
        after L{linger_timeout} seconds.
        """
        self._stop_http()
        self.persistent = False
        self._buffer = b""
        self._close_spool()
        self._linger_call = self.reactor.callLater(
            self.linger_timeout, self.transport.abortConnection
        )
        try:
            self.transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            self.transport.loseConnection()


def _request_line_of(buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """
    Method, target and version of a request that could not be parsed, as
    far as they can be told, for the log line of its refusal.
    """
    line = buffer.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:8192]
    parts = line.split(b" ")
    if len(parts) == 3:
        return parts[0][:32], parts[1], parts[2][:16]
    return b"", b"", b""
