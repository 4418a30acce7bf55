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


#: Syslog facilities by name (RFC 5424 section 6.2.1), as Squid's
#: C{access_log syslog:facility.priority} and C{syslog.h} name them.
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip

#: Syslog severities by name (RFC 5424 section 6.2.1).
SYSLOG_PRIORITIES = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
    "debug": 7,
}  # fmt: skip


def syslog_priority(text: str) -> int:
    """
    Parse Squid's C{facility.priority} (C{"local4.info"}; the priority may
    be left out and is then C{info}, as Squid's default for C{access_log
    syslog} is C{LOG_LOCAL4 | LOG_INFO}).

    @return: The syslog PRI value, C{facility * 8 + severity}.
    @raise ValueError: If either name is unknown.
    """
    facility, _, priority = text.strip().lower().partition(".")
    if facility.startswith("log_"):
        facility = facility[4:]
    if priority.startswith("log_"):
        priority = priority[4:]
    if facility not in SYSLOG_FACILITIES:
        raise ValueError(
            f"unknown syslog facility {facility!r} (expected e.g. local4, daemon, user)"
        )
    severity = SYSLOG_PRIORITIES.get(priority or "info")
    if severity is None:
        raise ValueError(
            f"unknown syslog priority {priority!r} (expected e.g. info, notice, debug)"
        )
    return SYSLOG_FACILITIES[facility] * 8 + severity
