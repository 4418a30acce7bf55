# -*- test-case-name: tests.test_config -*-
"""
How squeak reads and shows values that operators write, shared by the
configuration loader and the ACL compiler (pure: stdlib only).

  - L{quote}: a value quoted as TOML writes it, escaped to stay on one line,
    for error messages;
  - L{parse_network}: strict CIDR networks with a helpful error;
  - L{is_open}: whether a network admits every client of an address family
    (what would make an open proxy).
"""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IPv4 clients as a dual-stack socket reports them (RFC 4291 §2.5.5.2).
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def quote(text: str, limit: int = 60) -> str:
    """
    Quote C{text} as TOML would, escaped so the message stays on one line,
    and shortened if long.
    """
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def parse_network(text: str) -> IPNetwork:
    """
    Parse an IP network in CIDR notation, strictly.

    A bare address means that one host (C{/32} or C{/128}). Host bits set
    below the prefix (C{"10.0.0.1/8"}) are an error, since they usually mean
    a typo: the error suggests the network that was probably meant.

    @raise ValueError: If C{text} is not such a network.
    """
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f'expected an IP network like "192.168.0.0/16" or "::1/128", got {quote(text)}'
        ) from None
    raise ValueError(f"{quote(text)} has host bits set (did you mean {quote(str(loose))}?)")


def is_open(network: IPNetwork) -> bool:
    """
    Whether C{network} admits every client of one address family: all of
    IPv4 or IPv6, or every IPv4 client seen through a dual-stack socket.
    """
    if network.prefixlen == 0:
        return True
    return isinstance(network, ipaddress.IPv6Network) and network.supernet_of(_IPV4_MAPPED)
