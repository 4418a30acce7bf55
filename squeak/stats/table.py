# -*- test-case-name: tests.test_stats_table -*-
"""
The workers' counters where every worker can read them: a small shared
memory table, one slot per worker, so that a manager page or a metrics
scrape answered by any worker shows the whole service.

The master makes the table (an anonymous C{memfd}, L{StatsTable.create})
before it starts workers, and hands each one the descriptor and a slot
number (in the environment: L{ENVIRONMENT}, C{FD:SLOT}).  A worker
publishes its L{squeak.stats.counters.Counters.snapshot} (with its
gauges) into its slot as JSON every L{PUBLISH_INTERVAL} seconds, and at
once before it answers a page itself; a reader sums every slot.  So the
figures of the worker that answers are current, and the others' are at
most L{PUBLISH_INTERVAL} old (plus however long a busy reactor delays the
timer): the staleness bound.

When a worker exits, the master folds its last counters into slot 0 (the
counters of the workers that are gone) and frees its slot: the service's
counters never go backwards across restarts and reloads, and a slot is
reused.  A worker killed between two publications loses at most the
counts of that last interval.

Consistency without locks: each slot has a sequence number that its one
writer makes odd while it writes and even after (a seqlock); a reader
copies a slot and retries if the number was odd or changed.  The master's
fold (two slots) is bracketed by the table's own sequence number the same
way, so a reader never counts a retired worker twice.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Mapping
from typing import Any

from squeak.stats.counters import fold

__all__ = [
    "ENVIRONMENT",
    "PUBLISH_INTERVAL",
    "SLOTS",
    "SLOT_SIZE",
    "SlotAllocator",
    "SnapshotTooLargeError",
    "StatsTable",
]

#: The environment variable a worker finds its table in: C{FD:SLOT}.
ENVIRONMENT = "SQUEAK_STATS_TABLE"

#: Seconds between two publications of a worker's counters.
PUBLISH_INTERVAL = 0.5

#: Slots in a table: slot 0 for the workers that are gone, then one per
#: running worker (during a reload, old and new run side by side).
SLOTS = 130

#: Bytes per slot: the header and the JSON snapshot.
SLOT_SIZE = 64 * 1024

#: A slot's header, in 64-bit words: sequence, PID, length of the JSON.
_HEADER_WORDS = 3
_HEADER = _HEADER_WORDS * 8
#: The table's own header (its sequence), before slot 0.
_TABLE_HEADER = 64

#: Attempts a reader makes at a consistent copy before giving up on a
#: slot for this read (a writer died half-way: the slot is skipped).
_READ_ATTEMPTS = 1000


class SnapshotTooLargeError(ValueError):
    """A snapshot does not fit in a slot."""


class StatsTable:
    """
    A shared table of worker snapshots, mapped from a descriptor.

    @ivar fd: The descriptor (the master passes it on to workers).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, _TABLE_HEADER + SLOTS * SLOT_SIZE)
        self._words = memoryview(self._map).cast("Q")

    @classmethod
    def create(cls) -> StatsTable:
        """
        A new, empty table in an anonymous memory file whose descriptor
        child processes may inherit.
        """
        fd = os.memfd_create("squeak-stats")
        os.ftruncate(fd, _TABLE_HEADER + SLOTS * SLOT_SIZE)
        return cls(fd)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ
    ) -> tuple[StatsTable, int] | None:
        """
        The table and slot a master gave this worker, if any.
        """
        value = environ.get(ENVIRONMENT)
        if not value:
            return None
        fd_text, _, slot_text = value.partition(":")
        try:
            fd, slot = int(fd_text), int(slot_text)
            if not 0 < slot < SLOTS:
                return None
            return cls(fd), slot
        except (ValueError, OSError):
            return None

    def close(self) -> None:
        """Unmap the table (the descriptor stays open)."""
        self._words.release()
        self._map.close()

    # -- one slot -----------------------------------------------------------

    def _base(self, slot: int) -> int:
        return _TABLE_HEADER + slot * SLOT_SIZE

    def publish(self, slot: int, snapshot: Mapping[str, Any], pid: int | None = None) -> None:
        """
        Write a snapshot into a slot (only its one owner writes it).

        @raise SnapshotTooLargeError: If it does not fit; the slot keeps the
            previous one.
        """
        data = json.dumps(snapshot, separators=(",", ":")).encode("utf-8")
        if len(data) > SLOT_SIZE - _HEADER:
            raise SnapshotTooLargeError(f"{len(data)} bytes of counters, a slot holds {SLOT_SIZE}")
        base = self._base(slot)
        word = base // 8
        words = self._words
        sequence = words[word]
        words[word] = sequence | 1  # odd: being written
        words[word + 1] = os.getpid() if pid is None else pid
        words[word + 2] = len(data)
        self._map[base + _HEADER : base + _HEADER + len(data)] = data
        words[word] = (sequence | 1) + 1

    def clear(self, slot: int) -> None:
        """Free a slot (its worker is gone and folded)."""
        word = self._base(slot) // 8
        sequence = self._words[word]
        self._words[word] = sequence | 1
        self._words[word + 1] = 0
        self._words[word + 2] = 0
        self._words[word] = (sequence | 1) + 1

    def read(self, slot: int) -> tuple[int, dict[str, Any]] | None:
        """
        A consistent copy of a slot: C{(pid, snapshot)}, or L{None} if it
        is free (or could not be read consistently).
        """
        base = self._base(slot)
        word = base // 8
        words = self._words
        for _ in range(_READ_ATTEMPTS):
            before = words[word]
            if before & 1:
                continue
            pid = words[word + 1]
            length = words[word + 2]
            data = self._map[base + _HEADER : base + _HEADER + min(length, SLOT_SIZE - _HEADER)]
            if words[word] != before:
                continue
            if not length:
                return None
            try:
                return pid, json.loads(data)
            except ValueError:
                return None
        return None

    # -- the whole table ----------------------------------------------------

    def read_all(
        self, exclude: int | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """
        Every live worker's snapshot and the retired workers' counters, as
        one consistent view (retried while the master folds).

        @param exclude: A slot to leave out (the reader's own, which it
            has fresher).

        @return: C{(live snapshots, retired counters or None)}.
        """
        live: list[dict[str, Any]] = []
        retired: dict[str, Any] | None = None
        for _ in range(_READ_ATTEMPTS):
            before = self._words[0]
            if before & 1:
                continue
            live = []
            read = self.read(0)
            retired = read[1] if read is not None else None
            for slot in range(1, SLOTS):
                if slot == exclude:
                    continue
                found = self.read(slot)
                if found is not None:
                    live.append(found[1])
            if self._words[0] == before:
                break
        return live, retired

    def retire(self, slot: int) -> None:
        """
        Fold a worker's last counters into slot 0 and free its slot: the
        master calls this when the worker has exited.
        """
        found = self.read(slot)
        sequence = self._words[0]
        self._words[0] = sequence | 1
        try:
            if found is not None:
                old = self.read(0)
                self.publish(0, fold(old[1] if old else {}, found[1]), pid=0)
            self.clear(slot)
        finally:
            self._words[0] = (sequence | 1) + 1


class SlotAllocator:
    """
    The master's side of the table: which slots it has handed out (slot 0
    never is), and how a worker is told its own.
    """

    def __init__(self, table: StatsTable | None = None) -> None:
        self.table = table
        self._used: set[int] = set()

    def assign(self, child_fds: dict[int, int | str], env: dict[str, str]) -> int | None:
        """
        Give a worker about to be spawned a slot: the table's descriptor
        goes in C{child_fds} (at the next free number), its number and the
        slot in C{env} (L{ENVIRONMENT}).

        @return: The slot, or L{None} without a table or a free slot (the
            worker then counts for itself only).
        """
        if self.table is None:
            return None
        slot = self.take()
        if slot is not None:
            number = max(child_fds) + 1
            child_fds[number] = self.table.fd
            env[ENVIRONMENT] = f"{number}:{slot}"
        return slot

    def release(self, slot: int | None) -> None:
        """A worker exited: keep its counters (slot 0), free its slot."""
        if slot is None or self.table is None:
            return
        self.table.retire(slot)
        self.give_back(slot)

    def take(self) -> int | None:
        """A free slot, or L{None} if every one is taken."""
        for slot in range(1, SLOTS):
            if slot not in self._used:
                self._used.add(slot)
                return slot
        return None

    def give_back(self, slot: int) -> None:
        """A slot is free again."""
        self._used.discard(slot)
