"""
Tests for L{squeak.cache.inventory}: what the manager's C{objects} page
says about stored responses.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.inventory import describe_variants
from squeak.cache.policy import StoredResponse

_DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"
_T0 = 1767225600.0  # that date


def _stored(
    headers: list[tuple[bytes, bytes]], vary_key: str = "", size: int = 5
) -> StoredResponse:
    return StoredResponse(
        "http://x.test/a",
        200,
        b"OK",
        tuple(headers),
        _T0,
        _T0,
        vary_key=vary_key,
        body_length=size,
    )


class DescribeTests(SynchronousTestCase):
    """
    L{describe_variants}.
    """

    def test_explicit_freshness_and_validators(self) -> None:
        """
        RFC 9111 §5.2.2.1 max-age gives the lifetime, §4.2.3 the age; the
        validators are shown as stored.
        """
        meta = _stored(
            [
                (b"Date", _DATE),
                (b"Cache-Control", b"max-age=100"),
                (b"ETag", b'"v1"'),
                (b"Last-Modified", _DATE),
            ]
        )
        (variant,) = describe_variants([(meta, "disk")], _T0 + 30)
        self.assertEqual(variant.lifetime, 100.0)
        self.assertIn("max-age", variant.lifetime_reason)
        self.assertEqual(variant.age, 30.0)
        self.assertTrue(variant.fresh)
        self.assertEqual((variant.etag, variant.last_modified), ('"v1"', _DATE.decode()))
        self.assertEqual(variant.tiers, ("disk",))
        self.assertEqual(variant.as_dict()["size"], 5)

    def test_stale(self) -> None:
        """Past its lifetime, a variant is not fresh."""
        meta = _stored([(b"Date", _DATE), (b"Cache-Control", b"max-age=10")])
        (variant,) = describe_variants([(meta, "memory")], _T0 + 11)
        self.assertFalse(variant.fresh)

    def test_variants_and_tiers(self) -> None:
        """
        One description per secondary key (Vary variant); a variant in
        both tiers names both.
        """
        vary = [(b"Date", _DATE), (b"Vary", b"Accept-Language"), (b"Cache-Control", b"max-age=5")]
        english = _stored(vary, vary_key="en", size=3)
        french = _stored(vary, vary_key="fr", size=4)
        found = [(english, "memory"), (english, "disk"), (french, "disk")]
        described = describe_variants(found, _T0)
        self.assertEqual(
            [(v.vary_key, v.tiers, v.size, v.vary) for v in described],
            [
                ("en", ("memory", "disk"), 3, ("accept-language",)),
                ("fr", ("disk",), 4, ("accept-language",)),
            ],
        )
