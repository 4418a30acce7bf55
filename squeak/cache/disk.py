# -*- test-case-name: tests.test_cache_store -*-
"""
The disk tier: entries in a diskcache index, bodies in files.

Every blocking call of the cache lives here; nothing imports Twisted, so the
caller runs the slow calls (opening, committing, evicting) where it likes,
e.g. with C{deferToThread}.

Layout of the cache directory::

    cache.db            diskcache's SQLite index
    ab/cd/<hex>.val     committed bodies, in diskcache's own file layout
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pickle
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import diskcache
from diskcache.core import MODE_BINARY, UNKNOWN

from squeak.cache.keys import secondary_key, vary_fields
from squeak.cache.policy import StoredResponse

__all__ = ["BodyDisk", "DiskHit", "DiskTier", "PartWriter"]

_META_VERSION = 1
_PARTS = "parts"


def _dump_meta(meta: StoredResponse) -> bytes:
    """Serialise metadata as a pickle of plain values only (no classes)."""
    return pickle.dumps(
        (
            _META_VERSION,
            meta.uri,
            meta.status,
            meta.reason,
            meta.headers,
            meta.request_time,
            meta.response_time,
            meta.vary_key,
            meta.client,
            meta.body_length,
        ),
        protocol=5,
    )


def _load_meta(data: bytes) -> StoredResponse | None:
    """Read metadata written by L{_dump_meta}; L{None} if from another version."""
    values = pickle.loads(data)
    if not isinstance(values, tuple) or values[:1] != (_META_VERSION,):
        return None
    (_, uri, status, reason, headers, request_time, response_time, vary_key, client, length) = (
        values
    )
    return StoredResponse(
        uri, status, reason, headers, request_time, response_time, vary_key, client, length
    )


@dataclass(slots=True)
class _Commit:
    """A finished part to be renamed into the cache by L{BodyDisk.store}."""

    part_path: str
    meta: bytes
    size: int
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What L{BodyDisk.fetch} returns for an entry: metadata and body path."""

    meta: bytes
    path: str


class BodyDisk(diskcache.Disk):  # type: ignore[misc]
    """
    A L{diskcache.Disk} that commits a body by renaming its part file into
    diskcache's file layout instead of copying it, and keeps the entry's
    metadata in the index row beside the file name.
    """

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[Any, ...]:
        """Rename a L{_Commit}'s part into place; anything else as diskcache does."""
        if isinstance(value, _Commit):
            filename, full_path = self.filename(key, value)
            os.makedirs(os.path.dirname(full_path), exist_ok=True)
            os.rename(value.part_path, full_path)
            value.filename = filename
            return value.size, MODE_BINARY, filename, sqlite3.Binary(value.meta)
        return tuple(super().store(value, read, key=key))

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Return a L{_Fetched} for an entry (never the body itself)."""
        if mode == MODE_BINARY and filename is not None and value is not None:
            return _Fetched(bytes(value), os.path.join(self._directory, filename))
        return super().fetch(mode, filename, value, read)


@dataclass(slots=True)
class DiskHit:
    """
    An entry found on disk, its body open for reading.

    @ivar meta: The stored response.
    @ivar file: The body, open, positioned at its start; the caller closes
        it. It stays readable even if the entry is evicted meanwhile.
    @ivar path: The body file's path when it was found.
    """

    meta: StoredResponse
    file: BinaryIO
    path: str


def _entry_key(primary: str, vary_key: str) -> tuple[str, str, str]:
    """The index key of an entry."""
    return ("entry", primary, vary_key)


def _vary_key(primary: str) -> tuple[str, str]:
    """The index key of a primary key's Vary marker (the field names)."""
    return ("vary", primary)


class PartWriter:
    """
    A body being written to a part file, committed atomically or not at all.

    @ivar written: The bytes written so far.
    @ivar failed: Why the entry will not be stored, once it will not.
    @ivar committed_meta: The metadata, with C{body_length} set once
        committed.
    """

    def __init__(self, tier: DiskTier, primary: str, meta: StoredResponse) -> None:
        self._tier = tier
        self._primary = primary
        self._meta = meta
        self.written = 0
        self.failed: str | None = None
        self.committed_meta = meta
        name = os.urandom(16).hex() + ".part"
        self._path = os.path.join(tier.parts_directory, name)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """
        Append body bytes. Past C{maximum_object_size} the part is dropped and
        later writes are ignored.
        """
        if self._file is None:
            return
        self.written += len(data)
        if self.written > self._tier.maximum_object_size:
            self._discard(
                f"body larger than maximum_object_size ({self._tier.maximum_object_size})"
            )
            return
        self._file.write(data)

    def commit(self, expected_length: int) -> bool:
        """
        Store the entry if the body is complete: C{expected_length} (what the
        origin promised, or what the caller counted through a completed
        chunked body) must equal the bytes written.

        @return: Whether the entry was stored; L{failed} says why not.
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
        meta = StoredResponse(
            self._meta.uri,
            self._meta.status,
            self._meta.reason,
            self._meta.headers,
            self._meta.request_time,
            self._meta.response_time,
            self._meta.vary_key,
            self._meta.client,
            self.written,
        )
        file, self._file = self._file, None
        self.committed_meta = meta
        try:
            file.flush()
            self._tier._commit(self._primary, meta, self._path, self.written)
        except BaseException:
            self.failed = "commit failed"
            _remove(self._path)
            raise
        finally:
            file.close()
        return True

    def abort(self) -> None:
        """Drop the part: the body was cut short or is not wanted."""
        self._discard("aborted")

    def _discard(self, why: str) -> None:
        """Delete the part and remember why."""
        if self._file is not None:
            self._file.close()
            self._file = None
            _remove(self._path)
        if self.failed is None:
            self.failed = why


def _remove(path: str) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class DiskTier:
    """
    The disk cache: an index of entries with their bodies as files.

    @ivar directory: The cache directory.
    @ivar parts_directory: Where part files are written.
    @ivar size_limit: Bytes; least recently used entries are evicted beyond.
    @ivar maximum_object_size: The largest body stored.
    @ivar minimum_object_size: The smallest body stored.
    @ivar swept: How many leftover parts and unreferenced bodies were
        deleted when opening.
    """

    def __init__(
        self,
        directory: str,
        *,
        size_limit: int = 2**30,
        maximum_object_size: int = 256 * 2**20,
        minimum_object_size: int = 0,
        timeout: float = 60.0,
    ) -> None:
        self.directory = directory
        self.parts_directory = os.path.join(directory, _PARTS)
        self.size_limit = size_limit
        self.maximum_object_size = maximum_object_size
        self.minimum_object_size = minimum_object_size
        os.makedirs(self.parts_directory, exist_ok=True)
        self._cache = diskcache.Cache(
            directory,
            timeout=timeout,
            disk=BodyDisk,
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            tag_index=True,
            cull_limit=10,
            disk_min_file_size=2**20,
        )
        self.swept = self._sweep_parts() + self._sweep_bodies()

    def close(self) -> None:
        """Close the index."""
        self._cache.close()

    def volume(self) -> int:
        """The bytes used on disk (bodies and index)."""
        return int(self._cache.volume())

    def __len__(self) -> int:
        """The number of index rows (entries and Vary markers)."""
        return len(self._cache)

    def _sweep_parts(self) -> int:
        """Delete part files no live writer holds (left by a crash)."""
        removed = 0
        for name in os.listdir(self.parts_directory):
            path = os.path.join(self.parts_directory, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer, in this or another process
            finally:
                os.close(fd)
            _remove(path)
            removed += 1
        return removed

    def _sweep_bodies(self) -> int:
        """
        Delete body files no index row names: a crash between renaming a part
        into place and committing its row leaves one.
        """
        # diskcache has no public way to list file names; the schema is
        # pinned (diskcache < 6).
        rows = self._cache._sql("SELECT filename FROM Cache WHERE filename IS NOT NULL")
        known = {os.path.join(self.directory, name) for (name,) in rows.fetchall()}
        removed = 0
        for path, dirs, files in os.walk(self.directory):
            if path == self.directory:
                dirs[:] = [d for d in dirs if d != _PARTS]
            for name in files:
                full = os.path.join(path, name)
                if name.endswith(".val") and full not in known:
                    _remove(full)
                    removed += 1
        return removed

    def writer(self, primary: str, meta: StoredResponse) -> PartWriter:
        """
        Start writing an entry. Its C{body_length} is set from the bytes
        written when it is committed.

        @param primary: The primary key.
        @param meta: The stored response, with its C{vary_key}.
        """
        return PartWriter(self, primary, meta)

    def _commit(self, primary: str, meta: StoredResponse, part_path: str, size: int) -> None:
        """Rename a finished part into place and index it (L{PartWriter.commit})."""
        value = _Commit(part_path, _dump_meta(meta), size)
        try:
            with self._cache.transact():
                self._cache.set(_vary_key(primary), vary_fields(meta.headers), tag=primary)
                self._cache.set(_entry_key(primary, meta.vary_key), value, tag=primary)
        except BaseException:
            if value.filename is not None:
                _remove(os.path.join(self.directory, value.filename))
            raise
        if self._cache.volume() > self.size_limit:
            self._cache.cull()

    def get(self, primary: str, request_headers: Iterable[tuple[bytes, bytes]]) -> DiskHit | None:
        """
        Find the entry for a request, matching C{Vary}, with its body open.

        An entry whose body is missing or has the wrong length is dropped and
        not returned.
        """
        fields = self._cache.get(_vary_key(primary))
        if fields is None:
            return None
        key = secondary_key(fields, request_headers)
        if key is None:
            return None
        return self._get_entry(primary, key)

    def _get_entry(self, primary: str, vary_key: str) -> DiskHit | None:
        """Open the entry stored under both keys."""
        fetched = self._cache.get(_entry_key(primary, vary_key))
        if not isinstance(fetched, _Fetched):
            return None
        meta = _load_meta(fetched.meta)
        try:
            file = open(fetched.path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            meta = None
        else:
            if meta is not None and os.fstat(file.fileno()).st_size == meta.body_length:
                return DiskHit(meta, file, fetched.path)
            file.close()
        self._cache.delete(_entry_key(primary, vary_key))
        return None

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
            self._commit(primary, meta, part, meta.body_length)
        except OSError:
            _remove(part)
            return False
        return True

    def remove(self, primary: str) -> int:
        """Remove every entry (all variants) of a primary key; return how many rows."""
        return int(self._cache.evict(primary))
