"""
L{squeak.access.gatekeeper.Gatekeeper.check_peer} on its own: when the address a
connection went to is checked against the rules, and how it is read; and the
verdicts L{squeak.access.rules.evaluate} remembers never standing in for
credentials, the connected address or a reloaded policy.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import client_address
from squeak.access.auth import hash_password
from squeak.access.gatekeeper import (
    AccessDeniedError,
    AuthenticationRequiredError,
    Gatekeeper,
)
from squeak.access.rules import Action, evaluate
from squeak.config import Config, parse_config


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


_RULES = """
[acl]
lan = {{ src = ["192.168.1.0/24"] }}
readers = {{ proxy_auth = ["alice"] }}

[access]
http_access = [
  "deny to_localhost !localhost",
  "allow lan readers",
  "deny all",
]

[auth]
htpasswd = "{htpasswd}"
credentials_ttl = "1h"
"""


class RememberedVerdictTests(SynchronousTestCase):
    """
    The rules' verdicts are remembered per rule list by the facts the rules
    read (L{squeak.access.rules.evaluate}); requests on a keep-alive
    connection repeat them.  What a remembered verdict must not replace is
    checked here through the L{Gatekeeper}, with the memo already holding
    an "allow" for the same facts.
    """

    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        htpasswd = os.path.join(directory, "htpasswd")
        with open(htpasswd, "w", encoding="ascii") as handle:
            handle.write(f"alice:{hash_password('wonderland', rounds=4)}\n")
        self.addCleanup(os.remove, htpasswd)
        self.config = parse_config(_RULES.format(htpasswd=htpasswd), htpasswd + ".toml")
        self.reactor = MemoryReactorClock()
        self.gatekeeper = Gatekeeper.from_config(self.config, self.reactor)
        auth = self.gatekeeper._auth
        assert auth is not None
        # Both outcomes verified and cached now, so that admit decides
        # without a thread (as it does for a client's repeated requests).
        self.assertTrue(auth.check("alice", "wonderland", self.reactor.seconds()))
        self.assertFalse(auth.check("alice", "wrong", self.reactor.seconds()))

    def _facts(self, host: str = "203.0.113.7") -> Any:
        return self.gatekeeper.facts(
            client="192.168.1.20",
            method=b"GET",
            scheme="http",
            host=host,
            port=80,
            url=f"http://{host}/",
            path="/",
            user_agent=None,
            client_connections=1,
        )

    def _admit_with(self, credentials: bytes | None) -> Any:
        admitted = self.gatekeeper.admit(self._facts(), lambda: credentials)
        results: list[Any] = []
        admitted.addBoth(results.append)
        self.assertEqual(len(results), 1)
        return results[0]

    def test_credentials_are_checked_on_every_request(self) -> None:
        """
        After alice was admitted (the memo holds "allow" for user alice),
        a request with the same facts and a wrong password, or none, is
        still asked for credentials: the user is a fact only once its
        password is verified, request by request.
        """
        good = b"Basic " + base64.b64encode(b"alice:wonderland")
        bad = b"Basic " + base64.b64encode(b"alice:wrong")
        self.assertEqual(self._admit_with(good).user, "alice")
        self.assertTrue(self.gatekeeper.policy.http_access.memo)
        for credentials in (bad, None, good):
            outcome = self._admit_with(credentials)
            if credentials is good:
                self.assertEqual(outcome.user, "alice")
            else:
                self.assertIsInstance(outcome.value, AuthenticationRequiredError)
        self.assertFalse(self.gatekeeper.allows_at_once(self._facts()))

    def test_connected_address_is_asked_about_again(self) -> None:
        """
        With "allow" remembered for a name resolved to a public address,
        the connection's loopback peer (DNS rebinding) is still denied:
        the addresses are part of what the memo is keyed by.
        """
        resolved = dataclasses.replace(
            self._facts(host="example.test"),
            dst_addresses=(client_address("203.0.113.7"),),
            user="alice",
        )
        rules = self.gatekeeper.policy.http_access
        self.assertIs(evaluate(rules, resolved).action, Action.ALLOW)
        self.gatekeeper.check_peer(resolved, "203.0.113.8")
        self.assertRaises(AccessDeniedError, self.gatekeeper.check_peer, resolved, "127.0.0.1")

    def test_a_reload_starts_with_no_remembered_verdict(self) -> None:
        """
        A reload builds a new gatekeeper from a new policy, whose rule
        list remembers nothing of the old one's verdicts.
        """
        self.assertEqual(
            self._admit_with(b"Basic " + base64.b64encode(b"alice:wonderland")).user, "alice"
        )
        reloaded = Gatekeeper.from_config(self.config, self.reactor)
        self.assertIsNot(reloaded.policy.http_access, self.gatekeeper.policy.http_access)
        self.assertEqual(reloaded.policy.http_access.memo, {})
