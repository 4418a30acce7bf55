# -*- test-case-name: tests.test_cache_shared -*-
"""
Opening the disk tier's index, repairing it, and the start-up sweeps: the
part of L{squeak.cache.disk.DiskTier} that runs once, when a process opens
the cache, apart from what runs per request.

Why the sweeps are separate from opening (issue 15): with
C{[proxy] workers} above 1 several processes share one cache directory,
and L{sweep_bodies} cannot tell a body a crash left unindexed from one
another process has just renamed into place and is about to index. So only
the process that owns the directory before anything serves (the master,
or the single process when C{workers = 1}) sweeps, once, at start-up;
workers, reloads and C{python -m squeak purge} open the index without
sweeping (L{squeak.cache.facade.sweep_disk_cache}).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable

import diskcache

from squeak.cache.faults import announce, error_code
from squeak.cache.layout import BodyDisk

__all__ = ["INDEX", "PARTS", "open_index", "remove_quietly", "sweep_bodies", "sweep_parts"]

PARTS = "parts"
INDEX = "cache.db"

#: SQLite result codes that mean the index file itself is damaged.
_DAMAGED_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def remove_quietly(path: str) -> None:
    """Remove a file that may already be gone (or that cannot be removed: logged by the caller)."""
    with contextlib.suppress(FileNotFoundError, PermissionError, IsADirectoryError, OSError):
        os.remove(path)


def _timestamp(now: float) -> str:
    """A compact UTC time for a file name: C{20261206T143005Z}."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def _new_index(directory: str, timeout: float) -> diskcache.Cache:
    """Open (or create) diskcache's index with squeak's settings."""
    cache = diskcache.Cache(
        directory,
        timeout=timeout,
        disk=BodyDisk,
        # squeak evicts by itself (squeak.cache.recency): no write on get,
        # no culling inside set.
        size_limit=2**62,
        eviction_policy="none",
        cull_limit=0,
        tag_index=True,
        disk_min_file_size=2**20,
    )
    try:
        cache._sql("CREATE INDEX IF NOT EXISTS Cache_access_time ON Cache (access_time)")
        ((result,),) = cache._sql("PRAGMA quick_check(1)").fetchall()
        if result != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
    except BaseException:
        cache.close()
        raise
    return cache


def open_index(
    directory: str, timeout: float, clock: Callable[[], float]
) -> tuple[diskcache.Cache, str | None]:
    """
    Open the index; if it is damaged (not a database, or failing SQLite's
    quick check), move it aside with a timestamp and start a fresh one,
    saying so in one line. A full or read-only disk is not damage: that
    is raised, for the store to run without its disk tier.

    @return: The index, and where a damaged one was moved (or L{None}).
    """
    index_path = os.path.join(directory, INDEX)
    try:
        return _new_index(directory, timeout), None
    except sqlite3.DatabaseError as error:
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(error, sqlite3.OperationalError) and code not in _DAMAGED_CODES:
            raise
        reason = f"{error_code(error)}: {error}"
    aside = f"{index_path}.damaged-{_timestamp(clock())}"
    os.rename(index_path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(index_path + suffix):
            os.rename(index_path + suffix, aside + suffix)
    announce(
        f"squeak cache: the index {index_path} could not be read ({reason});"
        f" moved it aside to {aside} and started an empty cache"
    )
    return _new_index(directory, timeout), aside


def sweep_parts(parts_directory: str) -> int:
    """
    Delete part files no live writer holds (left by a crash). A part a
    writer holds is locked (C{flock}) and kept, in this process or another.
    """
    removed = 0
    for name in os.listdir(parts_directory):
        path = os.path.join(parts_directory, name)
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
        remove_quietly(path)
        removed += 1
    return removed


def sweep_bodies(cache: diskcache.Cache, directory: str) -> int:
    """
    Delete body files no index row names: a crash between renaming a part
    into place and committing its row leaves one.

    Only safe while no other process writes to the cache: a body renamed
    into place but not yet indexed looks exactly like one a crash left.
    """
    # diskcache has no public way to list file names; the schema is
    # pinned (diskcache < 6).
    rows = cache._sql("SELECT filename FROM Cache WHERE filename IS NOT NULL")
    known = {os.path.join(directory, name) for (name,) in rows.fetchall()}
    removed = 0
    for path, dirs, files in os.walk(directory):
        if path == directory:
            dirs[:] = [d for d in dirs if d != PARTS]
        for name in files:
            full = os.path.join(path, name)
            if name.endswith(".val") and full not in known:
                remove_quietly(full)
                removed += 1
    return removed
