"""
Prometheus metrics (L{squeak.metrics}) and the whole-service figures
behind them, with a real twistd and two workers; the Grafana dashboard's
queries against the names the collector exports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, threads
from twisted.trial import unittest

from squeak.metrics import METRIC_NAMES, MetricsSite
from tests.sloworigin import SlowOrigin, fetch
from tests.test_drain import proxy_config, wait_for
from tests.transcript import Transcript
from tests.twistdprocess import TwistdProxy

DASHBOARD = Path(__file__).resolve().parent.parent / "etc" / "grafana-dashboard.json"


def scrape(
    port: int, path: str = "/metrics"
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """
    Scrape and parse with prometheus_client's own text parser: sample name
    -> labels -> value.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode("utf-8")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return samples


def page(proxy_port: int, name: str) -> Any:
    """A manager page in JSON, asked of the proxy port."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{proxy_port}/squid-internal-mgr/{name}",
        headers={"Accept": "application/json"},
    )
    # No proxy for this: the request goes to the proxy itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read())


def settle(read: Callable[[], float], want: float, timeout: float = 10.0) -> float:
    """
    Read a figure until it equals C{want} (other workers publish every
    0.5 s) or the time is up; the last value read.
    """
    deadline = time.monotonic() + timeout
    value = read()
    while value != want and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def total(samples: dict[str, dict[Any, float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


class WorkersMetricsTests(unittest.SynchronousTestCase):
    """
    C{workers = 2} and C{[metrics] http_port}: whichever worker answers, the
    figures are the service's.
    """

    timeout = 120

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.directory.mkdir(parents=True)
        extra = '\n[metrics]\nhttp_port = ["127.0.0.1:0"]\n'
        self.proxy = TwistdProxy(proxy_config(self.directory, workers=2, extra=extra)).start()
        self.addCleanup(self.proxy.stop)
        self.assertTrue(
            wait_for(self.proxy, r"worker \d+: .*squeak listening on metrics", count=2)
        )
        match = re.search(r"squeak listening on metrics 127\.0\.0\.1:(\d+)", self.proxy.output)
        assert match is not None
        self.metrics_port = int(match.group(1))

    def _requests_from_both_workers(self, minimum: int) -> int:
        """
        Send requests (each on a new connection) until both workers have
        answered some and at least C{minimum} were sent (bounded).

        @return: How many were sent.
        """
        pids: set[str] = set()
        sent = 0
        while (len(pids) < 2 or sent < minimum) and sent < 400:
            status, fields, _ = fetch(self.proxy.port, self.origin.url(f"/body/{sent % 7 + 1}"))
            self.assertEqual(status, 200)
            pids.add(fields["x-squeak-worker"])
            sent += 1
        self.assertEqual(len(pids), 2, "one worker answered everything")
        return sent

    def test_requests_move_every_figure_by_exactly_n(self) -> None:
        """
        N requests spread over both workers move C{squeak_requests_total},
        the histogram's count, the C{counters} and C{info} pages by exactly
        N, once the other worker has published (bounded wait).
        """
        port = self.proxy.port

        def metric_total() -> float:
            return total(scrape(self.metrics_port), "squeak_requests_total")

        def histogram_count() -> float:
            return total(scrape(self.metrics_port), "squeak_request_duration_seconds_count")

        before = metric_total()
        counted_before = page(port, "counters")["client_http.requests"]
        info_before = page(port, "info")["requests"]["total"]
        sent = self._requests_from_both_workers(20)
        self.assertEqual(settle(metric_total, before + sent), before + sent)
        self.assertEqual(settle(histogram_count, before + sent), before + sent)
        self.assertEqual(
            settle(lambda: page(port, "counters")["client_http.requests"], counted_before + sent),
            counted_before + sent,
        )
        info = page(port, "info")
        self.assertEqual(info["requests"]["total"], info_before + sent)
        self.assertEqual(info["workers"], 2)
        self.assertEqual(info["processes_reporting"], 2)
        samples = scrape(self.metrics_port)
        self.assertEqual(samples["squeak_workers"][(("state", "reporting"),)], 2)
        misses = samples["squeak_requests_total"][
            (("method", "GET"), ("result", "TCP_MISS"), ("status_class", "2xx"))
        ]
        self.assertGreaterEqual(misses, 1)

    def test_every_name_is_exported(self) -> None:
        """
        A scrape has every series L{METRIC_NAMES} lists (the dashboard is
        tested against that list), and nothing else of squeak's.
        """
        fetch(self.proxy.port, self.origin.url("/body/3"))
        # Refused by "deny !Safe_ports": port 1 is not a safe port.
        status, _, _ = fetch(self.proxy.port, "http://127.0.0.1:1/")
        self.assertEqual(status, 403)
        denied = settle(
            lambda: (
                scrape(self.metrics_port)
                .get("squeak_access_denied_total", {})
                .get((("rule", "deny !Safe_ports"),), 0.0)
            ),
            1.0,
        )
        self.assertEqual(denied, 1.0)
        names = set(scrape(self.metrics_port))
        # A labelled family has no series until its first event: no
        # authentication is configured here.
        self.assertEqual(METRIC_NAMES - names, {"squeak_auth_checks_total"})
        self.assertEqual({n for n in names if n.startswith("squeak_")} - METRIC_NAMES, set())

    def test_a_worker_that_dies_keeps_its_counts(self) -> None:
        """
        When a worker is killed, the master keeps its last published
        counters: the service's total does not go back.
        """
        sent = self._requests_from_both_workers(10)

        def metric_total() -> float:
            return total(scrape(self.metrics_port), "squeak_requests_total")

        reached = settle(metric_total, sent)
        self.assertEqual(reached, sent)
        pids = [int(p) for p in re.findall(r"started worker (\d+)", self.proxy.output)]
        os.kill(pids[0], signal.SIGKILL)
        self.assertTrue(wait_for(self.proxy, r"started worker \d+", count=3))
        self.assertTrue(
            wait_for(self.proxy, r"worker \d+: .*squeak listening on metrics", count=3)
        )
        self.assertEqual(settle(metric_total, sent), sent)


class MetricsSiteTests(unittest.TestCase):
    """
    The listener in-process: the exposition format, and who may scrape.
    """

    def _site_port(self, **metrics: Any) -> int:
        t = Transcript(unittest.SynchronousTestCase(), metrics=metrics)
        t.context.counters.request_done("GET", "TCP_MEM_HIT", 200, 10, 0.002)
        config = t.context.config.metrics
        site = MetricsSite(t.context.stats, 1, config.allow_from, reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_scrape(self) -> None:
        """The collector reads the counters when scraped."""
        port = self._site_port()
        samples = await threads.deferToThread(scrape, port)
        self.assertEqual(samples["squeak_cache_hits_total"][(("tier", "memory"),)], 1)
        self.assertEqual(samples["squeak_request_duration_seconds_bucket"][(("le", "0.0025"),)], 1)

    async def test_outside_allow_from(self) -> None:
        """A client outside C{[metrics] allow_from} gets 403."""
        import ipaddress

        port = self._site_port(allow_from=(ipaddress.ip_network("10.0.0.0/8"),))

        def status() -> int:
            try:
                scrape(port)
            except urllib.error.HTTPError as error:
                return error.code
            return 200

        self.assertEqual(await threads.deferToThread(status), 403)


class DashboardTests(unittest.SynchronousTestCase):
    """
    C{etc/grafana-dashboard.json} asks only for what the collector exports.
    """

    def _queries(self) -> list[str]:
        document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key == "expr" and isinstance(item, str):
                        found.append(item)
                    else:
                        walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(document)
        return found

    def test_queries_name_exported_metrics(self) -> None:
        """
        Every metric a PromQL query names is one the collector exports,
        and the panels the issue asks for are there.
        """
        queries = self._queries()
        self.assertGreaterEqual(len(queries), 6)
        named = {name for query in queries for name in re.findall(r"\b(squeak_[a-z_]+)\b", query)}
        self.assertEqual(named - METRIC_NAMES, set())
        self.assertTrue(
            {
                "squeak_requests_total",
                "squeak_request_duration_seconds_bucket",
                "squeak_cache_bytes",
                "squeak_client_connections",
            }
            <= named
        )
        # Nothing else looks like a metric (a typo without the prefix).
        for query in queries:
            words = set(re.findall(r"\b([a-z_]+_(?:total|bytes|seconds|bucket))\b", query))
            self.assertEqual(words - METRIC_NAMES, set(), query)
