"""
The accelerator's routing (squeak/accel/routing.py): the site from Host,
dot segments, the longest prefix, rewritten paths.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.accel.config import AccelConfig, Route
from squeak.accel.routing import (
    AccelRouter,
    RoutingError,
    host_name,
    normalise_path,
    rewrite_path,
)
from squeak.config import parse_config

_CONFIG = """
[[accel]]
http_port = ["127.0.0.1:8080"]
site = "app.example"

[[accel]]
http_port = ["127.0.0.1:8081"]
site = "app.example"
fallback = true
sites = ["app.example"]

[accel_site."app.example"]
aliases = ["www.app.example"]
pool = "app"
routes = [
  {prefix = "/static/", pool = "static", strip = true},
  {prefix = "/static/big/", pool = "big"},
  {prefix = "/new_req", pool = "app", rewrite = "/v2"},
]

[accel_site."other.example"]
routes = [{prefix = "/api/", pool = "app"}]

[accel_pool.app]
origins = ["127.0.0.1:9000"]
[accel_pool.static]
origins = ["127.0.0.1:9001"]
[accel_pool.big]
origins = ["127.0.0.1:9002"]
"""


def _config() -> AccelConfig:
    return parse_config(_CONFIG, "accel.toml").accel


class HostNameTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Host values to site names: case, port and trailing dot dropped."""
        cases = [
            (b"App.Example", "app.example"),
            (b"app.example:8080", "app.example"),
            (b"app.example.", "app.example"),
            (b"[::1]:80", "[::1]"),
            (b"", None),
            (b"bad host", None),
            (b"[::1", None),
        ]
        wrong = [(value, got, want) for value, want in cases if (got := host_name(value)) != want]
        self.assertEqual(wrong, [])


class PathTests(SynchronousTestCase):
    def test_normalise_table(self) -> None:
        """RFC 3986 §5.2.4: dot segments removed, the query untouched."""
        cases = [
            (b"/a/b", b"/a/b"),
            (b"/a/./b", b"/a/b"),
            (b"/a/../b", b"/b"),
            (b"/../../etc/passwd", b"/etc/passwd"),
            (b"/a/b/..", b"/a/"),
            (b"/a/.", b"/a/"),
            (b"/a?x=/../y", b"/a?x=/../y"),
            (b"/static/../admin/?q", b"/admin/?q"),
            (b"/%2e%2e/x", b"/%2e%2e/x"),
        ]
        wrong = [(p, got, want) for p, want in cases if (got := normalise_path(p)) != want]
        self.assertEqual(wrong, [])

    def test_rewrite_table(self) -> None:
        """A route's prefix replaced; the result always starts with /."""
        strip_slash = Route("/static/", "s", "/")
        strip_bare = Route("/new_req", "s", "")
        other = Route("/app/", "s", "/v2/")
        keep = Route("/x/", "s", None)
        cases = [
            (b"/static/a.css", strip_slash, b"/a.css"),
            (b"/new_req", strip_bare, b"/"),
            (b"/new_req/x?y", strip_bare, b"/x?y"),
            (b"/new_req?y", strip_bare, b"/?y"),
            (b"/app/page", other, b"/v2/page"),
            (b"/x/page", keep, b"/x/page"),
        ]
        wrong = [
            (p, got, want) for p, route, want in cases if (got := rewrite_path(p, route)) != want
        ]
        self.assertEqual(wrong, [])


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        config = _config()
        self.strict = AccelRouter(config, config.listeners[0])
        self.fallback = AccelRouter(config, config.listeners[1])

    def test_sites_by_host(self) -> None:
        """Names and aliases pick their site; others get 421, none 400."""
        self.assertEqual(self.strict.site_for(b"www.app.example", b"HTTP/1.1").name, "app.example")
        self.assertEqual(self.strict.site_for(b"other.example", b"HTTP/1.1").name, "other.example")
        with self.assertRaises(RoutingError) as caught:
            self.strict.site_for(b"nope.example", b"HTTP/1.1")
        self.assertEqual(caught.exception.status, 421)
        with self.assertRaises(RoutingError) as caught:
            self.strict.site_for(None, b"HTTP/1.1")
        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(self.strict.site_for(None, b"HTTP/1.0").name, "app.example")

    def test_fallback(self) -> None:
        """An entry with fallback serves its site for any Host; it lists only its own."""
        self.assertEqual(self.fallback.site_for(b"nope.example", b"HTTP/1.1").name, "app.example")
        self.assertEqual(self.fallback.site_for(b"other.example", b"HTTP/1.1").name, "app.example")

    def test_longest_prefix_wins(self) -> None:
        """The longest matching route decides; the site's pool takes the rest."""
        site = self.strict.site_for(b"app.example", b"HTTP/1.1")
        cases = [
            (b"/static/a.css", "static", b"/a.css"),
            (b"/static/big/f.iso", "big", b"/static/big/f.iso"),
            (b"/new_req/x", "app", b"/v2/x"),
            (b"/other", "app", b"/other"),
            (b"/static/../x", "app", b"/x"),
        ]
        got = [
            (path, (d := self.strict.route(site, path)).pool, d.upstream_path)
            for path, _, _ in cases
        ]
        self.assertEqual(got, cases)

    def test_nothing_at_path(self) -> None:
        """A site without a pool answers 404 where no route matches."""
        site = self.strict.site_for(b"other.example", b"HTTP/1.1")
        self.assertEqual(self.strict.route(site, b"/api/x").pool, "app")
        with self.assertRaises(RoutingError) as caught:
            self.strict.route(site, b"/web")
        self.assertEqual(caught.exception.status, 404)
