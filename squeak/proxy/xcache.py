# -*- test-case-name: tests.test_proxy_hit -*-
"""
Squid's cache-result fields, C{X-Cache} (whether this response came from
the cache) and C{X-Cache-Lookup} (whether the cache held an entry for it),
which squeak sets on every response it relays or serves.

This module is pure: no Twisted, no clock.
"""

from __future__ import annotations

import functools

__all__ = ["X_CACHE_FIELDS", "x_cache_fields"]

#: The fields' names, lower-cased: another cache's values are never
#: relayed or served, ours replace them.
X_CACHE_FIELDS = frozenset({b"x-cache", b"x-cache-lookup"})


@functools.lru_cache(maxsize=16)
def x_cache_fields(
    visible_hostname: str, *, hit: bool, found: bool
) -> tuple[tuple[bytes, bytes], ...]:
    """
    The two fields, C{HIT from NAME} or C{MISS from NAME} each (made once
    per name and outcome).

    @param hit: Whether the response came from the cache.
    @param found: Whether the cache held an entry for the request.
    """
    name = visible_hostname.encode("ascii", "replace")
    hit_value, miss_value = b"HIT from " + name, b"MISS from " + name
    return (
        (b"X-Cache", hit_value if hit else miss_value),
        (b"X-Cache-Lookup", hit_value if found else miss_value),
    )
