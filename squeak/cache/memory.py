# -*- test-case-name: tests.test_cache_store -*-
"""
The memory tier: small hot objects, least recently used dropped first.

Like Squid's MemStore, it holds whole entries (metadata and body) for bodies
up to a per-object limit, within a total byte budget, and is checked before
the disk. It does no I/O and imports neither Twisted nor diskcache.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from squeak.cache.keys import secondary_key, vary_fields
from squeak.cache.policy import StoredResponse

__all__ = ["ENTRY_OVERHEAD", "CacheHit", "MemoryEntry", "MemoryTier"]

ENTRY_OVERHEAD = 512
"""Bytes charged per entry on top of its body and header bytes."""


@dataclass(slots=True)
class CacheHit:
    """
    A stored response found for a request (L{squeak.cache.store.Store.lookup}
    gives them; defined here because each memory entry holds its own,
    made once and handed to every request it answers).

    @ivar meta: The stored response (status, headers, times).
    @ivar tier: C{"memory"} or C{"disk"} (for C{TCP_MEM_HIT} / C{TCP_HIT}).
    @ivar body: The whole body, for a memory hit.
    @ivar file: The open body file, for a disk hit; closed by L{close}.
    """

    meta: StoredResponse
    tier: str
    body: bytes | None = None
    file: BinaryIO | None = None

    def open(self) -> BinaryIO:
        """The body as a file object, positioned at its start."""
        if self.file is not None:
            return self.file
        return io.BytesIO(self.body or b"")

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """Iterate over the body in chunks of at most C{size} bytes."""
        if self.body is not None:
            for start in range(0, len(self.body), size):
                yield self.body[start : start + size]
            return
        if self.file is not None:
            while chunk := self.file.read(size):
                yield chunk

    def close(self) -> None:
        """Release the body file, if any."""
        if self.file is not None:
            self.file.close()


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """
    An entry of the memory tier.

    @ivar meta: The stored response.
    @ivar body: Its whole body.
    @ivar slot: Its primary key's slot in the shared invalidation tags
        (L{squeak.cache.generations}), when there are some.
    @ivar generation: That slot's tag when the entry was read or stored:
        the entry is valid while the slot holds it.
    """

    meta: StoredResponse
    body: bytes
    slot: int = 0
    generation: int = 0
    #: The hit a lookup that finds this entry returns: made once, not on
    #: every hit (nothing changes a memory hit; closing it does nothing).
    hit: CacheHit = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hit", CacheHit(self.meta, "memory", self.body))

    @property
    def cost(self) -> int:
        """The bytes this entry is charged against the budget."""
        header_bytes = sum(len(n) + len(v) + 4 for n, v in self.meta.headers)
        return len(self.body) + header_bytes + len(self.meta.uri) + ENTRY_OVERHEAD


class MemoryTier:
    """
    An LRU of L{MemoryEntry}s keyed by primary key and secondary (Vary) key.

    @ivar max_bytes: The total budget; 0 disables the tier.
    @ivar max_object_size: The largest body accepted.
    @ivar size: The bytes currently charged.
    """

    def __init__(self, max_bytes: int, max_object_size: int) -> None:
        self.max_bytes = max_bytes
        self.max_object_size = max_object_size
        self.size = 0
        self._entries: OrderedDict[tuple[str, str], MemoryEntry] = OrderedDict()
        # primary key -> {vary key: Vary field names of that entry}
        self._variants: dict[str, dict[str, tuple[bytes, ...]]] = {}

    def __len__(self) -> int:
        """The number of entries."""
        return len(self._entries)

    def get(
        self, primary: str, request_headers: Iterable[tuple[bytes, bytes]]
    ) -> MemoryEntry | None:
        """
        Find the entry for a request, matching C{Vary} (RFC 9111 §4.1), and
        mark it most recently used.

        @param primary: The request's primary key.
        @param request_headers: The request's header fields.
        """
        variants = self._variants.get(primary)
        if not variants:
            return None
        if not isinstance(request_headers, list):
            request_headers = list(request_headers)  # read once per variant
        for vary_key, fields in variants.items():
            # Most entries do not vary (fields and vary_key empty): no call.
            if (secondary_key(fields, request_headers) if fields else "") == vary_key:
                key = (primary, vary_key)
                entries = self._entries
                entries.move_to_end(key)
                return entries[key]
        return None

    def accepts(self, body_length: int) -> bool:
        """Whether a body of this length may be kept in memory."""
        return self.max_bytes > 0 and body_length <= self.max_object_size

    def put(
        self, primary: str, meta: StoredResponse, body: bytes, slot: int = 0, generation: int = 0
    ) -> bool:
        """
        Keep an entry, replacing any with the same keys, and drop the least
        recently used entries beyond the budget.

        @param slot: The entry's slot in the shared invalidation tags.
        @param generation: The slot's tag, read before the body was.
        @return: Whether it was kept.
        """
        entry = MemoryEntry(meta, body, slot, generation)
        if not self.accepts(len(body)) or entry.cost > self.max_bytes:
            self.remove_variant(primary, meta.vary_key)
            return False
        self.remove_variant(primary, meta.vary_key)
        key = (primary, meta.vary_key)
        self._entries[key] = entry
        self._variants.setdefault(primary, {})[meta.vary_key] = vary_fields(meta.headers)
        self.size += entry.cost
        while self.size > self.max_bytes:
            (old_primary, old_vary), _ = next(iter(self._entries.items()))
            self.remove_variant(old_primary, old_vary)
        return True

    def update_meta(
        self, primary: str, meta: StoredResponse, generation: int | None = None
    ) -> None:
        """
        Replace the metadata of an entry (after a 304 freshened it), keeping its body.

        @param generation: Its slot's new tag, when the freshening changed
            it (L{squeak.cache.store.Store.update}); else the tag is kept.
        """
        entry = self._entries.get((primary, meta.vary_key))
        if entry is not None:
            tag = entry.generation if generation is None else generation
            self.put(primary, meta, entry.body, entry.slot, tag)

    def remove_variant(self, primary: str, vary_key: str) -> bool:
        """Drop one entry; return whether there was one."""
        entry = self._entries.pop((primary, vary_key), None)
        if entry is None:
            return False
        self.size -= entry.cost
        variants = self._variants[primary]
        del variants[vary_key]
        if not variants:
            del self._variants[primary]
        return True

    def variants(self, primary: str) -> list[MemoryEntry]:
        """Every entry for a primary key, without marking any as used."""
        return [self._entries[(primary, key)] for key in self._variants.get(primary, {})]

    def remove(self, primary: str) -> int:
        """Drop every entry for a primary key; return how many."""
        vary_keys = list(self._variants.get(primary, {}))
        for vary_key in vary_keys:
            self.remove_variant(primary, vary_key)
        return len(vary_keys)
