"""
Worker processes and graceful reload, with a real twistd (L{squeak.master},
L{squeak.worker}): workers share the listeners and the disk cache, a dead
worker is replaced, and SIGHUP (or C{python -m squeak reload}) swaps the
configuration without refusing or resetting a connection.
"""

from __future__ import annotations

import collections
import gc
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from squeak.worker import GC_THRESHOLDS, tune_garbage_collector
from tests.sloworigin import PATTERN, Download, SlowOrigin, body_digest, fetch
from tests.test_drain import proxy_config, wait_for
from tests.tlsfixtures import make_server_files
from tests.twistdprocess import TwistdProxy


def _served_by(proxy: TwistdProxy, url: str, want: set[str], tries: int = 60) -> dict[str, str]:
    """
    Fetch C{url} until the worker header names a PID in C{want} (bounded);
    the last response's fields.
    """
    fields: dict[str, str] = {}
    for _ in range(tries):
        _, fields, _ = fetch(proxy.port, url)
        if fields.get("x-squeak-worker") in want:
            return fields
    raise AssertionError(f"no response from {want}; last {fields}")


def connection_spread(
    proxy_port: int, url: str, count: int, gap: float = 0.0
) -> collections.Counter[str]:
    """
    Open C{count} keep-alive connections to the proxy, C{gap} seconds
    apart (0: a burst, every connection made before any request is sent),
    then ask for C{url} once on each and count which worker answered
    (C{X-Squeak-Worker}).  Every connection stays open until all are
    counted, as a benchmark's keep-alive clients do.
    """
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            conns.append(socket.create_connection(("127.0.0.1", proxy_port), timeout=30))
            if gap:
                time.sleep(gap)
        request = f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for conn in conns:
            conn.sendall(request)
        spread: collections.Counter[str] = collections.Counter()
        for conn in conns:
            head = b""
            while b"\r\n\r\n" not in head:
                more = conn.recv(65536)
                if not more:
                    raise AssertionError(f"connection closed before a response: {head!r}")
                head += more
            found = re.search(rb"(?im)^x-squeak-worker: *(\d+)", head)
            if found is None:
                raise AssertionError(f"no worker header: {head!r}")
            spread[found.group(1).decode()] += 1
        return spread
    finally:
        for conn in conns:
            conn.close()


class PinnedClient:
    """
    One keep-alive connection to the proxy, and so to one worker: requests
    on it are answered by the worker that accepted it.
    """

    def __init__(self, proxy_port: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", proxy_port), timeout=20)
        self.worker = ""

    def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        """GET C{url}: the status, fields (lower-case names) and body."""
        self.conn.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            more = self.conn.recv(65536)
            if not more:
                raise AssertionError(f"connection closed: {data!r}")
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", "0"))
        while len(body) < length:
            more = self.conn.recv(65536)
            if not more:
                raise AssertionError("connection closed in the body")
            body += more
        self.worker = fields.get("x-squeak-worker", "")
        return int(lines[0].split()[1]), fields, body

    def close(self) -> None:
        self.conn.close()


def pinned_to_each_worker(
    test: unittest.SynchronousTestCase, proxy_port: int, url: str, workers: int = 2
) -> list[PinnedClient]:
    """
    One keep-alive connection to each of C{workers} workers (bounded: at
    most 40 connections tried), each having fetched C{url} once.
    """
    found: dict[str, PinnedClient] = {}
    for _ in range(40):
        client = PinnedClient(proxy_port)
        test.addCleanup(client.close)
        client.get(url)
        if client.worker not in found:
            found[client.worker] = client
        if len(found) == workers:
            return list(found.values())
    raise AssertionError(f"connections reached only {sorted(found)}")


class WorkerTests(unittest.SynchronousTestCase):
    """
    C{workers = 2}: two processes serve, share the disk tier, and a killed
    one is replaced while the other serves.
    """

    timeout = 90
    extra_proxy = ""

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.directory.mkdir(parents=True)
        config = proxy_config(self.directory, workers=2, lifetime="5s")
        config = config.replace(
            "worker_header = true", "worker_header = true\n" + self.extra_proxy
        )
        self.proxy = TwistdProxy(config).start()
        self.addCleanup(self.proxy.stop)
        self.assertTrue(wait_for(self.proxy, r"worker \d+: .*squeak listening on", count=2))

    def _pids(self, count: int = 2, tries: int = 60) -> set[str]:
        seen: set[str] = set()
        for _ in range(tries):
            status, fields, _ = fetch(self.proxy.port, self.origin.url("/body/10"))
            self.assertEqual(status, 200)
            seen.add(fields["x-squeak-worker"])
            if len(seen) >= count:
                break
        return seen

    def test_two_workers_serve(self) -> None:
        """
        Requests are served by two processes, neither of them the master.
        """
        pids = self._pids()
        self.assertEqual(len(pids), 2)
        assert self.proxy.process is not None
        self.assertNotIn(str(self.proxy.process.pid), pids)
        for pid in pids:
            self.assertIn(f"started worker {pid} ", self.proxy.output)

    def test_workers_say_how_they_accept(self) -> None:
        """
        Each worker's log says it accepts on the master's socket (and how
        the queue is shared), not that it started a port of its own.
        """
        address = rf"127\.0\.0\.1:{self.proxy.port}"
        for slot in (0, 1):
            self.assertTrue(
                wait_for(
                    self.proxy,
                    rf"worker in slot {slot} \(pid \d+\) accepting on {address} "
                    + re.escape(f"({self.queue})"),
                ),
                self.proxy.output[-3000:],
            )
        self.assertNotIn("ForwardProxyFactory starting on", self.proxy.output)

    #: How the workers' log lines describe their accept queue.
    queue = "the master's socket, one accept queue shared by the workers"

    def test_shared_queue_is_balanced(self) -> None:
        """
        Two bursts of 64 keep-alive connections, each connection made
        before any request is sent, as a benchmark's clients open them:
        neither worker holds more than 38 of a burst.

        Without balancing, the first worker to wake accepted most of a
        burst (39-64 of 64 in 14 runs of 15 measured, 35 in one:
        docs/performance.md), since Twisted accepts up to 100 connections
        per wake-up.  With it, a worker yields while it holds more than 2
        connections beyond its peer, so a burst splits 32/32 or 33/31; 38
        leaves room for 4 connections accepted by a yielding worker after
        waiting 50 ms for a peer the machine's load kept from running.
        Both bursts must pass: the old code passing one by chance is
        rare, passing two rarer still.
        """
        url = self.origin.url("/body/10")
        for burst in range(2):
            spread = connection_spread(self.proxy.port, url, 64)
            self.assertEqual(sum(spread.values()), 64)
            self.assertEqual(len(spread), 2, (burst, spread))
            self.assertLessEqual(max(spread.values()), 38, (burst, spread))

    def test_miss_in_one_is_hit_in_the_other(self) -> None:
        """
        The disk tier is shared: what one worker stored, the other serves
        from the cache.
        """
        url = self.origin.url("/cacheable/5000")
        status, fields, body = fetch(self.proxy.port, url)
        self.assertEqual((status, len(body)), (200, 5000))
        first = fields["x-squeak-worker"]
        self.assertIn("MISS", fields.get("x-cache", ""))
        other = self._pids() - {first}
        fields = _served_by(self.proxy, url, other)
        self.assertIn("HIT", fields.get("x-cache", ""))
        self.assertEqual(self.origin.paths.count("/cacheable/5000"), 1)

    def test_freshening_reaches_the_other_worker(self) -> None:
        """
        A 304 that freshens an entry in one worker reaches the other's
        memory tier: the other serves the freshened copy as a hit rather
        than its own stale memory copy, which it would revalidate again.
        """
        first, second = pinned_to_each_worker(self, self.proxy.port, self.origin.url("/body/10"))
        url = self.origin.url("/validated/100/4")
        status, fields, body = first.get(url)
        self.assertEqual((status, body), (200, PATTERN[:100]))
        self.assertIn("MISS", fields.get("x-cache", ""))
        # Both workers hold the entry in memory.
        for client in (first, second, second, first):
            status, fields, _ = client.get(url)
            self.assertIn("HIT", fields.get("x-cache", ""), (client.worker, fields))
        self.assertEqual(self.origin.paths.count("/validated/100/4"), 1)
        time.sleep(5.2)  # stale in both (max-age 4; Date has 1 s resolution)
        status, fields, body = first.get(url)
        self.assertEqual((status, body), (200, PATTERN[:100]))
        self.assertEqual(self.origin.paths.count("/validated/100/4"), 2)
        freshened = fields["x-origin-request"]
        status, fields, body = second.get(url)
        self.assertEqual((status, body), (200, PATTERN[:100]))
        self.assertIn("HIT", fields.get("x-cache", ""), fields)
        self.assertEqual(fields["x-origin-request"], freshened)
        self.assertEqual(self.origin.paths.count("/validated/100/4"), 2)

    def test_killed_worker_is_replaced(self) -> None:
        """
        SIGKILL to a worker: the master says so (naming the exit), the other
        worker keeps serving, and a new worker takes the dead one's place.
        """
        pids = self._pids()
        victim = sorted(pids)[0]
        os.kill(int(victim), signal.SIGKILL)
        for _ in range(10):
            status, fields, _ = fetch(self.proxy.port, self.origin.url("/body/10"))
            self.assertEqual(status, 200)
            self.assertNotEqual(fields["x-squeak-worker"], victim)
        self.assertTrue(
            wait_for(
                self.proxy,
                rf"worker {victim} \(slot \d\) exited with signal SIGKILL; "
                r"starting another in [0-9.]+s",
            )
        )
        self.assertTrue(wait_for(self.proxy, r"worker \d+: .*squeak listening on", count=3))
        survivors = pids - {victim}
        fresh = self._pids(tries=80) - survivors
        self.assertEqual(len(fresh), 1, fresh)
        self.assertNotIn(victim, fresh)

    def test_workers_stop_when_the_master_dies(self) -> None:
        """
        SIGKILL to the master: its workers see their pipe from it end and
        stop by themselves, leaving no orphan serving the sockets.
        """
        pids = {int(pid) for pid in self._pids()}
        assert self.proxy.process is not None
        self.proxy.process.kill()
        self.proxy.process.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        self.assertEqual({pid for pid in pids if _alive(pid)}, set())


def _alive(pid: int) -> bool:
    """Whether process C{pid} still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class ReusePortWorkerTests(unittest.SynchronousTestCase):
    """
    C{reuseport = true}: each worker its own accept queue; both serve.
    """

    timeout = 90
    extra_proxy = "reuseport = true"
    setUp = WorkerTests.setUp
    _pids = WorkerTests._pids
    test_two_workers_serve = WorkerTests.test_two_workers_serve
    queue = "its own SO_REUSEPORT queue, bound by the master"
    test_workers_say_how_they_accept = WorkerTests.test_workers_say_how_they_accept


def _replace_config(proxy: TwistdProxy, text: str) -> None:
    """
    Replace the configuration file as an editor would (a new file renamed
    over the old one, so the proxy never reads half of it).
    """
    assert proxy.config_path is not None
    scratch = proxy.config_path + ".new"
    Path(scratch).write_text(text, encoding="utf-8")
    os.replace(scratch, proxy.config_path)


class ReloadTests(unittest.SynchronousTestCase):
    """
    SIGHUP in a single process: a new rule applies at once while work in
    flight completes, requests in a loop see no error, and a broken file
    changes nothing.
    """

    timeout = 120
    workers = 1
    reloads = 10
    SIZE = 2 * 1024 * 1024
    #: Seconds the download during a reload takes: longer than a reload.
    DURATION = 3

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.directory.mkdir(parents=True)
        self.config = proxy_config(self.directory, workers=self.workers, lifetime="20s")
        self.proxy = TwistdProxy(self.config).start()
        self.addCleanup(self.proxy.stop)
        self._ready(0)

    def _ready(self, reloads: int) -> None:
        """Wait until the workers of the last reload serve."""
        if self.workers > 1:
            self.assertTrue(
                wait_for(
                    self.proxy,
                    r"worker \d+: .*squeak listening on",
                    count=self.workers * (reloads + 1),
                )
            )

    def _reload(self, number: int) -> None:
        self.proxy.signal(signal.SIGHUP)
        self.assertTrue(
            wait_for(self.proxy, rf"reload done \({number}\)", timeout=30),
            self.proxy.output[-2000:],
        )

    def test_rule_change_while_a_download_runs(self) -> None:
        """
        A deny rule added by a reload refuses new requests at once, while a
        download that started before completes intact.
        """
        download = Download(self.proxy.port, self.origin.url(f"/slow/{self.SIZE}/{self.DURATION}"))
        self.assertTrue(download.started())
        _replace_config(self.proxy, self.config + '\n[access]\nhttp_access = ["deny all"]\n')
        self._reload(1)
        status, _, _ = fetch(self.proxy.port, self.origin.url("/body/10"))
        self.assertEqual(status, 403)
        self.assertFalse(download.complete)
        download.wait(30)
        self.assertTrue(download.complete, (download.received, download.error))
        self.assertEqual(download.digest, body_digest(self.SIZE))

    def test_requests_in_a_loop_during_reloads(self) -> None:
        """
        A client fetching in a loop, a new connection each time, through
        ten reloads: every request answered 200, none refused or reset.
        """
        errors: list[str] = []
        answered = [0]
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    status, _, body = fetch(self.proxy.port, self.origin.url("/body/100"), 10)
                except Exception as error:  # every failure is the test's finding
                    errors.append(repr(error))
                    continue
                if status != 200 or len(body) != 100:
                    errors.append(f"{status} {len(body)}")
                answered[0] += 1

        client = threading.Thread(target=loop, daemon=True)
        client.start()
        try:
            for number in range(1, self.reloads + 1):
                self._reload(number)
                self._ready(number)
        finally:
            stop.set()
            client.join(15)
        self.assertEqual(errors, [])
        self.assertGreater(answered[0], self.reloads)

    def test_broken_file_keeps_the_running_configuration(self) -> None:
        """
        A reload of a broken file logs the one-line error and keeps serving
        the old configuration.
        """
        _replace_config(self.proxy, self.config + "\n[upstream]\nmax_idle_per_hots = 3\n")
        self.proxy.signal(signal.SIGHUP)
        path = self.proxy.config_path
        line = (
            rf"squeak: {re.escape(str(path))}:\d+: upstream.max_idle_per_hots: unknown key "
            r"\(did you mean max_idle_per_host\?\) \(reload refused; the running "
            r"configuration stays\)"
        )
        self.assertTrue(wait_for(self.proxy, line), self.proxy.output[-2000:])
        status, _, body = fetch(self.proxy.port, self.origin.url("/body/10"))
        self.assertEqual((status, len(body)), (200, 10))
        self.assertNotIn("reload done", self.proxy.output)

    def test_idle_keep_alive_connection_ends_without_reset(self) -> None:
        """
        A keep-alive connection idle at the reload is closed by the retiring
        configuration with an end of stream, never a reset.
        """
        conn = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=20)
        self.addCleanup(conn.close)
        conn.sendall(f"GET {self.origin.url('/body/10')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(PATTERN[:10]):
            answer += conn.recv(65536)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"))
        self._reload(1)
        self.assertEqual(conn.recv(65536), b"")
        self.assertEqual(fetch(self.proxy.port, self.origin.url("/body/10"))[0], 200)

    def test_acl_files_are_read_again(self) -> None:
        """
        An ACL list file is read at load time: an edit applies at the next
        reload, not before.
        """
        blocked = self.directory / "blocked.txt"
        blocked.write_text("^/nothing$\n")
        _replace_config(
            self.proxy,
            self.config
            + f'\n[acl]\nblocked = {{ urlpath_regex_file = "{blocked}" }}\n'
            + '[access]\nhttp_access = ["deny blocked", "allow localhost"]\n',
        )
        self._reload(1)
        self._ready(1)
        self.assertEqual(fetch(self.proxy.port, self.origin.url("/body/10"))[0], 200)
        blocked.write_text("^/body/\n")
        self.assertEqual(fetch(self.proxy.port, self.origin.url("/body/10"))[0], 200)
        self._reload(2)
        self._ready(2)
        self.assertEqual(fetch(self.proxy.port, self.origin.url("/body/10"))[0], 403)

    def test_reload_opens_and_closes_listeners(self) -> None:
        """
        A listener the new file adds serves after the reload; one it drops
        is closed.
        """
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            added = probe.getsockname()[1]
        first = self.proxy.port
        both = self.config.replace(
            'http_port = ["127.0.0.1:0"]', f'http_port = ["127.0.0.1:0", "127.0.0.1:{added}"]'
        )
        _replace_config(self.proxy, both)
        self._reload(1)
        self._ready(1)
        for port in (first, added):
            status, _, _ = fetch(port, self.origin.url("/body/10"))
            self.assertEqual(status, 200)
        only = self.config.replace(
            'http_port = ["127.0.0.1:0"]', f'http_port = ["127.0.0.1:{added}"]'
        )
        _replace_config(self.proxy, only)
        self._reload(2)
        self._ready(2)
        self.assertEqual(fetch(added, self.origin.url("/body/10"))[0], 200)
        deadline = time.monotonic() + 10
        refused = False
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", first), timeout=2).close()
                time.sleep(0.1)
            except ConnectionRefusedError:
                refused = True
        self.assertTrue(refused)


class ReloadCommandTests(unittest.SynchronousTestCase):
    """
    C{python -m squeak reload}.
    """

    timeout = 60

    def test_reload_command(self) -> None:
        """
        C{python -m squeak reload --pidfile FILE} signals the process that
        the pid file names.
        """
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        pidfile = directory / "squeak.pid"
        proxy = TwistdProxy(
            proxy_config(directory),
            twistd_options=(f"--pidfile={pidfile}",),
        ).start()
        self.addCleanup(proxy.stop)
        self.assertTrue(pidfile.exists())
        result = subprocess.run(
            [sys.executable, "-m", "squeak", "reload", "--pidfile", str(pidfile)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(wait_for(proxy, r"reload done \(1\)", timeout=30))

        self.assertNotIn("reload refused", proxy.output)

    def test_no_running_squeak(self) -> None:
        """
        Without a pid file there is nothing to reload: one line, status 1.
        """
        result = subprocess.run(
            [sys.executable, "-m", "squeak", "reload", "--pidfile", "/nonexistent/squeak.pid"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("/nonexistent/squeak.pid: no running squeak", result.stderr)


class WorkersReloadTests(ReloadTests):
    """
    The same with a master and two workers: a reload starts new workers on
    the same sockets, then retires the old ones.
    """

    workers = 2
    # New workers take a couple of seconds to start.
    DURATION = 8

    def test_old_workers_retire(self) -> None:
        """
        After a reload new PIDs serve, and the old workers exit.
        """
        before = {fetch(self.proxy.port, self.origin.url("/body/10"))[1]["x-squeak-worker"]}
        self._reload(1)
        self._ready(1)
        self.assertTrue(
            wait_for(self.proxy, r"worker \d+ \(slot \d\) exited with status 0", count=2)
        )
        after = fetch(self.proxy.port, self.origin.url("/body/10"))[1]["x-squeak-worker"]
        self.assertNotIn(after, before)


class TlsListenerProcessTests(unittest.SynchronousTestCase):
    """
    A TLS listener (C{tls.https_port}) bound by squeak and adopted, in one
    process and in workers, serves requests inside TLS.
    """

    timeout = 60

    def _fetch_over_tls(self, workers: int) -> bytes:
        origin = SlowOrigin()
        self.addCleanup(origin.close)
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        files = make_server_files(directory / "tls", ["127.0.0.1"])
        config = proxy_config(
            directory,
            workers=workers,
            extra=f'[tls]\nhttps_port = ["127.0.0.1:0"]\ncertificate = "{files.certificate}"\n'
            f'key = "{files.key}"\n',
        )
        proxy = TwistdProxy(config).start()
        self.addCleanup(proxy.stop)
        self.assertTrue(wait_for(proxy, r"squeak listening on TLS 127\.0\.0\.1:\d+"))
        match = re.search(r"squeak listening on TLS 127\.0\.0\.1:(\d+)", proxy.output)
        assert match is not None
        context = ssl.create_default_context(cafile=str(files.ca))
        with (
            socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=20) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(
                f"GET {origin.url('/body/10')} HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        return data

    def test_one_process(self) -> None:
        """
        With one process.
        """
        data = self._fetch_over_tls(1)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:80])
        self.assertTrue(data.endswith(PATTERN[:10]))

    def test_workers(self) -> None:
        """
        With two workers.
        """
        data = self._fetch_over_tls(2)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:80])
        self.assertIn(b"X-Squeak-Worker: ", data)


class GarbageCollectorTuningTests(unittest.SynchronousTestCase):
    """
    L{tune_garbage_collector}: what start-up built is frozen out of every
    later collection, young garbage is collected less often, and the
    collector still frees cycles made while serving.
    """

    def setUp(self) -> None:
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def test_start_up_objects_are_frozen(self) -> None:
        """
        Objects alive when serving starts go to the permanent generation,
        which collections do not walk; the thresholds become
        L{GC_THRESHOLDS}.
        """
        built_at_start_up = [{"rule": n} for n in range(100)]
        before = gc.get_freeze_count()
        tune_garbage_collector()
        self.assertGreaterEqual(gc.get_freeze_count(), before + len(built_at_start_up))
        self.assertEqual(gc.get_threshold(), GC_THRESHOLDS)
        self.assertFalse(any(o is built_at_start_up for o in gc.get_objects()))

    def test_cycles_made_while_serving_are_still_freed(self) -> None:
        """
        Garbage in cycles made after tuning is freed by the next
        collection: the collector runs less often, not never.
        """
        tune_garbage_collector()

        class Node:
            partner: Any = None

        gone = []
        for _ in range(50):
            a, b = Node(), Node()
            a.partner, b.partner = b, a
            gone.append(weakref.ref(a))
            del a, b
        self.assertTrue(all(ref() is not None for ref in gone))
        gc.collect()
        self.assertEqual([ref() for ref in gone], [None] * 50)
