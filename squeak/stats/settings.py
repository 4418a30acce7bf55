# -*- test-case-name: tests.test_config -*-
"""
The configuration tables of what operators see: C{[manager]} (who may
read the cache manager pages) and C{[metrics]} (the Prometheus
listener).  Registered in L{squeak.config.TABLES}; the schema's
conventions are L{squeak.config}'s.

This module is pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from squeak.config_values import ListenAddress, _networks, _optional_listen_addresses, _setting
from squeak.values import IPNetwork

__all__ = ["LOOPBACK", "ManagerConfig", "MetricsConfig"]

#: The loopback networks: the default of both tables' C{allow_from}.
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """
    The C{[manager]} table: the cache manager pages on the proxy port
    (C{/squid-internal-mgr/PAGE}, C{squidclient mgr:PAGE}).

    @ivar allow_from: Client networks allowed to read them (Squid's
        C{http_access allow localhost manager}); others get 403.
    """

    allow_from: tuple[IPNetwork, ...] = _setting(
        default=LOOPBACK,
        kind="array of networks",
        doc="Client networks (CIDR) allowed to read the cache manager pages "
        "(/squid-internal-mgr/, squidclient mgr:PAGE); others get 403.",
        parse=_networks,
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """
    The C{[metrics]} table: Prometheus metrics on a listener of their own.

    @ivar http_port: Addresses of the metrics listener; empty for none.
    @ivar allow_from: Client networks allowed to scrape it.
    """

    http_port: tuple[ListenAddress, ...] = _setting(
        default=(),
        kind="array of addresses",
        doc="Addresses to serve Prometheus metrics on (GET /metrics); empty for none.",
        parse=_optional_listen_addresses,
    )
    allow_from: tuple[IPNetwork, ...] = _setting(
        default=LOOPBACK,
        kind="array of networks",
        doc="Client networks (CIDR) allowed to scrape the metrics listener; others get 403.",
        parse=_networks,
    )
