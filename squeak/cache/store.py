# -*- test-case-name: tests.test_cache_store -*-
"""
The store: one facade over the memory and disk tiers, as Squid's Store
Controller, plus the registry of fetches in flight (Squid's transients)
that makes collapsed forwarding possible.

The API is synchronous and uses no reactor (faults are logged through
C{twisted.logger}, L{squeak.cache.faults}). Memory hits never block.
Disk calls (L{Store.lookup} on a memory miss, L{EntryWriter.commit},
L{Store.update}, L{Store.purge}) touch SQLite and the file system; they are
short, but the caller may run them with C{deferToThread}. L{EntryWriter.write}
appends to a file and is meant to be called as the body streams through.

The store absorbs its own faults (issue 14): nothing it does for a request
raises a disk or index error. A write that fails abandons that entry
(L{EntryWriter.commit} returns C{False}), a row or body that cannot be read
is a miss, a damaged body is never served (L{squeak.cache.disk.VerifiedBody}),
and a disk tier that cannot be opened at all (a full or read-only disk)
leaves the store running on its memory tier, said once in the log. Faults
are logged once per cause (L{squeak.cache.faults.FaultLog}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Protocol, cast

from squeak.cache.bodyfile import CorruptBodyError
from squeak.cache.disk import LOCK_TIMEOUT, STORE_ERRORS, DiskTier, PartWriter
from squeak.cache.faults import FaultLog, announce, error_code, filesystem_state
from squeak.cache.generations import Generations
from squeak.cache.keys import primary_key
from squeak.cache.memory import CacheHit, MemoryTier
from squeak.cache.policy import StoredResponse
from squeak.cache.sharedfetch import FetchMarkers

if TYPE_CHECKING:
    from squeak.config import CacheConfig

__all__ = [
    "CacheHit",
    "CollapsedForwarding",
    "CorruptBodyError",
    "EntryWriter",
    "Store",
    "Transient",
    "TransientListener",
]


class EntryWriter:
    """
    Writes one response into the store as its body streams through.

    Call L{write} for each chunk, then L{commit} with the length the origin
    promised once the body is complete (L{squeak.errors.BodyComplete}), or
    L{abort} for any other ending.

    @ivar failed: Why nothing will be stored, once that is known.
    """

    def __init__(self, store: Store, primary: str, meta: StoredResponse) -> None:
        self._store = store
        self._primary = primary
        self._meta = meta
        self._part: PartWriter | None = (
            store.disk.writer(primary, meta) if store.disk is not None else None
        )
        self._buffer: list[bytes] | None = [] if store.memory.accepts(0) else None
        self._buffered = 0
        self._written = 0
        self._failed: str | None = None

    @property
    def failed(self) -> str | None:
        """Why the entry will not be stored, or L{None}."""
        return self._part.failed if self._part is not None else self._failed

    @property
    def written(self) -> int:
        """The body bytes written so far."""
        return self._part.written if self._part is not None else self._written

    def write(self, data: bytes) -> None:
        """Append body bytes (ignored once the entry has failed)."""
        if self._part is not None:
            self._part.write(data)
        else:
            self._written += len(data)
        if self._buffer is not None:
            self._buffered += len(data)
            if self._store.memory.accepts(self._buffered):
                self._buffer.append(data)
            else:
                self._buffer = None

    def commit(self, expected_length: int) -> bool:
        """
        Store the entry if exactly C{expected_length} bytes were written;
        otherwise drop it. Small bodies go to the memory tier too.

        @return: Whether it was stored.
        """
        if self._part is None:
            return self._commit_to_memory(expected_length)
        stored = self._part.commit(expected_length)
        if stored:
            meta = self._part.committed_meta
            self._store.memory.remove_variant(self._primary, meta.vary_key)
            if self._buffer is not None:
                slot, generation = self._store.generation_of(self._primary)
                self._store.memory.put(
                    self._primary, meta, b"".join(self._buffer), slot, generation
                )
        self._buffer = None
        return stored

    def _commit_to_memory(self, expected_length: int) -> bool:
        """Without a disk tier: keep a complete small body in memory only."""
        buffer, self._buffer = self._buffer, None
        if self._written != expected_length:
            self._failed = f"body has {self._written} bytes, expected {expected_length}"
            return False
        if buffer is None:
            self._failed = "no disk tier, and too large for the memory tier"
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
            self._written,
        )
        return self._store.memory.put(self._primary, meta, b"".join(buffer))

    def abort(self) -> None:
        """Drop the entry: the body was cut short or is not wanted."""
        if self._part is not None:
            self._part.abort()
        elif self._failed is None:
            self._failed = "aborted"
        self._buffer = None


class Store:
    """
    The cache store: memory tier, then disk tier.

    @ivar memory: The memory tier.
    @ivar disk: The disk tier; L{None} when it could not be opened (a full
        or read-only disk), and the store runs on its memory tier.
    @ivar disk_error: Why the disk tier could not be opened, if it could not.
    @ivar faults: The cache's faults, logged once per cause.
    @ivar inflight: Fetches in flight, for collapsed forwarding.
    @ivar markers: The fetches in flight in every process using the
        directory (L{squeak.cache.sharedfetch}); L{None} without a disk tier.
    @ivar generations: The invalidation tags shared with the other
        processes using the directory (L{squeak.cache.generations}); L{None}
        without a disk tier.
    """

    #: Whether other processes use the directory at the same time
    #: (C{[proxy] workers} above 1): only then are fetches in flight marked
    #: in it (L{squeak.cache.sharedfetch}), as a marker costs a file made
    #: and removed per leading miss. Process-wide, set by
    #: L{squeak.master.serve} through L{squeak.cache.facade.share_between_processes}.
    shared_between_processes: ClassVar[bool] = False

    def __init__(
        self,
        directory: str,
        *,
        size: int = 2**30,
        memory_size: int = 64 * 2**20,
        maximum_object_size_in_memory: int = 512 * 1024,
        maximum_object_size: int = 256 * 2**20,
        minimum_object_size: int = 0,
        sweep: bool = True,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        """
        @param sweep: Whether opening deletes what a crash left (parts no
            writer holds, bodies no row names): only where no other process
            uses the directory (L{squeak.cache.diskindex}).
        @param lock_timeout: The longest a call waits for the index's lock
            (L{squeak.cache.disk.LOCK_TIMEOUT}).
        """
        self.memory = MemoryTier(
            memory_size, min(maximum_object_size_in_memory, maximum_object_size)
        )
        self.faults = FaultLog()
        self.disk_error: str | None = None
        self.disk: DiskTier | None = None
        self._maximum_object_size = maximum_object_size
        self._minimum_object_size = minimum_object_size
        try:
            self.disk = DiskTier(
                directory,
                size_limit=size,
                maximum_object_size=maximum_object_size,
                minimum_object_size=minimum_object_size,
                lock_timeout=lock_timeout,
                sweep=sweep,
                faults=self.faults,
            )
        except STORE_ERRORS as error:
            self.disk_error = f"{error_code(error)}: {getattr(error, 'strerror', None) or error}"
            state = filesystem_state(directory)
            if state is not None:
                self.disk_error += f"; {state}"
            announce(
                f"squeak cache: cannot open the disk cache in {directory} ({self.disk_error});"
                f" running with the memory cache only ({memory_size} bytes) until restarted"
            )
        self.generations: Generations | None = None
        if self.disk is not None:
            try:
                self.generations = Generations(directory)
            except OSError as error:
                self.faults.report(
                    "map the invalidation tags",
                    directory,
                    error,
                    "other workers' memory copies are not invalidated; use workers = 1",
                )
        self.markers: FetchMarkers | None = None
        if self.disk is not None and Store.shared_between_processes:
            try:
                self.markers = FetchMarkers(directory)
            except OSError as error:
                self.faults.report(
                    "make the fetch markers' directory",
                    directory,
                    error,
                    "collapsed forwarding stays within each worker",
                )
        self.inflight = CollapsedForwarding()

    @classmethod
    def from_config(
        cls, cache: CacheConfig, *, sweep: bool = False, lock_timeout: float = LOCK_TIMEOUT
    ) -> Store:
        """
        Open the store the C{[cache]} table describes.

        @param sweep: Whether to sweep what a crash left: not by default, as
            other processes (workers, a reload's new servers) may be using
            the directory; the start-up sweep is
            L{squeak.cache.facade.sweep_disk_cache}'s.
        """
        return cls(
            cache.dir,
            size=cache.size,
            memory_size=cache.memory_size,
            maximum_object_size_in_memory=cache.maximum_object_size_in_memory,
            maximum_object_size=cache.maximum_object_size,
            minimum_object_size=cache.minimum_object_size,
            sweep=sweep,
            lock_timeout=lock_timeout,
        )

    def close(self) -> None:
        """Close the disk index and the invalidation tags."""
        if self.disk is not None:
            self.disk.close()
        if self.generations is not None:
            self.generations.close()
            self.generations = None

    def may_store_length(self, length: int | None) -> bool:
        """
        Whether a body of a known length (C{Content-Length}) is within
        C{minimum_object_size} and C{maximum_object_size}; an unknown length
        may be, and is checked as it is written.
        """
        if length is None:
            return True
        if self.disk is None:
            return self._minimum_object_size <= length <= self.memory.max_object_size
        return self.disk.minimum_object_size <= length <= self.disk.largest_object

    def lookup(
        self, primary: str, request_headers: Iterable[tuple[bytes, bytes]]
    ) -> CacheHit | None:
        """
        Find the stored response for a request: the memory tier first, then
        the disk; a small disk hit is copied into memory.

        @param primary: The request's primary key
            (L{squeak.cache.keys.primary_key}).
        @param request_headers: The request's fields, for C{Vary}.
        @return: The hit, which the caller closes, or L{None}.
        """
        if not isinstance(request_headers, list):
            request_headers = list(request_headers)  # read once per variant
        entry = self.memory.get(primary, request_headers)
        generations = self.generations
        if entry is not None:
            if generations is None or generations.tags[entry.slot] == entry.generation:
                return entry.hit
            # Invalidated by another worker (PURGE, an unsafe method).
            self.memory.remove(primary)
        if self.disk is None:
            return None
        slot = generation = 0
        if generations is not None:
            # Read before the body: an invalidation that removes the body
            # after we read it changes the tag after this, too.
            slot = generations.slot(primary)
            generation = generations.tags[slot]
        hit = self.disk.get(primary, request_headers)
        if hit is None:
            return None
        body_file = self.disk.body(hit, primary)
        try:
            if self.memory.accepts(hit.meta.body_length):
                # Small: read and checked whole before anything is sent.
                body = body_file.read()
                body_file.close()
                self.memory.put(primary, hit.meta, body, slot, generation)
                return CacheHit(hit.meta, "disk", body=body)
            # Large: streamed, each block checked before it is handed out;
            # the first one now, so the commonest damage is a plain miss.
            body_file.check_first_block()
        except CorruptBodyError:
            body_file.close()
            return None
        except OSError as error:  # EIO reading a body
            body_file.close()
            self.disk._fault("read a body", hit.path, error)
            return None
        return CacheHit(hit.meta, "disk", file=cast(BinaryIO, body_file))

    def writer(self, primary: str, meta: StoredResponse) -> EntryWriter:
        """
        Start storing a response; see L{EntryWriter}.

        @param primary: The primary key.
        @param meta: The response's metadata, with the C{vary_key} of the
            request it answers; its C{body_length} is set on commit.
        """
        return EntryWriter(self, primary, meta)

    def update(self, primary: str, meta: StoredResponse) -> bool:
        """
        Replace a stored response's metadata after a 304 freshened it
        (L{squeak.cache.policy.freshen_stored}), keeping its body.

        With other workers on the directory, their memory copies still hold
        the old metadata (stale, so each would revalidate again): once the
        disk copy is freshened, the key's shared tag changes
        (L{squeak.cache.generations}), so that they drop their copies and
        read the freshened one from the disk; this process's own copy is
        the freshened one, and keeps serving under the new tag.

        @return: Whether the entry was still on disk.
        """
        on_disk = self.disk.update_meta(primary, meta) if self.disk is not None else False
        tag = None
        if on_disk and self.generations is not None:
            tag = self.generations.bump(primary)
        self.memory.update_meta(primary, meta, tag)
        return on_disk

    def purge(self, uri: str) -> bool:
        """
        Remove every stored response (all variants) for a URI, as the
        C{PURGE} method and C{python -m squeak purge} do.

        @return: Whether anything was removed.
        """
        primary = primary_key(b"GET", uri)
        in_memory = self.memory.remove(primary)
        on_disk = self.disk.remove(primary) if self.disk is not None else 0
        if self.generations is not None:
            # After the disk (L{squeak.cache.generations}): every other
            # worker's memory copy is stale from here on.
            self.generations.bump(primary)
        return bool(in_memory or on_disk)

    def variants(self, uri: str) -> list[tuple[StoredResponse, str]]:
        """
        What each tier holds for a URI (every Vary variant), with the
        tier's name, without counting as a use: the manager's C{objects}
        page.
        """
        primary = primary_key(b"GET", uri)
        found = [(entry.meta, "memory") for entry in self.memory.variants(primary)]
        if self.disk is not None:
            found += [(meta, "disk") for meta in self.disk.variants(primary)]
        return found

    def figures(self, *, disk: bool = True) -> dict[str, dict[str, int]]:
        """
        Objects, bytes and limit of the memory tier (this process's) and,
        if asked, of the disk tier (shared by the workers).
        """
        memory = self.memory
        figures = {
            "memory": {"objects": len(memory), "bytes": memory.size, "limit": memory.max_bytes}
        }
        if disk and self.disk is not None:
            figures["disk"] = self.disk.figures()
        return figures

    def generation_of(self, primary: str) -> tuple[int, int]:
        """A primary key's slot in the shared invalidation tags and its tag now."""
        if self.generations is None:
            return 0, 0
        slot = self.generations.slot(primary)
        return slot, self.generations.tags[slot]

    def invalidate(self, uri: str) -> bool:
        """
        Invalidate the stored responses for a URI (RFC 9111 §4.4), after an
        unsafe request (L{squeak.cache.policy.invalidation_targets}). squeak
        removes them.
        """
        return self.purge(uri)


# --- Collapsed forwarding ---------------------------------------------------------------


class TransientListener(Protocol):
    """A request waiting on another request's fetch (collapsed forwarding)."""

    def head_received(self, meta: StoredResponse) -> None:
        """The shared response's status and headers arrived."""

    def data_received(self, data: bytes) -> None:
        """A chunk of the shared response's body arrived."""

    def finished(self, complete: bool) -> None:
        """
        The fetch ended: C{complete} if the whole body arrived (it is now in
        the cache); otherwise the listener must fetch for itself.
        """


@dataclass(eq=False)
class Transient:
    """
    A fetch in flight that other requests for the same key may share.

    The leader (the request that started the fetch) reports the response
    with L{head}, L{data} and L{finish}. A request arriving before the body
    starts L{subscribe}s and receives the same response as it streams; one
    arriving later is refused and may wait with L{on_finished}, then look in
    the cache.

    @ivar key: The cache key (primary key, and the leader's secondary key).
    @ivar meta: The response head, once known.
    @ivar started: Whether body bytes have been reported.
    @ivar done: Whether the fetch has ended.
    """

    key: str
    _registry: CollapsedForwarding
    meta: StoredResponse | None = None
    started: bool = False
    done: bool = False
    _listeners: list[TransientListener] = field(default_factory=list)
    _callbacks: list[Callable[[bool], None]] = field(default_factory=list)

    @property
    def listeners(self) -> int:
        """How many requests share this fetch."""
        return len(self._listeners)

    def subscribe(self, listener: TransientListener) -> bool:
        """
        Share this fetch's response as it streams.

        @return: C{False} if the body has already started (or the fetch
            ended): the listener is not attached.
        """
        if self.started or self.done:
            return False
        self._listeners.append(listener)
        if self.meta is not None:
            listener.head_received(self.meta)
        return True

    def on_finished(self, callback: Callable[[bool], None]) -> None:
        """Call C{callback(complete)} when the fetch ends (at once if it has)."""
        if self.done:
            callback(False)
            return
        self._callbacks.append(callback)

    def head(self, meta: StoredResponse, *, shareable: bool) -> None:
        """
        The leader received the response head.

        @param shareable: Whether the response may be given to the other
            requests (it is being stored, so it is cacheable for them). If
            not, they are told to fetch for themselves and the key is freed.
        """
        if not shareable:
            self.finish(complete=False)
            return
        self.meta = meta
        for listener in list(self._listeners):
            listener.head_received(meta)

    def data(self, data: bytes) -> None:
        """The leader received body bytes."""
        if self.done:
            return
        self.started = True
        for listener in list(self._listeners):
            listener.data_received(data)

    def finish(self, *, complete: bool) -> None:
        """The fetch ended, completely (and committed to the cache) or not."""
        if self.done:
            return
        self.done = True
        self._registry._remove(self)
        listeners, self._listeners = self._listeners, []
        callbacks, self._callbacks = self._callbacks, []
        for listener in listeners:
            listener.finished(complete)
        for callback in callbacks:
            callback(complete)


class CollapsedForwarding:
    """
    The fetches in flight, by cache key: concurrent misses for one key make
    one origin request (Squid's C{collapsed_forwarding}).
    """

    def __init__(self) -> None:
        self._transients: dict[str, Transient] = {}

    def __len__(self) -> int:
        """How many fetches are in flight."""
        return len(self._transients)

    def get(self, key: str) -> Transient | None:
        """The fetch in flight for C{key}, if any."""
        return self._transients.get(key)

    def join(self, key: str) -> tuple[Transient, bool]:
        """
        Join the fetch for C{key}, starting one if there is none.

        @return: The transient, and whether the caller is its leader (and
            must fetch and report through it).
        """
        transient = self._transients.get(key)
        if transient is not None:
            return transient, False
        transient = Transient(key, self)
        self._transients[key] = transient
        return transient, True

    def release(self, key: str) -> bool:
        """
        End the fetch in flight for C{key}, if any, as incomplete: its
        waiters go on (each looks in the cache, or fetches), and the next
        request for the key leads a new fetch.  For PURGE, so that an
        operator can always unstick a URL without a restart; the leader's
        own later L{Transient.finish} is then a no-op.

        @return: Whether a fetch was in flight.
        """
        transient = self._transients.get(key)
        if transient is None:
            return False
        transient.finish(complete=False)
        return True

    def _remove(self, transient: Transient) -> None:
        """Forget an ended fetch (only if it is still the one registered)."""
        if self._transients.get(transient.key) is transient:
            del self._transients[transient.key]
