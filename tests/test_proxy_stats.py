"""
Tests for L{squeak.proxy.stats}: a process's snapshot (counters, gauges,
windows) and the service's figures read through the shared table.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from squeak.proxy.stats import SAMPLE_INTERVAL, ServiceStats, process_gauges
from squeak.stats.table import PUBLISH_INTERVAL, StatsTable
from tests.transcript import Transcript


class ServiceStatsTests(SynchronousTestCase):
    """
    L{ServiceStats} over a transcript's context and a real shared table.
    """

    def setUp(self) -> None:
        self.table = StatsTable.create()
        self.addCleanup(os.close, self.table.fd)
        self.addCleanup(self.table.close)

    def _worker(self, slot: int) -> tuple[Transcript, ServiceStats]:
        t = Transcript(self)
        stats = ServiceStats(t.context, (self.table, slot))
        t.context.stats = stats
        return t, stats

    def test_two_workers_add_up(self) -> None:
        """
        Each worker publishes on its timer; either one's figures are both
        workers' counters and gauges.
        """
        first, first_stats = self._worker(1)
        second, second_stats = self._worker(2)
        for _ in range(3):
            first.context.counters.request_done("GET", "TCP_MISS", 200, 100, 0.01)
        second.context.counters.request_done("GET", "TCP_MEM_HIT", 200, 50, 0.001)
        first_stats.start()
        second_stats.start()
        self.addCleanup(first_stats.stop)
        self.addCleanup(second_stats.stop)
        figures, snapshots = first_stats.figures()
        self.assertEqual(figures.total_requests, 4)
        self.assertEqual(figures.hits(), (1, 50))
        self.assertEqual(figures.processes, 2)
        self.assertEqual(len(snapshots), 2)
        # Each transcript has one client connection open.
        self.assertEqual(figures.gauges["client_connections"], 2)
        # The other worker's later counts appear once its timer publishes.
        second.context.counters.request_done("GET", "TCP_MEM_HIT", 200, 50, 0.001)
        self.assertEqual(first_stats.figures()[0].total_requests, 4)
        second.clock.advance(PUBLISH_INTERVAL)
        self.assertEqual(first_stats.figures()[0].total_requests, 5)
        self.assertIn("disk", snapshots[0])  # the answering worker measured it

    def test_windows(self) -> None:
        """
        A sample a minute: the 5-minute window covers the last 5 minutes'
        requests only.
        """
        t = Transcript(self)
        stats = ServiceStats(t.context)
        stats.start()
        self.addCleanup(stats.stop)
        counters = t.context.counters
        counters.request_done("GET", "TCP_MISS", 200, 100, 0.01)
        for _ in range(6):
            t.clock.advance(SAMPLE_INTERVAL)
        counters.request_done("GET", "TCP_HIT", 200, 100, 0.01)
        windows = stats.snapshot()["windows"]
        self.assertEqual(windows["300"]["requests"], 1)
        self.assertEqual(windows["300"]["hits"], 1)
        self.assertEqual(windows["3600"]["requests"], 2)

    def test_process_gauges(self) -> None:
        """Descriptors, their limit, CPU and RSS are read from the system."""
        gauges = process_gauges()
        self.assertGreater(gauges["open_files"], 2)
        self.assertGreaterEqual(gauges["open_files_limit"], gauges["open_files"])
        self.assertGreater(gauges["rss_bytes"], 1 << 20)
        self.assertGreater(gauges["cpu_seconds"], 0)
