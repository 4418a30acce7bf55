"""
End to end: a real C{twistd -n squeak} subprocess, started as users start
it, proxying for stdlib clients to a stdlib loopback origin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.slowreader import read_slowly
from tests.twistdprocess import TWISTD, TwistdProxy

_BLOCK = bytes(range(256)) * 256  # 64 KiB


class _OriginHandler(BaseHTTPRequestHandler):
    """
    C{/small}: a short body; C{/big/N}: N bytes streamed with
    Content-Length; C{/cut/N}: promises N bytes, sends 64 KiB, closes.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        parts = self.path.split("/")
        if parts[1] in ("cacheable", "slowcache"):
            self._cacheable(parts[1] == "slowcache", int(parts[2]))
            return
        if parts[1] in ("big", "cut"):
            size = int(parts[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if parts[1] == "cut":
                self.wfile.write(_BLOCK)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            left = size
            try:
                while left > 0:
                    piece = _BLOCK[: min(len(_BLOCK), left)]
                    self.wfile.write(piece)
                    left -= len(piece)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        body = b"hello from origin\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cacheable(self, slow: bool, size: int) -> None:
        """
        C{/cacheable/N}: N bytes, fresh for an hour.  C{/slowcache/N}: the
        same, but after the first 1 MiB it pauses 3 s (time to kill a proxy
        mid-store) before sending the rest.
        """
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        sent = 0
        try:
            while sent < size:
                piece = _BLOCK[: min(len(_BLOCK), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
                if slow and sent == 1024 * 1024:
                    self.wfile.flush()
                    time.sleep(3)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Origin:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _OriginHandler)
        self.server.daemon_threads = True
        self.server.paths = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(log_path: str, extra: str = "") -> str:
    return f"""
[proxy]
http_port = ["127.0.0.1:0"]
visible_hostname = "squeak-e2e"

[access_log]
path = "{log_path}"
format = "squid"

[cache]
dir = "{log_path}.cache"
{extra}
"""


class EndToEndTests(unittest.SynchronousTestCase):
    """
    The packaged proxy, as a subprocess, does what users expect.
    """

    def setUp(self) -> None:
        self.origin = _Origin()
        self.addCleanup(self.origin.close)
        self.log_dir = Path(os.path.abspath(self.mktemp()))
        self.log_dir.mkdir(parents=True)
        self.log_path = self.log_dir / "access.log"

    def _start(self, extra: str = "", twistd_options: tuple[str, ...] = ()) -> TwistdProxy:
        proxy = TwistdProxy(
            _config(str(self.log_path), extra), twistd_options=twistd_options
        ).start()
        self.addCleanup(proxy.stop)
        return proxy

    def _opener(self, proxy: TwistdProxy) -> urllib.request.OpenerDirector:
        handler = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy.port}"})
        return urllib.request.build_opener(handler)

    def _wait_for_lines(self, path: Path, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            if path.exists():
                lines = path.read_text().splitlines()
                if len(lines) >= count:
                    return lines
            time.sleep(0.05)
        return lines

    def test_proxies_requests_and_logs_them(self) -> None:
        """
        urllib through the proxy gets the origin's answer; the access log
        has a Squid-native line for it; SIGTERM stops the proxy cleanly.
        """
        proxy = self._start()
        with self._opener(proxy).open(self.origin.url("/small"), timeout=10) as response:
            body = response.read()
            via = response.headers.get("Via")
        self.assertEqual(body, b"hello from origin\n")
        self.assertIn("squeak-e2e", via)
        [line] = self._wait_for_lines(self.log_path, 1)
        self.assertRegex(
            line,
            r"^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_MISS/200 \d+ GET "
            + self.origin.url("/small").replace(".", r"\.")
            + r" - HIER_DIRECT/127\.0\.0\.1 text/plain$",
        )
        # twistd re-raises SIGTERM after a clean shutdown to exit "by" it.
        self.assertIn(proxy.stop(), (0, -signal.SIGTERM))
        self.assertIn("Server Shut Down.", proxy.output)
        # With no --reactor, squeak's own (squeak.net.eventloop).
        self.assertIn("reactor class: squeak.net.eventloop.LeanEPollReactor.", proxy.output)

    def test_reactor_chosen_on_the_command_line_is_kept(self) -> None:
        """
        twistd --reactor epoll runs squeak on Twisted's stock epoll reactor.
        """
        proxy = self._start(twistd_options=("--reactor", "epoll"))
        with self._opener(proxy).open(self.origin.url("/small"), timeout=10) as response:
            self.assertEqual(response.read(), b"hello from origin\n")
        self.assertIn(proxy.stop(), (0, -signal.SIGTERM))
        self.assertIn("reactor class: twisted.internet.epollreactor.EPollReactor.", proxy.output)

    def test_raw_socket_keep_alive(self) -> None:
        """
        Two requests on one raw client connection both get answers.
        """
        proxy = self._start()
        request = (f"GET {self.origin.url('/small')} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(request)
            first = _read_response(s)
            s.sendall(request)
            second = _read_response(s)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:40])
        self.assertTrue(second.startswith(b"HTTP/1.1 200"), second[:40])

    def test_pac_file_behind_a_proxy_protocol_listener(self) -> None:
        """
        twistd with [proxy_protocol] on its listener (trusting 127.0.0.1):
        a v1 header then GET /proxy.pac gets the PAC file, a proxied
        request is logged under the header's client, and a connection
        without a header is closed with one line in the service log.
        """
        proxy = self._start(
            '[proxy_protocol]\nlisteners = ["127.0.0.1:0"]\ntrusted = ["127.0.0.1/32"]\n'
            '[acl]\nlb_clients = { src = ["192.0.2.0/24"] }\n'
            '[access]\nhttp_access = ["allow lb_clients", "deny all"]\n'
            '[pac]\nallow = ["lb_clients"]\nproxies = ["proxy.lan:3128"]\n'
        )
        header = b"PROXY TCP4 192.0.2.7 127.0.0.1 50000 3128\r\n"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(header + b"GET /proxy.pac HTTP/1.1\r\nHost: proxy.lan\r\n\r\n")
            pac = _read_response(s)
            s.sendall(f"GET {self.origin.url('/small')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            proxied = _read_response(s)
        self.assertTrue(pac.startswith(b"HTTP/1.1 200"), pac[:200])
        self.assertIn(b"Content-Type: application/x-ns-proxy-autoconfig", pac)
        self.assertIn(b'return "PROXY proxy.lan:3128; DIRECT";', pac)
        self.assertTrue(proxied.startswith(b"HTTP/1.1 200"), proxied[:200])
        lines = self._wait_for_lines(self.log_path, 2)
        self.assertEqual([line.split()[2] for line in lines], ["192.0.2.7", "192.0.2.7"])
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"GET /proxy.pac HTTP/1.1\r\nHost: proxy.lan\r\n\r\n")
            # Closed unanswered: an end of stream, or a reset.
            with contextlib.suppress(ConnectionResetError):
                self.assertEqual(s.recv(4096), b"")
        self.assertIn(proxy.stop(), (0, -signal.SIGTERM))
        self.assertIn(f"squeak listening on 127.0.0.1:{proxy.port} (PROXY protocol)", proxy.output)
        self.assertEqual(proxy.output.count("PROXY protocol: closed connection"), 1)
        self.assertIn("no PROXY protocol header", proxy.output)

    def test_access_log_reopens_on_sigusr1(self) -> None:
        """
        After logrotate renames the log and sends SIGUSR1, new lines go to a
        new file at the configured path.
        """
        proxy = self._start()
        opener = self._opener(proxy)
        opener.open(self.origin.url("/small"), timeout=10).read()
        self._wait_for_lines(self.log_path, 1)
        rotated = self.log_dir / "access.log.1"
        os.rename(self.log_path, rotated)
        proxy.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not self.log_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        opener.open(self.origin.url("/small?after"), timeout=10).read()
        lines = self._wait_for_lines(self.log_path, 1)
        self.assertEqual(len(rotated.read_text().splitlines()), 1)
        self.assertEqual(len(lines), 1)
        self.assertIn("/small?after", lines[0])

    def test_origin_killed_mid_body_closes_client_connection(self) -> None:
        """
        An origin that dies mid-body leaves the client with a short read
        and a closed connection, and the log line says TCP_MISS_ABORTED.
        """
        proxy = self._start()
        request = f"GET {self.origin.url('/cut/1000000')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 1000000", head)
        self.assertLess(len(body), 1000000)
        [line] = self._wait_for_lines(self.log_path, 1)
        self.assertIn(" TCP_MISS_ABORTED/200 ", line)

    def test_slow_reader_of_a_large_body_keeps_memory_flat(self) -> None:
        """
        A 256 MiB body read slowly by the client: the proxy's RSS grows by
        less than 8 MiB (backpressure; nothing is buffered whole).
        """
        proxy = self._start()
        size = 256 * 1024 * 1024
        # Warm up allocator pools with a small transfer first.
        self._opener(proxy).open(self.origin.url("/big/1048576"), timeout=10).read()
        baseline = proxy.rss_kib()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.settimeout(20)
            s.connect(("127.0.0.1", proxy.port))
            s.sendall(
                f"GET {self.origin.url(f'/big/{size}')} HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            body_so_far = len(head.partition(b"\r\n\r\n")[2])
            received, peak = read_slowly(s, body_so_far, size, proxy.rss_kib)
        self.assertEqual(received, size)
        growth_mib = (peak - baseline) / 1024
        self.assertLess(growth_mib, 8, f"RSS grew {growth_mib:.1f} MiB (from {baseline} KiB)")


class CachePersistenceTests(unittest.SynchronousTestCase):
    """
    The disk cache survives restarts and crashes of the real process, with
    nothing partial ever served.
    """

    def setUp(self) -> None:
        self.origin = _Origin()
        self.addCleanup(self.origin.close)
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        self.directory = directory
        self.config_text = _config(str(directory / "access.log")).replace(
            f'dir = "{directory / "access.log"}.cache"', f'dir = "{directory / "cache"}"'
        )

    def _start(self) -> TwistdProxy:
        proxy = TwistdProxy(self.config_text).start()
        self.addCleanup(proxy.stop)
        return proxy

    def _get(self, proxy: TwistdProxy, path: str) -> tuple[bytes, str]:
        handler = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy.port}"})
        with urllib.request.build_opener(handler).open(self.origin.url(path), timeout=30) as r:
            return r.read(), r.headers.get("X-Cache", "")

    def _origin_fetches(self, path: str) -> int:
        return self.origin.server.paths.count(path)  # type: ignore[attr-defined]

    def test_entries_survive_a_restart(self) -> None:
        """
        A response cached by one process is a hit for the next one.
        """
        first = self._start()
        body, x_cache = self._get(first, "/cacheable/300000")
        self.assertTrue(x_cache.startswith("MISS"), x_cache)
        first.stop()
        second = self._start()
        again, x_cache = self._get(second, "/cacheable/300000")
        self.assertEqual(again, body)
        self.assertTrue(x_cache.startswith("HIT"), x_cache)
        self.assertEqual(self._origin_fetches("/cacheable/300000"), 1)

    def test_sigkill_mid_store_leaves_nothing_partial(self) -> None:
        """
        A proxy killed with SIGKILL while a 4 MiB body is being stored
        leaves a cache that opens cleanly: the next process serves the
        object whole, fetched again from the origin, and no part file is
        left behind.
        """
        path = "/slowcache/4194304"
        proxy = self._start()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
            s.sendall(f"GET {self.origin.url(path)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = 0
            while received < 1024 * 1024:
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
            proxy.signal(signal.SIGKILL)
            proxy.process.wait(10)  # type: ignore[union-attr]
        restarted = self._start()
        body, x_cache = self._get(restarted, path)
        self.assertEqual(len(body), 4194304)
        self.assertTrue(x_cache.startswith("MISS"), x_cache)
        self.assertEqual(self._origin_fetches(path), 2)
        leftovers = [p.name for p in (self.directory / "cache").rglob("*.part")]
        self.assertEqual(leftovers, [])
        body, x_cache = self._get(restarted, path)
        self.assertTrue(x_cache.startswith("HIT"), x_cache)

    def test_purge_command_removes_an_entry(self) -> None:
        """
        python -m squeak purge --offline URL removes a stored response from
        a stopped proxy's disk cache: the next process fetches it again.
        """
        proxy = self._start()
        self._get(proxy, "/cacheable/5000")
        proxy.stop()
        config = self.directory / "squeak.toml"
        config.write_text(self.config_text)
        url = self.origin.url("/cacheable/5000")
        purged = subprocess.run(
            [sys.executable, "-m", "squeak", "purge", "--offline", url, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(
            (purged.returncode, purged.stdout.strip()),
            (
                0,
                f"Purged from the disk cache files in {self.directory / 'cache'} (offline): {url}",
            ),
        )
        again = self._start()
        _, x_cache = self._get(again, "/cacheable/5000")
        self.assertTrue(x_cache.startswith("MISS"), x_cache)


def _read_response(s: socket.socket) -> bytes:
    """
    Read one response with a Content-Length body from a socket.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        body += s.recv(4096)
    return head + b"\r\n\r\n" + body


def _start_with(path: Path) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n squeak --config PATH} from the file's directory, bounded.
    """
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "squeak", "--config", str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


class StartupTests(unittest.SynchronousTestCase):
    """
    Start-up: bad configuration stops it with one precise line; no
    configuration runs on the embedded defaults.
    """

    def test_bad_config_stops_startup_with_one_line(self) -> None:
        """
        An unknown key: exit status 2, one stderr line naming the file, the
        line and the key, and no traceback.
        """
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        path = directory / "bad.toml"
        path.write_text('[proxy]\nvisible_hostname = "x"\n\n[timeouts]\nconect = "5s"\n')
        result = _start_with(path)
        self.assertEqual(result.returncode, 2, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(f"{path}:5: timeouts.conect: unknown key", lines[0])
        self.assertIn("connect", lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_syntax_error_names_file_and_line(self) -> None:
        """
        A TOML syntax error names the file and line.
        """
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        path = directory / "broken.toml"
        path.write_text("[proxy]\nvisible_hostname = \n")
        result = _start_with(path)
        self.assertEqual(result.returncode, 2)
        [line] = result.stderr.strip().splitlines()
        self.assertTrue(line.startswith(f"squeak: {path}:2"), line)

    def test_no_config_runs_on_safe_defaults(self) -> None:
        """
        With no --config: listens on 127.0.0.1:3128 and serves a loopback
        client.  Skipped when something else holds port 3128.
        """
        probe = socket.socket()
        # As twistd binds: connections of an earlier run in TIME_WAIT do not
        # hold the port, only a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 3128))
        except OSError:
            raise unittest.SkipTest("port 3128 is in use on this machine") from None
        finally:
            probe.close()
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        proxy = TwistdProxy(None, env={"HOME": home, "XDG_CACHE_HOME": os.path.join(home, "c")})
        proxy.start()
        self.addCleanup(proxy.stop)
        self.assertEqual(proxy.port, 3128)
        self.assertIn("squeak listening on 127.0.0.1:3128", proxy.output)
        origin = _Origin()
        self.addCleanup(origin.close)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": "http://127.0.0.1:3128"})
        )
        with opener.open(origin.url("/small"), timeout=10) as response:
            self.assertEqual(response.read(), b"hello from origin\n")

    def test_check_config_uses_the_same_loader(self) -> None:
        """
        python -m squeak check-config accepts the sample config as shipped.
        """
        sample = Path(__file__).resolve().parent.parent / "etc" / "squeak.toml"
        result = subprocess.run(
            [sys.executable, "-m", "squeak", "check-config", str(sample)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
