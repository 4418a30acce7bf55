# -*- test-case-name: tests.test_cache_store -*-
"""
Tests for the cache store: L{squeak.cache.memory}, L{squeak.cache.disk} and
L{squeak.cache.store}, including a SIGKILL in the middle of storing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.keys import primary_key, secondary_key, vary_fields
from squeak.cache.memory import MemoryTier
from squeak.cache.policy import StoredResponse
from squeak.cache.store import CacheHit, CollapsedForwarding, Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def meta(
    uri: str = "http://example.com/",
    headers: tuple[tuple[bytes, bytes], ...] = ((b"Cache-Control", b"max-age=60"),),
    request_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> StoredResponse:
    """Metadata for a stored 200 response to a request with C{request_headers}."""
    vary_key = secondary_key(vary_fields(headers), request_headers) or ""
    return StoredResponse(uri, 200, b"OK", headers, 1.0, 2.0, vary_key)


def body_of(hit: CacheHit | None) -> bytes | None:
    """Read a hit's whole body and close it."""
    if hit is None:
        return None
    try:
        return b"".join(hit.chunks(7))
    finally:
        hit.close()


class MemoryTierTests(SynchronousTestCase):
    """
    Tests for L{MemoryTier}.
    """

    def test_lru_eviction(self) -> None:
        """
        Beyond the budget the least recently used entry goes first.
        """
        tier = MemoryTier(max_bytes=3 * 1200, max_object_size=1000)
        for name in "abc":
            tier.put(name, meta(), b"x" * 500)
        tier.get("a", [])
        tier.put("d", meta(), b"x" * 500)
        self.assertEqual(
            [tier.get(name, []) is not None for name in "abcd"], [True, False, True, True]
        )
        self.assertLessEqual(tier.size, tier.max_bytes)

    def test_object_size_limit(self) -> None:
        """
        Bodies above the per-object limit are not kept; a disabled tier keeps nothing.
        """
        self.assertEqual(
            [
                MemoryTier(10000, 100).put("a", meta(), b"x" * 101),
                MemoryTier(0, 100).put("a", meta(), b"x"),
                MemoryTier(10000, 100).put("a", meta(), b"x" * 100),
            ],
            [False, False, True],
        )

    def test_vary_variants(self) -> None:
        """
        RFC 9111 §4.1: variants of one URI are found by their Vary fields.
        """
        tier = MemoryTier(10000, 1000)
        headers = ((b"Vary", b"Accept-Language"),)
        tier.put("a", meta(headers=headers, request_headers=((b"Accept-Language", b"en"),)), b"en")
        tier.put("a", meta(headers=headers, request_headers=((b"Accept-Language", b"fr"),)), b"fr")
        found = [tier.get("a", [(b"accept-language", lang)]) for lang in (b"fr", b"en", b"de")]
        self.assertEqual([e.body if e else None for e in found], [b"fr", b"en", None])
        self.assertEqual((tier.remove("a"), len(tier), tier.size), (2, 0, 0))


class StoreTests(SynchronousTestCase):
    """
    Tests for L{Store} over a real directory.
    """

    def open(self, **kwargs: int) -> Store:
        """Open a store in a fresh directory, closed at cleanup."""
        store = Store(self.mktemp(), **kwargs)
        self.addCleanup(store.close)
        return store

    def store_body(
        self, store: Store, uri: str, body: bytes, m: StoredResponse | None = None
    ) -> bool:
        """Write and commit one entry in chunks."""
        writer = store.writer(primary_key(b"GET", uri), m or meta(uri))
        for start in range(0, len(body), 1000):
            writer.write(body[start : start + 1000])
        return writer.commit(len(body))

    def test_round_trip_disk(self) -> None:
        """
        A committed body is read back from disk as a stream, with its metadata.
        """
        store = self.open(memory_size=0)
        body = os.urandom(100_000)
        self.assertTrue(self.store_body(store, "http://e/a", body))
        hit = store.lookup(primary_key(b"HEAD", "http://e/a"), [])
        assert hit is not None
        self.assertEqual((hit.tier, hit.meta.body_length, hit.meta.status), ("disk", 100_000, 200))
        self.assertEqual(body_of(hit), body)

    def test_memory_tier_first(self) -> None:
        """
        A small body is served from memory, a large one from disk.
        """
        store = self.open(maximum_object_size_in_memory=1000)
        self.store_body(store, "http://e/small", b"s" * 1000)
        self.store_body(store, "http://e/large", b"l" * 1001)
        tiers = [
            store.lookup(primary_key(b"GET", u), []) for u in ("http://e/small", "http://e/large")
        ]
        self.assertEqual([h.tier if h else None for h in tiers], ["memory", "disk"])
        self.assertEqual([body_of(h) for h in tiers], [b"s" * 1000, b"l" * 1001])

    def test_survives_reopen(self) -> None:
        """
        Entries persist across a restart, and a small disk hit is promoted to memory.
        """
        directory = self.mktemp()
        store = Store(directory)
        self.store_body(store, "http://e/a", b"abc")
        store.close()
        store = Store(directory)
        self.addCleanup(store.close)
        first = store.lookup(primary_key(b"GET", "http://e/a"), [])
        second = store.lookup(primary_key(b"GET", "http://e/a"), [])
        self.assertEqual(
            [(h.tier, body_of(h)) if h else None for h in (first, second)],
            [("disk", b"abc"), ("memory", b"abc")],
        )

    def test_short_body_not_stored(self) -> None:
        """
        A body shorter than promised is never stored, and its part is deleted.
        """
        store = self.open()
        writer = store.writer(primary_key(b"GET", "http://e/a"), meta())
        writer.write(b"x" * 10)
        self.assertFalse(writer.commit(11))
        self.assertEqual(
            (
                store.lookup(primary_key(b"GET", "http://e/a"), []),
                os.listdir(store.disk.parts_directory),
                writer.failed,
            ),
            (None, [], "body has 10 bytes, expected 11"),
        )

    def test_abort(self) -> None:
        """
        An aborted write leaves nothing behind.
        """
        store = self.open()
        writer = store.writer(primary_key(b"GET", "http://e/a"), meta())
        writer.write(b"x")
        writer.abort()
        self.assertFalse(writer.commit(1))
        self.assertEqual(
            (
                store.lookup(primary_key(b"GET", "http://e/a"), []),
                os.listdir(store.disk.parts_directory),
            ),
            (None, []),
        )

    def test_object_size_limits(self) -> None:
        """
        maximum_object_size and minimum_object_size bound what is stored.
        """
        store = self.open(maximum_object_size=100, minimum_object_size=10)
        results = [
            self.store_body(store, "http://e/big", b"x" * 101),
            self.store_body(store, "http://e/small", b"x" * 9),
            self.store_body(store, "http://e/ok", b"x" * 100),
        ]
        self.assertEqual(
            (
                results,
                store.may_store_length(101),
                store.may_store_length(None),
                os.listdir(store.disk.parts_directory),
            ),
            ([False, False, True], False, True, []),
        )

    def test_eviction(self) -> None:
        """
        Past the size limit, least recently used entries are evicted.
        """
        store = self.open(size=3 * 2**20, memory_size=0)
        for i in range(8):
            self.store_body(store, f"http://e/{i}", b"x" * 2**19)
        self.assertLessEqual(store.disk.volume(), 3 * 2**20)
        present = [
            store.lookup(primary_key(b"GET", f"http://e/{i}"), []) is not None for i in range(8)
        ]
        self.assertEqual(present[-1], True)
        self.assertIn(False, present)

    def test_vary(self) -> None:
        """
        RFC 9111 §4.1: variants are stored and found by their Vary fields.
        """
        store = self.open(memory_size=0)
        headers = ((b"Vary", b"Accept-Encoding"),)
        for coding in (b"gzip", b"br"):
            m = meta("http://e/v", headers, ((b"Accept-Encoding", coding),))
            self.store_body(store, "http://e/v", coding, m)
        pk = primary_key(b"GET", "http://e/v")
        got = [
            body_of(store.lookup(pk, [(b"Accept-Encoding", c)])) for c in (b"gzip", b"br", b"x")
        ]
        self.assertEqual(got, [b"gzip", b"br", None])

    def test_purge_and_invalidate(self) -> None:
        """
        purge and invalidate remove every variant from both tiers.
        """
        store = self.open()
        self.store_body(store, "http://e/a", b"a")
        self.store_body(store, "http://e/b", b"b")
        results = [
            store.purge("HTTP://E/a"),
            store.purge("http://e/a"),
            store.invalidate("http://e/b"),
        ]
        pks = [primary_key(b"GET", u) for u in ("http://e/a", "http://e/b")]
        self.assertEqual(
            (results, [store.lookup(pk, []) for pk in pks]), ([True, False, True], [None, None])
        )

    def test_update(self) -> None:
        """
        RFC 9111 §4.3.4: freshened metadata replaces the stored metadata and
        keeps the body, in memory and on disk.
        """
        directory = self.mktemp()
        store = Store(directory)
        self.store_body(store, "http://e/a", b"body")
        pk = primary_key(b"GET", "http://e/a")
        hit = store.lookup(pk, [])
        assert hit is not None
        newer = dataclasses.replace(hit.meta, response_time=99.0, headers=((b"X", b"1"),))
        self.assertTrue(store.update(pk, newer))
        memory_hit = store.lookup(pk, [])
        store.close()
        store = Store(directory)
        self.addCleanup(store.close)
        disk_hit = store.lookup(pk, [])
        got = [
            (h.meta.response_time, h.meta.headers, h.meta.body_length, body_of(h))
            for h in (memory_hit, disk_hit)
            if h
        ]
        self.assertEqual(got, [(99.0, ((b"X", b"1"),), 4, b"body")] * 2)

    def test_replace(self) -> None:
        """
        A new response for the same key replaces the old one and its file.
        """
        store = self.open(memory_size=0)
        self.store_body(store, "http://e/a", b"old")
        self.store_body(store, "http://e/a", b"new!")
        files = [f for _, _, fs in os.walk(store.disk.directory) for f in fs if f.endswith(".val")]
        self.assertEqual(
            (body_of(store.lookup(primary_key(b"GET", "http://e/a"), [])), len(files)),
            (b"new!", 1),
        )

    def test_truncated_body_file_not_served(self) -> None:
        """
        A body file whose length disagrees with the index is dropped, not served.
        """
        store = self.open(memory_size=0)
        self.store_body(store, "http://e/a", b"x" * 100)
        pk = primary_key(b"GET", "http://e/a")
        hit = store.disk.get(pk, [])
        assert hit is not None
        hit.file.close()
        os.truncate(hit.path, 50)
        self.assertEqual((store.lookup(pk, []), store.lookup(pk, [])), (None, None))

    def test_leftovers_swept_at_open(self) -> None:
        """
        Part files no writer holds and bodies no index row names are deleted
        when the store opens; a part a live writer holds is kept.
        """
        directory = self.mktemp()
        store = Store(directory)
        self.store_body(store, "http://e/a", b"kept")
        live = store.writer(primary_key(b"GET", "http://e/live"), meta())
        live.write(b"in progress")
        with open(os.path.join(store.disk.parts_directory, "dead.part"), "wb") as f:
            f.write(b"left by a crash")
        os.makedirs(os.path.join(directory, "ab", "cd"))
        with open(os.path.join(directory, "ab", "cd", "orphan.val"), "wb") as f:
            f.write(b"renamed, never indexed")
        reopened = Store(directory)
        self.addCleanup(reopened.close)
        self.assertEqual(
            (
                reopened.disk.swept,
                len(os.listdir(store.disk.parts_directory)),
                body_of(reopened.lookup(primary_key(b"GET", "http://e/a"), [])),
            ),
            (2, 1, b"kept"),
        )
        live.abort()
        store.close()


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from squeak.cache.keys import primary_key
    from squeak.cache.policy import StoredResponse
    from squeak.cache.store import Store

    store = Store({directory!r}, memory_size=0)
    mode = sys.argv[1]
    i = 0
    while True:
        uri = "http://e/%d" % i
        body = (b"%d;" % i) * 20000
        m = StoredResponse(uri, 200, b"OK", (), 1.0, 2.0, "")
        writer = store.writer(primary_key(b"GET", uri), m)
        half = len(body) // 2
        writer.write(body[:half])
        if mode == "mid-write" and i == 3:
            print("writing", flush=True)
            time.sleep(60)
        writer.write(body[half:])
        writer.commit(len(body))
        print(i, flush=True)
        i += 1
    """
)


class CrashTests(SynchronousTestCase):
    """
    A process killed with SIGKILL while storing leaves a cache that opens
    cleanly and serves no partial object.
    """

    timeout = 60

    def run_and_kill(self, mode: str, lines: int) -> str:
        """Run the child writer, SIGKILL it after C{lines} lines of output."""
        directory = os.path.abspath(self.mktemp())
        script = _CHILD.format(root=ROOT, directory=directory)
        child = subprocess.Popen(
            [sys.executable, "-c", script, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None
        try:
            for _ in range(lines):
                if not child.stdout.readline():
                    self.fail(child.stderr.read().decode() if child.stderr else "child died")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            child.stdout.close()
            if child.stderr:
                child.stderr.close()
        return directory

    def check_complete(self, directory: str) -> tuple[int, int, list[str]]:
        """Reopen the cache and check every entry it serves is complete."""
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        found, partial = 0, 0
        for i in range(10_000):
            hit = store.lookup(primary_key(b"GET", f"http://e/{i}"), [])
            if hit is None:
                if i > found + 5:
                    break
                continue
            found += 1
            if body_of(hit) != (b"%d;" % i) * 20000:
                partial += 1
        return found, partial, os.listdir(store.disk.parts_directory)

    def test_sigkill_mid_write(self) -> None:
        """
        Killed with half a body written: the entries committed before are
        whole, the one being written is absent, its part is swept.
        """
        directory = self.run_and_kill("mid-write", 4)
        found, partial, parts = self.check_complete(directory)
        self.assertEqual((found, partial, parts), (3, 0, []))

    def test_sigkill_anywhere(self) -> None:
        """
        Killed at an arbitrary moment of a stream of commits (several runs):
        every entry served is complete.
        """
        for lines in (1, 7, 23):
            directory = self.run_and_kill("loop", lines)
            found, partial, parts = self.check_complete(directory)
            self.assertEqual((partial, parts), (0, []))
            self.assertGreaterEqual(found, lines)


class Listener:
    """A recording L{squeak.cache.store.TransientListener}."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def head_received(self, meta: StoredResponse) -> None:
        """Record the head."""
        self.events.append(("head", meta.status))

    def data_received(self, data: bytes) -> None:
        """Record body bytes."""
        self.events.append(("data", data))

    def finished(self, complete: bool) -> None:
        """Record the end."""
        self.events.append(("finished", complete))


class CollapsedForwardingTests(SynchronousTestCase):
    """
    Tests for L{CollapsedForwarding} and L{squeak.cache.store.Transient}.
    """

    def test_one_leader(self) -> None:
        """
        Concurrent misses for one key make one fetch: the first joiner leads.
        """
        registry = CollapsedForwarding()
        joined = [registry.join("k") for _ in range(100)]
        self.assertEqual(
            (sum(leader for _, leader in joined), len({id(t) for t, _ in joined}), len(registry)),
            (1, 1, 1),
        )

    def test_followers_share_the_stream(self) -> None:
        """
        Followers get the head (even if they join after it) and the body as
        it streams, then the end; the key is then free.
        """
        registry = CollapsedForwarding()
        transient, _ = registry.join("k")
        early, late, too_late = Listener(), Listener(), Listener()
        transient.subscribe(early)
        transient.head(meta(), shareable=True)
        transient.subscribe(late)
        transient.data(b"abc")
        refused = transient.subscribe(too_late)
        ended: list[bool] = []
        transient.on_finished(ended.append)
        transient.finish(complete=True)
        want = [("head", 200), ("data", b"abc"), ("finished", True)]
        self.assertEqual(
            (early.events, late.events, refused, too_late.events, ended, registry.get("k")),
            (want, want, False, [], [True], None),
        )

    def test_not_shareable(self) -> None:
        """
        A response that may not be shared (not cacheable) sends the followers
        to fetch for themselves, and frees the key.
        """
        registry = CollapsedForwarding()
        transient, _ = registry.join("k")
        follower = Listener()
        transient.subscribe(follower)
        transient.head(meta(), shareable=False)
        _, leader = registry.join("k")
        self.assertEqual((follower.events, leader), ([("finished", False)], True))

    def test_on_finished_after_end(self) -> None:
        """
        A callback added after the end is called at once, with failure.
        """
        registry = CollapsedForwarding()
        transient, _ = registry.join("k")
        transient.finish(complete=False)
        got: list[bool] = []
        transient.on_finished(got.append)
        self.assertEqual(got, [False])

    def test_release(self) -> None:
        """
        Releasing a key (PURGE) ends its fetch as incomplete, calls its
        waiters and frees the key for a new leader; the old leader's own
        finish is then a no-op.  Releasing a key with no fetch is nothing.
        """
        registry = CollapsedForwarding()
        transient, _ = registry.join("k")
        ended: list[bool] = []
        transient.on_finished(ended.append)
        released = registry.release("k")
        _, leader = registry.join("k")
        transient.finish(complete=True)
        self.assertEqual(
            (released, ended, leader, registry.release("other")), (True, [False], True, False)
        )


class LockTests(SynchronousTestCase):
    """
    The part-file lock that tells live parts from leftovers.
    """

    def test_writer_holds_lock(self) -> None:
        """
        A live writer's part cannot be locked by anyone else.
        """
        store = Store(self.mktemp())
        self.addCleanup(store.close)
        writer = store.writer("GET http://e/", meta())
        self.addCleanup(writer.abort)
        (name,) = os.listdir(store.disk.parts_directory)
        fd = os.open(os.path.join(store.disk.parts_directory, name), os.O_RDONLY)
        self.addCleanup(os.close, fd)
        self.assertRaises(BlockingIOError, fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
