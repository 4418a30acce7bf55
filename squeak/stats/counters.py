# -*- test-case-name: tests.test_stats_counters -*-
"""
The counters squeak keeps per process, and their sum over processes.

The hot path pays for a few dictionary and list increments per request
(L{Counters.request_done}), nothing else: no labelled metric objects, no
locks, no formatting.  Everything else is derived when someone asks (a
manager page, a Prometheus scrape): hit ratios from the result codes,
hits by tier from them too, percentiles from the fixed histogram.

A process's counters leave it as a L{snapshot} (plain JSON-able values),
which L{squeak.stats.table} publishes for the other workers; L{merge}
adds snapshots up into the service's figures.  Counters (monotonic) are
summed over every process that ever served, gauges (connections open
now) over the live ones only, and the shared disk tier's figures are
taken from one process, not summed (every worker sees the same disk).

This module is pure: no Twisted, no clock, no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DURATION_BUCKETS",
    "GAUGES",
    "HIT_RESULTS",
    "METHODS",
    "Counters",
    "ServiceFigures",
    "Window",
    "merge",
    "status_class",
    "window_deltas",
]

#: Upper bounds of the request-duration histogram, in seconds (Prometheus
#: C{le}); the last bucket (+Inf) is implied.  Fixed, so that snapshots of
#: every process add up bucket by bucket.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

#: Methods counted under their own name; any other (a client may send any
#: token) is counted as C{OTHER}, so that the label's values stay bounded.
METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PURGE"}
)

#: Result codes that answered from the cache without the origin's body:
#: what a hit ratio counts as a hit (Squid counts TCP_IMS_HIT and a
#: refresh the origin confirmed, TCP_REFRESH_UNMODIFIED, too).
HIT_RESULTS: frozenset[str] = frozenset(
    {"TCP_HIT", "TCP_MEM_HIT", "TCP_IMS_HIT", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD"}
)

#: Where each hit result's body came from, for C{hits by tier}.
HIT_TIERS: Mapping[str, str] = {
    "TCP_MEM_HIT": "memory",
    "TCP_HIT": "disk",
}

#: The gauges a process reports (summed over the live processes).
GAUGES: tuple[str, ...] = (
    "client_connections",
    "tunnels",
    "upstream_open",
    "upstream_idle",
    "memory_objects",
    "memory_bytes",
    "memory_limit",
    "open_files",
    "open_files_limit",
    "cpu_seconds",
    "rss_bytes",
)


def status_class(status: int) -> str:
    """
    A status code's class as a label: C{"2xx"} ... C{"5xx"}, or C{"none"}
    when nothing was sent (status 0: the client left first).
    """
    if 100 <= status <= 999:
        return f"{status // 100}xx"
    return "none"


#: status // 100 -> its label (a status is three digits; 0: none sent).
_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx")


def _request_rows(requests: dict[str, dict[str, list[int]]]) -> list[list[Any]]:
    """
    L{Counters.requests} as C{[method, result, status class, requests,
    bytes]} rows, for the cells that counted something.
    """
    rows: list[list[Any]] = []
    for result, by_method in requests.items():
        for method, cell in by_method.items():
            for klass in range(10):
                if cell[klass]:
                    rows.append(
                        [method, str(result), _CLASSES[klass], cell[klass], cell[10 + klass]]
                    )
    return rows


class Counters:
    """
    One process's monotonic counters, incremented where things happen.

    @ivar requests: Result code -> method -> 20 integers: requests by
        status class (C{status // 100}, 0 for nothing sent), then bytes
        sent to clients by status class.
    @ivar durations: Requests per histogram bucket (L{DURATION_BUCKETS},
        then +Inf).
    @ivar duration_sum: Seconds, summed over requests.
    @ivar denied: Access-rule refusals by the rule that refused
        (C{"default"} when no rule matched).
    @ivar auth_checks: Proxy authentication checks by outcome (C{ok},
        C{missing}, C{malformed}, C{wrong}, C{unconfigured}).
    @ivar collapsed_waits: Requests that waited for an identical fetch in
        flight (collapsed forwarding).
    @ivar client_bytes_in: Bytes received from clients.
    @ivar client_connections: Client connections accepted.
    @ivar tunnels_opened: CONNECT tunnels and upgrades relayed.
    @ivar tunnels_closed: Those that ended.
    """

    __slots__ = (
        "auth_checks",
        "client_bytes_in",
        "client_connections",
        "collapsed_waits",
        "denied",
        "duration_sum",
        "durations",
        "requests",
        "tunnels_closed",
        "tunnels_opened",
    )

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, list[int]]] = {}
        self.durations: list[int] = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.denied: dict[str, int] = {}
        self.auth_checks: dict[str, int] = {}
        self.collapsed_waits = 0
        self.client_bytes_in = 0
        self.client_connections = 0
        self.tunnels_opened = 0
        self.tunnels_closed = 0

    def request_done(
        self, method: str, result: str, status: int, size: int, seconds: float
    ) -> None:
        """
        Count one finished request (where its access-log line is written).

        The one per-request call: two dictionary lookups (strings, whose
        hashes are cached), two list increments and a bisection.

        @param method: The request method, as sent.
        @param result: Squid's result code (C{TCP_MISS} ...).
        @param status: The status sent (three digits), or 0.
        @param size: Bytes sent to the client, head included.
        @param seconds: How long the request took.
        """
        by_method = self.requests.get(result)
        if by_method is None:
            by_method = self.requests[result] = {}
        cell = by_method.get(method)
        if cell is None:
            # Any token is a method: an unknown one is counted as OTHER,
            # and never kept under its own name (memory stays bounded).
            name = method if method in METHODS else "OTHER"
            cell = by_method.get(name)
            if cell is None:
                cell = by_method[name] = [0] * 20
        klass = status // 100
        cell[klass] += 1
        cell[10 + klass] += size
        self.durations[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def denied_by(self, rule: str | None) -> None:
        """Count an access-rule refusal by its rule (C{None}: the default)."""
        name = rule or "default"
        self.denied[name] = self.denied.get(name, 0) + 1

    def auth_checked(self, outcome: str) -> None:
        """Count a proxy authentication check by its outcome."""
        self.auth_checks[outcome] = self.auth_checks.get(outcome, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """
        The counters as plain JSON-able values (L{merge} reads them).
        """
        return {
            "requests": _request_rows(self.requests),
            "durations": list(self.durations),
            "duration_sum": self.duration_sum,
            "denied": dict(self.denied),
            "auth_checks": dict(self.auth_checks),
            "collapsed_waits": self.collapsed_waits,
            "client_bytes_in": self.client_bytes_in,
            "client_connections": self.client_connections,
            "tunnels_opened": self.tunnels_opened,
            "tunnels_closed": self.tunnels_closed,
        }


#: The plain counters of a snapshot, summed as they are.
_SCALARS = (
    "collapsed_waits",
    "client_bytes_in",
    "client_connections",
    "tunnels_opened",
    "tunnels_closed",
)


@dataclass
class ServiceFigures:
    """
    The whole service's figures: the counters of every process that
    served, the gauges of the live ones.

    @ivar requests: C{(method, result, status class)} -> C{(requests,
        bytes)}.
    @ivar durations: Requests per bucket (L{DURATION_BUCKETS}, then +Inf),
        not cumulative.
    @ivar gauges: L{GAUGES} summed over the live processes.
    @ivar disk: The shared disk tier's figures (C{objects}, C{bytes},
        C{limit}), from one process; empty without a disk tier.
    @ivar windows: L{Window}s by length in seconds, summed over the live
        processes.
    @ivar processes: How many live processes reported.
    """

    requests: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    durations: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    denied: dict[str, int] = field(default_factory=dict)
    auth_checks: dict[str, int] = field(default_factory=dict)
    scalars: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SCALARS, 0))
    gauges: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GAUGES, 0))
    disk: dict[str, int] = field(default_factory=dict)
    windows: dict[int, Window] = field(default_factory=dict)
    processes: int = 0

    @property
    def total_requests(self) -> int:
        """Every request counted."""
        return sum(count for count, _ in self.requests.values())

    @property
    def total_bytes_out(self) -> int:
        """Every byte sent to clients."""
        return sum(size for _, size in self.requests.values())

    def by_result(self) -> dict[str, tuple[int, int]]:
        """C{(requests, bytes)} by result code."""
        totals: dict[str, tuple[int, int]] = {}
        for (_, result, _), (count, size) in self.requests.items():
            old = totals.get(result, (0, 0))
            totals[result] = (old[0] + count, old[1] + size)
        return totals

    def hits_by_tier(self) -> dict[str, int]:
        """Hits served from the memory and the disk tier."""
        tiers = dict.fromkeys(("memory", "disk"), 0)
        for result, (count, _) in self.by_result().items():
            tier = HIT_TIERS.get(result)
            if tier is not None:
                tiers[tier] += count
        return tiers

    def hits(self) -> tuple[int, int]:
        """C{(requests, bytes)} answered from the cache (L{HIT_RESULTS})."""
        count = size = 0
        for result, (n, b) in self.by_result().items():
            if result in HIT_RESULTS:
                count += n
                size += b
        return count, size

    def quantile(self, q: float) -> float | None:
        """
        The request duration below which a fraction C{q} of requests took,
        interpolated within its histogram bucket (as Prometheus's
        C{histogram_quantile} does); L{None} without requests.
        """
        total = sum(self.durations)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        lower = 0.0
        for index, count in enumerate(self.durations):
            upper = DURATION_BUCKETS[index] if index < len(DURATION_BUCKETS) else None
            if count and seen + count >= rank:
                if upper is None:
                    return lower  # in +Inf: the highest finite bound
                return lower + (upper - lower) * (rank - seen) / count
            seen += count
            if upper is not None:
                lower = upper
        return lower


@dataclass(frozen=True)
class Window:
    """
    What happened over the last C{seconds} (or since the start, if the
    process is younger: C{covered} says how long it was).

    @ivar requests: Requests.
    @ivar hits: Of which answered from the cache.
    @ivar bytes: Bytes sent to clients.
    @ivar hit_bytes: Of which from the cache.
    @ivar covered: Seconds the figures cover.
    """

    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    covered: float = 0.0

    def __add__(self, other: Window) -> Window:
        return Window(
            self.requests + other.requests,
            self.hits + other.hits,
            self.bytes + other.bytes,
            self.hit_bytes + other.hit_bytes,
            max(self.covered, other.covered),
        )

    def ratios(self) -> tuple[float | None, float | None]:
        """The hit ratios by requests and by bytes (L{None}: no traffic)."""
        return (
            self.hits / self.requests if self.requests else None,
            self.hit_bytes / self.bytes if self.bytes else None,
        )


def totals_for_windows(snapshot: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """
    C{(requests, hits, bytes, hit bytes)} of one snapshot: what a process
    samples over time for L{window_deltas}.
    """
    requests = hits = size = hit_size = 0
    for _, result, _, count, sent in snapshot["requests"]:
        requests += count
        size += sent
        if result in HIT_RESULTS:
            hits += count
            hit_size += sent
    return requests, hits, size, hit_size


def window_deltas(
    samples: Iterable[tuple[float, tuple[int, int, int, int]]],
    now: float,
    current: tuple[int, int, int, int],
    seconds: int,
) -> Window:
    """
    The figures of the last C{seconds}: the current totals minus the
    newest sample at least that old (or the oldest there is, for a
    younger process).

    @param samples: C{(time, totals)}, oldest first, the first one taken
        at the start (all zero).
    """
    base: tuple[float, tuple[int, int, int, int]] | None = None
    for sample in samples:
        if base is None or sample[0] <= now - seconds:
            base = sample
        else:
            break
    if base is None:
        return Window(covered=0.0)
    when, old = base
    requests, hits, size, hit_size = (new - was for new, was in zip(current, old, strict=True))
    return Window(requests, hits, size, hit_size, covered=now - when)


def merge(
    live: Iterable[Mapping[str, Any]], retired: Iterable[Mapping[str, Any]] = ()
) -> ServiceFigures:
    """
    Add snapshots up: the counters of live and retired processes, the
    gauges and windows of the live ones, the disk figures of the live
    process that measured them last.

    A snapshot holds L{Counters.snapshot}'s keys, and, from a live
    process, C{gauges}, C{windows} (seconds -> L{Window} fields) and
    C{disk} (with C{measured}, a time).
    """
    figures = ServiceFigures()
    newest_disk = -1.0
    for snapshot, is_live in [*((s, True) for s in live), *((s, False) for s in retired)]:
        _add_counters(figures, snapshot)
        if not is_live:
            continue
        figures.processes += 1
        for name, value in snapshot.get("gauges", {}).items():
            if name in figures.gauges:
                figures.gauges[name] += value
        for seconds, values in snapshot.get("windows", {}).items():
            window = Window(**values)
            key = int(seconds)
            figures.windows[key] = figures.windows.get(key, Window()) + window
        disk = snapshot.get("disk")
        if disk and disk.get("measured", 0.0) > newest_disk:
            newest_disk = disk["measured"]
            figures.disk = {k: v for k, v in disk.items() if k != "measured"}
    return figures


def _add_counters(figures: ServiceFigures, snapshot: Mapping[str, Any]) -> None:
    """Add one snapshot's counters to C{figures}."""
    requests = figures.requests
    for method, result, klass, count, size in snapshot.get("requests", ()):
        key = (method, result, klass)
        old = requests.get(key, (0, 0))
        requests[key] = (old[0] + count, old[1] + size)
    for index, count in enumerate(snapshot.get("durations", ())):
        if index < len(figures.durations):
            figures.durations[index] += count
    figures.duration_sum += snapshot.get("duration_sum", 0.0)
    for table in ("denied", "auth_checks"):
        mine: dict[str, int] = getattr(figures, table)
        for name, count in snapshot.get(table, {}).items():
            mine[name] = mine.get(name, 0) + count
    for name in _SCALARS:
        figures.scalars[name] += snapshot.get(name, 0)


def fold(into: Mapping[str, Any], retired: Mapping[str, Any]) -> dict[str, Any]:
    """
    One snapshot of the counters of two: what the master keeps of a worker
    that exited (gauges and windows are dropped: it serves no longer).
    """
    figures = ServiceFigures()
    _add_counters(figures, into)
    _add_counters(figures, retired)
    return counters_snapshot(figures)


def counters_snapshot(figures: ServiceFigures) -> dict[str, Any]:
    """The counters of C{figures} in L{Counters.snapshot}'s form."""
    return {
        "requests": [[*key, *cell] for key, cell in figures.requests.items()],
        "durations": list(figures.durations),
        "duration_sum": figures.duration_sum,
        "denied": dict(figures.denied),
        "auth_checks": dict(figures.auth_checks),
        **figures.scalars,
    }
