# -*- test-case-name: tests.test_accel_routing -*-
"""
Which site and which pool answer an accelerated request, and with what
path: the pure routing decisions of accelerator mode.

  - The site comes from C{Host} (name-based virtual hosts, RFC 9110 §7.2),
    among the sites an C{[[accel]]} entry serves; a Host naming none gets
    421 Misdirected Request (RFC 9110 §15.5.20) unless the entry falls back
    to its own site.  An HTTP/1.1 request without Host is a 400 (RFC 9112
    §3.2).
  - The path is normalised first (dot segments removed, RFC 3986 §5.2.4),
    so C{/static/../admin/} is routed, and checked by the rules, as
    C{/admin/}: what the application will see is what was decided on.
  - The longest route prefix that matches wins; the pool of the site
    answers the rest; a path nothing answers is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from squeak.accel.config import AccelConfig, AccelListener, AccelSite, Route

__all__ = [
    "AccelRouter",
    "Decision",
    "RoutingError",
    "host_name",
    "normalise_path",
    "rewrite_path",
]


class RoutingError(Exception):
    """
    No site or route takes the request.

    @ivar name: The error page's name.
    @ivar status: The status to answer with.
    @ivar detail: One line for the page and the log.
    """

    def __init__(self, name: str, status: int, detail: str) -> None:
        super().__init__(name, status, detail)
        self.name, self.status, self.detail = name, status, detail


@dataclass(frozen=True, slots=True)
class Decision:
    """
    Where one request goes.

    @ivar site: The site that serves it.
    @ivar pool: The pool's name.
    @ivar path: Path and query as the client sent them, dot segments
        removed: the public URL's (the cache key's).
    @ivar upstream_path: Path and query sent to the application (the
        route's prefix rewritten).
    @ivar route: The route that matched, or L{None} for the site's pool.
    """

    site: AccelSite
    pool: str
    path: bytes
    upstream_path: bytes
    route: Route | None


def host_name(value: bytes) -> str | None:
    """
    The host name of a C{Host} value, lower-cased, without port or
    trailing dot; L{None} when it is not one (empty, or bytes no host name
    has).
    """
    text = value.strip().decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        return text[: end + 1]
    name = text.rsplit(":", 1)[0] if ":" in text else text
    name = name.rstrip(".")
    return name if _HOST_NAME.fullmatch(name) else None


#: What a host name (or an IPv4 address) may hold, once lower-cased.
_HOST_NAME = re.compile(r"[a-z0-9._-]+")


def normalise_path(target: bytes) -> bytes:
    """
    The path of an origin-form target with its dot segments removed (RFC
    3986 §5.2.4), the query kept as it is.

    Percent-encoded dots are left alone here: they are data to the path's
    owner, and the routing compares bytes.
    """
    path, mark, query = target.partition(b"?")
    if b"." not in path:
        return target
    output: list[bytes] = []
    segments = path.split(b"/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == b".":
            if last:
                output.append(b"")
            continue
        if segment == b"..":
            if output:
                output.pop()
            if last:
                output.append(b"")
            continue
        output.append(segment)
    return b"/" + b"/".join(output) + mark + query


def rewrite_path(path: bytes, route: Route) -> bytes:
    """
    The path the application sees: the route's prefix replaced by its
    C{rewrite} (C{strip} is a rewrite to C{/} or nothing), always starting
    with C{/}.
    """
    if route.rewrite is None:
        return path
    rest = path[len(route.prefix.encode("latin-1")) :]
    rewritten = route.rewrite.encode("latin-1") + rest
    if not rewritten.startswith(b"/"):
        rewritten = b"/" + rewritten
    return rewritten


class AccelRouter:
    """
    The routing of one C{[[accel]]} entry.
    """

    __slots__ = ("_by_host", "_default", "_fallback", "_routes")

    def __init__(self, config: AccelConfig, listener: AccelListener) -> None:
        served = listener.sites or tuple(config.sites)
        names = dict.fromkeys((listener.site, *served))
        self._by_host: dict[str, AccelSite] = {}
        for name in names:
            site = config.sites[name]
            for host in (site.name, *site.aliases):
                self._by_host[host] = site
        self._default: AccelSite = config.sites[listener.site]
        self._fallback = listener.fallback
        self._routes: Mapping[str, tuple[Route, ...]] = {
            name: tuple(
                sorted(
                    config.sites[name].routes, key=lambda route: len(route.prefix), reverse=True
                )
            )
            for name in names
        }

    def site_for(self, host: bytes | None, version: bytes) -> AccelSite:
        """
        The site a request's C{Host} names.

        @raise RoutingError: 400 without Host in HTTP/1.1, 421 for a host
            not served here (unless this entry falls back to its site).
        """
        if host is None:
            if version == b"HTTP/1.0" or self._fallback:
                return self._default
            raise RoutingError(
                "ERR_INVALID_REQ", 400, "an HTTP/1.1 request needs a Host field (RFC 9112 §3.2)"
            )
        name = host_name(host)
        site = self._by_host.get(name) if name is not None else None
        if site is not None:
            return site
        if self._fallback:
            return self._default
        shown = host.decode("latin-1")[:100]
        raise RoutingError(
            "ERR_ACCEL_NO_SITE", 421, f"this accelerator serves no site named {shown!r}"
        )

    def route(self, site: AccelSite, target: bytes) -> Decision:
        """
        The pool and paths for an origin-form C{target} on C{site}.

        @raise RoutingError: 404 when no route and no site pool takes it.
        """
        path = normalise_path(target)
        for route in self._routes[site.name]:
            prefix = route.prefix.encode("latin-1")
            if path.startswith(prefix):
                return Decision(site, route.pool, path, rewrite_path(path, route), route)
        if not site.pool:
            raise RoutingError(
                "ERR_ACCEL_NO_ROUTE", 404, f"site {site.name} has nothing at this path"
            )
        return Decision(site, site.pool, path, path, None)
