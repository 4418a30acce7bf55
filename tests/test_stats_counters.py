"""
Tests for L{squeak.stats.counters}: what one request moves, and how
snapshots of several processes add up.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from squeak.stats.counters import (
    DURATION_BUCKETS,
    Counters,
    Window,
    fold,
    merge,
    status_class,
    totals_for_windows,
    window_deltas,
)


def _counted(*requests: tuple[str, str, int, int, float]) -> Counters:
    counters = Counters()
    for request in requests:
        counters.request_done(*request)
    return counters


class CountersTests(SynchronousTestCase):
    """
    L{Counters.request_done} and the other increments.
    """

    def test_request_cells(self) -> None:
        """
        Requests are counted by method, result and status class, with the
        bytes sent; an unknown method is OTHER (a bounded label).
        """
        counters = _counted(
            ("GET", "TCP_MISS", 200, 100, 0.01),
            ("GET", "TCP_MISS", 204, 50, 0.01),
            ("GET", "TCP_MEM_HIT", 200, 10, 0.0001),
            ("BREW", "TCP_MISS", 501, 7, 0.0),
        )
        self.assertEqual(
            sorted(counters.snapshot()["requests"]),
            [
                ["GET", "TCP_MEM_HIT", "2xx", 1, 10],
                ["GET", "TCP_MISS", "2xx", 2, 150],
                ["OTHER", "TCP_MISS", "5xx", 1, 7],
            ],
        )
        self.assertNotIn("BREW", counters.requests["TCP_MISS"])

    def test_duration_buckets(self) -> None:
        """
        A duration falls in the first bucket whose bound is not below it
        (Prometheus's C{le}); beyond the last bound, in +Inf.
        """
        rows = [(0.0, 0), (0.001, 0), (0.0011, 1), (0.01, 3), (60.0, 14), (61.0, 15)]
        wrong = []
        for seconds, bucket in rows:
            counters = _counted(("GET", "TCP_MISS", 200, 0, seconds))
            if counters.durations.index(1) != bucket:
                wrong.append((seconds, counters.durations.index(1), bucket))
        self.assertEqual(wrong, [])
        self.assertEqual(len(DURATION_BUCKETS) + 1, 16)

    def test_status_class(self) -> None:
        """Status classes as labels; nothing sent is C{none}."""
        self.assertEqual(
            [status_class(s) for s in (0, 101, 200, 304, 404, 503, 999, 1000)],
            ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "9xx", "none"],
        )

    def test_snapshot_is_json(self) -> None:
        """A snapshot survives a JSON round trip unchanged."""
        counters = _counted(("GET", "TCP_MISS", 200, 100, 0.01), ("HEAD", "TCP_HIT", 0, 0, 0.2))
        counters.denied_by("deny all")
        counters.denied_by(None)
        counters.auth_checked("wrong")
        counters.collapsed_waits = 3
        snapshot = counters.snapshot()
        self.assertEqual(json.loads(json.dumps(snapshot)), snapshot)
        self.assertEqual(snapshot["denied"], {"deny all": 1, "default": 1})
        self.assertIn(["HEAD", "TCP_HIT", "none", 1, 0], snapshot["requests"])


class MergeTests(SynchronousTestCase):
    """
    L{merge}: the service's figures from the processes' snapshots.
    """

    def _worker(self, requests: int, *, connections: int, disk_time: float) -> dict[str, object]:
        counters = Counters()
        for _ in range(requests):
            counters.request_done("GET", "TCP_MEM_HIT", 200, 10, 0.001)
        counters.request_done("GET", "TCP_MISS", 200, 90, 0.3)
        snapshot: dict[str, object] = counters.snapshot()
        snapshot["gauges"] = {"client_connections": connections, "memory_objects": 2}
        snapshot["disk"] = {
            "objects": int(disk_time),
            "bytes": 1,
            "limit": 9,
            "measured": disk_time,
        }
        snapshot["windows"] = {"300": vars(Window(requests + 1, requests, 100, 10, 30.0))}
        return snapshot

    def test_counters_sum_over_live_and_retired(self) -> None:
        """
        Counters add up over live and retired processes; gauges and
        windows over the live ones only; the disk's figures come from the
        newest measurement, not a sum.
        """
        live = [
            self._worker(3, connections=2, disk_time=5.0),
            self._worker(4, connections=1, disk_time=7.0),
        ]
        retired = fold({}, self._worker(10, connections=50, disk_time=9.0))
        figures = merge(live, [retired])
        self.assertEqual(figures.total_requests, 4 + 5 + 11)
        self.assertEqual(figures.hits(), (17, 170))
        self.assertEqual(figures.hits_by_tier(), {"memory": 17, "disk": 0})
        self.assertEqual(figures.gauges["client_connections"], 3)
        self.assertEqual(figures.gauges["memory_objects"], 4)
        self.assertEqual(figures.disk, {"objects": 7, "bytes": 1, "limit": 9})
        self.assertEqual(figures.processes, 2)
        self.assertEqual(figures.windows[300], Window(9, 7, 200, 20, 30.0))
        self.assertEqual(sum(figures.durations), 20)

    def test_fold_keeps_counters_only(self) -> None:
        """
        Folding a retired worker into slot 0's counters adds its counters
        and drops its gauges.
        """
        first = fold({}, self._worker(1, connections=5, disk_time=1.0))
        both = fold(first, self._worker(2, connections=5, disk_time=1.0))
        self.assertNotIn("gauges", both)
        self.assertEqual(merge([], [both]).total_requests, 2 + 3)

    def test_quantile(self) -> None:
        """
        Quantiles interpolate within the histogram bucket, as
        C{histogram_quantile} does.
        """
        figures = merge([_counted(*[("GET", "TCP_MISS", 200, 0, 0.004)] * 10).snapshot()])
        # All ten in (0.0025, 0.005]: the median is half-way through it.
        self.assertAlmostEqual(figures.quantile(0.5) or 0, 0.00375)
        self.assertIsNone(merge([]).quantile(0.5))


class WindowTests(SynchronousTestCase):
    """
    L{window_deltas}: the figures of the last minutes from samples.
    """

    def test_deltas_from_the_sample_old_enough(self) -> None:
        """
        The window starts at the newest sample at least its length old.
        """
        samples = [(0.0, (0, 0, 0, 0)), (60.0, (10, 5, 100, 50)), (400.0, (20, 10, 200, 100))]
        window = window_deltas(samples, 500.0, (30, 20, 300, 200), 300)
        self.assertEqual(window, Window(20, 15, 200, 150, 440.0))
        self.assertEqual(window.ratios(), (0.75, 0.75))

    def test_young_process(self) -> None:
        """A process younger than the window covers its whole life."""
        window = window_deltas([(100.0, (0, 0, 0, 0))], 130.0, (4, 1, 40, 0), 3600)
        self.assertEqual(window, Window(4, 1, 40, 0, 30.0))
        self.assertEqual(Window().ratios(), (None, None))

    def test_totals_for_windows(self) -> None:
        """Hits are the results that did not take the origin's body."""
        counters = _counted(
            ("GET", "TCP_MISS", 200, 100, 0.0),
            ("GET", "TCP_REFRESH_UNMODIFIED", 200, 10, 0.0),
            ("GET", "TCP_HIT", 200, 20, 0.0),
        )
        self.assertEqual(totals_for_windows(counters.snapshot()), (3, 2, 130, 30))
