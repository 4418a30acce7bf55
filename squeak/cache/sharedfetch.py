# -*- test-case-name: tests.test_cache_shared -*-
"""
Collapsed forwarding across worker processes: one origin fetch per URL for
all the workers sharing a cache directory, not one per worker.

Collapsed forwarding (L{squeak.cache.store.CollapsedForwarding}) is per
process: requests in one worker wait on that worker's fetch. A worker that
leads a fetch also claims the URL in the shared directory, with a marker
file C{inflight/<sha1 of the primary key>} created atomically
(C{O_CREAT | O_EXCL}) holding its PID and a deadline. A worker whose own
first request for the URL finds another worker's live marker does not
fetch: its requests wait on a local transient that L{RemoteWait} ends when
the marker goes (the leader finished: the entry is in the shared disk
tier, or it could not be stored), or after a bound; then they look in the
cache again and, not finding the entry, fetch for themselves (they do not
wait twice). A marker whose PID is gone or whose deadline passed is
ignored and replaced: a crashed or stuck leader costs a bounded wait,
never a stuck URL.

The wait polls the marker with a timer (one C{stat} per waiting URL per
L{RemoteWait.interval}), never blocking the reactor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

__all__ = ["INFLIGHT", "FetchMarkers", "RemoteWait"]

INFLIGHT = "inflight"
"""The markers' directory in the cache directory."""

#: What schedules a call: C{reactor.callLater}.
CallLater = Callable[[float, Callable[[], None]], Any]


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists (it may be another's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FetchMarkers:
    """
    The markers of fetches in flight in a cache directory.

    @ivar lease: Seconds a marker holds (its deadline): followers in other
        workers wait at most this long for its leader.
    @ivar pid: The PID written in this process's markers.
    """

    def __init__(
        self, directory: str, lease: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        """
        @raise OSError: If the markers' directory cannot be made.
        """
        self.directory = os.path.join(directory, INFLIGHT)
        self.lease = lease
        self._clock = clock
        self.pid = os.getpid()
        os.makedirs(self.directory, exist_ok=True)

    def path(self, primary: str) -> str:
        """The marker file of a primary key."""
        name = hashlib.sha1(primary.encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self.directory, name)

    def holder(self, primary: str) -> tuple[int, float] | None:
        """
        The live marker of another process for C{primary}: its PID and
        deadline; L{None} if there is none, or it is ours, stale, or
        unreadable.
        """
        try:
            with open(self.path(primary), "rb") as f:
                text = f.read(64)
            pid_text, deadline_text = text.split()
            pid, deadline = int(pid_text), float(deadline_text)
        except (OSError, ValueError):
            return None
        if pid == self.pid or deadline <= self._clock() or not _alive(pid):
            return None
        return pid, deadline

    def claim(self, primary: str) -> tuple[int, float] | None:
        """
        Claim the fetch of C{primary} for this process.

        @return: L{None} if claimed (or if markers cannot be written: then
            this process fetches, as without workers); else the live
            holder's PID and deadline.
        """
        path = self.path(primary)
        for _ in range(2):  # bounded: one stale marker replaced
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = self.holder(primary)
                if holder is not None:
                    return holder
                with contextlib.suppress(OSError):
                    os.remove(path)  # stale: its leader died or overran
                continue
            except OSError:
                return None
            try:
                os.write(fd, b"%d %.3f\n" % (self.pid, self._clock() + self.lease))
            except OSError:
                with contextlib.suppress(OSError):
                    os.remove(path)
            finally:
                os.close(fd)
            return None
        return None

    def release(self, primary: str) -> None:
        """Remove our marker for C{primary} (the fetch ended), if it is ours."""
        path = self.path(primary)
        try:
            with open(path, "rb") as f:
                pid = int(f.read(64).split()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid == self.pid:
            with contextlib.suppress(OSError):
                os.remove(path)

    def clear(self, primary: str) -> None:
        """Remove the marker for C{primary} whoever holds it (PURGE)."""
        with contextlib.suppress(OSError):
            os.remove(self.path(primary))


class RemoteWait:
    """
    Ends a local transient when another worker's fetch of its URL ends (its
    marker is gone), or after a bound: polled on a timer.
    """

    #: Seconds between two looks at the marker.
    interval = 0.05

    def __init__(
        self,
        markers: FetchMarkers,
        primary: str,
        finish: Callable[[], None],
        is_done: Callable[[], bool],
        call_later: CallLater,
        deadline: float,
    ) -> None:
        """
        @param finish: Ends the transient (as incomplete: its waiters look
            in the cache, then fetch).
        @param is_done: Whether it ended otherwise (a PURGE released it).
        @param deadline: The holder's deadline (wall clock): the most this
            waits.
        """
        self._markers = markers
        self._primary = primary
        self._finish = finish
        self._is_done = is_done
        self._call_later = call_later
        bound = max(0.0, min(deadline - markers._clock(), markers.lease))
        self._polls_left = int(bound / self.interval) + 1

    def start(self) -> None:
        """Start polling."""
        self._call_later(self.interval, self._poll)

    def _poll(self) -> None:
        if self._is_done():
            return
        self._polls_left -= 1
        if self._polls_left <= 0 or self._markers.holder(self._primary) is None:
            self._finish()
            return
        self._call_later(self.interval, self._poll)
