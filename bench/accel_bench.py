"""
squeak's accelerator mode against nginx (proxy_cache) and Squid (accel),
one core each, in one run, on loopback (docs/accelerator.md; figures go to
docs/performance.md, never into a test).

Part 1, in front of one origin (an nginx serving files, on CPU 1 with the
load generator): 1 KiB hits, 1 KiB misses (no-store) and 1 MiB hits, wrk
with a Host field; each front pinned to CPU 0 alone.  Reported: requests
per second, and CPU milliseconds per 1000 requests of the front's
processes (less sensitive to a shared machine than the rate).

Part 2, gunicorn (sync, 2 workers, CPU 1) behind squeak and behind nginx
(proxy_buffering on, its default), with 64 slow clients each downloading
1 MiB at about 64 KiB/s while wrk asks for a small page: the small page's
requests per second, and the workers' occupancy (the share of the run
during which a worker was busy with a request, from the application's own
log: a worker held by a slow client shows as occupancy near 100 %).

Usage: .venv/bin/python bench/accel_bench.py [--duration 10] [--repeats 1]
Needs nginx, squid, wrk and taskset (apt), and gunicorn (pip: the test
extras).  Writes bench/results/<time>_accel.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ORIGIN_PORT = 18081
APP_PORT = 18082
FRONT_PORTS = {"squeak": 18090, "nginx": 18091, "squid": 18092}
HOST = "bench.test"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout:g}s")


def _tree(pid: int) -> list[int]:
    """C{pid} and its descendants."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found += _tree(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


class Process:
    """A process started on a CPU, stopped at the end."""

    def __init__(self, name: str, command: list[str], cpu: int, run: Path, **env: str) -> None:
        self.name = name
        log = open(run / f"{name}.log", "wb")  # noqa: SIM115 - kept for the process's life
        self.process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=run,
            env={**os.environ, **env},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _origin_config(run: Path) -> Path:
    www = run / "www"
    www.mkdir()
    for name, size in (("1k", 1024), ("1m", 1 << 20)):
        (www / name).write_bytes(os.urandom(size))
    return _write(
        run / "origin.conf",
        f"""
worker_processes 1;
daemon off;
pid {run}/origin.pid;
error_log {run}/origin-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{ORIGIN_PORT};
    location /cache/ {{ alias {www}/; add_header Cache-Control "max-age=3600"; }}
    location /nostore/ {{ alias {www}/; add_header Cache-Control "no-store"; }}
  }}
}}
""",
    )


def _nginx_front(run: Path, port: int, upstream: str, name: str) -> Path:
    return _write(
        run / f"{name}.conf",
        f"""
worker_processes 1;
daemon off;
pid {run}/{name}.pid;
error_log {run}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log {run}/{name}-access.log;
  proxy_cache_path {run}/{name}-cache levels=1:2 keys_zone=app:64m max_size=1g;
  proxy_temp_path {run}/{name}-temp;
  upstream app {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    server_name {HOST};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_cache app;
    }}
  }}
}}
""",
    )


def _squid_front(run: Path, port: int) -> Path:
    (run / "squid-cache").mkdir(mode=0o777)
    return _write(
        run / "squid.conf",
        f"""
http_port 127.0.0.1:{port} accel defaultsite={HOST} vhost
cache_peer 127.0.0.1 parent {ORIGIN_PORT} 0 no-query originserver name=origin
acl site dstdomain {HOST}
http_access allow site
http_access deny all
cache_peer_access origin allow site
workers 1
cache_mem 256 MB
maximum_object_size_in_memory 8 MB
maximum_object_size 200 MB
access_log stdio:{run}/squid-access.log squid
cache_log {run}/squid-cache.log
cache_store_log none
pid_filename {run}/squid.pid
coredump_dir {run}
netdb_filename none
icp_port 0
htcp_port 0
pinger_enable off
shutdown_lifetime 1 seconds
""",
    )


def _squeak_front(run: Path, port: int, upstream: str, name: str = "squeak") -> Path:
    return _write(
        run / f"{name}.toml",
        f"""
[proxy]
http_port = ["127.0.0.1:0"]
visible_hostname = "squeak-bench"

[access_log]
path = "{run}/{name}-access.log"

[upstream]
max_idle_per_host = 64

[cache]
dir = "{run}/{name}-cache"
memory_size = "256 MiB"
maximum_object_size_in_memory = "8 MiB"
maximum_object_size = "200 MiB"

[[accel]]
http_port = ["127.0.0.1:{port}"]
site = "{HOST}"
origins = ["{upstream}"]
""",
    )


def _start_front(name: str, run: Path, upstream: str, tag: str = "") -> Process:
    port = FRONT_PORTS[name] + (100 if tag else 0)
    label = name + tag
    if name == "squeak":
        config = _squeak_front(run, port, upstream, label)
        twistd = str(VENV_BIN / "twistd")
        command = [twistd, "-n", "--pidfile=", "squeak", "--config", str(config)]
    elif name == "nginx":
        config = _nginx_front(run, port, upstream, label)
        command = ["nginx", "-c", str(config), "-p", str(run)]
    else:
        config = _squid_front(run, port)
        subprocess.run(["squid", "-N", "-z", "-f", str(config)], check=True, cwd=run)
        command = ["squid", "-N", "-f", str(config)]
    process = Process(label, command, 0, run)
    _wait_port(port)
    return process


def _wrk(port: int, path: str, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration:g}s",
            "-H",
            f"Host: {HOST}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rate, "requests": requests, "non2xx": int(errors.group(1)) if errors else 0}


def _measure(process: Process, port: int, path: str, connections: int, duration: float) -> dict:
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"],
        check=True,
    )
    before = _cpu_seconds(process.pid)
    result = _wrk(port, path, connections, duration)
    cpu = _cpu_seconds(process.pid) - before
    result["cpu_ms_per_1000"] = 1e6 * cpu / max(1, result["requests"])
    return result


WORKLOADS = {
    "hit_1k": ("/cache/1k", 64),
    "miss_1k": ("/nostore/1k", 64),
    "hit_1m": ("/cache/1m", 8),
}


def part_one(run: Path, duration: float, repeats: int) -> dict[str, Any]:
    """The three fronts before one nginx origin."""
    origin = Process("origin", ["nginx", "-c", str(_origin_config(run)), "-p", str(run)], 1, run)
    _wait_port(ORIGIN_PORT)
    results: dict[str, Any] = {}
    fronts = {name: _start_front(name, run, f"127.0.0.1:{ORIGIN_PORT}") for name in FRONT_PORTS}
    try:
        for workload, (path, connections) in WORKLOADS.items():
            order = list(fronts)
            for repeat in range(repeats):
                for name in order if repeat % 2 == 0 else reversed(order):
                    measured = _measure(
                        fronts[name], FRONT_PORTS[name], path, connections, duration
                    )
                    results.setdefault(workload, {}).setdefault(name, []).append(measured)
                    print(workload, name, measured, flush=True)
    finally:
        for process in fronts.values():
            process.stop()
        origin.stop()
    return results


def _slow_clients(
    port: int, count: int, stop: threading.Event, rate: int
) -> list[threading.Thread]:
    """C{count} clients each downloading /big/1MiB at about C{rate} bytes/s, again and again."""

    def client() -> None:
        while not stop.is_set():
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                    s.settimeout(30)
                    s.connect(("127.0.0.1", port))
                    s.sendall(
                        f"GET /big/1048576 HTTP/1.1\r\nHost: {HOST}\r\n"
                        "Connection: close\r\n\r\n".encode()
                    )
                    while not stop.is_set():
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        time.sleep(4096 / rate)
            except OSError:
                time.sleep(0.1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _occupancy(log: Path, start: float, end: float, workers: int) -> float:
    busy = 0.0
    if log.exists():
        for line in log.read_text().splitlines():
            began, ended = (float(part) for part in line.split())
            busy += max(0.0, min(ended, end) - max(began, start))
    return busy / ((end - start) * workers)


def part_two(run: Path, duration: float) -> dict[str, Any]:
    """gunicorn behind squeak and behind nginx, with 64 slow clients."""
    results: dict[str, Any] = {}
    for name in ("squeak", "nginx"):
        log = run / f"occupancy-{name}.log"
        app = Process(
            f"gunicorn-{name}",
            [
                str(VENV_BIN / "gunicorn"),
                "--workers",
                "2",
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{APP_PORT}",
                "--chdir",
                str(ROOT / "bench"),
                "--timeout",
                "120",
                "accel_app:app",
            ],
            1,
            run,
            ACCEL_BENCH_OCCUPANCY=str(log),
        )
        _wait_port(APP_PORT)
        front = _start_front(name, run, f"127.0.0.1:{APP_PORT}", tag="-app")
        port = FRONT_PORTS[name] + 100
        stop = threading.Event()
        try:
            threads = _slow_clients(port, 64, stop, 65536)
            time.sleep(2)
            start = time.time()
            measured = _wrk(port, "/echo", 8, duration)
            end = time.time()
            measured["worker_occupancy"] = _occupancy(log, start, end, 2)
            results[name] = measured
            print("gunicorn behind", name, measured, flush=True)
        finally:
            stop.set()
            front.stop()
            app.stop()
            for thread in threads:
                thread.join(5)
    return results


def _table(one: dict[str, Any], two: dict[str, Any]) -> str:
    lines = [
        "| workload | front | req/s (median) | CPU ms / 1000 req |",
        "|---|---|---:|---:|",
    ]
    for workload, by_front in one.items():
        for name, runs in by_front.items():
            rps = statistics.median(run["rps"] for run in runs)
            cpu = statistics.median(run["cpu_ms_per_1000"] for run in runs)
            lines.append(f"| {workload} | {name} | {rps:,.0f} | {cpu:,.1f} |")
    lines += [
        "",
        "| gunicorn (sync, 2 workers) behind "
        "| small page req/s with 64 slow clients | worker occupancy |",
        "|---|---:|---:|",
    ]
    for name, measured in two.items():
        lines.append(
            f"| {name} | {measured['rps']:,.0f} | {100 * measured['worker_occupancy']:.0f} % |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--part", choices=("1", "2", "both"), default="both")
    options = parser.parse_args()
    for tool in ("nginx", "squid", "wrk", "taskset", "curl"):
        if shutil.which(tool) is None:
            print(f"accel_bench: {tool} is not installed", file=sys.stderr)
            return 2
    if not (VENV_BIN / "gunicorn").exists():
        print("accel_bench: gunicorn is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    run = Path(tempfile.mkdtemp(prefix="squeak-accel-bench-"))
    # Squid and nginx workers run as unprivileged users: let them write here.
    run.chmod(0o777)
    load = os.getloadavg()
    one = part_one(run, options.duration, options.repeats) if options.part != "2" else {}
    two = part_two(run, options.duration) if options.part != "1" else {}
    table = _table(one, two)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{stamp}_accel.json").write_text(
        json.dumps({"load_before": load, "part1": one, "part2": two}, indent=1)
    )
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
