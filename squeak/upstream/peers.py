# -*- test-case-name: tests.test_upstream_peers -*-
"""
The configuration of a cache hierarchy: C{[[cache_peer]]} entries (Squid's
C{cache_peer}, C{cache_peer_access}) and the C{[hierarchy]} table (Squid's
C{never_direct}, C{always_direct}, C{prefer_direct}, the parents'
selection and their health checks).

Each C{[[cache_peer]]} is one parent proxy::

    [[cache_peer]]
    name = "north"
    host = "10.0.0.1"
    port = 3128
    login = "child:secret"          # or "PASSTHRU"
    access = ["allow localnet"]

The routing rules are rule lists over the same ACLs as C{http_access}:
an C{allow} that matches applies the rule to the request (C{never_direct =
["allow all"]}: every request through a parent).  Squid's C{prefer_direct}
is one on/off switch; here it is a rule list as well, C{["allow all"]}
being Squid's C{prefer_direct on}.

Only parents: siblings need ICP or HTCP to be asked whether they hold an
object, which squeak does not speak.  The selection and health settings
are the group's (one L{squeak.upstream.group.UpstreamGroup} of parents),
not per peer as on Squid's C{cache_peer} lines.

Pure: values in, frozen values out; errors are L{PeerConfigError}, which
the loader (L{squeak.config}) turns into a C{ConfigError} naming file,
key and line.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from squeak.access.acl import Acl
from squeak.access.rules import Action, RuleError, RuleList, compile_rules
from squeak.config_values import (
    InvalidValueError,
    _duration,
    _integer,
    _positive_duration,
    _rules,
    _show,
)
from squeak.upstream.selection import SelectionKind

__all__ = [
    "HIERARCHY_TABLE",
    "PASSTHRU",
    "PEER_TABLE",
    "CachePeer",
    "HierarchyConfig",
    "PeerConfigError",
    "ProbeKind",
    "parse_hierarchy",
]

#: The array of tables of parents, and the table of routing and health.
PEER_TABLE = "cache_peer"
HIERARCHY_TABLE = "hierarchy"

#: C{login} value that forwards the client's own C{Proxy-Authorization}.
PASSTHRU = "PASSTHRU"

#: A peer's name: what logs, pages and CARP's hash see (Squid hashes it).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: A host name or an IP address literal (IPv6 in brackets or bare).
_HOST = re.compile(r"\[?[A-Za-z0-9.:_-]{1,253}\]?")

#: Probe kinds: a TCP connect, or a cheap HTTP request whose any answer
#: counts; C{off} lets a down parent be tried again after C{fail_timeout}.
ProbeKind = str
_PROBES = ("tcp", "http", "off")

#: The selections a parent group may use (least-connections and hash are
#: the accelerator's).
_PARENT_SELECTIONS = (
    SelectionKind.FIRST_UP,
    SelectionKind.ROUND_ROBIN,
    SelectionKind.WEIGHTED_ROUND_ROBIN,
    SelectionKind.CARP,
)


class PeerConfigError(ValueError):
    """
    A C{[[cache_peer]]} or C{[hierarchy]} value cannot be used.

    @ivar key: The dotted key, e.g. C{cache_peer[2].port}.
    @ivar line: Its 1-based line in the text, or L{None}.
    """

    def __init__(self, key: str, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.key = key
        self.line = line


@dataclass(frozen=True, slots=True)
class CachePeer:
    """
    One parent proxy.

    @ivar name: Unique; the log's C{FIRSTUP_PARENT/name}, the 503 page, and
        what CARP hashes.
    @ivar host: Its host name or address.
    @ivar port: Its proxy port.
    @ivar tls: Whether to speak TLS to it, verified as origins are (its
        name against its certificate, C{upstream.ca_file} or the system's
        CAs).
    @ivar login: C{"user:password"} sent as Basic C{Proxy-Authorization},
        L{PASSTHRU} to send the client's own, or C{""} for none.  Never in
        C{repr}.
    @ivar weight: Its share for the weighted selections and CARP.
    @ivar connect_timeout: Seconds to connect; L{None}: C{timeouts.connect}.
    @ivar max_connections: Most connections to it carrying a request at
        once (0: no limit); a parent at its limit is skipped like one that
        is down.
    @ivar access: Which requests may use it (first match wins, none
        matching denies), or L{None} for every request.
    @ivar default: Squid's C{default}: a last-resort parent, tried after
        the others (C{DEFAULT_PARENT}), outside the selection.
    """

    name: str
    host: str
    port: int
    tls: bool = False
    login: str = field(default="", repr=False)
    weight: int = 1
    connect_timeout: float | None = None
    max_connections: int = 0
    access: RuleList | None = field(default=None, compare=False)
    default: bool = False

    @property
    def address(self) -> str:
        """C{host:port}, for logs and pages."""
        host = (
            f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        )
        return f"{host}:{self.port}"

    def proxy_authorization(self, client_value: bytes | None) -> bytes | None:
        """
        The C{Proxy-Authorization} value to send this parent: its own
        C{login}'s, or with L{PASSTHRU} the client's (which squeak otherwise
        never forwards, RFC 9110 §11.7.2), or none.
        """
        if not self.login:
            return None
        if self.login == PASSTHRU:
            return client_value
        return b"Basic " + base64.b64encode(self.login.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class HierarchyConfig:
    """
    The parents and how requests are routed to them.

    @ivar peers: The parents, in configuration order.
    @ivar selection: How the first parent to try is chosen.
    @ivar never_direct: Requests an C{allow} matches only go through
        parents (a 503 naming them when none is up).
    @ivar always_direct: Requests an C{allow} matches always go direct.
    @ivar prefer_direct: Requests an C{allow} matches go direct first,
        parents after; the others try parents first, direct last.
    @ivar max_fails: Connect failures within C{fail_timeout} that mark a
        parent down (Squid's C{connect-fail-limit}).
    @ivar fail_timeout: The window those failures count in, and without
        probing how long a down parent is left out.
    @ivar probe: How a down parent is probed: C{tcp}, C{http} or C{off}.
    @ivar probe_interval: Seconds between probes of a down parent.
    """

    peers: tuple[CachePeer, ...] = ()
    selection: SelectionKind = SelectionKind.FIRST_UP
    never_direct: RuleList | None = field(default=None, compare=False)
    always_direct: RuleList | None = field(default=None, compare=False)
    prefer_direct: RuleList | None = field(default=None, compare=False)
    max_fails: int = 10
    fail_timeout: float = 60.0
    probe: ProbeKind = "tcp"
    probe_interval: float = 10.0

    @property
    def enabled(self) -> bool:
        """Whether there is a hierarchy at all (else every request is direct)."""
        return bool(self.peers)

    def describe(self) -> list[str]:
        """
        The hierarchy in a few lines for C{check-config} (a login shows as
        set, never its password); nothing without parents.
        """
        if not self.peers:
            return []
        lines = []
        for peer in self.peers:
            notes = [f"weight {peer.weight}"]
            if peer.tls:
                notes.append("tls")
            if peer.login:
                notes.append("login PASSTHRU" if peer.login == PASSTHRU else "login set")
            if peer.max_connections:
                notes.append(f"max_connections {peer.max_connections}")
            if peer.default:
                notes.append("default")
            if peer.access is not None:
                notes.append("access: " + "; ".join(peer.access.texts))
            lines.append(f"parent:      {peer.name} {peer.address} ({', '.join(notes)})")
        routing = [f"selection {self.selection.value}"]
        for label, rules in (
            ("always_direct", self.always_direct),
            ("never_direct", self.never_direct),
            ("prefer_direct", self.prefer_direct),
        ):
            if rules is not None:
                routing.append(f"{label}: " + "; ".join(rules.texts))
        lines.append("hierarchy:   " + ", ".join(routing))
        probing = (
            "no probes"
            if self.probe == "off"
            else f"{self.probe} probe every {self.probe_interval:g}s"
        )
        lines.append(
            f"health:      down after {self.max_fails} connect failures in "
            f"{self.fail_timeout:g}s, {probing}"
        )
        return lines


#: The C{[hierarchy]} keys, with their documentation (docs/configuration.md
#: is tested against it).
HIERARCHY_KEYS: Mapping[str, str] = {
    "selection": 'how the first parent is chosen: "first-up", "round-robin", '
    '"weighted-round-robin" or "carp"',
    "never_direct": "rules: requests an allow matches only go through parents",
    "always_direct": "rules: requests an allow matches always go direct",
    "prefer_direct": "rules: requests an allow matches go direct first, parents after",
    "max_fails": "connect failures within fail_timeout that mark a parent down",
    "fail_timeout": "the window those failures count in",
    "probe": 'how a down parent is probed: "tcp", "http" or "off"',
    "probe_interval": "time between probes of a down parent",
}

#: The C{[[cache_peer]]} keys, with their documentation.
PEER_KEYS: Mapping[str, str] = {
    "name": "unique name, logged and hashed by CARP",
    "host": "host name or address of the parent",
    "port": "its proxy port",
    "type": 'only "parent"',
    "tls": "TLS to the parent",
    "login": '"user:password" sent as Proxy-Authorization, or "PASSTHRU"',
    "weight": "share for weighted selections and CARP",
    "connect_timeout": "time to connect to it",
    "max_connections": "most connections to it carrying a request (0: no limit)",
    "access": "rules: which requests may use it",
    "default": "a last-resort parent, tried after the others",
}


def _peer_line(text: str, index: int, key: str | None) -> int | None:
    """
    The line of C{key} in the C{index}-th (0-based) C{[[cache_peer]]}, or
    of its header; L{None} when not found.
    """
    header = re.compile(r"\s*\[\[\s*" + PEER_TABLE + r"\s*\]\]\s*(?:#.*)?")
    any_header = re.compile(r"\s*\[")
    seen = -1
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if header.fullmatch(line):
            seen += 1
            inside = seen == index
            if inside and key is None:
                return number
            continue
        if any_header.match(line):
            inside = False
            continue
        if inside and key is not None and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _table_line(text: str, key: str | None) -> int | None:
    """The line of C{key} in C{[hierarchy]}, or of the table's header."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if re.fullmatch(r"\s*\[\s*" + HIERARCHY_TABLE + r"\s*\]\s*(?:#.*)?", line):
            if key is None:
                return number
            inside = True
            continue
        if re.match(r"\s*\[", line):
            inside = False
            continue
        if inside and key is not None and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _compile(texts: Sequence[str], acls: Mapping[str, Acl]) -> RuleList | None:
    """An allow/deny rule list (none matching denies), or L{None} if empty."""
    if not texts:
        return None
    return compile_rules(texts, acls, Action.DENY)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidValueError(f"expected {what}, got {_show(value)}")
    return value


def _parse_peer(values: Mapping[str, object], acls: Mapping[str, Acl]) -> CachePeer:
    """
    One C{[[cache_peer]]} table.

    @raise InvalidValueError: With C{element} naming the key at fault
        (the caller turns it into a L{PeerConfigError}).
    """
    for key in values:
        if key not in PEER_KEYS:
            from squeak.config_values import _suggest

            raise InvalidValueError(f"unknown key ({_suggest(key, list(PEER_KEYS))})", key)
    for required in ("name", "host", "port"):
        if required not in values:
            raise InvalidValueError(f"a cache_peer needs {required}", None)

    def read(key: str, parse: Callable[[object, str], object]) -> object:
        """C{values[key]} through C{parse}; its error names C{key}."""
        try:
            return parse(values[key], "")
        except InvalidValueError as e:
            raise InvalidValueError(str(e), key) from None

    def number(key: str, minimum: int, default: int) -> int:
        if key not in values:
            return default
        value = read(key, _integer(minimum))
        assert isinstance(value, int)
        return value

    name = _string(values["name"], "a name")
    if not _NAME.fullmatch(name):
        raise InvalidValueError(
            f"a peer's name is letters, digits, '.', '_' and '-', got {_show(name)}", "name"
        )
    try:
        host = _string(values["host"], "a host name or address")
    except InvalidValueError as e:
        raise InvalidValueError(str(e), "host") from None
    if not _HOST.fullmatch(host):
        raise InvalidValueError(f"expected a host name or address, got {_show(host)}", "host")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = number("port", 1, 0)
    if port > 65535:
        raise InvalidValueError(f"expected a port 1-65535, got {_show(values['port'])}", "port")
    kind = values.get("type", "parent")
    if kind != "parent":
        raise InvalidValueError(
            f'only "parent" peers are supported (siblings need ICP/HTCP), got {_show(kind)}',
            "type",
        )
    tls = values.get("tls", False)
    if not isinstance(tls, bool):
        raise InvalidValueError(f"expected true or false, got {_show(tls)}", "tls")
    default = values.get("default", False)
    if not isinstance(default, bool):
        raise InvalidValueError(f"expected true or false, got {_show(default)}", "default")
    login = values.get("login", "")
    if not isinstance(login, str) or (
        login and login != PASSTHRU and (":" not in login or re.search(r"[\x00-\x1f\x7f]", login))
    ):
        # The value is never shown: it holds a password.
        raise InvalidValueError(
            'expected "user:password" (no control characters) or "PASSTHRU"', "login"
        )
    connect_timeout = None
    if "connect_timeout" in values:
        seconds = read("connect_timeout", _positive_duration)
        assert isinstance(seconds, float)
        connect_timeout = seconds
    access = None
    if "access" in values:
        texts = read("access", lambda value, _: _rules(value, "allow localnet"))
        assert isinstance(texts, tuple)
        try:
            access = _compile(texts, acls)
        except RuleError as e:
            raise InvalidValueError(str(e), "access") from None
    return CachePeer(
        name,
        host,
        port,
        tls=tls,
        login=login,
        weight=number("weight", 1, 1),
        connect_timeout=connect_timeout,
        max_connections=number("max_connections", 0, 0),
        access=access,
        default=default,
    )


def parse_hierarchy(
    peers: object, table: object, acls: Mapping[str, Acl], text: str
) -> HierarchyConfig:
    """
    Read the C{[[cache_peer]]} array and the C{[hierarchy]} table.

    @param peers: The TOML value of C{cache_peer} (a list of tables), or
        L{None}.
    @param table: The TOML value of C{hierarchy} (a table), or L{None}.
    @param acls: Every ACL by name, for the rules.
    @param text: The configuration's text, to find lines.
    @raise PeerConfigError: For the first unusable value.
    """
    parsed: list[CachePeer] = []
    if peers is not None:
        if not isinstance(peers, list):
            raise PeerConfigError(
                PEER_TABLE,
                "expected [[cache_peer]] tables (an array of tables)",
                _peer_line(text, 0, None),
            )
        for index, values in enumerate(peers):
            where = f"{PEER_TABLE}[{index + 1}]"
            if not isinstance(values, dict):
                raise PeerConfigError(where, "expected a table", _peer_line(text, index, None))
            try:
                peer = _parse_peer(values, acls)
            except InvalidValueError as e:
                key = f"{where}.{e.element}" if e.element else where
                raise PeerConfigError(key, str(e), _peer_line(text, index, e.element)) from None
            if any(other.name == peer.name for other in parsed):
                raise PeerConfigError(
                    f"{where}.name",
                    f"the name {_show(peer.name)} is used by another cache_peer",
                    _peer_line(text, index, "name"),
                )
            parsed.append(peer)
    options: dict[str, object] = {}
    if table is not None:
        if not isinstance(table, dict):
            raise PeerConfigError(HIERARCHY_TABLE, "expected a table", _table_line(text, None))
        options = dict(table)
    settings: dict[str, Any] = {}
    for key, value in options.items():
        where = f"{HIERARCHY_TABLE}.{key}"
        try:
            settings[key] = _parse_option(key, value, acls)
        except (InvalidValueError, RuleError) as e:
            raise PeerConfigError(where, str(e), _table_line(text, key)) from None
    if not parsed and any(key in settings for key in ("never_direct", "prefer_direct")):
        key = "never_direct" if "never_direct" in settings else "prefer_direct"
        raise PeerConfigError(
            f"{HIERARCHY_TABLE}.{key}",
            "routing rules need at least one [[cache_peer]]",
            _table_line(text, key),
        )
    return HierarchyConfig(tuple(parsed), **settings)


def _parse_option(key: str, value: object, acls: Mapping[str, Acl]) -> object:
    """One C{[hierarchy]} value."""
    if key == "selection":
        choices = [kind.value for kind in _PARENT_SELECTIONS]
        if value not in choices:
            raise InvalidValueError(f"expected one of {', '.join(choices)}, got {_show(value)}")
        return SelectionKind(value)
    if key in ("never_direct", "always_direct", "prefer_direct"):
        return _compile(_rules(value, "allow all"), acls)
    if key == "max_fails":
        return _integer(1)(value, "")
    if key == "fail_timeout":
        return _positive_duration(value, "")
    if key == "probe_interval":
        seconds = _duration(value, "")
        if seconds < 0.1:
            raise InvalidValueError(f"expected at least 0.1s, got {_show(value)}")
        return seconds
    if key == "probe":
        if value not in _PROBES:
            raise InvalidValueError(f"expected one of {', '.join(_PROBES)}, got {_show(value)}")
        return value
    from squeak.config_values import _suggest

    raise InvalidValueError(f"unknown key ({_suggest(key, list(HIERARCHY_KEYS))})")
