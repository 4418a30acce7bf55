# -*- test-case-name: tests.test_proxy -*-
"""
What every exchange needs from the running service, built once by
L{squeak.service.build_context} (the one place the proxy is wired).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import Cooperator
from twisted.logger import Logger

from squeak.access.gatekeeper import Gatekeeper
from squeak.accesslog import AccessLog
from squeak.cache.facade import HttpCache
from squeak.config import Config
from squeak.errorpages import ErrorPages, ErrorsConfig, load_error_pages
from squeak.net.deadlines import Deadlines
from squeak.net.origin import UpstreamClient
from squeak.net.parents import Parents
from squeak.net.wire import SendBatcher
from squeak.stats.counters import Counters

__all__ = ["ProxyContext", "error_pages_from_config"]

_log = Logger(namespace="squeak.errorpages")


def error_pages_from_config(config: ErrorsConfig) -> ErrorPages:
    """
    Read the error page templates the configuration names (at start-up
    and at each reload), logging one line per template left out.
    """
    pages, problems = load_error_pages(
        config.error_directory,
        default_language=config.error_default_language,
        cache_mgr=config.cache_mgr,
    )
    for problem in problems:
        _log.warn("{problem}", problem=problem)
    return pages


@dataclass
class ProxyContext:
    """
    Everything a request needs from the running service.

    @ivar reactor: The reactor everything runs on (injected, never global).
    @ivar upstream: The pooled origin client.
    @ivar gatekeeper: Access rules and proxy authentication.
    @ivar cache: The HTTP cache, through its one door.
    @ivar deadlines: The origins' answer and read timeouts
        (L{squeak.net.deadlines}).
    @ivar batcher: Sends each reactor turn's writes together
        (L{squeak.net.wire}).
    @ivar channels: Open client connections (for stats and a clean shutdown).
    @ivar connections_by_client: How many of them each client address has
        (for C{maxconn} rules).
    @ivar error_pages: The error page templates, in memory
        (L{squeak.errorpages}).
    @ivar parents: The cache hierarchy's parents (L{squeak.net.parents}),
        or L{None} when every request goes direct.
    @ivar counters: This process's counters (L{squeak.stats.counters}),
        for the manager pages and metrics.
    @ivar stats: The figures of the process and the service
        (L{squeak.proxy.stats.ServiceStats}), once the service is built.
    """

    config: Config
    reactor: Any
    upstream: UpstreamClient
    access_log: AccessLog
    gatekeeper: Gatekeeper
    cooperator: Cooperator
    cache: HttpCache
    deadlines: Deadlines
    batcher: SendBatcher
    channels: set[Any] = field(default_factory=set)
    connections_by_client: dict[str, int] = field(default_factory=dict)
    error_pages: ErrorPages = field(default_factory=ErrorPages)
    parents: Parents | None = None
    counters: Counters = field(default_factory=Counters)
    stats: Any = None
