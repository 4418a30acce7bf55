# -*- test-case-name: tests.test_accel_caching -*-
"""
How the cache in front of an application sees its responses: the site's
settings turned into the directives this cache obeys for one response
(stored as L{CACHE_VIEW_FIELD} on the cached copy only; clients see the
application's own C{Cache-Control}).

In order of precedence:
  1. a targeted field the site names (RFC 9213, e.g. C{CDN-Cache-Control}):
     when present, this cache obeys it and ignores C{Cache-Control}
     (§2.1);
  2. C{Surrogate-Control} (W3C Edge Architecture 1.0), when the site
     enables it: C{max-age=N} (with C{+M}, M seconds more on error) and
     C{no-store}, for this cache only; the field is not passed to clients
     (it is addressed to surrogates);
  3. the site's C{default_ttl} for a response with no freshness of its own
     (no C{max-age}, C{s-maxage} or C{Expires}), as nginx's
     C{proxy_cache_valid}: its C{Cache-Control} kept (C{no-store},
     C{private} still apply) and C{s-maxage} added.
To each view the site's C{stale_while_updating} and C{stale_on_error} add
C{stale-while-revalidate} and C{stale-if-error} (RFC 5861) unless the
response set its own.

Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from squeak.accel.config import AccelSite

__all__ = ["CACHE_VIEW_FIELD", "cache_view", "surrogate_directives"]

#: The field the cache obeys instead of C{Cache-Control}: the cache's own
#: C{squeak.cache.directives.CACHE_VIEW_FIELD} (the cache has one door, so
#: the name is repeated here; a test checks they agree).
CACHE_VIEW_FIELD = b"squeak-cache-view"


def field_values(fields: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every value of the field C{name} (lower case)."""
    return [value for key, value in fields if key.lower() == name]


def split_list(values: Sequence[bytes]) -> list[bytes]:
    """The elements of comma-separated list values (RFC 9110 §5.6.1), empty ones left out."""
    return [part.strip() for value in values for part in value.split(b",") if part.strip()]


def _directive_names(directives: Sequence[bytes]) -> set[bytes]:
    return {directive.partition(b"=")[0].strip().lower() for directive in directives}


def surrogate_directives(values: Sequence[bytes], device: str) -> list[bytes]:
    """
    The C{Surrogate-Control} directives for this surrogate, as cache
    directives: C{max-age=N[+M]} -> C{s-maxage=N} (and C{stale-if-error=M}),
    C{no-store} -> C{no-store}; directives targeted at another device
    (C{;name}) are left out.

    @param device: This cache's name, for targeted directives.
    """
    found: list[bytes] = []
    for element in split_list(values):
        directive, _, target = element.partition(b";")
        if target and target.strip().decode("latin-1").lower() != device.lower():
            continue
        name, _, value = directive.strip().partition(b"=")
        name = name.strip().lower()
        if name == b"no-store":
            found.append(b"no-store")
        elif name == b"max-age":
            fresh, _, extra = value.strip().partition(b"+")
            if fresh.isdigit():
                found.append(b"s-maxage=" + fresh)
                if extra.isdigit():
                    found.append(b"stale-if-error=" + extra)
    return found


def cache_view(
    fields: Sequence[tuple[bytes, bytes]], site: AccelSite, device: str
) -> bytes | None:
    """
    The directives this cache obeys for a response of C{site}, or L{None}
    when its own C{Cache-Control} is all there is to obey.

    @param fields: The response's fields.
    @param device: This cache's name (C{visible_hostname}).
    """
    directives: list[bytes] | None = None
    if site.cdn_cache_control:
        targeted = field_values(fields, site.cdn_cache_control.lower().encode("latin-1"))
        if targeted:
            directives = split_list(targeted)
    if directives is None and site.surrogate_control:
        surrogate = field_values(fields, b"surrogate-control")
        if surrogate:
            directives = surrogate_directives(surrogate, device) or None
    if directives is None and site.default_ttl > 0:
        own = split_list(field_values(fields, b"cache-control"))
        explicit = _directive_names(own) & {b"max-age", b"s-maxage"} or field_values(
            fields, b"expires"
        )
        if not explicit:
            directives = own
            directives.append(b"s-maxage=%d" % int(site.default_ttl))
    stale = []
    if site.stale_while_updating > 0:
        stale.append(b"stale-while-revalidate=%d" % int(site.stale_while_updating))
    if site.stale_on_error > 0:
        stale.append(b"stale-if-error=%d" % int(site.stale_on_error))
    if directives is None:
        if not stale:
            return None
        directives = split_list(field_values(fields, b"cache-control"))
    names = _directive_names(directives)
    directives += [extra for extra in stale if extra.partition(b"=")[0] not in names]
    return b", ".join(directives)
