# -*- test-case-name: tests.test_cache_faults -*-
"""
The cache's own faults, logged once per cause.

A cache is an optimisation: when its disk fills, goes read-only or holds a
damaged file, squeak goes on answering from the origin. What went wrong must
still reach the operator, once and clearly: with a full disk every miss
would fail the same way, and a line per request would bury the log. So a
fault is keyed by its cause (what was being done and the C{errno} or SQLite
error code) and logged the first time, with the path and the error; the
same cause is logged again at most every L{FaultLog.repeat_after} seconds,
with the number of occurrences left out meanwhile.

This module only formats and rate-limits; it does no I/O of its own.
"""

from __future__ import annotations

import errno as errno_module
import os
import sqlite3
import time
from collections.abc import Callable

from twisted.logger import Logger

__all__ = ["FaultLog", "announce", "error_code", "filesystem_state"]

_log = Logger(namespace="squeak.cache")


def error_code(error: BaseException) -> str:
    """
    The code that names an error's cause: C{errno 28 ENOSPC} for an
    L{OSError}, C{sqlite 13 SQLITE_FULL} for a SQLite error, else the
    exception's class name.
    """
    if isinstance(error, OSError) and error.errno is not None:
        name = errno_module.errorcode.get(error.errno, "?")
        return f"errno {error.errno} {name}"
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return f"sqlite {code} {getattr(error, 'sqlite_errorname', '?')}"
    return type(error).__name__


class FaultLog:
    """
    Logs cache faults, each cause once per L{repeat_after} seconds.

    @ivar repeat_after: Seconds before the same cause is logged again.
    @ivar counts: How many times each cause occurred (for tests and the
        manager pages).
    """

    repeat_after = 600.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def report(self, what: str, path: str, error: BaseException, consequence: str) -> bool:
        """
        A cache operation failed.

        @param what: What was being done (C{"write a body"}), the first half
            of the cause.
        @param path: The file or directory concerned.
        @param error: The error; its C{errno} or SQLite code is the second
            half of the cause.
        @param consequence: What squeak does about it, for the operator.
        @return: Whether a line was logged.
        """
        cause = (what, error_code(error))
        self.counts[cause] = self.counts.get(cause, 0) + 1
        now = self._clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.repeat_after:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return False
        self._last[cause] = now
        suppressed = self._suppressed.pop(cause, 0)
        _log.warn(
            "squeak cache: cannot {what}: {path}: {code}: {error}; {consequence}"
            " (logged once per cause every {every:.0f} s{more})",
            what=what,
            path=path,
            code=cause[1],
            error=_describe(error),
            consequence=consequence,
            every=self.repeat_after,
            more=f"; {suppressed} more since" if suppressed else "",
        )
        return True


def _describe(error: BaseException) -> str:
    """An error's message without the path (already shown) or the errno."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def announce(message: str) -> None:
    """
    Log one line about the cache as a whole (the index moved aside, the disk
    tier disabled at start-up): events that happen once, not per request.
    """
    _log.warn("{text}", text=message)


def filesystem_state(path: str) -> str | None:
    """
    What is wrong with the file system holding C{path}, if it is read-only
    or full (SQLite reports both as a failure to open or to write, without
    saying which): C{"read-only file system"}, C{"no space left"}, or
    L{None}.
    """
    with_path = path
    for _ in range(64):  # bounded: up to the first directory that exists
        if os.path.exists(with_path):
            break
        with_path = os.path.dirname(with_path) or "."
    try:
        state = os.statvfs(with_path)
    except OSError:
        return None
    if state.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if state.f_bavail == 0 or state.f_favail == 0:
        return "no space left"
    return None
