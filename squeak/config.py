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

Every problem is reported as a L{ConfigError} whose C{str()} is the single
line shown to the operator, naming the file, the key and, where it can be
found in the source text, the line.

This module is pure: it imports no Twisted, never reads the clock and never
touches the network (C{socket.gethostname} only supplies a default name).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from fractions import Fraction
from socket import gethostname
from typing import Any, cast

from squeak.access.acl import AclError, builtin_acls, compile_acls
from squeak.access.rules import (
    DEFAULT_HTTP_ACCESS,
    AccessPolicy,
    RuleError,
    compile_policy,
    default_policy,
)
from squeak.values import IPNetwork, parse_network
from squeak.values import is_open as _is_open
from squeak.values import quote as _quote

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
    "parse_config",
    "parse_duration",
    "parse_listen_address",
    "parse_network",
    "parse_size",
]


#: Forwarded-for modes, as Squid's C{forwarded_for} directive spells them.
FORWARDED_FOR_MODES = ("on", "off", "delete", "transparent")

#: Access log formats; keys of C{squeak.accesslog.FORMATTERS}.
ACCESS_LOG_FORMATS = ("squid", "common", "combined")

#: Largest size accepted, so that every size fits a signed 64-bit integer
#: (SQLite, used by diskcache, stores no bigger integers).
MAX_SIZE = 2**63 - 1


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


class _InvalidValueError(ValueError):
    """
    A value is unusable; the loader adds the file, key and line.

    @ivar element: The array element at fault, used to find its line.
    """

    def __init__(self, problem: str, element: str | None = None) -> None:
        super().__init__(problem)
        self.element = element


# --- Showing values in messages ---------------------------------------------


def _kind(value: object) -> str:
    """Name the TOML type of C{value} with an article ("an integer")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _show(value: object) -> str:
    """Show a TOML value in a message: strings and scalars as written."""
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        kinds = sorted({_kind(item) for item in value if not isinstance(item, str)})
        return "an array containing " + " and ".join(kinds) if kinds else "an array"
    return _kind(value)


# --- Units ---------------------------------------------------------------------

_NUMBER_AND_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*")

#: Size units, case-insensitive: IEC binary prefixes for KiB/MiB/GiB/TiB,
#: SI decimal prefixes for KB/MB/GB/TB.
SIZE_UNITS: Mapping[str, int] = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}

#: Duration units in seconds, case-insensitive. "m" is refused as ambiguous.
DURATION_UNITS: Mapping[str, float] = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}

_SIZE_EXPECTED = 'expected a size like "512 KiB" or "4 MB"'
_DURATION_EXPECTED = 'expected a duration like "30s" or "2min"'


def parse_size(text: str) -> int:
    """
    Parse a size into bytes.

    A number, optionally fractional, then an optional unit: C{"512"},
    C{"4 KiB"} (4096), C{"4 KB"} (4000), C{"1.5 MiB"}. KiB/MiB/GiB/TiB are
    binary (IEC), KB/MB/GB/TB decimal (SI); units are case-insensitive. A
    fraction of a byte is rounded down.

    @param text: The size as written.
    @return: The size in bytes, 0 to L{MAX_SIZE}.
    @raise ValueError: If C{text} is not such a size; the message says what
        was expected and what was found.
    """
    match = _NUMBER_AND_UNIT.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(f"{_SIZE_EXPECTED}, got {_quote(text)}")
    size = math.floor(Fraction(match.group(1)) * SIZE_UNITS[unit])
    if size > MAX_SIZE:
        raise ValueError(f"size too large (at most 2**63 - 1 bytes), got {_quote(text)}")
    return size


def parse_duration(text: str) -> float:
    """
    Parse a duration into seconds.

    A number, optionally fractional, then an optional unit: C{"500ms"},
    C{"30s"}, C{"2min"}, C{"1h"}, C{"1d"}; a plain number is seconds. Units
    are case-insensitive; C{"m"} is refused because it could mean minutes or
    milliseconds.

    @param text: The duration as written.
    @return: The duration in seconds, finite and not negative.
    @raise ValueError: If C{text} is not such a duration.
    """
    match = _NUMBER_AND_UNIT.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in DURATION_UNITS:
        raise ValueError(f"{_DURATION_EXPECTED}, got {_quote(text)}")
    seconds = float(match.group(1)) * DURATION_UNITS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"duration too large, got {_quote(text)}")
    return seconds


# --- Addresses -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """
    An address to listen on.

    @ivar host: A literal IP address, IPv6 without brackets.
    @ivar port: 0 to 65535; 0 asks for an ephemeral port (used by tests).
    """

    host: str
    port: int

    def __str__(self) -> str:
        """Write the address as configured: C{127.0.0.1:3128}, C{[::1]:3128}."""
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_LISTEN_EXPECTED = 'expected an address like "127.0.0.1:3128" or "[::1]:3128"'
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_NAME = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_listen_address(text: str) -> ListenAddress:
    """
    Parse C{"IP:port"} or C{"[IPv6]:port"} into a L{ListenAddress}.

    Host names are refused: a name is resolved once, at start-up, may resolve
    to several or to public addresses, and may change afterwards.

    @raise ValueError: If C{text} is not such an address.
    """
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or not port.startswith(":"):
            raise ValueError(f"{_LISTEN_EXPECTED}, got {_quote(text)}")
        port = port[1:]
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"expected an IPv6 address inside the brackets, got {_quote(text)}"
            ) from None
    else:
        if text.count(":") > 1:
            raise ValueError(
                f'IPv6 addresses need brackets, like "[::1]:3128", got {_quote(text)}'
            )
        host, colon, port = text.partition(":")
        if not colon:
            raise ValueError(f"{_LISTEN_EXPECTED} (the port is required), got {_quote(text)}")
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            if _HOST_NAME.fullmatch(host):
                raise ValueError(
                    f"expected a literal IP address, not the host name {_quote(host)} "
                    "(a name is looked up once at start-up and may resolve elsewhere "
                    'later); write e.g. "127.0.0.1:3128" or "[::1]:3128"'
                ) from None
            raise ValueError(f"{_LISTEN_EXPECTED}, got {_quote(text)}") from None
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"expected a port 0-65535 after the colon, got {_quote(text)}")
    return ListenAddress(str(address), int(port))


# --- Defaults --------------------------------------------------------------------

_VISIBLE_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")


def default_visible_hostname() -> str:
    """
    The name this proxy gives itself in C{Via} and error pages by default:
    the machine's host name, or C{"localhost"} if that is not usable.
    """
    name = gethostname()
    return name if _VISIBLE_HOSTNAME.fullmatch(name) else "localhost"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """
    The per-user cache directory: C{$XDG_CACHE_HOME/squeak}, or
    C{~/.cache/squeak} if C{XDG_CACHE_HOME} is unset, empty or relative (the
    XDG Base Directory specification says to ignore relative values). Nothing
    is created.

    @param environ: The environment to consult; L{os.environ} by default.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "squeak")
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".cache", "squeak")


# --- Field parsers ---------------------------------------------------------------
#
# Each takes the TOML value and the directory relative paths resolve against,
# and returns the value ready to use or raises _InvalidValueError.

_Parse = Callable[[object, str], object]


def _setting(
    *,
    doc: str,
    kind: str,
    parse: _Parse,
    default: object = MISSING,
    factory: Callable[[], object] | None = None,
    default_doc: str | None = None,
) -> Any:
    """
    Declare one configuration key: its default, its documentation, the type
    the operator writes (C{kind}), and the function that parses it.
    """
    metadata = {"doc": doc, "kind": kind, "parse": parse, "default_doc": default_doc}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _boolean(value: object, base_dir: str) -> bool:
    """A TOML boolean; strings such as "yes" are refused."""
    if not isinstance(value, bool):
        raise _InvalidValueError(f"expected true or false, got {_show(value)}")
    return value


def _integer(minimum: int) -> _Parse:
    """Make a parser for a TOML integer (not a boolean) of at least C{minimum}."""

    def parse(value: object, base_dir: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _InvalidValueError(f"expected an integer, got {_show(value)}")
        if value < minimum:
            raise _InvalidValueError(f"expected an integer of at least {minimum}, got {value}")
        return value

    return parse


def _size(minimum: int) -> _Parse:
    """Make a parser for a size (L{parse_size}) or an integer of bytes."""

    def parse(value: object, base_dir: str) -> int:
        if isinstance(value, str):
            try:
                size = parse_size(value)
            except ValueError as e:
                raise _InvalidValueError(str(e)) from None
        elif isinstance(value, int) and not isinstance(value, bool):
            size = value
            if not 0 <= size <= MAX_SIZE:
                raise _InvalidValueError(f"{_SIZE_EXPECTED}, got {_show(value)}")
        else:
            raise _InvalidValueError(f"{_SIZE_EXPECTED}, got {_show(value)}")
        if size < minimum:
            unit = "byte" if minimum == 1 else "bytes"
            raise _InvalidValueError(f"must be at least {minimum} {unit}, got {_show(value)}")
        return size

    return parse


def _positive_duration(value: object, base_dir: str) -> float:
    """A duration (L{parse_duration}) or a number of seconds, above zero."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise _InvalidValueError(str(e)) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise _InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")
    else:
        raise _InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")
    if seconds <= 0:
        raise _InvalidValueError(f"must be longer than zero, got {_show(value)}")
    return seconds


def _one_of(choices: tuple[str, ...]) -> _Parse:
    """Make a parser for one of the strings in C{choices}."""
    allowed = ", ".join(_quote(choice) for choice in choices)

    def parse(value: object, base_dir: str) -> str:
        if value not in choices:
            raise _InvalidValueError(f"expected one of {allowed}, got {_show(value)}")
        assert isinstance(value, str)
        return value

    return parse


def _strings(value: object, example: str) -> list[str]:
    """Accept a string or an array of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return cast(list[str], value)
    raise _InvalidValueError(f"expected an array of strings like {example}, got {_show(value)}")


def _listen_addresses(value: object, base_dir: str) -> tuple[ListenAddress, ...]:
    """At least one distinct L{ListenAddress}."""
    items = _strings(value, '["127.0.0.1:3128"]')
    if not items:
        raise _InvalidValueError('must list at least one address, like ["127.0.0.1:3128"]')
    addresses: list[ListenAddress] = []
    for item in items:
        try:
            address = parse_listen_address(item)
        except ValueError as e:
            raise _InvalidValueError(str(e), element=item) from None
        if address in addresses:
            raise _InvalidValueError(f"{_quote(item)} is listed twice", element=item)
        addresses.append(address)
    return tuple(addresses)


def _optional_listen_addresses(value: object, base_dir: str) -> tuple[ListenAddress, ...]:
    """Zero or more distinct L{ListenAddress}es (an empty list: no listener)."""
    if value == []:
        return ()
    return _listen_addresses(value, base_dir)


def _readable_file(value: object, base_dir: str) -> str:
    """A readable file's resolved path, or C{""} for none."""
    if not isinstance(value, str):
        raise _InvalidValueError(f'expected a file path or "", got {_show(value)}')
    if value == "":
        return ""
    if "\0" in value:
        raise _InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    path = _resolve(value, base_dir)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise _InvalidValueError(f"cannot read {_quote(path)}: {e.strerror or e}") from None
    return path


def _networks(value: object, base_dir: str) -> tuple[IPNetwork, ...]:
    """Client networks, none of which opens the proxy to everyone."""
    networks: list[IPNetwork] = []
    for item in _strings(value, '["127.0.0.0/8", "::1/128"]'):
        try:
            network = parse_network(item)
        except ValueError as e:
            raise _InvalidValueError(str(e), element=item) from None
        if _is_open(network):
            raise _InvalidValueError(
                f"{_quote(item)} would make an open proxy "
                "(list only the networks of your own clients)",
                element=item,
            )
        networks.append(network)
    return tuple(networks)


_RULE = re.compile(r"\s*(?:allow|deny)\s+\S.*", re.DOTALL)


def _rules(value: object, example: str) -> tuple[str, ...]:
    """
    Access rules, each C{allow} or C{deny} then ACL names; that the names
    exist is checked once every table is read.
    """
    rules = _strings(value, f'["{example}"]')
    for rule in rules:
        if not _RULE.fullmatch(rule):
            raise _InvalidValueError(
                f'expected a rule like "{example}" (allow or deny, then ACL names), '
                f"got {_quote(rule)}",
                element=rule,
            )
    return tuple(rules)


_REALM = re.compile(r"[ !#-\[\]-~]{1,100}")


def _realm(value: object, base_dir: str) -> str:
    """A realm: printable ASCII without quote or backslash (RFC 7235 §2.2)."""
    if not isinstance(value, str) or not _REALM.fullmatch(value):
        raise _InvalidValueError(
            "expected up to 100 printable ASCII characters without '\"' or '\\', "
            f"got {_show(value)}"
        )
    return value


def _visible_hostname(value: object, base_dir: str) -> str:
    """A host name fit for C{Via} (RFC 9110 §7.6.3 C{received-by})."""
    if not isinstance(value, str) or not _VISIBLE_HOSTNAME.fullmatch(value):
        raise _InvalidValueError(
            f'expected a host name like "proxy.example.net", got {_show(value)}'
        )
    return value


def _resolve(path: str, base_dir: str) -> str:
    """Expand C{~} and make C{path} absolute relative to C{base_dir}."""
    path = os.path.expanduser(path)
    return os.path.normpath(os.path.join(base_dir, path))


def _log_path(value: object, base_dir: str) -> str:
    """A log file path, resolved, or C{"-"} or C{""} as they are."""
    if not isinstance(value, str):
        raise _InvalidValueError(f'expected a file path, "-" or "", got {_show(value)}')
    if "\0" in value:
        raise _InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    return value if value in ("-", "") else _resolve(value, base_dir)


def _directory(value: object, base_dir: str) -> str:
    """A directory path, resolved; never empty."""
    if not isinstance(value, str) or value in ("", "-"):
        raise _InvalidValueError(f"expected a directory path, got {_show(value)}")
    if "\0" in value:
        raise _InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    return _resolve(value, base_dir)


def _duration(value: object, base_dir: str) -> float:
    """A duration (L{parse_duration}) or a number of seconds, zero allowed."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise _InvalidValueError(str(e)) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise _InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")


def _workers(value: object, base_dir: str) -> int:
    """A number of worker processes, at least 1, or C{"auto"}: one per CPU
    this process may run on."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _InvalidValueError(
            f'expected an integer of at least 1 or "auto", got {_show(value)}'
        )
    return value


def _account_name(value: object, base_dir: str) -> str:
    """A user or group name (or number), or C{""} for none."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?|", value):
        raise _InvalidValueError(f'expected a user or group name like "proxy", got {_show(value)}')
    return value


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

    @ivar path: An absolute file path, C{"-"} for standard output, or C{""}
        for no access log.
    @ivar format: One of L{ACCESS_LOG_FORMATS}.
    """

    path: str = _setting(
        default="-",
        kind="path",
        doc='Where to write one line per request: a file, "-" for standard output, "" for none.',
        parse=_log_path,
    )
    format: str = _setting(
        default="squid",
        kind="string: squid | common | combined",
        doc="The access log line format: Squid's native format, or Apache common/combined.",
        parse=_one_of(ACCESS_LOG_FORMATS),
    )


# --- [cache] parsers ----------------------------------------------------------------


def _fraction(value: object, base_dir: str) -> float:
    """A number from 0 to 1."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise _InvalidValueError(f"expected a number from 0 to 1 like 0.1, got {_show(value)}")


@dataclass(frozen=True, slots=True)
class RefreshPattern:
    """
    One C{[[cache.refresh_pattern]]} rule, as Squid's C{refresh_pattern}:
    heuristic freshness for responses without explicit freshness whose URI
    the regular expression matches (RFC 9111 §4.2.2).

    @ivar regex: A Python regular expression searched for in the URI.
    @ivar case_insensitive: Whether C{regex} ignores case.
    @ivar min: The least freshness lifetime, in seconds.
    @ivar percent: The lifetime as a percentage of the time since
        C{Last-Modified}.
    @ivar max: The greatest freshness lifetime, in seconds.
    """

    regex: str
    case_insensitive: bool = False
    min: float = 0.0
    percent: float = 20.0
    max: float = 3 * 86400.0


_REFRESH_PATTERN_KEYS = ("regex", "case_insensitive", "min", "percent", "max")
_REFRESH_PATTERN_EXAMPLE = '[{ regex = "\\.jpg$", min = "0", percent = 20, max = "3d" }]'


def _refresh_rule(item: object) -> RefreshPattern:
    """One refresh rule from its TOML table."""
    if not isinstance(item, dict):
        raise _InvalidValueError(
            f"expected an array of tables like {_REFRESH_PATTERN_EXAMPLE}, got {_show(item)}"
        )
    unknown = [key for key in item if key not in _REFRESH_PATTERN_KEYS]
    if unknown:
        suggestion = _suggest(unknown[0], list(_REFRESH_PATTERN_KEYS))
        raise _InvalidValueError(f"unknown key {unknown[0]} in a rule ({suggestion})")
    regex = item.get("regex")
    if not isinstance(regex, str):
        raise _InvalidValueError(f"each rule needs a regex string, got {_show(regex)}")
    case_insensitive = _boolean(item.get("case_insensitive", False), "")
    try:
        re.compile(regex, re.IGNORECASE if case_insensitive else 0)
    except re.error as e:
        raise _InvalidValueError(f"invalid regex {_quote(regex)}: {e}", element=regex) from None
    percent = item.get("percent", 20)
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not (math.isfinite(percent) and percent >= 0)
    ):
        raise _InvalidValueError(
            f"percent: expected a number of at least 0, got {_show(percent)}", element=regex
        )
    low = _duration(item.get("min", 0), "")
    high = _duration(item.get("max", 3 * 86400), "")
    if low > high:
        raise _InvalidValueError(
            f"min is more than max in the rule for {_quote(regex)}", element=regex
        )
    return RefreshPattern(regex, case_insensitive, low, float(percent), high)


def _refresh_patterns(value: object, base_dir: str) -> tuple[RefreshPattern, ...]:
    """An array of refresh rules (tables)."""
    if not isinstance(value, list):
        raise _InvalidValueError(
            f"expected an array of tables like {_REFRESH_PATTERN_EXAMPLE}, got {_show(value)}"
        )
    return tuple(_refresh_rule(item) for item in value)


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
    policy: AccessPolicy = field(default_factory=default_policy)
    source: str = "<defaults>"


# --- Finding lines ---------------------------------------------------------------

_HEADER = re.compile(r"\s*\[\[?\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?")
_ASSIGNMENT = re.compile(r"\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _dotted(name: str) -> str:
    """Normalize a TOML dotted name as written (C{"a" . b}) to C{a.b}."""
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def _find_line(
    text: str, table: str, key: str | None = None, element: str | None = None
) -> int | None:
    """
    Find the line of a table, or of a key, or of an element of an
    array-valued key, by scanning C{text}.

    A name is found where it is defined exactly (a C{[table]} header or a
    C{key =} line in its table or as a dotted key), or failing that where a
    name below it is first defined (C{[table.sub]}, C{key.sub =}).

    @param table: The table name; C{""} for the top level.
    @param key: The key within C{table}, or L{None} to find the table.
    @param element: A string element of the key's array value.
    @return: The 1-based line, or L{None} unless exactly one line defines
        the name (or, failing that, some line defines a name below it).
    """
    wanted = f"{table}.{key}" if key is not None and table else (key or table)
    current = ""
    exact: list[int] = []
    below: list[int] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        header = _HEADER.fullmatch(line)
        if header:
            current = name = _dotted(header.group(1))
        elif assignment := _ASSIGNMENT.match(line):
            name = _dotted(assignment.group(1))
            name = f"{current}.{name}" if current else name
        else:
            continue
        if name == wanted:
            exact.append(number)
        elif name.startswith(wanted + "."):
            below.append(number)
    if len(exact) == 1:
        found = exact[0]
    elif not exact and below:
        found = below[0]
    else:
        return None
    if element is None:
        return found
    literals = (f'"{element}"', f"'{element}'")
    for number in range(found, len(lines) + 1):
        line = lines[number - 1]
        if number > found and (_HEADER.fullmatch(line) or _ASSIGNMENT.match(line)):
            break
        if any(literal in line for literal in literals):
            return number
    return found


# --- Loading ---------------------------------------------------------------------


def _suggest(name: str, known: list[str]) -> str:
    """Suggest the closest known name, or list them all."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "expected one of " + ", ".join(known)


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
        except _InvalidValueError as e:
            line = _find_line(text, table, key, e.element)
            raise ConfigError(path, f"{table}.{key}", str(e), line) from None
    return cls(**parsed)


#: The table of named ACL definitions. Its keys are names the operator
#: chooses, so it is read by L{squeak.access.acl.compile_acls} rather than
#: through the schema.
ACL_TABLE = "acl"

#: Every table name, in document order, for suggestions.
_KNOWN_TABLES = [n for t in TABLES for n in ((ACL_TABLE, t) if t == "access" else (t,))]


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
    for name, values in document.items():
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
    config = Config(**tables, policy=policy, source=path)
    _check_tls(config, text, path)
    _check_intercept(config, text, path)
    return config


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
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"cannot read: not UTF-8 (byte {e.start})") from None
    return parse_config(text, path)
