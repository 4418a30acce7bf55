# -*- test-case-name: tests.test_config -*-
"""Configuration: TOML in, frozen dataclasses out.

One frozen, slotted dataclass per TOML table holds the values ready to use:
durations as float seconds, sizes as int bytes, networks as L{ipaddress}
objects, listen addresses as L{ListenAddress}, paths resolved against the
configuration file's directory. C{Config()} is the embedded, safe default used
when no file is given: listen on loopback only and serve loopback clients only.

Each field carries C{metadata={"doc": ..., "kind": ..., "parse": ...}}, the one
schema from which the loader validates and against which
C{docs/configuration.md} and C{etc/squeak.toml} are tested (as Squid's
cf.data.pre and mitmproxy's C{add_option} do).

How each value is read is in L{squeak.config_values}; this module holds the
schema and the loader. Every problem is a L{ConfigError} whose C{str()} is the
one line shown to the operator: the file, the key and, if found, the line.

This module is pure: it imports no Twisted, never reads the clock and never
touches the network (C{socket.gethostname} only supplies a default name).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from squeak.accel.config import ACCEL_TABLES, AccelConfig, AccelConfigError, parse_accel
from squeak.access.acl import AclError, builtin_acls, compile_acls
from squeak.access.rules import (
    DEFAULT_HTTP_ACCESS,
    AccessPolicy,
    RuleError,
    compile_policy,
    default_policy,
)
from squeak.config_values import (
    InvalidValueError,
    ListenAddress,
    RefreshPattern,
    _account_name,
    _boolean,
    _directory,
    _duration,
    _find_line,
    _fraction,
    _integer,
    _listen_addresses,
    _log_format,
    _log_path,
    _networks,
    _one_of,
    _optional_listen_addresses,
    _Parse,
    _positive_duration,
    _readable_file,
    _realm,
    _refresh_patterns,
    _rules,
    _setting,
    _show,
    _size,
    _suggest,
    _syslog_facility,
    _syslog_tag,
    _upgrade_protocols,
    _visible_hostname,
    _workers,
    default_cache_dir,
    default_visible_hostname,
    parse_duration,
    parse_listen_address,
    parse_size,
)
from squeak.errorpages import ErrorsConfig
from squeak.logline import PRESET_NAMES
from squeak.pac import PacConfig, pac_problem
from squeak.proxyheader import ProxyProtocolConfig, proxy_protocol_problem
from squeak.stats.settings import ManagerConfig, MetricsConfig
from squeak.upstream.peers import (
    HIERARCHY_TABLE,
    PEER_TABLE,
    HierarchyConfig,
    PeerConfigError,
    parse_hierarchy,
)
from squeak.values import IPNetwork, parse_network

__all__ = [
    "ACL_TABLE",
    "TABLES",
    "AccessConfig",
    "AccessLogConfig",
    "AuthConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "IPNetwork",
    "LimitsConfig",
    "ListenAddress",
    "ProxyConfig",
    "RefreshPattern",
    "TimeoutsConfig",
    "UpstreamConfig",
    "default_cache_dir",
    "default_visible_hostname",
    "load_config",
    "load_config_and_text",
    "parse_config",
    "parse_duration",
    "parse_listen_address",
    "parse_network",
    "parse_size",
]


#: Forwarded-for modes, as Squid's C{forwarded_for} directive spells them.
FORWARDED_FOR_MODES = ("on", "off", "delete", "transparent")

#: Access log presets; the other formats are Squid logformat strings.
ACCESS_LOG_FORMATS = PRESET_NAMES


class ConfigError(Exception):
    """
    A configuration cannot be used. C{str(self)} is the one line shown to the
    operator, e.g. C{etc/squeak.toml:12: timeouts.connect: expected a
    duration like "30s" or "2min", got "abc"}.

    @ivar path: The configuration file, as given.
    @ivar key: The dotted key (C{"timeouts.connect"}) or table name the
        problem is about, or L{None} for problems with the file as a whole.
    @ivar problem: What is wrong, without the location.
    @ivar line: The 1-based line in the file, or L{None} where it is unknown.
    """

    def __init__(self, path: str, key: str | None, problem: str, line: int | None = None) -> None:
        self.path, self.key, self.problem, self.line = path, key, problem, line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


# --- The schema: one dataclass per table --------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """
    The C{[proxy]} table: where to listen and how to identify the proxy.

    @ivar http_port: Addresses to accept proxy requests on.
    @ivar visible_hostname: The proxy's name in C{Via} and error pages, and
        the name looked for to detect forwarding loops (RFC 9110 §7.6.3).
    @ivar forwarded_for: What to do with C{X-Forwarded-For}.
    @ivar via: Whether to add a C{Via} header (RFC 9110 §7.6.3).
    @ivar upgrade_protocols: Lower-cased protocols an C{Upgrade} may switch to.
    @ivar workers: How many worker processes serve (docs/operations.md).
    @ivar reuseport: Whether each worker gets its own C{SO_REUSEPORT} socket.
    @ivar user: The account to switch to after binding, or C{""}.
    @ivar group: The group to switch to after binding, or C{""}.
    @ivar worker_header: Whether responses name the worker's PID.
    """

    http_port: tuple[ListenAddress, ...] = _setting(
        default=(ListenAddress("127.0.0.1", 3128),),
        kind="array of addresses",
        doc="Addresses to accept proxy requests on, each a literal IP address and port.",
        parse=_listen_addresses,
    )
    visible_hostname: str = _setting(
        factory=default_visible_hostname,
        default_doc="the machine's host name",
        kind="string",
        doc="The proxy's name in Via headers and error pages; also used to detect loops.",
        parse=_visible_hostname,
    )
    forwarded_for: str = _setting(
        default="on",
        kind="string: on | off | delete | transparent",
        doc="X-Forwarded-For: on appends the client address, off appends 'unknown', "
        "delete removes the header, transparent passes it unchanged.",
        parse=_one_of(FORWARDED_FOR_MODES),
    )
    via: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether to add a Via header to requests and responses (RFC 9110 §7.6.3).",
        parse=_boolean,
    )
    upgrade_protocols: tuple[str, ...] = _setting(
        default=("websocket",),
        kind="array of protocol names",
        doc="Protocols a request's Upgrade may ask for (RFC 9110 §7.8); others are stripped.",
        parse=_upgrade_protocols,
    )
    workers: int = _setting(
        default=1,
        kind='integer or "auto"',
        doc="How many worker processes serve requests; auto is one per CPU.",
        parse=_workers,
    )
    reuseport: bool = _setting(
        default=False,
        kind="boolean",
        doc="With workers > 1, give each worker its own accept queue (SO_REUSEPORT).",
        parse=_boolean,
    )
    user: str = _setting(
        default="",
        kind="string",
        doc="The user to run as after binding the listeners when started as root.",
        parse=_account_name,
    )
    group: str = _setting(
        default="",
        kind="string",
        doc="The group to run as after binding; defaults to the user's own group.",
        parse=_account_name,
    )
    worker_header: bool = _setting(
        default=False,
        kind="boolean",
        doc="Debugging: add X-Squeak-Worker: PID to every response.",
        parse=_boolean,
    )


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """
    The C{[tls]} table: the TLS listener (an HTTPS proxy port, Squid's
    C{https_port}), where clients speak TLS to squeak so that nothing they
    send, Basic credentials included, crosses the LAN in clear.

    @ivar https_port: Addresses of TLS listeners; empty for none.
    @ivar certificate: PEM certificate chain presented to clients.
    @ivar key: PEM private key of that certificate.
    """

    https_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Addresses to accept TLS connections from clients on (an HTTPS proxy); "
        "empty for none. Needs certificate and key.",
        parse=_optional_listen_addresses,
    )
    certificate: str = _setting(
        default="",
        kind="path",
        doc="PEM file with the certificate (and chain) the TLS listener presents.",
        parse=_readable_file,
    )
    key: str = _setting(
        default="",
        kind="path",
        doc="PEM file with the private key of the TLS listener's certificate.",
        parse=_readable_file,
    )


@dataclass(frozen=True, slots=True)
class InterceptConfig:
    """
    The C{[intercept]} table: transparent (intercepting) listeners for a
    gateway whose firewall redirects the LAN's port 80 and 443 traffic into
    squeak (docs/transparent.md).

    @ivar http_port: Listeners for redirected plain HTTP (origin-form
        requests; the destination comes from the socket, Host is verified).
    @ivar https_port: Listeners for redirected TLS, spliced by SNI without
        decryption.
    """

    http_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Listeners for firewall-redirected HTTP (port 80) traffic; empty for none.",
        parse=_optional_listen_addresses,
    )
    https_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Listeners for firewall-redirected TLS (port 443) traffic, spliced by SNI; "
        "empty for none.",
        parse=_optional_listen_addresses,
    )


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    """
    The C{[timeouts]} table, all in seconds.

    @ivar connect: Limit on establishing a connection to an origin.
    @ivar read: Limit on silence from an origin while awaiting a response.
    @ivar client_idle: Limit on an idle client connection between requests.
    @ivar request_head: Limit on receiving one request head, from its first
        byte.
    @ivar server_idle: Limit on keeping an idle origin connection pooled.
    @ivar tunnel_idle: Limit on a CONNECT tunnel relaying nothing.
    @ivar shutdown_lifetime: Limit on finishing the work in flight when the
        proxy stops or a reload retires old workers (Squid's name).
    """

    connect: float = _setting(
        default=30.0,
        kind="duration",
        doc="How long to wait for a connection to an origin server.",
        parse=_positive_duration,
    )
    read: float = _setting(
        default=300.0,
        kind="duration",
        doc="How long an origin server may stay silent while a response is awaited.",
        parse=_positive_duration,
    )
    client_idle: float = _setting(
        default=120.0,
        kind="duration",
        doc="How long a client connection may stay idle between requests.",
        parse=_positive_duration,
    )
    request_head: float = _setting(
        default=60.0,
        kind="duration",
        doc="How long a client may take to send a whole request head, from its first byte.",
        parse=_positive_duration,
    )
    server_idle: float = _setting(
        default=60.0,
        kind="duration",
        doc="How long an idle connection to an origin server is kept for reuse.",
        parse=_positive_duration,
    )
    tunnel_idle: float = _setting(
        default=900.0,
        kind="duration",
        doc="How long a CONNECT tunnel may relay nothing in either direction before it is closed.",
        parse=_positive_duration,
    )
    shutdown_lifetime: float = _setting(
        default=30.0,
        kind="duration",
        doc="How long requests and tunnels in flight may take to finish when squeak "
        "stops or reloads.",
        parse=_duration,
    )


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """
    The C{[limits]} table: bounds on what a client may send.

    @ivar request_header_size: Most bytes in a request's header section.
    @ivar request_headers: Most header fields in a request.
    @ivar request_body_size: Most bytes in a request body.
    """

    request_header_size: int = _setting(
        default=65536,
        kind="size",
        doc="The largest request header section accepted (request line included).",
        parse=_size(minimum=1),
    )
    request_headers: int = _setting(
        default=100,
        kind="integer",
        doc="The most header fields accepted in one request.",
        parse=_integer(minimum=1),
    )
    request_body_size: int = _setting(
        default=1024**3,
        kind="size",
        doc="The largest request body accepted.",
        parse=_size(minimum=0),
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """
    The C{[upstream]} table: connections to origin servers.

    @ivar max_idle_per_host: Most idle pooled connections per origin.
    @ivar ca_file: Trusted CAs for https origins; C{""} for the system's.
    """

    max_idle_per_host: int = _setting(
        default=32,
        kind="integer",
        doc="The most idle connections kept open per origin server; 0 disables reuse.",
        parse=_integer(minimum=0),
    )
    ca_file: str = _setting(
        default="",
        kind="path",
        doc="PEM file of the certificate authorities trusted for https:// origins; "
        '"" trusts the system\'s CA bundle.',
        parse=_readable_file,
    )


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """
    The C{[access]} table: who may use the proxy for what, and what may be
    cached, as ordered rules over the ACLs of C{[acl]} (docs/access.md).
    The compiled rules are L{Config.policy}.

    @ivar http_access: The rules as written, first match wins, default deny.
    @ivar cache: The rules deciding what may be stored, default allow.
    """

    http_access: tuple[str, ...] = _setting(
        default=DEFAULT_HTTP_ACCESS,
        kind="array of rules",
        doc='Who may use the proxy for what: rules like "allow localnet" or '
        '"deny CONNECT !SSL_ports"; the first that matches decides; none matching denies.',
        parse=lambda value, base_dir: _rules(value, "allow localnet"),
    )
    cache: tuple[str, ...] = _setting(
        default=(),
        kind="array of rules",
        doc='What may be cached: rules like "deny nocache_domains"; none matching allows.',
        parse=lambda value, base_dir: _rules(value, "deny nocache_domains"),
    )


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """
    The C{[auth]} table: proxy authentication (C{Proxy-Authorization: Basic}).

    @ivar htpasswd: The resolved path of the htpasswd file, or C{""} for no
        authentication (then no rule may use a C{proxy_auth} ACL).
    @ivar realm: The realm named in C{Proxy-Authenticate}.
    @ivar credentials_ttl: How long verified credentials are remembered, in
        seconds.
    """

    htpasswd: str = _setting(
        default="",
        kind="path",
        doc='The htpasswd file users are checked against; "" for no authentication.',
        parse=_readable_file,
    )
    realm: str = _setting(
        default="squeak",
        kind="string",
        doc='The realm in the 407 answer\'s Proxy-Authenticate: Basic realm="...".',
        parse=_realm,
    )
    credentials_ttl: float = _setting(
        default=3600.0,
        kind="duration",
        doc="How long verified credentials are remembered before the password is checked again.",
        parse=_positive_duration,
    )


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    """
    The C{[access_log]} table.

    @ivar path: An absolute file path, C{"-"} for standard output,
        C{"syslog"} for the local syslog daemon, or C{""} for no access log.
    @ivar format: One of L{ACCESS_LOG_FORMATS} or a Squid logformat string.
    @ivar syslog_facility: Squid's C{facility.priority} when logging to
        syslog.
    @ivar syslog_tag: The program name syslog files the lines under.
    """

    path: str = _setting(
        default="-",
        kind="path",
        doc='Where to write one line per request: a file, "-" for standard output, '
        '"syslog" for the local syslog daemon, "" for none.',
        parse=_log_path,
    )
    format: str = _setting(
        default="squid",
        kind="string: squid | common | combined | referrer | useragent | %codes",
        doc="The access log line format: a preset (Squid's native format, Apache "
        "common/combined, Squid's referrer/useragent) or a Squid logformat string.",
        parse=_log_format,
    )
    syslog_facility: str = _setting(
        default="local4.info",
        kind="string: facility[.priority]",
        doc='The syslog facility and priority when path = "syslog", as Squid\'s '
        "access_log syslog:facility.priority.",
        parse=_syslog_facility,
    )
    syslog_tag: str = _setting(
        default="squeak",
        kind="string",
        doc='The program name syslog files the lines under when path = "syslog".',
        parse=_syslog_tag,
    )


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """
    The C{[cache]} table: the HTTP cache (docs/cache.md).

    @ivar dir: The absolute path of the disk cache directory.
    @ivar enabled: Whether responses are cached at all.
    @ivar size: The disk cache's size limit in bytes; least recently used
        entries are evicted beyond it.
    @ivar memory_size: The memory tier's size limit in bytes.
    @ivar maximum_object_size_in_memory: The largest body kept in memory.
    @ivar maximum_object_size: The largest body stored.
    @ivar minimum_object_size: The smallest body stored.
    @ivar heuristic_fraction: The fraction of the time since
        C{Last-Modified} used as heuristic freshness (RFC 9111 §4.2.2).
    @ivar heuristic_max: The cap on heuristic freshness, in seconds.
    @ivar max_stale: The most seconds a stored response may be stale to be
        served when its origin cannot be reached or fails (RFC 9111
        §4.2.4; Squid's C{max_stale}).
    @ivar refresh_pattern: Heuristic freshness rules by URI, tried in order.
    @ivar purge_from: Client networks allowed to use the PURGE method.
    """

    dir: str = _setting(
        factory=default_cache_dir,
        default_doc="$XDG_CACHE_HOME/squeak, or ~/.cache/squeak",
        kind="path",
        doc="The directory holding the disk cache; created when the proxy starts.",
        parse=_directory,
    )
    enabled: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether to cache responses at all.",
        parse=_boolean,
    )
    size: int = _setting(
        default=1024**3,
        kind="size",
        doc="The disk cache's size limit; least recently used entries are evicted beyond it.",
        parse=_size(minimum=0),
    )
    memory_size: int = _setting(
        default=64 * 1024**2,
        kind="size",
        doc="The memory tier's size limit for small hot objects; 0 disables it.",
        parse=_size(minimum=0),
    )
    maximum_object_size_in_memory: int = _setting(
        default=512 * 1024,
        kind="size",
        doc="The largest body kept in the memory tier.",
        parse=_size(minimum=0),
    )
    maximum_object_size: int = _setting(
        default=256 * 1024**2,
        kind="size",
        doc="The largest body stored; larger responses are relayed but not cached.",
        parse=_size(minimum=0),
    )
    minimum_object_size: int = _setting(
        default=0,
        kind="size",
        doc="The smallest body stored; smaller responses are relayed but not cached.",
        parse=_size(minimum=0),
    )
    heuristic_fraction: float = _setting(
        default=0.1,
        kind="number from 0 to 1",
        doc="Heuristic freshness as a fraction of the time since Last-Modified.",
        parse=_fraction,
    )
    heuristic_max: float = _setting(
        default=86400.0,
        kind="duration",
        doc="The longest heuristic freshness lifetime.",
        parse=_duration,
    )
    max_stale: float = _setting(
        default=604800.0,
        kind="duration",
        doc="The most a stored response may be stale to be served when its origin fails.",
        parse=_duration,
    )
    refresh_pattern: tuple[RefreshPattern, ...] = _setting(
        default=(),
        default_doc="no rules",
        kind="array of tables",
        doc="Heuristic freshness by URI regex (min, percent, max), as Squid's refresh_pattern.",
        parse=_refresh_patterns,
    )
    purge_from: tuple[IPNetwork, ...] = _setting(
        default=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        kind="array of networks",
        doc="Client networks (CIDR) allowed to remove cached URIs with the PURGE method.",
        parse=_networks,
    )


#: The TOML tables and the dataclass each is read into, in document order.
TABLES: Mapping[str, type] = {
    "proxy": ProxyConfig,
    "tls": TlsConfig,
    "intercept": InterceptConfig,
    "timeouts": TimeoutsConfig,
    "limits": LimitsConfig,
    "upstream": UpstreamConfig,
    "access": AccessConfig,
    "auth": AuthConfig,
    "access_log": AccessLogConfig,
    "cache": CacheConfig,
    "pac": PacConfig,
    "proxy_protocol": ProxyProtocolConfig,
    "errors": ErrorsConfig,
    "manager": ManagerConfig,
    "metrics": MetricsConfig,
}


@dataclass(frozen=True, slots=True)
class Config:
    """
    A whole configuration. C{Config()} is the embedded safe default.

    @ivar policy: The compiled C{[acl]}, C{[access]} and C{[auth]} rules
        (L{squeak.access.rules.AccessPolicy}); L{parse_config} builds it, so
        a configuration built by hand with other C{access} rules must pass
        its own.
    @ivar source: The file the configuration was read from, or
        C{"<defaults>"}.
    """

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    intercept: InterceptConfig = field(default_factory=InterceptConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    access_log: AccessLogConfig = field(default_factory=AccessLogConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    accel: AccelConfig = field(default_factory=AccelConfig)
    pac: PacConfig = field(default_factory=PacConfig)
    proxy_protocol: ProxyProtocolConfig = field(default_factory=ProxyProtocolConfig)
    errors: ErrorsConfig = field(default_factory=ErrorsConfig)
    manager: ManagerConfig = field(default_factory=ManagerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    policy: AccessPolicy = field(default_factory=default_policy)
    source: str = "<defaults>"
    #: [[cache_peer]] and [hierarchy] (squeak/upstream/peers.py).
    hierarchy: HierarchyConfig = field(default_factory=HierarchyConfig)


# --- Loading ---------------------------------------------------------------------


def _build_table(
    cls: type, table: str, values: dict[str, object], text: str, path: str, base_dir: str
) -> object:
    """Parse one table's values into an instance of C{cls}."""
    schema = {f.name: f for f in fields(cls)}
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        spec = schema.get(key)
        if spec is None:
            raise ConfigError(
                path,
                f"{table}.{key}",
                f"unknown key ({_suggest(key, list(schema))})",
                _find_line(text, table, key),
            )
        parse = cast(_Parse, spec.metadata["parse"])
        try:
            parsed[key] = parse(value, base_dir)
        except InvalidValueError as e:
            line = _find_line(text, table, key, e.element)
            raise ConfigError(path, f"{table}.{key}", str(e), line) from None
    return cls(**parsed)


#: The table of named ACL definitions. Its keys are names the operator
#: chooses, so it is read by L{squeak.access.acl.compile_acls} rather than
#: through the schema.
ACL_TABLE = "acl"

#: Every table name, in document order, for suggestions.
_KNOWN_TABLES = [n for t in TABLES for n in ((ACL_TABLE, t) if t == "access" else (t,))] + [
    PEER_TABLE,
    HIERARCHY_TABLE,
]


def _build_acls(values: dict[str, object], text: str, path: str, base_dir: str) -> dict[str, Any]:
    """Compile the C{[acl]} table over the built-in ACLs."""
    try:
        return compile_acls(values, base_dir)
    except AclError as e:
        key = f"{ACL_TABLE}.{e.name}" if e.name else ACL_TABLE
        line = _find_line(text, ACL_TABLE, e.name, e.element)
        raise ConfigError(path, key, str(e), line) from None


def _build_policy(
    acls: dict[str, Any] | None, tables: dict[str, Any], text: str, path: str
) -> AccessPolicy:
    """
    Compile the access rules over the ACLs once every table is read: every
    ACL a rule names must exist, C{proxy_auth} needs C{[auth] htpasswd}, and
    no rule may make an open proxy.
    """
    access = tables.get("access", AccessConfig())
    auth = tables.get("auth", AuthConfig())
    try:
        return compile_policy(
            builtin_acls() if acls is None else acls,
            access.http_access,
            access.cache,
            authentication=bool(auth.htpasswd),
        )
    except RuleError as e:
        key = e.key or "http_access"
        line = _find_line(text, "access", key, e.element)
        raise ConfigError(path, f"access.{key}", str(e), line) from None


def parse_config(text: str, path: str) -> Config:
    """
    Parse and validate a configuration from TOML text.

    Keys left out take their defaults. Relative paths resolve against the
    directory of C{path}.

    @param text: The TOML source.
    @param path: The file it came from, used in messages, as the base of
        relative paths, and as L{Config.source}.
    @raise ConfigError: On the first problem found, in document order.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        at = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(at.group(1)) if at else None
        raise ConfigError(path, None, f"invalid TOML: {message}", line) from None
    base_dir = os.path.dirname(os.path.abspath(path))
    tables: dict[str, Any] = {}
    acls = None
    # Read once the ACLs are (squeak/upstream/peers.py).
    peering = {key: document.pop(key) for key in (PEER_TABLE, HIERARCHY_TABLE) if key in document}
    for name, values in document.items():
        if name in ACCEL_TABLES:
            continue  # read by squeak.accel.config once the ACLs are known
        cls = TABLES.get(name)
        if cls is None and name != ACL_TABLE:
            if isinstance(values, dict):
                problem = f"unknown table ({_suggest(name, _KNOWN_TABLES)})"
                raise ConfigError(path, name, problem, _find_line(text, name))
            owners = [table for table, c in TABLES.items() if name in (f.name for f in fields(c))]
            if owners:
                problem = f"keys belong in a table (did you mean [{owners[0]}] {name}?)"
            else:
                problem = f"unknown key ({_suggest(name, _KNOWN_TABLES)})"
            raise ConfigError(path, name, problem, _find_line(text, "", name))
        if not isinstance(values, dict):
            problem = f"expected a table [{name}], got {_show(values)}"
            raise ConfigError(path, name, problem, _find_line(text, "", name))
        if cls is None:
            acls = _build_acls(values, text, path, base_dir)
        else:
            tables[name] = _build_table(cls, name, values, text, path, base_dir)
    policy = _build_policy(acls, tables, text, path)
    try:
        hierarchy = parse_hierarchy(
            peering.get(PEER_TABLE), peering.get(HIERARCHY_TABLE), policy.acls, text
        )
    except PeerConfigError as e:
        raise ConfigError(path, e.key, str(e), e.line) from None
    try:
        accel = parse_accel(document, text, policy.acls, base_dir)
    except AccelConfigError as e:
        raise ConfigError(path, e.key, e.problem, e.line) from None
    config = Config(**tables, accel=accel, policy=policy, source=path, hierarchy=hierarchy)
    _check_tls(config, text, path)
    _check_intercept(config, text, path)
    _check_farm(config, text, path)
    return config


def _check_farm(config: Config, text: str, path: str) -> None:
    """
    The C{[pac]} and C{[proxy_protocol]} checks that need other tables
    (their own modules say what is wrong: L{pac_problem},
    L{proxy_protocol_problem}).
    """
    kinds = {name: acl.kind for name, acl in config.policy.acls.items()}
    problems = [
        ("pac", pac_problem(config.pac, kinds)),
        (
            "proxy_protocol",
            proxy_protocol_problem(
                config.proxy_protocol,
                config.proxy.http_port,
                config.tls.https_port,
                config.intercept.http_port + config.intercept.https_port,
            ),
        ),
    ]
    for table, problem in problems:
        if problem is not None:
            key, element, what = problem
            line = _find_line(text, table, key, element)
            raise ConfigError(path, f"{table}.{key}", what, line)


def _check_intercept(config: Config, text: str, path: str) -> None:
    """
    An intercepted client does not know it uses a proxy, so it can never
    answer a 407: rules that ask for proxy authentication cannot apply to
    intercept listeners, and such a configuration is refused.
    """
    intercept = config.intercept
    if (intercept.http_port or intercept.https_port) and config.policy.needs_auth:
        key = "intercept.http_port" if intercept.http_port else "intercept.https_port"
        raise ConfigError(
            path,
            key,
            "intercepted clients cannot be asked for proxy credentials, but the "
            "http_access rules use proxy_auth; identify them by address (src) instead",
            _find_line(text, "intercept", key.split(".")[1]),
        )


def _check_tls(config: Config, text: str, path: str) -> None:
    """
    A TLS listener needs both a certificate and its key.
    """
    tls = config.tls
    if tls.https_port and not (tls.certificate and tls.key):
        missing = "tls.certificate" if not tls.certificate else "tls.key"
        raise ConfigError(
            path,
            "tls.https_port",
            f"a TLS listener needs {missing} (a PEM file)",
            _find_line(text, "tls", "https_port"),
        )


def load_config(path: str) -> Config:
    """
    Read, parse and validate the configuration file at C{path}.

    @raise ConfigError: If the file cannot be read or is not a valid
        configuration, e.g. C{squeak.toml: cannot read: No such file or
        directory}.
    """
    return load_config_and_text(path)[0]


def load_config_and_text(path: str) -> tuple[Config, str]:
    """
    L{load_config}, with the text the configuration was parsed from (which
    a master hands its workers, so that they run what it checked).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"cannot read: not UTF-8 (byte {e.start})") from None
    return parse_config(text, path), text
