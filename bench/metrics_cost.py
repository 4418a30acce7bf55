#!/usr/bin/env python3
"""
The hot-path cost of squeak's counters and metrics listener, as CPU time
per request of the squeak process (docs/performance.md, "Metrics").

A busy, shared machine moves throughput figures by more than the 2 % this
must resolve; CPU time per request of the proxy process is far steadier.
So this runs, side by side and alternately:

  - C{off}: a checkout without the counters (C{--baseline DIR}, e.g. an
    export of main), single process;
  - C{on}: this checkout, with C{[metrics] http_port} set and scraped every
    5 s while it serves;

and for each round and each subject sends N keep-alive requests from one
client connection, reading the subject's CPU time (all its threads) from
C{/proc/PID/task/*/schedstat} (nanoseconds) before and after.  Workloads as the harness's
C{a_hit_1k} (C{/cache/1k}, max-age=3600, memory hits) and C{b_miss_1k}
(C{/nostore/1k}), from a small keep-alive origin in a subprocess.

Usage:
  git archive main | tar -x -C /tmp/squeak-main
  .venv/bin/python bench/metrics_cost.py --baseline /tmp/squeak-main [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TWISTD = str(Path(sys.executable).with_name("twistd"))

ORIGIN = r"""
import asyncio, sys
BODY = b"x" * 1024
async def serve(reader, writer):
    buffer = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        buffer += data
        while b"\r\n\r\n" in buffer:
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            control = b"max-age=3600" if path.startswith(b"/cache/") else b"no-store"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Cache-Control: %s\r\nContent-Length: %d\r\n\r\n%s"
                         % (control, len(BODY), BODY))
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def config(directory: Path, metrics: bool) -> str:
    text = f"""
[proxy]
http_port = ["127.0.0.1:0"]
visible_hostname = "squeak-bench"
[access_log]
path = "{directory}/access.log"
[upstream]
max_idle_per_host = 64
[cache]
dir = "{directory}/cache"
"""
    if metrics:
        text += '[metrics]\nhttp_port = ["127.0.0.1:0"]\n'
    return text


class Subject:
    """One squeak, started with twistd from a checkout."""

    def __init__(self, name: str, checkout: Path, metrics: bool) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"squeak-cost-{name}-"))
        path = self.directory / "squeak.toml"
        path.write_text(config(self.directory, metrics))
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "squeak", "--config", str(path)],
            cwd=self.directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = self.metrics_port = 0
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            self.port and (self.metrics_port or not metrics)
        ):
            line = self.process.stdout.readline()
            found = re.search(r"squeak listening on (metrics )?127\.0\.0\.1:(\d+)", line)
            if found and found.group(1):
                self.metrics_port = int(found.group(2))
            elif found:
                self.port = int(found.group(2))
        if not self.port:
            raise SystemExit(f"{name} did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def cpu_seconds(self) -> float:
        """
        CPU time of every thread of the process, from each task's
        C{schedstat} (nanoseconds on the CPU; C{/proc/PID/stat}'s ticks
        are 10 ms, too coarse for a few seconds of work).
        """
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total / 1e9

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.directory, ignore_errors=True)


def run_requests(port: int, origin: int, path: str, count: int) -> None:
    """C{count} GETs on one keep-alive connection, each read whole."""
    request = (
        f"GET http://127.0.0.1:{origin}{path} HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(request)
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    length = int(re.search(rb"(?i)content-length: *(\d+)", buffer[:end]).group(1))  # type: ignore[union-attr]
                    if len(buffer) >= end + 4 + length:
                        buffer = buffer[end + 4 + length :]
                        break
                data = sock.recv(65536)
                if not data:
                    raise SystemExit("connection closed")
                buffer += data


def scraper(subject: Subject, stop: threading.Event) -> None:
    while not stop.wait(5.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{subject.metrics_port}/metrics") as r:
            r.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    origin = subprocess.Popen([sys.executable, "-c", ORIGIN], stdout=subprocess.PIPE, text=True)
    assert origin.stdout is not None
    origin_port = int(origin.stdout.readline())
    subjects = [
        Subject("off", args.baseline, metrics=False),
        Subject("on", HERE.parent, metrics=True),
    ]
    stop = threading.Event()
    threading.Thread(target=scraper, args=(subjects[1], stop), daemon=True).start()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for subject in subjects:  # warm up: fill the cache, open the pool
            run_requests(subject.port, origin_port, "/cache/1k", 500)
            run_requests(subject.port, origin_port, "/nostore/1k", 500)
        for round_number in range(args.rounds):
            order = subjects if round_number % 2 == 0 else subjects[::-1]
            for workload, path in (("a_hit_1k", "/cache/1k"), ("b_miss_1k", "/nostore/1k")):
                for subject in order:
                    before = subject.cpu_seconds()
                    run_requests(subject.port, origin_port, path, args.requests)
                    spent = subject.cpu_seconds() - before
                    per_request = spent / args.requests * 1e6
                    results.setdefault((workload, subject.name), []).append(per_request)
                    print(
                        f"round {round_number + 1} {workload} {subject.name}: "
                        f"{per_request:.1f} us/request",
                        flush=True,
                    )
    finally:
        stop.set()
        for subject in subjects:
            subject.stop()
        origin.terminate()
    print()
    print("| workload | off: CPU us/request (median) | on: CPU us/request (median) | on/off |")
    print("|---|---|---|---|")
    for workload in ("a_hit_1k", "b_miss_1k"):
        off = statistics.median(results[(workload, "off")])
        on = statistics.median(results[(workload, "on")])
        print(f"| {workload} | {off:.1f} | {on:.1f} | {on / off:.3f} |")
    for key, values in sorted(results.items()):
        print(key, " ".join(f"{v:.1f}" for v in values))


if __name__ == "__main__":
    main()
