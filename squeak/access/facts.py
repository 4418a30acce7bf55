# -*- test-case-name: tests.test_access_acl -*-
"""
What ACLs look at and how they match fast: L{Facts} (the values the I/O
layer collected about one request), the host and address normalisation
every ACL kind shares, and the compiled matchers (L{AddressSet},
L{DomainSet}) that L{squeak.access.acl} builds from configuration.

This module is pure: it imports no Twisted and never reads the clock (the
local time is a fact passed in).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import idna

from squeak.values import IPNetwork
from squeak.values import quote as _quote

__all__ = [
    "AddressSet",
    "DomainSet",
    "Facts",
    "IPAddress",
    "LocalTime",
    "PortSet",
    "address_literal",
    "client_address",
    "hashed_address",
    "normalize_domain",
    "normalize_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- Facts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalTime:
    """
    The proxy's local time, as the C{time} ACL sees it.

    @ivar weekday: 0 for Monday to 6 for Sunday (L{datetime.weekday}).
    @ivar minute: Minutes since local midnight, 0 to 1439.
    """

    weekday: int
    minute: int

    @classmethod
    def of(cls, moment: datetime | time.struct_time) -> LocalTime:
        """
        Take the weekday and minute of a local C{datetime} or of
        C{time.localtime(seconds)}.
        """
        if isinstance(moment, datetime):
            return cls(moment.weekday(), moment.hour * 60 + moment.minute)
        return cls(moment.tm_wday, moment.tm_hour * 60 + moment.tm_min)


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class Facts:
    """
    What the I/O layer knows about one request, in the forms the ACLs match.

    @ivar client_ip: The client's address; an IPv4-mapped IPv6 address must
        be given as the IPv4 address (L{client_address} does that).
    @ivar method: The request method, case-sensitive (RFC 9110 §9.1).
    @ivar scheme: C{"http"} or C{"https"} for an absolute URI, C{"authority"}
        for C{CONNECT} (as Squid 5 names it).
    @ivar host: The target host, lower-case ASCII (L{normalize_host}), an
        IPv6 literal without brackets.
    @ivar port: The target port.
    @ivar url: The absolute URI (C{host:port} for C{CONNECT}).
    @ivar path: The path and query (empty for C{CONNECT}).
    @ivar now_local: The proxy's local time.
    @ivar dst_addresses: The destination's addresses: L{None} if not looked
        up yet, C{()} if the lookup failed. An IP-literal host needs no
        lookup (L{address_literal}).
    @ivar user: The user name, only once its password has been verified.
    @ivar user_agent: The C{User-Agent} value, or L{None} if absent.
    @ivar client_connections: Connections now open from C{client_ip}, this
        one included.
    """

    client_ip: IPAddress
    method: str
    scheme: str
    host: str
    port: int
    url: str
    path: str
    now_local: LocalTime
    dst_addresses: tuple[IPAddress, ...] | None = None
    user: str | None = None
    user_agent: str | None = None
    client_connections: int = 1


def client_address(text: str) -> IPAddress:
    """
    Parse the peer address a listener reports: a zone index (C{%eth0}) is
    dropped and an IPv4-mapped IPv6 address (C{::ffff:192.0.2.1}, what a
    dual-stack socket reports) becomes the IPv4 address it carries, so that
    IPv4 C{src} entries match it.

    @raise ValueError: If C{text} is not an IP address.
    """
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _stored_hash(address: Any) -> int:
    """The hash a hashed address was given when it was made."""
    return address._hash  # type: ignore[no-any-return]


def _standard_repr(address: Any) -> str:
    """The standard class's repr: C{IPv4Address('10.0.0.1')}."""
    return f"IPv{address.version}Address({str(address)!r})"


class _HashedIPv4Address(ipaddress.IPv4Address):
    """
    An C{IPv4Address} that computes its hash once: the verdict memo
    (L{squeak.access.rules.evaluate}) hashes the client's and the
    destination's addresses on every request, and the standard class
    computes C{hash(hex(int(self)))} each time (three times the cost of
    the rest of the key).  Equal to, and hashed as, the standard address.
    """

    __slots__ = ("_hash",)
    _hash: int
    __hash__ = _stored_hash
    __repr__ = _standard_repr


class _HashedIPv6Address(ipaddress.IPv6Address):
    """L{_HashedIPv4Address} for IPv6 (without a zone: L{client_address})."""

    __slots__ = ("_hash",)
    _hash: int
    __hash__ = _stored_hash
    __repr__ = _standard_repr


def hashed_address(address: IPAddress) -> IPAddress:
    """
    An address equal to C{address} whose hash is computed once, for
    addresses that are hashed on every request (the facts the access
    rules' verdict memo is keyed by); make it once per address.
    """
    hashed: _HashedIPv4Address | _HashedIPv6Address
    if isinstance(address, ipaddress.IPv4Address):
        hashed = _HashedIPv4Address(address.packed)
    else:
        hashed = _HashedIPv6Address(address.packed)
    hashed._hash = hash(address)
    return hashed


def address_literal(host: str) -> tuple[IPAddress, ...] | None:
    """
    The destination address of an IP-literal host, which needs no lookup.

    @return: A one-address tuple, or L{None} if C{host} is a name.
    """
    try:
        return (client_address(host),)
    except ValueError:
        return None


_DOMAIN = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
)


def normalize_host(host: str) -> str:
    """
    Put a host name in the form L{Facts.host} and C{dstdomain} entries share:
    lower-case, without a trailing dot, internationalized names as their
    ASCII (A-label, C{xn--}) form (IDNA 2008 with UTS 46 mapping).

    A name that cannot be encoded is returned lower-cased: it then matches no
    C{dstdomain} entry, and the origin lookup fails on it anyway.
    """
    host = host.rstrip(".")
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return host.lower()


def normalize_domain(entry: str) -> tuple[str, bool]:
    """
    Normalize one C{dstdomain} entry.

    @return: The normalized name and whether it is a suffix entry (written
        with a leading dot, C{.example.com}).
    @raise ValueError: If C{entry} is not a host name or IP address.
    """
    text = entry.strip()
    suffix = text.startswith(".")
    name = text[1:] if suffix else text
    name = name.rstrip(".")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise ValueError(f"{_quote(entry)} is not a valid domain name ({e})") from None
    name = name.lower()
    if not suffix and ":" in name:
        try:
            return str(ipaddress.IPv6Address(name)), False
        except ValueError:
            pass
    if not _DOMAIN.fullmatch(name) or len(name) > 253:
        raise ValueError(
            f'expected a domain like "example.com" or ".example.com", got {_quote(entry)}'
        )
    return name, suffix


# --- Matchers ------------------------------------------------------------------


class AddressSet:
    """
    A set of IP networks that answers membership in one binary search.

    The networks of each address family are merged into sorted, disjoint
    intervals of integers; an address is in the set if the interval that
    starts at or before it ends at or after it.
    """

    __slots__ = ("_ends4", "_ends6", "_starts4", "_starts6")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        """
        @param networks: The networks; they may overlap and be in any order.
        """
        v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
        self._starts4, self._ends4 = self._intervals(v4)
        self._starts6, self._ends6 = self._intervals(v6)

    @staticmethod
    def _intervals(networks: Sequence[IPNetwork]) -> tuple[list[int], list[int]]:
        """Merge networks into sorted, disjoint start and end lists."""
        starts: list[int] = []
        ends: list[int] = []
        for network in ipaddress.collapse_addresses(networks):  # type: ignore[type-var]
            starts.append(int(network.network_address))
            ends.append(int(network.broadcast_address))
        return starts, ends

    def __contains__(self, address: IPAddress) -> bool:
        """Whether C{address} is in one of the networks."""
        if isinstance(address, ipaddress.IPv4Address):
            starts, ends = self._starts4, self._ends4
        else:
            mapped = address.ipv4_mapped
            if mapped is not None:
                return mapped in self
            starts, ends = self._starts6, self._ends6
        number = int(address)
        i = bisect.bisect_right(starts, number) - 1
        return i >= 0 and number <= ends[i]


class DomainSet:
    """
    Exact and suffix domain entries, as Squid's C{dstdomain}: C{example.com}
    matches only that name; C{.example.com} matches it and every name below
    it. A lookup probes one hash set per label suffix of the host.
    """

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, entries: Iterable[tuple[str, bool]]) -> None:
        """
        @param entries: C{(name, is_suffix)} pairs from L{normalize_domain}.
        """
        exact: set[str] = set()
        suffixes: set[str] = set()
        for name, suffix in entries:
            (suffixes if suffix else exact).add(name)
        self._exact = frozenset(exact)
        self._suffixes = frozenset(suffixes)

    def __contains__(self, host: str) -> bool:
        """Whether the normalized C{host} matches an entry."""
        if host in self._exact:
            return True
        suffixes = self._suffixes
        if not suffixes:
            return False
        while True:
            if host in suffixes:
                return True
            dot = host.find(".")
            if dot < 0:
                return False
            host = host[dot + 1 :]


class PortSet:
    """
    Ports and port ranges as a 64 KiB table of flags: one index per request,
    whatever the ranges (C{Safe_ports} has C{1025-65535}).
    """

    __slots__ = ("_flags",)

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        flags = bytearray(65536)
        for low, high in ranges:
            low, high = max(low, 0), min(high, 65535)
            if low <= high:
                flags[low : high + 1] = b"\x01" * (high - low + 1)
        self._flags = bytes(flags)

    def __contains__(self, port: int) -> bool:
        return 0 <= port <= 65535 and self._flags[port] == 1
