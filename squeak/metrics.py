# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics on a listener of their own (C{[metrics] http_port},
off by default): C{GET /metrics} in the text exposition format, through
the C{prometheus-client} library.

Nothing is a Prometheus object on the hot path: the exchanges increment
plain counters (L{squeak.stats.counters}); L{SqueakCollector} reads the
whole service's figures (L{squeak.proxy.stats.ServiceStats.figures}, every
worker's) when Prometheus scrapes, and turns them into metric families
then.  With workers, the master binds the listener and every worker
adopts it, like the proxy's own ports: whichever worker accepts a scrape
answers for the service.

The names follow Prometheus's conventions (C{_total} for counters,
base units, C{squeak_} prefix); L{METRIC_NAMES} lists them, and
C{etc/grafana-dashboard.json} is tested against that list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import Site
from typing_extensions import override

from squeak import __version__
from squeak.access.purge import may_purge
from squeak.proxy.stats import ServiceStats
from squeak.stats.counters import DURATION_BUCKETS, ServiceFigures
from squeak.values import IPNetwork

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "MetricsSite", "SqueakCollector"]

#: The text exposition format, version 0.0.4: what every Prometheus
#: release reads (squeak's names and labels are plain ASCII, so the
#: library's output is that format whatever its newest version is).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: Every series name the collector exports (histogram and counter
#: suffixes included), for dashboards and their test.
METRIC_NAMES: frozenset[str] = frozenset(
    {
        "squeak_build_info",
        "squeak_workers",
        "squeak_requests_total",
        "squeak_client_sent_bytes_total",
        "squeak_client_received_bytes_total",
        "squeak_cache_hits_total",
        "squeak_cache_objects",
        "squeak_cache_bytes",
        "squeak_cache_limit_bytes",
        "squeak_client_connections",
        "squeak_client_connections_accepted_total",
        "squeak_tunnels_open",
        "squeak_tunnels_total",
        "squeak_upstream_connections",
        "squeak_request_duration_seconds_bucket",
        "squeak_request_duration_seconds_sum",
        "squeak_request_duration_seconds_count",
        "squeak_auth_checks_total",
        "squeak_access_denied_total",
        "squeak_collapsed_waits_total",
        "squeak_open_fds",
        "squeak_max_fds",
        "squeak_cpu_seconds_total",
        "squeak_resident_memory_bytes",
    }
)


class SqueakCollector(Collector):
    """
    Reads the service's figures at scrape time.
    """

    def __init__(self, stats: ServiceStats, workers: int) -> None:
        self._stats = stats
        self._workers = workers

    @override
    def collect(self) -> Iterator[Metric]:
        figures, _ = self._stats.figures()
        yield from families(figures, self._workers)


def families(figures: ServiceFigures, workers: int) -> Iterator[Metric]:
    """The metric families of C{figures}."""
    info = InfoMetricFamily("squeak_build", "squeak's version.")
    info.add_metric([], {"version": __version__})
    yield info
    processes = GaugeMetricFamily(
        "squeak_workers", "Processes serving, by whether they reported.", labels=["state"]
    )
    processes.add_metric(["configured"], workers)
    processes.add_metric(["reporting"], figures.processes)
    yield processes

    requests = CounterMetricFamily(
        "squeak_requests",
        "Requests answered, by method, Squid result code and status class.",
        labels=["method", "result", "status_class"],
    )
    sent = CounterMetricFamily(
        "squeak_client_sent_bytes",
        "Bytes sent to clients (heads and bodies), by Squid result code.",
        labels=["result"],
    )
    for (method, result, klass), (count, _) in sorted(figures.requests.items()):
        requests.add_metric([method, result, klass], count)
    for result, (_, size) in sorted(figures.by_result().items()):
        sent.add_metric([result], size)
    yield requests
    yield sent
    yield CounterMetricFamily(
        "squeak_client_received_bytes",
        "Bytes received from clients.",
        value=figures.scalars["client_bytes_in"],
    )
    hits = CounterMetricFamily(
        "squeak_cache_hits", "Requests answered from a cache tier.", labels=["tier"]
    )
    for tier, count in figures.hits_by_tier().items():
        hits.add_metric([tier], count)
    yield hits

    gauges = figures.gauges
    tiers: dict[str, dict[str, float]] = {
        "memory": {
            "objects": gauges["memory_objects"],
            "bytes": gauges["memory_bytes"],
            "limit": gauges["memory_limit"],
        }
    }
    if figures.disk:
        tiers["disk"] = {name: float(value) for name, value in figures.disk.items()}
    objects = GaugeMetricFamily(
        "squeak_cache_objects",
        "Objects stored, by tier (memory: summed over workers).",
        labels=["tier"],
    )
    used = GaugeMetricFamily(
        "squeak_cache_bytes", "Bytes the cache uses, by tier.", labels=["tier"]
    )
    limit = GaugeMetricFamily(
        "squeak_cache_limit_bytes", "The cache's size limit, by tier.", labels=["tier"]
    )
    for tier, values in tiers.items():
        objects.add_metric([tier], values.get("objects", 0))
        used.add_metric([tier], values.get("bytes", 0))
        limit.add_metric([tier], values.get("limit", 0))
    yield objects
    yield used
    yield limit

    yield GaugeMetricFamily(
        "squeak_client_connections", "Client connections open.", value=gauges["client_connections"]
    )
    yield CounterMetricFamily(
        "squeak_client_connections_accepted",
        "Client connections accepted.",
        value=figures.scalars["client_connections"],
    )
    yield GaugeMetricFamily(
        "squeak_tunnels_open",
        "CONNECT tunnels and upgrades relaying now.",
        value=gauges["tunnels"],
    )
    yield CounterMetricFamily(
        "squeak_tunnels",
        "CONNECT tunnels and upgrades opened.",
        value=figures.scalars["tunnels_opened"],
    )
    upstream = GaugeMetricFamily(
        "squeak_upstream_connections",
        "Connections to origin servers: busy with a request, or idle in the pool.",
        labels=["state"],
    )
    upstream.add_metric(["active"], max(0.0, gauges["upstream_open"] - gauges["upstream_idle"]))
    upstream.add_metric(["idle"], gauges["upstream_idle"])
    yield upstream

    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(
        [*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf"], figures.durations, strict=True
    ):
        cumulative += count
        buckets.append((bound, cumulative))
    yield HistogramMetricFamily(
        "squeak_request_duration_seconds",
        "Time from a request's head to its end (the access log's elapsed time).",
        buckets=buckets,
        sum_value=figures.duration_sum,
    )
    auth = CounterMetricFamily(
        "squeak_auth_checks", "Proxy authentication checks, by outcome.", labels=["outcome"]
    )
    for outcome, count in sorted(figures.auth_checks.items()):
        auth.add_metric([outcome], count)
    yield auth
    denied = CounterMetricFamily(
        "squeak_access_denied", "Requests refused by the access rules, by rule.", labels=["rule"]
    )
    for rule, count in sorted(figures.denied.items()):
        denied.add_metric([rule], count)
    yield denied
    yield CounterMetricFamily(
        "squeak_collapsed_waits",
        "Requests that waited for an identical fetch in flight (collapsed forwarding).",
        value=figures.scalars["collapsed_waits"],
    )
    yield GaugeMetricFamily(
        "squeak_open_fds",
        "File descriptors open, summed over workers.",
        value=gauges["open_files"],
    )
    yield GaugeMetricFamily(
        "squeak_max_fds",
        "File descriptor limit, summed over workers.",
        value=gauges["open_files_limit"],
    )
    yield CounterMetricFamily(
        "squeak_cpu_seconds",
        "CPU time (user and system) of the serving processes.",
        value=gauges["cpu_seconds"],
    )
    yield GaugeMetricFamily(
        "squeak_resident_memory_bytes",
        "Resident memory of the serving processes.",
        value=gauges["rss_bytes"],
    )


class _MetricsPage(Resource):
    """C{/metrics}: the registry in the text exposition format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, allow_from: tuple[IPNetwork, ...]) -> None:
        cast(Any, Resource).__init__(self)
        self._registry = registry
        self._allow_from = allow_from

    def render_GET(self, request: Any) -> bytes:
        client = request.getClientAddress()
        if not may_purge(getattr(client, "host", ""), self._allow_from):
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"metrics are not allowed from this address ([metrics] allow_from)\n"
        body = generate_latest(self._registry)
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        request.setHeader(b"Cache-Control", b"no-store")
        return body


class MetricsSite(Site):
    """
    The metrics listener's factory: C{/metrics} only; no request log (a
    scrape every few seconds would fill the service log).
    """

    noisy = False

    def __init__(
        self, stats: ServiceStats, workers: int, allow_from: tuple[IPNetwork, ...], reactor: Any
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SqueakCollector(stats, workers))
        root: Any = cast(Any, Resource)()
        root.putChild(b"metrics", _MetricsPage(registry, allow_from))
        cast(Any, Site).__init__(self, root, reactor=reactor)

    @override
    def log(self, request: Request) -> None:
        """Scrapes are not logged."""
