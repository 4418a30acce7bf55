#!/usr/bin/env python3
"""
CPU time per request of two squeak trees, interleaved: an A/B that a busy
machine does not spoil.

Throughput against Squid (bench/run.py) needs a quiet machine: a subject's
rate moves by a third within minutes when other work shares the cores.  The
CPU time the squeak process spends per request moves much less, because time
spent waiting for a core is not counted.  So a change to the request path is
judged here by that figure: for each workload, wrk drives each tree in turn
(64 keep-alive connections, 1 KiB bodies, as the harness's C{a_hit_1k} and
C{b_miss_1k}), the process's user+sys time is read from C{/proc/PID/stat}
before and after, and divided by the requests wrk completed.  The trees
alternate A B, B A, ... for C{--rounds} rounds; the report gives, per
workload, each tree's median µs/request with its range, and the median of
the per-round ratios (new/base) with their range.

Both trees run on this checkout's virtualenv (the base with C{PYTHONPATH}
set to its tree, so C{squeak} is imported from there), each from its own
copy of bench/squeak-bench.toml: its own port, cache directory and access
log (on, Squid format, as in the harness).  The origin is nginx on
127.0.0.1:8091 (bench/_common.py); the proxies run on CPU 0, nginx, wrk
and this script on CPU 1.

    git archive main | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python bench/cpu_ab.py --base /tmp/base --rounds 6
    .venv/bin/python bench/cpu_ab.py --base .     # noise: the same tree twice (A/A)

wrk's req/s and p99 are printed too, for information only: on a shared
machine they are not a measure of anything.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as c  # noqa: E402

ORIGIN_PORT = 8091
PORTS = {"base": 3131, "this": 3132}
LUA = HERE / "lua" / "proxy_auth.lua"
PATHS = {"hit": "/cache/1k", "miss": "/nostore/1k"}


def _toml(name: str, port: int, run: Path) -> str:
    """bench/squeak-bench.toml for C{name}: its port, cache and access log."""
    text = (HERE / "squeak-bench.toml").read_text()
    return (
        text.replace("127.0.0.1:3130", f"127.0.0.1:{port}")
        .replace("/tmp/squeak-bench/cache", str(run / f"{name}-cache"))
        .replace("/tmp/squeak-bench/squeak-access.log", str(run / f"{name}-access.log"))
    )


def _start(name: str, tree: Path, run: Path) -> Any:
    env = dict(os.environ, PYTHONPATH=str(tree))
    port = PORTS[name]
    proc = c.start_squeak(run, name, port, _toml(name, port, run), env=env)
    # Which squeak the process imported, from its own interpreter's view.
    probe = subprocess.run(
        [sys.executable, "-c", "import squeak, sys; sys.stdout.write(squeak.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not probe.startswith(str(tree)):
        raise SystemExit(f"{name}: PYTHONPATH={tree} imports squeak from {probe}")
    return proc


def _wrk(port: int, path: str, seconds: int, connections: int) -> dict[str, Any]:
    target = f"http://127.0.0.1:{ORIGIN_PORT}{path}"
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/",
        "--",
        target,
        f"127.0.0.1:{ORIGIN_PORT}",
        "",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            result: dict[str, Any] = json.loads(line[len("BENCHJSON ") :])
            return result
    raise RuntimeError(f"wrk printed no BENCHJSON line: {out[-400:]}")


def _measure(
    proc: Any, origin: c.Origin, port: int, workload: str, args: argparse.Namespace
) -> dict[str, Any]:
    path = PATHS[workload]
    _wrk(port, path, args.warmup, args.connections)
    pids = c.tree(proc.pid)
    before_origin = origin.requests()
    with c.Window(proc.pid, origin) as window:
        ticks = c.cpu_ticks(pids)
        result = _wrk(port, path, args.seconds, args.connections)
        ticks = c.cpu_ticks(pids) - ticks
    hz = os.sysconf("SC_CLK_TCK")
    requests = result["requests"]
    errors = sum(v for k, v in result.items() if k.startswith("err_"))
    return {
        "cpu_us_per_request": ticks / hz * 1e6 / requests,
        "requests": requests,
        "req_per_s": requests / (result["duration_us"] / 1e6),
        "p99_ms": result["lat_p99_us"] / 1000,
        "proxy_cpu_pct": window.proxy_cpu_pct,
        "foreign_cpu_pct": window.foreign_cpu_pct,
        "origin_requests": origin.requests() - before_origin,
        "errors": errors,
    }


def _summary(rounds: list[dict[str, dict[str, Any]]], workload: str) -> dict[str, Any]:
    base = [r["base"]["cpu_us_per_request"] for r in rounds]
    this = [r["this"]["cpu_us_per_request"] for r in rounds]
    ratios = [t / b for t, b in zip(this, base, strict=True)]
    return {
        "workload": workload,
        "base_us": statistics.median(base),
        "base_range": (min(base), max(base)),
        "this_us": statistics.median(this),
        "this_range": (min(this), max(this)),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", type=Path, required=True, help="the tree to compare against")
    ap.add_argument("--this", type=Path, default=HERE.parent, help="the new tree (this checkout)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=4, help="measured seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workloads", default="hit,miss")
    args = ap.parse_args()
    workloads = args.workloads.split(",")
    for w in workloads:
        if w not in PATHS:
            raise SystemExit(f"unknown workload {w!r}: choose from {', '.join(PATHS)}")
    trees = {"base": args.base.resolve(), "this": args.this.resolve()}
    c.setup_self()
    # Started from /tmp, so neither the probe nor twistd imports squeak from
    # the working directory (sys.path[0]) instead of PYTHONPATH.
    os.chdir("/tmp")
    run = c.new_run("cpu-ab")
    origin = c.Origin(run, ORIGIN_PORT, c.make_www({"1k": 1024}))
    results: dict[str, list[dict[str, dict[str, Any]]]] = {w: [] for w in workloads}
    try:
        origin.start()
        procs = {name: _start(name, tree, run) for name, tree in trees.items()}
        for n in range(args.rounds):
            order = ["base", "this"] if n % 2 == 0 else ["this", "base"]
            for w in workloads:
                row: dict[str, dict[str, Any]] = {}
                for name in order:
                    row[name] = _measure(procs[name], origin, PORTS[name], w, args)
                    m = row[name]
                    c.log(
                        f"round {n + 1} {w:4s} {name:4s} {m['cpu_us_per_request']:6.1f} us/req "
                        f"({m['requests']} req, {m['req_per_s']:.0f}/s, p99 {m['p99_ms']:.1f} ms, "
                        f"proxy {m['proxy_cpu_pct']}% CPU, foreign {m['foreign_cpu_pct']}%, "
                        f"origin {m['origin_requests']}, errors {m['errors']})"
                    )
                results[w].append(row)
        for name in procs:
            trouble = c.log_trouble(run / f"{name}-stdout.log")
            if trouble:
                c.log(f"{name}: {len(trouble)} error line(s) in its log, first: {trouble[0]}")
    finally:
        c.stop_all()
    summaries = [_summary(results[w], w) for w in workloads]
    print(f"\nCPU µs per request, medians of {args.rounds} alternating rounds (range):")
    for s in summaries:
        low, high = s["base_range"]
        new_low, new_high = s["this_range"]
        rounds = ", ".join(f"{r:.3f}" for r in s["ratios"])
        print(
            f"  {s['workload']:4s} base {s['base_us']:6.1f} ({low:.1f}-{high:.1f})"
            f"  this {s['this_us']:6.1f} ({new_low:.1f}-{new_high:.1f})"
            f"  this/base {s['ratio']:.3f} (per round {rounds})"
        )
    c.save(
        run,
        "cpu-ab",
        {
            "trees": {k: str(v) for k, v in trees.items()},
            "args": {k: str(v) for k, v in vars(args).items()},
            "rounds": results,
            "summary": summaries,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
