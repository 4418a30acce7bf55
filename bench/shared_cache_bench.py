#!/usr/bin/env python3
"""
Disk-cache lookups per second, and their p99, with 1, 2 and 4 processes
using one cache directory at once (issue 15 item 2): what C{[proxy]
workers} does to the shared disk tier, without sockets.

A cache directory is filled once with C{--entries} entries of C{--size}
bytes; then, for each count C{P}, P new processes each open their own
store on it (memory tier off, so every lookup reads the disk index and
opens the body) and, for
C{--seconds}, look up random entries, one in C{--write-every} of their
operations being a store of a new entry instead (0: lookups only). Each
lookup is timed; the table gives the total lookups per second, the p50,
p99 and worst over all processes, and the CPU time per operation (so
that waiting for a CPU, on a machine with fewer cores than processes,
can be told from waiting for a lock); and for the slowest 1 % of lookups,
the share of their time that was their own CPU, and that they waited
for a CPU (C{/proc/thread-self/schedstat}; the rest is waiting for a lock
or the disk), and how many of them were
the lookup that wrote the batch of access times (L{squeak.cache.recency}).

C{--tree DIR} imports squeak from another checkout (e.g. the commit before
a change, extracted with C{git archive COMMIT squeak | tar -x -C DIR}), to
compare before and after on the same machine.

    .venv/bin/python bench/shared_cache_bench.py [--processes 1,2,4] [--seconds 3]

Prints a Markdown table. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any


def _import_store(tree: str | None) -> Any:
    if tree:
        sys.path.insert(0, tree)
    else:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from squeak.cache import store

    return store


def _meta(uri: str) -> Any:
    from squeak.cache.policy import StoredResponse

    return StoredResponse(uri, 200, b"OK", ((b"Cache-Control", b"max-age=3600"),), 1.0, 2.0, "")


def _store_one(store: Any, uri: str, body: bytes) -> bool:
    from squeak.cache.keys import primary_key

    writer = store.writer(primary_key(b"GET", uri), _meta(uri))
    writer.write(body)
    return bool(writer.commit(len(body)))


def _fill(tree: str | None, directory: str, entries: int, size: int) -> None:
    store = _import_store(tree).Store(directory, memory_size=0)
    body = os.urandom(size)
    for i in range(entries):
        _store_one(store, f"http://bench.test/{i}", body)
    store.close()


def _hammer(
    tree: str | None,
    directory: str,
    entries: int,
    size: int,
    seconds: float,
    write_every: int,
    start_at: float,
    out: Any,
) -> None:
    module = _import_store(tree)
    from squeak.cache.keys import primary_key

    kwargs: dict[str, Any] = {"memory_size": 0}
    if "sweep" in module.Store.__init__.__code__.co_varnames:
        kwargs["sweep"] = False  # as a worker opens it
    store = module.Store(directory, **kwargs)
    keys = [primary_key(b"GET", f"http://bench.test/{i}") for i in range(entries)]
    body = os.urandom(size)
    rng = random.Random(os.getpid())
    times: list[float] = []
    cpu_times: list[float] = []
    flushed: list[bool] = []
    queue_times: list[float] = []
    schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    hits = stores = 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    cpu = time.process_time()
    n = 0
    while time.perf_counter() < end:
        n += 1
        if write_every and n % write_every == 0:
            stores += _store_one(store, f"http://bench.test/new/{os.getpid()}/{n}", body)
            continue
        key = keys[rng.randrange(entries)]
        flushes = _flushes(store)
        queued = _run_queue_wait(schedstat)
        started = time.perf_counter()
        started_cpu = time.thread_time()
        hit = store.lookup(key, [])
        if hit is not None:
            if hit.file is not None:
                hit.file.read()
            hit.close()
            hits += 1
        times.append(time.perf_counter() - started)
        cpu_times.append(time.thread_time() - started_cpu)
        flushed.append(_flushes(store) != flushes)
        queue_times.append(_run_queue_wait(schedstat) - queued)
    cpu = time.process_time() - cpu
    store.close()
    os.close(schedstat)
    out.put((times, hits, stores, cpu, cpu_times, flushed, queue_times))


def _run_queue_wait(fd: int) -> float:
    """
    Seconds this thread has waited, runnable, for a CPU
    (C{/proc/thread-self/schedstat}, its second field).
    """
    return int(os.pread(fd, 100, 0).split()[1]) / 1e9


def _flushes(store: Any) -> float:
    """
    When the store last wrote its batch of access times (squeak's
    L{squeak.cache.recency}; 0 for a tree without it): a lookup during
    which it changed is the one that wrote the batch.
    """
    recency = getattr(getattr(store, "disk", None), "recency", None)
    return float(getattr(recency, "_flushed", 0.0)) if recency is not None else 0.0


def run(args: argparse.Namespace, processes: int, directory: str) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 2.0
    children = [
        context.Process(
            target=_hammer,
            args=(
                args.tree,
                directory,
                args.entries,
                args.size,
                args.seconds,
                args.write_every,
                start_at,
                out,
            ),
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=args.seconds + 120) for _ in children]
    for child in children:
        child.join(timeout=30)
    times = sorted(t for result in results for t in result[0])
    hits = sum(result[1] for result in results)
    # The slowest 1 % of lookups: how much of their time was their own CPU
    # (the rest waited: for a CPU, a lock, the disk), and how many wrote
    # the batch of access times.
    every = [
        (wall, cpu, flush, queued)
        for result in results
        for wall, cpu, flush, queued in zip(
            result[0], result[4], result[5], result[6], strict=True
        )
    ]
    every.sort(key=lambda sample: sample[0])
    tail = every[int(len(every) * 0.99) :]
    tail_wall = max(1e-9, sum(sample[0] for sample in tail))
    return {
        "tail_cpu_share": sum(sample[1] for sample in tail) / tail_wall,
        "tail_queue_share": sum(sample[3] for sample in tail) / tail_wall,
        "tail_flushes": sum(1 for sample in tail if sample[2]),
        "flushes": sum(1 for sample in every if sample[2]),
        "flush_ms": statistics.median([s[0] for s in every if s[2]] or [0.0]) * 1000,
        "lookups_per_s": len(times) / args.seconds,
        "hit_ratio": hits / max(1, len(times)),
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "max_ms": times[-1] * 1000,
        "stores": sum(result[2] for result in results),
        "cpu_us": sum(result[3] for result in results) / max(1, len(times)) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--write-every", type=int, default=0)
    parser.add_argument("--tree", default=None, help="import squeak from this checkout")
    args = parser.parse_args()
    label = args.tree or "this checkout"
    print(
        f"# {label}: {args.entries} entries of {args.size} B, {args.seconds:.0f} s,"
        f" one store every {args.write_every or 'never'} ops, {os.cpu_count()} CPUs"
    )
    print(
        "| processes | lookups/s | p50 ms | p99 ms | max ms | CPU µs/op | hit ratio | stores"
        " | slowest 1 %: CPU, run queue | flushing lookups (all) | flush ms (median) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    directory = tempfile.mkdtemp(prefix="squeak-shared-bench-")
    try:
        _fill(args.tree, directory, args.entries, args.size)
        for processes in [int(p) for p in args.processes.split(",")]:
            r = run(args, processes, directory)
            print(
                f"| {processes} | {r['lookups_per_s']:,.0f} | {r['p50_ms']:.3f}"
                f" | {r['p99_ms']:.3f} | {r['max_ms']:.1f} | {r['cpu_us']:.0f}"
                f" | {r['hit_ratio']:.3f}"
                f" | {r['stores']:.0f} | {r['tail_cpu_share']:.0%}, {r['tail_queue_share']:.0%}"
                f" | {r['tail_flushes']:.0f} ({r['flushes']:.0f}) | {r['flush_ms']:.1f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
