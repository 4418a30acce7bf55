"""
Protocol units of L{squeak.proxy} (the client channel and the body relay) on
fake transports and a fake clock: timeouts, flow control, and the
early-rejection path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squeak.accesslog import AccessLog
from squeak.errors import BodyComplete
from squeak.proxy.client import ForwardProxyFactory
from squeak.proxy.miss import BodyRelay
from squeak.proxy.router import ForwardRequest
from squeak.service import build_context
from tests.proxyharness import make_config


def _channel(clock: MemoryReactorClock, **overrides: dict[str, Any]) -> tuple[Any, Any]:
    config = make_config(**overrides)
    config = dataclasses.replace(
        config, access_log=dataclasses.replace(config.access_log, path="")
    )
    context = build_context(config, clock, AccessLog("", "squid"))
    factory = ForwardProxyFactory(context, ForwardRequest)
    channel = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    return channel, transport


class ClientTimeoutTests(SynchronousTestCase):
    """
    The client-idle timeout closes connections that say nothing.
    """

    def test_idle_client_is_disconnected_after_client_idle(self) -> None:
        """
        A client that sends nothing is disconnected after
        C{timeouts.client_idle} seconds, not before.
        """
        clock = MemoryReactorClock()
        _channel_made, transport = _channel(clock, timeouts={"client_idle": 30.0})
        clock.advance(29)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)


class _RecordingLog(AccessLog):
    """An access log that keeps its records instead of writing them."""

    def __init__(self) -> None:
        super().__init__("", "squid")
        self.records: list[Any] = []

    def write(self, record: Any) -> None:
        self.records.append(record)


class HeadTimeoutTests(SynchronousTestCase):
    """
    A request head that does not arrive whole within
    C{timeouts.request_head} is refused with Squid's
    ERR_REQUEST_PARSE_TIMEOUT page and logged.
    """

    def test_trickled_head_gets_408_page_and_log_line(self) -> None:
        clock = MemoryReactorClock()
        config = make_config(timeouts={"client_idle": 30.0, "request_head": 10.0})
        log = _RecordingLog()
        context = build_context(config, clock, log)
        channel = ForwardProxyFactory(context, ForwardRequest).buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 40000)
        )
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        channel.dataReceived(b"GET http://127.0.0.1:9/slow HTTP/1.1\r\nHo")
        clock.advance(9)
        channel.dataReceived(b"s")
        clock.advance(0.9)
        self.assertEqual(transport.value(), b"")
        clock.advance(0.1)
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:60])
        self.assertIn(b"ERR_REQUEST_PARSE_TIMEOUT", answer)
        self.assertIn(b"request head not complete within 10s", answer)
        self.assertIn(b"Connection: close", answer)
        [record] = log.records
        self.assertEqual(
            (record.code, record.status, record.method, record.url),
            ("TAG_NONE", 408, "GET", "http://127.0.0.1:9/slow"),
        )


class RejectionTests(SynchronousTestCase):
    """
    Requests refused while still being read get a reasoned page and a
    lingering close.
    """

    def test_smuggling_shaped_request_gets_reasoned_400(self) -> None:
        """
        Content-Length with Transfer-Encoding (RFC 9112 §6.1) is answered
        400 with the reason, then the connection closes.
        """
        clock = MemoryReactorClock()
        channel, transport = _channel(clock)
        channel.dataReceived(
            b"POST http://127.0.0.1:9/ HTTP/1.1\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:60])
        self.assertIn(b"Transfer-Encoding", answer)
        self.assertIn(b"ERR_INVALID_REQ", answer)
        self.assertIn(b"Connection: close", answer)
        self.assertTrue(transport.disconnecting)

    def test_nothing_after_a_rejected_request_is_processed(self) -> None:
        """
        Bytes that follow a rejected request (a smuggled second request)
        produce no second answer.
        """
        clock = MemoryReactorClock()
        channel, transport = _channel(clock)
        channel.dataReceived(
            b"GET http://127.0.0.1:9/ HTTP/1.1\r\nbad header line\r\n\r\n"
            b"GET http://127.0.0.1:9/second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)
        self.assertEqual(clock.tcpClients, [])


class _FakeRequest:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.timed_out = False
        self.ended: Failure | None = None

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def note_read_timeout(self) -> None:
        self.timed_out = True

    def body_ended(self, reason: Failure) -> None:
        self.ended = reason


class _FakeUpstreamTransport:
    def __init__(self) -> None:
        self.state = "producing"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


class BodyRelayTests(SynchronousTestCase):
    """
    L{BodyRelay} passes backpressure upstream and times out silent origins,
    but never blames an origin for a slow client.
    """

    def _relay(self) -> tuple[BodyRelay, _FakeRequest, _FakeUpstreamTransport, MemoryReactorClock]:
        clock = MemoryReactorClock()
        request = _FakeRequest()
        relay = BodyRelay(request, 10.0, clock)  # type: ignore[arg-type]
        upstream = _FakeUpstreamTransport()
        relay.makeConnection(upstream)
        return relay, request, upstream, clock

    def test_registers_as_streaming_producer(self) -> None:
        """
        The relay registers itself with the client request, and a pause from
        the client pauses the upstream transport.
        """
        relay, request, upstream, _ = self._relay()
        self.assertIs(request.producer, relay)
        relay.pauseProducing()
        self.assertEqual(upstream.state, "paused")
        relay.resumeProducing()
        self.assertEqual(upstream.state, "producing")

    def test_small_known_bodies_skip_producer_registration(self) -> None:
        """
        A body known to be at most L{BodyRelay.SMALL_BODY} bytes cannot
        fill the client's buffer: the relay does not register as its
        producer.  A larger or unknown length does.
        """
        registered = []
        for length in (0, BodyRelay.SMALL_BODY, BodyRelay.SMALL_BODY + 1, None):
            request = _FakeRequest()
            upstream = _FakeUpstreamTransport()
            upstream.length = length  # type: ignore[attr-defined]
            BodyRelay(request, 10.0, MemoryReactorClock()).makeConnection(upstream)  # type: ignore[arg-type]
            registered.append(request.producer is not None)
        self.assertEqual(registered, [False, False, True, True])

    def test_silent_origin_times_out(self) -> None:
        """
        No data for the read timeout stops the upstream read and tells the
        request why; data resets the timer.
        """
        relay, request, upstream, clock = self._relay()
        clock.advance(9)
        relay.dataReceived(b"x")
        clock.advance(9)
        self.assertEqual((upstream.state, request.timed_out), ("producing", False))
        clock.advance(1)
        self.assertEqual((upstream.state, request.timed_out), ("stopped", True))

    def test_paused_relay_never_times_out(self) -> None:
        """
        While the client holds the relay paused, the origin is not timed out.
        """
        relay, request, _upstream, clock = self._relay()
        relay.pauseProducing()
        clock.advance(1000)
        self.assertFalse(request.timed_out)
        relay.resumeProducing()
        clock.advance(10)
        self.assertTrue(request.timed_out)

    def test_end_of_body_is_reported_and_timer_cleared(self) -> None:
        """
        When the body ends the request learns how, and its read timeout is
        cleared: it never fires, and the sweep timer, lazy, lapses at its
        next sweep (L{squeak.net.deadlines}), leaving no delayed call.
        """
        relay, request, _upstream, clock = self._relay()
        relay.connectionLost(Failure(BodyComplete()))
        self.assertTrue(request.ended is not None and request.ended.check(BodyComplete))
        clock.advance(60)
        self.assertEqual((request.timed_out, clock.getDelayedCalls()), (False, []))
