"""
L{squeak.net.allocator.tune_malloc}: what it asks of the C library, when it
leaves the allocator alone, and (in a real process) that bulk read
buffers then reuse heap memory instead of faulting in new pages.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.net.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, tune_malloc


class _FakeLibc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.result


class TuneMallocTests(SynchronousTestCase):
    def test_sets_mmap_then_trim_threshold(self) -> None:
        """
        M_MMAP_THRESHOLD (-3), then M_TRIM_THRESHOLD (-1), as malloc.h
        numbers them.
        """
        libc = _FakeLibc()
        self.assertTrue(tune_malloc({}, libc))
        self.assertEqual(libc.calls, [(-3, MMAP_THRESHOLD), (-1, TRIM_THRESHOLD)])
        self.assertEqual((MMAP_THRESHOLD, TRIM_THRESHOLD), (4 << 20, 16 << 20))

    def test_operator_settings_are_kept(self) -> None:
        """
        glibc's own environment variables mean the operator chose: nothing
        is called.
        """
        for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
            libc = _FakeLibc()
            self.assertFalse(tune_malloc({name: "1"}, libc))
            self.assertEqual(libc.calls, [])

    def test_without_mallopt_or_when_refused(self) -> None:
        """
        A C library without mallopt, or one that refuses (musl's returns
        0), leaves the answer False.
        """
        self.assertFalse(tune_malloc({}, object()))
        self.assertFalse(tune_malloc({}, _FakeLibc(result=0)))


#: Four 512 KiB reads (squeak.net.tunnel.BULK_READ_SIZE) at a time, freed, six
#: times: the minor page faults of each round.
_ROUNDS = """
import json, resource, sys
from squeak.net.allocator import tune_malloc
tuned = sys.argv[1] == "1" and tune_malloc()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds = []
for _ in range(6):
    before = faults()
    reads = [b"x" * 512 * 1024 for _ in range(4)]
    rounds.append(faults() - before)
    del reads
print(json.dumps({"tuned": tuned, "rounds": rounds}))
"""


class HeapReuseTests(SynchronousTestCase):
    def _rounds(self, tune: bool) -> Any:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
        output = subprocess.run(
            [sys.executable, "-c", _ROUNDS, "1" if tune else "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env=environ,
        ).stdout
        return json.loads(output)

    def test_read_buffers_reuse_the_heap(self) -> None:
        """
        Tuned, rounds of 512 KiB buffers after the first fault in (almost)
        no pages; untuned, on this glibc, every round faults its 2 MiB in
        again (the control: it shows the measure can see the difference).
        """
        if platform.libc_ver()[0] != "glibc":
            raise SkipTest("glibc's allocator only")
        untuned = self._rounds(False)
        if min(untuned["rounds"][1:]) < 200:
            raise SkipTest(f"this glibc does not trim between rounds: {untuned}")
        tuned = self._rounds(True)
        self.assertTrue(tuned["tuned"])
        self.assertLess(max(tuned["rounds"][1:]), 50, tuned)
