"""
Accelerator mode over real loopback sockets, in front of Twisted origins
(tests/origins.py): sites by Host, routes and prefix rewriting, the fields
the application sees, redirects rewritten, pools with passive health and
retries, refusals that keep the port from being an open proxy, the cache
keyed by the public URL, PURGE, and WebSocket upgrades.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server

from tests.accelharness import AccelTestCase, in_thread
from tests.origins import Origin
from tests.sloworigin import SlowOrigin
from tests.test_drain import proxy_config, wait_for
from tests.twistdprocess import TwistdProxy


def _seen(reply: Any) -> dict[str, Any]:
    """What the echoing origin saw."""
    data: dict[str, Any] = json.loads(reply.body)
    data["fields"] = {name.lower(): value for name, value in data["headers"]}
    return data


class _Redirecting(resource.Resource):
    """Redirects to its own address, as an app that knows only its bind address does."""

    isLeaf = True

    def __init__(self, location: bytes) -> None:
        super().__init__()
        self.location = location

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", self.location)
        request.setHeader(b"refresh", b"3; url=" + self.location)
        return b"moved"


class SiteRoutingTests(AccelTestCase):
    """
    The minimal form of the issue, host and path routing, and refusals.
    """

    async def _minimal(self) -> tuple[Origin, Origin]:
        first, second = Origin(reactor), Origin(reactor)
        ports = [first.listen(), second.listen()]
        self.addCleanup(first.port.stopListening)
        self.addCleanup(second.port.stopListening)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
"""
        )
        return first, second

    async def test_minimal_form_round_robin(self) -> None:
        """
        The smallest [[accel]] entry serves its site from both servers in
        turn, with the public Host and the forwarding fields.
        """
        first, second = await self._minimal()
        replies = [await self.get(f"/echo/{n}") for n in range(4)]
        self.assertEqual([reply.status for reply in replies], [200] * 4)
        self.assertEqual((len(first.requests), len(second.requests)), (2, 2))
        seen = _seen(replies[0])
        self.assertEqual(seen["uri"], "/echo/0")
        self.assertEqual(seen["fields"]["host"], "app.example")
        self.assertEqual(seen["fields"]["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(seen["fields"]["x-forwarded-proto"], "http")
        self.assertEqual(seen["fields"]["x-forwarded-host"], "app.example")
        self.assertIn("squeak.test", seen["fields"]["via"])
        lines = self.access_log_lines()
        self.assertEqual(len(lines), 4)
        self.assertRegex(
            lines[0], r" GET http://app\.example/echo/0 - ROUNDROBIN_PARENT/127\.0\.0\.1"
        )

    async def test_spoofed_forwarding_fields_replaced(self) -> None:
        """
        A client's own X-Forwarded-Proto/-Host never reach the application;
        its X-Forwarded-For chain is extended with its real address.
        """
        await self._minimal()
        reply = await self.get(
            "/echo",
            headers={
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-For": "10.9.9.9",
            },
        )
        fields = _seen(reply)["fields"]
        self.assertEqual(fields["x-forwarded-proto"], "http")
        self.assertEqual(fields["x-forwarded-host"], "app.example")
        self.assertEqual(fields["x-forwarded-for"], "10.9.9.9, 127.0.0.1")

    async def test_unconfigured_site_refused(self) -> None:
        """A Host naming no site gets a 421 page, and no server is asked."""
        first, second = await self._minimal()
        reply = await self.get("/echo", host="other.example")
        self.assertEqual(reply.status, 421)
        self.assertIn(b"other.example", reply.body)
        self.assertEqual(first.requests + second.requests, [])

    async def test_missing_host_refused(self) -> None:
        """An HTTP/1.1 request without Host is a 400 (RFC 9112 §3.2)."""
        await self._minimal()
        answer = await in_thread(self.raw, b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:100])

    async def test_absolute_uri_refused(self) -> None:
        """
        An absolute-URI request is refused on an accelerator port: never a
        forward-proxy fetch (the origin it names is not asked).
        """
        first, second = await self._minimal()
        elsewhere = Origin(reactor)
        self_port(self, elsewhere)
        answer = await in_thread(
            self.raw,
            b"GET %s HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"
            % elsewhere.url("/echo").encode(),
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:100])
        self.assertIn(b"not a proxy", answer)
        self.assertEqual(elsewhere.requests + first.requests + second.requests, [])

    async def test_connect_refused(self) -> None:
        """CONNECT is refused on an accelerator port (405)."""
        first, _ = await self._minimal()
        answer = await in_thread(
            self.raw,
            b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            % first.port.getHost().port,
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 405 "), answer[:100])
        self.assertEqual(first.connections, 0)

    async def test_host_and_path_routing(self) -> None:
        """
        Two sites by Host; under one of them /static/ goes to another pool
        with its prefix stripped and /new_req to a third with it rewritten
        (the django-revproxy mapping).
        """
        app, static, other = Origin(reactor), Origin(reactor), Origin(reactor)
        ports = [self_port(self, origin) for origin in (app, static, other)]
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"
routes = [
  {{prefix = "/static/", pool = "static", strip = true}},
  {{prefix = "/new_req", pool = "other", rewrite = "/echo/v2"}},
]

[accel_site."admin.example"]
aliases = ["www.admin.example"]
pool = "other"

[accel_pool.app]
origins = ["127.0.0.1:{ports[0]}"]
[accel_pool.static]
origins = ["127.0.0.1:{ports[1]}"]
[accel_pool.other]
origins = ["127.0.0.1:{ports[2]}"]
"""
        )
        reply = await self.get("/echo/page?q=1")
        self.assertEqual(_seen(reply)["uri"], "/echo/page?q=1")
        reply = await self.get("/static/echo/app.css")
        self.assertEqual(_seen(reply)["uri"], "/echo/app.css")
        reply = await self.get("/new_req/x?y=2")
        self.assertEqual(_seen(reply)["uri"], "/echo/v2/x?y=2")
        reply = await self.get("/static/../echo/up")
        self.assertEqual(_seen(reply)["uri"], "/echo/up")
        reply = await self.get("/echo/admin", host="WWW.Admin.Example:8080")
        self.assertEqual(_seen(reply)["fields"]["host"], "WWW.Admin.Example:8080")
        self.assertEqual([len(app.requests), len(static.requests), len(other.requests)], [2, 1, 2])

    async def test_location_and_refresh_rewritten(self) -> None:
        """
        A redirect naming the server's own address (or, under a stripped
        prefix, a path of the application) is rewritten to the public URL.
        """
        root = _Redirecting(b"")
        site = server.Site(root)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        root.location = b"http://127.0.0.1:%d/login?next=/" % number
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"
routes = [{{prefix = "/shop/", pool = "app", strip = true}}]

[accel_pool.app]
origins = ["127.0.0.1:{number}"]
"""
        )
        reply = await self.get("/anything")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.header("location"), "http://app.example/login?next=/")
        self.assertEqual(reply.header("refresh"), "3; url=http://app.example/login?next=/")
        reply = await self.get("/shop/cart")
        self.assertEqual(reply.header("location"), "http://app.example/shop/login?next=/")
        root.location = b"https://elsewhere.example/x"
        reply = await self.get("/anything")
        self.assertEqual(reply.header("location"), "https://elsewhere.example/x")

    async def test_fallback_sends_site_name(self) -> None:
        """
        With fallback, a Host naming no site is served by the entry's site,
        and the application sees the site's name, not the client's Host.
        """
        origin = Origin(reactor)
        number = self_port(self, origin)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
fallback = true
origins = ["127.0.0.1:{number}"]
"""
        )
        fields = _seen(await self.get("/echo", host="evil.example"))["fields"]
        self.assertEqual((fields["host"], fields["x-forwarded-host"]), ("app.example",) * 2)
        fields = _seen(await self.get("/echo", host="App.Example:8080"))["fields"]
        self.assertEqual(fields["host"], "App.Example:8080")

    async def test_site_rules(self) -> None:
        """A site's http_access rules use the [acl] machinery (403 when denied)."""
        origin = Origin(reactor)
        number = self_port(self, origin)
        self.start_accel(
            f"""
[acl]
admin_path = {{ urlpath_regex = ["^/admin"] }}

[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"
http_access = ["deny admin_path", "allow all"]

[accel_pool.app]
origins = ["127.0.0.1:{number}"]
"""
        )
        self.assertEqual((await self.get("/admin/users")).status, 403)
        self.assertEqual((await self.get("/static/../admin/users")).status, 403)
        self.assertEqual((await self.get("/echo")).status, 200)
        self.assertEqual(len(origin.requests), 1)


def self_port(case: Any, origin: Origin) -> int:
    """Start C{origin} for the test C{case} and return its port."""
    number = origin.listen()
    case.addCleanup(origin.port.stopListening)
    return number


class PoolTests(AccelTestCase):
    """
    Passive health, retries, the 503 naming the pool, active checks.
    """

    def _two(self, extra: str = "") -> tuple[Origin, Origin, int]:
        first, second = Origin(reactor), Origin(reactor)
        ports = [self_port(self, first), self_port(self, second)]
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"

[accel_pool.app]
origins = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
max_fails = 1
fail_timeout = "30s"
{extra}
"""
        )
        return first, second, ports[1]

    async def test_server_killed_get_retried_and_marked_down(self) -> None:
        """
        With one server stopped, GETs are retried on the other and every
        one succeeds; the stopped server is then left out (one connect
        attempt, not one per request).
        """
        first, second, _ = self._two()
        await first.port.stopListening()
        replies = [await self.get(f"/echo/{n}") for n in range(4)]
        self.assertEqual([reply.status for reply in replies], [200] * 4)
        self.assertEqual(len(second.requests), 4)
        pool = self.pools.pools["app"]
        down = [m.name for m in pool.group.members if pool.group.is_down(m)]
        self.assertEqual(len(down), 1)

    async def test_post_refused_by_closed_server_retried(self) -> None:
        """A POST whose connection was refused reached no server: it is retried."""
        first, second, _ = self._two()
        await first.port.stopListening()
        replies = [await in_thread(self.request, "POST", "/echo", body=b"x") for _ in range(2)]
        self.assertEqual([reply.status for reply in replies], [200, 200])
        self.assertEqual([r["method"] for r in second.requests], ["POST", "POST"])

    async def test_post_that_reached_server_not_retried(self) -> None:
        """
        A POST whose server closed the connection without answering may have
        been acted on: 502, and the other server never sees it; a GET in the
        same situation is retried.
        """
        swallowed: list[bytes] = []

        class _Swallow(server.Site):
            def buildProtocol(self, addr: Any) -> Any:
                from twisted.internet.protocol import Protocol

                class _P(Protocol):
                    def dataReceived(self, data: bytes) -> None:
                        swallowed.append(data)
                        if b"\r\n\r\n" in b"".join(swallowed):
                            self.transport.loseConnection()

                return _P()

        bad = reactor.listenTCP(0, _Swallow(resource.Resource()), interface="127.0.0.1")
        self.addCleanup(bad.stopListening)
        good = Origin(reactor)
        good_port = self_port(self, good)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"

[accel_pool.app]
origins = ["127.0.0.1:{bad.getHost().port}", "127.0.0.1:{good_port}"]
balance = "first-up"
max_fails = 5
"""
        )
        reply = await in_thread(self.request, "POST", "/echo", body=b"order=1")
        self.assertEqual(reply.status, 502)
        self.assertEqual(good.requests, [])
        self.assertIn(b"POST /echo", b"".join(swallowed))
        reply = await self.get("/echo")
        self.assertEqual(reply.status, 200)
        self.assertEqual([r["method"] for r in good.requests], ["GET"])

    async def test_silent_server_given_up_after_answer_timeout(self) -> None:
        """
        A server that accepts and never answers: with answer_timeout, a GET
        goes to the next server in time and the silent one is taken out; a
        POST is not repeated (504 when the read timeout ends it).
        """
        from twisted.internet.protocol import Factory, Protocol

        received: list[bytes] = []

        class _Silent(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

        silent = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        good = Origin(reactor)
        good_port = self_port(self, good)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"

[accel_pool.app]
origins = ["127.0.0.1:{silent.getHost().port}", "127.0.0.1:{good_port}"]
balance = "first-up"
answer_timeout = "0.3s"
""",
            timeouts={"read": 1.5, "connect": 1.0},
        )
        reply = await self.get("/echo")
        self.assertEqual(reply.status, 200)
        self.assertEqual(len(good.requests), 1)
        pool = self.pools.pools["app"]
        self.assertTrue(pool.group.is_down(pool.group.members[0]))
        # Back in the pool after fail_timeout: now only the POST case.
        pool.group.succeeded(pool.group.members[0], self.pools.now())
        reply = await in_thread(self.request, "POST", "/echo", body=b"x")
        self.assertEqual(reply.status, 504)
        self.assertEqual([r["method"] for r in good.requests], ["GET"])

    async def test_least_connections(self) -> None:
        """
        least-connections: while one server is busy with a slow request,
        the next requests go to the other one.
        """
        first, second, _ = self._two('balance = "least-connections"')
        slow = self.get("/cached/slow?delay=1.0")
        await deferLater(reactor, 0.3, lambda: None)
        busy = first if first.requests else second
        idle = second if busy is first else first
        for n in range(3):
            reply = await self.get(f"/echo/{n}")
            self.assertEqual(reply.status, 200)
        self.assertEqual((len(busy.requests), len(idle.requests)), (1, 3))
        self.assertEqual((await slow).status, 200)
        pool = self.pools.pools["app"]
        self.assertEqual(sorted(pool.active.values()), [0, 0])

    async def test_weights(self) -> None:
        """Weights 3 and 1: three requests in four to the first server."""
        first, second = Origin(reactor), Origin(reactor)
        ports = [self_port(self, first), self_port(self, second)]
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = [{{address = "127.0.0.1:{ports[0]}", weight = 3}}, "127.0.0.1:{ports[1]}"]
"""
        )
        for n in range(8):
            await self.get(f"/echo/{n}")
        self.assertEqual((len(first.requests), len(second.requests)), (6, 2))

    async def test_hash_url(self) -> None:
        """hash-url: a URL always goes to the same server; URLs spread over both."""
        first, second, _ = self._two('balance = "hash-url"')
        for path in [f"/echo/{n}" for n in range(12)] * 2:
            await self.get(path)
        for origin in (first, second):
            uris = [r["uri"] for r in origin.requests]
            self.assertTrue(uris, "one server got nothing")
            self.assertTrue(all(uris.count(uri) == 2 for uri in uris))

    async def test_no_server_up_is_503_naming_pool(self) -> None:
        """
        With every server down: 502 for the request that found out, then 503
        naming the pool.
        """
        first, second, _ = self._two()
        await first.port.stopListening()
        await second.port.stopListening()
        reply = await self.get("/echo")
        self.assertEqual(reply.status, 502)
        self.assertIn(b"pool app: connection to 127.0.0.1:", reply.body)
        self.assertIn(b"refused (tried 127.0.0.1:", reply.body)
        reply = await self.get("/echo")
        self.assertEqual(reply.status, 503)
        self.assertIn(b"pool app", reply.body)

    async def test_active_check_brings_server_back(self) -> None:
        """
        A server that was down is offered again only once its health check
        answers (probes every 0.2 s).
        """
        first, _second, _ = self._two(
            'check_path = "/status/200"\ncheck_interval = "0.2s"\ncheck_timeout = "1s"'
        )
        port = first.port.getHost().port
        await first.port.stopListening()
        for _ in range(2):
            await self.get("/echo")
        pool = self.pools.pools["app"]
        member = next(m for m in pool.group.members if m.name.endswith(f":{port}"))
        self.assertTrue(pool.group.is_down(member))
        first.port = reactor.listenTCP(port, first.site, interface="127.0.0.1")
        self.addCleanup(first.port.stopListening)
        for _ in range(50):
            if not pool.group.is_down(member):
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(pool.group.is_down(member))
        before = len(first.requests)
        for n in range(4):
            await self.get(f"/echo/{n}")
        self.assertGreater(len(first.requests) - before, 0)


class CacheTests(AccelTestCase):
    """The cache in front of the application, keyed by the public URL."""

    async def test_cached_by_public_url_and_purged(self) -> None:
        """
        Two servers, one cached response: the second request is a hit
        whichever server would have been next; PURGE by the public URL
        removes it.
        """
        first, second = Origin(reactor), Origin(reactor)
        ports = [self_port(self, first), self_port(self, second)]
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
"""
        )
        path = "/cached/a?cc=max-age%3D60"
        one = await self.get(path)
        two = await self.get(path)
        self.assertEqual(one.body, two.body)
        self.assertEqual(len(first.requests) + len(second.requests), 1)
        self.assertIn("HIT", two.header("x-cache") or "")
        purged = await in_thread(self.request, "PURGE", path)
        self.assertEqual(purged.status, 200)
        three = await self.get(path)
        self.assertEqual(len(first.requests) + len(second.requests), 2)
        self.assertNotEqual(three.body, one.body)
        lines = self.access_log_lines()
        self.assertTrue(any("TCP_MEM_HIT" in line or "TCP_HIT" in line for line in lines), lines)


class _Counting(resource.Resource):
    """Answers with the fields it is given and a body naming the request count."""

    isLeaf = True

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self.fields = fields
        self.count = 0

    def render(self, request: server.Request) -> bytes:
        self.count += 1
        for name, value in self.fields:
            request.responseHeaders.addRawHeader(name, value)
        return b"answer %d" % self.count


class _SiteAppTestCase(AccelTestCase):
    """An accelerator before one L{_Counting} application."""

    def _app(
        self, fields: list[tuple[bytes, bytes]], settings: str, **sections: dict[str, Any]
    ) -> _Counting:
        app = _Counting(fields)
        port = reactor.listenTCP(0, server.Site(app), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.app_port = port
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"
{settings}

[accel_pool.app]
origins = ["127.0.0.1:{port.getHost().port}"]
""",
            **sections,
        )
        return app


class SiteCachingTests(_SiteAppTestCase):
    """A site's cache settings, against an application's fields."""

    async def test_default_ttl(self) -> None:
        """A response without freshness is cached for the site's default TTL."""
        app = self._app([], 'default_ttl = "1min"')
        one, two = await self.get("/page"), await self.get("/page")
        self.assertEqual((one.body, two.body, app.count), (b"answer 1", b"answer 1", 1))
        self.assertIsNone(two.header("squeak-cache-view"))
        self.assertIsNone(two.header("cache-control"))

    async def test_surrogate_control(self) -> None:
        """
        Surrogate-Control max-age caches a response its Cache-Control keeps
        private to browsers; clients still see that Cache-Control, never the
        Surrogate-Control.
        """
        app = self._app(
            [(b"Cache-Control", b"private, max-age=0"), (b"Surrogate-Control", b"max-age=60")],
            "surrogate_control = true",
        )
        one, two = await self.get("/page"), await self.get("/page")
        self.assertEqual((two.body, app.count), (b"answer 1", 1))
        for reply in (one, two):
            self.assertEqual(reply.header("cache-control"), "private, max-age=0")
            self.assertIsNone(reply.header("surrogate-control"))

    async def test_cdn_cache_control(self) -> None:
        """RFC 9213: the targeted field wins over Cache-Control for this cache."""
        app = self._app(
            [(b"Cache-Control", b"no-store"), (b"CDN-Cache-Control", b"max-age=60")],
            'cdn_cache_control = "CDN-Cache-Control"',
        )
        await self.get("/page")
        two = await self.get("/page")
        self.assertEqual((two.body, app.count), (b"answer 1", 1))
        self.assertEqual(two.header("cache-control"), "no-store")

    async def test_without_settings_not_cached(self) -> None:
        """The counter-proof: the same application without the settings is not cached."""
        app = self._app(
            [(b"Cache-Control", b"private, max-age=0"), (b"Surrogate-Control", b"max-age=60")],
            "",
        )
        await self.get("/page")
        await self.get("/page")
        self.assertEqual(app.count, 2)

    async def test_stale_on_error(self) -> None:
        """With the application down, a stale copy is served within stale_on_error."""
        # No pooled connection: the application is gone once it stops listening.
        app = self._app(
            [(b"Cache-Control", b"max-age=1")],
            'stale_on_error = "1h"',
            upstream={"max_idle_per_host": 0},
        )
        await self.get("/page")
        await self.app_port.stopListening()
        await deferLater(reactor, 1.2, lambda: None)
        reply = await self.get("/page")
        self.assertEqual((reply.status, reply.body, app.count), (200, b"answer 1", 1))


class StaleWhileUpdatingTests(_SiteAppTestCase):
    """stale_while_updating: served stale at once, refreshed in the background."""

    async def test_refreshed_in_background(self) -> None:
        """
        Past its freshness, the entry is served at once (still answer 1)
        while one refresh goes to the application; the next request gets
        the refreshed copy without asking the application again.
        """
        # max-age=2, not 1: the application's Date has whole seconds, so a
        # copy can be up to a second old when it arrives, and a refreshed
        # copy with max-age=1 could already be stale at the next request.
        app = self._app([(b"Cache-Control", b"max-age=2")], 'stale_while_updating = "30s"')
        await self.get("/page")
        await deferLater(reactor, 2.3, lambda: None)
        stale = await self.get("/page")
        self.assertEqual(stale.body, b"answer 1")
        for _ in range(50):
            if app.count == 2 and not self.pools.refreshing:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(app.count, 2)
        fresh = await self.get("/page")
        self.assertEqual((fresh.body, app.count), (b"answer 2", 2))


class WebSocketTests(AccelTestCase):
    """An upgrade goes through to the application."""

    async def test_websocket_echo(self) -> None:
        """
        A WebSocket handshake and a frame echoed by a raw upgrading origin,
        through the accelerator.
        """
        from twisted.internet.protocol import Factory, Protocol

        class _Upgrading(Protocol):
            buffer = b""
            upgraded = False

            def dataReceived(self, data: bytes) -> None:
                if self.upgraded:
                    self.transport.write(data)
                    return
                self.buffer += data
                if b"\r\n\r\n" in self.buffer:
                    head, _, rest = self.buffer.partition(b"\r\n\r\n")
                    assert b"upgrade: websocket" in head.lower()
                    self.transport.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
                    )
                    self.upgraded = True
                    if rest:
                        self.transport.write(rest)

        port = reactor.listenTCP(0, Factory.forProtocol(_Upgrading), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = ["127.0.0.1:{port.getHost().port}"]
"""
        )

        def talk() -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", self.accel_port), timeout=5) as s:
                s.sendall(
                    b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(4096)
                frame = b"\x81\x05hello"
                s.sendall(frame)
                echoed = b""
                while len(echoed) < len(frame):
                    echoed += s.recv(4096)
                return head, echoed

        head, echoed = await in_thread(talk)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertEqual(echoed, b"\x81\x05hello")


class TwistdAccelTests(SynchronousTestCase):
    """
    The accelerator in a real C{twistd -n squeak}, with two workers adopting
    the listening sockets the master bound, and a reload adding a site.
    """

    timeout = 120

    def test_workers_and_reload(self) -> None:
        """
        Both workers answer on the accelerator port; after SIGHUP with a new
        site, the new site is served on the same port and the old one still.
        """
        origin = SlowOrigin()
        self.addCleanup(origin.close)
        port = int(origin.url("/").split(":")[2].split("/")[0])
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        accel = f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = ["127.0.0.1:{port}"]
"""
        proxy = TwistdProxy(proxy_config(directory, workers=2) + accel).start()
        self.addCleanup(proxy.stop)
        self.assertTrue(wait_for(proxy, r"worker \d+: .*squeak listening on", count=4))
        ports = {
            int(p) for p in re.findall(r"squeak listening on 127\.0\.0\.1:(\d+)", proxy.output)
        }
        ports.discard(proxy.port)
        self.assertEqual(len(ports), 1, proxy.output)
        accel_port = ports.pop()

        def get(host: str) -> tuple[int, dict[str, str]]:
            conn = http.client.HTTPConnection("127.0.0.1", accel_port, timeout=10)
            try:
                conn.request("GET", "/body/10", headers={"Host": host})
                response = conn.getresponse()
                response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}
            finally:
                conn.close()

        workers = set()
        for _ in range(40):
            status, fields = get("app.example")
            self.assertEqual(status, 200)
            workers.add(fields["x-squeak-worker"])
            if len(workers) == 2:
                break
        self.assertEqual(len(workers), 2)
        self.assertEqual(get("new.example")[0], 421)
        assert proxy.config_path is not None
        Path(proxy.config_path).write_text(
            proxy_config(directory, workers=2)
            + accel
            + f"""
[accel_site."new.example"]
pool = "new"

[accel_pool.new]
origins = ["127.0.0.1:{port}"]
""",
            encoding="utf-8",
        )
        proxy.signal(signal.SIGHUP)
        self.assertTrue(wait_for(proxy, r"reload done", timeout=60), proxy.output[-2000:])
        self.assertEqual(get("new.example")[0], 200)
        self.assertEqual(get("app.example")[0], 200)
