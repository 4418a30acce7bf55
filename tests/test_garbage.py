"""
A finished request leaves no reference cycles: everything squeak made for
it is freed by reference counting the moment it ends.

Why it matters: objects in a cycle wait for Python's cyclic garbage
collector, whose full collections pause the whole proxy (17 ms each were
measured on the miss workload, about 8 % of its CPU in all, before the
cycles between a request, its body relay and the upstream response were
broken; docs/performance.md).  The collector is switched off while the
requests run, so every cycle they make is still there to be found.
"""

from __future__ import annotations

import collections
import gc
import socket
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.task import deferLater

from tests.origins import Origin, ScriptedOrigin
from tests.proxyharness import ProxyTestCase


def _read_response(sock: socket.socket, method: str = "GET") -> bytes:
    """
    Read one whole response from a blocking socket: its body framed by
    Content-Length, chunked (read to the last chunk; no trailers here), or
    absent (HEAD, 304); return its head.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if method == "HEAD" or status == 304:
        return head
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding") == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            body += _recv(sock)
        return head
    length = int(fields.get(b"content-length", b"0"))
    while len(body) < length:
        body += _recv(sock)
    return head


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("the proxy closed the connection mid-response")
    return chunk


class NoCyclesTests(ProxyTestCase):
    def _exchange(self, requests: list[tuple[str, str, bytes]]) -> list[bytes]:
        """
        Send each request on one keep-alive connection (in a thread) and
        return the response heads.
        """
        heads = []
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10) as sock:
            for method, url, body in requests:
                host = url.split("/")[2]
                length = f"Content-Length: {len(body)}\r\n" if body else ""
                sock.sendall(
                    f"{method} {url} HTTP/1.1\r\nHost: {host}\r\n{length}\r\n".encode() + body
                )
                heads.append(_read_response(sock, method))
        return heads

    async def test_refusals_leave_no_cycles(self) -> None:
        """
        A denied request (403), one to a closed port (502) and one the
        origin answers with garbage (502) leave no squeak object in a
        reference cycle either.
        """
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        garbled = ScriptedOrigin(
            reactor, [(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", True)]
        )
        self.listen(garbled)
        requests = [
            ("GET", "http://127.0.0.1:9/", b""),
            ("GET", f"http://127.0.0.1:{port}/", b""),
            ("GET", garbled.url("/"), b""),
        ]
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        heads = await threads.deferToThread(self._exchange, requests)
        self.assertEqual([head.split(b" ", 2)[1] for head in heads], [b"403", b"502", b"502"])
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self._squeak_objects_in_cycles(), {})

    async def test_common_requests_leave_no_cycles(self) -> None:
        """
        Misses (no-store, stored, chunked, 404), a memory hit, a HEAD, a
        POST with a body and a revalidation (304) leave no squeak object
        in a reference cycle.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url
        requests = [
            ("GET", url("/echo"), b""),
            ("GET", url("/cached/a?cc=max-age%3D3600"), b""),
            ("GET", url("/cached/a?cc=max-age%3D3600"), b""),
            ("GET", url("/chunked"), b""),
            ("GET", url("/status/404"), b""),
            ("HEAD", url("/echo"), b""),
            ("POST", url("/echo"), b"hello"),
            ("GET", url("/cached/b?cc=no-cache&etag=v1"), b""),
            ("GET", url("/cached/b?cc=no-cache&etag=v1"), b""),
        ]
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        heads = await threads.deferToThread(self._exchange, requests)
        statuses = [head.split(b" ", 2)[1] for head in heads]
        self.assertEqual(
            statuses, [b"200", b"200", b"200", b"200", b"404", b"200", b"200", b"200", b"200"]
        )
        self.assertIn(b"X-Cache: HIT", heads[2])
        # Let the connection close and the proxy settle.
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self._squeak_objects_in_cycles(), {})

    def _squeak_objects_in_cycles(self) -> dict[str, int]:
        """
        Collect, keeping what was unreachable, and count squeak's objects
        among it.
        """
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            garbage: list[Any] = list(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        counts = collections.Counter(
            type(o).__qualname__ for o in garbage if type(o).__module__.startswith("squeak")
        )
        return dict(counts)
