"""
CONNECT tunnels at scale (issue 5), which the shared harness does not
measure: many tunnels at once, and the memory of idle open tunnels.

Starts a private nginx origin (127.0.0.1:8091, CPU 1), squeak (3131) and,
unless --no-squid, Squid (3139, no cache), both pinned to CPU 0, then for
each subject (interleaved: A B C, C B A, ...):

- concurrent: one curl (on CPU 1) runs --conns transfers in parallel
  (--parallel-max), each through its own CONNECT tunnel (curl -p -x) and
  each fetching /nostore/<--object>; aggregate MB/s = bytes / wall time.
  "direct" does the same straight to the origin: the loopback ceiling
  of this layout (but then nothing runs on CPU 0).
- idle (once per proxy, on a freshly started process, warmed with 20
  tunnels): opens --idle tunnels (CONNECT 127.0.0.1:8091, waits for the
  200), holds them --hold seconds, and reports the RSS growth per tunnel,
  how many are still open, and one GET sent through 20 of them.

    .venv/bin/python bench/tunnels.py [--repeats 3] [--conns 64] [--object 16m]

Writes bench/results/tunnels-<time>.json. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import (
    LOOPBACK,
    MIB,
    Origin,
    RssSampler,
    Window,
    log,
    log_trouble,
    make_www,
    new_run,
    rss_mb,
    save,
    setup_self,
    start_squeak,
    start_squid,
    stop,
    stop_all,
    tree,
)

SQUEAK_PORT = 3131
SQUID_PORT = 3139
ORIGIN_PORT = 8091
SIZES = {"1k": 1024, "16m": 16 * MIB, "100m": 100 * MIB}

TOML = """\
[proxy]
http_port = ["127.0.0.1:{port}"]
visible_hostname = "squeak-bench"

[acl]
SSL_ports = {{ port = [443, {origin}] }}

[access]
http_access = ["deny !Safe_ports", "deny CONNECT !SSL_ports", "allow localhost", "deny all"]

[access_log]
path = "{run}/squeak-access.log"
format = "squid"

[cache]
dir = "{run}/cache"
"""


def concurrent(port: int | None, conns: int, obj: str, timeout: int) -> dict[str, Any]:
    url = f"http://{LOOPBACK}:{ORIGIN_PORT}/nostore/{obj}"
    cmd = [
        "curl",
        "-s",
        "-Z",
        "--parallel-immediate",
        "--parallel-max",
        str(conns),
        "--max-time",
        str(timeout),
        "-w",
        "%{http_code} %{size_download}\n",
    ]
    if port:
        cmd += ["-p", "-x", f"{LOOPBACK}:{port}"]
    for _ in range(conns):
        cmd += ["-o", "/dev/null", url]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    dt = time.monotonic() - t0
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    ok = sum(1 for c, _ in lines if c == "200")
    total = sum(int(n) for _, n in lines)
    return {
        "seconds": round(dt, 3),
        "bytes": total,
        "ok": ok,
        "expected_bytes": conns * SIZES[obj],
        "mb_s": round(total / dt / 1e6, 1),
    }


def idle(port: int, root: int, n: int, hold: float) -> dict[str, Any]:
    target = f"{LOOPBACK}:{ORIGIN_PORT}".encode()
    req = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n"

    def open_tunnels(k: int) -> list[socket.socket]:
        socks = []
        for _ in range(k):
            s = socket.create_connection((LOOPBACK, port), 10)
            s.sendall(req)
            socks.append(s)
        for s in socks:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError(f"tunnel closed before its response: {buf!r}")
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200") and not buf.startswith(b"HTTP/1.0 200"):
                raise RuntimeError(f"CONNECT refused: {buf[:200]!r}")
        return socks

    warm = open_tunnels(20)
    for s in warm:
        s.close()
    time.sleep(1)
    pids = tree(root)
    before = rss_mb(pids)
    with RssSampler(root) as rs:
        t0 = time.monotonic()
        socks = open_tunnels(n)
        opened = time.monotonic() - t0
        time.sleep(hold)
    after = rss_mb(pids)
    alive = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            alive += 1  # nothing readable: not closed
        else:
            with contextlib.suppress(OSError):
                alive += bool(s.recv(1, socket.MSG_PEEK))
    # A request through some of the held tunnels, straight to the origin.
    good = 0
    for s in socks[:: max(1, n // 20)][:20]:
        s.sendall(b"GET /cache/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf = b""
        while len(buf) < 1024 or b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        good += buf.startswith(b"HTTP/1.1 200")
    for s in socks:
        s.close()
    return {
        "tunnels": n,
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(after, 1),
        "rss_peak_mb": round(max(rs.samples), 1),
        "kb_per_tunnel": round((after - before) * 1024 / n, 2),
        "open_seconds": round(opened, 2),
        "still_open": alive,
        "get_through_ok": good,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--object", default="16m", choices=sorted(SIZES))
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--no-squid", action="store_true")
    ap.add_argument("--no-idle", action="store_true")
    args = ap.parse_args()
    setup_self()
    run = new_run("tunnels")
    origin = Origin(run, ORIGIN_PORT, make_www(SIZES))
    toml = TOML.format(port=SQUEAK_PORT, origin=ORIGIN_PORT, run=run)
    data: dict[str, Any] = {"args": vars(args), "concurrent": [], "idle": {}}
    try:
        origin.start()
        procs: dict[str, Any] = {}

        def start(label: str) -> Any:
            if label == "squeak":
                return start_squeak(run, "squeak", SQUEAK_PORT, toml)
            return start_squid(run, SQUID_PORT)

        labels = ["squeak"] + ([] if args.no_squid else ["squid"])
        ports: dict[str, int | None] = {"squeak": SQUEAK_PORT, "squid": SQUID_PORT, "direct": None}
        # Idle tunnels first, each on a fresh process.
        if not args.no_idle:
            for label in labels:
                p = start(label)
                data["idle"][label] = idle(
                    SQUEAK_PORT if label == "squeak" else SQUID_PORT, p.pid, args.idle, args.hold
                )
                log(f"idle {label}: {data['idle'][label]}")
                stop(p)
                time.sleep(1)
        for label in labels:
            procs[label] = start(label)
        order = [*labels, "direct"]
        for rep in range(args.repeats):
            for label in order if rep % 2 == 0 else list(reversed(order)):
                root = procs[label].pid if label in procs else None
                with Window(root, origin) as w:
                    r = concurrent(ports[label], args.conns, args.object, args.timeout)
                r.update(
                    {
                        "subject": label,
                        "repeat": rep,
                        "proxy_cpu_pct": w.proxy_cpu_pct,
                        "foreign_cpu_pct": w.foreign_cpu_pct,
                    }
                )
                if root:
                    r["rss_after_mb"] = round(rss_mb(tree(root)), 1)
                log(f"concurrent {label} r{rep}: {r}")
                data["concurrent"].append(r)
        data["stdout_trouble"] = log_trouble(run / "squeak-stdout.log")
    finally:
        stop_all()
    med = {}
    for label in ["squeak", "squid", "direct"]:
        rows = [r for r in data["concurrent"] if r["subject"] == label]
        if rows:
            med[label] = statistics.median(r["mb_s"] for r in rows)
    data["concurrent_median_mb_s"] = med
    save(run, "tunnels", data)
    print(f"{args.conns} concurrent tunnels, {args.object} each, median MB/s: {med}")
    for other in ("squid", "direct"):
        if other in med and "squeak" in med:
            print(f"  squeak / {other}: {med['squeak'] / med[other]:.2f}")
    for label, r in data["idle"].items():
        print(
            f"idle {label}: {r['kb_per_tunnel']} KB per tunnel ({r['tunnels']} tunnels, "
            f"RSS {r['rss_before_mb']} -> {r['rss_held_mb']} MB), still open {r['still_open']}, "
            f"GET through {r['get_through_ok']}/20"
        )
    if data["stdout_trouble"]:
        print("squeak stdout.log trouble:", *data["stdout_trouble"][:10], sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
