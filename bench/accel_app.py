"""
The WSGI application of bench/accel_bench.py, run under gunicorn (sync
workers): C{/big/N} (N bytes), C{/echo} (a few bytes).  With
C{ACCEL_BENCH_OCCUPANCY} set, each request appends C{start end} (seconds,
from the request's start until gunicorn closed its response, i.e. until the
worker was free again) to that file, for the workers' occupancy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_LOG = os.environ.get("ACCEL_BENCH_OCCUPANCY", "")
_BLOCK = b"x" * 65536


class _Timed:
    """The response body; its close() (called by gunicorn once written) logs the time."""

    def __init__(self, chunks: Iterable[bytes], started: float) -> None:
        self._chunks = chunks
        self._started = started

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if _LOG:
            line = f"{self._started:.6f} {time.time():.6f}\n".encode()
            fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    started = time.time()
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/big/"):
        size = int(path.split("/")[2])
        start_response("200 OK", [("Content-Length", str(size)), ("Cache-Control", "no-store")])
        chunks: Iterable[bytes] = (
            _BLOCK[: min(65536, size - offset)] for offset in range(0, size, 65536)
        )
    else:
        start_response("200 OK", [("Content-Length", "3"), ("Cache-Control", "no-store")])
        chunks = [b"ok\n"]
    return _Timed(chunks, started)
