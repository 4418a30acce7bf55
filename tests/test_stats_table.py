"""
Tests for L{squeak.stats.table}: the workers' counters in shared memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from twisted.trial.unittest import SynchronousTestCase

from squeak.stats.counters import Counters, merge
from squeak.stats.table import (
    ENVIRONMENT,
    SLOT_SIZE,
    SlotAllocator,
    SnapshotTooLargeError,
    StatsTable,
)


def _snapshot(requests: int) -> dict[str, object]:
    counters = Counters()
    for _ in range(requests):
        counters.request_done("GET", "TCP_MISS", 200, 1, 0.0)
    snapshot: dict[str, object] = counters.snapshot()
    snapshot["gauges"] = {"client_connections": 1}
    return snapshot


class TableTests(SynchronousTestCase):
    """
    Publishing, reading, folding.
    """

    def setUp(self) -> None:
        self.table = StatsTable.create()
        self.addCleanup(os.close, self.table.fd)
        self.addCleanup(self.table.close)

    def test_publish_and_read(self) -> None:
        """A slot reads back what was published, with the writer's PID."""
        self.table.publish(3, _snapshot(2))
        self.assertEqual(self.table.read(3), (os.getpid(), _snapshot(2)))
        self.assertIsNone(self.table.read(4))

    def test_too_large(self) -> None:
        """A snapshot larger than a slot is refused and the old one kept."""
        self.table.publish(1, _snapshot(1))
        with self.assertRaises(SnapshotTooLargeError):
            self.table.publish(1, {"x": "y" * SLOT_SIZE})
        self.assertEqual(self.table.read(1), (os.getpid(), _snapshot(1)))

    def test_retire_folds_into_slot_zero(self) -> None:
        """
        A retired worker's counters move to slot 0 and its slot is freed:
        the totals do not change, and its gauges no longer count.
        """
        allocator = SlotAllocator(self.table)
        first, second = allocator.take(), allocator.take()
        assert first is not None and second is not None
        self.table.publish(first, _snapshot(3))
        self.table.publish(second, _snapshot(4))
        before = merge(*self._view())
        allocator.release(first)
        live, retired = self.table.read_all()
        after = merge(live, [retired] if retired else [])
        self.assertEqual((before.total_requests, after.total_requests), (7, 7))
        self.assertEqual(
            (before.gauges["client_connections"], after.gauges["client_connections"]), (2, 1)
        )
        self.assertEqual(allocator.take(), first)  # reused

    def _view(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        live, retired = self.table.read_all()
        return live, [retired] if retired else []

    def test_assign_passes_the_descriptor(self) -> None:
        """
        A worker to spawn gets the table's descriptor at the next free
        number, and the slot in its environment, which
        L{StatsTable.from_environment} reads back.
        """
        allocator = SlotAllocator(self.table)
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r", 3: "r", 4: 9}
        env: dict[str, str] = {}
        slot = allocator.assign(child_fds, env)
        self.assertEqual(child_fds[5], self.table.fd)
        self.assertEqual(env[ENVIRONMENT], f"5:{slot}")
        found = StatsTable.from_environment({ENVIRONMENT: f"{self.table.fd}:{slot}"})
        assert found is not None
        self.addCleanup(found[0].close)
        self.assertEqual(found[1], slot)
        for bad in ("", "x:1", "3:0", "3:9999"):
            self.assertIsNone(StatsTable.from_environment({ENVIRONMENT: bad}))
        self.assertIsNone(SlotAllocator().assign({}, {}))

    def test_consistent_reads_while_another_process_writes(self) -> None:
        """
        A reader never sees a torn snapshot while another process
        publishes as fast as it can (the seqlock), and every value read is
        one that was written.
        """
        writer = textwrap.dedent(
            f"""
            import sys
            from squeak.stats.table import StatsTable
            table = StatsTable({self.table.fd})
            n = 0
            while True:
                n += 1
                table.publish(1, {{"n": n, "pad": "x" * (n % 5000), "check": n * 7}})
            """
        )
        child = subprocess.Popen(
            [sys.executable, "-c", writer], pass_fds=(self.table.fd,), cwd=os.getcwd()
        )
        self.addCleanup(child.wait)
        self.addCleanup(child.send_signal, signal.SIGKILL)
        deadline = time.monotonic() + 10
        seen = set()
        while len(seen) < 200 and time.monotonic() < deadline:
            found = self.table.read(1)
            if found is not None:
                _, snapshot = found
                self.assertEqual(snapshot["check"], snapshot["n"] * 7)
                self.assertEqual(len(snapshot["pad"]), snapshot["n"] % 5000)
                seen.add(snapshot["n"])
        self.assertGreaterEqual(len(seen), 200)
