"""
Response buffering in front of an application (squeak/proxy/buffering.py):
the buffer's own rules on a fake exchange, then the point of it with a real
one-worker gunicorn: a client reading slowly does not hold the worker.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.proxy.buffering import ResponseBuffer
from tests.accelharness import AccelTestCase, in_thread
from tests.wsgiapp import Gunicorn, gunicorn_missing


class _Exchange:
    """Records what the buffer sends to the client side."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.finished = False
        self.producer: Any = None

    def write_to_client(self, data: bytes) -> None:
        self.sent.append(data)

    def finish_to_client(self) -> None:
        self.finished = True

    def register_buffer(self, producer: Any) -> None:
        self.producer = producer

    def unregister_buffer(self) -> None:
        self.producer = None


class _Origin:
    paused = False
    stopped = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class ResponseBufferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.exchange = _Exchange()
        self.clock = Clock()
        self.origin = _Origin()
        self.buffer = ResponseBuffer(self.exchange, 10, 30, self.clock)
        self.buffer.register_origin(self.origin)

    def _drain(self) -> None:
        self.buffer.resumeProducing()
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(0)

    def test_passes_through_while_client_keeps_up(self) -> None:
        """Nothing is held while the client reads; finish is at once."""
        self.buffer.write(b"abc")
        self.buffer.finish()
        self.assertEqual(self.exchange.sent, [b"abc"])
        self.assertTrue(self.exchange.finished)
        self.assertIsNone(self.exchange.producer)

    def test_holds_in_memory_then_spools_without_pausing_origin(self) -> None:
        """
        A paused client: bytes go to memory up to its bound, then to the
        spool; the origin is not paused; all comes out in order.
        """
        self.buffer.pauseProducing()
        for piece in (b"01234", b"56789", b"abcde", b"fghij"):
            self.buffer.write(piece)
        self.assertEqual(self.exchange.sent, [])
        self.assertEqual(self.buffer.spooled, 10)
        self.assertFalse(self.origin.paused)
        self.buffer.finish()
        self.assertFalse(self.exchange.finished)
        self._drain()
        self.assertEqual(b"".join(self.exchange.sent), b"0123456789abcdefghij")
        self.assertTrue(self.exchange.finished)

    def test_origin_paused_beyond_file_bound(self) -> None:
        """Beyond the spool's bound the origin is paused, and resumed once drained."""
        self.buffer.pauseProducing()
        for _ in range(6):
            self.buffer.write(b"0123456789")
        self.assertTrue(self.origin.paused)
        self._drain()
        self.assertFalse(self.origin.paused)
        self.assertEqual(len(b"".join(self.exchange.sent)), 60)

    def test_client_leaving_stops_origin(self) -> None:
        """The client left: the origin is stopped and nothing more is sent."""
        self.buffer.pauseProducing()
        self.buffer.write(b"0123456789abc")
        self.buffer.stopProducing()
        self.assertTrue(self.origin.stopped)
        self.buffer.resumeProducing()
        self.assertEqual(self.exchange.sent, [])


def _slow_reader(port: int, path: str, started: list[float]) -> socket.socket:
    """A client that sends a request and reads nothing (tiny receive buffer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n".encode())
    started.append(time.monotonic())
    return s


class GunicornBufferingTests(AccelTestCase):
    """
    One sync gunicorn worker behind squeak: with buffering, a second
    request is answered while the first client is still reading a large
    response; without it, the worker is held (the forward-proxy contract).
    """

    #: Larger than what the kernel buffers between gunicorn, squeak and the
    #: client on loopback (tcp_rmem max is 32 MiB here): without buffering
    #: the worker is still writing when the second request comes.
    SIZE = 96 << 20

    def setUp(self) -> None:
        missing = gunicorn_missing()
        if missing:
            raise SkipTest(missing)
        self.app = Gunicorn(workers=1)
        self.addCleanup(self.app.stop)

    def _start(self, buffering: bool) -> None:
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"
buffering = {"true" if buffering else "false"}
buffer_memory = "1 MiB"
buffer_file = "128 MiB"

[accel_pool.app]
origins = ["127.0.0.1:{self.app.port}"]
"""
        )

    async def _second_request_time(self) -> tuple[float | None, socket.socket]:
        started: list[float] = []
        slow = await in_thread(_slow_reader, self.accel_port, f"/big/{self.SIZE}", started)
        self.addCleanup(slow.close)

        def second() -> float | None:
            begin = time.monotonic()
            try:
                reply = self.request("GET", "/echo", host="app.example")
            except (TimeoutError, OSError):
                return None
            return time.monotonic() - begin if reply.status == 200 else None

        return await in_thread(second), slow

    async def test_slow_client_does_not_hold_worker(self) -> None:
        """With buffering, the second request is answered at once."""
        self._start(buffering=True)
        took, slow = await self._second_request_time()
        self.assertIsNotNone(took)
        assert took is not None
        self.assertLess(took, 5.0)
        # The slow client still gets the whole body afterwards.
        slow.settimeout(10)
        received = 0
        while received < self.SIZE:
            chunk = await in_thread(slow.recv, 1 << 20)
            if not chunk:
                break
            received += len(chunk)
        self.assertGreaterEqual(received, self.SIZE)

    async def test_without_buffering_worker_is_held(self) -> None:
        """
        The counter-proof: with buffering off the second request waits for
        the first client (here: not answered within the client's 10 s).
        """
        self._start(buffering=False)
        took, _slow = await self._second_request_time()
        self.assertIsNone(took)
