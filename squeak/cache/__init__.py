"""
The HTTP cache: an RFC 9111 shared cache, reached from outside this package
only through L{squeak.cache.facade} (its one door).

The pure modules decide (L{squeak.cache.directives} parses the caching
header fields, L{squeak.cache.keys} computes cache keys,
L{squeak.cache.policy} decides freshness and reuse, L{squeak.cache.storing}
what may be stored, L{squeak.cache.validation} validation and invalidation,
L{squeak.cache.ranges} Range answers); the store modules keep entries
(L{squeak.cache.memory} is the LRU memory tier, L{squeak.cache.disk} the
diskcache-backed disk tier, L{squeak.cache.store} the store over both, with
the registry of fetches in flight used for collapsed forwarding).
docs/cache.md describes the design.
"""

__all__: list[str] = []
