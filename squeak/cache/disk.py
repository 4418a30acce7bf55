# -*- test-case-name: tests.test_cache_store -*-
"""
The disk tier: entries in a diskcache index, bodies in files.

Every blocking call of the cache lives here; nothing here uses Twisted's
reactor (only L{squeak.cache.faults} logs through C{twisted.logger}), so the
caller runs the slow calls (opening, committing, evicting) where it likes,
e.g. with C{deferToThread}.

Layout of the cache directory::

    cache.db            diskcache's SQLite index
    ab/<hex>.val        committed bodies, in 256 fan-out directories
    parts/<hex>.part    bodies being written

How an entry is written, and why a crash never leaves a partial entry:

  1. L{PartWriter} creates C{parts/<hex>.part} and holds an exclusive
     C{flock} on it while the body streams in.
  2. On L{PartWriter.commit}, with the length the origin promised, the part
     is renamed (no copy; diskcache's C{Cache.set(..., read=True)} would copy
     it in 4 MiB chunks) into diskcache's layout by L{BodyDisk.store},
     inside C{Cache.set}, and the index row naming that file and holding the
     metadata is committed in the same call.
  3. A crash before the rename leaves an unlocked part: L{DiskTier} deletes
     parts no live writer holds when it opens. A crash between the rename
     and the SQLite commit leaves a body no row names: L{DiskTier} deletes
     those when it opens. A crash after the commit leaves a complete entry.
     A reader also checks that the body file has the recorded length, and
     drops the entry otherwise.

How the cache's own faults are absorbed (issue 14):

  - A write that fails (a full or read-only disk) abandons that entry: the
    part is removed, L{PartWriter.commit} returns C{False}, and the error is
    logged once per cause (L{squeak.cache.faults.FaultLog}); the download
    that was being stored is not affected. A full disk also lowers the
    tier's size limit below what it holds now, so eviction makes room.
  - An index that cannot be read when opening is moved aside
    (C{cache.db.damaged-<time>}) and a fresh one is made.
  - An entry whose row or body cannot be read is a miss, and is removed.
  - Every body carries a CRC-32 per L{BLOCK_SIZE} block, computed as it is
    written; L{VerifiedBody} checks each block before returning any byte of
    it, so a damaged block is never handed out.

Eviction is least recently used without writing on every lookup: the
index's C{access_time} is set when an entry is stored and bumped by hits
in batches (L{squeak.cache.recency}), and squeak evicts by it itself
(diskcache's own policy is C{none}).

Several processes (C{[proxy] workers}) share one directory (issue 15):
opening does not sweep unless asked (L{squeak.cache.diskindex}: only the
master's start-up sweep may), and once open no call waits more than
L{LOCK_TIMEOUT} for the index's lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shutil
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import diskcache

from squeak.cache.bodyfile import (
    DECODE_ERRORS,
    Checksummer,
    CorruptBodyError,
    VerifiedBody,
    dump_meta,
    load_meta,
)
from squeak.cache.diskindex import INDEX, PARTS, open_index, sweep_bodies, sweep_parts
from squeak.cache.diskindex import remove_quietly as _remove
from squeak.cache.faults import FaultLog, error_code
from squeak.cache.generations import GENERATIONS
from squeak.cache.keys import secondary_key, vary_fields
from squeak.cache.layout import Commit, Fetched
from squeak.cache.policy import StoredResponse
from squeak.cache.recency import Recency

__all__ = ["DiskHit", "DiskTier", "PartWriter", "charge"]


ALLOCATION_UNIT = 4096
"""A body file takes whole blocks of the file system: charged in these."""

FILE_OVERHEAD = 64
"""Bytes charged per body file on top of its blocks: its directory entry."""


#: Errors of the disk and the index that a cache absorbs (logged, then the
#: entry is a miss or is not stored) instead of letting them reach a request.
STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, diskcache.Timeout)

_FULL_CODE = 13  # SQLITE_FULL
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


LOCK_TIMEOUT = 0.05
"""
Seconds a call on the index waits for its lock once the tier is open.
Every call runs on the reactor thread; diskcache's default (60 s) would
let one worker holding the lock freeze all of another's connections. Past
this, the call gives up (C{diskcache.Timeout}, or SQLite's C{database is
locked}): a lookup is a miss, a store is skipped, an access-time bump is
skipped, each logged once per cause.
"""


def _is_busy(error: BaseException) -> bool:
    """Whether an error means the index's lock was held past L{LOCK_TIMEOUT}."""
    if isinstance(error, diskcache.Timeout):
        return True
    return isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorcode", None) in _BUSY_CODES
        or str(error) == "database is locked"
    )


def charge(size: int) -> int:
    """
    The bytes a body of C{size} bytes is charged against the size limit: the
    file system's blocks it fills plus a file's overhead, so that a cache of
    small objects stays within its limit as C{du} measures it.
    """
    return -(-size // ALLOCATION_UNIT) * ALLOCATION_UNIT + FILE_OVERHEAD


@dataclass(slots=True)
class DiskHit:
    """
    An entry found on disk, its body open for reading.

    @ivar meta: The stored response.
    @ivar file: The body, open, positioned at its start; the caller closes
        it. It stays readable even if the entry is evicted meanwhile.
    @ivar path: The body file's path when it was found.
    @ivar checksums: The packed CRC-32 of each L{BLOCK_SIZE} block.
    @ivar trusted: Whether this file was checked whole, unchanged since.
    """

    meta: StoredResponse
    file: BinaryIO
    path: str
    checksums: bytes = b""
    trusted: bool = False


def _entry_key(primary: str, vary_key: str) -> tuple[str, str, str]:
    """The index key of an entry."""
    return ("entry", primary, vary_key)


def _vary_key(primary: str) -> tuple[str, str]:
    """The index key of a primary key's Vary marker (the field names)."""
    return ("vary", primary)


class PartWriter:
    """
    A body being written to a part file, committed atomically or not at all.

    A write to the disk that fails abandons the entry: the part is removed,
    later writes are ignored, L{commit} returns C{False}, and the error is
    logged once per cause. Nothing is raised to the caller, whose download
    goes on.

    @ivar written: The bytes written so far.
    @ivar failed: Why the entry will not be stored, once it will not.
    @ivar committed_meta: The metadata, with C{body_length} set once
        committed.
    """

    def __init__(self, tier: DiskTier, primary: str, meta: StoredResponse) -> None:
        self._tier = tier
        self._primary = primary
        self._meta = meta
        self._sums = Checksummer()
        self.written = 0
        self.failed: str | None = None
        self.committed_meta = meta
        name = os.urandom(16).hex() + ".part"
        self._path = os.path.join(tier.parts_directory, name)
        self._file: BinaryIO | None = None
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError as missing:
            # parts/ was removed while squeak runs (by hand, by a temporary
            # file cleaner): make it again, said once, rather than store
            # nothing until a restart.  Only on this error: no cost per entry.
            try:
                os.makedirs(tier.parts_directory, exist_ok=True)
                fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as error:
                self._abandon("create a part file", error)
                return
            tier.faults.report(
                "create a part file", self._path, missing, "made the parts directory again"
            )
        except OSError as error:
            self._abandon("create a part file", error)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            self._file = None
            _remove(self._path)
            self._abandon("lock a part file", error)
            return
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """
        Append body bytes. Past the largest object the tier admits the part
        is dropped and later writes are ignored; so after a failed write.
        """
        if self._file is None:
            return
        self.written += len(data)
        if self.written > self._tier.largest_object:
            self._discard(
                f"body larger than the largest object stored ({self._tier.largest_object})"
            )
            return
        try:
            self._file.write(data)
        except OSError as error:
            self._abandon("write a body", error)
            return
        self._sums.update(data)

    def commit(self, expected_length: int) -> bool:
        """
        Store the entry if the body is complete: C{expected_length} (what the
        origin promised, or what the caller counted through a completed
        chunked body) must equal the bytes written.

        @return: Whether the entry was stored; L{failed} says why not. A
            disk or index error is not raised: it is logged and the entry
            is not stored.
        """
        if self._file is None:
            return False
        if self.written != expected_length:
            self._discard(f"body has {self.written} bytes, expected {expected_length}")
            return False
        if self.written < self._tier.minimum_object_size:
            self._discard(
                f"body smaller than minimum_object_size ({self._tier.minimum_object_size})"
            )
            return False
        meta = dataclasses.replace(self._meta, body_length=self.written)
        file = self._file
        try:
            file.flush()
        except OSError as error:
            self._abandon("write a body", error)
            return False
        self._file = None
        self.committed_meta = meta
        try:
            self._tier._commit(self._primary, meta, self._path, self.written, self._sums.digest())
        except STORE_ERRORS as error:
            _remove(self._path)
            self.failed = f"commit failed: {error_code(error)}"
            self._tier._fault("commit an entry", self._tier.index_path, error)
            return False
        except BaseException:
            self.failed = "commit failed"
            _remove(self._path)
            raise
        finally:
            with contextlib.suppress(OSError):
                file.close()
        return True

    def abort(self) -> None:
        """Drop the part: the body was cut short or is not wanted."""
        self._discard("aborted")

    def _abandon(self, what: str, error: OSError) -> None:
        """A disk error: drop the part, log once per cause, store nothing."""
        self._discard(f"cannot {what}: {error_code(error)}")
        self._tier._fault(what, self._path, error)

    def _discard(self, why: str) -> None:
        """Delete the part and remember why."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # closing flushes, which may fail again
                self._file.close()
            self._file = None
            _remove(self._path)
        if self.failed is None:
            self.failed = why


class DiskTier:
    """
    The disk cache: an index of entries with their bodies as files.

    @ivar directory: The cache directory.
    @ivar parts_directory: Where part files are written.
    @ivar index_path: The SQLite index, C{cache.db}.
    @ivar size_limit: Bytes (bodies as charged by L{charge}, the index and
        its WAL); least recently used entries are evicted beyond.
    @ivar effective_limit: The limit in force: C{size_limit}, or less once
        the disk was found full below it.
    @ivar maximum_object_size: The largest body stored.
    @ivar minimum_object_size: The smallest body stored.
    @ivar swept: How many leftover parts and unreferenced bodies were
        deleted when opening (0 when opened without sweeping).
    @ivar lock_timeout: The longest a call waits for the index's lock once
        opened, in seconds.
    @ivar moved_aside: Where a damaged index was moved when opening, if it
        was.
    @ivar faults: Where faults are logged, once per cause.
    @ivar recency: The access times hits noted, and eviction by them.
    """

    #: No object may take more than this share of C{size_limit}: admitting
    #: one never evicts more than this much of the rest.
    largest_share = 0.25
    #: On a full disk, the share of (held + free) bytes the cache keeps to.
    full_disk_share = 0.9
    #: Body files remembered as verified (the map is trimmed beyond).
    remembered_entries = 65_536

    def __init__(
        self,
        directory: str,
        *,
        size_limit: int = 2**30,
        maximum_object_size: int = 256 * 2**20,
        minimum_object_size: int = 0,
        timeout: float = 60.0,
        lock_timeout: float = LOCK_TIMEOUT,
        sweep: bool = True,
        faults: FaultLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        @param timeout: How long opening (and sweeping) may wait for the
            index's lock: once, at start-up.
        @param lock_timeout: How long any later call waits for it: these
            run on the reactor thread, where a wait freezes every
            connection of the process (L{LOCK_TIMEOUT}).
        @param sweep: Whether to delete leftover parts and unindexed bodies
            when opening (L{squeak.cache.diskindex}): only while no other
            process uses the directory.
        """
        self.directory = directory
        self.parts_directory = os.path.join(directory, PARTS)
        self.index_path = os.path.join(directory, INDEX)
        self._generations = os.path.join(directory, GENERATIONS)
        self.size_limit = size_limit
        self.effective_limit = size_limit
        self.maximum_object_size = maximum_object_size
        self.minimum_object_size = minimum_object_size
        self.faults = faults if faults is not None else FaultLog()
        self.moved_aside: str | None = None
        self._clock = clock
        self._verified: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        os.makedirs(self.parts_directory, exist_ok=True)
        self._cache, self.moved_aside = open_index(directory, timeout, clock)
        self.lock_timeout = timeout
        self.recency = Recency(
            self._cache,
            STORE_ERRORS,
            lambda what, error: self._fault(what, self.index_path, error),
        )
        try:
            self._cache._disk.fanout = {
                name
                for name in os.listdir(directory)
                if len(name) == 2 and os.path.isdir(os.path.join(directory, name))
            }
            self.swept = 0
            if sweep:
                self.swept = sweep_parts(self.parts_directory) + sweep_bodies(
                    self._cache, directory
                )
            self._make_room(0)
            # diskcache opens SQLite with its timeout as the busy timeout
            # of each thread's connection: reconnect with the short one.
            self._cache.close()
            self._cache._timeout = lock_timeout
            self.lock_timeout = lock_timeout
        except BaseException:
            self._cache.close()
            raise

    @property
    def largest_object(self) -> int:
        """
        The largest body admitted: C{maximum_object_size}, and no more than
        L{largest_share} of the size limit in force.
        """
        share = int(self.effective_limit * self.largest_share) - FILE_OVERHEAD
        return max(0, min(self.maximum_object_size, share - share % ALLOCATION_UNIT))

    def close(self) -> None:
        """Write the access times noted, and close the index."""
        with contextlib.suppress(*STORE_ERRORS):
            self.flush_access_times()
        self._cache.close()

    def volume(self) -> int:
        """
        The bytes used on disk: bodies as charged by L{charge}, the index,
        its write-ahead log, the invalidation tags
        (L{squeak.cache.generations}), and the directories (a block each).
        """
        directories = len(self._cache._disk.fanout) + 2  # fan-out, parts, the root
        total = int(self._cache.volume()) + directories * ALLOCATION_UNIT
        for path in (self.index_path + "-wal", self.index_path + "-shm", self._generations):
            with contextlib.suppress(OSError):
                total += os.stat(path).st_blocks * 512
        return total

    def __len__(self) -> int:
        """The number of index rows (entries and Vary markers)."""
        return len(self._cache)

    def _fault(self, what: str, path: str, error: BaseException) -> None:
        """
        Log a fault once per cause. A full disk also lowers the effective
        size limit to 90 % of what the cache could hold on it (what it
        holds now plus what is free, the failed part already removed) and
        evicts down to it: the file system is smaller than C{cache.size}
        (or shared with something else that grew), and without room every
        later store would fail too.
        """
        full = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
            getattr(error, "sqlite_errorcode", None) == _FULL_CODE
        )
        consequence = "the entry is not stored; requests are answered from the origin"
        if _is_busy(error):
            consequence = (
                f"the index was locked (another worker writing) for over {self.lock_timeout} s:"
                " skipped, as a miss or an entry not stored, rather than wait"
            )
        elif full:
            with contextlib.suppress(*STORE_ERRORS):
                state = os.statvfs(self.directory)
                capacity = self.volume() + state.f_bavail * state.f_frsize
                lower = int(capacity * self.full_disk_share)
                if lower < self.effective_limit:
                    self.effective_limit = lower
                    consequence += (
                        f"; the disk is full: keeping the cache under {lower} bytes"
                        f" (cache.size is {self.size_limit})"
                    )
                    self._make_room(self.largest_object)
        self.faults.report(what, path, error, consequence)

    def writer(self, primary: str, meta: StoredResponse) -> PartWriter:
        """
        Start writing an entry. Its C{body_length} is set from the bytes
        written when it is committed.

        @param primary: The primary key.
        @param meta: The stored response, with its C{vary_key}.
        """
        if self.effective_limit < self.size_limit:
            # The disk was found full: its free space is what the limit
            # leaves, so keep room for one largest object before writing.
            with contextlib.suppress(*STORE_ERRORS):
                self._make_room(self.largest_object)
        return PartWriter(self, primary, meta)

    def _commit(
        self, primary: str, meta: StoredResponse, part_path: str, size: int, checksums: bytes
    ) -> None:
        """
        Make room, then rename a finished part into place and index it
        (L{PartWriter.commit}).
        """
        cost = charge(size)
        self._make_room(cost)
        value = Commit(part_path, dump_meta(meta, checksums), cost)
        try:
            with self._cache.transact():
                self._cache.set(_vary_key(primary), vary_fields(meta.headers), tag=primary)
                self._cache.set(_entry_key(primary, meta.vary_key), value, tag=primary)
        except BaseException:
            if value.filename is not None:
                _remove(os.path.join(self.directory, value.filename))
            raise

    def _make_room(self, incoming: int) -> int:
        """
        Evict least recently used index rows (L{Recency.evict}) until the
        volume plus C{incoming} bytes fits the effective limit.

        @return: How many rows were evicted.
        """
        return self.recency.evict(
            lambda: self.volume() + incoming - self.effective_limit, self._clock()
        )

    def get(self, primary: str, request_headers: Iterable[tuple[bytes, bytes]]) -> DiskHit | None:
        """
        Find the entry for a request, matching C{Vary}, with its body open.

        An entry whose row cannot be read, or whose body is missing, not a
        file or of the wrong length, is dropped and not returned; an index
        that cannot be read answers L{None} (logged once per cause).
        """
        vary_key = _vary_key(primary)
        try:
            fields = self._cache.get(vary_key)
        except STORE_ERRORS as error:
            self._fault("read the index", self.index_path, error)
            return None
        except DECODE_ERRORS as error:
            self._drop(vary_key, "read a Vary row", error)
            return None
        if fields is None:
            return None
        if not isinstance(fields, tuple) or not all(isinstance(f, bytes) for f in fields):
            self._drop(vary_key, "read a Vary row", TypeError(f"not field names: {fields!r:.80}"))
            return None
        key = secondary_key(fields, request_headers)
        if key is None:
            return None
        return self._get_entry(primary, key)

    def _get_entry(self, primary: str, vary_key: str) -> DiskHit | None:
        """Open the entry stored under both keys."""
        key = _entry_key(primary, vary_key)
        try:
            fetched = self._cache.get(key)
        except STORE_ERRORS as error:
            self._fault("read the index", self.index_path, error)
            return None
        except DECODE_ERRORS as error:
            self._drop(key, "read an index row", error)
            return None
        if fetched is None:
            return None
        if not isinstance(fetched, Fetched):
            self._drop(key, "read an index row", TypeError("not an entry row"))
            return None
        try:
            loaded = load_meta(fetched.meta)
        except DECODE_ERRORS as error:
            self._drop(key, "read an entry's metadata", error)
            return None
        if loaded is None:
            self._drop(key)  # another version's row, or a malformed one
            return None
        meta, checksums = loaded
        try:
            file = open(fetched.path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            self._drop(key)
            return None
        except OSError as error:  # a directory where the body should be, EACCES, EIO
            self._drop(key, "open a body file", error, fetched.path)
            return None
        try:
            status = os.fstat(file.fileno())
        except OSError as error:
            file.close()
            self._drop(key, "open a body file", error, fetched.path)
            return None
        if status.st_size != meta.body_length:
            file.close()
            self._drop(key)
            return None
        signature = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        trusted = self._verified.get(fetched.path) == signature
        self.recency.touch(key, _vary_key(primary), self._clock())
        return DiskHit(meta, file, fetched.path, checksums, trusted)

    def body(self, hit: DiskHit, primary: str) -> VerifiedBody:
        """
        The body of a hit, read through its checksums (L{VerifiedBody});
        a damaged one is removed from the index when found.
        """
        key = _entry_key(primary, hit.meta.vary_key)

        def verified() -> None:
            with contextlib.suppress(OSError, ValueError):
                status = os.fstat(hit.file.fileno())
                self._verified[hit.path] = (
                    status.st_ino,
                    status.st_size,
                    status.st_mtime_ns,
                    status.st_ctime_ns,
                )
                self._verified.move_to_end(hit.path)
                while len(self._verified) > self.remembered_entries:
                    self._verified.popitem(last=False)

        def damaged(detail: str) -> None:
            self._verified.pop(hit.path, None)
            self._drop_if(key, hit.path)
            self.faults.report(
                "serve a body",
                hit.path,
                CorruptBodyError(detail),
                "the entry is removed; its URL is fetched from the origin again",
            )

        return VerifiedBody(
            hit.file,
            hit.meta.body_length,
            hit.checksums,
            trusted=hit.trusted,
            on_verified=verified,
            on_damage=damaged,
        )

    def flush_access_times(self) -> None:
        """Write the access times hits noted (L{Recency.flush})."""
        self.recency.flush(self._clock())

    def _drop(
        self,
        key: Any,
        what: str | None = None,
        error: BaseException | None = None,
        path: str | None = None,
    ) -> None:
        """
        Remove an index row that cannot be served; if it is damaged
        (C{what} and C{error} given), log that once per cause. A directory
        standing where a body file should be is removed too.
        """
        if what is not None and error is not None:
            self.faults.report(
                what,
                path or self.index_path,
                error,
                "the entry is removed and answered as a miss",
            )
        if path is not None and os.path.isdir(path) and not os.path.islink(path):
            with contextlib.suppress(OSError):
                shutil.rmtree(path)
        try:
            # diskcache's delete selects the row's file name without
            # unpickling its value, and removes the body file with it.
            self._cache.delete(key)
        except STORE_ERRORS as failure:
            self._fault("remove an entry", self.index_path, failure)

    def _drop_if(self, key: tuple[str, str, str], path: str) -> None:
        """Remove an entry if its row still names the body file C{path}."""
        try:
            fetched = self._cache.get(key)
        except (*STORE_ERRORS, *DECODE_ERRORS):
            fetched = None
        if isinstance(fetched, Fetched) and fetched.path == path:
            with contextlib.suppress(*STORE_ERRORS):
                self._cache.delete(key)

    def update_meta(self, primary: str, meta: StoredResponse) -> bool:
        """
        Replace an entry's metadata (after a 304 freshened it), keeping its
        body: the body file is hard-linked to a new part, committed as usual.

        @return: Whether the entry was still there to update.
        """
        hit = self._get_entry(primary, meta.vary_key)
        if hit is None:
            return False
        hit.file.close()
        part = os.path.join(self.parts_directory, os.urandom(16).hex() + ".part")
        meta = dataclasses.replace(meta, body_length=hit.meta.body_length)
        try:
            os.link(hit.path, part)
            self._commit(primary, meta, part, meta.body_length, hit.checksums)
        except STORE_ERRORS as error:
            _remove(part)
            self._fault("update an entry", hit.path, error)
            return False
        return True

    def variants(self, primary: str) -> list[StoredResponse]:
        """
        Every entry stored for a primary key (its Vary variants), for the
        manager's C{objects} page: read from the index by the key's tag,
        without noting an access (it is no hit).
        """
        found: list[StoredResponse] = []
        try:
            rows = self._cache._sql(
                "SELECT key, raw FROM Cache WHERE tag = ?", (primary,)
            ).fetchall()
            for db_key, raw in rows:
                key = self._cache._disk.get(db_key, raw)
                if not (isinstance(key, tuple) and key[:1] == ("entry",)):
                    continue
                fetched = self._cache.get(key)
                if isinstance(fetched, Fetched):
                    loaded = load_meta(fetched.meta)
                    if loaded is not None:
                        found.append(loaded[0])
        except (*STORE_ERRORS, *DECODE_ERRORS) as error:
            self._fault("read the index", self.index_path, error)
        return found

    def figures(self) -> dict[str, int]:
        """
        The tier's objects (entries, Vary markers not counted), bytes on
        disk and limit, for the manager pages and metrics.
        """
        try:
            rows = len(self._cache)
            primaries = self._cache._sql("SELECT COUNT(DISTINCT tag) FROM Cache").fetchone()[0]
            volume = self.volume()
        except STORE_ERRORS as error:
            self._fault("read the index", self.index_path, error)
            return {}
        return {
            "objects": max(0, rows - int(primaries)),
            "bytes": volume,
            "limit": self.effective_limit,
        }

    def remove(self, primary: str) -> int:
        """Remove every entry (all variants) of a primary key; return how many rows."""
        try:
            return int(self._cache.evict(primary))
        except STORE_ERRORS as error:
            self._fault("remove an entry", self.index_path, error)
            return 0
