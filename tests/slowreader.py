"""
A slow client for the backpressure tests: reads a socket at a fixed pace,
far below what a sender can push, sampling a process's memory as it goes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def read_slowly(
    s: socket.socket,
    received: int,
    limit: int,
    rss_kib: Callable[[], int],
    *,
    rate: float = 64e6,
    timeout: float = 120.0,
) -> tuple[int, int]:
    """
    Read C{s} at about C{rate} bytes per second until C{limit} bytes were
    received (counting the C{received} already read), the peer closes, or
    C{timeout} seconds pass.

    @param rss_kib: Samples the memory to watch, every 32 reads.
    @return: The bytes received in all, and the highest sample.
    """
    peak = rss_kib()
    started = time.monotonic()
    deadline = started + timeout
    reads = 0
    while received < limit and time.monotonic() < deadline:
        chunk = s.recv(256 * 1024)
        if not chunk:
            break
        received += len(chunk)
        reads += 1
        ahead = received / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        if reads % 32 == 0:
            peak = max(peak, rss_kib())
    return received, peak
