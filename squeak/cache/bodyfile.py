# -*- test-case-name: tests.test_cache_faults -*-
"""
What a stored body file carries besides its bytes, and how it is read back
safely: a CRC-32 per L{BLOCK_SIZE} block, computed as the body is written
(L{Checksummer}), kept with the entry's metadata in its index row
(L{dump_meta}, L{load_meta}), and checked by L{VerifiedBody} before any
byte of a block is handed out, so a damaged body is never served.

No diskcache and no Twisted here: plain files and bytes.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

from squeak.cache.policy import StoredResponse
from squeak.cache.ranges import ShortReadError

__all__ = [
    "BLOCK_SIZE",
    "DECODE_ERRORS",
    "Checksummer",
    "CorruptBodyError",
    "VerifiedBody",
    "checksums_of",
    "dump_meta",
    "load_meta",
]

#: The version of the metadata L{dump_meta} writes.
_META_VERSION = 2

BLOCK_SIZE = 64 * 1024
"""
The bytes covered by one body checksum: the proxy's send chunk, so a block
is read, checked and sent whole, without slicing.
"""

#: What unpickling a damaged row may raise.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    struct.error,
)


def checksums_of(body: bytes) -> bytes:
    """The packed CRC-32 of each L{BLOCK_SIZE} block of a whole body."""
    return b"".join(
        struct.pack("<I", zlib.crc32(body[start : start + BLOCK_SIZE]))
        for start in range(0, len(body), BLOCK_SIZE)
    )


class Checksummer:
    """
    Computes the per-block CRC-32s of a body as it is written: free next to
    the write itself (about 0.3 ms per MiB, on bytes already in cache).
    """

    def __init__(self) -> None:
        self._sums: list[bytes] = []
        self._crc = 0
        self._filled = 0

    def update(self, data: bytes) -> None:
        """Add body bytes."""
        view = memoryview(data)
        while view:  # bounded: each pass consumes at least one byte
            room = BLOCK_SIZE - self._filled
            piece = view[:room]
            self._crc = zlib.crc32(piece, self._crc)
            self._filled += len(piece)
            view = view[len(piece) :]
            if self._filled == BLOCK_SIZE:
                self._sums.append(struct.pack("<I", self._crc))
                self._crc = 0
                self._filled = 0

    def digest(self) -> bytes:
        """The packed checksums of the blocks so far (the last may be short)."""
        tail = [struct.pack("<I", self._crc)] if self._filled else []
        return b"".join(self._sums + tail)


def dump_meta(meta: StoredResponse, checksums: bytes) -> bytes:
    """Serialise metadata and body checksums as a pickle of plain values only (no classes)."""
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
            checksums,
        ),
        protocol=5,
    )


def load_meta(data: bytes) -> tuple[StoredResponse, bytes] | None:
    """
    Read metadata written by L{dump_meta}; L{None} if from another version
    (version 1 had no checksums: its entries are dropped, not served
    unchecked) or not of the expected shape.

    @raise Exception: One of L{DECODE_ERRORS} for bytes that are no pickle.
    """
    values = pickle.loads(data)
    if not isinstance(values, tuple) or values[:1] != (_META_VERSION,) or len(values) != 11:
        return None
    (
        _,
        uri,
        status,
        reason,
        headers,
        request_time,
        response_time,
        vary_key,
        client,
        length,
        sums,
    ) = values
    if not isinstance(length, int) or not isinstance(sums, bytes):
        return None
    if len(sums) != 4 * -(-length // BLOCK_SIZE):
        return None
    meta = StoredResponse(
        uri, status, reason, headers, request_time, response_time, vary_key, client, length
    )
    return meta, sums


class CorruptBodyError(ShortReadError):
    """
    A stored body's bytes do not match the checksum recorded when it was
    stored. A L{ShortReadError}, so a response already started from it is
    aborted, never finished.
    """


class VerifiedBody:
    """
    A stored body read through its block checksums: each L{BLOCK_SIZE}
    block is read whole and checked before any byte of it is returned, so
    a damaged body is never handed out, not even in part. A read of the
    block where the damage lies raises L{CorruptBodyError} (and the entry is
    removed by C{on_damage}).

    A file checked whole once and unchanged since (same inode, size, mtime
    and ctime) is trusted: read straight through, with no checksum work, so
    a hot disk entry costs what it did before checksums.

    File-like for what the cache's readers use: L{read}, L{seek}, L{tell},
    L{close}.
    """

    def __init__(
        self,
        file: BinaryIO,
        length: int,
        checksums: bytes,
        *,
        trusted: bool = False,
        on_verified: Callable[[], None] = lambda: None,
        on_damage: Callable[[str], None] = lambda detail: None,
    ) -> None:
        self._file = file
        self._length = length
        self._checksums = checksums
        self._trusted = trusted
        self._on_verified = on_verified
        self._on_damage = on_damage
        self._position = 0
        self._block_index = -1
        self._block = b""
        self._checked: set[int] = set()
        self._blocks = -(-length // BLOCK_SIZE)

    @property
    def closed(self) -> bool:
        """Whether the body file is closed."""
        return self._file.closed

    def fileno(self) -> int:
        """The body file's descriptor."""
        return self._file.fileno()

    def close(self) -> None:
        """Close the body file."""
        self._file.close()

    def tell(self) -> int:
        """The position in the body."""
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to C{offset} (from the start, the position or the end)."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        """
        Up to C{size} bytes from the position (all the rest if negative),
        every one of them from a checked block.

        @raise CorruptBodyError: A block read does not match its checksum.
        """
        remaining = self._length - self._position
        if size < 0 or size > remaining:
            size = max(remaining, 0)
        if self._trusted:
            try:
                self._file.seek(self._position)
                data = self._file.read(size)
            except OSError as error:
                raise self._damaged(f"reading at {self._position}: {error}") from error
            self._position += len(data)
            return data
        pieces: list[bytes] = []
        while size > 0:  # bounded: each pass returns at least one byte or raises
            index = self._position // BLOCK_SIZE
            block = self._load(index)
            start = self._position - index * BLOCK_SIZE
            piece = block if start == 0 and size >= len(block) else block[start : start + size]
            pieces.append(piece)
            self._position += len(piece)
            size -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def check_first_block(self) -> None:
        """
        Check the first block now (before a response head is sent), so the
        commonest damage makes a miss rather than an aborted response.

        @raise CorruptBodyError: It does not match its checksum.
        """
        if not self._trusted and self._blocks:
            self._load(0)

    def _damaged(self, detail: str) -> CorruptBodyError:
        """Report damage (the entry is removed) and make the error to raise."""
        self._on_damage(detail)
        return CorruptBodyError(detail)

    def _load(self, index: int) -> bytes:
        """Read and check one block (the last one read is kept)."""
        if index == self._block_index:
            return self._block
        start = index * BLOCK_SIZE
        wanted = min(BLOCK_SIZE, self._length - start)
        try:
            self._file.seek(start)
            data = self._file.read(wanted)
        except OSError as error:
            raise self._damaged(f"reading block {index}: {error}") from error
        expected = struct.unpack_from("<I", self._checksums, 4 * index)[0]
        if len(data) != wanted or zlib.crc32(data) != expected:
            raise self._damaged(
                f"block {index} (bytes {start}-{start + wanted - 1}) fails its checksum"
            )
        self._block_index, self._block = index, data
        self._checked.add(index)
        if len(self._checked) == self._blocks:
            self._trusted = True
            self._on_verified()
        return data
