# -*- test-case-name: tests.test_cache_faults -*-
"""
The cache's own faults (issue 14 items 2, 3 and 6): a full or read-only
disk, a damaged index, row or body file, and the size limit. A cache is an
optimisation: when it fails, squeak goes on answering from the origin, logs
what went wrong once, and never serves a damaged object.

The full and read-only disks are real: a tmpfs of a few MiB mounted by the
test (root only; the tests say what is missing and skip otherwise). Faults
a file system cannot be asked for (an index that fails to commit, a write
error without a small file system) are injected into the store's own
objects.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import pickle
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web import resource, server

from squeak.cache.bodyfile import BLOCK_SIZE, CorruptBodyError, VerifiedBody
from squeak.cache.faults import FaultLog
from squeak.cache.keys import primary_key
from squeak.cache.policy import StoredResponse
from squeak.cache.store import CacheHit, Store
from tests.proxyharness import ProxyTestCase
from tests.twistdprocess import TwistdProxy

try:
    from twisted.internet.testing import EventLoggingObserver
except ImportError:  # pragma: no cover - older Twisted
    from twisted.test.proto_helpers import EventLoggingObserver  # type: ignore[no-redef]

MIB = 2**20


def meta(uri: str) -> StoredResponse:
    """Metadata for a stored 200 response, fresh for an hour."""
    return StoredResponse(uri, 200, b"OK", ((b"Cache-Control", b"max-age=3600"),), 1.0, 2.0, "")


def body_for(name: str, size: int) -> bytes:
    """A body unique to C{name}: blocks of its repeated SHA-256, then the size."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def store_body(store: Store, uri: str, body: bytes, chunk: int = 65536) -> bool:
    """Write and commit one entry in chunks, as the proxy does."""
    writer = store.writer(primary_key(b"GET", uri), meta(uri))
    for start in range(0, len(body), chunk):
        writer.write(body[start : start + chunk])
    return writer.commit(len(body))


def read_hit(hit: CacheHit | None) -> bytes | None:
    """A hit's whole body (closed after)."""
    if hit is None:
        return None
    try:
        return b"".join(hit.chunks(65536))
    finally:
        hit.close()


def cache_events(test: SynchronousTestCase) -> _Filtered:
    """The squeak.cache log events of a test, collected as they come."""
    observer = EventLoggingObserver.createWithCleanup(test, globalLogPublisher)
    return _Filtered(observer)


class _Filtered:
    """A live view of an observer's squeak.cache events."""

    def __init__(self, observer: Any) -> None:
        self._observer = observer

    def _events(self) -> list[dict[str, Any]]:
        return [e for e in self._observer if e.get("log_namespace") == "squeak.cache"]

    def __len__(self) -> int:
        return len(self._events())

    def __iter__(self) -> Any:
        return iter(self._events())

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._events()[index]

    def text(self) -> list[str]:
        return [formatEvent(e) for e in self._events()]


def small_filesystem(test: SynchronousTestCase, size: str) -> str:
    """
    Mount a tmpfs of C{size} (C{"30m"}) for the test and unmount it after.

    @raise SkipTest: Not root, or the kernel refuses the mount.
    """
    if os.geteuid() != 0:
        raise SkipTest("needs root to mount a small tmpfs (mount -t tmpfs -o size=...)")
    mountpoint = tempfile.mkdtemp(prefix="squeak-smallfs-")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mountpoint],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        os.rmdir(mountpoint)
        raise SkipTest(f"mount -t tmpfs refused here: {result.stderr.strip()}")

    def unmount() -> None:
        subprocess.run(["umount", "-l", mountpoint], check=False, timeout=30)
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)

    test.addCleanup(unmount)
    return mountpoint


def fill(directory: str) -> None:
    """Fill the file system holding C{directory} to the last byte."""
    block = b"\0" * 65536
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as filler:
        for _ in range(1_000_000):  # bounded: far more than any test's file system
            try:
                filler.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    for size in (4096, 512, 1):  # the last partial blocks
        with open(os.path.join(directory, f"filler-{size}"), "wb", buffering=0) as filler:
            for _ in range(1000):
                try:
                    filler.write(b"\0" * size)
                except OSError:
                    break


def du(directory: str) -> int:
    """The bytes of the blocks under C{directory}, as C{du} counts them."""
    total = 0
    for path, dirs, files in os.walk(directory):
        for name in dirs + files:
            total += os.lstat(os.path.join(path, name)).st_blocks * 512
    return total


def part_files(store_directory: str) -> list[str]:
    """The part files left in a cache directory."""
    parts = os.path.join(store_directory, "parts")
    return os.listdir(parts) if os.path.isdir(parts) else []


class _FailingFile:
    """A part file whose writes fail as a full disk's do (the injected fault)."""

    def __init__(self, real: Any, after: int) -> None:
        self._real = real
        self._left = after

    def write(self, data: bytes) -> int:
        if self._left < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return int(self._real.write(data))

    def flush(self) -> None:
        self._real.flush()

    def close(self) -> None:
        self._real.close()


class FaultLogTests(SynchronousTestCase):
    """
    L{FaultLog} logs each cause once, not once per request.
    """

    def test_once_per_cause(self) -> None:
        """
        A hundred failures of one cause log one line, with the path and the
        errno; another errno is another cause; after C{repeat_after} the
        cause is logged again with the count left out.
        """
        events = cache_events(self)
        now = [0.0]
        faults = FaultLog(clock=lambda: now[0])
        full = OSError(errno.ENOSPC, "No space left on device")
        for i in range(100):
            faults.report("write a body", f"/c/parts/{i}.part", full, "not stored")
        faults.report("write a body", "/c/parts/x.part", OSError(errno.EROFS, "Read-only"), "-")
        now[0] = faults.repeat_after + 1
        faults.report("write a body", "/c/parts/y.part", full, "not stored")
        lines = events.text()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("/c/parts/0.part: errno 28 ENOSPC: No space left on device", lines[0])
        self.assertIn("errno 30 EROFS", lines[1])
        self.assertIn("99 more since", lines[2])
        self.assertEqual(faults.counts[("write a body", "errno 28 ENOSPC")], 101)


class WriteFaultTests(SynchronousTestCase):
    """
    A store whose disk fails abandons the entry and raises nothing.
    """

    def test_injected_write_error_abandons_the_entry(self) -> None:
        """
        (Fault injected into the part file.) A write that fails with ENOSPC
        raises nothing: the part is removed, later writes are ignored,
        commit returns False, and one line is logged for many failures.
        """
        events = cache_events(self)
        directory = self.mktemp()
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        results = []
        for i in range(5):
            uri = f"http://e/{i}"
            writer = store.writer(primary_key(b"GET", uri), meta(uri))
            part = writer._part
            assert part is not None and part._file is not None
            part._file = _FailingFile(part._file, 100_000)  # type: ignore[assignment]
            for _ in range(4):
                writer.write(b"x" * 65536)
            results.append((writer.commit(4 * 65536), writer.failed))
        self.assertEqual(results, [(False, "cannot write a body: errno 28 ENOSPC")] * 5, results)
        self.assertEqual(part_files(directory), [])
        self.assertEqual(len(events), 1, events.text())
        self.assertIn(os.path.join(directory, "parts"), events.text()[0])
        self.assertIsNone(store.lookup(primary_key(b"GET", "http://e/0"), []))

    def test_injected_commit_error_is_absorbed(self) -> None:
        """
        (Fault injected into the index.) An index that fails to commit
        (SQLite's "database or disk is full") makes commit return False,
        with the part removed, instead of raising into the download.
        """
        events = cache_events(self)
        directory = self.mktemp()
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        assert store.disk is not None

        def full(*args: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        store.disk._commit = full  # type: ignore[method-assign]
        self.assertEqual(
            (store_body(store, "http://e/a", b"x" * 1000), part_files(directory), len(events)),
            (False, [], 1),
        )

    def test_write_error_on_a_full_filesystem(self) -> None:
        """
        (A real 2 MiB tmpfs.) A 3 MiB body does not fit: writing it raises
        nothing, the part file is removed, commit returns False, and the
        log says so once with the path and errno 28.
        """
        events = cache_events(self)
        directory = os.path.join(small_filesystem(self, "2m"), "cache")
        store = Store(directory, memory_size=0)
        self.addCleanup(store.close)
        stored = store_body(store, "http://e/big", b"x" * (3 * MIB))
        self.assertEqual((stored, part_files(directory)), (False, []))
        lines = events.text()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("errno 28 ENOSPC", lines[0])
        self.assertIn(os.path.join(directory, "parts"), lines[0])

    def test_a_full_filesystem_shrinks_the_cache(self) -> None:
        """
        (A real 6 MiB tmpfs under a 1 GiB cache.size.) Once the disk is
        found full, the cache keeps itself under what it held, so later
        entries are stored again (the older ones are evicted for them).
        """
        directory = os.path.join(small_filesystem(self, "6m"), "cache")
        store = Store(directory, memory_size=0, size=2**30)
        self.addCleanup(store.close)
        stored = [store_body(store, f"http://e/{i}", body_for(str(i), MIB)) for i in range(12)]
        self.assertIn(False, stored)
        assert store.disk is not None
        self.assertLess(store.disk.effective_limit, 6 * MIB)
        self.assertEqual(stored[-3:], [True, True, True])
        self.assertEqual(
            read_hit(store.lookup(primary_key(b"GET", "http://e/11"), [])), body_for("11", MIB)
        )

    def test_start_on_a_full_filesystem(self) -> None:
        """
        (A real 1 MiB tmpfs, filled.) The store opens without its disk
        tier, says so in one line, and works from memory.
        """
        events = cache_events(self)
        mountpoint = small_filesystem(self, "1m")
        fill(mountpoint)
        directory = os.path.join(mountpoint, "cache")
        store = Store(directory)
        self.addCleanup(store.close)
        self.assertIsNone(store.disk)
        self.assertTrue(store_body(store, "http://e/a", b"small"))
        self.assertEqual(read_hit(store.lookup(primary_key(b"GET", "http://e/a"), [])), b"small")
        lines = events.text()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("running with the memory cache only", lines[0])
        self.assertIn("no space left", lines[0])
        self.assertIn(directory, lines[0])

    def test_start_on_a_read_only_filesystem(self) -> None:
        """
        (A real tmpfs remounted read-only over an existing cache.) The
        store opens without its disk tier and says so in one line.
        """
        events = cache_events(self)
        mountpoint = small_filesystem(self, "4m")
        directory = os.path.join(mountpoint, "cache")
        Store(directory).close()
        subprocess.run(["mount", "-o", "remount,ro", mountpoint], check=True, timeout=30)
        store = Store(directory)
        self.addCleanup(store.close)
        self.assertEqual((store.disk, len(events)), (None, 1))
        self.assertIn("read-only file system", store.disk_error or "")


class DamageTests(SynchronousTestCase):
    """
    A damaged index, row or body is never served: moved aside, or a miss.
    """

    def open(self, directory: str | None = None, **kwargs: Any) -> Store:
        store = Store(directory or self.mktemp(), **kwargs)
        self.addCleanup(store.close)
        return store

    def test_garbage_index_is_moved_aside(self) -> None:
        """
        A C{cache.db} that is no database is renamed with a timestamp, a
        fresh index is made, and one line says so.
        """
        events = cache_events(self)
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "cache.db"), "wb") as index:
            index.write(os.urandom(64 * 1024))
        store = self.open(directory)
        assert store.disk is not None and store.disk.moved_aside is not None
        self.assertRegex(store.disk.moved_aside, r"cache\.db\.damaged-\d{8}T\d{6}Z$")
        self.assertTrue(os.path.exists(store.disk.moved_aside))
        self.assertTrue(store_body(store, "http://e/a", b"fresh"))
        lines = events.text()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("moved it aside", lines[0])

    def test_truncated_index_is_moved_aside(self) -> None:
        """
        A C{cache.db} cut in half is moved aside; the bodies it named are
        swept, and the fresh cache works.
        """
        directory = self.mktemp()
        store = Store(directory, memory_size=0)
        for i in range(200):
            store_body(store, f"http://e/{i}", body_for(str(i), 3000))
        store.close()
        index = os.path.join(directory, "cache.db")
        os.truncate(index, os.path.getsize(index) // 2)
        reopened = self.open(directory, memory_size=0)
        assert reopened.disk is not None
        self.assertIsNotNone(reopened.disk.moved_aside)
        self.assertEqual(reopened.disk.swept, 200)
        self.assertIsNone(reopened.lookup(primary_key(b"GET", "http://e/1"), []))
        self.assertTrue(store_body(reopened, "http://e/1", b"again"))

    def _entry_row(self, store: Store, uri: str) -> tuple[int, str]:
        """The rowid and body path of a stored entry."""
        assert store.disk is not None
        rows = store.disk._cache._sql(
            "SELECT rowid, filename FROM Cache WHERE filename IS NOT NULL"
        ).fetchall()
        ((rowid, filename),) = rows
        return rowid, os.path.join(store.disk.directory, filename)

    def test_unreadable_metadata_row_is_a_miss(self) -> None:
        """
        An entry row whose metadata is garbage is a miss and is removed;
        the URL can be stored again.
        """
        store = self.open(memory_size=0)
        store_body(store, "http://e/a", b"body")
        rowid, _ = self._entry_row(store, "http://e/a")
        assert store.disk is not None
        store.disk._cache._sql(
            "UPDATE Cache SET value = ? WHERE rowid = ?", (b"\x80garbage", rowid)
        )
        pk = primary_key(b"GET", "http://e/a")
        _, path = self._entry_row(store, "http://e/a")
        self.assertEqual((store.lookup(pk, []), os.path.exists(path)), (None, False))
        self.assertEqual(
            store.disk._cache._sql(
                "SELECT count(*) FROM Cache WHERE rowid = ?", (rowid,)
            ).fetchall(),
            [(0,)],
        )
        self.assertTrue(store_body(store, "http://e/a", b"body"))
        self.assertEqual(read_hit(store.lookup(pk, [])), b"body")

    def test_rows_of_the_previous_version_are_dropped_quietly(self) -> None:
        """
        An entry stored by the previous version (metadata version 1, no
        checksums) is a miss, removed with its body file, and is not logged
        as damage: it cannot be checked, so it is not served.
        """
        events = cache_events(self)
        store = self.open(memory_size=0)
        store_body(store, "http://e/a", b"body")
        rowid, path = self._entry_row(store, "http://e/a")
        m = meta("http://e/a")
        old = pickle.dumps(
            (1, m.uri, m.status, m.reason, m.headers, 1.0, 2.0, "", None, 4), protocol=5
        )
        assert store.disk is not None
        store.disk._cache._sql("UPDATE Cache SET value = ? WHERE rowid = ?", (old, rowid))
        pk = primary_key(b"GET", "http://e/a")
        self.assertEqual(
            (store.lookup(pk, []), os.path.exists(path), len(events)), (None, False, 0)
        )

    def test_directory_instead_of_a_body_file(self) -> None:
        """
        A directory where a body file should be is a miss, and is removed
        with its entry.
        """
        store = self.open(memory_size=0)
        store_body(store, "http://e/a", b"body")
        _, path = self._entry_row(store, "http://e/a")
        os.remove(path)
        os.makedirs(os.path.join(path, "inside"))
        pk = primary_key(b"GET", "http://e/a")
        self.assertEqual((store.lookup(pk, []), os.path.exists(path)), (None, False))
        self.assertTrue(store_body(store, "http://e/a", b"body"))
        self.assertEqual(read_hit(store.lookup(pk, [])), b"body")

    def test_damaged_small_body_is_a_miss(self) -> None:
        """
        A small body of the right length but the wrong content is a miss
        (it is read and checked whole before anything is served) and is
        removed.
        """
        store = self.open(memory_size=2**20)
        body = body_for("a", 5000)
        store_body(store, "http://e/a", body)
        store.memory.remove(primary_key(b"GET", "http://e/a"))
        _, path = self._entry_row(store, "http://e/a")
        with open(path, "r+b") as file:
            file.seek(2500)
            file.write(b"?")
        pk = primary_key(b"GET", "http://e/a")
        self.assertEqual((store.lookup(pk, []), store.lookup(pk, [])), (None, None))
        self.assertFalse(os.path.exists(path))

    def test_damaged_large_body_is_never_handed_out(self) -> None:
        """
        A large body damaged in its third block: the hit starts (the first
        block is good), every byte handed out is the stored one, and the
        read of the damaged block raises L{CorruptBodyError} before any of
        its bytes; the entry is removed. Damage in the first block is a
        plain miss.
        """
        store = self.open(memory_size=0)
        body = body_for("big", 5 * BLOCK_SIZE)
        store_body(store, "http://e/big", body)
        _, path = self._entry_row(store, "http://e/big")
        with open(path, "r+b") as file:
            file.seek(2 * BLOCK_SIZE + 10)
            file.write(b"?")
        pk = primary_key(b"GET", "http://e/big")
        hit = store.lookup(pk, [])
        assert hit is not None
        handed_out = b""
        with self.assertRaises(CorruptBodyError):
            for chunk in hit.chunks(BLOCK_SIZE):
                handed_out += chunk
        hit.close()
        self.assertEqual(handed_out, body[: 2 * BLOCK_SIZE])
        self.assertIsNone(store.lookup(pk, []))
        store_body(store, "http://e/big", body)
        _, path = self._entry_row(store, "http://e/big")
        with open(path, "r+b") as file:
            file.write(b"?")
        self.assertIsNone(store.lookup(pk, []))

    def test_checked_file_is_trusted_until_it_changes(self) -> None:
        """
        A body read and checked whole is trusted while its file is
        unchanged (no checksum work on later hits); a file changed since is
        checked again.
        """
        store = self.open(memory_size=0)
        body = body_for("t", 3 * BLOCK_SIZE)
        store_body(store, "http://e/t", body)
        pk = primary_key(b"GET", "http://e/t")
        trusted = []
        for _ in range(2):
            hit = store.lookup(pk, [])
            assert hit is not None and isinstance(hit.file, VerifiedBody)
            trusted.append(hit.file._trusted)
            self.assertEqual(read_hit(hit), body)
        _, path = self._entry_row(store, "http://e/t")
        time.sleep(0.01)
        with open(path, "r+b") as file:
            file.seek(BLOCK_SIZE + 1)
            file.write(b"?")
        hit = store.lookup(pk, [])
        assert hit is not None
        with self.assertRaises(CorruptBodyError):
            read_hit(hit)
        self.assertEqual(trusted, [False, True])

    def test_range_reads_check_their_blocks(self) -> None:
        """
        A read at any offset (a Range request) checks the block it lies in.
        """
        body = body_for("r", 3 * BLOCK_SIZE)
        sums = b"".join(
            struct.pack("<I", zlib.crc32(body[i : i + BLOCK_SIZE]))
            for i in range(0, len(body), BLOCK_SIZE)
        )
        damaged = bytearray(body)
        damaged[BLOCK_SIZE + 5] ^= 1
        path = self.mktemp()
        with open(path, "wb") as file:
            file.write(bytes(damaged))
        reader = VerifiedBody(open(path, "rb"), len(body), sums)  # noqa: SIM115
        self.addCleanup(reader.close)
        reader.seek(2 * BLOCK_SIZE + 7)
        self.assertEqual(reader.read(100), body[2 * BLOCK_SIZE + 7 : 2 * BLOCK_SIZE + 107])
        reader.seek(BLOCK_SIZE - 10)
        self.assertRaises(CorruptBodyError, reader.read, 20)


class SizeTests(SynchronousTestCase):
    """
    The size limit holds, eviction is least recently used without writes
    on lookups, and no single object empties the cache.
    """

    def open(self, **kwargs: Any) -> Store:
        store = Store(self.mktemp(), memory_size=0, **kwargs)
        self.addCleanup(store.close)
        return store

    def present(self, store: Store, uris: list[str]) -> list[bool]:
        found = []
        for uri in uris:
            hit = store.lookup(primary_key(b"GET", uri), [])
            found.append(hit is not None)
            if hit is not None:
                hit.close()
        return found

    def test_object_larger_than_the_cache_is_not_admitted(self) -> None:
        """
        An object larger than the cache is refused up front and while it is
        written, and evicts nothing.
        """
        store = self.open(size=4 * MIB)
        uris = [f"http://e/{i}" for i in range(3)]
        for uri in uris:
            store_body(store, uri, b"x" * 100_000)
        self.assertFalse(store.may_store_length(5 * MIB))
        self.assertFalse(store_body(store, "http://e/huge", b"h" * (5 * MIB)))
        self.assertEqual(self.present(store, uris), [True, True, True])

    def test_one_object_never_empties_the_cache(self) -> None:
        """
        The largest object admitted takes at most a quarter of the cache:
        storing one leaves most of the rest in place.
        """
        store = self.open(size=8 * MIB)
        uris = [f"http://e/{i}" for i in range(60)]
        for uri in uris:
            store_body(store, uri, b"x" * 100_000)
        assert store.disk is not None
        largest = store.disk.largest_object
        self.assertTrue(store_body(store, "http://e/large", b"l" * largest))
        self.assertFalse(store_body(store, "http://e/larger", b"l" * (largest + 1)))
        kept = self.present(store, uris).count(True)
        self.assertGreaterEqual(kept, 30, kept)
        self.assertTrue(self.present(store, ["http://e/large"])[0])

    def test_limit_holds_with_small_objects(self) -> None:
        """
        With 1 KiB objects, the cache's files (bodies, index, WAL,
        directories) stay within 3 % of the limit, as C{du} counts them.
        """
        store = self.open(size=8 * MIB)
        for i in range(3000):
            store_body(store, f"http://e/{i}", body_for(str(i), 1024))
        assert store.disk is not None
        used = du(store.disk.directory)
        self.assertLessEqual(used, 8 * MIB * 1.03, f"{used / (8 * MIB):.1%} of the limit")

    def test_lookups_do_not_write(self) -> None:
        """
        A disk hit updates its access time at most once per
        C{access_resolution}: repeated lookups make no write to the index.
        """
        store = self.open()
        store_body(store, "http://e/a", b"a" * 1000)
        assert store.disk is not None
        connection = store.disk._cache._con
        pk = primary_key(b"GET", "http://e/a")
        read_hit(store.lookup(pk, []))
        before = connection.total_changes
        for _ in range(50):
            read_hit(store.lookup(pk, []))
        self.assertEqual(connection.total_changes - before, 0)

    def test_recently_used_entries_are_evicted_last(self) -> None:
        """
        Eviction is least recently used: an old entry that was hit
        survives, entries stored after it but not hit go first.
        """
        store = self.open(size=4 * MIB)
        assert store.disk is not None
        uris = [f"http://e/{i}" for i in range(8)]
        for uri in uris:
            store_body(store, uri, b"x" * 100_000)
        store.disk._clock = lambda: time.time() + 1000  # the hit is later than every store
        self.assertEqual(self.present(store, uris[:1]), [True])
        for i in range(30):
            store_body(store, f"http://e/new{i}", b"y" * 100_000)
        self.assertEqual(self.present(store, uris[:3]), [True, False, False])


# --- A real squeak -----------------------------------------------------------------------


class _ObjectResource(resource.Resource):
    """
    C{/obj/NAME/SIZE}: L{body_for}(NAME, SIZE), fresh for an hour, with its
    Content-Length; the number of requests for each path is counted.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def render_GET(self, request: server.Request) -> bytes:
        path = request.path.decode()
        self.counts[path] = self.counts.get(path, 0) + 1
        _, _, name, size = path.split("/")
        request.setHeader(b"cache-control", b"max-age=3600")
        request.setHeader(b"content-type", b"application/octet-stream")
        return body_for(name, int(size))


class _FaultProxyTestCase(ProxyTestCase):
    """
    A real squeak whose cache directory is chosen by the test, and an
    origin of cacheable objects.
    """

    cache_dir_on_tmpfs: str | None = None  # the tmpfs size, if on one
    memory_size = 0  # every hit comes from disk

    def setUp(self) -> Any:
        if self.cache_dir_on_tmpfs is not None:
            cache_dir = os.path.join(small_filesystem(self, self.cache_dir_on_tmpfs), "cache")
        else:
            cache_dir = tempfile.mkdtemp(prefix="squeak-cache-")
        self.cache_dir = cache_dir
        self.prepare(cache_dir)
        self.events = cache_events(self)
        self.config_overrides = {
            **self.config_overrides,
            "cache": {"dir": cache_dir, "memory_size": self.memory_size},
        }
        result = super().setUp()
        self.objects = _ObjectResource()
        site = server.Site(self.objects)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.origin_port = port.getHost().port
        return result

    def prepare(self, cache_dir: str) -> None:
        """Make the cache directory's fault before squeak opens it."""

    def url(self, name: str, size: int) -> str:
        return f"http://127.0.0.1:{self.origin_port}/obj/{name}/{size}"

    def get(self, name: str, size: int, version: str = "1.1") -> defer.Deferred[tuple[str, bytes]]:
        """
        GET an object through squeak in a thread: C{("whole", body)} for a
        complete response, C{("cut", partial)} for one that ended short.
        """
        target = self.url(name, size)
        port = self.proxy_port

        def fetch() -> tuple[str, bytes]:
            if version == "1.0":
                with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                    s.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
                    chunks = []
                    while chunk := s.recv(65536):
                        chunks.append(chunk)
                _, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                return ("whole" if len(body) == size else "cut"), body
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            try:
                conn.request("GET", target)
                response = conn.getresponse()
                try:
                    return "whole", response.read()
                except http.client.IncompleteRead as error:
                    return "cut", error.partial
            finally:
                conn.close()

        return threads.deferToThread(fetch)

    async def settle(self) -> None:
        """Let the proxy finish with the last response (the storer commits after it)."""
        await deferLater(reactor, 0.2, lambda: None)

    def fetches(self, name: str, size: int) -> int:
        return self.objects.counts.get(f"/obj/{name}/{size}", 0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FullDiskProxyTests(_FaultProxyTestCase):
    """
    (A real 30 MiB tmpfs.) squeak with a full cache disk answers every
    request whole from the origin, leaks no part file, and logs once.
    """

    cache_dir_on_tmpfs = "30m"

    async def test_download_larger_than_the_disk_is_not_cut(self) -> None:
        """
        A 40 MiB download with the cache on a 30 MiB file system reaches
        the client whole (it was cut at 31 MiB); the part file is removed,
        one line names the path and errno 28, and the URL is served whole
        again.
        """
        size = 40 * MIB
        answers = [await self.get("big", size) for _ in range(2)]
        await self.settle()
        self.assertEqual(
            [(how, sha(body)) for how, body in answers],
            [("whole", sha(body_for("big", size)))] * 2,
        )
        self.assertEqual(part_files(self.cache_dir), [])
        lines = self.events.text()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("errno 28 ENOSPC", lines[0])
        self.assertIn(os.path.join(self.cache_dir, "parts"), lines[0])

    async def test_small_objects_on_a_full_disk(self) -> None:
        """
        With the cache disk full, small objects are served whole each time
        (they hung after the first), to HTTP/1.1 and HTTP/1.0 clients, and
        the fault is logged once.
        """
        fill(os.path.dirname(self.cache_dir))
        got = []
        for i in range(4):
            for version in ("1.1", "1.0", "1.1"):
                how, body = await self.get(f"s{i}", 20_000 + i, version)
                got.append((how, body == body_for(f"s{i}", 20_000 + i)))
        await self.settle()
        self.assertEqual(got, [("whole", True)] * 12)
        self.assertEqual(part_files(self.cache_dir), [])
        self.assertLessEqual(len(self.events), 2, self.events.text())


class DamagedEntryProxyTests(_FaultProxyTestCase):
    """
    A damaged row or body is never served by squeak: the URL is answered
    whole from the origin.
    """

    def entry_path(self) -> tuple[int, str]:
        store = self.service.context.cache.store
        rows = store.disk._cache._sql(
            "SELECT rowid, filename FROM Cache WHERE filename IS NOT NULL"
        ).fetchall()
        ((rowid, filename),) = rows
        return rowid, os.path.join(store.disk.directory, filename)

    async def test_damaged_large_body_is_never_served(self) -> None:
        """
        A 2 MiB disk entry damaged in its middle: the response already
        started is cut, never finished (what was sent is the stored bytes
        before the damage), and the next request is a whole miss.
        """
        size = 2 * MIB
        body = body_for("big", size)
        first = await self.get("big", size)
        await self.settle()
        _, path = self.entry_path()
        with open(path, "r+b") as file:
            file.seek(MIB + 3)
            file.write(b"?")
        second = await self.get("big", size)
        third = await self.get("big", size)
        self.assertEqual(first, ("whole", body))
        self.assertEqual(second[0], "cut")
        self.assertTrue(body.startswith(second[1]), len(second[1]))
        self.assertLessEqual(len(second[1]), MIB)
        self.assertEqual(third, ("whole", body))
        self.assertEqual(self.fetches("big", size), 2)

    async def test_damaged_small_body_is_a_miss(self) -> None:
        """
        A small disk entry of the right length but the wrong content is a
        miss (it was served as a hit): answered whole from the origin.
        """
        body = body_for("small", 3000)
        first = await self.get("small", 3000)
        await self.settle()
        _, path = self.entry_path()
        with open(path, "r+b") as file:
            file.seek(1500)
            file.write(b"?")
        second = await self.get("small", 3000)
        self.assertEqual([first, second], [("whole", body)] * 2)
        self.assertEqual(self.fetches("small", 3000), 2)

    async def test_unreadable_row_and_directory_body_are_misses(self) -> None:
        """
        An entry row that cannot be unpickled, then a directory where the
        body file should be: each gives a whole answer from the origin (each
        gave an empty reply for that URL forever).
        """
        body = body_for("row", 3000)
        answers = [await self.get("row", 3000)]
        await self.settle()
        rowid, _ = self.entry_path()
        store = self.service.context.cache.store
        store.disk._cache._sql("UPDATE Cache SET value = ? WHERE rowid = ?", (b"\x80junk", rowid))
        answers.append(await self.get("row", 3000))
        await self.settle()
        _, path = self.entry_path()
        os.remove(path)
        os.mkdir(path)
        answers.append(await self.get("row", 3000))
        answers.append(await self.get("row", 3000))
        self.assertEqual(answers, [("whole", body)] * 4)
        self.assertEqual(self.fetches("row", 3000), 3)


class StartUpTests(SynchronousTestCase):
    """
    A real C{twistd squeak} starts on a damaged index or a full disk,
    says so in one line, and serves.
    """

    def start(self, cache_dir: str) -> TwistdProxy:
        config = (
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\n'
            f'[cache]\ndir = "{cache_dir}"\n'
            f'[access_log]\npath = "{cache_dir}.access.log"\n'
        )
        proxy = TwistdProxy(config).start()
        self.addCleanup(proxy.stop)
        return proxy

    def serve(self, proxy: TwistdProxy) -> bytes:
        """A request through the proxy to a loopback origin."""
        objects = _ThreadedOrigin()
        self.addCleanup(objects.close)
        handler = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy.port}"})
        opener = urllib.request.build_opener(handler)
        with opener.open(objects.url("/obj/x/5000"), timeout=20) as response:
            return bytes(response.read())

    def test_garbage_index(self) -> None:
        """
        A C{cache.db} of garbage: squeak starts (it exited 1 with a
        traceback), one line says the index was moved aside, and requests
        are served.
        """
        cache_dir = os.path.abspath(self.mktemp())
        os.makedirs(cache_dir)
        with open(os.path.join(cache_dir, "cache.db"), "wb") as index:
            index.write(b"not a database " * 1000)
        proxy = self.start(cache_dir)
        self.assertEqual(self.serve(proxy), body_for("x", 5000))
        self.assertEqual(proxy.output.count("moved it aside"), 1, proxy.output)
        self.assertNotIn("Traceback", proxy.output)
        aside = [n for n in os.listdir(cache_dir) if n.startswith("cache.db.damaged-")]
        self.assertEqual(len(aside), 1, os.listdir(cache_dir))

    def test_full_disk(self) -> None:
        """
        (A real 1 MiB tmpfs, filled.) squeak starts on a full cache disk
        (it exited with sqlite3.OperationalError), says in one line that it
        runs on its memory cache only, and serves.
        """
        mountpoint = small_filesystem(self, "1m")
        fill(mountpoint)
        proxy = self.start(os.path.join(mountpoint, "cache"))
        self.assertEqual(self.serve(proxy), body_for("x", 5000))
        self.assertEqual(proxy.output.count("running with the memory cache only"), 1, proxy.output)
        self.assertIn("no space left", proxy.output)
        self.assertNotIn("Traceback", proxy.output)


class _ThreadedOrigin:
    """The objects of L{_ObjectResource}, from a stdlib server in a thread."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                _, _, name, size = urllib.parse.urlsplit(self.path).path.split("/")
                body = body_for(name, int(size))
                self.send_response(200)
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
