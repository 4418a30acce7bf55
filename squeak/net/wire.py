# -*- test-case-name: tests.test_net_wire -*-
"""
Sending what a reactor turn wrote, together, at the end of the turn.

Twisted's C{transport.write} buffers the bytes and registers the socket for
writability (an C{epoll_ctl}); on the next turn the reactor dispatches the
writable event, sends, and unregisters the socket (another C{epoll_ctl}).
For a proxy answering many small requests on keep-alive connections that
is two system calls and a dispatch through Twisted's logging context per
response.  Sending at once instead, in the middle of handling each request,
saves that work but measured no faster: the kernel's send path, run
between stretches of Python, costs more per call than when the sends come
back to back (docs/performance.md).

L{SendBatcher} keeps both: bytes written to a plain TCP connection during a
turn are collected, and at the end of the turn (a C{callLater(0)}, one per
turn) each connection's bytes go out in one C{send()}, back to back, with no
writability registration.  Whatever the kernel does not take, and any
error, is handed to the transport's own C{write}, so buffering,
backpressure and error handling stay Twisted's.

Order is kept as long as every write to a connection goes through the
batcher (the client channel and the upstream connections do), and
L{SendBatcher.flush} is called before anything else writes to it (a tunnel
taking the connection over).  Closing is safe without a flush:
C{loseConnection} closes only after the reactor's next writable event,
which comes after the end-of-turn send.  A connection's collected bytes
are bounded (L{SendBatcher.limit}); past it they are sent at once, so a
producer writing in a loop meets Twisted's backpressure as before.
Transports other than Twisted's plain TCP ones (TLS, UNIX sockets, the
fakes unit tests use) are written to directly.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["DIRECT", "SendBatcher", "Sender"]

#: Transport classes whose internals the batcher relies on
#: (twisted.internet.tcp: socket, dataBuffer, _tempDataLen, producer).
_PLAIN_TCP: tuple[type, ...] = (tcp.Server, tcp.Client)


class Sender:
    """
    Writes to transports at once: what the client channel and the upstream
    connections use when no L{SendBatcher} was given them (unit tests on
    fake transports, other embedders), so they write one way either way.
    """

    def write(self, transport: Any, data: bytes) -> None:
        """Write C{data} to C{transport} now."""
        transport.write(data)

    def flush(self, transport: Any) -> None:
        """Nothing is held back, so nothing to send."""


#: The shared L{Sender}: it holds no state.
DIRECT = Sender()


class SendBatcher(Sender):
    """
    Collects writes to plain TCP transports during a reactor turn and sends
    them at its end.

    @ivar limit: Bytes collected for one connection beyond which they are
        sent at once.
    """

    limit = 65536

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pending: dict[Any, list[bytes]] = {}
        self._sizes: dict[Any, int] = {}
        self._call: Any = None

    def write(self, transport: Any, data: bytes) -> None:
        """
        Write C{data} to C{transport}: collected for the end of the turn
        when it is a plain TCP connection, else written at once.
        """
        if not data:
            return
        chunks = self._pending.get(transport)
        if chunks is not None:
            chunks.append(data)
            size = self._sizes[transport] = self._sizes[transport] + len(data)
            if size > self.limit:
                self.flush(transport)
            return
        if (
            type(transport) not in _PLAIN_TCP
            or transport.dataBuffer
            or transport._tempDataLen
            or len(data) > self.limit
        ):
            # Not ours to batch, or Twisted already holds bytes for it: they
            # must go first, so these follow them in its buffer.
            transport.write(data)
            return
        self._pending[transport] = [data]
        self._sizes[transport] = len(data)
        if self._call is None:
            self._call = self._reactor.callLater(0, self._end_of_turn)

    def flush(self, transport: Any) -> None:
        """
        Send what was collected for C{transport} now: before something
        writes to it without the batcher.
        """
        chunks = self._pending.pop(transport, None)
        if chunks is not None:
            del self._sizes[transport]
            _send(transport, b"".join(chunks) if len(chunks) > 1 else chunks[0])

    def _end_of_turn(self) -> None:
        self._call = None
        pending, self._pending = self._pending, {}
        self._sizes = {}
        for transport, chunks in pending.items():
            _send(transport, b"".join(chunks) if len(chunks) > 1 else chunks[0])


def _send(transport: Any, data: bytes) -> None:
    """
    Send C{data} on a plain TCP transport whose own buffer is empty; hand
    what the kernel did not take (or the error) to the transport.
    """
    if not transport.connected or transport._writeDisconnected:
        return  # gone (aborted, lost) meanwhile: as transport.write would
    if transport.dataBuffer or transport._tempDataLen:
        transport.write(data)  # after what Twisted holds, never before it
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        # Would block, broken pipe, reset...: the transport's own write
        # path buffers, or meets the same error and closes as usual.
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)
