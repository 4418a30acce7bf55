# -*- test-case-name: tests.test_accel_config -*-
"""
The accelerator's configuration: C{[[accel]]} listeners, C{[accel_site.NAME]}
sites and C{[accel_pool.NAME]} origin pools, read into frozen dataclasses.

The smallest form is one C{[[accel]]} entry::

    [[accel]]
    http_port = ["127.0.0.1:8080"]
    site = "app.example"
    origins = ["127.0.0.1:9000", "127.0.0.1:9001"]

which makes a site C{app.example} whose every path goes to a pool of the
same name (round-robin, passive health checks).  Richer forms name their
sites and pools in their own tables, as Squid keeps C{http_port ... accel}
apart from C{cache_peer ... originserver}, and nginx its C{server} blocks
apart from its C{upstream} blocks.

Each key is declared with L{squeak.config_values._setting}, so the same
schema drives parsing, the documentation test and the error messages.
Problems are raised as L{AccelConfigError} (key, problem, line), which
L{squeak.config} turns into its C{ConfigError} naming the file.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

from squeak.access.acl import Acl
from squeak.access.rules import Action, RuleError, RuleList, compile_rules
from squeak.config_values import (
    InvalidValueError,
    ListenAddress,
    _boolean,
    _duration,
    _find_line,
    _integer,
    _one_of,
    _optional_listen_addresses,
    _Parse,
    _positive_duration,
    _readable_file,
    _setting,
    _show,
    _size,
    _suggest,
    parse_listen_address,
)

__all__ = [
    "ACCEL_TABLES",
    "BALANCES",
    "FORWARDED_STYLES",
    "AccelConfig",
    "AccelConfigError",
    "AccelListener",
    "AccelPool",
    "AccelSite",
    "CertificateFiles",
    "OriginServer",
    "Route",
    "describe",
    "parse_accel",
]

#: The top-level TOML names this module reads.
ACCEL_TABLES = ("accel", "accel_site", "accel_pool")

#: How a pool picks a server (nginx's balancing methods; the hashes are
#: weighted rendezvous hashing, consistent when servers come and go).
BALANCES = ("round-robin", "least-connections", "hash-client", "hash-url", "first-up")

#: How the client's address, scheme and Host are told to the application.
FORWARDED_STYLES = ("x-forwarded", "forwarded", "both", "none")


class AccelConfigError(Exception):
    """
    An accelerator setting cannot be used.

    @ivar key: The dotted key, e.g. C{accel_pool.app.origins}.
    @ivar problem: What is wrong.
    @ivar line: The line in the file, when found.
    """

    def __init__(self, key: str, problem: str, line: int | None = None) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem, self.line = key, problem, line


@dataclass(frozen=True, slots=True)
class OriginServer:
    """
    One application server of a pool.

    @ivar host: Its address or name.
    @ivar port: Its port.
    @ivar weight: Its share of the requests (at least 1).
    """

    host: str
    port: int
    weight: int = 1

    @property
    def name(self) -> str:
        """C{host:port}, unique in its pool: what logs and pages show."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"


@dataclass(frozen=True, slots=True)
class Route:
    """
    Where requests under one path prefix go.

    @ivar prefix: The path prefix, starting with C{/} (C{/static/}).
    @ivar pool: The pool that answers them.
    @ivar rewrite: What replaces the prefix in the path sent to the
        application, or L{None} to send the path as it came.
    """

    prefix: str
    pool: str
    rewrite: str | None = None


def _origin_servers(value: object, base_dir: str) -> tuple[OriginServer, ...]:
    """
    Servers as C{"host:port"} strings or C{{address = "host:port", weight =
    2}} tables.
    """
    if not isinstance(value, list) or not value:
        raise InvalidValueError(
            f'expected an array of servers like ["127.0.0.1:9000"], got {_show(value)}'
        )
    servers: list[OriginServer] = []
    for item in value:
        weight = 1
        if isinstance(item, dict):
            unknown = set(item) - {"address", "weight"}
            if unknown:
                raise InvalidValueError(
                    f"unknown key {sorted(unknown)[0]!r} in a server (address, weight)"
                )
            address, weight = item.get("address"), item.get("weight", 1)
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
                raise InvalidValueError(
                    f"a server's weight must be 1 or more, got {_show(weight)}"
                )
        else:
            address = item
        if not isinstance(address, str):
            raise InvalidValueError(f'expected a server "host:port", got {_show(address)}')
        try:
            listen = parse_listen_address(address)
        except ValueError as error:
            raise InvalidValueError(str(error), element=address) from None
        server = OriginServer(listen.host, listen.port, weight)
        if any(other.name == server.name for other in servers):
            raise InvalidValueError(f"{server.name} is listed twice", element=address)
        servers.append(server)
    return tuple(servers)


def _optional_origin_servers(value: object, base_dir: str) -> tuple[OriginServer, ...]:
    if value == []:
        return ()
    return _origin_servers(value, base_dir)


def _names(value: object, base_dir: str) -> tuple[str, ...]:
    """Host names, lower-cased."""
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InvalidValueError(
            f'expected an array of names like ["app.example"], got {_show(value)}'
        )
    return tuple(item.lower().rstrip(".") for item in cast(list[str], value))


def _name(value: object, base_dir: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidValueError(f"expected a name, got {_show(value)}")
    return value.lower().rstrip(".")


def _text(value: object, base_dir: str) -> str:
    if not isinstance(value, str):
        raise InvalidValueError(f"expected a string, got {_show(value)}")
    return value


def _path(value: object, base_dir: str) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or any(ch.isspace() or ord(ch) < 0x21 for ch in value)
    ):
        raise InvalidValueError(f'expected a path starting with "/", got {_show(value)}')
    return value


def _optional_path(value: object, base_dir: str) -> str:
    return "" if value == "" else _path(value, base_dir)


def _routes(value: object, base_dir: str) -> tuple[Route, ...]:
    """
    C{[{prefix = "/static/", pool = "static", strip = true}, ...]}: C{strip}
    removes the prefix (the application sees C{/rest}); C{rewrite} puts
    another in its place.
    """
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidValueError(
            'expected an array of tables like [{prefix = "/static/", pool = "static"}], '
            f"got {_show(value)}"
        )
    routes: list[Route] = []
    for item in cast(list[dict[str, object]], value):
        unknown = set(item) - {"prefix", "pool", "strip", "rewrite"}
        if unknown:
            raise InvalidValueError(
                f"unknown key {sorted(unknown)[0]!r} in a route (prefix, pool, strip, rewrite)"
            )
        prefix = _path(item.get("prefix"), base_dir)
        pool = _name(item.get("pool"), base_dir)
        strip = _boolean(item.get("strip", False), base_dir)
        given = item.get("rewrite")
        if strip and given is not None:
            raise InvalidValueError(f"route {prefix}: strip and rewrite cannot both be given")
        rewrite: str | None = None
        if given is not None:
            rewrite = _path(given, base_dir)
        elif strip:
            rewrite = "/" if prefix.endswith("/") else ""
        if any(route.prefix == prefix for route in routes):
            raise InvalidValueError(f"route {prefix} is given twice", element=prefix)
        routes.append(Route(prefix, pool, rewrite))
    return tuple(routes)


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """
    One certificate chain and its key (PEM), for the names the certificate
    covers (chosen by SNI).
    """

    certificate: str
    key: str


def _certificates(value: object, base_dir: str) -> tuple[CertificateFiles, ...]:
    """C{[{certificate = "app.pem", key = "app.key"}, ...]}, the first the default."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidValueError(
            'expected an array of tables like [{certificate = "app.pem", key = "app.key"}], '
            f"got {_show(value)}"
        )
    found: list[CertificateFiles] = []
    for item in cast(list[dict[str, object]], value):
        unknown = set(item) - {"certificate", "key"}
        if unknown or "certificate" not in item or "key" not in item:
            raise InvalidValueError("each certificate needs exactly: certificate, key")
        certificate = _readable_file(item["certificate"], base_dir)
        key = _readable_file(item["key"], base_dir)
        if not certificate or not key:
            raise InvalidValueError("a certificate and its key must both be given")
        found.append(CertificateFiles(certificate, key))
    return tuple(found)


def _rule_texts(value: object, base_dir: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidValueError(
            f'expected an array of rules like ["allow all"], got {_show(value)}'
        )
    return tuple(cast(list[str], value))


@dataclass(frozen=True, slots=True)
class AccelListener:
    """
    One C{[[accel]]} entry: listeners taking origin-form requests for the
    sites it serves.
    """

    http_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Plain HTTP listeners of this accelerator entry.",
        parse=_optional_listen_addresses,
    )
    https_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="TLS listeners of this accelerator entry (certificates chosen by SNI).",
        parse=_optional_listen_addresses,
    )
    certificates: tuple[CertificateFiles, ...] = _setting(
        default=(),
        kind="array of tables",
        doc='For https_port: [{certificate = "app.pem", key = "app.key"}, ...], each '
        "served to the names it covers (SNI), the first to clients naming none.",
        parse=_certificates,
    )
    site: str = _setting(
        default="",
        kind="string",
        doc="The site (public host name) this entry serves; also the one a Host naming "
        "no site here goes to when fallback is true.",
        parse=_name,
    )
    sites: tuple[str, ...] = _setting(
        default=(),
        kind="array of strings",
        doc="Other [accel_site] names served on these listeners; empty for every site.",
        parse=_names,
    )
    fallback: bool = _setting(
        default=False,
        kind="boolean",
        doc="Whether a request whose Host names no site served here goes to site "
        "(otherwise it gets a 421 page).",
        parse=_boolean,
    )
    origins: tuple[OriginServer, ...] = _setting(
        default=(),
        kind="array of servers",
        doc="Shorthand: the servers of a pool named after site, serving all of it "
        '("host:port" or {address, weight}).',
        parse=_optional_origin_servers,
    )
    forward_proxy: bool = _setting(
        default=False,
        kind="boolean",
        doc="Whether absolute-URI requests and CONNECT are served here as on a forward "
        "proxy port (http_access rules apply); otherwise they are refused.",
        parse=_boolean,
    )


@dataclass(frozen=True, slots=True)
class AccelPool:
    """
    One C{[accel_pool.NAME]} table: application servers answering as one.
    """

    origins: tuple[OriginServer, ...] = _setting(
        default=(),
        kind="array of servers",
        doc='The servers: "host:port" or {address = "host:port", weight = 2}.',
        parse=_origin_servers,
    )
    balance: str = _setting(
        default="round-robin",
        kind="string",
        doc="How a server is chosen: " + ", ".join(BALANCES) + ".",
        parse=_one_of(BALANCES),
    )
    max_fails: int = _setting(
        default=1,
        kind="integer",
        doc="Failed attempts within fail_timeout that take a server out.",
        parse=_integer(1),
    )
    fail_timeout: float = _setting(
        default=10.0,
        kind="duration",
        doc="The window failures are counted in, and how long a failed server stays out "
        "(without health checks).",
        parse=_positive_duration,
    )
    answer_timeout: float = _setting(
        default=0.0,
        kind="duration",
        doc="How long a server may take to start answering an idempotent request before "
        'it counts as failed and the next server is tried ("0s": only timeouts.read).',
        parse=_duration,
    )
    check_path: str = _setting(
        default="",
        kind="string",
        doc='A path probed on each server every check_interval ("" for no active checks).',
        parse=_optional_path,
    )
    check_interval: float = _setting(
        default=5.0, kind="duration", doc="Seconds between probes.", parse=_positive_duration
    )
    check_timeout: float = _setting(
        default=2.0, kind="duration", doc="How long a probe may take.", parse=_positive_duration
    )
    check_status: int = _setting(
        default=200,
        kind="integer",
        doc="The status a healthy server answers a probe with.",
        parse=_integer(100),
    )
    host: str = _setting(
        default="",
        kind="string",
        doc='The Host sent to these servers ("" keeps the one the client sent).',
        parse=_text,
    )


@dataclass(frozen=True, slots=True)
class AccelSite:
    """
    One C{[accel_site.NAME]} table: a public host name and how it is served.

    @ivar name: The table's name, the site's main host name.
    @ivar rules: The compiled C{http_access} rules (default allow).
    """

    aliases: tuple[str, ...] = _setting(
        default=(), kind="array of strings", doc="Other Host names of this site.", parse=_names
    )
    pool: str = _setting(
        default="",
        kind="string",
        doc="The pool for paths no route matches.",
        parse=_text,
    )
    routes: tuple[Route, ...] = _setting(
        default=(),
        kind="array of tables",
        doc='Path prefixes sent elsewhere: {prefix = "/static/", pool = "static"}, with '
        'strip = true to remove the prefix or rewrite = "/other/" to replace it.',
        parse=_routes,
    )
    http_access: tuple[str, ...] = _setting(
        default=(),
        kind="array of rules",
        doc='allow/deny rules over [acl] names ("deny blocked", "allow all"); the site is '
        "open to everyone when empty.",
        parse=_rule_texts,
    )
    forwarded: str = _setting(
        default="x-forwarded",
        kind="string",
        doc="How the client is told to the application: " + ", ".join(FORWARDED_STYLES) + ".",
        parse=_one_of(FORWARDED_STYLES),
    )
    rewrite_redirects: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether Location and Refresh naming a server are rewritten to the public URL.",
        parse=_boolean,
    )
    buffering: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether responses are read from the application as fast as it sends them, "
        "whatever the client's speed.",
        parse=_boolean,
    )
    buffer_memory: int = _setting(
        default=1 << 20,
        kind="size",
        doc="Response bytes held in memory per request before the rest is spooled to a file.",
        parse=_size(0),
    )
    buffer_file: int = _setting(
        default=1 << 30,
        kind="size",
        doc="Most response bytes spooled per request; beyond, the application is read at "
        "the client's pace.",
        parse=_size(0),
    )
    default_ttl: float = _setting(
        default=0.0,
        kind="duration",
        doc="Freshness of cacheable responses that give none (nginx proxy_cache_valid); "
        "0 for the cache's usual rules.",
        parse=_duration,
    )
    surrogate_control: bool = _setting(
        default=False,
        kind="boolean",
        doc="Whether Surrogate-Control max-age sets this cache's freshness (the field "
        "is removed from responses).",
        parse=_boolean,
    )
    cdn_cache_control: str = _setting(
        default="",
        kind="string",
        doc="A targeted cache-control field this cache obeys over Cache-Control (RFC 9213), "
        'e.g. "CDN-Cache-Control"; "" for none.',
        parse=_text,
    )
    stale_while_updating: float = _setting(
        default=0.0,
        kind="duration",
        doc="How long a stale response is served while it is refreshed.",
        parse=_duration,
    )
    stale_on_error: float = _setting(
        default=0.0,
        kind="duration",
        doc="How long a stale response is served when the application fails.",
        parse=_duration,
    )
    name: str = field(default="", metadata={"internal": True})
    rules: RuleList | None = field(default=None, metadata={"internal": True}, compare=False)


@dataclass(frozen=True, slots=True)
class AccelConfig:
    """
    Every accelerator entry, site and pool; empty when none is configured.
    """

    listeners: tuple[AccelListener, ...] = ()
    sites: Mapping[str, AccelSite] = field(default_factory=dict)
    pools: Mapping[str, AccelPool] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.listeners)


def _build(
    cls: type, table: str, values: object, text: str, line_table: str, base_dir: str = ""
) -> Any:
    """One table of C{cls}'s schema, errors naming C{table}."""
    if not isinstance(values, dict):
        raise AccelConfigError(table, f"expected a table, got {_show(values)}")
    schema = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        spec = schema.get(key)
        if spec is None:
            raise AccelConfigError(
                f"{table}.{key}",
                f"unknown key ({_suggest(key, list(schema))})",
                _find_line(text, line_table, key),
            )
        parse = cast(_Parse, spec.metadata["parse"])
        try:
            parsed[key] = parse(value, base_dir)
        except InvalidValueError as error:
            raise AccelConfigError(
                f"{table}.{key}", str(error), _find_line(text, line_table, key, error.element)
            ) from None
    return cls(**parsed)


def parse_accel(
    document: Mapping[str, object], text: str, acls: Mapping[str, Acl], base_dir: str = ""
) -> AccelConfig:
    """
    Read the accelerator tables of a parsed TOML document.

    @param document: The whole document (only L{ACCEL_TABLES} are read).
    @param text: Its source, to find lines.
    @param acls: The compiled ACLs, for the sites' C{http_access} rules.
    @param base_dir: What relative certificate paths are relative to.
    @raise AccelConfigError: For the first problem.
    """
    raw_listeners = document.get("accel", [])
    if not isinstance(raw_listeners, list):
        raise AccelConfigError(
            "accel", "expected [[accel]] entries (an array of tables)", _find_line(text, "accel")
        )
    pools: dict[str, AccelPool] = {}
    for name, values in _tables(document, "accel_pool", text).items():
        pool = _build(AccelPool, f"accel_pool.{name}", values, text, f"accel_pool.{name}")
        if not pool.origins:
            raise AccelConfigError(
                f"accel_pool.{name}.origins",
                "a pool needs at least one server",
                _find_line(text, f"accel_pool.{name}"),
            )
        pools[name] = pool
    sites: dict[str, AccelSite] = {}
    for name, values in _tables(document, "accel_site", text).items():
        site = _build(AccelSite, f"accel_site.{name}", values, text, f"accel_site.{name}")
        sites[name.lower().rstrip(".")] = replace(site, name=name.lower().rstrip("."))
    listeners: list[AccelListener] = []
    for number, values in enumerate(raw_listeners):
        table = f"accel[{number}]"
        listener = _build(AccelListener, table, values, text, "accel", base_dir)
        if not listener.http_port and not listener.https_port:
            raise AccelConfigError(
                f"{table}.http_port",
                'an [[accel]] entry needs a listener, like http_port = ["127.0.0.1:8080"]',
                _find_line(text, "accel"),
            )
        if listener.https_port and not listener.certificates:
            raise AccelConfigError(
                f"{table}.certificates",
                "https_port needs certificates = [{certificate = ..., key = ...}]",
                _find_line(text, "accel", "https_port"),
            )
        if not listener.site:
            raise AccelConfigError(
                f"{table}.site",
                'an [[accel]] entry needs the site it serves, like site = "app.example"',
                _find_line(text, "accel"),
            )
        if listener.origins:
            if listener.site in sites or listener.site in pools:
                raise AccelConfigError(
                    f"{table}.origins",
                    f"{listener.site} has its own [accel_site]/[accel_pool] table: "
                    "list its servers there",
                    _find_line(text, "accel", "origins"),
                )
            pools[listener.site] = AccelPool(origins=listener.origins)
            sites[listener.site] = AccelSite(name=listener.site, pool=listener.site)
        listeners.append(listener)
    _check_references(listeners, sites, pools, text)
    compiled = {name: _compile_rules(site, acls, text) for name, site in sites.items()}
    return AccelConfig(tuple(listeners), compiled, pools)


def _tables(document: Mapping[str, object], name: str, text: str) -> dict[str, object]:
    values = document.get(name, {})
    if not isinstance(values, dict):
        raise AccelConfigError(
            name, f"expected tables [{name}.NAME], got {_show(values)}", _find_line(text, "", name)
        )
    return cast(dict[str, object], values)


def _check_references(
    listeners: list[AccelListener],
    sites: dict[str, AccelSite],
    pools: dict[str, AccelPool],
    text: str,
) -> None:
    """Every site, pool and host name referred to exists, once."""
    for number, listener in enumerate(listeners):
        for wanted in (listener.site, *listener.sites):
            if wanted not in sites:
                raise AccelConfigError(
                    f"accel[{number}].site",
                    f"no site {wanted!r}: give it origins here or an [accel_site.{wanted}] "
                    f"table ({_suggest(wanted, list(sites))})",
                    _find_line(text, "accel", "site"),
                )
    seen: dict[str, str] = {}
    for name, site in sites.items():
        key = f"accel_site.{name}"
        if not site.pool and not site.routes:
            raise AccelConfigError(
                f"{key}.pool", "a site needs a pool or routes", _find_line(text, key)
            )
        for pool in (site.pool, *(route.pool for route in site.routes)):
            if pool and pool not in pools:
                raise AccelConfigError(
                    f"{key}.pool" if pool == site.pool else f"{key}.routes",
                    f"no pool {pool!r} ({_suggest(pool, list(pools))})",
                    _find_line(text, key, "pool" if pool == site.pool else "routes"),
                )
        for host in (name, *site.aliases):
            if host in seen:
                raise AccelConfigError(
                    f"{key}.aliases",
                    f"{host} is already a name of site {seen[host]}",
                    _find_line(text, key, "aliases"),
                )
            seen[host] = name


def _compile_rules(site: AccelSite, acls: Mapping[str, Acl], text: str) -> AccelSite:
    key = f"accel_site.{site.name}.http_access"
    try:
        rules = compile_rules(site.http_access, acls, Action.ALLOW)
    except RuleError as error:
        raise AccelConfigError(
            key, str(error), _find_line(text, f"accel_site.{site.name}", "http_access")
        ) from None
    for rule in rules.rules:
        for term in rule.terms:
            if term.acl.kind in ("proxy_auth", "dst"):
                raise AccelConfigError(
                    key,
                    f"{term.acl.kind} ACLs cannot be used on an accelerator site "
                    "(its clients are not proxy clients, and its destination is fixed)",
                    _find_line(text, f"accel_site.{site.name}", "http_access"),
                )
    return replace(site, rules=rules)


def describe(accel: AccelConfig) -> list[str]:
    """
    Lines for C{python -m squeak check-config}: each entry's listeners and
    sites, each site's routes, each pool's servers and health settings.
    """
    lines: list[str] = []
    for entry in accel.listeners:
        listen = [str(a) for a in entry.http_port] + [f"{a} (TLS)" for a in entry.https_port]
        served = entry.sites or tuple(accel.sites)
        extra = [name for name in served if name != entry.site]
        text = f"{', '.join(listen)} -> {entry.site}"
        if extra:
            text += f" and {', '.join(extra)}"
        if entry.fallback:
            text += " (any other Host: " + entry.site + ")"
        if entry.forward_proxy:
            text += " (also a forward proxy)"
        lines.append(f"accel:       {text}")
    for name, site in accel.sites.items():
        routes = [
            f"{route.prefix} -> {route.pool}"
            + ("" if route.rewrite is None else f" (as {route.rewrite or '/'})")
            for route in site.routes
        ]
        if site.pool:
            routes.append(f"otherwise -> {site.pool}")
        aliases = f" ({', '.join(site.aliases)})" if site.aliases else ""
        lines.append(f"accel site:  {name}{aliases}: {'; '.join(routes)}")
    for name, pool in accel.pools.items():
        servers = ", ".join(
            server.name + (f" weight {server.weight}" if server.weight != 1 else "")
            for server in pool.origins
        )
        health = f"max_fails {pool.max_fails} in {pool.fail_timeout:g}s"
        if pool.answer_timeout:
            health += f", next server after {pool.answer_timeout:g}s without an answer"
        if pool.check_path:
            health += f", checks {pool.check_path} every {pool.check_interval:g}s"
        lines.append(f"accel pool:  {name}: {pool.balance} {servers} ({health})")
    return lines
