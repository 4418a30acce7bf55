# -*- test-case-name: tests.test_net_upgrade -*-
"""
Protocol upgrades through the proxy (WebSocket): RFC 9110 §7.8.

Twisted's L{Agent} swallows 1xx responses, so an upgrade request is sent
over a raw connection by L{UpgradeUpstream}: it writes the rebuilt request
head, reads the response head, and then either

  - the origin answered C{101 Switching Protocols}: the 101 head (with the
    C{Connection: Upgrade} and C{Upgrade} fields relayed, not stripped, as
    RFC 9110 §7.6.1 allows for the protocol being switched to) goes to the
    client and the connection becomes a L{Tunnel}; or
  - it answered anything else: that response is relayed as it came (its
    head rewritten), and the client connection closes after it, since its
    body framing was not interpreted.

The response-head parser is pure and bounded: L{parse_response_head}.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from squeak.http.fields import RawHeaders
from squeak.net.tunnel import UpstreamEnd

#: The largest response head accepted from an origin on an upgrade.
MAX_HEAD = 64 * 1024

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")


class BadResponseHeadError(Exception):
    """
    The origin's response head could not be parsed (or was too large).
    """


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """
    A parsed response head.
    """

    version: bytes
    status: int
    reason: bytes
    headers: RawHeaders


def parse_response_head(head: bytes) -> ResponseHead:
    """
    Parse a response head (without the blank line) strictly: a valid status
    line, and field lines with a colon and no obsolete line folding.

    @raise BadResponseHeadError: On anything else.
    """
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise BadResponseHeadError(f"bad status line {lines[0][:80]!r}")
    headers: RawHeaders = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise BadResponseHeadError("malformed header line")
        headers.append((name, value.strip(b" \t")))
    version = b"HTTP/%s.%s" % (match.group(1), match.group(2))
    return ResponseHead(version, int(match.group(3)), match.group(4) or b"", headers)


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
                self.head_received.errback(Failure(error))
                return
        self.transport.write(self._request_head)

    def dataReceived(self, data: bytes) -> None:
        if not self._waiting:
            super().dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._fail(BadResponseHeadError(f"response head larger than {MAX_HEAD} bytes"))
            return
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        self._buffer = b""
        self._waiting = False
        try:
            parsed = parse_response_head(head)
        except BadResponseHeadError as error:
            self._fail(error)
            return
        self.head_received.callback((parsed, rest))

    def _fail(self, error: Exception) -> None:
        self._waiting = False
        self.transport.loseConnection()
        self.head_received.errback(Failure(error))

    def readConnectionLost(self) -> None:
        if self._waiting:
            self.transport.loseConnection()
            return
        super().readConnectionLost()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._waiting:
            self._waiting = False
            self.head_received.errback(
                Failure(BadResponseHeadError("origin closed the connection before answering"))
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
