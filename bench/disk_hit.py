"""
A 100 MiB disk-cache HIT through squeak (issue 3), which the shared harness
has no workload for.

Starts a private nginx origin (127.0.0.1:8091, on CPU 1) and squeak
(127.0.0.1:3131, twistd pinned to CPU 0) with a fresh cache whose memory
tier takes only small objects (maximum_object_size_in_memory 64 KiB), so the
100 MiB body can only come from disk. Then:

1. warms /cache/100m (max-age=3600) with one download through squeak;
2. downloads it N times at full speed (curl -x, on CPU 1): MB/s;
3. downloads it once with a slow client (curl --limit-rate 50M) while
   sampling squeak's RSS every 20 ms: RSS growth over the pre-download
   RSS;
4. checks that the downloads were hits: the origin's request counter grew
   by 1 (the warm-up) only, squeak's X-Cache says HIT and its access log
   says TCP_HIT.

    .venv/bin/python bench/disk_hit.py [--downloads 3] [--slow-rate 50M]

Writes bench/results/disk-hit-<time>.json. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
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
    stop_all,
    tree,
)

PORT = 3131
ORIGIN_PORT = 8091
SIZE = 100 * MIB

TOML = """\
[proxy]
http_port = ["127.0.0.1:{port}"]
visible_hostname = "squeak-bench"

[access]
http_access = ["deny !Safe_ports", "deny CONNECT !SSL_ports", "allow localhost", "deny all"]

[access_log]
path = "{run}/access.log"
format = "squid"

[cache]
dir = "{run}/cache"
memory_size = "256 MiB"
# The 100 MiB object must not be kept in memory: only the disk tier serves it.
maximum_object_size_in_memory = "64 KiB"
maximum_object_size = "200 MiB"
"""


def curl(url: str, port: int, rate: str | None = None, timeout: int = 60) -> dict[str, Any]:
    cmd = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-x",
        f"{LOOPBACK}:{port}",
        "--max-time",
        str(timeout),
        "-w",
        "\nBENCH %{http_code} %{size_download} %{time_total} %{speed_download}\n",
    ]
    if rate:
        cmd += ["--limit-rate", rate]
    out = subprocess.run([*cmd, url], capture_output=True, text=True).stdout
    head, _, tail = out.rpartition("\nBENCH ")
    code, size, total, speed = tail.split()
    headers = {}
    for line in head.splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return {
        "status": int(code),
        "bytes": int(size),
        "seconds": float(total),
        "mb_s": round(float(speed) / 1e6, 1),
        "x_cache": headers.get("x-cache"),
        "age": headers.get("age"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--downloads", type=int, default=3)
    ap.add_argument("--slow-rate", default="50M")
    args = ap.parse_args()
    setup_self()
    run = new_run("disk-hit")
    www = make_www({"100m": SIZE})
    origin = Origin(run, ORIGIN_PORT, www)
    data: dict[str, Any] = {"args": vars(args)}
    try:
        origin.start()
        squeak = start_squeak(run, "squeak", PORT, TOML.format(port=PORT, run=run))
        url = f"http://{LOOPBACK}:{ORIGIN_PORT}/cache/100m"
        o0 = origin.requests()
        warm = curl(url, PORT)
        log(f"warm-up: {warm}")
        time.sleep(2)  # let the store finish writing to disk
        o1 = origin.requests()
        full = []
        with Window(squeak.pid, origin) as w:
            for i in range(args.downloads):
                r = curl(url, PORT)
                log(f"full speed #{i + 1}: {r}")
                full.append(r)
        time.sleep(1)
        pids = tree(squeak.pid)
        before = rss_mb(pids)
        with Window(squeak.pid, origin) as ws, RssSampler(squeak.pid) as rs:
            slow = curl(url, PORT, rate=args.slow_rate, timeout=30)
        after = rss_mb(pids)
        log(f"slow client: {slow}")
        o2 = origin.requests()
        time.sleep(1.5)  # the access log is flushed every 0.5 s
        access = (run / "access.log").read_text().splitlines()
        hits = [ln for ln in access if "/cache/100m" in ln]
        data.update(
            {
                "origin_requests_warmup": o1 - o0,
                "origin_requests_after_warmup": o2 - o1,
                "warmup": warm,
                "full_speed": full,
                "full_speed_mb_s_median": statistics.median(r["mb_s"] for r in full),
                "full_speed_proxy_cpu_pct": w.proxy_cpu_pct,
                "full_speed_foreign_cpu_pct": w.foreign_cpu_pct,
                "slow": slow,
                "slow_rss_before_mb": round(before, 1),
                "slow_rss_peak_mb": round(max(rs.samples), 1),
                "slow_rss_after_mb": round(after, 1),
                "slow_rss_growth_mb": round(max(rs.samples) - before, 1),
                "slow_proxy_cpu_pct": ws.proxy_cpu_pct,
                "slow_foreign_cpu_pct": ws.foreign_cpu_pct,
                "access_log_codes": [ln.split()[3] for ln in hits],
                "stdout_trouble": log_trouble(run / "squeak-stdout.log"),
            }
        )
    finally:
        stop_all()
    save(run, "disk-hit", data)
    speeds = [r["mb_s"] for r in data["full_speed"]]
    print(
        f"full speed: median {data['full_speed_mb_s_median']} MB/s ({speeds}), "
        f"proxy CPU {data['full_speed_proxy_cpu_pct']} %, "
        f"foreign CPU {data['full_speed_foreign_cpu_pct']} %"
    )
    print(
        f"slow client: {data['slow']['mb_s']} MB/s, RSS {data['slow_rss_before_mb']} -> peak "
        f"{data['slow_rss_peak_mb']} MB (growth {data['slow_rss_growth_mb']} MB), "
        f"foreign CPU {data['slow_foreign_cpu_pct']} %"
    )
    print(
        f"origin requests: warm-up {data['origin_requests_warmup']}, afterwards "
        f"{data['origin_requests_after_warmup']}; X-Cache "
        f"{[r['x_cache'] for r in data['full_speed']] + [data['slow']['x_cache']]}; "
        f"access log {data['access_log_codes']}"
    )
    if data["stdout_trouble"]:
        print("squeak stdout.log trouble:", *data["stdout_trouble"][:10], sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
