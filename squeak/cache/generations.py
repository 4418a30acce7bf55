# -*- test-case-name: tests.test_cache_shared -*-
"""
Invalidation tags shared by every process that uses one cache directory,
so that a PURGE or an unsafe request (RFC 9111 §4.4) handled by one worker
reaches every worker's memory tier before its response is sent.

Each worker keeps its own memory tier; the disk tier is shared. Removing
an entry from the disk and from the invalidating worker's memory is not
enough: another worker would go on serving its memory copy. So the cache
directory holds C{generations}, an array of L{Generations.slots} 64-bit
tags, C{mmap}ed by every process; a URL (its primary key) maps to one slot
by CRC-32. An invalidation removes the entries from the disk, then writes
a new random tag into the slot. A memory entry records the slot's tag as
read I{before} its body was read from the disk (or when it was committed);
a memory hit whose tag differs from the slot's is dropped and looked up on
the disk again. The check is one array read and one integer compare per
hit, no system call.

Why a random tag rather than a counter: two processes incrementing the
same slot at once could both write C{n + 1}, and an entry read between the
two writes would survive the second invalidation. Two random tags differ
(but for a chance of 2**-64), so each invalidation changes the slot. Why
remove from the disk first: a reader that read the old body before it was
removed read the tag before that too, which the invalidation then changes.

A C{304} that freshens an entry (RFC 9111 §4.3.4) changes the slot too,
after rewriting the disk copy's metadata: the other workers' memory
copies still say the entry is stale, and would each revalidate it again;
they read the freshened copy from the disk instead.

Slots are shared by URLs whose CRC-32s collide modulo L{Generations.slots}:
an invalidation also drops those URLs' memory copies, which are then read
from the disk again; never the other way round.
"""

from __future__ import annotations

import mmap
import os
import zlib

__all__ = ["GENERATIONS", "Generations"]

GENERATIONS = "generations"
"""The file's name in the cache directory."""


class Generations:
    """
    The shared invalidation tags of a cache directory.

    @ivar tags: The tags, by slot, as a view of the shared mapping: read
        C{tags[slot]} on the hit path.
    """

    #: Slots in the file (a power of 2): 32 KiB, charged to the cache's
    #: size. An invalidation also drops the memory copies of about one URL
    #: in this many (read from the disk again).
    slots = 4096

    def __init__(self, directory: str) -> None:
        """
        Map (creating it if needed) C{generations} in C{directory}.

        @raise OSError: If it cannot be created or mapped.
        """
        path = os.path.join(directory, GENERATIONS)
        size = self.slots * 8
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Every process allocates the same size: one that does so after
            # another wrote a tag changes nothing. Allocated, not sparse: a
            # write to a page of a hole on a full disk would kill the
            # process with SIGBUS; this raises ENOSPC here instead.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.tags = memoryview(self._map).cast("Q")

    def slot(self, primary: str) -> int:
        """The slot of a primary key (the same in every process)."""
        return zlib.crc32(primary.encode("utf-8", "surrogatepass")) & (self.slots - 1)

    def bump(self, primary: str) -> int:
        """
        Invalidate every process's memory copies of C{primary}: call after
        removing its entries from the disk (or freshening them there),
        before answering.

        @return: The slot's new tag: a copy the caller knows to be current
            (the one it freshened) may carry it.
        """
        slot = self.slot(primary)
        old = self.tags[slot]
        new = old
        for _ in range(4):  # bounded: a repeat is a 2**-64 chance
            new = int.from_bytes(os.urandom(8), "little")
            if new != old:
                break
        self.tags[slot] = new
        return new

    def close(self) -> None:
        """Unmap the file."""
        self.tags.release()
        self._map.close()
