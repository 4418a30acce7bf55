"""
Tests for L{squeak.access.purge}: who may PURGE, as a table.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from squeak.access.purge import may_purge

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_LAN = (ipaddress.ip_network("192.0.2.0/24"),)

#: (why, client address, purge_from, allowed)
CASES = [
    ("loopback by default", "127.0.0.1", _LOOPBACK, True),
    ("IPv6 loopback", "::1", _LOOPBACK, True),
    ("a dual-stack socket's IPv4-mapped form is its IPv4 address", "::ffff:127.0.0.1",
     _LOOPBACK, True),
    ("a zone index is dropped", "::1%lo", _LOOPBACK, True),
    ("another host is refused", "192.0.2.7", _LOOPBACK, False),
    ("a configured network is allowed", "192.0.2.7", _LAN, True),
    ("outside the configured network", "198.51.100.1", _LAN, False),
    ("no networks: nobody", "127.0.0.1", (), False),
    ("not an address (a UNIX socket's peer): refused", "-", _LOOPBACK, False),
    ("empty: refused", "", _LOOPBACK, False),
]  # fmt: skip


class MayPurgeTests(SynchronousTestCase):
    """
    L{may_purge} allows exactly the clients in C{cache.purge_from}.
    """

    def test_table(self) -> None:
        """
        Each row's verdict matches.
        """
        wrong = [
            (why, got)
            for why, client, networks, allowed in CASES
            if (got := may_purge(client, networks)) != allowed
        ]
        self.assertEqual(wrong, [])
