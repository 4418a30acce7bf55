"""
Cache hierarchies on loopback for tests: squeak proxies started in-process
from TOML text (so the configuration is read as an operator's would be),
real Squid processes started with their own configuration, and a client
that speaks to a proxy from a thread.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from squeak.config import parse_config
from squeak.service import build_service
from tests.proxyharness import exchange_raw

SQUID = "/usr/sbin/squid"


def squid_missing() -> str | None:
    """Why Squid tests cannot run, or L{None}."""
    if not os.access(SQUID, os.X_OK):
        return f"{SQUID} is missing: install the Debian package squid (bash .ci/setup-tools)"
    return None


@dataclass
class RunningProxy:
    """A proxy started for a test."""

    name: str
    port: int
    log_path: str
    service: Any = None
    #: For Squid: stop it, and start it again on the same port.
    stop_squid: Any = None
    start_squid: Any = None

    async def go_down(self) -> None:
        """
        Stop listening and cut every client connection (pooled keep-alive
        connections from children included), as a crashed proxy would.
        """
        await self.service.stopService()
        for channel in list(self.service.context.channels):
            channel.transport.abortConnection()
        await deferLater(reactor, 0.05, lambda: None)

    def log_lines(self) -> list[str]:
        if self.service is not None:
            self.service.context.access_log.flush()
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()


def free_port() -> int:
    """A loopback port free a moment ago (for Squid, which cannot report one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_squeak(
    case: unittest.TestCase, name: str, extra: str = "", port: int = 0
) -> RunningProxy:
    """
    Start a squeak proxy named C{name} (its visible_hostname, which Via
    loop detection needs unique in a hierarchy) with C{extra} TOML, on
    C{port} (by default an ephemeral one).
    """
    directory = tempfile.mkdtemp(prefix=f"squeak-{name}-")
    case.addCleanup(shutil.rmtree, directory, True)
    log_path = os.path.join(directory, "access.log")
    text = f"""
[proxy]
http_port = ["127.0.0.1:{port}"]
visible_hostname = "{name}.test"

[cache]
dir = "{directory}/cache"

[access_log]
path = "{log_path}"

{extra}
"""
    config = parse_config(text, os.path.join(directory, "squeak.toml"))
    service = build_service(config, reactor)
    service.startService()
    case.addCleanup(service.stopService)

    async def close_clients() -> None:
        channels = service.context.channels
        for _ in range(40):
            if not channels:
                return
            await deferLater(reactor, 0.05, lambda: None)
        for channel in list(channels):
            channel.transport.abortConnection()
        await deferLater(reactor, 0, lambda: None)

    case.addCleanup(close_clients)
    bound = service.services[1].port.getHost().port
    return RunningProxy(name, bound, log_path, service)


def start_squid(
    case: unittest.TestCase,
    name: str,
    extra: str = "",
    access: str = "http_access allow localhost",
) -> RunningProxy:
    """
    Start a real Squid (C{-N}, foreground) on a free loopback port, with a
    memory-only cache, its own directory (writable by the account it
    switches to when started as root), and C{extra} configuration lines.
    """
    reason = squid_missing()
    if reason:
        raise unittest.SkipTest(reason)
    directory = tempfile.mkdtemp(prefix=f"squid-{name}-")
    case.addCleanup(shutil.rmtree, directory, True)
    os.chmod(directory, 0o777)
    port = free_port()
    log_path = os.path.join(directory, "access.log")
    conf = os.path.join(directory, "squid.conf")
    user = "cache_effective_user proxy" if os.geteuid() == 0 else ""
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(
            f"""
http_port 127.0.0.1:{port}
visible_hostname {name}.test
pid_filename {directory}/squid.pid
{user}
access_log stdio:{log_path}
cache_log {directory}/cache.log
cache_store_log none
cache_mem 16 MB
maximum_object_size_in_memory 1 MB
coredump_dir {directory}
netdb_filename none
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
acl localhost src 127.0.0.1/32
{access}
{extra}
http_access deny all
"""
        )
    running = RunningProxy(name, port, log_path)
    process: list[subprocess.Popen[bytes]] = []

    def launch() -> None:
        """Start Squid and wait (at most 20 s) until it listens."""
        started = subprocess.Popen(
            [SQUID, "-N", "-f", conf],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process[:] = [started]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if started.poll() is not None:
                with open(
                    os.path.join(directory, "cache.log"), encoding="utf-8", errors="replace"
                ) as log:
                    tail = log.read()[-800:]
                raise AssertionError(f"squid exited with {started.returncode}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("squid did not listen within 20s")

    def stop() -> None:
        """Stop Squid (SIGTERM, then SIGKILL after 10 s)."""
        for started in process:
            started.terminate()
            try:
                started.wait(timeout=10)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=10)
        process.clear()

    case.addCleanup(stop)
    launch()
    running.stop_squid = stop
    running.start_squid = launch
    return running


def squid_peer_lines(peers: list[tuple[str, int, int]], options: str = "") -> str:
    """C{cache_peer} lines for Squid: C{(name, port, weight)} parents on loopback."""
    return "\n".join(
        f"cache_peer 127.0.0.1 parent {port} 0 no-query no-digest name={name} "
        f"weight={weight} {options}"
        for name, port, weight in peers
    )


def peer_toml(name: str, port: int, extra: str = "") -> str:
    """One C{[[cache_peer]]} table for a loopback parent."""
    return f"""
[[cache_peer]]
name = "{name}"
host = "127.0.0.1"
port = {port}
{extra}
"""


def raw_request(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Send C{data} to a proxy, read until it closes (in a thread)."""
    return exchange_raw(port, data, timeout)


async def get(
    port: int, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """
    GET C{url} through the proxy on C{port}, C{Connection: close}: the
    status, the head and the body.
    """
    lines = [f"GET {url} HTTP/1.1", f"Host: {url.split('/')[2]}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    answer: bytes = await deferToThread(raw_request, port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head, body
