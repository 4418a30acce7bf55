"""
A threaded loopback origin for the process tests (workers, reload, drain):
bodies generated from a pattern, sent at a fixed pace when asked, so that a
download is still in flight when a test reloads or stops the proxy, however
large the socket buffers are.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The body pattern: byte i of a body is PATTERN[i % 65536].
PATTERN = bytes(range(256)) * 256


def body_digest(size: int) -> str:
    """The SHA-256 of the C{size}-byte body the origin sends."""
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(PATTERN))
    for _ in range(whole):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """
    C{/body/N}: N bytes at once.  C{/slow/N/SECONDS}: N bytes spread evenly
    over about SECONDS.  C{/cacheable/N}: N bytes, fresh for an hour (and
    C{/cacheable/N/SECONDS}: spread as C{/slow}).  C{/validated/N/MAX_AGE}:
    N bytes with an ETag, answered 304 when revalidated.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _validated(self, size: int, max_age: int) -> None:
        """
        C{/validated/N/MAX_AGE}: N bytes, fresh for MAX_AGE seconds, with an
        ETag; a request whose If-None-Match names it gets a 304.
        """
        etag = f'"v{size}"'
        fresh = etag in self.headers.get("If-None-Match", "")
        self.send_response(304 if fresh else 200)
        self.send_header("ETag", etag)
        self.send_header("Cache-Control", f"max-age={max_age}")
        self.send_header("X-Origin-Request", str(self.server.requests))  # type: ignore[attr-defined]
        if fresh:
            self.end_headers()
            return
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(PATTERN[:size])

    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        validated = re.fullmatch(r"/validated/(\d+)/(\d+)", self.path)
        if validated is not None:
            self._validated(int(validated.group(1)), int(validated.group(2)))
            return
        match = re.fullmatch(r"/(body|slow|cacheable)/(\d+)(?:/([0-9.]+))?(?:\?.*)?", self.path)
        if match is None:
            self.send_error(404)
            return
        kind, size, seconds = match.group(1), int(match.group(2)), float(match.group(3) or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        # Which origin request this is: tells a stored copy from a new one.
        self.send_header("X-Origin-Request", str(self.server.requests))  # type: ignore[attr-defined]
        if kind == "cacheable":
            self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        piece = 16384
        pieces = max(1, -(-size // piece))
        pause = seconds / pieces if kind in ("slow", "cacheable") else 0.0
        sent = 0
        try:
            while sent < size:
                end = min(size, sent + piece)
                start = sent % len(PATTERN)
                chunk = (PATTERN + PATTERN)[start : start + end - sent]
                self.wfile.write(chunk)
                sent = end
                if pause:
                    self.wfile.flush()
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SlowOrigin:
    """
    The origin, listening on loopback in a thread.
    """

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.requests = 0  # type: ignore[attr-defined]
        self.server.paths = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> int:
        return int(self.server.requests)  # type: ignore[attr-defined]

    @property
    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return list(self.server.paths)  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fetch(proxy_port: int, url: str, timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """
    GET C{url} through the proxy on a new connection.

    @return: The status, the response fields (lower-case names) and the
        body; an HTTP error status is returned, not raised.
    """
    handler = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    opener = urllib.request.build_opener(handler)
    try:
        with opener.open(url, timeout=timeout) as response:
            fields = {name.lower(): value for name, value in response.headers.items()}
            return response.status, fields, response.read()
    except urllib.error.HTTPError as error:
        fields = {name.lower(): value for name, value in error.headers.items()}
        return error.code, fields, error.read()


class Download:
    """
    A GET through the proxy on a raw socket, read in a thread, its body
    hashed: for downloads that must survive a reload or be cut by a stop.

    @ivar status: The status line, once read.
    @ivar received: Body bytes read so far.
    @ivar complete: Whether the whole announced body arrived.
    @ivar error: What ended the read early, if anything.
    """

    def __init__(
        self, proxy_port: int, url: str, timeout: float = 30.0, *, tunnel: bool = False
    ) -> None:
        """
        @param tunnel: Open a CONNECT tunnel to the origin and send the GET
            through it, rather than asking the proxy.
        """
        self._sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
        if tunnel:
            authority, _, path = url.removeprefix("http://").partition("/")
            self._sock.sendall(
                f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                data = self._sock.recv(1)
                if not data:
                    break
                answer += data
            self.tunnel_status = answer.split(b"\r\n")[0].decode()
            url = "/" + path
        self._sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        self.status = ""
        self.received = 0
        self.length = -1
        self.complete = False
        self.error: BaseException | None = None
        self._digest = hashlib.sha256()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                data = self._sock.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, rest = buffer.partition(b"\r\n\r\n")
            self.status = head.split(b"\r\n")[0].decode()
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            self.length = int(match.group(1)) if match else -1
            self._take(rest)
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                self._take(data)
        except OSError as error:
            self.error = error
        finally:
            self.complete = self.received == self.length
            self._sock.close()

    def _take(self, data: bytes) -> None:
        self.received += len(data)
        self._digest.update(data)

    def started(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until some of the body arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.received == 0 and self._thread.is_alive():
            time.sleep(0.02)
        return self.received > 0

    def wait(self, timeout: float = 30.0) -> Download:
        """Wait (bounded) for the download to end."""
        self._thread.join(timeout)
        return self

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()
