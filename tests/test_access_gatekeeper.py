"""
L{squeak.access.gatekeeper.Gatekeeper.check_peer} on its own: when the address a
connection went to is checked against the rules, and how it is read.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import client_address
from squeak.access.gatekeeper import AccessDeniedError, Gatekeeper
from squeak.config import Config


class CheckPeerTests(SynchronousTestCase):
    def setUp(self) -> None:
        # The shipped default rules: "deny to_localhost !localhost" among them.
        self.gatekeeper = Gatekeeper.from_config(Config(), MemoryReactorClock())
        facts = self.gatekeeper.facts(
            client="192.168.1.20",
            method=b"GET",
            scheme="http",
            host="example.test",
            port=80,
            url="http://example.test/",
            path="/",
            user_agent=None,
            client_connections=1,
        )
        self.unresolved = facts
        # As admitted after the rules resolved the name to a public address.
        self.resolved = dataclasses.replace(facts, dst_addresses=(client_address("203.0.113.7"),))

    def test_rules_that_never_needed_dst_ask_nothing(self) -> None:
        """
        Facts admitted without a lookup (no rule reached needed C{dst}):
        any address passes, since the verdict did not depend on it.
        """
        self.gatekeeper.check_peer(self.unresolved, "127.0.0.1")

    def test_the_address_the_rules_saw_passes(self) -> None:
        self.gatekeeper.check_peer(self.resolved, "203.0.113.7")
        self.gatekeeper.check_peer(self.resolved, "198.51.100.1")

    def test_a_denied_address_is_refused_naming_it(self) -> None:
        """
        A loopback peer is this host (to_localhost): denied by the rule
        that says so, IPv4-mapped IPv6 forms included.
        """
        for peer in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
            error = self.assertRaises(
                AccessDeniedError, self.gatekeeper.check_peer, self.resolved, peer
            )
            self.assertEqual(error.status, 403)
            self.assertIn('by rule "deny to_localhost !localhost"', error.detail)
            self.assertIn("the connection to example.test went to", error.detail)

    def test_a_peer_that_is_not_an_address_is_not_matched(self) -> None:
        """A transport that reports no IP address (a UNIX socket) is left alone."""
        self.gatekeeper.check_peer(self.resolved, "-")

    def test_peer_check_only_where_a_name_was_resolved(self) -> None:
        """
        L{Gatekeeper.peer_check} gives a checker only for facts whose
        addresses came from resolving a name: not when no lookup was made,
        nor for an IP-literal host, whose connection goes to that address.
        """
        gatekeeper = self.gatekeeper
        self.assertIsNone(gatekeeper.peer_check(self.unresolved))
        literal = dataclasses.replace(
            self.unresolved,
            host="203.0.113.7",
            dst_addresses=(client_address("203.0.113.7"),),
        )
        self.assertIsNone(gatekeeper.peer_check(literal))
        check = gatekeeper.peer_check(self.resolved)
        assert check is not None
        check("203.0.113.7")
        self.assertRaises(AccessDeniedError, check, "127.0.0.1")
