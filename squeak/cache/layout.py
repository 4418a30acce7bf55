# -*- test-case-name: tests.test_cache_store -*-
"""
How committed bodies sit in diskcache's directory: L{BodyDisk}, a
C{diskcache.Disk} that commits a body by renaming its finished part file
into place (diskcache's C{Cache.set(..., read=True)} would copy it in
4 MiB chunks, blocking and writing the body twice) and keeps the entry's
metadata in the index row beside the file name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, UNKNOWN

__all__ = ["BodyDisk", "Commit", "Fetched"]


@dataclass(slots=True)
class Commit:
    """A finished part to be renamed into the cache by L{BodyDisk.store}."""

    part_path: str
    meta: bytes
    size: int
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """What L{BodyDisk.fetch} returns for an entry: metadata and body path."""

    meta: bytes
    path: str


class BodyDisk(diskcache.Disk):  # type: ignore[misc]
    """
    A L{diskcache.Disk} that commits a body by renaming its part file into
    diskcache's file layout instead of copying it, and keeps the entry's
    metadata in the index row beside the file name.

    Body files go in one level of 256 directories (C{ab/<hex>.val}), not
    diskcache's two (65,536 possible directories of a block each, which
    outweighed the bodies themselves in a cache of small objects).
    """

    #: The fan-out directories known to exist (kept once made, so this
    #: only grows, to 256 at most): each is charged a block (L{DiskTier.volume};
    #: uncounted, they were 12 % of an 8 MiB cache of 1 KiB objects on ext4).
    fanout: set[str]

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[Any, ...]:
        """Rename a L{Commit}'s part into place; anything else as diskcache does."""
        if isinstance(value, Commit):
            hex_name = os.urandom(16).hex()
            filename = os.path.join(hex_name[:2], hex_name[2:] + ".val")
            full_path = os.path.join(self._directory, filename)
            if hex_name[:2] not in self.fanout:
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                self.fanout.add(hex_name[:2])
            os.rename(value.part_path, full_path)
            value.filename = filename
            return value.size, MODE_BINARY, filename, sqlite3.Binary(value.meta)
        return tuple(super().store(value, read, key=key))

    def remove(self, file_path: str) -> None:
        """
        Remove a body file, keeping its directory (diskcache removes empty
        directories, which a concurrent commit in another process may be
        about to use, and which L{fanout} counts).
        """
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self._directory, file_path))

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Return a L{Fetched} for an entry (never the body itself)."""
        if mode == MODE_BINARY and filename is not None and value is not None:
            return Fetched(bytes(value), os.path.join(self._directory, filename))
        return super().fetch(mode, filename, value, read)
