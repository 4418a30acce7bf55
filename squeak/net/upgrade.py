# -*- test-case-name: tests.test_net_upgrade -*-
"""
Protocol upgrades through the proxy (WebSocket): RFC 9110 §7.8.

An upgrade request is sent over a connection of its own, never a pooled
one, by L{UpgradeUpstream}, because a C{101 Switching Protocols} answer
turns that connection into a byte tunnel that cannot go back to a pool.  It
writes the rebuilt request head, reads the response head, and then either

  - the origin answered C{101 Switching Protocols}: the 101 head (with the
    C{Connection: Upgrade} and C{Upgrade} fields relayed, not stripped, as
    RFC 9110 §7.6.1 allows for the protocol being switched to) goes to the
    client and the connection becomes a L{Tunnel}; or
  - it answered anything else: that response is relayed as it came (its
    head rewritten), and the client connection closes after it, since its
    body is relayed until the origin closes.

The response head is read by L{squeak.http.response}, the reader the pooled
client uses, with the same limits and the same framing checks: what the
pooled client refuses with 502 is refused here too (the upstream connection
is then closed).  L{BadResponseHeadError}, L{ResponseHead} and
L{parse_response_head} are that module's names, kept here for older imports.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from squeak.http.fields import RawHeaders
from squeak.http.response import (
    MAX_HEAD_SIZE,
    MalformedResponseError,
    ResponseHead,
    find_response_head_end,
    is_interim,
    parse_response_head,
    response_body,
)
from squeak.net.tunnel import UpstreamEnd

__all__ = [
    "MAX_HEAD",
    "BadResponseHeadError",
    "ResponseHead",
    "UpgradeUpstream",
    "content_length",
    "parse_response_head",
    "request_head",
    "response_head",
]

#: The largest response head accepted from an origin on an upgrade: the
#: pooled client's limit.
MAX_HEAD = MAX_HEAD_SIZE

#: The origin's response head was refused (or the origin closed before
#: answering): answered 502.  The response reader's own error.
BadResponseHeadError = MalformedResponseError


def content_length(headers: RawHeaders) -> int | None:
    """
    The single valid Content-Length, or None when absent or unusable.
    """
    values = [v for n, v in headers if n.lower() == b"content-length"]
    if len(values) != 1 or not values[0].isdigit():
        return None
    return int(values[0])


class UpgradeUpstream(UpstreamEnd):
    """
    The origin side of an upgrade: sends the request head, then reads the
    response head and fires C{head_received} with (head, bytes after it).
    Afterwards it behaves as an L{UpstreamEnd} for the tunnel.
    """

    def __init__(
        self, request_head: bytes, check_peer: Callable[[str], None] | None = None
    ) -> None:
        """
        @param check_peer: Called with the origin's address once connected,
            before the head is sent; an exception it raises fails
            C{head_received} and the connection is dropped (the proxy checks
            there that the access rules allow the address connected to).
        """
        super().__init__()
        self._request_head = request_head
        self._method = request_head.split(b" ", 1)[0]
        self._check_peer = check_peer
        self._buffer = b""
        self.head_received: Deferred[tuple[ResponseHead, bytes]] = Deferred()
        self._waiting = True

    def connectionMade(self) -> None:
        if self._check_peer is not None:
            try:
                self._check_peer(getattr(self.transport.getPeer(), "host", "-"))
            except Exception as error:
                self._waiting = False
                self.transport.abortConnection()
                self.head_received.errback(error)
                return
        self.transport.write(self._request_head)

    def dataReceived(self, data: bytes) -> None:
        if not self._waiting:
            super().dataReceived(data)
            return
        self._buffer += data
        try:
            while True:
                end = find_response_head_end(self._buffer, MAX_HEAD)
                if end < 0:
                    return
                head, rest = self._buffer[: end - 4], self._buffer[end:]
                self._buffer = rest
                parsed = parse_response_head(head)
                if not is_interim(parsed.status):
                    break
                # RFC 9110 §15.2: an interim response (a 100, 103) precedes
                # the final one, which is what decides: read on.  Relayed
                # as a final answer, it would let the bytes after it (a
                # 101 to anything) through the tunnel unchecked.
            self._buffer = b""
            # A response other than 101 is relayed with its body: its
            # framing must be as unambiguous as the pooled client requires
            # (RFC 9112 §6.3).
            response_body(self._method, parsed)
        except MalformedResponseError as error:
            self._fail(error)
            return
        self._waiting = False
        self.head_received.callback((parsed, rest))

    def _fail(self, error: Exception) -> None:
        self._waiting = False
        self.transport.loseConnection()
        self.head_received.errback(error)

    def readConnectionLost(self) -> None:
        if self._waiting:
            self.transport.loseConnection()
            return
        super().readConnectionLost()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._waiting:
            self._waiting = False
            self.head_received.errback(
                BadResponseHeadError("origin closed the connection before answering")
            )
        super().connectionLost(reason) if reason is not None else super().connectionLost()


def request_head(method: bytes, path: bytes, headers: RawHeaders) -> bytes:
    """
    Serialise a request head for the raw upgrade connection.
    """
    lines = [b"%s %s HTTP/1.1" % (method, path)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def response_head(head: ResponseHead, headers: RawHeaders) -> bytes:
    """
    Serialise a response head for the client.
    """
    lines = [b"HTTP/1.1 %d %s" % (head.status, head.reason)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"
