# -*- test-case-name: tests.test_net_deadlines -*-
"""
Many timeouts, checked by one timer.

Every miss sets two timeouts (the origin's answer, then its body's reads)
and almost always cancels them: they fire only when an origin misbehaves.
A Twisted C{callLater} per timeout puts a C{DelayedCall} in the reactor's
heap, whose entries are compared by a Python method on every push and pop;
for the 1 KiB miss benchmark that was 6 % of the CPU (docs/performance.md).

L{Deadlines} keeps the deadlines in a dict and sweeps it with one timer
every C{resolution} seconds while any is set: setting, moving or cancelling
one is a dict operation.  A timeout fires at its deadline or up to
C{resolution} later, never earlier; owners choose the resolution as a small
fraction of their shortest timeout.

The timer is lazy: cancelling the last timeout leaves it set, and the sweep
that finds nothing to watch sets no other.  A miss sets and cancels its
timeouts within a millisecond or so, and on a loaded proxy the dict empties
between misses: cancelling the timer there and scheduling a new one for the
next miss cost two C{callLater} and two C{DelayedCall.cancel} per miss
(about 5 % of a 1 KiB miss's instructions).  An idle process is left with at
most one sweep, C{resolution} seconds after its last timeout; L{close}
cancels it at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Deadlines", "deadline_resolution"]


def deadline_resolution(shortest_timeout: float) -> float:
    """
    The resolution for timeouts no shorter than C{shortest_timeout}: a
    tenth of it, at most a second and at least 10 ms.
    """
    return max(0.01, min(1.0, shortest_timeout / 10))


class Deadlines:
    """
    Timeouts keyed by their owner, swept every C{resolution} seconds.
    """

    def __init__(self, reactor: Any, resolution: float) -> None:
        """
        @param reactor: Provides C{seconds} and C{callLater}.
        @param resolution: Seconds between sweeps: how late a timeout may
            fire.
        """
        self._reactor = reactor
        self.resolution = resolution
        self._due: dict[Hashable, tuple[float, Callable[..., object], tuple[Any, ...]]] = {}
        self._sweep_call: Any = None

    def __len__(self) -> int:
        """How many timeouts are set."""
        return len(self._due)

    def set(
        self, key: Hashable, seconds: float, callback: Callable[..., object], *args: Any
    ) -> None:
        """
        Call C{callback(*args)} once C{seconds} have passed, unless C{key}'s
        timeout is set again or cancelled first.
        """
        self._due[key] = (self._reactor.seconds() + seconds, callback, args)
        if self._sweep_call is None:
            self._sweep_call = self._reactor.callLater(self.resolution, self._sweep)

    def cancel(self, key: Hashable) -> None:
        """
        Forget C{key}'s timeout, if it has one.  The timer stays (lazy): the
        next sweep, finding nothing to watch, sets no other.
        """
        self._due.pop(key, None)

    def close(self) -> None:
        """
        Forget every timeout and cancel the timer (at shutdown), so that no
        delayed call is left in the reactor.
        """
        self._due.clear()
        sweep, self._sweep_call = self._sweep_call, None
        if sweep is not None and sweep.active():
            sweep.cancel()

    def _sweep(self) -> None:
        self._sweep_call = None
        now = self._reactor.seconds()
        expired = [key for key, (deadline, _, _) in self._due.items() if deadline <= now]
        for key in expired:
            # A callback may cancel or set others: look each up again.
            entry = self._due.pop(key, None)
            if entry is not None:
                _, callback, args = entry
                callback(*args)
        # Nothing left to watch: no timer either, until the next set.
        if self._due and self._sweep_call is None:
            self._sweep_call = self._reactor.callLater(self.resolution, self._sweep)
