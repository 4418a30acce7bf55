"""
Tests for L{squeak.stats.pages}: which targets ask for a manager page, and
what the pages say.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from squeak.stats.counters import Counters, merge
from squeak.stats.pages import (
    ManagerRequest,
    counters_page,
    info_page,
    manager_request,
    objects_page,
    render,
    wants_json,
)

_OWN = ["squeak.test", "127.0.0.1"]


class ManagerRequestTests(SynchronousTestCase):
    """
    L{manager_request} recognises the forms clients send.
    """

    CASES = [  # (why, target, expected page and query, or None)
        (
            "squidclient 5.7 mgr:info (captured)",
            b"cache_object://127.0.0.1/info",
            ("info", {}),
        ),
        (
            "an encoded URL is decoded",
            b"cache_object://127.0.0.1/objects?format=json&url=http%3A%2F%2Fx.test%2Fa%3Fb",
            ("objects", {"url": "http://x.test/a?b", "format": "json"}),
        ),
        (
            "a URL as typed (squidclient) is kept whole, escapes and query included",
            b"cache_object://127.0.0.1/objects?format=json&url=http://x.test/a?b=%3D&c=1",
            ("objects", {"url": "http://x.test/a?b=%3D&c=1", "format": "json"}),
        ),
        ("cache_object with no page is the menu", b"cache_object://localhost", ("menu", {})),
        ("a Squid password is ignored", b"cache_object://h/info@secret", ("info", {})),
        (
            "origin form",
            b"/squid-internal-mgr/counters?format=json",
            ("counters", {"format": "json"}),
        ),
        (
            "absolute form naming this proxy and port",
            b"http://127.0.0.1:3128/squid-internal-mgr/info",
            ("info", {}),
        ),
        (
            "absolute form by visible host name",
            b"http://SQUEAK.test:3128/squid-internal-mgr/info",
            ("info", {}),
        ),
        (
            "another host's manager is forwarded",
            b"http://squid.test:3128/squid-internal-mgr/info",
            None,
        ),
        (
            "another port is another service",
            b"http://127.0.0.1:8080/squid-internal-mgr/info",
            None,
        ),
        ("not the manager path", b"http://127.0.0.1:3128/x/squid-internal-mgr/info", None),
        ("an ordinary request", b"http://example.test/", None),
        ("not ASCII", b"/squid-internal-mgr/\xff", None),
        ("a broken port", b"http://127.0.0.1:99999/squid-internal-mgr/info", None),
    ]

    def test_forms(self) -> None:
        """Each row's target is (or is not) the page it names."""
        wrong = []
        for why, target, expected in self.CASES:
            found = manager_request(target, own_names=_OWN, local_port=3128)
            got = None if found is None else (found.page, dict(found.query))
            if got != expected:
                wrong.append((why, got, expected))
        self.assertEqual(wrong, [])

    def test_json_negotiation(self) -> None:
        """C{?format=} wins; otherwise an Accept preferring JSON."""
        rows = [
            ({"format": "json"}, None, True),
            ({"format": "text"}, b"application/json", False),
            ({}, b"application/json", True),
            ({}, b"text/plain, application/json", False),
            ({}, b"*/*", False),
            ({}, None, False),
        ]
        wrong = [
            (query, accept)
            for query, accept, want in rows
            if wants_json(ManagerRequest("info", query), accept) != want
        ]
        self.assertEqual(wrong, [])


class PageTests(SynchronousTestCase):
    """
    The pages' figures, and their two renderings.
    """

    def _figures(self) -> object:
        counters = Counters()
        for _ in range(3):
            counters.request_done("GET", "TCP_MEM_HIT", 200, 100, 0.001)
        counters.request_done("GET", "TCP_MISS", 404, 300, 0.2)
        counters.denied_by("deny all")
        snapshot = counters.snapshot()
        snapshot["gauges"] = {
            "client_connections": 4,
            "memory_objects": 2,
            "memory_bytes": 2048,
            "memory_limit": 4096,
            "open_files": 30,
            "open_files_limit": 1024,
            "cpu_seconds": 1.5,
            "rss_bytes": 1 << 20,
        }
        snapshot["disk"] = {"objects": 5, "bytes": 10, "limit": 100, "measured": 1.0}
        return merge([snapshot])

    def test_info(self) -> None:
        """
        The info page's ratios, uptime, cache and resources come from the
        figures.
        """
        page = info_page(self._figures(), version="9.9", started=1000.0, now=1060.0, workers=2)  # type: ignore[arg-type]
        self.assertEqual(page["uptime_seconds"], 60.0)
        self.assertEqual(page["requests"]["total"], 4)
        self.assertEqual(page["requests"]["hit_ratio"], 0.75)
        self.assertEqual(page["requests"]["byte_hit_ratio"], 0.5)
        self.assertEqual(page["cache"]["disk"], {"objects": 5, "bytes": 10, "limit": 100})
        self.assertEqual(page["cache"]["memory"]["limit"], 4096)
        self.assertEqual(page["file_descriptors"], {"in_use": 30, "limit": 1024})
        self.assertEqual(page["client_connections_open"], 4)
        self.assertEqual(page["workers"], 2)

    def test_counters(self) -> None:
        """Squid's names for the totals; the breakdown by result."""
        page = counters_page(self._figures(), now=0.0)  # type: ignore[arg-type]
        self.assertEqual(page["client_http.requests"], 4)
        self.assertEqual(page["client_http.hits"], 3)
        self.assertEqual(page["client_http.errors"], 1)
        self.assertEqual(page["client_http.hits_memory"], 3)
        self.assertEqual(page["access_denied"], {"deny all": 1})
        self.assertEqual(page["request_duration_seconds"]["buckets"]["+Inf"], 4)

    def test_render(self) -> None:
        """
        Text is Squid-style C{name: value} lines (a table's rows on one
        line each); JSON is the same page.
        """
        page = counters_page(self._figures(), now=0.0)  # type: ignore[arg-type]
        text, text_type = render(page, as_json=False)
        self.assertEqual(text_type, b"text/plain; charset=utf-8")
        self.assertIn(b"client_http.requests: 4\n", text)
        self.assertIn(
            b"\tmethod=GET result=TCP_MISS status_class=4xx requests=1 bytes=300\n", text
        )
        body, json_type = render(page, as_json=True)
        self.assertEqual(json_type, b"application/json")
        self.assertEqual(json.loads(body), page)

    def test_objects_empty(self) -> None:
        """Nothing stored says so."""
        page = objects_page("http://x.test/", [])
        self.assertEqual(page, {"url": "http://x.test/", "stored": False, "variants": []})
        self.assertIn(b"variants:\n\t(none)\n", render(page, as_json=False)[0])
