"""
The HTTP cache on a running proxy, over real loopback sockets: hits and
misses, the shared-cache rules, validation, invalidation, truncation,
collapsed forwarding, PURGE.  Each request's origin-side count is in the
response body, so a hit is told from a miss by what the origin saw.
"""

from __future__ import annotations

import base64
import http.client
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.facade import EntryMemo, StoredResponse
from tests.origins import Origin, ScriptedOrigin
from tests.proxyharness import ProxyTestCase


class _Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class _CacheTestCase(ProxyTestCase):
    """
    A proxy, a caching origin, and blocking clients in their own threads.
    """

    def setUp(self) -> Any:
        result = super().setUp()
        self.origin = Origin(reactor)
        self.listen(self.origin)
        # Blocking clients get their own threads: the reactor's pool (10
        # threads) also resolves names for the proxy, and 100 clients
        # waiting in it would starve those lookups.
        self.clients = ThreadPool(minthreads=0, maxthreads=128, name="test-clients")
        self.clients.start()
        self.addCleanup(self.clients.stop)
        return result

    def _fetch(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> _Answer:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.proxy_port, timeout=10, source_address=(source, 0)
        )
        url = path if path.startswith("http://") else self.origin.url(path)
        try:
            conn.request(method, url, headers=headers or {})
            response = conn.getresponse()
            return _Answer(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    def fetch(self, method: str, path: str, **kwargs: Any) -> defer.Deferred[_Answer]:
        return threads.deferToThreadPool(
            reactor, self.clients, lambda: self._fetch(method, path, **kwargs)
        )


class CachingTests(_CacheTestCase):
    """
    squeak stores what it may, serves it while fresh, revalidates what it
    must, and never serves what it must not.
    """

    async def test_fresh_response_is_served_from_cache(self) -> None:
        """
        RFC 9111 §4.2: a fresh stored response is reused, with an Age field
        (§5.1) and X-Cache HIT; the origin is asked once; the log says
        TCP_MEM_HIT.
        """
        first = await self.fetch("GET", "/cached/a?cc=max-age=60")
        second = await self.fetch("GET", "/cached/a?cc=max-age=60")
        self.assertEqual(first.body, second.body)
        self.assertIn(b"response 1", second.body)
        self.assertEqual(second.header("x-cache"), ["HIT from squeak.test"])
        self.assertEqual(first.header("x-cache"), ["MISS from squeak.test"])
        self.assertEqual(len(second.header("age")), 1)
        codes = [line.split()[3] for line in self.access_log_lines()]
        self.assertEqual(codes, ["TCP_MISS/200", "TCP_MEM_HIT/200"])

    async def test_hit_fields_are_the_stored_ones_and_ours(self) -> None:
        """
        A hit carries the stored fields once each (its length as the
        channel frames it), a new Age, and squeak's X-Cache fields in place
        of another cache's, as the miss did; the log names its type.
        """
        path = "/cached/x?cc=max-age=60&xcache=1"
        first = await self.fetch("GET", path)
        second = await self.fetch("GET", path)
        self.assertEqual(
            [
                (r.header("x-cache"), r.header("x-cache-lookup"), r.header("content-type"))
                for r in (first, second)
            ],
            [
                (["MISS from squeak.test"], ["MISS from squeak.test"], ["text/plain"]),
                (["HIT from squeak.test"], ["HIT from squeak.test"], ["text/plain"]),
            ],
        )
        self.assertEqual(second.header("content-length"), [str(len(first.body))])
        self.assertEqual((second.body, len(second.header("age"))), (first.body, 1))
        self.assertEqual(
            [line.split()[3::6] for line in self.access_log_lines()],
            [["TCP_MISS/200", "text/plain"], ["TCP_MEM_HIT/200", "text/plain"]],
        )

    async def test_no_store_and_private_are_not_stored(self) -> None:
        """
        RFC 9111 §5.2.2.5 no-store and §5.2.2.7 private (a shared cache):
        every request reaches the origin.
        """
        bodies = []
        for path in [
            "/cached/ns?cc=no-store",
            "/cached/ns?cc=no-store",
            "/cached/pv?cc=private,max-age=60",
            "/cached/pv?cc=private,max-age=60",
        ]:
            bodies.append((await self.fetch("GET", path)).body)
        self.assertEqual(
            [b[:10] for b in bodies], [b"response 1", b"response 2", b"response 1", b"response 2"]
        )

    async def test_authorized_requests_are_not_shared(self) -> None:
        """
        RFC 9111 §3.5: a response to a request with Authorization is not
        stored unless the response allows it (public).
        """
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        a1 = await self.fetch("GET", "/cached/auth?cc=max-age=60", headers=auth)
        a2 = await self.fetch("GET", "/cached/auth?cc=max-age=60")
        p1 = await self.fetch("GET", "/cached/pub?cc=public,max-age=60", headers=auth)
        p2 = await self.fetch("GET", "/cached/pub?cc=public,max-age=60")
        self.assertEqual(
            [a1.body[:10], a2.body[:10], p1.body[:10], p2.body[:10]],
            [b"response 1", b"response 2", b"response 1", b"response 1"],
        )

    async def test_vary_selects_the_matching_variant(self) -> None:
        """
        RFC 9111 §4.1: Vary makes the named request fields part of the key.
        """
        path = "/cached/v?cc=max-age=60&vary=Accept-Language"
        en = await self.fetch("GET", path, headers={"Accept-Language": "en"})
        fr = await self.fetch("GET", path, headers={"Accept-Language": "fr"})
        en2 = await self.fetch("GET", path, headers={"Accept-Language": "en"})
        self.assertEqual([en.body[:10], fr.body[:10]], [b"response 1", b"response 2"])
        self.assertEqual(en2.body, en.body)

    async def test_vary_star_never_matches(self) -> None:
        """
        RFC 9111 §4.1: a response with Vary: * is never reused.
        """
        path = "/cached/vs?cc=max-age=60&vary=*"
        bodies = [(await self.fetch("GET", path)).body[:10] for _ in range(2)]
        self.assertEqual(bodies, [b"response 1", b"response 2"])

    async def test_stale_entry_is_revalidated(self) -> None:
        """
        RFC 9111 §4.3: a stale entry with an ETag is revalidated with
        If-None-Match; the origin's 304 freshens it and the stored body is
        served (TCP_REFRESH_UNMODIFIED).
        """
        path = "/cached/r?cc=max-age=0&etag=v1"
        first = await self.fetch("GET", path)
        second = await self.fetch("GET", path)
        self.assertEqual((second.status, second.body), (200, first.body))
        last = self.origin.requests[-1]
        inm = [v for k, v in last["headers"] if k.lower() == "if-none-match"]
        self.assertEqual(inm, ['"v1"'])
        self.assertIn("TCP_REFRESH_UNMODIFIED/200", self.access_log_lines()[-1])

    async def test_hierarchy_code_says_whether_the_origin_was_asked(self) -> None:
        """
        Squid's hierarchy code and server address (C{%Sh/%<a}): a miss and
        every refresh went to the origin (C{HIER_DIRECT/127.0.0.1}, the
        validation's 304 included), a hit and a PURGE did not
        (C{HIER_NONE/-}).
        """
        fresh = "/cached/h1?cc=max-age=60"
        unmodified = "/cached/h2?cc=max-age=0&etag=h2"
        modified = "/cached/h3?cc=max-age=0&lm=Mon,%2001%20Jan%202024%2000:00:00%20GMT"
        for path in (fresh, fresh, unmodified, unmodified, modified, modified):
            await self.fetch("GET", path)
        await self.fetch("PURGE", fresh)
        self.assertEqual(
            [line.split()[3::5] for line in self.access_log_lines()],
            [
                ["TCP_MISS/200", "HIER_DIRECT/127.0.0.1"],
                ["TCP_MEM_HIT/200", "HIER_NONE/-"],
                ["TCP_MISS/200", "HIER_DIRECT/127.0.0.1"],
                ["TCP_REFRESH_UNMODIFIED/200", "HIER_DIRECT/127.0.0.1"],
                ["TCP_MISS/200", "HIER_DIRECT/127.0.0.1"],
                ["TCP_REFRESH_MODIFIED/200", "HIER_DIRECT/127.0.0.1"],
                ["TCP_MISS/200", "HIER_NONE/-"],
            ],
        )

    async def test_client_conditional_answered_from_fresh_entry(self) -> None:
        """
        A client's If-None-Match matching a fresh stored ETag gets 304
        from the cache without asking the origin, logged TCP_IMS_HIT/304 as
        Squid logs it; after a revalidation the 304 keeps the revalidation's
        code.
        """
        path = "/cached/c?cc=max-age=60&etag=abc"
        await self.fetch("GET", path)
        answer = await self.fetch("GET", path, headers={"If-None-Match": '"abc"'})
        self.assertEqual((answer.status, answer.body), (304, b""))
        self.assertEqual(self.origin.counts[b"/cached/c"], 1)
        self.assertIn(" TCP_IMS_HIT/304 ", self.access_log_lines()[-1])
        stale = "/cached/c2?cc=max-age=0&etag=abc"
        await self.fetch("GET", stale)
        answer = await self.fetch("GET", stale, headers={"If-None-Match": '"abc"'})
        self.assertEqual(answer.status, 304)
        self.assertIn(" TCP_REFRESH_UNMODIFIED/304 ", self.access_log_lines()[-1])

    async def test_client_no_cache_revalidates_a_fresh_entry(self) -> None:
        """
        RFC 9111 §5.2.1.4: a client's no-cache (or Pragma: no-cache, or
        max-age=0) makes a fresh stored response be validated with the
        origin first; its 304 serves the stored body, logged
        TCP_REFRESH_UNMODIFIED (docs/operations.md).
        """
        path = "/cached/nc?cc=max-age=60&etag=n1"
        first = await self.fetch("GET", path)
        for headers in (
            {"Cache-Control": "no-cache"},
            {"Pragma": "no-cache"},
            {"Cache-Control": "max-age=0"},
        ):
            answer = await self.fetch("GET", path, headers=headers)
            self.assertEqual((answer.status, answer.body), (200, first.body), headers)
            inm = [
                v for k, v in self.origin.requests[-1]["headers"] if k.lower() == "if-none-match"
            ]
            self.assertEqual(inm, ['"n1"'], headers)
            self.assertIn(" TCP_REFRESH_UNMODIFIED/200 ", self.access_log_lines()[-1])
        self.assertEqual(self.origin.counts[b"/cached/nc"], 4)

    async def test_unsafe_method_invalidates(self) -> None:
        """
        RFC 9111 §4.4: a successful POST to a URI invalidates its stored
        response.
        """
        path = "/cached/inv?cc=max-age=60"
        await self.fetch("GET", path)
        await self.fetch("POST", path)
        again = await self.fetch("GET", path)
        self.assertIn(b"response 3", again.body)

    async def test_head_is_answered_from_stored_get(self) -> None:
        """
        HEAD is answered from a stored GET response, with its length and
        no body.
        """
        got = await self.fetch("GET", "/cached/h?cc=max-age=60")
        head = await self.fetch("HEAD", "/cached/h?cc=max-age=60")
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), [str(len(got.body))])
        self.assertEqual(head.header("x-cache"), ["HIT from squeak.test"])

    async def test_only_if_cached_miss_is_504(self) -> None:
        """
        RFC 9111 §5.2.1.7: only-if-cached with nothing stored gets 504 and
        the origin is not asked.
        """
        answer = await self.fetch(
            "GET", "/cached/oic?cc=max-age=60", headers={"Cache-Control": "only-if-cached"}
        )
        self.assertEqual(answer.status, 504)
        self.assertEqual(self.origin.counts.get(b"/cached/oic"), None)

    async def test_set_cookie_is_never_replayed(self) -> None:
        """
        RFC 6265 §8.6: a response with Set-Cookie is stored without it.
        Two users behind one address (both from 127.0.0.1, with their own
        cookies): the first gets its cookie with the origin's answer, the
        second a hit without any Set-Cookie, never the first user's.
        """
        path = "/cached/ck?cc=max-age=60&cookie=1"
        first = await self.fetch("GET", path, headers={"Cookie": "user=alice"})
        second = await self.fetch("GET", path, headers={"Cookie": "user=bob"})
        self.assertEqual(
            [(a.body[:10], a.header("set-cookie"), a.header("x-cache")) for a in (first, second)],
            [
                (b"response 1", ["session=1"], ["MISS from squeak.test"]),
                (b"response 1", [], ["HIT from squeak.test"]),
            ],
        )
        self.assertEqual(self.origin.counts[b"/cached/ck"], 1)

    async def test_truncated_body_is_never_stored(self) -> None:
        """
        A body cut short by the origin is not stored: the next request goes
        to the origin again and gets the whole answer.
        """
        short = (
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\n"
            + b"x" * 10
        )
        whole = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nwhole"
        origin = ScriptedOrigin(reactor, [(short, True), (whole, False)])
        self.listen(origin)

        def fetch_twice() -> list[bytes]:
            bodies = []
            for _ in range(2):
                conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
                conn.request("GET", origin.url("/t"))
                response = conn.getresponse()
                try:
                    bodies.append(response.read())
                except http.client.IncompleteRead as error:
                    bodies.append(b"partial:" + error.partial)
                conn.close()
            return bodies

        bodies = await threads.deferToThread(fetch_twice)
        self.assertEqual(bodies, [b"partial:" + b"x" * 10, b"whole"])
        self.assertEqual(origin.connections, 2)

    async def test_concurrent_misses_are_collapsed(self) -> None:
        """
        100 simultaneous requests for one cold cacheable URL reach the
        origin once; every client gets the body.
        """
        path = "/cached/cf?cc=max-age=60&delay=0.5"
        answers = await defer.gatherResults([self.fetch("GET", path) for _ in range(100)])
        self.assertEqual({a.body for a in answers}, {answers[0].body})
        self.assertIn(b"response 1", answers[0].body)
        self.assertEqual(self.origin.counts[b"/cached/cf"], 1)

    async def test_purge_removes_an_entry(self) -> None:
        """
        PURGE from loopback removes the stored response (200), then 404.
        """
        path = "/cached/p?cc=max-age=60"
        await self.fetch("GET", path)
        purged = await self.fetch("PURGE", path)
        again = await self.fetch("PURGE", path)
        after = await self.fetch("GET", path)
        self.assertEqual((purged.status, again.status), (200, 404))
        self.assertIn(b"response 2", after.body)


class RangeHitTests(_CacheTestCase):
    """
    RFC 9110 §14: Range requests for a fully cached object are answered
    from the cache.
    """

    async def test_single_and_multiple_ranges_from_cache(self) -> None:
        """
        A single range gets 206 with Content-Range; two ranges get a
        multipart/byteranges body; an unsatisfiable one gets 416; none of
        them reaches the origin after the first fetch.
        """
        path = "/cached/rg?cc=max-age=60"
        whole = (await self.fetch("GET", path)).body
        single = await self.fetch("GET", path, headers={"Range": "bytes=2-5"})
        multi = await self.fetch("GET", path, headers={"Range": "bytes=0-1,-3"})
        beyond = await self.fetch("GET", path, headers={"Range": "bytes=5000-"})
        self.assertEqual((single.status, single.body), (206, whole[2:6]))
        self.assertEqual(single.header("content-range"), [f"bytes 2-5/{len(whole)}"])
        self.assertEqual(multi.status, 206)
        self.assertTrue(multi.header("content-type")[0].startswith("multipart/byteranges"))
        self.assertIn(whole[:2], multi.body)
        self.assertIn(whole[-3:], multi.body)
        self.assertEqual(beyond.status, 416)
        self.assertEqual(self.origin.counts[b"/cached/rg"], 1)

    async def test_if_range_mismatch_gets_the_whole_object(self) -> None:
        """
        RFC 9110 §13.1.5: an If-Range that does not match the stored ETag
        gets the whole response (200), still from the cache.
        """
        path = "/cached/ir?cc=max-age=60&etag=v7"
        whole = (await self.fetch("GET", path)).body
        match = await self.fetch("GET", path, headers={"Range": "bytes=0-3", "If-Range": '"v7"'})
        other = await self.fetch("GET", path, headers={"Range": "bytes=0-3", "If-Range": '"v8"'})
        self.assertEqual((match.status, match.body), (206, whole[:4]))
        self.assertEqual((other.status, other.body), (200, whole))
        self.assertEqual(self.origin.counts[b"/cached/ir"], 1)


class UncacheableMemoTests(_CacheTestCase):
    """
    A URL whose response could not be stored skips the cache for a while:
    no disk lookup, and concurrent requests are not queued behind each
    other (collapsing only helps for what can be shared).
    """

    async def test_no_store_url_is_not_collapsed_after_first_answer(self) -> None:
        """
        After one no-store answer, 10 concurrent requests each reach the
        origin at once instead of waiting in line.
        """
        path = "/cached/nsc?cc=no-store&delay=0.3"
        await self.fetch("GET", path)
        cache = self.service.context.cache
        self.assertTrue(
            any(cache.is_known_uncacheable(k, reactor.seconds()) for k in cache._uncacheable)
        )
        [primary] = list(cache._uncacheable)
        requests = [self.fetch("GET", path) for _ in range(10)]
        await deferLater(reactor, 0.15, lambda: None)
        # While they are all at the origin, none waits behind another.
        self.assertIsNone(cache.store.inflight.get(primary))
        await defer.gatherResults(requests)
        self.assertEqual(self.origin.counts[b"/cached/nsc"], 11)


class CacheRulesTests(_CacheTestCase):
    """
    The [access] cache rules decide what may be stored, evaluated like
    http_access.
    """

    async def test_cache_deny_rule_keeps_matching_responses_out(self) -> None:
        """
        With "deny nocache" for a URL regex, its cacheable responses are
        not stored; other URLs still are.
        """
        self.use_access_config(
            '[acl]\nnocache = { urlpath_regex = ["^/cached/private-area"] }\n'
            '[access]\ncache = ["deny nocache"]\n'
        )
        denied = [
            (await self.fetch("GET", "/cached/private-area?cc=max-age=60")).body[:10]
            for _ in range(2)
        ]
        allowed = [
            (await self.fetch("GET", "/cached/public-area?cc=max-age=60")).body[:10]
            for _ in range(2)
        ]
        self.assertEqual(denied, [b"response 1", b"response 2"])
        self.assertEqual(allowed, [b"response 1", b"response 1"])


class EntryMemoTests(SynchronousTestCase):
    """
    L{EntryMemo} remembers values per stored entry object, for as long as
    that object lives, without writing into it.
    """

    def _entry(self) -> StoredResponse:
        return StoredResponse(
            uri="http://o.test/", status=200, reason=b"OK", headers=(),
            request_time=0.0, response_time=0.0,
        )  # fmt: skip

    def test_values_are_per_entry_object(self) -> None:
        """
        A value put for one entry is found for it under its key only; an
        equal but distinct entry (a freshened copy, a disk reload) starts
        empty.
        """
        memo: EntryMemo[str] = EntryMemo()
        entry, twin = self._entry(), self._entry()
        self.assertEqual(entry, twin)
        memo.put(entry, "k", "v")
        self.assertEqual(
            (memo.get(entry, "k"), memo.get(entry, "other"), memo.get(twin, "k")),
            ("v", None, None),
        )

    def test_values_go_with_their_entry(self) -> None:
        """
        When an entry is freed its values are dropped, so the memo never
        outgrows the entries alive.
        """
        memo: EntryMemo[str] = EntryMemo()
        entry = self._entry()
        memo.put(entry, "k", "v")
        memo.put(entry, "k2", "v2")
        self.assertEqual(len(memo), 1)
        del entry
        self.assertEqual(len(memo), 0)


def _ok(fields: bytes, body: bytes) -> bytes:
    """A raw 200 answer with C{fields} (CRLF-terminated lines) and C{body}."""
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (fields, len(body), body)


class OriginAnswersTests(_CacheTestCase):
    """
    What squeak does with what an origin says about age, with a validation
    answered wrongly, and with an origin that fails (issue 13): scripted
    loopback origins.
    """

    def scripted(self, script: list[tuple[bytes, bool]]) -> ScriptedOrigin:
        origin = ScriptedOrigin(reactor, script)
        self.listen(origin)
        return origin

    def tags(self) -> list[str]:
        return [line.split()[3] for line in self.access_log_lines()]

    async def test_hit_counts_the_origins_age(self) -> None:
        """
        RFC 9111 §4.2.3 and §5.1: a response that arrived with C{Age: 100}
        is served from cache with an Age of at least 100, not the time
        since squeak stored it.
        """
        origin = self.scripted(
            [(_ok(b"Cache-Control: max-age=3600\r\nAge: 100\r\n", b"a"), False)]
        )
        first = await self.fetch("GET", origin.url("/age"))
        second = await self.fetch("GET", origin.url("/age"))
        self.assertEqual(first.header("age"), ["100"])
        self.assertEqual(second.header("x-cache"), ["HIT from squeak.test"])
        self.assertTrue(100 <= int(second.header("age")[0]) < 110, second.header("age"))

    async def test_old_response_is_stale_on_arrival(self) -> None:
        """
        RFC 9111 §4.2.3: C{Age: 7200} with C{max-age=3600} is stale when it
        arrives: the next request validates it.  The 304 (without Age)
        freshens it: it is served with the age since the validation, and
        is a hit afterwards (§4.3.4: the first Age is not counted again).
        """
        origin = self.scripted(
            [
                (_ok(b'Cache-Control: max-age=3600\r\nAge: 7200\r\nETag: "a"\r\n', b"old"), False),
                (b'HTTP/1.1 304 Not Modified\r\nETag: "a"\r\n\r\n', False),
            ]
        )
        await self.fetch("GET", origin.url("/old"))
        validated = await self.fetch("GET", origin.url("/old"))
        third = await self.fetch("GET", origin.url("/old"))
        self.assertIn(b'If-None-Match: "a"', origin.heads[1])
        self.assertEqual(len(origin.heads), 2)
        self.assertEqual([validated.body, third.body], [b"old", b"old"])
        self.assertTrue(int(validated.header("age")[0]) < 10, validated.header("age"))
        self.assertTrue(int(third.header("age")[0]) < 10, third.header("age"))
        self.assertEqual(
            self.tags(), ["TCP_MISS/200", "TCP_REFRESH_UNMODIFIED/200", "TCP_MEM_HIT/200"]
        )

    async def test_huge_age_is_stale(self) -> None:
        """
        RFC 9111 §1.2.2: an Age of thousands of digits is 2^31 seconds:
        the response is relayed, stored stale and validated next time.
        """
        origin = self.scripted(
            [
                (
                    _ok(
                        b"Cache-Control: max-age=3600\r\nAge: "
                        + b"9" * 5000
                        + b'\r\nETag: "h"\r\n',
                        b"h",
                    ),
                    False,
                ),
                (b'HTTP/1.1 304 Not Modified\r\nETag: "h"\r\n\r\n', False),
            ]
        )
        first = await self.fetch("GET", origin.url("/huge"))
        second = await self.fetch("GET", origin.url("/huge"))
        self.assertEqual([first.status, first.body, second.body], [200, b"h", b"h"])
        self.assertIn(b'If-None-Match: "h"', origin.heads[1])

    async def test_304_with_another_validator_is_retried(self) -> None:
        """
        RFC 9111 §4.3.4: a 304 whose ETag selects no stored response is not
        relayed to a client that asked no conditional question: the request
        is repeated without conditionals and that answer relayed (and
        stored).
        """
        origin = self.scripted(
            [
                (_ok(b'Cache-Control: max-age=0\r\nETag: "a"\r\n', b"old"), False),
                (b'HTTP/1.1 304 Not Modified\r\nETag: "b"\r\n\r\n', False),
                (_ok(b'Cache-Control: max-age=60\r\nETag: "b"\r\n', b"new"), False),
            ]
        )
        await self.fetch("GET", origin.url("/r"))
        answer = await self.fetch("GET", origin.url("/r"))
        after = await self.fetch("GET", origin.url("/r"))
        self.assertEqual((answer.status, answer.body, after.body), (200, b"new", b"new"))
        self.assertIn(b'If-None-Match: "a"', origin.heads[1])
        self.assertNotIn(b"if-none-match", origin.heads[2].lower())
        self.assertEqual(len(origin.heads), 3)
        self.assertEqual(after.header("x-cache"), ["HIT from squeak.test"])

    async def _origin_goes_away(
        self, fields: bytes, headers: dict[str, str] | None = None
    ) -> _Answer:
        """
        Store a stale response, stop the origin (connections are then
        refused) and ask again.
        """
        origin = self.scripted([(_ok(fields, b"stored"), True)])
        url = origin.url("/gone")
        await self.fetch("GET", url)
        await origin.port.stopListening()
        return await self.fetch("GET", url, headers=headers)

    async def test_unreachable_origin_serves_stale(self) -> None:
        """
        RFC 9111 §4.2.4: when the origin cannot be reached, a stale
        response is served (logged TCP_REFRESH_FAIL_OLD).
        """
        answer = await self._origin_goes_away(b'Cache-Control: max-age=0\r\nETag: "s"\r\n')
        self.assertEqual((answer.status, answer.body), (200, b"stored"))
        self.assertEqual(answer.header("x-cache"), ["HIT from squeak.test"])
        self.assertEqual(self.tags(), ["TCP_MISS/200", "TCP_REFRESH_FAIL_OLD/200"])

    async def test_unreachable_origin_must_revalidate(self) -> None:
        """
        RFC 9111 §5.2.2.2: must-revalidate forbids serving it stale: the
        error page.
        """
        answer = await self._origin_goes_away(b"Cache-Control: max-age=0, must-revalidate\r\n")
        self.assertEqual(answer.status, 502)
        self.assertNotEqual(answer.body, b"stored")
        self.assertEqual(self.tags(), ["TCP_MISS/200", "TCP_REFRESH_FAIL_ERR/502"])

    async def test_unreachable_origin_request_no_cache(self) -> None:
        """
        RFC 9111 §5.2.1.4: a request that asks for validation (no-cache)
        gets the error page, not the stale response.
        """
        answer = await self._origin_goes_away(
            b"Cache-Control: max-age=0\r\n", headers={"Cache-Control": "no-cache"}
        )
        self.assertEqual(answer.status, 502)

    async def test_server_error_on_validation_serves_stale(self) -> None:
        """
        RFC 9111 §4.3.3: a 5xx answer to a validation may be treated as no
        answer: the stale response is served (§4.2.4), logged
        TCP_REFRESH_FAIL_OLD; with must-revalidate the 5xx is relayed,
        logged TCP_REFRESH_FAIL_ERR (Squid's names).
        """
        error = b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"
        origin = self.scripted(
            [
                (_ok(b'Cache-Control: max-age=0\r\nETag: "e"\r\n', b"stored"), False),
                (error, False),
                (
                    _ok(b'Cache-Control: max-age=0, must-revalidate\r\nETag: "e"\r\n', b"strict"),
                    False,
                ),
                (error, False),
            ]
        )
        await self.fetch("GET", origin.url("/e"))
        stale = await self.fetch("GET", origin.url("/e"))
        await self.fetch("GET", origin.url("/m"))
        relayed = await self.fetch("GET", origin.url("/m"))
        self.assertEqual((stale.status, stale.body), (200, b"stored"))
        self.assertEqual((relayed.status, relayed.body), (500, b"oops"))
        self.assertEqual(
            self.tags(),
            [
                "TCP_MISS/200",
                "TCP_REFRESH_FAIL_OLD/200",
                "TCP_MISS/200",
                "TCP_REFRESH_FAIL_ERR/500",
            ],
        )


class FailingOriginBoundsTests(_CacheTestCase):
    """
    Stale on failure with short timeouts and no staleness allowed beyond
    the explicit (C{[cache] max_stale = 0}).
    """

    config_overrides = {"timeouts": {"connect": 0.5, "read": 0.5}, "cache": {"max_stale": 0.0}}
    scripted = OriginAnswersTests.scripted
    tags = OriginAnswersTests.tags

    async def test_silent_origin_and_max_stale(self) -> None:
        """
        RFC 9111 §4.2.4 with C{max_stale = 0}: an origin that never
        answers the validation (a read timeout) makes a stale response
        without stale-if-error get the 504 page, logged
        TCP_REFRESH_FAIL_ERR; with C{stale-if-error} (RFC 5861 §4, within
        its window) it is served, logged TCP_REFRESH_FAIL_OLD.
        """
        origin = self.scripted(
            [
                (_ok(b'Cache-Control: max-age=0\r\nETag: "t"\r\n', b"plain"), True),
                (b"", False),
                (
                    _ok(b'Cache-Control: max-age=0, stale-if-error=60\r\nETag: "u"\r\n', b"sie"),
                    True,
                ),
                (b"", False),
            ]
        )
        await self.fetch("GET", origin.url("/t"))
        timed_out = await self.fetch("GET", origin.url("/t"))
        await self.fetch("GET", origin.url("/u"))
        served = await self.fetch("GET", origin.url("/u"))
        self.assertEqual(timed_out.status, 504)
        self.assertEqual((served.status, served.body), (200, b"sie"))
        self.assertEqual(
            self.tags(),
            [
                "TCP_MISS/200",
                "TCP_REFRESH_FAIL_ERR/504",
                "TCP_MISS/200",
                "TCP_REFRESH_FAIL_OLD/200",
            ],
        )
