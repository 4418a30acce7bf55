"""
The cost of a parent (issue 17, "Figures"): requests through a squeak
child going direct, through a squeak parent, and through a Squid parent,
in one run.

Starts a private nginx origin (127.0.0.1:8092, on the load core) serving
/nostore/1k (Cache-Control: no-store, so every request is a miss at every
level and the figure is the hop itself), a Squid parent (3146, no cache)
and a squeak parent (3145), and three squeak children (3142 direct, 3143
with the squeak parent, 3144 with the Squid parent), all proxies on the
proxy core.  Then, for --rounds rounds in alternating order (A B C, C B A,
...), wrk (one thread, --conns keep-alive connections, on the load core)
sends GETs through each child for --duration seconds after a warm-up.

Per run: requests/s, the median latency, and the CPU time per request of
the child and of the parent (from /proc, less sensitive to a busy machine
than throughput).  The summary is the median over the rounds.

    .venv/bin/python bench/parents.py [--rounds 5] [--duration 5] [--conns 16]

Writes bench/results/parents-<time>.json. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    HERE,
    LOAD_CPU,
    LOOPBACK,
    Origin,
    cpu_ticks,
    log,
    machine_busy_ticks,
    make_www,
    new_run,
    save,
    setup_self,
    start_squeak,
    start_squid,
    stop_all,
    tree,
)

ORIGIN_PORT = 8092
SQUEAK_PARENT = 3145
SQUID_PARENT = 3146
CHILDREN = {"direct": 3142, "squeak parent": 3143, "squid parent": 3144}


def _toml(port: int, name: str, run: Path, peer: int | None) -> str:
    peers = ""
    if peer is not None:
        peers = f"""
[[cache_peer]]
name = "parent"
host = "127.0.0.1"
port = {peer}

[hierarchy]
never_direct = ["allow all"]
"""
    return f"""
[proxy]
http_port = ["127.0.0.1:{port}"]
visible_hostname = "{name}"

[upstream]
max_idle_per_host = 64

[cache]
dir = "{run}/{name}-cache"

[access_log]
path = "{run}/{name}-access.log"
{peers}
"""


def _wrk(port: int, seconds: float, conns: int) -> dict[str, Any]:
    target = f"http://{LOOPBACK}:{ORIGIN_PORT}/nostore/1k"
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(LOAD_CPU),
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "lua" / "proxy_auth.lua"),
            f"http://{LOOPBACK}:{port}/",
            "--",
            target,
            f"{LOOPBACK}:{ORIGIN_PORT}",
            "",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCHJSON "))
    result: dict[str, Any] = json.loads(line[len("BENCHJSON ") :])
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--conns", type=int, default=16)
    args = parser.parse_args()
    setup_self()
    run = new_run("parents")
    www = make_www({"1k": 1024})
    hz = os.sysconf("SC_CLK_TCK")
    try:
        origin = Origin(run, ORIGIN_PORT, www)
        origin.start()
        squid = start_squid(run, SQUID_PARENT)
        parent = start_squeak(
            run, "parent", SQUEAK_PARENT, _toml(SQUEAK_PARENT, "parent", run, None)
        )
        parents = {"squeak parent": parent, "squid parent": squid}
        children = {
            label: start_squeak(
                run,
                f"child{port}",
                port,
                _toml(
                    port,
                    f"child{port}",
                    run,
                    {"direct": None, "squeak parent": SQUEAK_PARENT, "squid parent": SQUID_PARENT}[
                        label
                    ],
                ),
            )
            for label, port in CHILDREN.items()
        }
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in CHILDREN}
        order = list(CHILDREN)
        for round_ in range(args.rounds):
            for label in order if round_ % 2 == 0 else list(reversed(order)):
                port = CHILDREN[label]
                _wrk(port, args.warmup, args.conns)
                child_pids = tree(children[label].pid)
                parent_pids = tree(parents[label].pid) if label in parents else []
                c0, p0, b0 = cpu_ticks(child_pids), cpu_ticks(parent_pids), machine_busy_ticks()
                result = _wrk(port, args.duration, args.conns)
                c1, p1, b1 = cpu_ticks(child_pids), cpu_ticks(parent_pids), machine_busy_ticks()
                requests = max(1, result["requests"])
                seconds = result["duration_us"] / 1e6
                errors = sum(v for k, v in result.items() if k.startswith("err_"))
                sample = {
                    "requests_per_s": round(requests / seconds),
                    "p50_ms": round(result["lat_p50_us"] / 1000, 2),
                    "p99_ms": round(result["lat_p99_us"] / 1000, 2),
                    "child_cpu_us_per_request": round((c1 - c0) / hz / requests * 1e6),
                    "parent_cpu_us_per_request": round((p1 - p0) / hz / requests * 1e6)
                    if parent_pids
                    else None,
                    "machine_busy_pct": round(100 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1]), 1),
                    "errors": errors,
                }
                runs[label].append(sample)
                log(f"round {round_ + 1} {label}: {sample}")
        summary = {
            label: {
                key: statistics.median(s[key] for s in samples)
                for key in samples[0]
                if samples[0][key] is not None
            }
            for label, samples in runs.items()
        }
        for label, values in summary.items():
            log(f"median {label}: {values}")
        path = save(
            run,
            "parents",
            {
                "args": vars(args),
                "loadavg_at_end": os.getloadavg(),
                "runs": runs,
                "median": summary,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        log(f"saved {path}")
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
