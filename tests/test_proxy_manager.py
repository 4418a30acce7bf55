"""
The cache manager pages on the proxy port (L{squeak.proxy.manager}):
refusals and routing on fake transports, then pages over real loopback
sockets, with Debian's C{squidclient} when it is installed.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.http.request import parse_request_head
from squeak.proxy.manager import answer_manager_request
from squeak.proxy.router import ForwardRequest
from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.transcript import ORIGIN_IP, Transcript

_ORIGIN = ORIGIN_IP.encode()


def _in_thread(function: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThread(function, *args)


class ManagerTranscriptTests(SynchronousTestCase):
    """
    Who may read the pages, which requests are pages, and the answers to
    bad ones; no origin is ever contacted for a page.
    """

    def _page(self, t: Transcript, target: bytes, method: bytes = b"GET") -> bytes:
        t.client_sends(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n\r\n" % (method, target))
        return t.client_received()

    def test_outside_the_manager_acl(self) -> None:
        """
        A client outside C{[manager] allow_from} (loopback by default) gets
        403, counted as denied by that setting; nothing is forwarded.
        """
        t = Transcript(self, client_ip="198.51.100.7")
        answer = self._page(t, b"cache_object://127.0.0.1/info")
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
        self.assertEqual(t.origins, [])
        self.assertEqual(t.context.counters.denied, {"manager.allow_from": 1})
        self.assertEqual(t.log_tags(), ["TCP_DENIED"])

    def test_allow_from_is_configurable(self) -> None:
        """Listing another network refuses loopback, admits that one."""
        t = Transcript(self, manager={"allow_from": ()})
        self.assertTrue(self._page(t, b"/squid-internal-mgr/menu").startswith(b"HTTP/1.1 403 "))

    def test_page_is_answered_here_and_not_counted(self) -> None:
        """
        A page is answered without an origin, marked C{no-store}, and does
        not move the request counters it reports.
        """
        t = Transcript(self)
        answer = self._page(t, b"/squid-internal-mgr/counters?format=json")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nCache-Control: no-store", head)
        self.assertIn(b"\r\nContent-Type: application/json", head)
        self.assertEqual(json.loads(body)["client_http.requests"], 0)
        self.assertEqual(t.origins, [])
        self.assertEqual(t.context.counters.requests, {})

    def test_bad_requests(self) -> None:
        """
        An unknown page is 404, a method other than GET/HEAD 405, objects
        without a URL 400.
        """
        rows = [
            (b"GET", b"/squid-internal-mgr/nonesuch", b"404"),
            (b"POST", b"/squid-internal-mgr/info", b"405"),
            (b"GET", b"/squid-internal-mgr/objects", b"400"),
            (b"HEAD", b"/squid-internal-mgr/menu", b"200"),
        ]
        wrong = []
        for method, target, status in rows:
            t = Transcript(self)
            answer = self._page(t, target, method)
            if not answer.startswith(b"HTTP/1.1 " + status):
                wrong.append((method, target, answer[:40]))
            if t.origins:
                wrong.append((method, target, "forwarded"))
        self.assertEqual(wrong, [])

    def test_another_hosts_manager_is_forwarded(self) -> None:
        """
        An absolute URI naming another host's manager path is an ordinary
        request: it goes to that host (it may be a Squid).
        """
        t = Transcript(self)
        t.client_sends(
            b"GET http://%s:8080/squid-internal-mgr/info HTTP/1.1\r\nHost: x\r\n\r\n" % _ORIGIN
        )
        self.assertEqual(len(t.origins), 1)
        self.assertTrue(t.origin_received().startswith(b"GET /squid-internal-mgr/info HTTP/1.1"))

    def test_intercepted_origin_form_is_not_a_page(self) -> None:
        """
        Origin-form requests on an intercept listener are for the origin
        the client thinks it reaches: never a manager page here.
        """
        t = Transcript(self)
        t.channel.intercepting = True
        head = parse_request_head(
            b"GET /squid-internal-mgr/info HTTP/1.1\r\nHost: a.test", max_fields=10
        )
        exchange = ForwardRequest(t.channel, head, None)
        self.assertFalse(answer_manager_request(exchange))
        t.channel.intercepting = False
        self.assertTrue(answer_manager_request(ForwardRequest(t.channel, head, None)))


class ManagerPageTests(ProxyTestCase):
    """
    The pages over real sockets: figures that move with requests, and an
    C{objects} page that agrees with C{X-Cache}.
    """

    def _get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request("GET", target, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def _json_page(self, page: str) -> Any:
        status, _, body = self._get(f"/squid-internal-mgr/{page}", {"Accept": "application/json"})
        assert status == 200, (status, body)
        return json.loads(body)

    def _objects(self, url: str) -> Any:
        return self._json_page(f"objects?url={quote(url, safe='')}")

    async def test_counters_move_by_exactly_n(self) -> None:
        """
        N requests through the proxy move C{client_http.requests} by N, the
        info page's totals too, and the pages themselves move nothing.
        """
        origin = Origin(reactor)
        self.listen(origin)
        before = await _in_thread(self._json_page, "counters")
        info_before = await _in_thread(self._json_page, "info")
        for index in range(7):
            status, _, _ = await _in_thread(self._get, origin.url(f"/echo/{index}"))
            self.assertEqual(status, 200)
        after = await _in_thread(self._json_page, "counters")
        info = await _in_thread(self._json_page, "info")
        self.assertEqual(after["client_http.requests"] - before["client_http.requests"], 7)
        self.assertEqual(info["requests"]["total"] - info_before["requests"]["total"], 7)
        self.assertEqual(info["workers"], 1)
        self.assertEqual(len(origin.requests), 7)  # the pages were not forwarded

    async def test_absolute_form_naming_the_proxy(self) -> None:
        """
        C{http://PROXY:PORT/squid-internal-mgr/info}, asked of the proxy as
        a proxy (what C{squeak mgr} sends), by its address or as
        C{localhost} on a loopback connection, gets the page answered at once:
        not forwarded to the proxy itself, so it moves no request counter
        and opens no upstream connection.
        """
        before = await _in_thread(self._json_page, "counters")
        for host in ("127.0.0.1", "localhost", "127.0.0.1", "localhost"):
            # localhost too: the client reached the proxy on loopback.
            url = f"http://{host}:{self.proxy_port}/squid-internal-mgr/info?format=json"
            status, headers, body = await _in_thread(self._get, url)
            self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers["Cache-Control"], "no-store")
        self.assertIn("uptime_seconds", json.loads(body))
        after = await _in_thread(self._json_page, "counters")
        self.assertEqual(after["client_http.requests"], before["client_http.requests"])

    async def test_collapsed_waits(self) -> None:
        """
        A request that waits for an identical fetch in flight moves
        C{collapsed_forwarding.waits} by one.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/slow?cc=max-age%3D60&delay=0.5")
        before = (await _in_thread(self._json_page, "counters"))["collapsed_forwarding.waits"]
        await gatherResults([_in_thread(self._get, url), _in_thread(self._get, url)])
        after = (await _in_thread(self._json_page, "counters"))["collapsed_forwarding.waits"]
        self.assertEqual(after - before, 1)
        self.assertEqual(origin.counts[b"/cached/slow"], 1)

    async def test_bytes_in_and_out(self) -> None:
        """
        Bytes received from clients and sent to them move by exactly what
        crossed the wire.  Bytes in count the page's own request too (its
        connection is open when the page is made): two pages in a row
        measure that, and it is subtracted.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/echo/bytes").encode()
        request = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url
        first = await _in_thread(self._json_page, "counters")
        before = await _in_thread(self._json_page, "counters")
        page_request = before["client_http.bytes_in"] - first["client_http.bytes_in"]
        answer = await _in_thread(self.raw_exchange, request)
        after = await _in_thread(self._json_page, "counters")
        self.assertEqual(
            after["client_http.bytes_in"] - before["client_http.bytes_in"],
            len(request) + page_request,
        )
        self.assertEqual(
            after["client_http.bytes_out"] - before["client_http.bytes_out"], len(answer)
        )

    async def test_objects_agrees_with_x_cache(self) -> None:
        """
        Before the first request nothing is stored; after a MISS that was
        stored, one variant (with its lifetime, validator and tiers); a HIT
        then; nothing after PURGE; and a response that may not be stored
        is never listed.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/a?cc=max-age%3D60&etag=v1")
        self.assertFalse((await _in_thread(self._objects, url))["stored"])
        _, headers, _ = await _in_thread(self._get, url)
        self.assertTrue(headers["X-Cache"].startswith("MISS"), headers["X-Cache"])
        page = await _in_thread(self._objects, url)
        self.assertTrue(page["stored"])
        (variant,) = page["variants"]
        self.assertEqual(variant["freshness_lifetime"], 60.0)
        self.assertEqual(variant["etag"], '"v1"')
        self.assertTrue(variant["fresh"])
        self.assertEqual(sorted(variant["tiers"]), ["disk", "memory"])
        _, headers, _ = await _in_thread(self._get, url)
        self.assertTrue(headers["X-Cache"].startswith("HIT"), headers["X-Cache"])
        conn_purge = await _in_thread(self._purge, url)
        self.assertEqual(conn_purge, 200)
        self.assertFalse((await _in_thread(self._objects, url))["stored"])
        unstored = origin.url("/cached/b?cc=no-store")
        for _ in range(2):
            _, headers, _ = await _in_thread(self._get, unstored)
            self.assertTrue(headers["X-Cache"].startswith("MISS"))
        self.assertFalse((await _in_thread(self._objects, unstored))["stored"])

    async def test_objects_lists_vary_variants(self) -> None:
        """Two languages of one URL are two variants."""
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/v?cc=max-age%3D60&vary=Accept-Language")
        for language in ("en", "fr"):
            await _in_thread(self._get, url, {"Accept-Language": language})
        page = await _in_thread(self._objects, url)
        self.assertEqual(len(page["variants"]), 2)
        self.assertEqual({tuple(v["vary"]) for v in page["variants"]}, {("accept-language",)})

    def _purge(self, url: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request("PURGE", url)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _squidclient(self, page: str) -> str:
        return subprocess.run(
            ["squidclient", "-h", "127.0.0.1", "-p", str(self.proxy_port), f"mgr:{page}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout

    async def test_squidclient(self) -> None:
        """
        Debian's C{squidclient mgr:info} and C{mgr:objects?url=} (which
        send C{cache_object://} URLs) read the pages.
        """
        if shutil.which("squidclient") is None:
            raise SkipTest(
                "squidclient (the Debian package squidclient) is not installed; "
                "bash .ci/setup-tools installs it"
            )
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/s?cc=max-age%3D60")
        # The process's counters outlive this test's service: compare.
        before = (await _in_thread(self._json_page, "info"))["requests"]["total"]
        await _in_thread(self._get, url)
        info = await _in_thread(self._squidclient, "info")
        self.assertIn("HTTP/1.1 200 OK", info)
        self.assertIn(f"\ttotal: {before + 1}\n", info)
        objects = await _in_thread(self._squidclient, f"objects?url={url}")
        self.assertIn("stored: yes", objects)
        self.assertIn("freshness_lifetime: 60", objects)
