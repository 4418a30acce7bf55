# -*- test-case-name: tests.test_service -*-
"""
Assemble the running proxy from a L{Config}: listeners, the upstream pool,
the cache and the access log, as one L{MultiService} that twistd starts and
stops.  This is the one composition root: what the exchanges share
(L{ProxyContext}) is wired here (L{build_context}) and nowhere else.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from typing_extensions import override

from squeak.accel.routing import AccelRouter
from squeak.access.gatekeeper import Gatekeeper
from squeak.accesslog import AccessLog, install_reopen_signal
from squeak.cache.facade import HttpCache
from squeak.config import Config, ConfigError, ListenAddress
from squeak.drain import track_connections
from squeak.net.accepts import guard_accepts
from squeak.net.certificates import CertificateError, SniCertificates, certificate_options
from squeak.net.deadlines import Deadlines, deadline_resolution
from squeak.net.intercept import SpliceFactory
from squeak.net.listeners import ListenerKey, adopt
from squeak.net.origin import UpstreamClient
from squeak.net.parents import Parents
from squeak.net.proxyprotocol import ProxyHeaderFactory
from squeak.net.wire import SendBatcher
from squeak.proxy.accel import AccelProxyFactory, AccelService
from squeak.proxy.client import ForwardProxyFactory
from squeak.proxy.context import ProxyContext, error_pages_from_config
from squeak.proxy.pools import OriginPools
from squeak.proxy.router import ForwardRequest
from squeak.proxy.splice import SpliceAccess
from squeak.proxy.stats import ServiceStats, process_counters
from squeak.stats.counters import Counters
from squeak.stats.table import StatsTable
from squeak.upstream.hierarchy import Hierarchy


def _untyped(value: object) -> Any:
    """
    C{value} for a call into Twisted's untyped APIs (C{twisted.application}
    services), which mypy's strict mode would
    refuse to call from typed code: the call is made, unchecked, here.
    """
    return value


class ListenerService(Service):
    """
    One listening socket.  Logs the address it really got, so that a
    configured port 0 (tests, benchmarks) can be found by reading the log.

    @ivar port: The listening port once started, else L{None}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        address: ListenAddress,
        factory: Any,
        tls: Any = None,
        sock: socket.socket | None = None,
        proxy_header: Callable[[Any], Any] | None = None,
        label: str = "",
    ) -> None:
        """
        @param sock: A socket bound already (L{squeak.net.listeners}) to
            adopt rather than binding C{address}.
        @param proxy_header: Wraps the factory (TLS included) of a listener
            that requires a PROXY protocol header (L{ProxyHeaderFactory}).
        @param label: What the log line calls a listener that is not the
            proxy's (C{"metrics "}).
        """
        self._reactor = reactor
        self._address = address
        self._factory = factory
        self._tls = tls
        self._sock = sock
        if proxy_header is not None:
            # The header comes before the TLS handshake: TLS inside it.
            if tls is not None:
                factory = TLSMemoryBIOFactory(tls, False, factory)
            self._factory = proxy_header(factory)
            self._tls = None
        self._kind = "TLS " if tls is not None else label
        self._after = " (PROXY protocol)" if proxy_header is not None else ""
        self.port: Any = None
        self._guard: Any = None

    @override
    def startService(self) -> None:
        _untyped(super()).startService()
        if self._sock is not None:
            factory = self._factory
            if self._tls is not None:
                factory = TLSMemoryBIOFactory(self._tls, False, factory)
            self.port = adopt(self._reactor, self._sock, factory)
        elif self._tls is None:
            self.port = self._reactor.listenTCP(
                self._address.port, self._factory, backlog=1024, interface=self._address.host
            )
        else:
            self.port = self._reactor.listenSSL(
                self._address.port,
                self._factory,
                self._tls,
                backlog=1024,
                interface=self._address.host,
            )
        # Out of descriptors, pause accepting rather than spin or close
        # queued connections unanswered (squeak.net.accepts).
        self._guard = guard_accepts(self._reactor, self.port)
        bound = self.port.getHost()
        shown = f"[{bound.host}]" if ":" in bound.host else bound.host
        self._log.info(
            "squeak listening on {kind}{address}{after}",
            kind=self._kind,
            address=f"{shown}:{bound.port}",
            after=self._after,
        )

    @override
    def stopService(self) -> Deferred[None] | None:
        _untyped(super()).stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
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
        _untyped(super()).startService()
        self._uninstall = install_reopen_signal(self._context.access_log, self._context.reactor)
        if self._context.stats is not None:
            self._context.stats.start()

    @override
    def stopService(self) -> Deferred[None]:
        _untyped(super()).stopService()
        if self._uninstall is not None:
            self._uninstall()
            self._uninstall = None
        if self._context.stats is not None:
            self._context.stats.stop()
        # The deadline sweep is lazy (squeak/net/deadlines.py): no timer left.
        self._context.deadlines.close()
        closing = self._context.upstream.close()
        parents = self._context.parents
        if parents is not None:
            closing.addBoth(lambda _: parents.close())
        closing.addBoth(lambda _: self._context.access_log.close())
        closing.addBoth(lambda _: self._context.cache.close())
        return closing


def interface_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """
    This host's interface addresses: IPv4 through C{SIOCGIFADDR} per
    interface, IPv6 from C{/proc/net/if_inet6}.  Best effort: an interface
    without an address is skipped.
    """
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue
            found.append(ipaddress.IPv4Address(answer[20:24]))
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                found.append(ipaddress.IPv6Address(bytes.fromhex(line.split()[0])))
    except OSError:
        pass
    return found


#: ioctl request number of SIOCGIFADDR (Linux).
_SIOCGIFADDR = 0x8915


def local_addresses(config: Config) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """
    The proxy's own addresses for C{to_localhost}: every listening address,
    and every interface address when a listener is a wildcard, so a client
    can never use the proxy to reach the proxy host's own services.
    """
    listeners = [
        *config.proxy.http_port,
        *config.tls.https_port,
        *config.intercept.http_port,
        *config.intercept.https_port,
        *config.metrics.http_port,
    ]
    addresses = [ipaddress.ip_address(listener.host) for listener in listeners]
    if any(address.is_unspecified for address in addresses):
        addresses += interface_addresses()
    return addresses


def server_tls_options(config: Config) -> CertificateOptions:
    """
    TLS settings of the HTTPS proxy port: the configured certificate chain
    and key, TLS 1.2 or newer only.

    @raise ConfigError: If the files do not hold a certificate and its key.
    """
    try:
        return certificate_options(config.tls.certificate, config.tls.key)
    except CertificateError as error:
        raise ConfigError(config.source, "tls.certificate", str(error)) from None


def _attach(service: Service, parent: MultiService) -> None:
    """
    Add C{service} to C{parent}.
    """
    _untyped(service).setServiceParent(parent)


def build_context(
    config: Config,
    reactor: Any,
    access_log: AccessLog,
    local_addresses: Iterable[Any] = (),
    *,
    counters: Counters | None = None,
    stats_table: tuple[StatsTable, int] | None = None,
) -> ProxyContext:
    """
    Wire what every exchange shares, from configuration.

    @param local_addresses: This host's own addresses (listeners and,
        for wildcard listeners, interfaces), added to C{to_localhost}.
    @param counters: The counters to increment (the process's, which
        outlive a reload); new ones by default.
    @param stats_table: Where to publish them for the other workers, and
        this process's slot (L{squeak.stats.table}).
    """
    gatekeeper = Gatekeeper.from_config(config, reactor, local_addresses)
    batcher = SendBatcher(reactor)
    upstream = UpstreamClient(
        reactor,
        connect_timeout=config.timeouts.connect,
        max_idle_per_host=config.upstream.max_idle_per_host,
        idle_timeout=config.timeouts.server_idle,
        ca_file=config.upstream.ca_file,
        sender=batcher,
    )
    # One write(2) per request costs ~5 % under load, and formatting a
    # line between two requests more than formatting many in a row:
    # collect records, format and write them every 0.5 s or 512 lines
    # (and at reopen and close).
    access_log.start_buffering(reactor)
    parents = None
    if config.hierarchy.enabled:
        parents = Parents(
            reactor,
            Hierarchy(config.hierarchy),
            connect_timeout=config.timeouts.connect,
            max_idle=config.upstream.max_idle_per_host,
            idle_timeout=config.timeouts.server_idle,
            ca_file=config.upstream.ca_file,
            sender=batcher,
        )
    context = ProxyContext(
        config=config,
        reactor=reactor,
        upstream=upstream,
        access_log=access_log,
        gatekeeper=gatekeeper,
        cache=HttpCache.from_config(config.cache),
        cooperator=Cooperator(scheduler=lambda work: reactor.callLater(0, work)),
        deadlines=Deadlines(
            reactor,
            deadline_resolution(min(config.timeouts.connect, config.timeouts.read)),
        ),
        batcher=batcher,
        parents=parents,
        error_pages=error_pages_from_config(config.errors),
    )
    if counters is not None:
        context.counters = counters
    context.stats = ServiceStats(context, stats_table)
    return context


class _AccelChecksService(Service):
    """
    Runs the accelerator pools' active health checks while the service
    runs (L{OriginPools.start_checks}).
    """

    def __init__(self, pools: OriginPools) -> None:
        self._pools = pools

    @override
    def startService(self) -> None:
        _untyped(super()).startService()
        self._pools.start_checks()

    @override
    def stopService(self) -> None:
        _untyped(super()).stopService()
        self._pools.stop_checks()


def _add_accelerator(
    config: Config, context: ProxyContext, top: MultiService, listener: Any
) -> None:
    """
    The C{[[accel]]} listeners: one factory per entry, the origin pools
    (and their health checks) shared by all.
    """
    pools = OriginPools(context.reactor, context.upstream, config.accel)
    _attach(_AccelChecksService(pools), top)
    for number, entry in enumerate(config.accel.listeners):
        router = AccelRouter(config.accel, entry)
        factory = AccelProxyFactory(context, AccelService(entry, router, pools))
        for address in entry.http_port:
            listener("accel.http_port", address, factory)
        if entry.https_port:
            try:
                tls = SniCertificates([(c.certificate, c.key) for c in entry.certificates])
            except CertificateError as error:
                raise ConfigError(
                    config.source, f"accel[{number}].certificates", str(error)
                ) from None
            secure = AccelProxyFactory(context, AccelService(entry, router, pools, "https"))
            for address in entry.https_port:
                listener("accel.https_port", address, secure, tls)
    top.accel_pools = pools  # type: ignore[attr-defined]


def proxy_header_wrapper(
    config: Config, reactor: Any, key: str, address: ListenAddress
) -> Callable[[Any], Any] | None:
    """
    How the listener C{key=address} wraps its factory when
    C{[proxy_protocol] listeners} names it; L{None} when it does not.
    """
    settings = config.proxy_protocol
    if address not in settings.listeners or key not in ("proxy.http_port", "tls.https_port"):
        return None

    def wrap(factory: Any) -> ProxyHeaderFactory:
        return ProxyHeaderFactory(
            factory,
            settings.trusted,
            reactor,
            timeout=config.timeouts.request_head,
            name=f"{key}={address}",
        )

    return wrap


def build_service(
    config: Config, reactor: Any, sockets: Mapping[ListenerKey, socket.socket] | None = None
) -> MultiService:
    """
    Build the proxy service tree for C{config}.

    The core service is added first so that it starts before and stops
    after the listeners.

    @param sockets: Listening sockets bound already, for the listeners to
        adopt (L{squeak.net.listeners}); without them each listener binds
        its own.
    """
    bound = sockets or {}
    top: MultiService = _untyped(MultiService)()

    def listener(
        key: str, address: ListenAddress, factory: Any, tls: Any = None, label: str = ""
    ) -> None:
        sock = bound.get(ListenerKey(key, address))
        header = proxy_header_wrapper(config, reactor, key, address)
        _attach(ListenerService(reactor, address, factory, tls, sock, header, label), top)

    logging = config.access_log
    access_log = AccessLog(
        logging.path,
        logging.format,
        syslog_facility=logging.syslog_facility,
        syslog_tag=logging.syslog_tag,
    )
    # The counters outlive a reload; with workers, they are published for
    # the others (squeak.stats.table).
    context = build_context(
        config,
        reactor,
        access_log,
        local_addresses(config),
        counters=process_counters(),
        stats_table=StatsTable.from_environment(),
    )
    _attach(_ProxyCoreService(context), top)
    factory = ForwardProxyFactory(context, ForwardRequest)
    for address in config.proxy.http_port:
        listener("proxy.http_port", address, factory)
    if config.tls.https_port:
        tls = server_tls_options(config)
        for address in config.tls.https_port:
            listener("tls.https_port", address, factory, tls)
    if config.intercept.http_port:
        intercepting = ForwardProxyFactory(context, ForwardRequest, intercepting=True)
        for address in config.intercept.http_port:
            listener("intercept.http_port", address, intercepting)
    if config.accel.enabled:
        _add_accelerator(config, context, top, listener)
    if config.intercept.https_port:
        splicing = SpliceFactory(
            reactor,
            SpliceAccess(context).decide,
            SpliceAccess(context).log,
            connect_timeout=config.timeouts.connect,
            idle_timeout=config.timeouts.tunnel_idle,
        )
        # The drain (squeak.drain) waits for splices as for tunnels.
        top.splices = track_connections(splicing)  # type: ignore[attr-defined]
        for address in config.intercept.https_port:
            listener("intercept.https_port", address, splicing)
    if config.metrics.http_port:
        from squeak.metrics import MetricsSite

        metrics = MetricsSite(
            context.stats, config.proxy.workers, config.metrics.allow_from, reactor
        )
        for address in config.metrics.http_port:
            listener("metrics.http_port", address, metrics, label="metrics ")
    top.context = context  # type: ignore[attr-defined]
    return top
