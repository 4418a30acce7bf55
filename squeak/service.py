# -*- test-case-name: tests.test_service -*-
"""
Assemble the running proxy from a L{Config}: listeners, the upstream pool
and the access log, as one L{MultiService} that twistd starts and stops.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from typing_extensions import override

from squeak.accesslog import AccessLog, install_reopen_signal
from squeak.config import Config, ListenAddress
from squeak.proxy import ForwardProxyFactory, ProxyContext


class ListenerService(Service):
    """
    One listening socket.  Logs the address it really got, so that a
    configured port 0 (tests, benchmarks) can be found by reading the log.

    @ivar port: The listening port once started, else L{None}.
    """

    _log = Logger()

    def __init__(self, reactor: Any, address: ListenAddress, factory: Any) -> None:
        self._reactor = reactor
        self._address = address
        self._factory = factory
        self.port: Any = None

    @override
    def startService(self) -> None:
        super().startService()
        self.port = self._reactor.listenTCP(
            self._address.port, self._factory, backlog=1024, interface=self._address.host
        )
        bound = self.port.getHost()
        shown = f"[{bound.host}]" if ":" in bound.host else bound.host
        self._log.info("squeak listening on {address}", address=f"{shown}:{bound.port}")

    @override
    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening)


class _ProxyCoreService(Service):
    """
    Owns what the listeners share: opens the access log (and its SIGUSR1
    reopen) on start, closes idle upstream connections and the log on stop.
    """

    def __init__(self, context: ProxyContext) -> None:
        self._context = context
        self._uninstall: Any = None

    @override
    def startService(self) -> None:
        super().startService()
        self._uninstall = install_reopen_signal(self._context.access_log, self._context.reactor)

    @override
    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._uninstall is not None:
            self._uninstall()
            self._uninstall = None
        closing = self._context.upstream.close()
        closing.addBoth(lambda _: self._context.access_log.close())
        return closing


def build_service(config: Config, reactor: Any) -> MultiService:
    """
    Build the proxy service tree for C{config}.

    The core service is added first so that it starts before and stops
    after the listeners.
    """
    top = MultiService()
    access_log = AccessLog(config.access_log.path, config.access_log.format)
    context = ProxyContext.build(config, reactor, access_log)
    _ProxyCoreService(context).setServiceParent(top)
    factory = ForwardProxyFactory(context)
    for address in config.proxy.http_port:
        ListenerService(reactor, address, factory).setServiceParent(top)
    top.context = context  # type: ignore[attr-defined]
    return top
