"""
Protocol units of L{squeak.net.channel} on fake transports and a fake clock:
response framing, pipelining, request bodies, rejections, the idle timeout,
disconnects, and handing the connection over to a tunnel (RFC 9112).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from squeak.net.channel import BODY_IN_MEMORY, ClientChannel, Exchange, serialise_fields


class _Transport(StringTransport):
    """
    A L{StringTransport} that can half-close, and says whether it was
    aborted (L{StringTransport.abortConnection} only marks it disconnected).
    """

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


Responder = Callable[["_Recorder"], None]


class _Recorder(Exchange):
    """
    An exchange that records itself on its channel, with its body read at
    the time it is processed, and lets the channel's responder answer it.
    """

    channel: _Channel
    body_bytes: bytes | None = None
    ended_with: list[Failure | None]

    def process(self) -> None:
        self.body_bytes = self.body.read() if self.body is not None else None
        self.ended_with = []
        self.channel.exchanges.append(self)
        self.channel.responder(self)

    def ended(self, reason: Failure | None) -> None:
        self.ended_with.append(reason)


class _Channel(ClientChannel):
    exchange_factory = _Recorder

    def __init__(self, responder: Responder) -> None:
        super().__init__()
        self.responder = responder
        self.exchanges: list[_Recorder] = []


def answer(exchange: Exchange, body: bytes = b"hello", *, length: bool = True) -> None:
    """
    Answer 200 with C{body}, announcing its length unless told not to.
    """
    if length:
        exchange.content_length = len(body)
    if body:
        exchange.write(body)
    exchange.finish()


def echo_uri(exchange: Exchange) -> None:
    """
    Answer with the request target as the body (to tell responses apart).
    """
    answer(exchange, exchange.uri)


def never(exchange: Exchange) -> None:
    """
    Leave the exchange unanswered (the test answers it).
    """


def later(clock: MemoryReactorClock, delay: float = 1.0) -> Responder:
    """
    A responder that echoes the target C{delay} seconds later.
    """

    def respond(exchange: _Recorder) -> None:
        clock.callLater(delay, echo_uri, exchange)

    return respond


def connect(
    responder: Responder = echo_uri, clock: MemoryReactorClock | None = None, **limits: Any
) -> tuple[_Channel, _Transport, MemoryReactorClock]:
    """
    A connected channel on a fake transport and clock, with C{limits}
    (C{max_head_size}, C{idle_timeout}, ...) set on it.
    """
    clock = clock if clock is not None else MemoryReactorClock()
    channel = _Channel(responder)
    channel.reactor = clock
    for name, value in limits.items():
        setattr(channel, name, value)
    transport = _Transport()
    channel.makeConnection(transport)
    return channel, transport, clock


def get(target: bytes = b"/", *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """
    A GET request head with a Host field and C{fields}.
    """
    lines = [b"GET " + target + b" " + version, b"Host: example.com", *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def ok(body: bytes) -> bytes:
    """
    The channel's 200 response to an HTTP/1.1 request with a known length.
    """
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ResponseFramingTests(SynchronousTestCase):
    """
    The channel frames responses itself (RFC 9112 §6): C{Content-Length}
    when the length is known, chunked for HTTP/1.1 otherwise, and a
    close-delimited body for HTTP/1.0.
    """

    def test_known_length_exact_bytes(self) -> None:
        """
        A GET answered with C{content_length} set gets exactly a status line,
        the handler's fields, C{Content-Length} (RFC 9112 §6.3) and the body;
        an HTTP/1.1 connection stays open without a C{Connection} field.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.set_field(b"Content-Type", b"text/plain")
            answer(exchange, b"hello")

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        self.assertEqual(transport.value(), head + b"hello")
        exchange = channel.exchanges[0]
        self.assertEqual(exchange.head_bytes, len(head))
        self.assertEqual(exchange.sent_length, 5)
        self.assertTrue(exchange.finished)
        self.assertFalse(transport.disconnecting)

    def test_handler_framing_fields_are_dropped(self) -> None:
        """
        C{Content-Length}, C{Transfer-Encoding} and C{Connection} fields set
        by the handler, in any case, are dropped: framing and persistence are
        the channel's (RFC 9112 §6.1, §9.3), and a stale upstream length
        would desynchronise the client.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.add_field(b"content-length", b"999")
            exchange.add_field(b"Transfer-Encoding", b"chunked")
            exchange.add_field(b"CONNECTION", b"close")
            exchange.add_field(b"X-Kept", b"yes")
            answer(exchange, b"hello")

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertEqual(
            transport.value(), b"HTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertFalse(transport.disconnecting)

    def test_field_block_follows_fields_without_framing(self) -> None:
        """
        L{serialise_fields} serialises fields once for L{Exchange.field_block}
        (a cache hit's stored fields), dropping the framing and persistence
        fields as the channel drops them from C{response_fields}; the block
        follows the handler's fields and precedes the channel's framing.
        """
        block = serialise_fields(
            [
                (b"Content-Type", b"text/plain"),
                (b"Content-Length", b"999"),
                (b"transfer-encoding", b"chunked"),
                (b"Connection", b"close"),
                (b"ETag", b'"v1"'),
            ]
        )

        def respond(exchange: _Recorder) -> None:
            exchange.add_field(b"Age", b"3")
            exchange.field_block = block
            answer(exchange, b"hello")

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        head = (
            b'HTTP/1.1 200 OK\r\nAge: 3\r\nContent-Type: text/plain\r\nETag: "v1"\r\n'
            b"Content-Length: 5\r\n\r\n"
        )
        self.assertEqual(transport.value(), head + b"hello")
        self.assertEqual(channel.exchanges[0].head_bytes, len(head))
        self.assertFalse(transport.disconnecting)

    def test_status_and_reason(self) -> None:
        """
        L{Exchange.set_status} defaults the reason phrase to the standard one
        and keeps a given one (RFC 9112 §4).
        """

        def respond(exchange: _Recorder) -> None:
            exchange.set_status(404)
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertEqual(transport.value(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

        def custom(exchange: _Recorder) -> None:
            exchange.set_status(299, b"Fine Anyway")
            exchange.finish()

        channel, transport, _ = connect(custom)
        channel.dataReceived(get())
        self.assertEqual(
            transport.value(), b"HTTP/1.1 299 Fine Anyway\r\nContent-Length: 0\r\n\r\n"
        )

    def test_unknown_length_http11_is_chunked(self) -> None:
        """
        Without C{content_length}, an HTTP/1.1 client gets a chunked body,
        one chunk per write, ended by the last chunk C{0} (RFC 9112 §7.1);
        the connection stays open.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.write(b"abc")
            exchange.write(b"")
            exchange.write(b"0123456789abcdef")
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        )
        self.assertFalse(transport.disconnecting)

    def test_unknown_length_http10_is_close_delimited(self) -> None:
        """
        An HTTP/1.0 client never gets chunked framing: without a length the
        body ends when the connection does (RFC 9112 §6.3 item 8), so the
        response says C{Connection: close} and the channel closes after it.
        """
        channel, transport, _ = connect(lambda e: answer(e, b"abcdefgh", length=False))
        channel.dataReceived(get(version=b"HTTP/1.0"))
        self.assertEqual(
            transport.value(), b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcdefgh"
        )
        self.assertTrue(transport.disconnecting)

    def test_http10_keep_alive_with_length_stays_open(self) -> None:
        """
        An HTTP/1.0 client asking for C{Connection: keep-alive} gets it back
        when the length is known (RFC 9112 §9.3), and the connection serves
        its next request.
        """
        channel, transport, _ = connect()
        channel.dataReceived(get(b"/one", b"Connection: keep-alive", version=b"HTTP/1.0"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n/one",
        )
        self.assertFalse(transport.disconnecting)
        transport.clear()
        channel.dataReceived(get(b"/two", b"Connection: keep-alive", version=b"HTTP/1.0"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n/two",
        )
        self.assertFalse(transport.disconnecting)

    def test_http10_keep_alive_without_length_closes(self) -> None:
        """
        An HTTP/1.0 keep-alive request answered without a known length still
        gets C{Connection: close}: the body can only end with the
        connection.
        """
        channel, transport, _ = connect(lambda e: answer(e, b"abc", length=False))
        channel.dataReceived(get(b"/", b"Connection: keep-alive", version=b"HTTP/1.0"))
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
        self.assertTrue(transport.disconnecting)

    def test_http10_without_keep_alive_closes(self) -> None:
        """
        An HTTP/1.0 request without C{keep-alive} is the last on its
        connection even with a known length (RFC 9112 §9.3).
        """
        channel, transport, _ = connect()
        channel.dataReceived(get(b"/x", version=b"HTTP/1.0"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/x",
        )
        self.assertTrue(transport.disconnecting)

    def test_http11_connection_close_closes(self) -> None:
        """
        An HTTP/1.1 request with C{Connection: close} is answered with
        C{Connection: close} and the connection closes after the response
        (RFC 9112 §9.6); a request pipelined after it is never processed.
        """
        channel, transport, _ = connect()
        channel.dataReceived(get(b"/a", b"Connection: close") + get(b"/b"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/a",
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual([e.uri for e in channel.exchanges], [b"/a"])

    def test_head_response_has_no_body(self) -> None:
        """
        A response to HEAD keeps its C{Content-Length} but carries no body,
        even when the handler writes one (RFC 9110 §9.3.2); the connection
        stays usable, so the next response is framed correctly.
        """
        channel, transport, _ = connect(lambda e: answer(e, b"hello"))
        channel.dataReceived(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n" + get())
        self.assertEqual(
            transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + ok(b"hello")
        )
        self.assertEqual(channel.exchanges[0].sent_length, 0)
        self.assertFalse(transport.disconnecting)

    def test_head_response_without_length(self) -> None:
        """
        A response to HEAD without a known length is not chunked and carries
        no body: there is no body to frame, so the connection stays open.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.write(b"ignored")
            exchange.write(b"also ignored")
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertFalse(transport.disconnecting)

    def test_no_content_statuses_have_no_body(self) -> None:
        """
        204 and 304 responses carry neither a body nor chunked framing even
        when the handler writes (RFC 9110 §6.4.1, RFC 9112 §6.3 item 1), and
        the connection stays open.
        """
        for code, reason in [(204, b"No Content"), (304, b"Not Modified")]:

            def respond(exchange: _Recorder, code: int = code) -> None:
                exchange.set_status(code)
                exchange.write(b"must not be sent")
                exchange.write(b"nor this")
                exchange.finish()

            channel, transport, _ = connect(respond)
            channel.dataReceived(get())
            self.assertEqual(transport.value(), b"HTTP/1.1 %d %s\r\n\r\n" % (code, reason))
            self.assertFalse(transport.disconnecting)

    def test_no_content_statuses_with_length(self) -> None:
        """
        A 204 or 304 answered with C{content_length} set (the length of the
        representation a 304 validates) still carries no body bytes.
        """
        for code in (204, 304):

            def respond(exchange: _Recorder, code: int = code) -> None:
                exchange.set_status(code)
                answer(exchange, b"hello")

            channel, transport, _ = connect(respond)
            channel.dataReceived(get() + get(b"/next"))
            first, _sep, rest = transport.value().partition(b"\r\n\r\n")
            self.assertTrue(first.startswith(b"HTTP/1.1 %d " % code), first)
            self.assertNotIn(b"Transfer-Encoding", first)
            self.assertNotIn(b"hello", rest)
            self.assertTrue(rest.startswith(b"HTTP/1.1 "), rest)

    def test_finish_without_write_gives_zero_length(self) -> None:
        """
        L{Exchange.finish} with nothing written announces an empty body with
        C{Content-Length: 0} rather than a chunked or close-delimited one,
        for HTTP/1.1 and HTTP/1.0 keep-alive clients alike.
        """
        channel, transport, _ = connect(lambda e: e.finish())
        channel.dataReceived(get())
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertFalse(transport.disconnecting)

        channel, transport, _ = connect(lambda e: e.finish())
        channel.dataReceived(get(b"/", b"Connection: keep-alive", version=b"HTTP/1.0"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
        )
        self.assertFalse(transport.disconnecting)

    def test_head_written_by_first_write(self) -> None:
        """
        The head goes out with the first write, and its fields are fixed
        then: a field set afterwards is not sent.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.content_length = 2
            exchange.write(b"a")
            exchange.set_field(b"X-Late", b"1")
            exchange.write(b"b")
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertEqual(transport.value(), ok(b"ab"))

    def test_default_exchange_answers_501(self) -> None:
        """
        The base L{Exchange} answers every request 501 Not Implemented
        (RFC 9110 §15.6.2), with an empty body.
        """
        channel = ClientChannel()
        channel.reactor = MemoryReactorClock()
        transport = _Transport()
        channel.makeConnection(transport)
        channel.dataReceived(get())
        self.assertEqual(
            transport.value(), b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n"
        )

    def test_request_accessors(self) -> None:
        """
        The exchange exposes the request line, every field in order with
        repeated ones kept, L{Exchange.field} by lower-case name (first
        value), and the client's address.
        """
        channel, _, _ = connect()
        channel.dataReceived(
            b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n"
            b"Accept: text/html\r\nACCEPT: text/plain\r\n\r\n"
        )
        exchange = channel.exchanges[0]
        self.assertEqual(
            (exchange.method, exchange.uri, exchange.version),
            (b"GET", b"http://example.com/a?b", b"HTTP/1.1"),
        )
        self.assertEqual(
            exchange.received,
            [(b"Host", b"example.com"), (b"Accept", b"text/html"), (b"ACCEPT", b"text/plain")],
        )
        self.assertEqual(exchange.field(b"accept"), b"text/html")
        self.assertIsNone(exchange.field(b"cookie"))
        self.assertEqual(exchange.client_host, "192.168.1.1")
        self.assertIsNone(exchange.body)


class PipeliningTests(SynchronousTestCase):
    """
    Pipelined requests (RFC 9112 §9.3.2) are answered strictly one at a
    time, in the order received.
    """

    def test_two_requests_one_at_a_time(self) -> None:
        """
        Two requests in one segment: the second exchange starts only once the
        first has finished, and the responses come back in request order.
        """
        clock = MemoryReactorClock()
        channel, transport, _ = connect(later(clock), clock)
        channel.dataReceived(get(b"/1") + get(b"/2"))
        self.assertEqual([e.uri for e in channel.exchanges], [b"/1"])
        self.assertEqual(transport.value(), b"")
        clock.advance(1)
        self.assertEqual([e.uri for e in channel.exchanges], [b"/1", b"/2"])
        self.assertTrue(channel.exchanges[0].finished)
        self.assertFalse(channel.exchanges[1].finished)
        self.assertEqual(transport.value(), ok(b"/1"))
        clock.advance(1)
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2"))
        self.assertFalse(transport.disconnecting)

    def test_three_requests_in_order(self) -> None:
        """
        Three requests in one segment are processed in order, each only
        after the previous one's response is complete.
        """
        clock = MemoryReactorClock()
        started: list[tuple[bytes, list[bool]]] = []
        delayed = later(clock)

        def respond(exchange: _Recorder) -> None:
            others = [e.finished for e in exchange.channel.exchanges if e is not exchange]
            started.append((exchange.uri, others))
            delayed(exchange)

        channel, transport, _ = connect(respond, clock)
        channel.dataReceived(get(b"/1") + get(b"/2") + get(b"/3"))
        for count in (1, 2, 3):
            self.assertEqual(len(channel.exchanges), count)
            clock.advance(1)
        self.assertEqual(started, [(b"/1", []), (b"/2", [True]), (b"/3", [True, True])])
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2") + ok(b"/3"))

    def test_synchronous_answers_in_order(self) -> None:
        """
        When the handler answers at once, every request of a segment is
        answered, in order, within the one C{dataReceived} call.
        """
        channel, transport, _ = connect()
        channel.dataReceived(b"".join(get(b"/%d" % n) for n in range(5)))
        self.assertEqual(transport.value(), b"".join(ok(b"/%d" % n) for n in range(5)))

    def test_request_split_across_segments(self) -> None:
        """
        A request head that arrives a byte at a time is processed once, when
        its last byte arrives.
        """
        channel, transport, _ = connect()
        request = get(b"/slow")
        for index in range(len(request) - 1):
            channel.dataReceived(request[index : index + 1])
        self.assertEqual(channel.exchanges, [])
        channel.dataReceived(request[-1:])
        self.assertEqual(transport.value(), ok(b"/slow"))

    def test_pipelined_bytes_past_bound_pause_reading(self) -> None:
        """
        Bytes of pipelined requests that pile up past C{max_head_size} while
        an exchange is in progress pause reading from the socket; reading
        resumes when the exchange finishes, and the waiting requests are
        answered in order.
        """
        clock = MemoryReactorClock()
        channel, transport, _ = connect(later(clock), clock, max_head_size=64)
        channel.dataReceived(get(b"/1"))
        self.assertEqual(len(channel.exchanges), 1)
        channel.dataReceived(get(b"/2"))
        self.assertEqual(transport.producerState, "producing")
        channel.dataReceived(get(b"/3") + get(b"/4"))
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(len(channel.exchanges), 1)
        clock.advance(1)
        self.assertEqual(transport.producerState, "producing")
        for _ in range(3):
            clock.advance(1)
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2") + ok(b"/3") + ok(b"/4"))
        self.assertEqual(transport.producerState, "producing")


class RequestBodyTests(SynchronousTestCase):
    """
    Request bodies are read whole before the exchange starts (RFC 9112 §6).
    """

    def test_content_length_body_over_several_segments(self) -> None:
        """
        A C{Content-Length} body split over several segments is handed to the
        exchange whole, and only once all of it has arrived.
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhel"
        )
        channel.dataReceived(b"lo w")
        self.assertEqual(channel.exchanges, [])
        channel.dataReceived(b"orld")
        self.assertEqual(len(channel.exchanges), 1)
        self.assertEqual(channel.exchanges[0].body_bytes, b"hello world")
        self.assertEqual(transport.value(), ok(b"/p"))

    def test_body_is_closed_after_the_exchange(self) -> None:
        """
        The spooled body is closed when the exchange finishes.
        """
        channel, _, _ = connect()
        channel.dataReceived(
            b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"
        )
        body = channel.exchanges[0].body
        assert body is not None
        self.assertTrue(body.closed)

    def test_large_body_arrives_whole(self) -> None:
        """
        A body larger than what is kept in memory (spooled to a temporary
        file) still arrives whole and in order.
        """
        channel, _, _ = connect()
        payload = bytes(range(256)) * (BODY_IN_MEMORY // 256 + 100)
        head = b"PUT /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n"
        channel.dataReceived(head % len(payload))
        for start in range(0, len(payload), 16384):
            channel.dataReceived(payload[start : start + 16384])
        self.assertEqual(len(channel.exchanges), 1)
        self.assertEqual(channel.exchanges[0].body_bytes, payload)

    def test_chunked_body_is_decoded(self) -> None:
        """
        A chunked body (RFC 9112 §7.1), with a chunk extension and a trailer,
        is decoded whatever the segmentation, here a byte at a time.
        """
        channel, transport, _ = connect()
        request = (
            b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        for index in range(len(request)):
            channel.dataReceived(request[index : index + 1])
        self.assertEqual(len(channel.exchanges), 1)
        self.assertEqual(channel.exchanges[0].body_bytes, b"hello world")
        self.assertEqual(transport.value(), ok(b"/c"))

    def test_body_then_pipelined_request(self) -> None:
        """
        Bytes after a request body are the next request: a C{Content-Length}
        body, a chunked body and a GET in one segment make three exchanges
        with the right bodies.
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"POST /1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /2 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\ndef\r\n0\r\n\r\n" + get(b"/3")
        )
        self.assertEqual(
            [(e.uri, e.body_bytes) for e in channel.exchanges],
            [(b"/1", b"abc"), (b"/2", b"def"), (b"/3", None)],
        )
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2") + ok(b"/3"))

    def test_body_of_pipelined_request_waits(self) -> None:
        """
        A request with a body pipelined behind an exchange in progress is
        read once that exchange finishes, body included.
        """
        clock = MemoryReactorClock()
        channel, transport, _ = connect(later(clock), clock)
        channel.dataReceived(
            get(b"/1") + b"POST /2 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n\r\nda"
        )
        channel.dataReceived(b"ta")
        self.assertEqual(len(channel.exchanges), 1)
        clock.advance(1)
        self.assertEqual([e.body_bytes for e in channel.exchanges], [None, b"data"])
        clock.advance(1)
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2"))

    def test_expect_continue_http11(self) -> None:
        """
        An HTTP/1.1 request with C{Expect: 100-continue} gets
        C{100 Continue} as soon as its head is read, before the body
        (RFC 9110 §10.1.1), then the final response.
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"PUT /e HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(channel.exchanges, [])
        channel.dataReceived(b"data")
        self.assertEqual(channel.exchanges[0].body_bytes, b"data")
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"/e"))

    def test_expect_continue_http10(self) -> None:
        """
        An HTTP/1.0 client never gets an interim response: C{Expect} is
        ignored (RFC 9110 §10.1.1).
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"PUT /e HTTP/1.0\r\nHost: example.com\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"data")
        self.assertEqual(channel.exchanges[0].body_bytes, b"data")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_expect_continue_without_body(self) -> None:
        """
        C{Expect: 100-continue} on a request without a body is answered with
        the final response only.
        """
        channel, transport, _ = connect()
        channel.dataReceived(get(b"/", b"Expect: 100-continue"))
        self.assertEqual(transport.value(), ok(b"/"))

    def test_declared_body_too_large(self) -> None:
        """
        A declared C{Content-Length} over C{max_body_size} is refused 413 at
        once, without C{100 Continue} and without an exchange; the answer
        says why and C{Connection: close}, and the connection closes
        lingering: the write side first, the rest after C{linger_timeout}.
        """
        channel, transport, clock = connect(max_body_size=10, linger_timeout=2.0)
        channel.dataReceived(
            b"PUT /e HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer)
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertIn(b"request body of 11 bytes exceeds the limit of 10 bytes", answer)
        self.assertNotIn(b"100 Continue", answer)
        self.assertEqual(channel.exchanges, [])
        self.assertTrue(channel.rejected)
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.aborted)
        channel.dataReceived(b"more body that is discarded")
        self.assertEqual(transport.value(), answer)
        clock.advance(1.9)
        self.assertFalse(transport.aborted)
        clock.advance(0.1)
        self.assertTrue(transport.aborted)

    def test_body_at_limit_is_accepted(self) -> None:
        """
        A body of exactly C{max_body_size} bytes is accepted, declared or
        chunked.
        """
        channel, _, _ = connect(max_body_size=4)
        channel.dataReceived(
            b"PUT /1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n\r\ndata"
            b"PUT /2 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nda\r\n2\r\nta\r\n0\r\n\r\n"
        )
        self.assertEqual([e.body_bytes for e in channel.exchanges], [b"data", b"data"])
        self.assertFalse(channel.rejected)

    def test_chunked_body_too_large(self) -> None:
        """
        A chunked body that grows past C{max_body_size} is refused 413 when
        it does, without an exchange, and the connection closes lingering.
        """
        channel, transport, clock = connect(max_body_size=10, linger_timeout=2.0)
        channel.dataReceived(
            b"PUT /e HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nabcdef\r\n"
        )
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"5\r\nghijk\r\n0\r\n\r\n" + get(b"/next"))
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertIn(b"request body exceeds the limit of 10 bytes", answer)
        self.assertEqual(channel.exchanges, [])
        self.assertTrue(transport.write_closed)
        clock.advance(2)
        self.assertTrue(transport.aborted)

    def test_linger_ends_when_client_closes(self) -> None:
        """
        When the refused client closes first, the lingering timer is
        cancelled: nothing is left on the clock.
        """
        channel, transport, clock = connect(max_body_size=1)
        channel.dataReceived(b"PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nab")
        self.assertTrue(transport.write_closed)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(transport.aborted)

    def test_malformed_chunked_body(self) -> None:
        """
        A malformed chunked body is refused 400 with the reason.
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"-5\r\nhello\r\n0\r\n\r\n"
        )
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
        self.assertIn(b"malformed chunked request body: malformed chunk-size line", answer)
        self.assertEqual(channel.exchanges, [])

    def test_client_leaves_during_body(self) -> None:
        """
        A client that disconnects while sending a body never starts an
        exchange, and nothing is left on the clock.
        """
        channel, transport, clock = connect()
        channel.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nabc"
        )
        channel.connectionLost(Failure(ConnectionLost()))
        channel.dataReceived(b"defghij")
        self.assertEqual(channel.exchanges, [])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(transport.value(), b"")


class MalformedRequestTests(SynchronousTestCase):
    """
    Unreadable requests are refused with the reason, and nothing after them
    is read (RFC 9112 §2.2, §3, §5).
    """

    def test_malformed_request_gets_400_with_reason(self) -> None:
        """
        A header line without a colon is answered 400 with the reason in
        the body and C{Connection: close}; the request pipelined after it
        never becomes an exchange, nor do bytes sent later.
        """
        channel, transport, _ = connect()
        channel.dataReceived(
            b"GET / HTTP/1.1\r\nHost: example.com\r\nno colon here\r\n\r\n" + get(b"/smuggled")
        )
        body = b"header line without a colon\n"
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body),
        )
        self.assertTrue(channel.rejected)
        self.assertFalse(channel.persistent)
        self.assertTrue(transport.write_closed)
        channel.dataReceived(get(b"/later"))
        self.assertEqual(channel.exchanges, [])
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)
        self.assertEqual(channel.request_line, (b"GET", b"/", b"HTTP/1.1"))

    def test_rejection_after_a_good_request(self) -> None:
        """
        A malformed request pipelined after a good one is refused only after
        the good one is answered, so the answers stay in order.
        """
        clock = MemoryReactorClock()
        channel, transport, _ = connect(later(clock), clock)
        channel.dataReceived(get(b"/good") + b"GET /bad HTTP/1.1\r\nHost : x\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        clock.advance(1)
        value = transport.value()
        self.assertTrue(value.startswith(ok(b"/good") + b"HTTP/1.1 400 Bad Request\r\n"), value)
        self.assertIn(b"invalid header field name", value)
        self.assertEqual(len(channel.exchanges), 1)

    def test_unsupported_version_gets_505(self) -> None:
        """
        An HTTP/2.0 request line is refused 505 (RFC 9110 §15.6.6).
        """
        channel, transport, _ = connect()
        channel.dataReceived(get(version=b"HTTP/2.0"))
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 505 "), answer)
        self.assertIn(b"HTTP/2.0 is not supported", answer)

    def test_head_too_large(self) -> None:
        """
        A head longer than C{max_head_size} is refused 400 once it cannot
        end within the bound, even before its end arrives.
        """
        channel, transport, _ = connect(max_head_size=64)
        channel.dataReceived(b"GET /" + b"a" * 100)
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
        self.assertIn(b"request head larger than 64 bytes", answer)
        self.assertEqual(channel.exchanges, [])

    def test_too_many_fields(self) -> None:
        """
        More than C{max_fields} header fields are refused 400.
        """
        channel, transport, _ = connect(max_fields=2)
        channel.dataReceived(get(b"/", b"A: 1", b"B: 2"))
        self.assertIn(b"more than 2 header fields", transport.value())
        self.assertEqual(channel.exchanges, [])

    def test_leading_empty_lines_ignored(self) -> None:
        """
        Empty lines before a request line are ignored (RFC 9112 §2.2), before
        the first request and between pipelined ones.
        """
        channel, transport, _ = connect()
        channel.dataReceived(b"\r\n\r\n" + get(b"/1") + b"\r\n" + get(b"/2"))
        self.assertEqual(transport.value(), ok(b"/1") + ok(b"/2"))
        self.assertFalse(channel.rejected)

    def test_leading_empty_lines_any_segmentation(self) -> None:
        """
        Whether empty lines before a request are ignored does not depend on
        how the network split them: every split of the bytes into two
        segments yields the one request.
        """
        data = b"\r\n\r\n\r\n" + get(b"/x")
        for split in range(1, len(data)):
            channel, transport, _ = connect()
            channel.dataReceived(data[:split])
            channel.dataReceived(data[split:])
            self.assertEqual(transport.value(), ok(b"/x"), f"split at {split}")

    def test_bare_lf_before_request_refused(self) -> None:
        """
        A bare LF is not an empty line (RFC 9112 §2.2: lines end with CRLF):
        one before the request line is refused, not skipped.
        """
        channel, transport, _ = connect()
        channel.dataReceived(b"\r\n\n" + get(b"/x"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), transport.value())
        self.assertEqual(channel.exchanges, [])


class IdleTimeoutTests(SynchronousTestCase):
    """
    A connection with no exchange in progress is closed after
    C{idle_timeout} seconds of silence (RFC 9112 §9.5).
    """

    def test_idle_connection_closes(self) -> None:
        """
        A client that sends nothing is disconnected after C{idle_timeout}
        seconds, not before.
        """
        _, transport, clock = connect(idle_timeout=10.0)
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_activity_restarts_the_clock(self) -> None:
        """
        Bytes of a request head count as activity: the timeout runs from the
        last of them.
        """
        channel, transport, clock = connect(idle_timeout=10.0)
        clock.advance(6)
        channel.dataReceived(b"GET / HT")
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(channel.exchanges, [])

    def test_silent_body_upload_times_out(self) -> None:
        """
        A client that stops in the middle of a request body is idle too.
        """
        channel, transport, clock = connect(idle_timeout=10.0)
        channel.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nabc"
        )
        clock.advance(10)
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(channel.exchanges, [])

    def test_not_idle_while_exchange_in_progress(self) -> None:
        """
        A slow response is not the client's silence: with the handler still
        working long past C{idle_timeout}, the connection stays open, and
        the idle clock starts again from the response.
        """
        channel, transport, clock = connect(never, idle_timeout=10.0)
        channel.dataReceived(get())
        clock.advance(100)
        self.assertFalse(transport.disconnecting)
        answer(channel.exchanges[0])
        self.assertEqual(transport.value(), ok(b"hello"))
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_idle_clock_restarts_after_response(self) -> None:
        """
        With a check pending when the response is sent (answered at 25 s,
        timeout 10 s), the connection closes exactly C{idle_timeout} after
        the response, not at the next check.
        """
        clock = MemoryReactorClock()
        channel, transport, _ = connect(later(clock, 25), clock, idle_timeout=10.0)
        channel.dataReceived(get(b"/slow"))
        clock.advance(25)
        self.assertEqual(transport.value(), ok(b"/slow"))
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_no_idle_timeout(self) -> None:
        """
        With C{idle_timeout} unset no timer is scheduled at all.
        """
        _, transport, clock = connect(idle_timeout=None)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10_000)
        self.assertFalse(transport.disconnecting)

    def test_disconnect_cancels_idle_timer(self) -> None:
        """
        A closed connection leaves nothing on the clock.
        """
        channel, _, clock = connect(idle_timeout=10.0)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(clock.getDelayedCalls(), [])


class HeadTimeoutTests(SynchronousTestCase):
    """
    A request head must arrive whole within C{head_timeout} seconds of its
    first byte, however busy the client keeps the idle clock.
    """

    def test_trickled_head_is_answered_408(self) -> None:
        """
        A client sending a byte every 5 s (idle timeout 10 s, never reached)
        is answered 408 and closed C{head_timeout} after its first byte.
        """
        channel, transport, clock = connect(idle_timeout=10.0, head_timeout=30.0)
        clock.advance(3)  # idle before the head: not counted
        request = get(b"/x")
        for sent in range(6):
            channel.dataReceived(request[sent : sent + 1])
            clock.advance(5)
        # 30 s after the first byte (at 3 s): six bytes, 33 s on the clock.
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertIn(b"request head not complete within 30s", transport.value())
        self.assertFalse(channel.persistent)
        self.assertEqual(channel.exchanges, [])

    def test_not_before_its_time(self) -> None:
        """
        The 408 comes at C{head_timeout} after the first byte, not before,
        and a head completed in time starts an exchange as usual.
        """
        channel, transport, clock = connect(idle_timeout=100.0, head_timeout=30.0)
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        clock.advance(29.9)
        self.assertEqual(transport.value(), b"")
        clock.advance(0.1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

        channel, transport, clock = connect(idle_timeout=100.0, head_timeout=30.0)
        channel.dataReceived(b"GET /b HTTP/1.1\r\n")
        clock.advance(29)
        channel.dataReceived(b"Host: example.com\r\n\r\n")
        self.assertEqual(transport.value(), ok(b"/b"))
        clock.advance(50)
        self.assertFalse(transport.disconnecting)

    def test_each_head_has_its_own_clock(self) -> None:
        """
        The clock starts at each head's first byte: a second head on a
        keep-alive connection gets the full time again.
        """
        channel, transport, clock = connect(idle_timeout=100.0, head_timeout=30.0)
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        clock.advance(20)
        channel.dataReceived(b"Host: example.com\r\n\r\n")
        clock.advance(20)
        channel.dataReceived(b"GET /b HTTP/1.1\r\n")
        clock.advance(29)
        self.assertEqual(transport.value(), ok(b"/a"))
        clock.advance(1)
        self.assertTrue(transport.value()[len(ok(b"/a")) :].startswith(b"HTTP/1.1 408 "))

    def test_without_an_idle_timeout(self) -> None:
        """
        With the idle timeout off, the head timeout still applies, and no
        timer is left once the head is complete.
        """
        channel, transport, clock = connect(idle_timeout=None, head_timeout=30.0)
        self.assertEqual(clock.getDelayedCalls(), [])
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        clock.advance(30)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

        channel, transport, clock = connect(idle_timeout=None, head_timeout=30.0)
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        channel.dataReceived(b"Host: example.com\r\n\r\n")
        clock.advance(30)
        self.assertEqual(transport.value(), ok(b"/a"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_head_timer_outlives_its_head(self) -> None:
        """
        The head timer goes when the connection is lost mid-head, and when
        the head turns out malformed (refused at once, lingering close).
        """
        channel, _, clock = connect(idle_timeout=None, head_timeout=30.0)
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(clock.getDelayedCalls(), [])

        channel, transport, clock = connect(idle_timeout=None, head_timeout=30.0)
        channel.dataReceived(b"GET /a HTTP/1.1\r\n")
        channel.dataReceived(b"Bad header\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        # Only the lingering close's timer is left.
        self.assertEqual(
            [call.getTime() for call in clock.getDelayedCalls()], [channel.linger_timeout]
        )

    def test_whole_heads_in_one_read_set_no_timer(self) -> None:
        """
        A head that arrives whole never starts the head clock: the usual
        request moves no timer.
        """
        channel, transport, clock = connect(idle_timeout=100.0, head_timeout=30.0)
        [idle] = clock.getDelayedCalls()
        due = idle.getTime()
        channel.dataReceived(get(b"/a"))
        self.assertEqual(transport.value(), ok(b"/a"))
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [due])


class DisconnectTests(SynchronousTestCase):
    """
    The exchange learns when its response is done, or when the client left
    before it was.
    """

    def test_client_disconnects_mid_exchange(self) -> None:
        """
        A client gone before the response finished fails the
        L{Exchange.notify_finish} deferreds (before and after the fact),
        marks the exchange disconnected, calls L{Exchange.ended} with the
        reason, and makes later writes and finish no-ops.
        """
        channel, transport, _ = connect(never)
        channel.dataReceived(get())
        exchange = channel.exchanges[0]
        waiting = exchange.notify_finish()
        exchange.content_length = 10
        exchange.write(b"part")
        sent = transport.value()
        reason = Failure(ConnectionLost())
        channel.connectionLost(reason)
        self.assertTrue(exchange.disconnected)
        self.assertIs(self.failureResultOf(waiting, ConnectionLost), reason)
        self.failureResultOf(exchange.notify_finish(), ConnectionError)
        self.assertEqual(exchange.ended_with, [reason])
        exchange.write(b"more")
        exchange.finish()
        self.assertFalse(exchange.finished)
        self.assertEqual(transport.value(), sent)
        self.assertEqual(exchange.ended_with, [reason])

    def test_notify_finish_fires_on_finish(self) -> None:
        """
        L{Exchange.notify_finish} fires with L{None} when the response is
        finished, and at once when asked afterwards; L{Exchange.ended} is
        called once with L{None}; a later disconnect changes nothing.
        """
        channel, _, _ = connect(never)
        channel.dataReceived(get())
        exchange = channel.exchanges[0]
        waiting: Deferred[None] = exchange.notify_finish()
        self.assertNoResult(waiting)
        answer(exchange)
        self.assertIsNone(self.successResultOf(waiting))
        self.assertIsNone(self.successResultOf(exchange.notify_finish()))
        self.assertEqual(exchange.ended_with, [None])
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(exchange.disconnected)
        self.assertEqual(exchange.ended_with, [None])

    def test_finish_twice(self) -> None:
        """
        A second L{Exchange.finish} writes nothing more.
        """

        def respond(exchange: _Recorder) -> None:
            answer(exchange)
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertEqual(transport.value(), ok(b"hello"))


class TakeOverTests(SynchronousTestCase):
    """
    A tunnel takes the connection over from HTTP (RFC 9110 §9.3.6).
    """

    def test_take_over_returns_bytes_after_head(self) -> None:
        """
        L{ClientChannel.take_over} returns the bytes received after the
        request head (the start of the tunnelled stream), and afterwards the
        channel neither parses what arrives nor times the connection out.
        """
        taken: list[bytes] = []
        channel, transport, clock = connect(
            lambda e: taken.append(e.channel.take_over()), idle_timeout=10.0
        )
        channel.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
            b"\x16\x03\x01GET / HTTP/1.1\r\n\r\n"
        )
        self.assertEqual(taken, [b"\x16\x03\x01GET / HTTP/1.1\r\n\r\n"])
        channel.dataReceived(get(b"/tunnelled"))
        self.assertEqual(len(channel.exchanges), 1)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(1000)
        self.assertFalse(transport.disconnecting)

    def test_take_over_later_resumes_reading(self) -> None:
        """
        Taking over after the client sent enough to pause reading returns
        everything it sent and resumes reading.
        """
        channel, transport, _ = connect(never, max_head_size=64)
        channel.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        channel.dataReceived(b"x" * 40)
        channel.dataReceived(b"y" * 40)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(channel.take_over(), b"x" * 40 + b"y" * 40)
        self.assertEqual(transport.producerState, "producing")


class WriteGuardTests(SynchronousTestCase):
    """
    A handler bug must not desynchronise the client.
    """

    def test_writing_past_content_length_aborts(self) -> None:
        """
        Writing more body than C{content_length} announced aborts the
        connection: the extra bytes would otherwise be read as the start of
        the next response (RFC 9112 §6.3); the pipelined request behind it
        is not answered.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.content_length = 3
            exchange.write(b"abcd")
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get(b"/1") + get(b"/2"))
        self.assertTrue(transport.aborted)
        self.assertFalse(channel.persistent)
        self.assertEqual(len(channel.exchanges), 1)

    def test_writing_up_to_content_length_is_fine(self) -> None:
        """
        Exactly C{content_length} bytes, over several writes, is not an
        overrun.
        """

        def respond(exchange: _Recorder) -> None:
            exchange.content_length = 4
            exchange.write(b"ab")
            exchange.write(b"cd")
            exchange.finish()

        channel, transport, _ = connect(respond)
        channel.dataReceived(get())
        self.assertFalse(transport.aborted)
        self.assertEqual(transport.value(), ok(b"abcd"))


class _Producer:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class ProducerTests(SynchronousTestCase):
    """
    Backpressure from the client connection reaches the exchange's producer.
    """

    def test_register_and_unregister_pass_through(self) -> None:
        """
        L{Exchange.register_producer} registers the producer with the client
        transport, and L{Exchange.unregister_producer} removes it; a second
        unregister is a no-op.
        """
        channel, transport, _ = connect(never)
        channel.dataReceived(get())
        exchange = channel.exchanges[0]
        producer = _Producer()
        exchange.register_producer(producer, True)
        self.assertIs(transport.producer, producer)
        self.assertTrue(transport.streaming)
        exchange.unregister_producer()
        self.assertIsNone(transport.producer)
        exchange.unregister_producer()
        self.assertIsNone(transport.producer)

    def test_finish_unregisters_producer(self) -> None:
        """
        Finishing the response unregisters a producer still registered, so
        the next exchange can register its own.
        """
        channel, transport, _ = connect(never)
        channel.dataReceived(get(b"/1") + get(b"/2"))
        first = channel.exchanges[0]
        first.register_producer(_Producer(), False)
        self.assertFalse(transport.streaming)
        answer(first)
        self.assertIsNone(transport.producer)
        channel.exchanges[1].register_producer(_Producer(), True)
        self.assertIsNotNone(transport.producer)


@implementer(ITCPTransport)
class _TCPTransport(_Transport):
    """
    A fake TCP transport that records C{setTcpNoDelay}.
    """

    no_delay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


class SocketOptionTests(SynchronousTestCase):
    """
    Options the channel sets on its socket.
    """

    def test_nagle_is_off_on_tcp(self) -> None:
        """
        On a TCP connection the channel turns Nagle's algorithm off, as
        Twisted's C{HTTPChannel} did: a response's last small segment must
        not wait for the client's delayed ACK.
        """
        channel = _Channel(echo_uri)
        channel.reactor = MemoryReactorClock()
        transport = _TCPTransport()
        channel.makeConnection(transport)
        self.assertIs(transport.no_delay, True)

    def test_other_transports_are_left_alone(self) -> None:
        """
        A transport that is not TCP (TLS layered on a fake, a UNIX socket)
        is not asked about TCP options.
        """
        _channel, transport, _clock = connect()
        self.assertFalse(ITCPTransport.providedBy(transport))
        self.assertFalse(hasattr(transport, "no_delay"))
