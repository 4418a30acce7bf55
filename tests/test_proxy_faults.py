"""
Faults on a real squeak over loopback (issue 14): a store that raises must
neither break the download nor leave the URL's collapsed fetch stuck, and a
response head is sent as soon as it is decided, never held back until the
first body byte.

Bodies are compared by hash, so nothing damaged is ever taken for served.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server

from squeak.cache.keys import primary_key
from squeak.cache.store import EntryWriter
from squeak.net import wire
from squeak.proxy.state import ExchangeState
from tests.origins import ScriptedOrigin
from tests.proxyharness import ProxyTestCase

#: How long a client waits for an answer: a normal timeout, not a hang.
CLIENT_TIMEOUT = 5.0


def body_for(name: str, size: int) -> bytes:
    """A body of C{size} bytes that differs by C{name}."""
    block = hashlib.sha256(name.encode()).digest() * 128
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _SlowObjects(resource.Resource):
    """
    C{/slow/NAME/SIZE}: L{body_for}(NAME, SIZE), fresh for an hour, with its
    Content-Length, sent C{delay} seconds after the request arrived (so that
    identical requests collapse onto the first); requests counted per path.
    """

    isLeaf = True
    delay = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def render_GET(self, request: server.Request) -> Any:
        path = request.path.decode()
        self.counts[path] = self.counts.get(path, 0) + 1
        _, _, name, size = path.split("/")
        body = body_for(name, int(size))
        request.setHeader(b"cache-control", b"max-age=3600")
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % len(body))

        def send() -> None:
            if not request.finished and not request._disconnected:
                request.write(body)
                request.finish()

        call = reactor.callLater(self.delay, send)
        request.notifyFinish().addBoth(lambda _: call.cancel() if call.active() else None)
        return server.NOT_DONE_YET


class _Answer:
    def __init__(self, status: int, body: bytes, complete: bool) -> None:
        self.status = status
        self.body = body
        self.complete = complete


class _RaisingWriter(EntryWriter):
    """An entry writer with a bug in one step (C{"write"} or C{"commit"})."""

    step = "write"

    def write(self, data: bytes) -> None:
        if self.step == "write":
            raise RuntimeError("injected store failure in write")
        super().write(data)

    def commit(self, expected_length: int) -> bool:
        if self.step == "commit":
            raise RuntimeError("injected store failure in commit")
        return super().commit(expected_length)


class StoreFailureTests(ProxyTestCase):
    """
    Whatever raises while a response is stored, the leader's client gets
    its whole download, the requests collapsed onto it are released (and
    answered whole from the origin), and the URL works afterwards; PURGE
    releases a fetch stuck in flight.
    """

    timeout = 60

    def setUp(self) -> Any:
        result = super().setUp()
        self.objects = _SlowObjects()
        site = server.Site(self.objects)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.origin_port = port.getHost().port
        self.clients = ThreadPool(minthreads=0, maxthreads=16, name="test-clients")
        self.clients.start()
        self.addCleanup(self.clients.stop)
        self.cache = self.service.context.cache
        return result

    def url(self, name: str, size: int) -> str:
        return f"http://127.0.0.1:{self.origin_port}/slow/{name}/{size}"

    def fetch(self, method: str, url: str) -> defer.Deferred[_Answer]:
        """
        A request through squeak in a client thread, with a bounded wait.
        """
        port = self.proxy_port

        def run() -> _Answer:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
            try:
                conn.request(method, url)
                response = conn.getresponse()
                try:
                    return _Answer(response.status, response.read(), True)
                except http.client.IncompleteRead as error:
                    return _Answer(response.status, error.partial, False)
            finally:
                conn.close()

        return threads.deferToThreadPool(reactor, self.clients, run)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until C{condition} holds."""
        for _ in range(100):
            if condition():
                return
            await deferLater(reactor, 0.02, lambda: None)
        self.fail(f"timed out waiting until {what}")

    def waiting(self) -> int:
        """How many requests wait for a collapsed fetch."""
        return sum(
            1
            for channel in self.service.context.channels
            if channel._exchange is not None and channel._exchange.state is ExchangeState.WAITING
        )

    async def leader_and_followers(self, name: str, size: int, followers: int = 3) -> int:
        """
        A leader and C{followers} collapsed onto it, all answered whole and
        correct within the client timeout; then a third round trip works.

        @return: How many requests for the URL reached the origin.
        """
        url = self.url(name, size)
        expected = sha(body_for(name, size))
        path = f"/slow/{name}/{size}"
        leader = self.fetch("GET", url)
        await self.until(lambda: self.objects.counts.get(path, 0) == 1, "the leader fetches")
        waiting = [self.fetch("GET", url) for _ in range(followers)]
        await self.until(lambda: self.waiting() == followers, "the followers wait")
        answers = await defer.gatherResults([leader, *waiting])
        self.assertEqual(
            [(a.status, a.complete, sha(a.body)) for a in answers],
            [(200, True, expected)] * (1 + followers),
        )
        self.assertEqual(len(self.cache.store.inflight), 0)
        after = await self.fetch("GET", url)
        self.assertEqual((after.status, after.complete, sha(after.body)), (200, True, expected))
        self.assertEqual(len(self.cache.store.inflight), 0)
        return self.objects.counts[path]

    async def test_storer_that_raises_at_start(self) -> None:
        """
        The cache's storer raising (a bug in the store path) used to answer
        the leader 500 and leave its followers hanging for good; now every
        client gets the whole body and the URL works afterwards.
        """

        def failing(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("injected store failure in storer()")

        self.patch(self.cache, "storer", failing)
        # The followers, released, fetch side by side, as does the next
        # request (the URL skips the cache for a while).
        self.assertEqual(await self.leader_and_followers("start", 200_000), 5)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))

    async def test_entry_writer_that_raises_in_write(self) -> None:
        """
        An entry writer raising while the body streams in: the store is
        abandoned, the relay goes on, the followers are released.
        """
        _RaisingWriter.step = "write"
        self.patch(
            self.cache.store,
            "writer",
            lambda primary, meta: _RaisingWriter(self.cache.store, primary, meta),
        )
        # The followers, released, fetch side by side, as does the next
        # request (the URL skips the cache for a while).
        self.assertEqual(await self.leader_and_followers("write", 300_000), 5)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))

    async def test_entry_writer_that_raises_on_commit(self) -> None:
        """
        An entry writer raising when the complete body is committed: the
        leader's client still gets its end of response, the followers are
        released.
        """
        _RaisingWriter.step = "commit"
        self.patch(
            self.cache.store,
            "writer",
            lambda primary, meta: _RaisingWriter(self.cache.store, primary, meta),
        )
        # The followers, released, fetch side by side, as does the next
        # request (the URL skips the cache for a while).
        self.assertEqual(await self.leader_and_followers("commit", 300_000), 5)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))

    async def test_parts_directory_removed_while_running(self) -> None:
        """
        The cache's C{parts/} directory removed while squeak runs: it is
        made again (said once in the log) and the leader's body stored, so
        the followers and the next request are answered from it; nothing
        was stored until a restart before.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        parts = os.path.join(self.config.cache.dir, "parts")
        shutil.rmtree(parts)
        self.assertEqual(await self.leader_and_followers("parts", 200_000), 1)
        self.assertTrue(os.path.isdir(parts))
        lines = [formatEvent(e) for e in events if e.get("log_namespace") == "squeak.cache"]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("errno 2 ENOENT", lines[0])
        self.assertIn("made the parts directory again", lines[0])

    async def test_purge_releases_a_stuck_fetch(self) -> None:
        """
        PURGE of a URL whose collapsed fetch is stuck in flight (a leader
        that will never report) releases it: the request waiting for it
        goes to the origin and gets the whole body.
        """
        url = self.url("stuck", 50_000)
        transient, leader = self.cache.store.inflight.join(primary_key(b"GET", url))
        self.assertTrue(leader)
        follower = self.fetch("GET", url)
        await self.until(lambda: self.waiting() == 1, "the follower waits")
        purged = await self.fetch("PURGE", url)
        answer = await follower
        self.assertEqual(purged.status, 200)
        self.assertTrue(transient.done)
        self.assertEqual(
            (answer.status, answer.complete, sha(answer.body)),
            (200, True, sha(body_for("stuck", 50_000))),
        )
        self.assertEqual(len(self.cache.store.inflight), 0)


class StalledHeadTests(ProxyTestCase):
    """
    An origin that sends its head and then stalls: the client sees the
    status and fields at once, then a cut body, never an empty reply.
    """

    config_overrides = {"timeouts": {"read": 1.5}}

    async def test_head_then_stall_shows_status_then_cut_body(self) -> None:
        """
        The head arrives well before the read timeout (it was held back
        until the first body byte, so the client got an empty reply); the
        body is cut (closed short of Content-Length) and logged as
        C{TCP_MISS_ABORTED}; the same URL is then served whole.
        """
        whole = body_for("after", 1000)
        origin = ScriptedOrigin(
            reactor,
            [
                (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + whole, False),
            ],
        )
        self.listen(origin)
        url = origin.url("/stall")
        port = self.proxy_port

        def stalled() -> tuple[float, bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as s:
                started = time.monotonic()
                s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                head_after = time.monotonic() - started
                while chunk := s.recv(65536):
                    received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            return head_after, head, body

        head_after, head, body = await threads.deferToThread(stalled)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"Content-Length: 1000", head)
        self.assertLess(head_after, 1.0)
        self.assertEqual(body, b"")

        def fetch() -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
            try:
                conn.request("GET", url)
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        status, again = await threads.deferToThread(fetch)
        self.assertEqual((status, sha(again)), (200, sha(whole)))
        await deferLater(reactor, 0.1, lambda: None)
        lines = self.access_log_lines()
        self.assertIn("TCP_MISS_ABORTED/200", lines[0])
        self.assertIn("TCP_MISS/200", lines[1])

    async def test_head_and_body_of_one_turn_leave_in_one_send(self) -> None:
        """
        The head sent early costs no extra send: with the body bytes that
        arrive in the same reactor turn it still leaves in one send of the
        batcher.
        """
        whole = body_for("one", 3000)
        origin = ScriptedOrigin(
            reactor, [(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + whole, False)]
        )
        self.listen(origin)
        sent: list[bytes] = []
        send = wire._send

        def record(transport: Any, data: bytes) -> None:
            sent.append(data)
            send(transport, data)

        self.patch(wire, "_send", record)
        url = origin.url("/one")
        port = self.proxy_port

        def fetch() -> bytes:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
            try:
                conn.request("GET", url)
                return conn.getresponse().read()
            finally:
                conn.close()

        self.assertEqual(sha(await threads.deferToThread(fetch)), sha(whole))
        answers = [data for data in sent if data.startswith(b"HTTP/1.1 200 OK\r\n")]
        self.assertEqual(len(answers), 1, sent)
        self.assertTrue(answers[0].endswith(b"\r\n\r\n" + whole))
