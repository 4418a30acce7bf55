"""
The cache's view of an application's responses (squeak/accel/caching.py):
targeted fields (RFC 9213), Surrogate-Control, the site's default TTL and
stale windows (RFC 5861).
"""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from squeak.accel.caching import CACHE_VIEW_FIELD, cache_view, surrogate_directives
from squeak.accel.config import AccelSite
from squeak.cache import directives
from squeak.cache.directives import parse_stored_cache_control

_SITE = AccelSite(name="app.example", pool="app")


class SurrogateTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Edge Architecture directives as cache directives, targeted ones filtered."""
        cases = [
            ([b"max-age=60"], [b"s-maxage=60"]),
            ([b"max-age=60+600"], [b"s-maxage=60", b"stale-if-error=600"]),
            ([b"no-store"], [b"no-store"]),
            ([b"max-age=5;squeak.test, max-age=99;other"], [b"s-maxage=5"]),
            ([b'content="ESI/1.0", max-age=bad'], []),
        ]
        wrong = [
            (values, got, want)
            for values, want in cases
            if (got := surrogate_directives(values, "squeak.test")) != want
        ]
        self.assertEqual(wrong, [])


class CacheViewTests(SynchronousTestCase):
    def _view(self, fields: list[tuple[bytes, bytes]], **site: object) -> bytes | None:
        return cache_view(fields, replace(_SITE, **site), "squeak.test")

    def test_table(self) -> None:
        """Each setting's view, and none when the response's own rules are all."""
        private = [(b"Cache-Control", b"private")]
        cases = [
            ("nothing configured", [], {}, None),
            ("default TTL without freshness", [], {"default_ttl": 60.0}, b"s-maxage=60"),
            (
                "default TTL keeps restrictions",
                [(b"cache-control", b"no-cache")],
                {"default_ttl": 60.0},
                b"no-cache, s-maxage=60",
            ),
            ("own max-age wins", [(b"cache-control", b"max-age=5")], {"default_ttl": 60.0}, None),
            (
                "own Expires wins",
                [(b"expires", b"Thu, 01 Jan 2099 00:00:00 GMT")],
                {"default_ttl": 60.0},
                None,
            ),
            (
                "surrogate over private",
                [*private, (b"Surrogate-Control", b"max-age=30")],
                {"surrogate_control": True},
                b"s-maxage=30",
            ),
            ("surrogate off", [*private, (b"Surrogate-Control", b"max-age=30")], {}, None),
            (
                "targeted field",
                [*private, (b"CDN-Cache-Control", b"max-age=90")],
                {"cdn_cache_control": "CDN-Cache-Control"},
                b"max-age=90",
            ),
            (
                "targeted over surrogate",
                [(b"CDN-Cache-Control", b"no-store"), (b"Surrogate-Control", b"max-age=30")],
                {"cdn_cache_control": "CDN-Cache-Control", "surrogate_control": True},
                b"no-store",
            ),
            (
                "stale windows",
                [(b"cache-control", b"max-age=5")],
                {"stale_while_updating": 10.0, "stale_on_error": 3600.0},
                b"max-age=5, stale-while-revalidate=10, stale-if-error=3600",
            ),
            (
                "the response's own window kept",
                [(b"cache-control", b"max-age=5, stale-if-error=7")],
                {"stale_on_error": 3600.0},
                b"max-age=5, stale-if-error=7",
            ),
        ]
        wrong = [
            (why, got, want)
            for why, fields, site, want in cases
            if (got := self._view(fields, **site)) != want
        ]
        self.assertEqual(wrong, [])

    def test_view_obeyed_over_cache_control(self) -> None:
        """RFC 9213 §2.1: with the view stored, Cache-Control is ignored by this cache."""
        cc = parse_stored_cache_control(
            [(b"Cache-Control", b"private, max-age=0"), (b"Squeak-Cache-View", b"s-maxage=30")]
        )
        self.assertEqual((cc.private, cc.s_maxage, cc.max_age), (False, 30, None))

    def test_same_field_as_the_cache(self) -> None:
        """The accelerator writes the field the cache reads."""
        self.assertEqual(CACHE_VIEW_FIELD, directives.CACHE_VIEW_FIELD)
