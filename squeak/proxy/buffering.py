# -*- test-case-name: tests.test_proxy_buffering -*-
"""
Response buffering for the accelerator: the application's response is read
as fast as it comes, whatever the client's speed, into memory up to a
bound and then into a spool file, and sent to the client at the client's
pace.

Why: an application server with synchronous workers (gunicorn's default
C{sync} worker, one request at a time per process) is held by a request
until its response is written; behind a proxy that relays at the client's
pace (squeak's forward-proxy contract, which pauses the origin when the
client is slow), a slow client holds a worker for as long as it reads.
nginx buffers (C{proxy_buffering on}) for the same reason.  The forward
proxy keeps streaming with backpressure: this buffer is used only by
accelerated requests of sites with C{buffering = true}.

Bounds: C{memory_limit} bytes per request in memory, then a temporary file
up to C{file_limit} bytes; beyond that the origin is paused until the
client catches up (the forward-proxy behaviour, as a last resort).
"""

from __future__ import annotations

import tempfile
from collections import deque
from typing import IO, Any, Protocol

from twisted.logger import Logger

__all__ = ["BufferedExchange", "ResponseBuffer"]

_log = Logger()


class BufferedExchange(Protocol):
    """What the buffer sends to (L{squeak.proxy.accel.AccelRequest})."""

    def write_to_client(self, data: bytes) -> None: ...

    def finish_to_client(self) -> None: ...

    def register_buffer(self, producer: Any) -> None: ...

    def unregister_buffer(self) -> None: ...


class ResponseBuffer:
    """
    Between an origin's body and the client connection: the client's
    producer (it pauses and resumes the draining), never pausing the
    origin while within its bounds.

    @ivar spooled: Bytes that went through the spool file (for tests and
        logs).
    """

    #: Bytes sent to the client per reactor turn while draining, so that
    #: the client connection's pause (which comes when the turn's writes
    #: are flushed) is seen before much more is queued in the transport.
    DRAIN_STEP = 131072

    def __init__(
        self, exchange: BufferedExchange, memory_limit: int, file_limit: int, reactor: Any
    ) -> None:
        self._exchange = exchange
        self._memory_limit = memory_limit
        self._file_limit = file_limit
        self._reactor = reactor
        self._memory: deque[bytes] = deque()
        self._memory_size = 0
        self._spool: IO[bytes] | None = None
        self._spool_read = 0
        self._spool_size = 0
        self._origin: Any = None
        self._origin_paused = False
        self._registered = False
        self._paused = False
        self._finishing = False
        self._closed = False
        self._scheduled: Any = None
        self.spooled = 0

    @property
    def pending(self) -> int:
        """Bytes held, not yet sent to the client."""
        return self._memory_size + self._spool_size - self._spool_read

    def register_origin(self, producer: Any) -> None:
        """
        The origin's body relay: paused only when the bounds are reached.
        The buffer takes its place as the client connection's producer.
        """
        self._origin = producer
        if not self._registered and not self._closed:
            self._registered = True
            self._exchange.register_buffer(self)

    def write(self, data: bytes) -> None:
        """Body bytes from the origin."""
        if self._closed or not data:
            return
        if not self._paused and not self.pending:
            self._exchange.write_to_client(data)
            return
        if self._spool is None and self._memory_size + len(data) <= self._memory_limit:
            self._memory.append(data)
            self._memory_size += len(data)
            return
        if self._spool is None:
            # Closed by _release_spool, when drained or when the exchange ends.
            self._spool = tempfile.TemporaryFile(prefix="squeak-response-")  # noqa: SIM115
        self._spool.seek(self._spool_size)
        self._spool.write(data)
        self._spool_size += len(data)
        self.spooled += len(data)
        if (
            self._spool_size - self._spool_read > self._file_limit
            and self._origin is not None
            and not self._origin_paused
        ):
            self._origin_paused = True
            self._origin.pauseProducing()

    def finish(self) -> None:
        """The body ended: finish the response once everything is sent."""
        if self._closed:
            return
        self._finishing = True
        if not self.pending:
            self._end()

    def _end(self) -> None:
        if self._registered:
            self._registered = False
            self._exchange.unregister_buffer()
        self._release_spool()
        self._exchange.finish_to_client()

    # IPushProducer, driven by the client connection

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._drain()

    def stopProducing(self) -> None:
        """The client left: stop the origin too, and drop what is held."""
        origin, self._origin = self._origin, None
        if origin is not None:
            origin.stopProducing()
        self.close()

    def _drain(self) -> None:
        self._scheduled = None
        sent = 0
        while not self._paused and not self._closed and self.pending and sent < self.DRAIN_STEP:
            chunk = self._next_chunk()
            sent += len(chunk)
            self._exchange.write_to_client(chunk)
        if self._closed:
            return
        if self.pending:
            if not self._paused and self._scheduled is None:
                self._scheduled = self._reactor.callLater(0, self._drain)
            return
        self._release_spool()
        if self._origin_paused and self._origin is not None:
            self._origin_paused = False
            self._origin.resumeProducing()
        if self._finishing:
            self._end()

    def _next_chunk(self) -> bytes:
        if self._memory:
            chunk = self._memory.popleft()
            self._memory_size -= len(chunk)
            return chunk
        spool = self._spool
        assert spool is not None
        spool.seek(self._spool_read)
        chunk = spool.read(min(65536, self._spool_size - self._spool_read))
        self._spool_read += len(chunk)
        return chunk

    def _release_spool(self) -> None:
        spool, self._spool = self._spool, None
        self._spool_read = self._spool_size = 0
        if spool is not None:
            spool.close()

    def close(self) -> None:
        """The exchange is over: drop what is held."""
        self._closed = True
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        self._memory.clear()
        self._memory_size = 0
        self._release_spool()
