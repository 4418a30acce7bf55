# -*- test-case-name: tests.test_proxyheader -*-
"""
The PROXY protocol (HAProxy's, versions 1 and 2) as squeak takes it: the
C{[proxy_protocol]} table, who may send a header, and where a header ends.

Behind a TCP load balancer every connection comes from the balancer; the
balancer says who the client was in a header it sends before anything else
(C{PROXY TCP4 192.0.2.7 10.0.0.2 51000 3128\\r\\n}, or the binary version
2).  A listener named in C{[proxy_protocol] listeners} requires that
header, and believes it only from C{[proxy_protocol] trusted}: anyone else
could name any client address and walk past every C{src} rule.

This module holds the decisions, as pure functions over bytes and
addresses: whether a peer is trusted, and how long the header at the start
of a buffer is (so that a header split over several TCP segments is
waited for, and anything that cannot become a header is refused at once).
The fields are then read by Twisted's own parsers
(C{twisted.protocols.haproxy}), in L{squeak.net.proxyprotocol}.

The specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from squeak.access.facts import client_address
from squeak.config_values import (
    ListenAddress,
    _network_list,
    _optional_listen_addresses,
    _setting,
)
from squeak.values import IPNetwork
from squeak.values import quote as _quote

__all__ = [
    "V1_MAX_LENGTH",
    "V1_SIGNATURE",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "HeaderError",
    "ProxyProtocolConfig",
    "header_length",
    "is_trusted",
    "proxy_protocol_problem",
]

#: How a version 1 header starts (§2.1).
V1_SIGNATURE = b"PROXY "

#: The longest version 1 header, CRLF included (§2.1: "a receiver may
#: reject a header longer than 107 bytes").
V1_MAX_LENGTH = 107

#: The twelve bytes that start a version 2 header (§2.2).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

#: The longest version 2 header accepted: the 16 fixed bytes, the largest
#: address block (two UNIX paths, 216 bytes) and room for the TLVs
#: balancers add (AWS, Azure: well under a kilobyte).
V2_MAX_LENGTH = 16 + 216 + 1808


class HeaderError(ValueError):
    """
    The bytes at the start of a connection are not a PROXY header and cannot
    become one; C{str(self)} says why, for the log.
    """


def _shown(data: bytes) -> str:
    """The first bytes of C{data}, for a log line."""
    return _quote(data[:40].decode("latin-1"), 60)


def header_length(buffer: bytes) -> int | None:
    """
    The length of the PROXY header at the start of C{buffer}, once it is
    all there.

    @return: The header's length in bytes (a version 1 header's CRLF
        included); L{None} while the bytes so far may still become a header.
    @raise HeaderError: If they cannot: no signature of either version, an
        unknown version 2 version, or a header longer than the limits.
    """
    if not buffer:
        return None
    if buffer[:1] == V2_SIGNATURE[:1]:
        if V2_SIGNATURE[: len(buffer)] != buffer[:12]:
            raise HeaderError(f"no PROXY protocol header (the connection began {_shown(buffer)})")
        if len(buffer) < 16:
            return None
        if buffer[12] >> 4 != 2:
            raise HeaderError(f"PROXY protocol v2 header of unknown version {buffer[12] >> 4}")
        length = 16 + int.from_bytes(buffer[14:16], "big")
        if length > V2_MAX_LENGTH:
            raise HeaderError(
                f"PROXY protocol v2 header of {length} bytes (most accepted: {V2_MAX_LENGTH})"
            )
        return length if len(buffer) >= length else None
    if V1_SIGNATURE[: len(buffer)] != buffer[:6]:
        raise HeaderError(f"no PROXY protocol header (the connection began {_shown(buffer)})")
    end = buffer.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end >= 0:
        return end + 2
    if len(buffer) >= V1_MAX_LENGTH:
        raise HeaderError(
            f"PROXY protocol v1 header without CRLF in its first {V1_MAX_LENGTH} bytes"
        )
    if b"\n" in buffer or b"\0" in buffer:
        raise HeaderError(f"malformed PROXY protocol v1 header {_shown(buffer)}")
    return None


def is_trusted(host: str, trusted: Iterable[IPNetwork]) -> bool:
    """
    Whether the peer C{host} (as the socket reports it) may send a PROXY
    header: it is in one of the C{trusted} networks.  An IPv4-mapped IPv6
    peer is taken as the IPv4 address it carries.
    """
    try:
        address = client_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def _trusted_networks(value: object, base_dir: str) -> tuple[IPNetwork, ...]:
    """
    The balancers' networks; none may cover a whole address family, which
    would let anyone claim any client address.
    """
    return _network_list(
        value,
        '["10.0.0.5/32"]',
        "would let anyone claim any client address (list only your load balancers)",
    )


@dataclass(frozen=True, slots=True)
class ProxyProtocolConfig:
    """
    The C{[proxy_protocol]} table (docs/operations.md, "Behind a TCP load
    balancer").

    @ivar listeners: The C{proxy.http_port} and C{tls.https_port} addresses
        that require a PROXY header before anything else.
    @ivar trusted: The networks of the balancers allowed to send it.
    """

    listeners: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Listeners (addresses of proxy.http_port or tls.https_port) that require a "
        "PROXY protocol v1 or v2 header from a load balancer; empty for none.",
        parse=_optional_listen_addresses,
    )
    trusted: tuple[IPNetwork, ...] = _setting(
        default=(),
        kind="array of networks",
        doc="The load balancers' networks (CIDR): the only peers allowed on those listeners; "
        "the client address in their header is then what ACLs and logs see.",
        parse=_trusted_networks,
    )


def proxy_protocol_problem(
    settings: ProxyProtocolConfig,
    http_ports: Iterable[ListenAddress],
    https_ports: Iterable[ListenAddress],
    intercept_ports: Iterable[ListenAddress],
) -> tuple[str, str | None, str] | None:
    """
    What is wrong with C{settings} given the configured listeners, if
    anything.

    @return: L{None}, or the key, the array element at fault (or L{None})
        and the problem (the loader turns it into a C{ConfigError}).
    """
    plain, tls, intercept = set(http_ports), set(https_ports), set(intercept_ports)
    for listener in settings.listeners:
        if listener in intercept:
            return (
                "listeners",
                str(listener),
                f"{listener} is an intercept listener; the PROXY protocol is taken on "
                "proxy.http_port and tls.https_port listeners only",
            )
        if listener not in plain and listener not in tls:
            return (
                "listeners",
                str(listener),
                f"{listener} is not one of the proxy.http_port or tls.https_port addresses",
            )
    if settings.listeners and not settings.trusted:
        return (
            "trusted",
            None,
            "listeners that take a PROXY header need the networks of the balancers "
            "allowed to send it (anyone else could claim any client address)",
        )
    return None
