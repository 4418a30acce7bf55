"""
Run a real squeak proxy in-process on a loopback port, for behaviour tests
over real sockets.

Clients run in threads (stdlib C{http.client} and raw sockets), so the
reactor keeps serving the proxy and the origins while a test talks to them
the way a real client would.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from squeak.config import Config, ListenAddress
from squeak.service import build_service


def make_config(**sections: dict[str, Any]) -> Config:
    """
    The embedded defaults, listening on an ephemeral loopback port, with the
    given per-section overrides (C{timeouts={"read": 1.0}}).
    """
    config = Config()
    proxy = dataclasses.replace(
        config.proxy, http_port=(ListenAddress("127.0.0.1", 0),), visible_hostname="squeak.test"
    )
    # Each proxy gets its own cache directory, never the user's.
    cache = dataclasses.replace(config.cache, dir=tempfile.mkdtemp(prefix="squeak-cache-"))
    config = dataclasses.replace(config, proxy=proxy, cache=cache)
    for name, overrides in sections.items():
        config = dataclasses.replace(
            config, **{name: dataclasses.replace(getattr(config, name), **overrides)}
        )
    return config


def exchange_raw(
    port: int, data: bytes, timeout: float = 10.0, *, head_is_enough: bool = False
) -> bytes:
    """
    Send raw bytes to C{port} on 127.0.0.1 and read until the server
    closes, resets or stays quiet for C{timeout} (run it in a thread).

    @param head_is_enough: Once a whole response head has come on a
        connection the server keeps open, wait only 0.5 s more (for
        refusals answered without closing).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            whole_head = head_is_enough and b"\r\n\r\n" in b"".join(chunks)
            if whole_head and b"Connection: close" not in chunks[0]:
                s.settimeout(0.5)
        return b"".join(chunks)


class ProxyTestCase(unittest.TestCase):
    """
    Starts a proxy before each test and stops it (and checks the reactor is
    clean) after.

    @ivar proxy_port: The proxy's loopback port.
    @ivar access_log_path: The access log file of this test's proxy.
    """

    timeout = 60
    config_overrides: dict[str, dict[str, Any]] = {}

    def setUp(self) -> Any:
        directory = tempfile.mkdtemp(prefix="squeak-test-")
        self.directory = directory
        self.access_log_path = os.path.join(directory, "access.log")
        overrides = dict(self.config_overrides)
        overrides.setdefault("access_log", {})
        overrides["access_log"] = {**overrides["access_log"], "path": self.access_log_path}
        self.config = make_config(**overrides)
        self.service = build_service(self.config, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.addCleanup(self._close_client_connections)
        listener = self.service.services[1]
        self.proxy_port = listener.port.getHost().port

    async def _close_client_connections(self) -> None:
        """
        Give client connections a moment to close by themselves (a test's
        client has gone), then cut the rest, so the reactor is left clean.
        """
        channels = self.service.context.channels
        for _ in range(40):
            if not channels:
                return
            await deferLater(reactor, 0.05, lambda: None)
        for channel in list(channels):
            channel.transport.abortConnection()
        await deferLater(reactor, 0, lambda: None)

    def use_access_config(self, toml_text: str) -> None:
        """
        Replace the running proxy's access rules and authentication with
        those of a configuration text (its [acl], [access] and [auth]
        tables; relative paths resolve against the test's directory).
        """
        from squeak.access.gatekeeper import Gatekeeper
        from squeak.config import parse_config
        from squeak.service import local_addresses

        config = parse_config(toml_text, os.path.join(self.directory, "access.toml"))
        self.service.context.gatekeeper = Gatekeeper.from_config(
            config, reactor, local_addresses(self.config)
        )

    def listen(self, server: Any) -> int:
        """
        Start a loopback origin and stop it after the test.
        """
        port = server.listen()
        self.addCleanup(server.port.stopListening)
        return port

    def access_log_lines(self) -> list[str]:
        self.service.context.access_log.flush()  # lines are buffered for 0.5 s
        with open(self.access_log_path, encoding="utf-8") as handle:
            return handle.read().splitlines()

    def raw_exchange(self, data: bytes, *, read_timeout: float = 10.0) -> bytes:
        """
        Send raw bytes to the proxy and read until it closes (run in a
        thread).
        """
        return exchange_raw(self.proxy_port, data, read_timeout)
