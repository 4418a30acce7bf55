# -*- test-case-name: tests.test_access_acl -*-
"""
ACLs: named conditions on a request, compiled once into fast matchers.

An ACL is Squid's "what to look at" times "how to match" (C{src/AclRegs.cc}):
C{src} looks at the client address and matches it against a set of networks,
C{dstdomain} looks at the host name and matches it against a set of domains,
and so on. Each kind is compiled at configuration load into a matcher over
L{Facts}, the values the I/O layer collected about one request:

  - address sets (C{src}, C{dst}) are merged into sorted, disjoint intervals
    searched with L{bisect}, one C-level binary search per address;
  - domain sets (C{dstdomain}) are two hash sets, probed once per label
    suffix of the host, so 100,000 entries cost what 10 do;
  - ports are a set plus a few ranges; regexes are compiled once.

The facts and the matchers themselves (L{Facts}, L{AddressSet},
L{DomainSet}, host normalisation) are in L{squeak.access.facts}.

Every ACL says what it needs (L{Need}): a resolved destination address
(C{dst}) or an authenticated user (C{proxy_auth}). The rules evaluator asks
the I/O layer for those only when a rule reaching the ACL needs them.

This module is pure: it imports no Twisted, never reads the clock (the local
time is a fact passed in) and touches the file system only to read the entry
files an ACL names, at load time.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from squeak.access.facts import (
    AddressSet,
    DomainSet,
    Facts,
    IPAddress,
    LocalTime,
    PortSet,
    address_literal,
    client_address,
    normalize_domain,
    normalize_host,
)
from squeak.values import IPNetwork, parse_network
from squeak.values import is_open as _is_open
from squeak.values import quote as _quote

__all__ = [
    "BUILTIN_ACLS",
    "KINDS",
    "Acl",
    "AclError",
    "AddressSet",
    "DomainSet",
    "Facts",
    "IPAddress",
    "LocalTime",
    "Need",
    "address_literal",
    "builtin_acls",
    "client_address",
    "compile_acl",
    "compile_acls",
    "normalize_domain",
    "normalize_host",
]


class AclError(ValueError):
    """
    An ACL definition cannot be used; the configuration loader adds the file
    and line.

    @ivar name: The ACL's name, or L{None} if not known.
    @ivar element: The string entry at fault as written in the configuration,
        used to find its line; L{None} otherwise.
    """

    def __init__(self, problem: str, name: str | None = None, element: str | None = None) -> None:
        super().__init__(problem)
        self.name = name
        self.element = element


# --- Entry parsers -----------------------------------------------------------------


def _network(entry: str) -> IPNetwork:
    """A CIDR network, strictly; a bare address is one host."""
    return parse_network(entry.strip())


_PORT_RANGE = re.compile(r"\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?")


def _port_range(entry: str) -> tuple[int, int]:
    """A port C{"80"} or an inclusive range C{"1025-65535"}."""
    match = _PORT_RANGE.fullmatch(entry)
    if match is None:
        raise ValueError(
            f'expected a port like 443 or a range like "1025-65535", got {_quote(entry)}'
        )
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if high > 65535:
        raise ValueError(f"ports go up to 65535, got {_quote(entry)}")
    if low > high:
        raise ValueError(f"the range {_quote(entry)} ends before it starts")
    return low, high


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _method(entry: str) -> str:
    """An HTTP method token, upper-case as clients send the standard ones."""
    if not _TOKEN.fullmatch(entry):
        raise ValueError(f'expected a method like "GET" or "CONNECT", got {_quote(entry)}')
    if entry != entry.upper():
        raise ValueError(
            f"methods are case-sensitive (RFC 9110 §9.1) and {_quote(entry)} would match "
            f"nothing clients send (did you mean {_quote(entry.upper())}?)"
        )
    return entry


#: Schemes a request can have: absolute URIs, and CONNECT's authority-form.
PROTOCOLS = ("http", "https", "authority")


def _proto(entry: str) -> str:
    """A scheme, case-insensitive."""
    name = entry.strip().lower()
    if name not in PROTOCOLS:
        close = difflib.get_close_matches(name, PROTOCOLS, n=1)
        hint = (
            f"did you mean {_quote(close[0])}?"
            if close
            else "expected one of " + ", ".join(_quote(p) for p in PROTOCOLS)
        )
        raise ValueError(f"unknown protocol {_quote(entry)} ({hint})")
    return name


def _regex(flags: int) -> Callable[[str], re.Pattern[str]]:
    """Make a parser compiling a regex with C{flags}."""

    def parse(entry: str) -> re.Pattern[str]:
        if entry in ("-i", "+i"):
            raise ValueError(
                f"{_quote(entry)} is Squid syntax; write case_insensitive = true in the ACL"
            )
        try:
            return re.compile(entry, flags)
        except re.error as e:
            raise ValueError(f"invalid regular expression {_quote(entry)}: {e}") from None

    return parse


#: Squid's day letters; C{D} is Monday to Friday.
_DAY_LETTERS: Mapping[str, tuple[int, ...]] = {
    "M": (0,),
    "T": (1,),
    "W": (2,),
    "H": (3,),
    "F": (4,),
    "A": (5,),
    "S": (6,),
    "D": (0, 1, 2, 3, 4),
}
_DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_FULL_DAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")

_TIME_EXPECTED = 'expected days and/or a time range like "MTWHF 08:00-18:00" or "sat,sun"'


def _days(token: str) -> int | None:
    """A day mask from Squid letters or comma-separated names; L{None} if neither."""
    mask = 0
    if token.isupper() and all(letter in _DAY_LETTERS for letter in token):
        for letter in token:
            for day in _DAY_LETTERS[letter]:
                mask |= 1 << day
        return mask
    for name in token.lower().split(","):
        if name in _DAY_NAMES:
            mask |= 1 << _DAY_NAMES.index(name)
        elif name in _FULL_DAY_NAMES:
            mask |= 1 << _FULL_DAY_NAMES.index(name)
        else:
            return None
    return mask


def _time(entry: str) -> tuple[int, int, int]:
    """
    A C{time} entry: days (Squid letters C{SMTWHFA}, C{D} for weekdays, or
    names C{mon,tue}) and/or C{HH:MM-HH:MM}, start included, end excluded.

    @return: C{(day mask, first minute, end minute)}.
    """
    tokens = entry.split()
    if not tokens or len(tokens) > 2:
        raise ValueError(f"{_TIME_EXPECTED}, got {_quote(entry)}")
    mask, start, end = 0b1111111, 0, 24 * 60
    clock = _CLOCK.fullmatch(tokens[-1])
    if clock is not None:
        h1, m1, h2, m2 = (int(g) for g in clock.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
            raise ValueError(f"times go from 00:00 to 24:00, got {_quote(entry)}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start >= end:
            raise ValueError(
                f"the range in {_quote(entry)} ends before it starts; a range across "
                'midnight is two entries, e.g. "22:00-24:00" and "00:00-06:00"'
            )
        tokens = tokens[:-1]
    if tokens:
        days = _days(tokens[0])
        if days is None:
            raise ValueError(f"{_TIME_EXPECTED}, got {_quote(entry)}")
        mask = days
    return mask, start, end


_USER = re.compile(r"[^\x00-\x1f\x7f:]+")


def _user(entry: str) -> str:
    """A user name, as in the htpasswd file (no colon, no control character)."""
    if not _USER.fullmatch(entry):
        raise ValueError(f'expected a user name or "REQUIRED", got {_quote(entry)}')
    return entry


# --- ACLs --------------------------------------------------------------------------


class Need(enum.IntEnum):
    """
    What an ACL needs beyond what every request has, in evaluation order:
    within a rule, ACLs needing nothing are evaluated first, then those
    needing a destination address, then those needing a user.
    """

    NOTHING = 0
    DESTINATION = 1
    USER = 2


@dataclass(frozen=True, slots=True)
class Acl:
    """
    One compiled ACL.

    @ivar name: Its name in the configuration.
    @ivar kind: One of L{KINDS}.
    @ivar entries: The entries normalized, as strings (inline and file
        entries together), for display and comparison.
    @ivar case_insensitive: For the regex kinds, whether C{case_insensitive}
        was set.
    @ivar builtin: Whether this is a built-in definition.
    @ivar need: What the matcher needs (L{Need}).
    @ivar match: The matcher: L{Facts} to whether they match. Callers must
        not call it when C{need} is not met (the rules evaluator does not).
    """

    name: str
    kind: str
    entries: tuple[str, ...]
    case_insensitive: bool = False
    builtin: bool = False
    need: Need = field(default=Need.NOTHING, compare=False)
    match: Callable[[Facts], bool] = field(default=lambda facts: False, compare=False, repr=False)

    @property
    def restricts_clients(self) -> bool:
        """
        Whether a positive use of this ACL narrows down who the client is:
        a C{src} ACL not covering a whole address family, or C{proxy_auth}.
        Used to refuse rules that would make an open proxy.
        """
        if self.kind == "proxy_auth":
            return True
        if self.kind != "src":
            return False
        return not any(_is_open(_network(entry)) for entry in self.entries)

    def describe(self, limit: int = 6) -> str:
        """
        Show the ACL as a configuration line: kind and entries, the list
        shortened past C{limit} entries.
        """
        shown = ", ".join(self.entries[:limit])
        if len(self.entries) > limit:
            shown += f", ... ({len(self.entries)} entries)"
        flags = " (case-insensitive)" if self.case_insensitive else ""
        origin = " (built-in)" if self.builtin else ""
        return f"{self.kind} {shown or '(no entries: never matches)'}{flags}{origin}"

    def with_destinations(self, networks: Iterable[IPNetwork]) -> Acl:
        """
        A copy of this C{dst} ACL with more networks; used by the I/O layer
        to add the proxy's own addresses to C{to_localhost}.

        @raise ValueError: If this is not a C{dst} ACL.
        """
        if self.kind != "dst":
            raise ValueError(f"{self.name} is a {self.kind} ACL, not a dst ACL")
        entries = list(self.entries)
        entries += [str(n) for n in networks if str(n) not in entries]
        return _build(self.name, "dst", [(e, None) for e in entries], False, self.builtin)


#: Kinds whose entries are regexes, which accept C{case_insensitive}.
_REGEX_KINDS = ("url_regex", "urlpath_regex", "browser")

#: Every ACL kind, with what it looks at, in the order docs/access.md lists them.
KINDS: Mapping[str, str] = {
    "src": "the client's address, against networks",
    "dst": "the destination's resolved addresses, against networks",
    "dstdomain": "the destination host, against exact names or .suffixes",
    "port": "the destination port, against ports and ranges",
    "method": "the request method",
    "proto": "the request scheme: http, https, or authority for CONNECT",
    "url_regex": "the absolute URL, against regular expressions",
    "urlpath_regex": "the path and query, against regular expressions",
    "time": "the proxy's local day and time",
    "proxy_auth": "the authenticated user: REQUIRED (anyone) or user names",
    "maxconn": "the client's open connections: more than N",
    "browser": "the User-Agent header, against regular expressions",
}

#: Where an entry came from, for messages: L{None} inline, else "file:line".
_Entry = tuple[str, str | None]

_T = TypeVar("_T")


def _searcher(patterns: Sequence[re.Pattern[str]]) -> Callable[[str], bool]:
    """Whether any of C{patterns} is found in a string, with a fast path for one."""
    if len(patterns) == 1:
        search = patterns[0].search

        def found_one(text: str) -> bool:
            return search(text) is not None

        return found_one
    searches = tuple(p.search for p in patterns)

    def found_any(text: str) -> bool:
        for search in searches:  # noqa: SIM110 - a loop, not any(generator): 3x faster
            if search(text) is not None:
                return True
        return False

    return found_any


def _parse_entries(name: str, entries: Sequence[_Entry], parse: Callable[[str], _T]) -> list[_T]:
    """
    Parse each entry; an error names the entry (inline) or its file and line.

    @raise AclError: For the first unusable entry.
    """
    parsed = []
    for text, where in entries:
        try:
            parsed.append(parse(text))
        except ValueError as e:
            if where is None:
                raise AclError(str(e), name, text) from None
            raise AclError(f"{where}: {e}", name) from None
    return parsed


def _build(
    name: str, kind: str, entries: Sequence[_Entry], case_insensitive: bool, builtin: bool
) -> Acl:
    """
    Parse C{entries} for C{kind} and build the L{Acl} and its matcher.

    @raise AclError: For the first unusable entry.
    """

    def each(parse: Callable[[str], _T]) -> list[_T]:
        return _parse_entries(name, entries, parse)

    match: Callable[[Facts], bool]
    need = Need.NOTHING
    shown: list[str]
    if kind in ("src", "dst"):
        networks = each(_network)
        shown = [str(n) for n in networks]
        addresses = AddressSet(networks)
        if kind == "src":
            contains = addresses.__contains__

            def match(facts: Facts) -> bool:
                return contains(facts.client_ip)

        else:
            need = Need.DESTINATION

            def match(facts: Facts) -> bool:
                for address in facts.dst_addresses or ():  # noqa: SIM110 - a loop, not any(generator): 3x faster
                    if address in addresses:
                        return True
                return False

    elif kind == "dstdomain":
        domains = each(normalize_domain)
        shown = [("." if suffix else "") + d for d, suffix in domains]
        domain_set = DomainSet(domains)
        in_domains = domain_set.__contains__

        def match(facts: Facts) -> bool:
            return in_domains(facts.host)

    elif kind == "port":
        ranges = each(_port_range)
        shown = [str(low) if low == high else f"{low}-{high}" for low, high in ranges]
        in_ports = PortSet(ranges).__contains__

        def match(facts: Facts) -> bool:
            return in_ports(facts.port)

    elif kind in ("method", "proto"):
        values = each(_method if kind == "method" else _proto)
        shown = values
        value_set = frozenset(values)
        if kind == "method":

            def match(facts: Facts) -> bool:
                return facts.method in value_set

        else:

            def match(facts: Facts) -> bool:
                return facts.scheme in value_set

    elif kind in _REGEX_KINDS:
        patterns = each(_regex(re.IGNORECASE if case_insensitive else 0))
        shown = [p.pattern for p in patterns]
        found = _searcher(patterns)
        if kind == "url_regex":

            def match(facts: Facts) -> bool:
                return found(facts.url)

        elif kind == "urlpath_regex":

            def match(facts: Facts) -> bool:
                return found(facts.path)

        else:

            def match(facts: Facts) -> bool:
                agent = facts.user_agent
                return agent is not None and found(agent)

    elif kind == "time":
        spans = each(_time)
        shown = [text.strip() for text, _ in entries]

        def match(facts: Facts) -> bool:
            now = facts.now_local
            day = 1 << now.weekday
            minute = now.minute
            for mask, start, end in spans:  # noqa: SIM110 - a loop, not any(generator): 3x faster
                if mask & day and start <= minute < end:
                    return True
            return False

    elif kind == "proxy_auth":
        need = Need.USER
        texts = [text for text, _ in entries]
        if "REQUIRED" in texts:
            if len(texts) > 1:
                raise AclError(
                    '"REQUIRED" (any authenticated user) cannot be mixed with user names',
                    name,
                    "REQUIRED",
                )
            shown = ["REQUIRED"]

            def match(facts: Facts) -> bool:
                return facts.user is not None

        else:
            users = frozenset(each(_user))
            shown = sorted(users)

            def match(facts: Facts) -> bool:
                return facts.user in users

    elif kind == "maxconn":
        limit = int(entries[0][0])
        shown = [str(limit)]

        def match(facts: Facts) -> bool:
            return facts.client_connections > limit

    else:  # pragma: no cover - kinds are checked by the callers
        raise AclError(f"unknown ACL type {_quote(kind)}", name)
    return Acl(name, kind, tuple(shown), case_insensitive, builtin, need, match)


def _read_entries(path: str, base_dir: str, name: str) -> list[_Entry]:
    """
    Read entries from a file, one per line; blank lines and lines starting
    with C{#} are skipped.
    """
    full = os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))
    try:
        with open(full, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AclError(f"cannot read {_quote(path)}: {e.strerror or e}", name, path) from None
    except UnicodeDecodeError as e:
        raise AclError(
            f"cannot read {_quote(path)}: not UTF-8 (byte {e.start})", name, path
        ) from None
    entries: list[_Entry] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            entries.append((text, f"{path}:{number}"))
    return entries


def _show(value: object) -> str:
    """Show a TOML value in a message."""
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a " + type(value).__name__


_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def compile_acl(name: str, spec: object, base_dir: str) -> Acl:
    """
    Compile one ACL from its TOML value: a table with exactly one kind key,
    e.g. C{{ src = ["10.0.0.0/8"] }}, optionally C{<kind>_file} naming files
    of more entries (relative to C{base_dir}), and for the regex kinds
    C{case_insensitive = true}.

    @raise AclError: If the definition is unusable; the message says why.
    """
    if not _NAME.fullmatch(name):
        raise AclError(
            f"ACL names are letters, digits, '_', '-' and '.', got {_quote(name)}", name
        )
    if not isinstance(spec, dict):
        raise AclError(
            f'expected a table like {{ src = ["10.0.0.0/8"] }}, got {_show(spec)}', name
        )
    keys = list(spec)
    file_kinds = {key[: -len("_file")] for key in keys if key.endswith("_file")}
    kinds = sorted({key for key in keys if key in KINDS} | (file_kinds & set(KINDS)))
    known = [*KINDS, *(f"{k}_file" for k in KINDS if k != "maxconn"), "case_insensitive"]
    for key in keys:
        if key not in known or key == "maxconn_file":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "expected one of " + ", ".join(KINDS)
            raise AclError(f"unknown ACL type or option {_quote(key)} ({hint})", name)
    if len(kinds) != 1:
        problem = (
            "an ACL has exactly one type, got " + " and ".join(kinds)
            if kinds
            else "an ACL needs a type, one of " + ", ".join(KINDS)
        )
        raise AclError(problem, name)
    kind = kinds[0]
    case_insensitive = spec.get("case_insensitive", False)
    if not isinstance(case_insensitive, bool):
        raise AclError(
            f"case_insensitive: expected true or false, got {_show(case_insensitive)}", name
        )
    if "case_insensitive" in spec and kind not in _REGEX_KINDS:
        raise AclError(
            f"case_insensitive applies to {', '.join(_REGEX_KINDS)} only "
            + ("(dstdomain always ignores case)" if kind == "dstdomain" else f"not {kind}"),
            name,
        )
    entries: list[_Entry] = []
    value = spec.get(kind, [])
    if kind == "maxconn":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AclError(f"maxconn: expected an integer of at least 0, got {_show(value)}", name)
        entries.append((str(value), None))
    else:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if kind == "port" and isinstance(item, int) and not isinstance(item, bool):
                entries.append((str(item), None))
            elif isinstance(item, str):
                entries.append((item, None))
            else:
                example = '[80, "1025-65535"]' if kind == "port" else '["..."]'
                raise AclError(
                    f"{kind}: expected a string or an array of strings like {example}, "
                    f"got {_show(value)}",
                    name,
                )
        paths = spec.get(f"{kind}_file", [])
        for path in paths if isinstance(paths, list) else [paths]:
            if not isinstance(path, str) or not path or "\0" in path:
                raise AclError(f"{kind}_file: expected a file path, got {_show(path)}", name)
            entries += _read_entries(path, base_dir, name)
    if kind == "proxy_auth" and not entries:
        raise AclError('proxy_auth needs "REQUIRED" or at least one user name', name)
    return _build(name, kind, entries, case_insensitive, builtin=False)


#: The built-in ACLs as TOML values, overridable by name (except C{all}).
BUILTIN_ACLS: Mapping[str, Mapping[str, list[str]]] = {
    "all": {"src": ["0.0.0.0/0", "::/0"]},
    "localhost": {"src": ["127.0.0.1/32", "::1/128"]},
    "to_localhost": {"dst": ["127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128"]},
    "localnet": {
        "src": [
            "10.0.0.0/8",  # RFC 1918
            "172.16.0.0/12",  # RFC 1918
            "192.168.0.0/16",  # RFC 1918
            "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
            "169.254.0.0/16",  # RFC 3927 link-local
            "127.0.0.0/8",  # loopback
            "fc00::/7",  # RFC 4193 unique local
            "fe80::/10",  # RFC 4291 link-local
            "::1/128",  # loopback
        ]
    },
    "SSL_ports": {"port": ["443"]},
    "Safe_ports": {
        "port": ["80", "443", "21", "70", "210", "280", "488", "591", "777", "1025-65535"]
    },
    "CONNECT": {"method": ["CONNECT"]},
}


def builtin_acls() -> dict[str, Acl]:
    """Compile the built-in ACLs."""
    acls = {}
    for name, spec in BUILTIN_ACLS.items():
        ((kind, values),) = spec.items()
        acls[name] = _build(name, kind, [(v, None) for v in values], False, builtin=True)
    return acls


def compile_acls(table: Mapping[str, object], base_dir: str) -> dict[str, Acl]:
    """
    Compile the C{[acl]} table over the built-ins: a definition replaces the
    built-in of the same name, except C{all}, which cannot be redefined.

    @return: Every ACL by name, built-ins first.
    @raise AclError: For the first unusable definition.
    """
    acls = builtin_acls()
    for name, spec in table.items():
        if name == "all":
            raise AclError("all is built in (every client) and cannot be redefined", name)
        acls[name] = compile_acl(name, spec, base_dir)
    return acls
