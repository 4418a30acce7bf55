"""
The HTTP cache: an RFC 9111 shared cache.

The pure modules decide (L{squeak.cache.directives} parses the caching
header fields, L{squeak.cache.keys} computes cache keys, L{squeak.cache.policy}
makes every RFC 9111 decision); the store modules keep entries
(L{squeak.cache.memory} is the LRU memory tier, L{squeak.cache.disk} the
diskcache-backed disk tier, L{squeak.cache.store} the facade over both, with
the registry of fetches in flight used for collapsed forwarding).
docs/cache.md describes the design.
"""
