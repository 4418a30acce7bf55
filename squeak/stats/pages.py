# -*- test-case-name: tests.test_stats_pages -*-
"""
The cache manager pages: which requests ask for one, and what each page
says, as text and as JSON.

A manager request is recognised in the three forms clients send:

  - C{GET cache_object://HOST/PAGE HTTP/1.0}: what C{squidclient mgr:PAGE}
    sends (checked with Debian's squidclient 5.7), whatever the host, as
    Squid does;
  - C{GET /squid-internal-mgr/PAGE}: origin form, to the proxy itself
    (Squid 3.2 and later, and C{squeak mgr});
  - C{GET http://HOST:PORT/squid-internal-mgr/PAGE}: absolute form naming
    this proxy (its visible host name or the address the client connected
    to, and that port); naming another host, it is an ordinary request to
    forward (that host may be a Squid).  (The router asks before
    admission about targets containing C{squid-internal-mgr/}, and about
    C{cache_object:} ones once admission refused them:
    L{squeak.proxy.manager}.)

The pages (L{PAGES}) are built from L{squeak.stats.counters.ServiceFigures}
as nested dictionaries (the JSON form) and rendered as indented
C{name: value} lines for the text form, which is Squid's style.

This module is pure: no Twisted, no clock (times are passed in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from squeak.stats.counters import DURATION_BUCKETS, ServiceFigures

__all__ = [
    "MANAGER_PATH",
    "PAGES",
    "ManagerRequest",
    "counters_page",
    "info_page",
    "manager_request",
    "menu_page",
    "objects_page",
    "render",
    "wants_json",
]

#: The path prefix of the manager pages (Squid's internal URLs).
MANAGER_PATH = "/squid-internal-mgr/"

#: The pages and what each shows (the C{menu} page lists them).
PAGES: Mapping[str, str] = {
    "menu": "this list",
    "info": "general runtime information: uptime, connections, hit ratios, cache, resources",
    "counters": "the raw monotonic counters",
    "objects": "what is stored for one URL (objects?url=URL), per Vary variant",
}


@dataclass(frozen=True, slots=True)
class ManagerRequest:
    """
    A request for a manager page.

    @ivar page: The page's name (C{info}); C{menu} when none was named.
    @ivar query: The query's parameters (the last value of each).
    """

    page: str
    query: Mapping[str, str]


def _split_page(rest: str) -> ManagerRequest:
    """C{PAGE[?QUERY]} (and a Squid password after C{@}, ignored)."""
    page, _, query = rest.partition("?")
    page = page.partition("@")[0].strip("/") or "menu"
    raw_url = None
    start = 0 if query.startswith("url=") else query.find("&url=") + 1
    if start > 0 or query.startswith("url="):
        value = query[start + 4 :]
        if "://" in value:
            # Not encoded (as squidclient users type it): the rest of the
            # query is the URL, its own query and escapes untouched.
            raw_url = value
            query = query[: max(0, start - 1)]
    params = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}
    if raw_url is not None:
        params["url"] = raw_url
    return ManagerRequest(unquote(page), params)


def manager_request(
    target: bytes, *, own_names: Collection[str], local_port: int
) -> ManagerRequest | None:
    """
    Whether a request target asks for a manager page of this proxy, and
    which.

    @param target: The request target as sent.
    @param own_names: This proxy's names and addresses (lower case): its
        visible host name, the address the client connected to.
    @param local_port: The port the client connected to.
    @return: The page asked for, or L{None} for any other request.
    """
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith(MANAGER_PATH):
        return _split_page(text[len(MANAGER_PATH) :])
    lowered = text[:16].lower()
    if lowered.startswith("cache_object://"):
        rest = text[len("cache_object://") :]
        slash = rest.find("/")
        return _split_page("" if slash < 0 else rest[slash + 1 :])
    if not lowered.startswith("http://") or MANAGER_PATH not in text:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host not in own_names or port != local_port or not parts.path.startswith(MANAGER_PATH):
        return None
    rest = parts.path[len(MANAGER_PATH) :]
    return _split_page(f"{rest}?{parts.query}" if parts.query else rest)


def wants_json(request: ManagerRequest, accept: bytes | None) -> bool:
    """
    Whether the JSON form was asked for: C{?format=json}, or an C{Accept}
    that names C{application/json} and not C{text/plain} before it.
    """
    form = request.query.get("format")
    if form is not None:
        return form.lower() == "json"
    if accept is None:
        return False
    text = accept.decode("latin-1").lower()
    json_at = text.find("application/json")
    plain_at = text.find("text/plain")
    return json_at >= 0 and (plain_at < 0 or json_at < plain_at)


# -- the pages ----------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def menu_page() -> dict[str, Any]:
    """The list of pages."""
    return {"pages": dict(PAGES)}


def info_page(
    figures: ServiceFigures,
    *,
    version: str,
    started: float,
    now: float,
    workers: int,
) -> dict[str, Any]:
    """
    General runtime information, for the whole service (Squid's C{info}).

    @param started: When the process answering started serving.
    @param workers: The configured workers (C{[proxy] workers}).
    """
    requests = figures.total_requests
    bytes_out = figures.total_bytes_out
    hits, hit_bytes = figures.hits()
    gauges = figures.gauges
    recent = {}
    for seconds, window in sorted(figures.windows.items()):
        by_requests, by_bytes = window.ratios()
        recent[f"{seconds // 60}min"] = {
            "requests": window.requests,
            "hits": window.hits,
            "hit_ratio": None if by_requests is None else round(by_requests, 4),
            "byte_hit_ratio": None if by_bytes is None else round(by_bytes, 4),
            "covered_seconds": round(window.covered, 1),
        }
    cache: dict[str, Any] = {
        "memory": {
            "objects": int(gauges["memory_objects"]),
            "bytes": int(gauges["memory_bytes"]),
            "limit": int(gauges["memory_limit"]),
        }
    }
    if figures.disk:
        cache["disk"] = dict(figures.disk)
    quantiles = {f"p{int(q * 100)}": figures.quantile(q) for q in (0.5, 0.9, 0.99)}
    return {
        "version": version,
        "start_time": _when(started),
        "current_time": _when(now),
        "uptime_seconds": round(now - started, 1),
        "workers": workers,
        "processes_reporting": figures.processes,
        "client_connections_open": int(gauges["client_connections"]),
        "tunnels_open": int(gauges["tunnels"]),
        "requests": {
            "total": requests,
            "hits": hits,
            "hit_ratio": _ratio(hits, requests),
            "bytes_out": bytes_out,
            "hit_bytes_out": hit_bytes,
            "byte_hit_ratio": _ratio(hit_bytes, bytes_out),
            "bytes_in": figures.scalars["client_bytes_in"],
        },
        "recent": recent,
        "request_duration_seconds": {
            name: None if value is None else round(value, 6) for name, value in quantiles.items()
        },
        "cache": cache,
        "upstream_connections": {
            "open": int(gauges["upstream_open"]),
            "idle": int(gauges["upstream_idle"]),
        },
        "file_descriptors": {
            "in_use": int(gauges["open_files"]),
            "limit": int(gauges["open_files_limit"]),
        },
        "cpu_seconds": round(gauges["cpu_seconds"], 3),
        "rss_bytes": int(gauges["rss_bytes"]),
    }


def counters_page(figures: ServiceFigures, *, now: float) -> dict[str, Any]:
    """
    The raw monotonic counters of the whole service: Squid's C{counters}
    names for the totals, then squeak's breakdowns.
    """
    requests = figures.total_requests
    hits, hit_bytes = figures.hits()
    errors = sum(
        count for (_, _, klass), (count, _) in figures.requests.items() if klass in ("4xx", "5xx")
    )
    scalars = figures.scalars
    tiers = figures.hits_by_tier()
    cumulative = 0
    buckets: dict[str, int] = {}
    for bound, count in zip([*map(str, DURATION_BUCKETS), "+Inf"], figures.durations, strict=True):
        cumulative += count
        buckets[bound] = cumulative
    return {
        "sample_time": _when(now),
        "client_http.requests": requests,
        "client_http.hits": hits,
        "client_http.errors": errors,
        "client_http.bytes_in": scalars["client_bytes_in"],
        "client_http.bytes_out": figures.total_bytes_out,
        "client_http.hit_bytes_out": hit_bytes,
        "client_http.hits_memory": tiers["memory"],
        "client_http.hits_disk": tiers["disk"],
        "client.connections": scalars["client_connections"],
        "tunnels.opened": scalars["tunnels_opened"],
        "tunnels.closed": scalars["tunnels_closed"],
        "collapsed_forwarding.waits": scalars["collapsed_waits"],
        "requests": [
            {"method": m, "result": r, "status_class": c, "requests": n, "bytes": b}
            for (m, r, c), (n, b) in sorted(figures.requests.items())
        ],
        "request_duration_seconds": {
            "buckets": buckets,
            "count": cumulative,
            "sum": round(figures.duration_sum, 6),
        },
        "access_denied": dict(sorted(figures.denied.items())),
        "auth_checks": dict(sorted(figures.auth_checks.items())),
    }


def objects_page(url: str, variants: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """
    What is stored for C{url}: one entry per Vary variant
    (L{squeak.cache.inventory.StoredVariant.as_dict}).
    """
    return {"url": url, "stored": bool(variants), "variants": list(variants)}


# -- rendering --------------------------------------------------------------------------


def render(page: Mapping[str, Any], *, as_json: bool) -> tuple[bytes, bytes]:
    """
    A page as a body and its content type: JSON, or Squid-style text
    (one C{name: value} line per figure, nested tables indented).
    """
    if as_json:
        return (
            json.dumps(page, indent=2, sort_keys=False).encode("utf-8") + b"\n",
            b"application/json",
        )
    lines: list[str] = []
    _text_lines(page, 0, lines)
    return ("\n".join(lines) + "\n").encode("utf-8"), b"text/plain; charset=utf-8"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else f"{value:.0f}"
    return str(value)


def _text_lines(value: Any, depth: int, lines: list[str]) -> None:
    indent = "\t" * depth
    if isinstance(value, Mapping):
        if not value:
            lines.append(f"{indent}(none)")
        for name, item in value.items():
            if isinstance(item, Mapping | list):
                lines.append(f"{indent}{name}:")
                _text_lines(item, depth + 1, lines)
            else:
                lines.append(f"{indent}{name}: {_scalar(item)}")
    elif isinstance(value, list):
        if not value:
            lines.append(f"{indent}(none)")
        for item in value:
            if isinstance(item, Mapping) and not any(
                isinstance(v, Mapping | list) for v in item.values()
            ):
                # A row of a table: one line.
                lines.append(indent + " ".join(f"{k}={_scalar(v)}" for k, v in item.items()))
            elif isinstance(item, Mapping):
                _text_lines(item, depth, lines)
                lines.append("")
            else:
                lines.append(f"{indent}{_scalar(item)}")
