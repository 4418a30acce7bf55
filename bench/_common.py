"""
Shared plumbing for the stand-alone benchmark scripts in bench/
(disk_hit.py, tunnels.py, auth_bench.py): a private nginx origin, squeak
(and optionally Squid) started pinned to the proxy core, RSS and CPU
sampling.  Same layout as the shared harness (../shared/bench/README.md):
the proxy alone on CPU 0; origin, clients and this script on CPU 1.

These scripts use their own ports (origin 8091, squeak 3131/3132, Squid
3139) and their own scratch directory (/tmp/squeak-extra/), so they do not
collide with a harness run's 8081/3128/3130; but run them when no harness
run is going on, or the figures disturb each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
SCRATCH = Path("/tmp/squeak-extra")
HARNESS_WWW = Path("/tmp/squeak-bench/www")
PROXY_CPU = 0
LOAD_CPU = 1
LOOPBACK = "127.0.0.1"
MIB = 1024 * 1024

_STARTED: list[subprocess.Popen[bytes]] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def setup_self() -> None:
    """Pin this script (and so every client it starts) to the load core."""
    os.sched_setaffinity(0, {LOAD_CPU})
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def spawn(
    cmd: list[str], cpu: int, logfile: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    def pre() -> None:
        os.setsid()
        raise_nofile()
        os.sched_setaffinity(0, {cpu})

    with open(logfile, "ab") as out:
        p = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pre,
            env=env,
        )
    _STARTED.append(p)
    return p


def stop(p: subprocess.Popen[bytes], grace: float = 8.0) -> None:
    """SIGTERM the process started here, then SIGKILL its own process group."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(2)


def stop_all() -> None:
    while _STARTED:
        stop(_STARTED.pop())


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection((LOOPBACK, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def make_www(sizes: dict[str, int]) -> Path:
    """Random files; the harness's own files are reused (hard link) when there."""
    www = SCRATCH / "www"
    www.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        path = www / name
        if path.exists() and path.stat().st_size == size:
            continue
        src = HARNESS_WWW / name
        if src.exists() and src.stat().st_size == size:
            shutil.copyfile(src, path)
            continue
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 4 * MIB))
                f.write(chunk)
                left -= len(chunk)
    return www


_NGINX = """\
worker_processes 1;
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    default_type application/octet-stream;
    server_tokens off;
    log_format bench '$msec $request_method $request_uri $status $body_bytes_sent '
                     '$connection $connection_requests "$http_via"';
    access_log {run}/origin-access.log bench buffer=64k flush=1s;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 300s; keepalive_requests 1000000;
    client_header_timeout 300s;
    gzip off;
    client_body_temp_path {run}/nginx-tmp;
    proxy_temp_path {run}/nginx-tmp; fastcgi_temp_path {run}/nginx-tmp;
    uwsgi_temp_path {run}/nginx-tmp; scgi_temp_path {run}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /cache/ {{ alias {www}/; add_header Cache-Control "max-age=3600" always; }}
        location /nostore/ {{ alias {www}/; add_header Cache-Control "no-store" always; }}
        location = /nginx_status {{ stub_status; access_log off; }}
    }}
}}
"""


class Origin:
    """nginx, one worker, on the load core: /cache/NAME (max-age=3600) and
    /nostore/NAME (no-store), as the harness's origin."""

    def __init__(self, run: Path, port: int, www: Path):
        self.run, self.port, self.www = run, port, www
        self.proc: subprocess.Popen[bytes] | None = None
        self.status_fetches = 0

    def start(self) -> None:
        if not port_free(self.port):
            raise RuntimeError(f"origin port {self.port} is busy")
        (self.run / "nginx-tmp").mkdir(parents=True, exist_ok=True)
        conf = self.run / "nginx.conf"
        conf.write_text(_NGINX.format(run=self.run, port=self.port, www=self.www))
        self.proc = spawn(
            [
                "nginx",
                "-e",
                str(self.run / "nginx-error.log"),
                "-p",
                str(self.run),
                "-c",
                str(conf),
            ],
            LOAD_CPU,
            self.run / "nginx.stdout",
        )
        wait_port(self.port, self.proc)

    def requests(self) -> int:
        """The origin's request counter (stub_status), minus every status
        fetch made so far, this one included: differences between two calls
        are the requests that others made."""
        with socket.create_connection((LOOPBACK, self.port), 2) as s:
            s.sendall(b"GET /nginx_status HTTP/1.0\r\nHost: o\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        self.status_fetches += 1
        line = data.split(b"\r\n\r\n", 1)[1].splitlines()[2]
        return int(line.split()[2]) - self.status_fetches

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc else []


def tree(root: int) -> list[int]:
    """root and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_mb(pids: list[int]) -> float:
    kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


def cpu_ticks(pids: list[int]) -> int:
    t = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    total = sum(f[:8])
    return total - idle, total


class RssSampler:
    """Samples the RSS of a process tree every 20 ms in a thread."""

    def __init__(self, root: int):
        self.root = root
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = tree(self.root)
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 50 == 0:
                pids = tree(self.root)
            self.samples.append(rss_mb(pids))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._t.join()


class Window:
    """CPU accounting over a measured window: the proxy's CPU % of one core,
    and foreign_cpu_pct, the machine's busy time not used by the proxy, the
    origin, this script or its (reaped) children, as % of one core."""

    def __init__(self, proxy_root: int | None, origin: Origin | None):
        self.proxy_root, self.origin = proxy_root, origin

    def _ours(self) -> tuple[int, int]:
        proxy = cpu_ticks(tree(self.proxy_root)) if self.proxy_root else 0
        other = cpu_ticks(self.origin.pids()) if self.origin else 0
        ru_s, ru_c = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        hz = os.sysconf("SC_CLK_TCK")
        mine = (ru_s.ru_utime + ru_s.ru_stime + ru_c.ru_utime + ru_c.ru_stime) * hz
        return proxy, other + int(mine)

    def __enter__(self) -> Window:
        self.t0 = time.monotonic()
        self.b0 = machine_busy_ticks()
        self.o0 = self._ours()
        return self

    def __exit__(self, *_: Any) -> None:
        dt = time.monotonic() - self.t0
        b1, o1 = machine_busy_ticks(), self._ours()
        hz = os.sysconf("SC_CLK_TCK")
        busy = b1[0] - self.b0[0]
        proxy = o1[0] - self.o0[0]
        ours = o1[1] - self.o0[1]
        self.seconds = dt
        self.proxy_cpu_pct = round(100 * proxy / hz / dt, 1)
        self.foreign_cpu_pct = round(100 * max(0, busy - proxy - ours) / hz / dt, 1)


def squeak_cmd(config: Path) -> list[str]:
    return [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "squeak", "--config", str(config)]


def start_squeak(
    run: Path,
    name: str,
    port: int,
    toml: str,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Write run/NAME.toml and start squeak on the proxy core; its output goes
    to run/NAME-stdout.log."""
    if not port_free(port):
        raise RuntimeError(f"port {port} is busy")
    conf = run / f"{name}.toml"
    conf.write_text(toml)
    check = subprocess.run(
        [sys.executable, "-m", "squeak", "check-config", str(conf)], capture_output=True, text=True
    )
    if check.returncode:
        raise RuntimeError(f"{conf}: {check.stdout}{check.stderr}")
    p = spawn(cmd or squeak_cmd(conf), PROXY_CPU, run / f"{name}-stdout.log", env=env)
    wait_port(port, p)
    return p


def start_squid(run: Path, port: int) -> subprocess.Popen[bytes]:
    """Squid -N, no cache (only tunnels and pass-through are asked of it)."""
    sq = run / "squid"
    sq.mkdir(parents=True, exist_ok=True)
    shutil.chown(sq, "proxy", "proxy")
    conf = sq / "squid.conf"
    conf.write_text(f"""\
http_port 127.0.0.1:{port}
workers 1
visible_hostname squeak-bench
acl localhost_src src 127.0.0.1/32
http_access allow localhost_src
http_access deny all
cache deny all
cache_mem 8 MB
access_log stdio:{sq}/access.log squid
cache_log {sq}/cache.log
cache_store_log none
logfile_rotate 0
pid_filename {sq}/squid.pid
coredump_dir {sq}
netdb_filename none
icp_port 0
htcp_port 0
pinger_enable off
max_filedescriptors 65536
shutdown_lifetime 1 seconds
cache_effective_user proxy
""")
    p = spawn(["squid", "-N", "-f", str(conf)], PROXY_CPU, sq / "stdout.log")
    wait_port(port, p)
    return p


def log_trouble(path: Path) -> list[str]:
    """Lines of a squeak stdout.log that look like errors (as bench/run.py)."""
    import re

    bad = re.compile(r"Traceback|Unhandled|\[-\] .*(?:Error|error|failed|Failure)")
    if not path.exists():
        return []
    return [ln.rstrip() for ln in path.open(errors="replace") if bad.search(ln)]


def new_run(kind: str) -> Path:
    run = SCRATCH / f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}"
    run.mkdir(parents=True, exist_ok=True)
    return run


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def save(run: Path, name: str, data: dict[str, Any]) -> Path:
    out = HERE / "results" / f"{name}-{run.name.rsplit('-', 1)[1]}.json"
    out.parent.mkdir(exist_ok=True)
    data.setdefault("commit", commit())
    data.setdefault("run_dir", str(run))
    out.write_text(json.dumps(data, indent=1))
    log(f"results: {out}")
    return out
