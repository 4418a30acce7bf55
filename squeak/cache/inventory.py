# -*- test-case-name: tests.test_cache_inventory -*-
"""
What the cache holds for a URL, described for people: the manager's
C{objects} page (L{squeak.proxy.manager}).

One L{StoredVariant} per Vary variant, with the figures a cache
administrator asks about: its size, its current age (RFC 9111 §4.2.3),
its freshness lifetime and where that came from (§4.2.1, §4.2.2), whether
it is fresh now, its validators (§4.3.1), and the tiers it is in.

This module is pure: no Twisted, no clock (the time is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from squeak.cache.directives import parse_cache_control, parse_dates
from squeak.cache.freshness import DEFAULT_RULES, FreshnessRules, current_age, freshness_lifetime
from squeak.cache.keys import vary_fields
from squeak.cache.policy import StoredResponse

__all__ = ["StoredVariant", "describe_variants"]


@dataclass(frozen=True, slots=True)
class StoredVariant:
    """
    One stored response for a URL.

    @ivar uri: The URI it was stored under.
    @ivar status: Its status code.
    @ivar vary: The request fields it varies on (C{Vary}), lower case.
    @ivar vary_key: Its secondary key (the values of those fields).
    @ivar size: Body bytes.
    @ivar age: Current age in seconds (RFC 9111 §4.2.3).
    @ivar lifetime: Freshness lifetime in seconds (RFC 9111 §4.2.1).
    @ivar lifetime_reason: Where the lifetime came from, citing its section.
    @ivar fresh: Whether the age is below the lifetime.
    @ivar etag: Its C{ETag}, if any.
    @ivar last_modified: Its C{Last-Modified}, if any.
    @ivar stored_at: When its response was received (seconds since the epoch).
    @ivar tiers: Where it is: C{"memory"} (this process's memory tier),
        C{"disk"}, or both.
    """

    uri: str
    status: int
    vary: tuple[str, ...]
    vary_key: str
    size: int
    age: float
    lifetime: float
    lifetime_reason: str
    fresh: bool
    etag: str | None
    last_modified: str | None
    stored_at: float
    tiers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The variant as JSON-able values."""
        return {
            "uri": self.uri,
            "status": self.status,
            "vary": list(self.vary),
            "vary_key": self.vary_key,
            "size": self.size,
            "age": round(self.age, 3),
            "freshness_lifetime": round(self.lifetime, 3),
            "freshness_reason": self.lifetime_reason,
            "fresh": self.fresh,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "stored_at": self.stored_at,
            "tiers": list(self.tiers),
        }


def _field(meta: StoredResponse, name: bytes) -> str | None:
    for key, value in meta.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def describe_variants(
    found: Iterable[tuple[StoredResponse, str]],
    now: float,
    rules: FreshnessRules = DEFAULT_RULES,
) -> list[StoredVariant]:
    """
    Describe what the tiers hold for one primary key.

    @param found: C{(stored response, tier)} from every tier; a variant in
        both tiers (same secondary key) is described once, with both.
    @param now: The current time.
    @return: One L{StoredVariant} per secondary key, in the order found.
    """
    tiers: dict[str, list[str]] = {}
    metas: dict[str, StoredResponse] = {}
    for meta, tier in found:
        metas.setdefault(meta.vary_key, meta)
        seen = tiers.setdefault(meta.vary_key, [])
        if tier not in seen:
            seen.append(tier)
    described = []
    for vary_key, meta in metas.items():
        dates = parse_dates(meta.headers, now=now)
        freshness = freshness_lifetime(
            parse_cache_control(meta.headers),
            dates,
            meta.status,
            response_time=meta.response_time,
            uri=meta.uri,
            rules=rules,
        )
        age = current_age(
            dates, request_time=meta.request_time, response_time=meta.response_time, now=now
        )
        described.append(
            StoredVariant(
                uri=meta.uri,
                status=meta.status,
                vary=tuple(name.decode("latin-1").lower() for name in vary_fields(meta.headers)),
                vary_key=vary_key,
                size=meta.body_length,
                age=age,
                lifetime=freshness.lifetime,
                lifetime_reason=freshness.reason,
                fresh=age < freshness.lifetime,
                etag=_field(meta, b"etag"),
                last_modified=_field(meta, b"last-modified"),
                stored_at=meta.response_time,
                tiers=tuple(tiers[vary_key]),
            )
        )
    return described
