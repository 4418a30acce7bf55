"""
Cutting a message into the pieces a network might deliver it in, for the
split-independence tests of the HTTP readers (requests, responses, chunked
bodies): each reader must reach the same verdict and parse wherever the
bytes are split.

Imports nothing of squeak, so the pure modules' tests that use it stay
pure (tests/test_architecture.py checks what they load).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def pieces_of(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """
    Split C{data} into pieces of the given sizes (the rest in a last piece).
    """
    at = 0
    for size in sizes:
        if at >= len(data):
            return
        yield data[at : at + size]
        at += size
    if at < len(data):
        yield data[at:]
