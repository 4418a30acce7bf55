"""
An accelerator squeak in-process, on loopback, configured from TOML text,
for the accelerator's behaviour tests; and a client that speaks to it as a
browser speaks to a web server (origin-form requests, a Host field).
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import tempfile
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial import unittest

from squeak.config import parse_config
from squeak.proxy.accel import AccelProxyFactory
from squeak.service import build_service
from tests.proxyharness import exchange_raw, make_config


def in_thread(function: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
    """Run a blocking client in a thread while the reactor serves."""
    return threads.deferToThread(function, *args, **kwargs)


class Reply:
    """A response as a client saw it."""

    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.getheaders()
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class AccelTestCase(unittest.TestCase):
    """
    Starts an accelerator per test from TOML (L{start_accel}) and stops it
    after.
    """

    timeout = 60

    def start_accel(self, toml_text: str, **sections: dict[str, Any]) -> int:
        """
        Start squeak with the accelerator tables of C{toml_text} (their
        ports may be 0) and return the first accelerator port.
        """
        directory = tempfile.mkdtemp(prefix="squeak-accel-")
        self.directory = directory
        self.access_log_path = os.path.join(directory, "access.log")
        parsed = parse_config(toml_text, os.path.join(directory, "accel.toml"))
        sections.setdefault("access_log", {})["path"] = self.access_log_path
        config = dataclasses.replace(make_config(**sections), accel=parsed.accel)
        self.service = build_service(config, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.addCleanup(self._close_client_connections)
        self.pools = self.service.accel_pools
        ports = [
            child.port.getHost().port
            for child in self.service.services
            if isinstance(getattr(child, "_factory", None), AccelProxyFactory)
        ]
        self.accel_port = ports[0]
        self.accel_ports = ports
        return int(ports[0])

    async def _close_client_connections(self) -> None:
        channels = self.service.context.channels
        for _ in range(40):
            if not channels:
                return
            await deferLater(reactor, 0.05, lambda: None)
        for channel in list(channels):
            channel.transport.abortConnection()
        await deferLater(reactor, 0, lambda: None)

    def request(
        self,
        method: str,
        path: str,
        *,
        host: str | None = "app.example",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> Reply:
        """One request over a new connection (run in a thread)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.accel_port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host is not None:
                conn.putheader("Host", host)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return Reply(response, response.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Deferred[Reply]:
        return in_thread(self.request, "GET", path, **kwargs)

    def raw(self, data: bytes, port: int | None = None) -> bytes:
        """Send raw bytes, read until the server closes or goes quiet."""
        return exchange_raw(port or self.accel_port, data, 5, head_is_enough=True)

    def access_log_lines(self) -> list[str]:
        self.service.context.access_log.flush()
        with open(self.access_log_path, encoding="utf-8") as handle:
            return handle.read().splitlines()
