# -*- test-case-name: tests.test_proxy_stats -*-
"""
A process's figures, and the whole service's: the counters the exchanges
increment (L{squeak.stats.counters.Counters}, in L{ProxyContext.counters}),
the gauges read from the running proxy when asked (connections, pools,
the cache's tiers, descriptors, CPU and memory), and, with workers, the
other workers' figures read from the shared table
(L{squeak.stats.table.StatsTable}).

L{ServiceStats} publishes this process's snapshot into its slot of the
table every L{PUBLISH_INTERVAL} seconds and before answering, and keeps
one sample of its totals a minute for the 5- and 60-minute hit ratios.
"""

from __future__ import annotations

import os
import resource
from collections import deque
from typing import Any

from twisted.logger import Logger

from squeak.proxy.context import ProxyContext
from squeak.stats.counters import (
    Counters,
    ServiceFigures,
    merge,
    totals_for_windows,
    window_deltas,
)
from squeak.stats.table import PUBLISH_INTERVAL, SnapshotTooLargeError, StatsTable

__all__ = ["WINDOWS", "ServiceStats", "process_counters", "process_gauges"]

#: The windows of the recent hit ratios, in seconds (Squid's info page
#: shows 5 and 60 minutes).
WINDOWS = (300, 3600)

#: Seconds between two samples of the totals kept for the windows.
SAMPLE_INTERVAL = 60.0

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_gauges() -> dict[str, float]:
    """
    This process's descriptors in use and their limit, its CPU time
    (user and system) and resident memory, from C{/proc} and
    C{getrlimit}.
    """
    times = os.times()
    gauges: dict[str, float] = {
        "cpu_seconds": times.user + times.system,
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
    try:
        gauges["open_files"] = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/statm", "rb") as statm:
            gauges["rss_bytes"] = int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        pass
    return gauges


#: What outlives a reload in one process (L{process_counters}).
_PROCESS: dict[str, Any] = {}


def process_counters() -> Counters:
    """
    This process's counters, the same for every service tree it builds:
    a reload in a single process (L{squeak.master.SingleProcess}) keeps
    counting where it was, as Prometheus counters must.
    """
    counters = _PROCESS.get("counters")
    if counters is None:
        counters = _PROCESS["counters"] = Counters()
    return counters


class ServiceStats:
    """
    The figures of this process and of the service it is part of.

    @ivar started: When this process started serving.
    @ivar table: The shared table and this process's slot, with workers.
    """

    _log = Logger()

    def __init__(self, context: ProxyContext, table: tuple[StatsTable, int] | None = None) -> None:
        self._context = context
        self._reactor = context.reactor
        self.table = table
        shared = context.counters is _PROCESS.get("counters")
        started = _PROCESS.get("started") if shared else None
        if started is None:
            started = self._reactor.seconds()
            if shared:
                _PROCESS["started"] = started
        self.started: float = started
        samples = _PROCESS.get("samples") if shared else None
        if samples is None:
            samples = deque(
                [(self.started, (0, 0, 0, 0))], maxlen=int(max(WINDOWS) / SAMPLE_INTERVAL) + 2
            )
            if shared:
                _PROCESS["samples"] = samples
        self._samples: deque[tuple[float, tuple[int, int, int, int]]] = samples
        self._call: Any = None
        self._too_large_said = False

    # -- publishing -----------------------------------------------------------

    def start(self) -> None:
        """Publish now and every L{PUBLISH_INTERVAL} seconds."""
        self._tick()

    def stop(self) -> None:
        """Publish a last time and stop the timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.publish()

    def _tick(self) -> None:
        if self.table is not None:
            self.publish()
            interval = PUBLISH_INTERVAL
        else:
            # Alone, nobody reads a published snapshot: only the windows'
            # samples need taking, once a minute.
            self._sample(self._reactor.seconds(), self._context.counters.snapshot())
            interval = SAMPLE_INTERVAL
        self._call = self._reactor.callLater(interval, self._tick)

    def _sample(self, now: float, snapshot: dict[str, Any]) -> tuple[int, int, int, int]:
        """Keep a sample of the totals once a minute; the totals now."""
        totals = totals_for_windows(snapshot)
        if now - self._samples[-1][0] >= SAMPLE_INTERVAL:
            self._samples.append((now, totals))
        return totals

    def publish(self, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """
        Put this process's snapshot in its slot (with workers).

        @return: The snapshot.
        """
        if snapshot is None:
            snapshot = self.snapshot()
        if self.table is not None:
            table, slot = self.table
            try:
                table.publish(slot, snapshot)
            except SnapshotTooLargeError as error:
                if not self._too_large_said:
                    self._too_large_said = True
                    self._log.warn(
                        "stats: not shared with the other workers: {error}", error=error
                    )
        return snapshot

    # -- figures ----------------------------------------------------------------

    def snapshot(self, *, disk: bool = False) -> dict[str, Any]:
        """
        This process's counters, gauges and windows (and, if asked, the
        shared disk tier's figures, which cost an index query).
        """
        context = self._context
        now = self._reactor.seconds()
        snapshot = context.counters.snapshot()
        # Bytes read on connections still open (closed ones are counted).
        snapshot["client_bytes_in"] += sum(
            getattr(channel, "bytes_received", 0) for channel in context.channels
        )
        totals = self._sample(now, snapshot)
        upstream_open, upstream_idle = context.upstream.pool_sizes()
        counters = context.counters
        gauges: dict[str, float] = {
            "client_connections": len(context.channels),
            "tunnels": counters.tunnels_opened - counters.tunnels_closed,
            "upstream_open": upstream_open,
            "upstream_idle": upstream_idle,
            **process_gauges(),
        }
        tiers = context.cache.figures(disk=disk)
        memory = tiers.get("memory")
        if memory is not None:
            gauges["memory_objects"] = memory["objects"]
            gauges["memory_bytes"] = memory["bytes"]
            gauges["memory_limit"] = memory["limit"]
        snapshot["gauges"] = gauges
        snapshot["pid"] = os.getpid()
        snapshot["started"] = self.started
        snapshot["windows"] = {
            str(seconds): vars(window_deltas(self._samples, now, totals, seconds))
            for seconds in WINDOWS
        }
        if tiers.get("disk"):
            snapshot["disk"] = {**tiers["disk"], "measured": now}
        return snapshot

    def figures(self) -> tuple[ServiceFigures, list[dict[str, Any]]]:
        """
        The whole service's figures: this process's, fresh (disk tier
        included), and the other workers' as last published.

        @return: The figures, and the live processes' snapshots.
        """
        mine = self.publish(self.snapshot(disk=True))
        if self.table is None:
            return merge([mine]), [mine]
        table, slot = self.table
        others, retired = table.read_all(exclude=slot)
        snapshots = [mine, *others]
        return merge(snapshots, [retired] if retired else []), snapshots
