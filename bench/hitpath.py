#!/usr/bin/env python3
"""
The CPU cost of squeak's own per-request work, without sockets.

C1 and T1 (docs/performance.md) are bound by one Python thread at 100 %
CPU; wrk through the kernel measures that work together with the system
calls around it, and its figures move by several per cent between runs.
This script drives the real proxy code, in-process, with requests written
straight into a L{ForwardProxy} on a fake transport, and reports the
microseconds of Python spent per request:

  - C{hit}:  a 1 KiB memory-tier hit (the C1 path), answered synchronously;
  - C{miss}: a 1 KiB C{no-store} response relayed from an in-process
    origin (the T1 path, upstream connection pooled), which needs the
    reactor to move bytes between the fake client and a real loopback
    origin, so it includes the upstream socket work.

It uses the bench configuration (bench/squeak-bench.toml) with the access
log written to a scratch file, as in the harness.  Use it to compare
changes to the request path (run it before and after, several times); the
harness's wrk figures remain the measure of record.

Usage:  .venv/bin/python bench/hitpath.py [--requests N] [--repeats R]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import react
from twisted.internet.testing import StringTransport

HERE = Path(__file__).resolve().parent
if not os.environ.get("PYTHONPATH"):
    # The tree measured is PYTHONPATH's when it is set (bench/instructions.py
    # and other A/B runs point it at another tree), else this checkout's.
    sys.path.insert(0, str(HERE.parent))

from squeak.accesslog import AccessLog  # noqa: E402
from squeak.config import load_config  # noqa: E402
from squeak.proxy.client import ForwardProxyFactory  # noqa: E402
from squeak.proxy.router import ForwardRequest  # noqa: E402
from squeak.service import build_context  # noqa: E402

reactor: Any = _reactor

BODY = b"x" * 1024


class _Origin(Protocol):
    """
    A minimal keep-alive origin: every request gets 1 KiB, cacheable for
    C{/cache/...} and C{no-store} otherwise.
    """

    def connectionMade(self) -> None:
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            control = b"max-age=3600" if path.startswith(b"/cache/") else b"no-store"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Cache-Control: %s\r\nContent-Length: %d\r\n\r\n%s" % (control, len(BODY), BODY)
            )


def _request(port: int, path: str) -> bytes:
    return (
        f"GET http://127.0.0.1:{port}{path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUser-Agent: hitpath\r\nAccept: */*\r\n\r\n"
    ).encode()


@inlineCallbacks
def _measure(_reactor: Any, args: argparse.Namespace) -> Any:
    scratch = Path(tempfile.mkdtemp(prefix="squeak-hitpath-"))
    config = load_config(str(HERE / "squeak-bench.toml"))
    config = dataclasses.replace(
        config,
        access_log=dataclasses.replace(config.access_log, path=str(scratch / "access.log")),
        cache=dataclasses.replace(config.cache, dir=str(scratch / "cache")),
    )
    origin_port = reactor.listenTCP(0, Factory.forProtocol(_Origin), interface="127.0.0.1")
    port = origin_port.getHost().port
    access_log = AccessLog(config.access_log.path, config.access_log.format)
    context = build_context(config, reactor, access_log)
    factory = ForwardProxyFactory(context, ForwardRequest)
    channel = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    waiting: list[Deferred[None]] = []
    exchange_finished = channel.exchange_finished

    def finished(exchange: Any) -> None:
        exchange_finished(exchange)
        while waiting:
            # Later, once the channel's own call stack has unwound.
            reactor.callLater(0, waiting.pop().callback, None)

    channel.exchange_finished = finished

    def one(request: bytes) -> Deferred[None]:
        """Send C{request}; fires when its exchange is over."""
        transport.clear()
        answered: Deferred[None] = Deferred()
        waiting.append(answered)
        channel.dataReceived(request)
        return answered

    hit, miss = _request(port, "/cache/1k"), _request(port, "/nostore/1k")
    yield one(hit)  # fills the cache
    yield one(hit)
    if b"X-Cache: HIT" not in transport.value():
        raise SystemExit(f"expected a hit, got:\n{transport.value().decode(errors='replace')}")
    yield one(miss)

    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            transport.clear()
            channel.dataReceived(hit)
            waiting.clear()
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"{stats.total_calls / args.requests:.0f} function calls per hit")  # type: ignore[attr-defined]
        stats.sort_stats(args.profile).print_stats(int(os.environ.get("HITPATH_LINES", "40")))
        count = args.requests // 4
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(count):
            yield one(miss)
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"{stats.total_calls / count:.0f} function calls per miss")  # type: ignore[attr-defined]
        stats.sort_stats(args.profile).print_stats(60)

    results: dict[str, list[float]] = {"hit": [], "miss": []}
    for _ in range(args.repeats):
        gc.collect()
        started = time.process_time()
        for _ in range(args.requests if args.only != "miss" else 0):
            transport.clear()
            channel.dataReceived(hit)
            waiting.clear()
            # A memory hit is answered synchronously; anything else would
            # make this loop meaningless.
            if not transport.value().endswith(BODY):
                raise SystemExit(f"a hit was not answered synchronously: {transport.value()!r}")
        results["hit"].append((time.process_time() - started) / max(1, args.requests) * 1e6)
        count = args.requests // 4 if args.only != "hit" else 0
        gc.collect()
        started = time.process_time()
        for _ in range(count):
            yield one(miss)
        results["miss"].append((time.process_time() - started) / max(1, count) * 1e6)
    access_log.close()
    for name, values in results.items():
        print(
            f"{name:5s} {statistics.median(values):7.1f} us/request, best {min(values):.1f} "
            f"(median of {len(values)}: {', '.join(f'{v:.1f}' for v in values)})"
        )
    yield origin_port.stopListening()
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--profile",
        metavar="SORT",
        help="first profile the hit loop with cProfile, sorted by SORT (tottime, cumtime...)",
    )
    parser.add_argument(
        "--only",
        choices=("hit", "miss"),
        help="time only hits or only misses (for instruction counts under callgrind)",
    )
    args = parser.parse_args()
    react(_measure, [args])


if __name__ == "__main__":
    main()
