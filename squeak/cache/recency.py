# -*- test-case-name: tests.test_cache_shared -*-
"""
Recency and eviction for the disk tier (L{squeak.cache.disk.DiskTier}):
least recently used, kept by squeak rather than diskcache.

diskcache's C{least-recently-used} policy updates the row on every C{get}:
each lookup a write transaction, and with several workers sharing the
directory every lookup queues behind SQLite's write lock. Instead, the
index's C{access_time} is set when an entry is stored; a hit notes its
entry at most once per L{Recency.access_resolution} seconds, and the
notes are written together, in one transaction at most every
L{Recency.flush_interval} seconds (and before an eviction chooses its
victims). A lookup takes no write lock in the common case, and a flush
that cannot have the lock within the tier's lock timeout is dropped:
recency is a hint, and a later hit notes the entry again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import diskcache

__all__ = ["Recency"]


class Recency:
    """
    The access times a tier's hits noted, and eviction by them.
    """

    #: A hit notes its entry's access time at most this often (seconds),
    #: so lookups do not write.
    access_resolution = 60.0
    #: Noted access times are written at most this often (seconds).
    flush_interval = 5.0
    #: Entries remembered as noted (the map is cleared beyond).
    remembered_entries = 65_536
    #: Index rows evicted per query; and the most queries per eviction.
    eviction_batch = 64
    eviction_rounds = 10_000

    def __init__(
        self,
        cache: diskcache.Cache,
        errors: tuple[type[BaseException], ...],
        on_fault: Callable[[str, BaseException], None],
    ) -> None:
        """
        @param cache: The tier's index.
        @param errors: The errors a flush absorbs (the tier's store errors).
        @param on_fault: Called with what failed and the error, to log it.
        """
        self._cache = cache
        self._errors = errors
        self._on_fault = on_fault
        self._touched: dict[Any, float] = {}
        self._pending: dict[Any, tuple[Any, float]] = {}
        self._flushed = -math.inf

    def touch(self, key: Any, vary_key: Any, now: float) -> None:
        """
        A hit on the entry under C{key} (whose Vary row is C{vary_key},
        bumped with it so the two are evicted together) at C{now}.
        """
        last = self._touched.get(key)
        if last is not None and now - last < self.access_resolution:
            return
        if len(self._touched) >= self.remembered_entries:
            self._touched.clear()
        self._touched[key] = now
        self._pending[key] = (vary_key, now)
        if (
            now - self._flushed >= self.flush_interval
            or len(self._pending) >= self.eviction_batch * 16
        ):
            self.flush(now)

    def flush(self, now: float) -> None:
        """
        Write the access times noted since the last flush, in one
        transaction; if that fails (the lock not had in time), drop them,
        logged once per cause.
        """
        pending, self._pending = self._pending, {}
        self._flushed = now
        if not pending:
            return
        try:
            disk = self._cache._disk
            with self._cache.transact():
                for key, (vary_key, when) in pending.items():
                    entry, entry_raw = disk.put(key)
                    vary, vary_raw = disk.put(vary_key)
                    self._cache._sql(
                        "UPDATE Cache SET access_time = ?"
                        " WHERE (key = ? AND raw = ?) OR (key = ? AND raw = ?)",
                        (when, entry, entry_raw, vary, vary_raw),
                    )
        except self._errors as error:
            self._on_fault("update an access time", error)

    def evict(self, excess: Callable[[], int], now: float) -> int:
        """
        Delete the least recently used index rows (by C{access_time}), and
        their body files, while C{excess()} (the bytes over the limit) is
        positive; noted access times are written first.

        @return: How many rows were evicted.
        """
        if self._pending:
            self.flush(now)
        evicted = 0
        for _ in range(self.eviction_rounds):
            over = excess()
            if over <= 0:
                break
            rows = self._cache._sql(
                "SELECT rowid, filename, size FROM Cache ORDER BY access_time LIMIT ?",
                (self.eviction_batch,),
            ).fetchall()
            if not rows:
                break
            chosen: list[tuple[int, str | None]] = []
            freed = 0
            for rowid, filename, size in rows:
                chosen.append((rowid, filename))
                freed += size or 0
                if freed >= over:
                    break
            with self._cache.transact():
                for rowid, _ in chosen:
                    self._cache._sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
            for _, filename in chosen:
                if filename is not None:
                    self._cache._disk.remove(filename)
            evicted += len(chosen)
        return evicted
