# -*- test-case-name: tests.test_access_purge -*-
"""
Who may use PURGE: Squid's extension method that removes a URI from the
cache, allowed only from the client networks in C{cache.purge_from}
(loopback by default), as Squid allows it only by an explicit
C{http_access allow PURGE} rule.

This module is pure: no Twisted, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from squeak.access.acl import client_address
from squeak.values import IPNetwork

__all__ = ["may_purge"]


def may_purge(client_ip: str, purge_from: Iterable[IPNetwork]) -> bool:
    """
    Whether a client at C{client_ip} may PURGE.

    @param client_ip: The client address as the listener reports it (a zone
        index or an IPv4-mapped IPv6 form is understood, as for C{src}
        ACLs); anything that is not an address may not.
    @param purge_from: The networks allowed (C{cache.purge_from}).
    """
    try:
        client = client_address(client_ip)
    except ValueError:
        return False
    return any(client in network for network in purge_from)
