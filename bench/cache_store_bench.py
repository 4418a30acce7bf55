"""
Benchmark of the disk store: committing a large body by renaming its part
file (squeak's L{squeak.cache.layout.BodyDisk}) versus diskcache's own
C{Cache.set(key, file, read=True)}, which copies it; and read throughput of
a stored body.

Run: .venv/bin/python bench/cache_store_bench.py [--size-mib 100] [--runs 3]
Prints the median of the runs for each figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import diskcache

from squeak.cache.keys import primary_key
from squeak.cache.policy import StoredResponse
from squeak.cache.store import Store

CHUNK = 64 * 1024


def write_file(path: str, size: int) -> None:
    """Write C{size} bytes to C{path}."""
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        for _ in range(size // CHUNK):
            f.write(block)


def bench_copy(directory: str, size: int) -> float:
    """Seconds for diskcache's copying commit of a finished file."""
    cache = diskcache.Cache(os.path.join(directory, "copy"), size_limit=4 * size)
    source = os.path.join(directory, "source.bin")
    write_file(source, size)
    with open(source, "rb") as f:
        start = time.perf_counter()
        cache.set("k", f, read=True)
        elapsed = time.perf_counter() - start
    os.remove(source)
    cache.close()
    return elapsed


def bench_store(directory: str, size: int) -> tuple[float, float, float]:
    """Seconds to stream the body in, to commit it (rename), and to read it back."""
    store = Store(
        os.path.join(directory, "store"),
        size=4 * size,
        memory_size=0,
        maximum_object_size=2 * size,
    )
    pk = primary_key(b"GET", "http://bench/large")
    meta = StoredResponse("http://bench/large", 200, b"OK", (), 0.0, 0.0)
    block = os.urandom(CHUNK)
    start = time.perf_counter()
    writer = store.writer(pk, meta)
    for _ in range(size // CHUNK):
        writer.write(block)
    written = time.perf_counter() - start
    start = time.perf_counter()
    if not writer.commit(size):
        raise SystemExit(f"commit failed: {writer.failed}")
    committed = time.perf_counter() - start
    start = time.perf_counter()
    hit = store.lookup(pk, [])
    assert hit is not None
    total = sum(len(chunk) for chunk in hit.chunks(CHUNK))
    hit.close()
    read = time.perf_counter() - start
    assert total == size
    store.close()
    return written, committed, read


def main() -> None:
    """Run the benchmark and print medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 2**20
    copies, writes, renames, reads = [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as directory:
            copies.append(bench_copy(directory, size))
            written, committed, read = bench_store(directory, size)
            writes.append(written)
            renames.append(committed)
            reads.append(read)
    mib = size / 2**20
    print(f"body: {mib:.0f} MiB, medians of {args.runs} runs")
    print(f"commit by copy (diskcache read=True): {statistics.median(copies) * 1000:9.1f} ms")
    print(f"commit by rename (squeak BodyDisk):   {statistics.median(renames) * 1000:9.1f} ms")
    print(f"streaming write to part file:         {mib / statistics.median(writes):9.0f} MiB/s")
    print(f"read back (64 KiB chunks):            {mib / statistics.median(reads):9.0f} MiB/s")


if __name__ == "__main__":
    main()
