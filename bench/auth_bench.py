"""
req/s with Basic proxy authentication on against off (issue 4), in one run.

Starts a private nginx origin (127.0.0.1:8091, CPU 1) and two squeak
instances pinned to CPU 0 (only one is loaded at a time):
- "off" on 3131: the default-like rules, no [auth];
- "on" on 3132: [auth] htpasswd (one bcrypt user made with
  `python -m squeak passwd`, default cost 12), [acl] user = proxy_auth
  REQUIRED, http_access "allow localhost user".

Both get the b_miss_1k load (wrk -t1 -c64, GET /nostore/1k, absolute form,
2 s warm-up then --duration s), interleaved ABBA, with the same request
including `Proxy-Authorization: Basic` (bench/lua/proxy_auth.lua; the
"off" instance drops it as a hop-by-hop header). The "on" instance runs
under bench/_count_bcrypt.py, which counts bcrypt.checkpw calls: with the
credentials cache (auth.credentials_ttl) there should be about one per
run, not one per request. Before the load, one curl request through the
"on" instance verifies the credentials once (skip it with --cold, which
shows what 64 connections with not yet verified credentials do).

    .venv/bin/python bench/auth_bench.py [--repeats 3] [--duration 10]

Writes bench/results/auth-<time>.json. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import (
    HERE,
    LOOPBACK,
    Origin,
    Window,
    log,
    log_trouble,
    make_www,
    new_run,
    save,
    setup_self,
    start_squeak,
    stop_all,
)

ORIGIN_PORT = 8091
PORTS = {"off": 3131, "on": 3132}
USER, PASSWORD = "bench", "bench-secret"

BASE = """\
[proxy]
http_port = ["127.0.0.1:{port}"]
visible_hostname = "squeak-bench"

[access_log]
path = "{run}/{label}-access.log"
format = "squid"

[upstream]
max_idle_per_host = 64

[cache]
dir = "{run}/cache-{label}"
"""
OFF = """
[access]
http_access = ["deny !Safe_ports", "deny CONNECT !SSL_ports", "allow localhost", "deny all"]
"""
ON = """
[auth]
htpasswd = "{run}/htpasswd"

[acl]
user = {{ proxy_auth = "REQUIRED" }}

[access]
http_access = ["deny !Safe_ports", "deny CONNECT !SSL_ports", "allow localhost user", "deny all"]
"""


def wrk(port: int, seconds: int, creds: str, conns: int) -> dict[str, Any]:
    target = f"http://{LOOPBACK}:{ORIGIN_PORT}/nostore/1k"
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "-s",
        str(HERE / "lua" / "proxy_auth.lua"),
        f"http://{LOOPBACK}:{port}/",
        "--",
        target,
        f"{LOOPBACK}:{ORIGIN_PORT}",
        creds,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCHJSON "))
    r: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    r["req_s"] = round(r["requests"] / (r["duration_us"] / 1e6), 1)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument(
        "--cold",
        action="store_true",
        help="no priming request: 64 connections present unverified credentials at once",
    )
    args = ap.parse_args()
    setup_self()
    run = new_run("auth")
    origin = Origin(run, ORIGIN_PORT, make_www({"1k": 1024}))
    creds = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    count_file = run / "bcrypt-count"
    data: dict[str, Any] = {"args": vars(args), "runs": []}
    try:
        subprocess.run(
            [sys.executable, "-m", "squeak", "passwd", str(run / "htpasswd"), USER],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        origin.start()
        off = start_squeak(
            run, "off", PORTS["off"], BASE.format(port=PORTS["off"], run=run, label="off") + OFF
        )
        conf_on = BASE.format(port=PORTS["on"], run=run, label="on") + ON.format(run=run)
        env = dict(os.environ, SQUEAK_BENCH_BCRYPT_COUNT=str(count_file))
        on_cmd = [
            sys.executable,
            str(HERE / "_count_bcrypt.py"),
            "-n",
            "--pidfile=",
            "squeak",
            "--config",
            str(run / "on.toml"),
        ]
        procs = {
            "off": off,
            "on": start_squeak(run, "on", PORTS["on"], conf_on, cmd=on_cmd, env=env),
        }
        # One request first, so the credentials are verified (and cached)
        # before 64 connections arrive at once; --cold skips it.
        data["prime"] = None
        if not args.cold:
            t0 = time.monotonic()
            prime = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "30",
                    "-x",
                    f"{LOOPBACK}:{PORTS['on']}",
                    "-U",
                    f"{USER}:{PASSWORD}",
                    f"http://{LOOPBACK}:{ORIGIN_PORT}/nostore/1k",
                ],
                capture_output=True,
                text=True,
            ).stdout
            data["prime"] = {"status": prime, "seconds": round(time.monotonic() - t0, 3)}
            log(f"prime request through the auth instance: {data['prime']}")
        data["bcrypt_after_prime"] = int(count_file.read_text()) if count_file.exists() else 0
        for rep in range(args.repeats):
            for label in ["off", "on"] if rep % 2 == 0 else ["on", "off"]:
                port = PORTS[label]
                wrk(port, args.warmup, creds, args.connections)
                o0 = origin.requests()
                with Window(procs[label].pid, origin) as w:
                    r = wrk(port, args.duration, creds, args.connections)
                o1 = origin.requests()
                r.update(
                    {
                        "label": label,
                        "repeat": rep,
                        "proxy_cpu_pct": w.proxy_cpu_pct,
                        "foreign_cpu_pct": w.foreign_cpu_pct,
                        "origin_per_req": round((o1 - o0) / max(1, r["requests"]), 4),
                    }
                )
                log(
                    f"{label} r{rep}: {r['req_s']} req/s, p50 {r['lat_p50_us'] / 1000} ms, "
                    f"status errors {r['err_status']}, cpu {w.proxy_cpu_pct} %, "
                    f"foreign {w.foreign_cpu_pct} %, origin/req {r['origin_per_req']}"
                )
                data["runs"].append(r)
        time.sleep(1.5)  # access logs flush every 0.5 s
        users: dict[str, dict[str, int]] = {}
        for label in PORTS:
            counts: dict[str, int] = {}
            for ln in (run / f"{label}-access.log").open():
                f = ln.split()
                key = f"{f[3]} user={f[7]}"
                counts[key] = counts.get(key, 0) + 1
            users[label] = counts
        data["access_log"] = users
        data["bcrypt_verifications"] = int(count_file.read_text()) if count_file.exists() else 0
        data["stdout_trouble"] = {
            label: log_trouble(run / f"{label}-stdout.log") for label in PORTS
        }
    finally:
        stop_all()
    med = {
        label: statistics.median(r["req_s"] for r in data["runs"] if r["label"] == label)
        for label in PORTS
    }
    data["median_req_s"] = med
    data["ratio_on_off"] = round(med["on"] / med["off"], 3)
    save(run, "auth", data)
    total_on = sum(n for n in data["access_log"]["on"].values())
    print(
        f"median req/s: auth off {med['off']:.0f}, auth on {med['on']:.0f}, "
        f"ratio on/off {data['ratio_on_off']}"
    )
    print(
        f"bcrypt verifications: {data['bcrypt_verifications']} for {total_on} requests "
        f"logged by the auth instance ({data['bcrypt_after_prime']} after the priming request)"
    )
    print(f"access log (code user: lines): {data['access_log']}")
    for label, bad in data["stdout_trouble"].items():
        if bad:
            print(f"{label} stdout.log trouble:", *bad[:10], sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
