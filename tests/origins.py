"""
Loopback origin servers for tests: a well-behaved one built on
L{twisted.web.server.Site}, and a scripted raw one for hostile answers.

Every origin counts the connections it accepted and records the requests it
saw, so tests can prove connection reuse and check what reached the origin.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.web import resource, server
from zope.interface import implementer


class _CountingSite(server.Site):
    """
    A L{server.Site} that counts accepted connections.
    """

    noisy = False

    def __init__(self, root: resource.Resource) -> None:
        super().__init__(root)
        self.connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


@implementer(IPushProducer)
class _PatternProducer:
    """
    Writes C{size} bytes of a repeating pattern, honouring pause/resume, so
    a large body never sits in the origin's memory either.
    """

    CHUNK = 64 * 1024

    def __init__(self, request: server.Request, size: int, reactor: Any) -> None:
        self._request = request
        self._left = size
        self._paused = False
        self._reactor = reactor
        self._stopped = False
        self._block = bytes(range(256)) * (self.CHUNK // 256)

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        while not self._paused and not self._stopped and self._left > 0:
            piece = self._block[: min(self.CHUNK, self._left)]
            self._left -= len(piece)
            self._request.write(piece)
        if self._left == 0 and not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self._stopped = True


def pattern_bytes(size: int) -> bytes:
    """
    The body L{_PatternProducer} sends for C{size}, for comparisons.
    """
    block = bytes(range(256)) * (_PatternProducer.CHUNK // 256)
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


class _OriginResource(resource.Resource):
    """
    Dispatches on the first path segment:
      - C{/echo...}: JSON of what arrived (method, URI, headers, body digest);
      - C{/big/N}: N bytes with Content-Length, streamed;
      - C{/chunked}: three chunks, no Content-Length;
      - C{/cookies}: two Set-Cookie fields;
      - C{/status/N}: status N with a short body;
      - C{/hang}: never answers.
    """

    isLeaf = True

    def __init__(self, origin: Origin) -> None:
        super().__init__()
        self._origin = origin

    def _cached(self, request: server.Request) -> Any:
        """
        C{/cached/...?cc=...&etag=...&vary=...&cookie=1&xcache=1&lm=...&delay=S}: a
        response with the given caching fields; its body names how many
        requests this path has had, so a test can tell a hit from a miss.
        An If-None-Match matching the etag gets a 304.
        """
        args = {k.decode(): v[0] for k, v in request.args.items()}
        count = self._origin.counts.get(request.path, 0) + 1
        self._origin.counts[request.path] = count
        etag = args.get("etag")
        if "cc" in args:
            request.setHeader(b"cache-control", args["cc"])
        if etag:
            request.setHeader(b"etag", b'"%s"' % etag)
        if "vary" in args:
            request.setHeader(b"vary", args["vary"])
        if "lm" in args:
            request.setHeader(b"last-modified", args["lm"])
        if "cookie" in args:
            request.setHeader(b"set-cookie", b"session=%d" % count)
        if "xcache" in args:
            # Another cache's fields, which squeak replaces with its own.
            request.setHeader(b"x-cache", b"HIT from upstream.test")
            request.setHeader(b"x-cache-lookup", b"HIT from upstream.test")
        request.setHeader(b"content-type", b"text/plain")
        inm = request.getHeader(b"if-none-match")
        if etag and inm and b'"%s"' % etag in inm:
            request.setResponseCode(304)
            return b""
        body = b"response %d for %s" % (count, request.uri)
        if "delay" in args:
            self._origin.reactor.callLater(
                float(args["delay"]), lambda: (request.write(body), request.finish())
            )
            request.setHeader(b"content-length", b"%d" % len(body))
            return server.NOT_DONE_YET
        return body

    def render(self, request: server.Request) -> Any:
        content = request.content.read() if request.content is not None else b""
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        self._origin.requests.append(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "headers": headers,
                "body": content,
            }
        )
        parts = request.path.split(b"/")
        head = parts[1] if len(parts) > 1 else b""
        if head == b"big":
            size = int(parts[2])
            request.setHeader(b"content-type", b"application/octet-stream")
            request.setHeader(b"content-length", b"%d" % size)
            _PatternProducer(request, size, self._origin.reactor).start()
            return server.NOT_DONE_YET
        if head == b"chunked":
            for piece in (b"alpha-", b"beta-", b"gamma"):
                request.write(piece)
            request.finish()
            return server.NOT_DONE_YET
        if head == b"cookies":
            request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1; Path=/", b"b=2; Path=/"])
            return b"cookies"
        if head == b"status":
            request.setResponseCode(int(parts[2]))
            return b"status body"
        if head == b"hang":
            return server.NOT_DONE_YET
        if head == b"cached":
            return self._cached(request)
        body = json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "headers": headers,
                "body_length": len(content),
                "body_sha256": hashlib.sha256(content).hexdigest(),
            }
        ).encode()
        request.setHeader(b"content-type", b"application/json")
        return body


class Origin:
    """
    A well-behaved loopback origin.

    @ivar site: The counting L{server.Site}; C{site.connections} is the
        number of TCP connections it accepted.
    @ivar requests: What each request carried, in arrival order.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[bytes, int] = {}
        self.site = _CountingSite(_OriginResource(self))
        self.site.timeOut = None
        self.port: Any = None

    def listen(self, interface: str = "127.0.0.1") -> int:
        """
        Listen on an ephemeral loopback port and return it.
        """
        self.port = self.reactor.listenTCP(0, self.site, interface=interface)
        return int(self.port.getHost().port)

    @property
    def connections(self) -> int:
        return self.site.connections

    def url(self, path: str) -> str:
        host = self.port.getHost()
        shown = f"[{host.host}]" if ":" in host.host else host.host
        return f"http://{shown}:{host.port}{path}"


class _ScriptedProtocol(protocol.Protocol):
    """
    Reads one request head, then sends the factory's next scripted answer.
    """

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, rest = self._buffer.partition(b"\r\n\r\n")
            self.factory.heads.append(head)
            self._buffer = self._skip_body(head, rest)
            if not self.factory.script:
                self.transport.loseConnection()
                return
            answer, close = self.factory.script.pop(0)
            if answer:
                self.transport.write(answer)
            if close:
                self.transport.loseConnection()
                return

    @staticmethod
    def _skip_body(head: bytes, rest: bytes) -> bytes:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return rest[int(value.strip()) :]
        return rest


class ScriptedOrigin(protocol.ServerFactory):
    """
    An origin that answers each request with the next raw byte string from
    C{script} (a list of C{(bytes, close_after)}), for malformed, truncated
    or hop-by-hop-laden responses that a real server library would refuse
    to produce.
    """

    protocol = _ScriptedProtocol
    noisy = False

    def __init__(self, reactor: Any, script: list[tuple[bytes, bool]]) -> None:
        self.reactor = reactor
        self.script = list(script)
        self.heads: list[bytes] = []
        self.connections = 0
        self.port: Any = None

    def listen(self) -> int:
        self.port = self.reactor.listenTCP(0, self, interface="127.0.0.1")
        return int(self.port.getHost().port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}{path}"
