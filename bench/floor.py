"""
The floor of this platform: the fastest a Twisted process on CPython can
answer the harness's small requests, doing none of a proxy's work.

Issue 18 asks for squeak to answer 1 KiB hits at Squid's rate and 1 KiB
misses at 1.15 times it, on one core each.  Before spending effort on
squeak's own code, this measures what the platform itself costs: two
servers on the reactor squeak runs on (L{squeak.net.eventloop}), started by
the shared harness as subjects beside Squid and squeak
(``bench/run.py --floor``):

``answer``
    For every request head (found by its blank line, nothing parsed, no
    URL, no rules, no cache, no log) writes one fixed 200 response with a
    1 KiB body.  What a hit can cost at the least: the reactor's turn, one
    C{recv}, one C{send}, one Python protocol call.

``relay``
    Every client connection gets its own connection to the origin
    (127.0.0.1:8081), opened once; bytes go through both ways unread, as
    in a tunnel (nginx accepts the absolute-form request line).  What a
    miss can cost at the least: two connections, two reads and two sends
    per request, no parsing of either head.

Neither is a proxy: they are the cost of the I/O and the dispatch alone,
which no change inside squeak's modules can take below.

    .venv/bin/python bench/floor.py answer 127.0.0.1:3140
    .venv/bin/python bench/floor.py relay 127.0.0.1:3141 --origin 127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from squeak.net.eventloop import install_default

install_default()

from twisted.internet import protocol, reactor  # noqa: E402

_BODY = b"x" * 1024
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_BODY)
) + _BODY


class Answer(protocol.Protocol):
    """One fixed response per request head; the head is not parsed."""

    _buffer = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        answers = buffer.count(b"\r\n\r\n")
        if answers:
            self.transport.write(_RESPONSE * answers)
            buffer = buffer[buffer.rfind(b"\r\n\r\n") + 4 :]
        self._buffer = buffer


class _ToOrigin(protocol.Protocol):
    """The origin side of a relay: everything read goes to the client."""

    def __init__(self, client: Relay) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.origin_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.client.transport.loseConnection()


class Relay(protocol.Protocol):
    """A client connection relayed, unread, to its own origin connection."""

    origin_address: tuple[str, int] = ("127.0.0.1", 8081)

    def __init__(self) -> None:
        self.origin: _ToOrigin | None = None
        self.waiting: list[bytes] = []

    def connectionMade(self) -> None:
        factory = protocol.ClientFactory()
        factory.protocol = lambda: _ToOrigin(self)  # type: ignore[assignment]
        reactor.connectTCP(*self.origin_address, factory)  # type: ignore[attr-defined]

    def origin_ready(self, origin: _ToOrigin) -> None:
        self.origin = origin
        for data in self.waiting:
            origin.transport.write(data)
        self.waiting = []

    def dataReceived(self, data: bytes) -> None:
        if self.origin is None:
            self.waiting.append(data)
        else:
            self.origin.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.origin is not None:
            self.origin.transport.loseConnection()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=("answer", "relay"))
    ap.add_argument("listen", type=_address, help="HOST:PORT to listen on")
    ap.add_argument("--origin", type=_address, default=("127.0.0.1", 8081))
    args = ap.parse_args(argv)
    factory = protocol.ServerFactory()
    if args.mode == "answer":
        factory.protocol = Answer
    else:
        Relay.origin_address = args.origin
        factory.protocol = Relay
    host, port = args.listen
    reactor.listenTCP(port, factory, backlog=1024, interface=host)  # type: ignore[attr-defined]
    print(f"floor {args.mode} on {host}:{port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
