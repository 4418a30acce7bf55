"""
A small WSGI application for the accelerator's tests, run under a real
gunicorn (L{Gunicorn}) started by the test: the kind of application squeak
is put in front of.

Paths:
  - C{/big/N}: N bytes of C{x} with Content-Length;
  - C{/echo}: the environ's method, path, query and forwarding fields as
    text lines;
  - C{/health}: 200 C{ok};
  - C{/login}: a 302 to its own address (C{http://HOST:PORT/welcome}, the
    way an application that builds absolute URLs from its bind address
    does).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_Start = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: _Start) -> Iterable[bytes]:
    """The application."""
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/big/"):
        size = int(path.split("/")[2])
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
        )
        block = b"x" * 65536
        return (block[: min(65536, size - offset)] for offset in range(0, size, 65536))
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/login":
        own = f"http://{environ['SERVER_NAME']}:{environ['SERVER_PORT']}/welcome"
        start_response("302 Found", [("Location", own), ("Content-Length", "0")])
        return [b""]
    lines = [
        f"method={environ['REQUEST_METHOD']}",
        f"path={path}",
        f"query={environ.get('QUERY_STRING', '')}",
        f"host={environ.get('HTTP_HOST', '')}",
        f"x-forwarded-for={environ.get('HTTP_X_FORWARDED_FOR', '')}",
        f"x-forwarded-proto={environ.get('HTTP_X_FORWARDED_PROTO', '')}",
        f"pid={os.getpid()}",
    ]
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Gunicorn:
    """
    A gunicorn process serving L{app} on a loopback port.

    @ivar port: Where it listens, read from its log.
    """

    def __init__(self, workers: int = 1) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        executable = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        self.process = subprocess.Popen(
            [
                executable,
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--bind",
                "127.0.0.1:0",
                "--chdir",
                here,
                "--log-level",
                "info",
                "tests.wsgiapp:app",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        booted = 0
        deadline = time.monotonic() + 30
        assert self.process.stderr is not None
        while time.monotonic() < deadline and (not self.port or booted < workers):
            line = self.process.stderr.readline()
            if not line:
                break
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
            if "Booting worker" in line:
                booted += 1
        if not self.port or booted < workers:
            self.stop()
            raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def gunicorn_missing() -> str | None:
    """Why gunicorn cannot run here, or L{None}."""
    executable = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(executable):
        return "gunicorn is not installed (pip install -e '.[test]')"
    return None
