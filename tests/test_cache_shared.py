"""
One disk cache shared by several processes (issue 15 item 2): the
start-up sweep only where no other process uses the directory
(L{squeak.cache.diskindex}, L{squeak.cache.facade.sweep_disk_cache}), a
bounded wait for the index's lock (L{squeak.cache.disk.LOCK_TIMEOUT}), and
invalidations that reach every process's memory tier
(L{squeak.cache.generations}); in one process with two stores on one
directory, and with real twistd workers.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.facade import HttpCache, sweep_disk_cache
from squeak.cache.freshness import FreshnessRules
from squeak.cache.keys import primary_key
from squeak.cache.store import Store
from squeak.config import CacheConfig, Config, parse_config
from squeak.master import Master, SingleProcess
from squeak.net.listeners import bind_all
from tests.sloworigin import SlowOrigin, fetch
from tests.test_cache_faults import read_hit, store_body
from tests.test_drain import proxy_config, wait_for
from tests.test_master import _Reactor
from tests.twistdprocess import TwistdProxy


def _leftovers(directory: str) -> tuple[str, str]:
    """
    Plant what a crash leaves (or what another process is in the middle
    of): a part no writer holds, and a body file no index row names.
    """
    os.makedirs(os.path.join(directory, "parts"), exist_ok=True)
    part = os.path.join(directory, "parts", "dead.part")
    with open(part, "wb") as f:
        f.write(b"left by a crash")
    os.makedirs(os.path.join(directory, "ab"), exist_ok=True)
    body = os.path.join(directory, "ab", "0123456789abcdef.val")
    with open(body, "wb") as f:
        f.write(b"renamed into place, not yet indexed")
    return part, body


class SweepTests(SynchronousTestCase):
    """
    Only the start-up sweep deletes unindexed bodies and unheld parts; a
    store opened as workers and reloads open it keeps them.
    """

    def test_opened_from_config_does_not_sweep(self) -> None:
        """
        L{Store.from_config} (what every server and C{squeak purge} use)
        leaves an unindexed body and an unheld part alone: in another
        process, they may be an entry being committed.
        """
        directory = os.path.abspath(self.mktemp())
        Store(directory).close()
        part, body = _leftovers(directory)
        store = Store.from_config(CacheConfig(dir=directory))
        self.addCleanup(store.close)
        assert store.disk is not None
        self.assertEqual(
            (store.disk.swept, os.path.exists(part), os.path.exists(body)), (0, True, True)
        )

    def test_start_up_sweep(self) -> None:
        """
        L{sweep_disk_cache} deletes both, and keeps committed entries.
        """
        directory = os.path.abspath(self.mktemp())
        store = Store(directory, memory_size=0)
        self.assertTrue(store_body(store, "http://e/a", b"kept"))
        store.close()
        part, body = _leftovers(directory)
        swept = sweep_disk_cache(CacheConfig(dir=directory))
        store = Store.from_config(CacheConfig(dir=directory, memory_size=0))
        self.addCleanup(store.close)
        self.assertEqual(
            (
                swept,
                os.path.exists(part),
                os.path.exists(body),
                read_hit(store.lookup(primary_key(b"GET", "http://e/a"), [])),
            ),
            (2, False, False, b"kept"),
        )

    def test_sweep_with_the_cache_off(self) -> None:
        """With C{cache.enabled = false} nothing is opened or deleted."""
        directory = os.path.abspath(self.mktemp())
        self.assertEqual(sweep_disk_cache(CacheConfig(dir=directory, enabled=False)), 0)
        self.assertFalse(os.path.exists(directory))


class SupervisorSweepTests(SynchronousTestCase):
    """
    The master sweeps once, before it starts any worker; a reload's
    workers start on an unswept directory. The single process sweeps
    before it serves, once.
    """

    def _config(self, workers: int) -> tuple[Config, str]:
        directory = os.path.abspath(self.mktemp())
        config = parse_config(
            f'[proxy]\nhttp_port = ["127.0.0.1:0"]\nworkers = {workers}\n'
            f'[cache]\ndir = "{directory}"\n',
            "x.toml",
        )
        return config, directory

    def test_master(self) -> None:
        """
        At start-up the leftovers are gone before the first worker is
        spawned; at a reload, leftovers planted since are kept.
        """
        config, directory = self._config(2)
        part, body = _leftovers(directory)
        bound = bind_all(config, copies=2)
        self.addCleanup(bound.close)
        reactor = _Reactor()
        seen: list[bool] = []
        spawn = reactor.spawnProcess

        def spawning(*args: Any, **kwargs: Any) -> Any:
            seen.append(os.path.exists(part) or os.path.exists(body))
            return spawn(*args, **kwargs)

        reactor.spawnProcess = spawning  # type: ignore[method-assign]
        master = Master(reactor, None, config, "text", bound, executable="/bin/python")
        master.startService()
        part, body = _leftovers(directory)
        master.switch(config, "text")
        self.assertEqual(
            (seen, master.swept, os.path.exists(part), os.path.exists(body)),
            ([False, False, True, True], 2, True, True),
        )

    def test_single_process(self) -> None:
        """
        L{SingleProcess.prepare} sweeps before it builds what serves, and
        only the first time.
        """
        config, directory = self._config(1)
        part, body = _leftovers(directory)
        bound = bind_all(config, copies=1)
        self.addCleanup(bound.close)
        seen: list[bool] = []

        def build(config: Config, reactor: Any, sockets: Any) -> Any:
            seen.append(os.path.exists(part) or os.path.exists(body))
            tree = MultiService()
            tree.context = None  # type: ignore[attr-defined]
            return tree

        single = SingleProcess(MemoryReactorClock(), None, config, "", bound, build)
        single.prepare()
        part, body = _leftovers(directory)
        single.prepare()
        self.assertEqual(
            (seen, os.path.exists(part), os.path.exists(body)), ([False, True], True, True)
        )


class LockTimeoutTests(SynchronousTestCase):
    """
    Another process holding the index's write lock costs a lookup its
    access-time bump and a store its entry, never more than a bounded wait.
    """

    #: Far above the lock timeout (0.05 s), far below diskcache's 60 s.
    bound = 2.0

    def _hold_lock(self, directory: str) -> sqlite3.Connection:
        """Take the index's write lock on a connection of its own, as another worker would."""
        holder = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        def release() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        self.addCleanup(release)
        return holder

    def test_lookup_and_store_while_locked(self) -> None:
        """
        With the lock held elsewhere, a disk lookup (which would bump the
        entry's access time) and a store each return within the bound:
        the lookup is still a hit (reads do not need the lock), the store
        is skipped, and each cause is logged once, naming the lock.
        """
        directory = os.path.abspath(self.mktemp())
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        self.assertTrue(store_body(store, "http://e/a", b"stored before"))
        self._hold_lock(directory)
        started = time.monotonic()
        body = read_hit(store.lookup(primary_key(b"GET", "http://e/a"), []))
        looked_up = time.monotonic() - started
        started = time.monotonic()
        stored = store_body(store, "http://e/b", b"not stored")
        committed = time.monotonic() - started
        self.assertEqual(
            (body, looked_up < self.bound, stored, committed < self.bound),
            (b"stored before", True, False, True),
        )
        causes = sorted(what for what, _ in store.faults.counts)
        self.assertEqual(causes, ["commit an entry", "update an access time"])

    def test_many_hits_while_locked_wait_once(self) -> None:
        """
        Hits on many entries while the lock is held elsewhere wait for it
        once, not once per entry: their access times are noted and written
        together (L{squeak.cache.disk.DiskTier.flush_access_times}), and
        once the lock is free they reach the index.
        """
        directory = os.path.abspath(self.mktemp())
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        uris = [f"http://e/{i}" for i in range(20)]
        for uri in uris:
            self.assertTrue(store_body(store, uri, b"body"))
        assert store.disk is not None
        read_hit(store.lookup(primary_key(b"GET", uris[0]), []))  # the first flush
        holder = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        wall = time.time()
        started = time.monotonic()
        bodies = [read_hit(store.lookup(primary_key(b"GET", uri), [])) for uri in uris[1:]]
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
        holder.close()
        store.disk.flush_access_times()
        ((bumped,),) = store.disk._cache._sql(
            "SELECT COUNT(*) FROM Cache WHERE access_time >= ?", (wall,)
        ).fetchall()
        # 19 times the lock timeout (0.05 s) if each hit waited; each entry's
        # row and its Vary row bumped.
        self.assertEqual((bodies, elapsed < 0.5, bumped), ([b"body"] * 19, True, 2 * 19))

    def test_lookup_after_the_lock_is_released(self) -> None:
        """
        Once the lock is released, the entry that could not be stored is
        stored by the next response: nothing stays stuck.
        """
        directory = os.path.abspath(self.mktemp())
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        holder = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        self.assertFalse(store_body(store, "http://e/b", b"later"))
        holder.execute("ROLLBACK")
        holder.close()
        self.assertTrue(store_body(store, "http://e/b", b"later"))
        self.assertEqual(read_hit(store.lookup(primary_key(b"GET", "http://e/b"), [])), b"later")


class SharedInvalidationTests(SynchronousTestCase):
    """
    Two stores on one directory, as two workers: a purge or an invalidation
    in one reaches the other's memory tier at once.
    """

    def _pair(self) -> tuple[Store, Store]:
        directory = os.path.abspath(self.mktemp())
        first, second = Store(directory), Store(directory, sweep=False)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        return first, second

    def test_purge_reaches_the_other_memory_tier(self) -> None:
        """
        An entry in both memory tiers, purged through one: the other no
        longer serves it.
        """
        first, second = self._pair()
        key = primary_key(b"GET", "http://e/a")
        self.assertTrue(store_body(first, "http://e/a", b"old"))
        self.assertEqual(read_hit(second.lookup(key, [])), b"old")
        self.assertEqual(second.lookup(key, []).tier, "memory")  # type: ignore[union-attr]
        first.purge("http://e/a")
        self.assertEqual((second.lookup(key, []), len(second.memory)), (None, 0))

    def test_invalidation_then_new_copy(self) -> None:
        """
        After an unsafe request invalidated the URI in one, the other
        serves the copy stored after it, never the old one; other URLs'
        memory copies stay.
        """
        first, second = self._pair()
        key = primary_key(b"GET", "http://e/a")
        other = primary_key(b"GET", "http://e/other")
        self.assertTrue(store_body(first, "http://e/a", b"old"))
        self.assertTrue(store_body(first, "http://e/other", b"other"))
        read_hit(second.lookup(key, []))
        read_hit(second.lookup(other, []))
        first.invalidate("http://e/a")
        self.assertTrue(store_body(first, "http://e/a", b"new"))
        hit = second.lookup(other, [])
        self.assertEqual(
            (read_hit(second.lookup(key, [])), hit.tier if hit else None),
            (b"new", "memory"),
        )

    def test_freshening_reaches_the_other_memory_tier(self) -> None:
        """
        A 304 freshens an entry through one store (L{Store.update}): the
        other drops its memory copy, with the old metadata, and reads the
        freshened one from the disk; the freshening store's own memory
        copy is the freshened one, and stays a memory hit.
        """
        first, second = self._pair()
        key = primary_key(b"GET", "http://e/a")
        self.assertTrue(store_body(first, "http://e/a", b"body"))
        read_hit(first.lookup(key, []))
        read_hit(second.lookup(key, []))
        hit = first.lookup(key, [])
        assert hit is not None
        hit.close()
        fresher = dataclasses.replace(hit.meta, response_time=hit.meta.response_time + 100)
        self.assertTrue(first.update(key, fresher))
        mine, theirs = first.lookup(key, []), second.lookup(key, [])
        assert mine is not None and theirs is not None
        self.assertEqual((mine.tier, mine.meta.response_time), ("memory", fresher.response_time))
        self.assertEqual((theirs.tier, theirs.meta.response_time), ("disk", fresher.response_time))
        self.assertEqual((read_hit(mine), read_hit(theirs)), (b"body", b"body"))


class SharedFetchTests(SynchronousTestCase):
    """
    Two caches on one directory, as two workers: a miss led in one makes
    the other's requests wait for it (polled, bounded), not fetch.
    """

    def setUp(self) -> None:
        self.patch(Store, "shared_between_processes", True)  # as in workers
        directory = os.path.abspath(self.mktemp())
        rules = FreshnessRules.from_config(CacheConfig(dir=directory))
        self.first = HttpCache(Store(directory), rules)
        self.second = HttpCache(Store(directory, sweep=False), rules)
        self.addCleanup(self.first.close)
        self.addCleanup(self.second.close)
        assert self.second.store is not None and self.second.store.markers is not None
        # Another worker: another (live) PID than this process's.
        self.second.store.markers.pid = os.getppid()
        self.clock = Clock()

    def _join(self, cache: HttpCache, uri: str = "http://e/a") -> tuple[object, bool]:
        lookup = cache.lookup(b"GET", uri, [], "127.0.0.1", 0.0)
        assert lookup is not None
        joined = cache.join_fetch(lookup, self.clock.callLater)
        assert joined is not None
        return joined

    def test_follower_in_another_worker_waits_for_the_leader(self) -> None:
        """
        The second worker's first request for a URL the first is fetching
        does not lead: it waits until the leader's fetch ends (its marker
        goes), then looks in the cache; the next fetch there leads again.
        """
        leading, leader = self._join(self.first)
        waiting, follower_leads = self._join(self.second)
        self.clock.advance(1.0)
        still_waiting = not waiting.done  # type: ignore[attr-defined]
        leading.finish(complete=True)  # type: ignore[attr-defined]
        self.clock.advance(0.1)
        _, leads_later = self._join(self.second)
        self.assertEqual(
            (leader, follower_leads, still_waiting, waiting.done, leads_later),  # type: ignore[attr-defined]
            (True, False, True, True, True),
        )

    def test_the_wait_is_bounded(self) -> None:
        """
        A leader that never reports holds the others at most its lease,
        then they go on (and fetch).
        """
        self._join(self.first)
        waiting, _ = self._join(self.second)
        assert self.second.store is not None and self.second.store.markers is not None
        polls = int(self.second.store.markers.lease / 0.05)
        self.clock.pump([0.05] * (polls - 20))
        before = waiting.done  # type: ignore[attr-defined]
        self.clock.pump([0.05] * 40)
        self.assertEqual((before, waiting.done), (False, True))  # type: ignore[attr-defined]

    def test_dead_leader_marker_is_ignored(self) -> None:
        """
        A marker left by a process that is gone (a crashed worker) does not
        hold anyone: the next request leads.
        """
        assert self.second.store is not None and self.second.store.markers is not None
        markers = self.second.store.markers
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait(timeout=30)
        with open(markers.path(primary_key(b"GET", "http://e/a")), "w") as f:
            f.write(f"{child.pid} {time.time() + 3600:.3f}\n")
        _, leads = self._join(self.second)
        self.assertTrue(leads)

    def test_single_process_marks_nothing(self) -> None:
        """
        With one process (C{workers = 1}, the default), a miss makes no
        marker file: nobody else could wait on it.
        """
        self.patch(Store, "shared_between_processes", False)
        store = Store(os.path.abspath(self.mktemp()))
        self.addCleanup(store.close)
        self.assertIsNone(store.markers)

    def test_purge_releases_another_workers_marker(self) -> None:
        """
        PURGE unsticks a URL whichever worker leads its fetch.
        """
        self._join(self.first)
        self.second.purge("http://e/a")
        _, leads = self._join(self.second)
        self.assertTrue(leads)


def _purge(port: int, url: str) -> bytes:
    """Send PURGE for C{url} through the proxy; the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        host = url.split("/")[2]
        sock.sendall(f"PURGE {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
        return data.split(b"\r\n", 1)[0]


class SharedCacheWorkerTests(SynchronousTestCase):
    """
    C{workers = 2} with a real twistd: the master sweeps before the
    workers start, a worker started later does not, and a PURGE through
    one worker reaches the other's memory tier.
    """

    timeout = 90

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.cache = self.directory / "cache"
        self.cache.mkdir(parents=True)
        self.part, self.body = _leftovers(str(self.cache))
        self.proxy = TwistdProxy(proxy_config(self.directory, workers=2, lifetime="5s")).start()
        self.addCleanup(self.proxy.stop)
        self.assertTrue(wait_for(self.proxy, r"worker \d+: .*squeak listening on", count=2))

    def _until_both(self, url: str, times: int = 2, tries: int = 200) -> dict[str, list[str]]:
        """
        Fetch C{url} until each worker answered it C{times} times
        (bounded); each worker's C{X-Origin-Request} values.
        """
        seen: dict[str, list[str]] = {}
        for _ in range(tries):
            status, fields, _ = fetch(self.proxy.port, url)
            self.assertEqual(status, 200)
            seen.setdefault(fields["x-squeak-worker"], []).append(fields["x-origin-request"])
            if len(seen) == 2 and all(len(v) >= times for v in seen.values()):
                return seen
        raise AssertionError(f"both workers did not answer: {seen}")

    def test_master_sweeps_workers_do_not(self) -> None:
        """
        What a crash left is gone once the workers serve (the master swept
        it); a body renamed into place afterwards, not yet indexed, survives
        a worker starting (one replacing a killed worker).
        """
        self.assertEqual((os.path.exists(self.part), os.path.exists(self.body)), (False, False))
        self.assertIn("deleted 2 files a crash left", self.proxy.output)
        _, body = _leftovers(str(self.cache))
        pids = set(self._until_both(self.origin.url("/body/10"), times=1))
        os.kill(int(sorted(pids)[0]), signal.SIGKILL)
        self.assertTrue(wait_for(self.proxy, r"worker \d+: .*squeak listening on", count=3))
        self.assertTrue(os.path.exists(body))

    def test_one_origin_fetch_across_workers(self) -> None:
        """
        100 simultaneous requests for one uncached, cacheable URL, spread
        over both workers, reach the origin once.
        """
        url = self.origin.url("/cacheable/20000/1.5")
        results: list[tuple[int, str]] = []
        lock = threading.Lock()

        def one() -> None:
            status, fields, _ = fetch(self.proxy.port, url, timeout=30)
            with lock:
                results.append((status, fields.get("x-squeak-worker", "")))

        threads = [threading.Thread(target=one, daemon=True) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=40)
        statuses = {status for status, _ in results}
        self.assertEqual(
            (len(results), statuses, self.origin.paths.count("/cacheable/20000/1.5")),
            (100, {200}, 1),
        )
        self.assertEqual(len({pid for _, pid in results}), 2)

    def test_purge_reaches_both_workers(self) -> None:
        """
        A URL in both workers' memory tiers, purged through one: neither
        answers with the old copy afterwards.
        """
        url = self.origin.url("/cacheable/100")
        status, fields, _ = fetch(self.proxy.port, url)
        self.assertEqual(status, 200)
        old = fields["x-origin-request"]
        before = self._until_both(url)
        self.assertEqual({v for values in before.values() for v in values}, {old})
        self.assertIn(b" 200", _purge(self.proxy.port, url))
        after = self._until_both(url, times=2)
        self.assertNotIn(old, {v for values in after.values() for v in values})
