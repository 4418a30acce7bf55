"""
L{squeak.net.origin}: the strict HTTP/1.1 client and its connection pool, on
fake transports and a fake clock.

Loopback behaviour (reuse counts over real sockets, truncation, bad framing,
TLS verification) is covered by tests/test_proxy.py, test_tls.py and
test_end_to_end.py, which run the whole proxy.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squeak.errors import BodyComplete, BodyEndedByClose
from squeak.http.target import parse_absolute_target
from squeak.net.failures import NoResponseError, ResponseTruncatedError, error_for_failure
from squeak.net.origin import (
    MalformedResponseError,
    UpstreamClient,
    UpstreamResponse,
    _ConnectionFactory,
)

ORIGIN = ("http", "origin.test", 80)
URL = b"http://origin.test/path?q=1"


class _FakeEndpoint:
    """
    Connects at once over a L{StringTransport}, or fails with C{error}.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransport]] = []
        self.error: BaseException | None = None
        self.hold = False
        self.waiting: list[Deferred[Any]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.error is not None:
            return fail(self.error)
        if self.hold:
            waiting: Deferred[Any] = Deferred()
            self.waiting.append(waiting)
            return waiting
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 80))
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class _Body:
    """
    A body protocol that records what it gets.
    """

    def __init__(self) -> None:
        self.transport: Any = None
        self.data: list[bytes] = []
        self.reason: Failure | None = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason

    @property
    def body(self) -> bytes:
        return b"".join(self.data)


class _Harness(SynchronousTestCase):
    """
    A client on a fake clock and a fake endpoint.
    """

    max_idle = 4

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = _FakeEndpoint()
        self.client = UpstreamClient(
            self.clock,
            connect_timeout=5,
            max_idle_per_host=self.max_idle,
            idle_timeout=30,
            endpoint_factory=lambda scheme, host, port: self.endpoint,
        )

    def request(
        self,
        method: bytes = b"GET",
        url: bytes = URL,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: Any = None,
    ) -> Deferred[UpstreamResponse]:
        if headers is None:
            headers = [(b"Host", b"origin.test"), (b"Accept", b"*/*")]
        return self.client.request(method, parse_absolute_target(url), headers, body)

    def last(self) -> tuple[Any, StringTransport]:
        return self.endpoint.connections[-1]

    def answer(self, data: bytes, method: bytes = b"GET") -> tuple[UpstreamResponse, _Body]:
        """
        Send a request, feed C{data} as the whole answer, and collect the
        body.
        """
        d = self.request(method)
        protocol, _ = self.last()
        protocol.dataReceived(data)
        response = self.successResultOf(d)
        body = _Body()
        response.deliverBody(body)
        return response, body

    def fed_bytewise(self, data: bytes) -> tuple[UpstreamResponse, _Body]:
        """
        Like L{answer}, one byte at a time.
        """
        d = self.request()
        protocol, _ = self.last()
        body = _Body()
        response = None
        for index in range(len(data)):
            protocol.dataReceived(data[index : index + 1])
            if d.called and response is None:
                response = self.successResultOf(d)
                response.deliverBody(body)
        assert response is not None
        return response, body

    def lose(self, protocol: Any, reason: BaseException | None = None) -> None:
        protocol.connectionLost(Failure(reason or ConnectionDone()))

    def idle(self) -> int:
        return self.client.idle_count(*ORIGIN)


class RequestWritingTests(_Harness):
    """
    The request head goes out in one write: origin-form, Host first, framing
    computed from the body.
    """

    def test_get_head_is_one_write_in_origin_form(self) -> None:
        """
        A GET is written as C{GET /path?q HTTP/1.1}, Host first, no
        Content-Length.
        """
        self.request(headers=[(b"Accept", b"*/*"), (b"Host", b"origin.test")])
        _, transport = self.last()
        self.assertEqual(
            transport.value(),
            b"GET /path?q=1 HTTP/1.1\r\nHost: origin.test\r\nAccept: */*\r\n\r\n",
        )

    def test_framing_fields_are_never_copied(self) -> None:
        """
        Content-Length and Transfer-Encoding given by the caller are dropped;
        the length is computed from the body, from its current position.
        """
        body = io.BytesIO(b"xxhello")
        body.seek(2)
        self.request(
            b"POST",
            headers=[
                (b"Host", b"origin.test"),
                (b"Content-Length", b"99"),
                (b"Transfer-Encoding", b"chunked"),
            ],
            body=body,
        )
        _, transport = self.last()
        self.assertEqual(
            transport.value(),
            b"POST /path?q=1 HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5\r\n\r\nhello",
        )

    def test_post_without_body_says_length_zero(self) -> None:
        """
        RFC 9110 §8.6: a POST without content carries C{Content-Length: 0}.
        """
        self.request(b"POST", headers=[(b"Host", b"origin.test")])
        _, transport = self.last()
        self.assertIn(b"\r\nContent-Length: 0\r\n", transport.value())

    def test_large_body_is_streamed_with_backpressure(self) -> None:
        """
        A body above one block is streamed by a producer registered on the
        transport; it stops while the transport is paused and finishes with
        the right number of bytes.
        """
        data = bytes(range(256)) * 1024  # 256 KiB
        self.request(b"PUT", headers=[(b"Host", b"origin.test")], body=io.BytesIO(data))
        _protocol, transport = self.last()
        head, _, sent = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 262144", head)
        self.assertEqual(sent, data)
        self.assertIsNone(transport.producer)

    def test_paused_body_sender_waits(self) -> None:
        """
        While the connection pauses the body producer, no more is read.
        """
        data = b"a" * (300 * 1024)

        class PausingTransport(StringTransport):
            def write(self, chunk: bytes) -> None:
                super().write(chunk)
                if self.producer is not None and len(self.value()) > 100 * 1024:
                    self.producer.pauseProducing()

        class Endpoint(_FakeEndpoint):
            def connect(self, factory: Any) -> Deferred[Any]:
                protocol = factory.buildProtocol(None)
                transport = PausingTransport()
                protocol.makeConnection(transport)
                self.connections.append((protocol, transport))
                return succeed(protocol)

        self.endpoint = Endpoint()
        self.request(b"PUT", headers=[(b"Host", b"origin.test")], body=io.BytesIO(data))
        _, transport = self.last()
        self.assertLess(len(transport.value()), 200 * 1024)
        self.assertIsNotNone(transport.producer)
        transport.clear()
        transport.producer.resumeProducing()
        self.assertGreater(len(transport.value()), 0)


class ResponseParsingTests(_Harness):
    """
    Status line and fields are parsed strictly; every field is kept.
    """

    def test_simple_response(self) -> None:
        """
        Code, phrase, version, every field in order (connection-level ones
        too), length and peer; the body ends with L{BodyComplete}.
        """
        response, body = self.answer(
            b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 5\r\nConnection: x-private\r\n"
            b"X-Private: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello"
        )
        self.assertEqual(
            (response.code, response.phrase, response.version, response.length, response.peer),
            (200, b"Fine Thanks", (b"HTTP", 1, 1), 5, "192.0.2.7"),
        )
        self.assertEqual(
            response.raw_headers,
            [
                (b"Content-Length", b"5"),
                (b"Connection", b"x-private"),
                (b"X-Private", b"1"),
                (b"Set-Cookie", b"a=1"),
                (b"Set-Cookie", b"b=2"),
            ],
        )
        self.assertEqual(body.body, b"hello")
        self.assertTrue(body.reason.check(BodyComplete))

    def test_whitespace_around_values_is_removed_and_empty_reason_kept(self) -> None:
        """
        OWS around a value is not part of it (RFC 9110 §5.5); a status line
        without a reason phrase is accepted.
        """
        response, _ = self.answer(b"HTTP/1.1 204\r\nX-A: \t spaced \t\r\nX-B:\r\n\r\n")
        self.assertEqual(response.phrase, b"")
        self.assertEqual(response.raw_headers, [(b"X-A", b"spaced"), (b"X-B", b"")])

    def test_fed_one_byte_at_a_time(self) -> None:
        """
        The parser copes with any split of the input.
        """
        response, body = self.fed_bytewise(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world"
        )
        self.assertEqual((response.code, body.body), (200, b"hello world"))
        self.assertTrue(body.reason.check(BodyComplete))
        self.assertEqual(self.idle(), 1)

    def _refused(self, data: bytes) -> Failure:
        d = self.request()
        protocol, transport = self.last()
        protocol.dataReceived(data)
        failure = self.failureResultOf(d, MalformedResponseError)
        self.assertTrue(transport.disconnecting, "a connection with a bad response is closed")
        self.assertEqual(self.idle(), 0)
        return failure

    def test_malformed_heads_are_refused(self) -> None:
        """
        Bad status lines, obs-fold, lines without a colon, bad field names
        and control characters fail the request with
        L{MalformedResponseError}, which maps to 502 ERR_INVALID_RESP.
        """
        heads = {
            b"HTTP/1.1 OK\r\n\r\n": "status line",
            b"HTTP/2.0 200 OK\r\n\r\n": "status line",
            b"HTTP/1.1 20 OK\r\n\r\n": "status line",
            b"ICY 200 OK\r\n\r\n": "status line",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n": "obsolete line folding",
            b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n": "without a colon",
            b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n": "invalid response field name",
            b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n": "invalid response field name",
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n": "invalid characters",
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n": "invalid characters",
            b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\n\r\n": "invalid characters",
        }
        for data, needle in heads.items():
            failure = self._refused(data)
            self.assertIsInstance(failure.value, MalformedResponseError, data)
            self.assertIn(needle, failure.value.detail, data)
            self.assertEqual(error_for_failure(failure).name, "ERR_INVALID_RESP")

    def test_oversized_head_is_refused(self) -> None:
        """
        A head above 64 KiB is refused without waiting for its end.
        """
        failure = self._refused(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (65 * 1024))
        self.assertIn("larger than", failure.value.detail)

    def test_too_many_fields_are_refused(self) -> None:
        """
        More than C{max_fields} field lines are refused.
        """
        failure = self._refused(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 501 + b"\r\n")
        self.assertIn("more than 500", failure.value.detail)

    def test_ambiguous_framing_is_refused(self) -> None:
        """
        L{check_response_framing} runs before a body decoder is chosen:
        several or non-digit Content-Length, Transfer-Encoding with
        Content-Length, codings other than chunked.
        """
        heads = [
            b"Content-Length: 5\r\nContent-Length: 5",
            b"Content-Length: 5, 5",
            b"Content-Length: +5",
            b"Content-Length: 0x5",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked",
            b"Transfer-Encoding: gzip",
            b"Transfer-Encoding: gzip, chunked",
            b"Transfer-Encoding: chunked, chunked",
        ]
        for fields in heads:
            failure = self._refused(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n\r\n")
            self.assertIsInstance(failure.value, MalformedResponseError, fields)
            self.assertRegex(failure.value.detail, r"^response .*\(RFC 911[02] §", fields)
            self.assertEqual(error_for_failure(failure).name, "ERR_INVALID_RESP")

    def test_interim_responses_are_skipped(self) -> None:
        """
        100, 102 and 103 are read and dropped; the final response follows.
        """
        response, body = self.answer(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertEqual((response.code, body.body), (201, b"ok"))
        self.assertEqual(self.idle(), 1)

    def test_interim_responses_are_told_in_order(self) -> None:
        """
        A request's C{on_interim} is told of each interim response, in
        order, with its fields; none becomes the response.
        """
        seen: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = []
        d = self.client.request(
            b"GET",
            parse_absolute_target(URL),
            [(b"Host", b"origin.test")],
            None,
            on_interim=lambda code, reason, fields: seen.append((code, reason, fields)),
        )
        protocol, _ = self.last()
        protocol.dataReceived(
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        )
        self.assertNoResult(d)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        response = self.successResultOf(d)
        body = _Body()
        response.deliverBody(body)
        self.assertEqual(
            seen,
            [
                (102, b"Processing", []),
                (103, b"Early Hints", [(b"Link", b"</a.css>; rel=preload")]),
            ],
        )
        self.assertEqual((response.code, body.body), (200, b"ok"))

    def test_switching_protocols_is_refused(self) -> None:
        """
        RFC 9110 §7.8: no pooled request asks to switch protocols, so a 101
        fails it with L{MalformedResponseError} (502) and the connection,
        which may now speak anything, is closed.
        """
        failure = self._refused(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        self.assertIn("101 Switching Protocols", failure.value.detail)
        self.assertEqual(error_for_failure(failure).status, 502)

    def test_no_body_for_head_204_and_304(self) -> None:
        """
        RFC 9112 §6.3: HEAD responses and 204/304 have no content whatever
        their fields say; the connection is reused; a HEAD response's
        Content-Length is available as C{content_length}.
        """
        response, body = self.answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", method=b"HEAD"
        )
        self.assertEqual((response.length, response.content_length, body.body), (0, 100, b""))
        self.assertTrue(body.reason.check(BodyComplete))
        for status in (b"204 No Content", b"304 Not Modified"):
            response, body = self.answer(b"HTTP/1.1 " + status + b"\r\nContent-Length: 7\r\n\r\n")
            self.assertEqual((response.length, body.body), (0, b""))
            self.assertTrue(body.reason.check(BodyComplete))
        self.assertEqual(len(self.endpoint.connections), 1)
        self.assertEqual(self.idle(), 1)

    def test_close_delimited_body(self) -> None:
        """
        Without Content-Length or chunked the body runs to the close and
        ends with L{BodyEndedByClose}; the connection is not reused.
        """
        response, body = self.answer(b"HTTP/1.0 200 OK\r\n\r\nsome")
        protocol, _transport = self.last()
        protocol.dataReceived(b" more")
        self.assertIsNone(response.length)
        self.assertIsNone(body.reason)
        self.lose(protocol)
        self.assertEqual(body.body, b"some more")
        self.assertTrue(body.reason.check(BodyEndedByClose))
        self.assertEqual(self.idle(), 0)

    def test_truncated_length_body_fails(self) -> None:
        """
        A close before Content-Length bytes arrived ends the body with
        L{ResponseTruncatedError}, not L{BodyComplete}.
        """
        _response, body = self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        self.lose(self.last()[0], ConnectionLost())
        self.assertEqual(body.body, b"01234")
        self.assertTrue(body.reason.check(ResponseTruncatedError))
        self.assertEqual(self.idle(), 0)

    def test_body_arriving_before_deliver_body_is_held(self) -> None:
        """
        Body bytes that arrive before C{deliverBody} are kept and handed
        over first; beyond the hold limit the origin is paused until then.
        """
        d = self.request()
        protocol, transport = self.last()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n")
        response = self.successResultOf(d)
        protocol.dataReceived(b"a" * 70000)
        self.assertEqual(transport.producerState, "paused")
        body = _Body()
        response.deliverBody(body)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(body.body, b"a" * 70000)
        protocol.dataReceived(b"b" * 130000)
        self.assertTrue(body.reason.check(BodyComplete))


class ChunkedTests(_Harness):
    """
    Chunked bodies (RFC 9112 §7.1) are decoded strictly, as they arrive.
    """

    HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    def test_decoded_with_extensions_and_trailers(self) -> None:
        """
        Extensions are ignored, trailers read and dropped, hex sizes in
        either case accepted; the connection is reused.
        """
        response, body = self.answer(
            self.HEAD + b"5;name=value\r\nhello\r\nA ; x\r\n0123456789\r\n"
            b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n"
        )
        self.assertIsNone(response.length)
        self.assertEqual(body.body, b"hello0123456789")
        self.assertTrue(body.reason.check(BodyComplete))
        self.assertEqual(self.idle(), 1)

    def test_fed_one_byte_at_a_time(self) -> None:
        """
        Chunk lines, data and CRLFs may be split anywhere.
        """
        _response, body = self.fed_bytewise(self.HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(body.body, b"abcde")
        self.assertTrue(body.reason.check(BodyComplete))
        self.assertEqual(self.idle(), 1)

    def test_data_is_passed_on_as_it_arrives(self) -> None:
        """
        Part of a chunk is delivered before the rest of it arrives.
        """
        _response, body = self.answer(self.HEAD + b"10\r\n01234")
        self.assertEqual(body.body, b"01234")
        self.assertIsNone(body.reason)

    def test_bad_chunking_fails_the_body(self) -> None:
        """
        A size that is not hex, a sign, a missing CRLF after the data, a
        huge size line, a bad trailer: the body fails with
        L{MalformedResponseError} and the connection is dropped.
        """
        cases = [
            b"z\r\n",
            b"+5\r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"5" * 5000,
            b"0\r\nbad trailer\r\n\r\n",
            b"5\nhello\r\n",
        ]
        for data in cases:
            _response, body = self.answer(self.HEAD + data)
            self.assertTrue(body.reason.check(MalformedResponseError), data)
            self.assertTrue(self.last()[1].disconnecting, data)
        self.assertEqual(self.idle(), 0)

    def test_truncated_chunked_body_fails(self) -> None:
        """
        A close before the last chunk is a failure, never completion.
        """
        _response, body = self.answer(self.HEAD + b"5\r\nhello\r\n")
        self.lose(self.last()[0])
        self.assertTrue(body.reason.check(ResponseTruncatedError))
        self.assertEqual(self.idle(), 0)

    def test_long_chunk_size_line_is_refused_however_split(self) -> None:
        """
        A chunk-size line longer than C{max_chunk_line} (4 KiB, extensions
        included) is refused whether it arrives in one read or in two: the
        limit is the request side's, checked the same way (RFC 9112 §7.1).
        """
        line = b"5;" + b"x" * 5000 + b"\r\n"
        data = self.HEAD + line + b"hello\r\n0\r\n\r\n"
        for at in (len(data), len(self.HEAD) + 100, len(data) - 20):
            d = self.request()
            protocol, transport = self.last()
            protocol.dataReceived(data[:at])
            response = self.successResultOf(d)
            body = _Body()
            response.deliverBody(body)
            protocol.dataReceived(data[at:])
            self.assertTrue(body.reason is not None, at)
            self.assertTrue(body.reason.check(MalformedResponseError), at)
            self.assertEqual(body.reason.value.detail, "chunk-size line too long", at)
            self.assertTrue(transport.disconnecting, at)

    def test_trailer_fields_are_bounded(self) -> None:
        """
        More than C{max_fields} trailer fields fail the body, as more than
        C{max_fields} head fields fail the response.
        """
        _response, body = self.answer(self.HEAD + b"0\r\n" + b"X-T: 1\r\n" * 501 + b"\r\n")
        self.assertTrue(body.reason.check(MalformedResponseError))
        self.assertIn("more than 500 trailer fields", body.reason.value.detail)

    def test_bad_trailer_field_is_named_as_a_response_field(self) -> None:
        """
        A trailer line that is not a field line is refused with the
        response side's wording.
        """
        _response, body = self.answer(self.HEAD + b"0\r\nX-T : 1\r\n\r\n")
        self.assertTrue(body.reason.check(MalformedResponseError))
        self.assertIn("invalid response field name", body.reason.value.detail)


class ResponseHeadSplitTests(_Harness):
    """
    The verdict on a response head does not depend on how the network split
    it (the request side's rule, L{squeak.http.head.find_head_end}).
    """

    def _verdict(self, data: bytes, at: int) -> str:
        d = self.request()
        protocol, _ = self.last()
        protocol.dataReceived(data[:at])
        protocol.dataReceived(data[at:])
        result: list[Any] = []
        d.addBoth(result.append)
        if not result:
            return "waiting"
        if isinstance(result[0], Failure):
            return f"refused: {result[0].value.detail}"
        return f"{result[0].code}"

    def test_head_of_exactly_the_limit(self) -> None:
        """
        A head of exactly C{max_head_size} bytes is accepted, wherever its
        terminator falls; one byte more is refused, wherever it falls.
        """
        status = b"HTTP/1.1 200 OK\r\nX-Pad: "
        size = 64 * 1024
        fits = status + b"a" * (size - len(status)) + b"\r\n\r\n"
        over = status + b"a" * (size + 1 - len(status)) + b"\r\n\r\n"
        for at in range(len(fits) - 5, len(fits)):
            self.assertEqual(self._verdict(fits, at), "200", at)
            self.assertEqual(
                self._verdict(over, at + 1), "refused: response head larger than 65536 bytes", at
            )


class PoolTests(_Harness):
    """
    Connections are reused only after a complete, unambiguous response that
    did not end the connection.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def test_reused_lifo(self) -> None:
        """
        After a complete response the connection carries the next request;
        the most recently pooled connection is used first.
        """
        first = self.request()
        second = self.request()
        (p1, _t1), (p2, t2) = self.endpoint.connections
        p1.dataReceived(self.OK)
        self.successResultOf(first).deliverBody(_Body())
        p2.dataReceived(self.OK)
        self.successResultOf(second).deliverBody(_Body())
        self.assertEqual(self.idle(), 2)
        t2.clear()
        self.request()
        self.assertEqual(len(self.endpoint.connections), 2)
        self.assertTrue(t2.value().startswith(b"GET /path?q=1 HTTP/1.1"))
        self.assertEqual(self.idle(), 1)

    def test_returned_before_the_body_protocol_hears_the_end(self) -> None:
        """
        The connection is back in the pool when C{connectionLost(BodyComplete)}
        runs, so a request made from there reuses it.
        """
        seen = []

        class Chained(_Body):
            def connectionLost(self_, reason: Failure) -> None:  # noqa: N805
                seen.append(self.idle())

        _response, _ = self.answer(self.OK)
        self.assertEqual(self.idle(), 1)
        d = self.request()
        self.last()[0].dataReceived(self.OK)
        self.successResultOf(d).deliverBody(Chained())
        self.assertEqual(seen, [1])

    def test_not_reused_after_connection_close(self) -> None:
        """
        C{Connection: close} (any case, in a list) ends the connection.
        """
        self.answer(b"HTTP/1.1 200 OK\r\nConnection: x-a, Close\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(self.last()[1].disconnecting)
        self.assertEqual(self.idle(), 0)

    def test_http10_needs_keep_alive(self) -> None:
        """
        An HTTP/1.0 response is reused only with C{Connection: keep-alive}.
        """
        self.answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.idle(), 0)
        self.answer(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.idle(), 1)

    def test_not_reused_with_bytes_after_the_response(self) -> None:
        """
        Bytes after a complete response (nothing was asked) make the
        connection untrustworthy.
        """
        self.answer(self.OK + b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(self.last()[1].disconnecting)
        self.assertEqual(self.idle(), 0)

    def test_idle_connection_that_talks_is_dropped(self) -> None:
        """
        An idle connection that receives bytes is closed and leaves the pool.
        """
        self.answer(self.OK)
        protocol, transport = self.last()
        protocol.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.idle(), 0)

    def test_idle_connection_closed_by_origin_is_dropped(self) -> None:
        """
        An origin closing an idle connection removes it from the pool.
        """
        self.answer(self.OK)
        self.lose(self.last()[0])
        self.assertEqual(self.idle(), 0)
        self.request()
        self.assertEqual(len(self.endpoint.connections), 2)

    def test_cancelled_request_aborts_the_connection(self) -> None:
        """
        Cancelling the L{Deferred} (read timeout, client gone) aborts the
        connection; it never returns to the pool.
        """
        d = self.request()
        protocol, transport = self.last()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(self.OK)
        self.lose(protocol)
        self.assertEqual(self.idle(), 0)

    def test_cancelled_while_connecting(self) -> None:
        """
        Cancelling before the connection is made cancels the attempt.
        """
        self.endpoint.hold = True
        d = self.request()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        [attempt] = self.endpoint.waiting
        self.assertTrue(attempt.called)

    def test_stopped_body_aborts_the_connection(self) -> None:
        """
        C{stopProducing} from the body's consumer aborts the connection and
        ends the body with L{ResponseTruncatedError}.
        """
        _response, body = self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        body.transport.stopProducing()
        self.assertTrue(body.reason.check(ResponseTruncatedError))
        self.assertTrue(self.last()[1].disconnecting)
        self.lose(self.last()[0])
        self.assertEqual(self.idle(), 0)

    def test_pause_and_resume_reach_the_transport(self) -> None:
        """
        The body's transport pauses and resumes reading from the origin;
        a connection put back while paused is resumed.
        """
        _response, body = self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n01")
        _, transport = self.last()
        body.transport.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        body.transport.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        body.transport.pauseProducing()
        self.last()[0].dataReceived(b"23")
        self.assertTrue(body.reason.check(BodyComplete))
        self.assertEqual(transport.producerState, "producing")
        body.transport.pauseProducing()  # after the end: no effect on the pooled connection
        self.assertEqual(transport.producerState, "producing")

    def test_idle_timeout(self) -> None:
        """
        An idle connection is closed C{idle_timeout} seconds after it was
        pooled, not before; reuse restarts the count.
        """
        self.answer(self.OK)
        _, first = self.last()
        self.clock.advance(20)
        self.answer(self.OK)  # reuses and re-pools the same connection
        self.clock.advance(15)
        self.assertFalse(first.disconnecting)
        self.assertEqual(self.idle(), 1)
        self.clock.advance(15)
        self.assertTrue(first.disconnecting)
        self.assertEqual(self.idle(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_max_idle_cap(self) -> None:
        """
        At most C{max_idle_per_host} idle connections are kept per origin;
        the oldest is closed.
        """
        pending = [self.request() for _ in range(6)]
        for protocol, _ in self.endpoint.connections:
            protocol.dataReceived(self.OK)
        for d in pending:
            self.successResultOf(d).deliverBody(_Body())
        self.assertEqual(self.idle(), 4)
        closed = [t.disconnecting for _, t in self.endpoint.connections]
        self.assertEqual(closed, [True, True, False, False, False, False])

    def test_close_closes_idle_connections(self) -> None:
        """
        C{close()} closes idle connections and fires once they are gone.
        """
        self.answer(self.OK)
        protocol, transport = self.last()
        closing = self.client.close()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(closing)
        self.lose(protocol)
        self.successResultOf(closing)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_factory_is_quiet(self) -> None:
        """
        Connection factories do not log every start and stop.
        """
        self.assertFalse(_ConnectionFactory(self.client, ORIGIN).noisy)


class _Receiver:
    """
    A L{ResponseReceiver} that records what it is told.
    """

    def __init__(self) -> None:
        self.responses: list[UpstreamResponse] = []
        self.failures: list[Failure] = []

    def response_received(self, response: UpstreamResponse) -> None:
        self.responses.append(response)

    def request_failed(self, reason: Failure) -> None:
        self.failures.append(reason)


class ReceiverTests(_Harness):
    """
    L{UpstreamClient.send_request}: the same request as L{UpstreamClient.request},
    answered to a receiver instead of a L{Deferred} (the miss path).
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def send(self) -> tuple[_Receiver, Any]:
        receiver = _Receiver()
        pending = self.client.send_request(
            b"GET", parse_absolute_target(URL), [(b"Host", b"origin.test")], None, receiver
        )
        return receiver, pending

    def test_response_told_once(self) -> None:
        """
        The response goes to C{response_received}, once, with the request
        written as L{request} writes it; the connection is pooled after
        its body.
        """
        receiver, pending = self.send()
        protocol, transport = self.last()
        self.assertEqual(transport.value(), b"GET /path?q=1 HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        self.assertIsNone(pending.deferred)
        protocol.dataReceived(self.OK)
        [response] = receiver.responses
        self.assertEqual((response.code, receiver.failures), (200, []))
        body = _Body()
        response.deliverBody(body)
        self.assertEqual(body.body, b"ok")
        self.assertEqual(self.idle(), 1)
        pending.cancel()  # answered: nothing happens
        self.assertEqual((len(receiver.responses), receiver.failures), (1, []))

    def test_failure_told(self) -> None:
        """
        A connection that fails goes to C{request_failed} as a L{Failure};
        it may be told before C{send_request} returns.
        """
        self.endpoint.error = ConnectionRefusedError()
        receiver, pending = self.send()
        [reason] = receiver.failures
        self.assertTrue(reason.check(ConnectionRefusedError))
        self.assertTrue(pending.done)
        self.assertEqual(receiver.responses, [])

    def test_cancel(self) -> None:
        """
        C{cancel} aborts the connection (never pooled) and tells the
        receiver L{CancelledError}, once; a response arriving later is not
        told.
        """
        receiver, pending = self.send()
        protocol, transport = self.last()
        pending.cancel()
        pending.cancel()
        [reason] = receiver.failures
        self.assertTrue(reason.check(CancelledError))
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(self.OK)
        self.lose(protocol)
        self.assertEqual((receiver.responses, self.idle()), ([], 0))

    def test_cancel_while_connecting(self) -> None:
        """
        Cancelling before the connection is made cancels the attempt.
        """
        self.endpoint.hold = True
        receiver, pending = self.send()
        pending.cancel()
        [reason] = receiver.failures
        self.assertTrue(reason.check(CancelledError))
        [attempt] = self.endpoint.waiting
        self.assertTrue(attempt.called)


class RetryTests(_Harness):
    """
    The keep-alive race: a reused connection that dies before any response
    byte is retried once on a new connection, for idempotent requests whose
    body can be sent again.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def _pooled(self) -> None:
        self.answer(self.OK)
        self.assertEqual(self.idle(), 1)

    def test_idempotent_request_is_retried_on_a_new_connection(self) -> None:
        """
        A GET on a reused connection closed before any byte goes again on a
        fresh connection.
        """
        self._pooled()
        d = self.request()
        self.lose(self.last()[0])
        self.assertEqual(len(self.endpoint.connections), 2)
        protocol, transport = self.last()
        self.assertTrue(transport.value().startswith(b"GET /path?q=1 HTTP/1.1\r\n"))
        protocol.dataReceived(self.OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_put_body_is_sent_again(self) -> None:
        """
        A PUT whose body is a seekable file is retried with its whole body.
        """
        self._pooled()
        data = b"x" * 100000
        self.request(b"PUT", headers=[(b"Host", b"o")], body=io.BytesIO(data))
        self.lose(self.last()[0])
        _, transport = self.last()
        self.assertTrue(transport.value().endswith(b"\r\n\r\n" + data))

    def test_only_once(self) -> None:
        """
        A retry that fails too fails the request: ERR_ZERO_SIZE_OBJECT.
        """
        self._pooled()
        d = self.request()
        self.lose(self.last()[0])
        self.lose(self.last()[0])
        failure = self.failureResultOf(d, NoResponseError)
        self.assertEqual(error_for_failure(failure).name, "ERR_ZERO_SIZE_OBJECT")
        self.assertEqual(len(self.endpoint.connections), 2)

    def test_not_for_post(self) -> None:
        """
        A POST is never sent twice.
        """
        self._pooled()
        d = self.request(b"POST", headers=[(b"Host", b"o")], body=io.BytesIO(b"a"))
        self.lose(self.last()[0])
        self.failureResultOf(d, NoResponseError)
        self.assertEqual(len(self.endpoint.connections), 1)

    def test_not_after_response_bytes(self) -> None:
        """
        Once any response byte arrived the request is not retried.
        """
        self._pooled()
        d = self.request()
        self.last()[0].dataReceived(b"HTTP/1.1 2")
        self.lose(self.last()[0])
        failure = self.failureResultOf(d, ResponseTruncatedError)
        self.assertEqual(error_for_failure(failure).name, "ERR_READ_ERROR")
        self.assertEqual(len(self.endpoint.connections), 1)

    def test_not_on_a_new_connection(self) -> None:
        """
        A new connection closed without an answer is not retried:
        ERR_ZERO_SIZE_OBJECT.
        """
        d = self.request()
        self.lose(self.last()[0])
        failure = self.failureResultOf(d, NoResponseError)
        self.assertEqual(error_for_failure(failure).name, "ERR_ZERO_SIZE_OBJECT")


class EndpointTests(_Harness):
    """
    Endpoints are built once per origin; connect failures pass through
    unchanged for L{error_for_failure}.
    """

    def test_endpoint_cached_per_origin(self) -> None:
        """
        The endpoint factory is called once per (scheme, host, port).
        """
        built = []

        def factory(scheme: str, host: str, port: int) -> Any:
            built.append((scheme, host, port))
            return self.endpoint

        client = UpstreamClient(
            self.clock,
            connect_timeout=5,
            max_idle_per_host=0,
            idle_timeout=30,
            endpoint_factory=factory,
        )
        target = parse_absolute_target(URL)
        for _ in range(3):
            client.request(b"GET", target, [(b"Host", b"origin.test")], None)
        self.assertIs(client.endpoint("http", "origin.test", 80), self.endpoint)
        self.assertEqual(built, [ORIGIN])

    def test_connect_failure_is_passed_through(self) -> None:
        """
        A refused connection fails the request with the endpoint's error.
        """
        self.endpoint.error = ConnectionRefusedError()
        failure = self.failureResultOf(self.request(), ConnectionRefusedError)
        self.assertEqual(error_for_failure(failure).name, "ERR_CONNECT_FAIL")

    def test_default_endpoints(self) -> None:
        """
        Without a factory, http gets a L{HostnameEndpoint} and https a TLS
        wrapper around one; IPv6 literals lose their brackets.
        """
        from twisted.internet.endpoints import HostnameEndpoint

        client = UpstreamClient(self.clock, connect_timeout=5, max_idle_per_host=1, idle_timeout=1)
        plain = client.endpoint("http", "example.test", 80)
        self.assertIsInstance(plain, HostnameEndpoint)
        self.assertIs(client.endpoint("http", "example.test", 80), plain)
        secure = client.endpoint("https", "::1", 443)
        self.assertNotIsInstance(secure, HostnameEndpoint)
        self.assertIsInstance(secure._wrappedEndpoint, HostnameEndpoint)

    def test_absolute_uri_bytes_are_accepted(self) -> None:
        """
        C{request} also takes an absolute URI as bytes.
        """
        self.client.request(b"GET", URL, [(b"Host", b"origin.test")], None)
        self.assertTrue(self.last()[1].value().startswith(b"GET /path?q=1 HTTP/1.1\r\n"))
