# -*- test-case-name: tests.test_config -*-
"""
How the configuration's values are read: units (sizes, durations), listen
addresses, defaults that depend on the host, and the per-field parsers the
schema in L{squeak.config} names in each field's metadata.

Each parser takes the TOML value and the configuration file's directory and
returns the value ready to use, or raises L{InvalidValueError} with the
problem (the loader adds the file, the key and the line).  Names with a
leading underscore are private to the configuration: this module and
L{squeak.config}, which builds its schema from them.

This module is pure: it imports no Twisted, never reads the clock and never
touches the network (C{socket.gethostname} only supplies a default name).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from fractions import Fraction
from socket import gethostname
from typing import Any, cast

from squeak.logformat import FormatError
from squeak.logline import PRESET_NAMES, formatter
from squeak.values import IPNetwork, parse_network, syslog_priority
from squeak.values import is_open as _is_open
from squeak.values import quote as _quote

__all__ = [
    "MAX_SIZE",
    "InvalidValueError",
    "ListenAddress",
    "RefreshPattern",
    "default_cache_dir",
    "default_visible_hostname",
    "parse_duration",
    "parse_listen_address",
    "parse_size",
]

#: Largest size accepted, so that every size fits a signed 64-bit integer
#: (SQLite, used by diskcache, stores no bigger integers).
MAX_SIZE = 2**63 - 1


class InvalidValueError(ValueError):
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
# and returns the value ready to use or raises InvalidValueError.

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
        raise InvalidValueError(f"expected true or false, got {_show(value)}")
    return value


def _integer(minimum: int) -> _Parse:
    """Make a parser for a TOML integer (not a boolean) of at least C{minimum}."""

    def parse(value: object, base_dir: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"expected an integer, got {_show(value)}")
        if value < minimum:
            raise InvalidValueError(f"expected an integer of at least {minimum}, got {value}")
        return value

    return parse


def _size(minimum: int) -> _Parse:
    """Make a parser for a size (L{parse_size}) or an integer of bytes."""

    def parse(value: object, base_dir: str) -> int:
        if isinstance(value, str):
            try:
                size = parse_size(value)
            except ValueError as e:
                raise InvalidValueError(str(e)) from None
        elif isinstance(value, int) and not isinstance(value, bool):
            size = value
            if not 0 <= size <= MAX_SIZE:
                raise InvalidValueError(f"{_SIZE_EXPECTED}, got {_show(value)}")
        else:
            raise InvalidValueError(f"{_SIZE_EXPECTED}, got {_show(value)}")
        if size < minimum:
            unit = "byte" if minimum == 1 else "bytes"
            raise InvalidValueError(f"must be at least {minimum} {unit}, got {_show(value)}")
        return size

    return parse


def _positive_duration(value: object, base_dir: str) -> float:
    """A duration (L{parse_duration}) or a number of seconds, above zero."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise InvalidValueError(str(e)) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")
    else:
        raise InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")
    if seconds <= 0:
        raise InvalidValueError(f"must be longer than zero, got {_show(value)}")
    return seconds


def _one_of(choices: tuple[str, ...]) -> _Parse:
    """Make a parser for one of the strings in C{choices}."""
    allowed = ", ".join(_quote(choice) for choice in choices)

    def parse(value: object, base_dir: str) -> str:
        if value not in choices:
            raise InvalidValueError(f"expected one of {allowed}, got {_show(value)}")
        assert isinstance(value, str)
        return value

    return parse


def _strings(value: object, example: str) -> list[str]:
    """Accept a string or an array of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return cast(list[str], value)
    raise InvalidValueError(f"expected an array of strings like {example}, got {_show(value)}")


def _listen_addresses(value: object, base_dir: str) -> tuple[ListenAddress, ...]:
    """At least one distinct L{ListenAddress}."""
    items = _strings(value, '["127.0.0.1:3128"]')
    if not items:
        raise InvalidValueError('must list at least one address, like ["127.0.0.1:3128"]')
    addresses: list[ListenAddress] = []
    for item in items:
        try:
            address = parse_listen_address(item)
        except ValueError as e:
            raise InvalidValueError(str(e), element=item) from None
        if address in addresses:
            raise InvalidValueError(f"{_quote(item)} is listed twice", element=item)
        addresses.append(address)
    return tuple(addresses)


def _optional_listen_addresses(value: object, base_dir: str) -> tuple[ListenAddress, ...]:
    """Zero or more distinct L{ListenAddress}es (an empty list: no listener)."""
    if value == []:
        return ()
    return _listen_addresses(value, base_dir)


def _readable_path(
    value: object, base_dir: str, *, kind: str, read: Callable[[str], object]
) -> str:
    """
    A path that can be read now, resolved, or C{""} for none.

    @param kind: What it must be, for messages (C{"file"}, C{"directory"}).
    @param read: Reads it, raising L{OSError} when it cannot be read.
    """
    if not isinstance(value, str):
        raise InvalidValueError(f'expected a {kind} path or "", got {_show(value)}')
    if value == "":
        return ""
    if "\0" in value:
        raise InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    path = _resolve(value, base_dir)
    try:
        read(path)
    except OSError as e:
        the = "" if kind == "file" else f"the {kind} "
        raise InvalidValueError(f"cannot read {the}{_quote(path)}: {e.strerror or e}") from None
    return path


def _open_and_close(path: str) -> None:
    with open(path, "rb"):
        pass


def _readable_file(value: object, base_dir: str) -> str:
    """A readable file's resolved path, or C{""} for none."""
    return _readable_path(value, base_dir, kind="file", read=_open_and_close)


def _network_list(value: object, example: str, if_open: str | None) -> tuple[IPNetwork, ...]:
    """
    Networks in CIDR form, as C{[acl]} C{src} writes them.

    @param example: A list shown in the message when C{value} is not one.
    @param if_open: Why a network covering a whole address family is
        refused here (said after its quoted text); L{None} allows one.
    """
    networks: list[IPNetwork] = []
    for item in _strings(value, example):
        try:
            network = parse_network(item)
        except ValueError as e:
            raise InvalidValueError(str(e), element=item) from None
        if if_open is not None and _is_open(network):
            raise InvalidValueError(f"{_quote(item)} {if_open}", element=item)
        networks.append(network)
    return tuple(networks)


def _networks(value: object, base_dir: str) -> tuple[IPNetwork, ...]:
    """Client networks, none of which opens the proxy to everyone."""
    return _network_list(
        value,
        '["127.0.0.0/8", "::1/128"]',
        "would make an open proxy (list only the networks of your own clients)",
    )


_RULE = re.compile(r"\s*(?:allow|deny)\s+\S.*", re.DOTALL)


def _rules(value: object, example: str) -> tuple[str, ...]:
    """
    Access rules, each C{allow} or C{deny} then ACL names; that the names
    exist is checked once every table is read.
    """
    rules = _strings(value, f'["{example}"]')
    for rule in rules:
        if not _RULE.fullmatch(rule):
            raise InvalidValueError(
                f'expected a rule like "{example}" (allow or deny, then ACL names), '
                f"got {_quote(rule)}",
                element=rule,
            )
    return tuple(rules)


_REALM = re.compile(r"[ !#-\[\]-~]{1,100}")


def _realm(value: object, base_dir: str) -> str:
    """A realm: printable ASCII without quote or backslash (RFC 7235 §2.2)."""
    if not isinstance(value, str) or not _REALM.fullmatch(value):
        raise InvalidValueError(
            "expected up to 100 printable ASCII characters without '\"' or '\\', "
            f"got {_show(value)}"
        )
    return value


def _visible_hostname(value: object, base_dir: str) -> str:
    """A host name fit for C{Via} (RFC 9110 §7.6.3 C{received-by})."""
    if not isinstance(value, str) or not _VISIBLE_HOSTNAME.fullmatch(value):
        raise InvalidValueError(
            f'expected a host name like "proxy.example.net", got {_show(value)}'
        )
    return value


def _resolve(path: str, base_dir: str) -> str:
    """Expand C{~} and make C{path} absolute relative to C{base_dir}."""
    path = os.path.expanduser(path)
    return os.path.normpath(os.path.join(base_dir, path))


def _log_path(value: object, base_dir: str) -> str:
    """
    A log file path, resolved, or C{"-"}, C{"syslog"} or C{""} as they are
    (a file named syslog is written C{"./syslog"}).
    """
    if not isinstance(value, str):
        raise InvalidValueError(f'expected a file path, "-", "syslog" or "", got {_show(value)}')
    if "\0" in value:
        raise InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    return value if value in ("-", "", "syslog") else _resolve(value, base_dir)


def _directory(value: object, base_dir: str) -> str:
    """A directory path, resolved; never empty."""
    if not isinstance(value, str) or value in ("", "-"):
        raise InvalidValueError(f"expected a directory path, got {_show(value)}")
    if "\0" in value:
        raise InvalidValueError(f"a path cannot contain a NUL character, got {_show(value)}")
    return _resolve(value, base_dir)


# --- [cache] parsers ----------------------------------------------------------------


def _duration(value: object, base_dir: str) -> float:
    """A duration (L{parse_duration}) or a number of seconds, zero allowed."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise InvalidValueError(str(e)) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise InvalidValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")


def _fraction(value: object, base_dir: str) -> float:
    """A number from 0 to 1."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise InvalidValueError(f"expected a number from 0 to 1 like 0.1, got {_show(value)}")


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
        raise InvalidValueError(
            f"expected an array of tables like {_REFRESH_PATTERN_EXAMPLE}, got {_show(item)}"
        )
    unknown = [key for key in item if key not in _REFRESH_PATTERN_KEYS]
    if unknown:
        suggestion = _suggest(unknown[0], list(_REFRESH_PATTERN_KEYS))
        raise InvalidValueError(f"unknown key {unknown[0]} in a rule ({suggestion})")
    regex = item.get("regex")
    if not isinstance(regex, str):
        raise InvalidValueError(f"each rule needs a regex string, got {_show(regex)}")
    case_insensitive = _boolean(item.get("case_insensitive", False), "")
    try:
        re.compile(regex, re.IGNORECASE if case_insensitive else 0)
    except re.error as e:
        raise InvalidValueError(f"invalid regex {_quote(regex)}: {e}", element=regex) from None
    percent = item.get("percent", 20)
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not (math.isfinite(percent) and percent >= 0)
    ):
        raise InvalidValueError(
            f"percent: expected a number of at least 0, got {_show(percent)}", element=regex
        )
    low = _duration(item.get("min", 0), "")
    high = _duration(item.get("max", 3 * 86400), "")
    if low > high:
        raise InvalidValueError(
            f"min is more than max in the rule for {_quote(regex)}", element=regex
        )
    return RefreshPattern(regex, case_insensitive, low, float(percent), high)


def _refresh_patterns(value: object, base_dir: str) -> tuple[RefreshPattern, ...]:
    """An array of refresh rules (tables)."""
    if not isinstance(value, list):
        raise InvalidValueError(
            f"expected an array of tables like {_REFRESH_PATTERN_EXAMPLE}, got {_show(value)}"
        )
    return tuple(_refresh_rule(item) for item in value)


def _suggest(name: str, known: list[str]) -> str:
    """Suggest the closest known name, or list them all."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "expected one of " + ", ".join(known)


def _log_format(value: object, base_dir: str) -> str:
    """
    A preset name or a Squid logformat string, compiled here so that a bad
    code stops start-up (compiled formats are cached, so the service does not
    compile it again).
    """
    names = ", ".join(f'"{name}"' for name in PRESET_NAMES)
    if not isinstance(value, str):
        raise InvalidValueError(
            f"expected one of {names} or a format string with %codes, got {_show(value)}"
        )
    if value not in PRESET_NAMES and "%" not in value:
        raise InvalidValueError(
            f"expected one of {names} or a format string with %codes, got {_quote(value)}"
        )
    try:
        formatter(value)
    except FormatError as e:
        raise InvalidValueError(str(e)) from None
    return value


def _syslog_facility(value: object, base_dir: str) -> str:
    """Squid's C{facility.priority}, e.g. C{"local4.info"}."""
    if not isinstance(value, str):
        raise InvalidValueError(f'expected a facility like "local4.info", got {_show(value)}')
    try:
        syslog_priority(value)
    except ValueError as e:
        raise InvalidValueError(str(e)) from None
    return value


_SYSLOG_TAG = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _syslog_tag(value: object, base_dir: str) -> str:
    """A syslog tag: 1 to 32 letters, digits, C{_}, C{.} or C{-}."""
    if not isinstance(value, str) or not _SYSLOG_TAG.fullmatch(value):
        raise InvalidValueError(f"expected 1 to 32 letters, digits, _ . or -, got {_show(value)}")
    return value


def _workers(value: object, base_dir: str) -> int:
    """
    A number of worker processes, at least 1, or C{"auto"}: one per CPU
    this process may run on.
    """
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValueError(f'expected an integer of at least 1 or "auto", got {_show(value)}')
    return value


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _upgrade_protocols(value: object, base_dir: str) -> tuple[str, ...]:
    """
    Protocol names an C{Upgrade} may ask for (RFC 9110 §7.8): tokens,
    lower-cased, since they are compared case-insensitively; an empty
    array allows none.
    """
    names = value if isinstance(value, list) else None
    if names is None or not all(isinstance(n, str) and _TOKEN.fullmatch(n) for n in names):
        raise InvalidValueError(
            f'expected an array of protocol names like ["websocket"], got {_show(value)}'
        )
    return tuple(dict.fromkeys(cast(str, name).lower() for name in names))


def _account_name(value: object, base_dir: str) -> str:
    """A user or group name (or number), or C{""} for none."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?|", value):
        raise InvalidValueError(f'expected a user or group name like "proxy", got {_show(value)}')
    return value


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
