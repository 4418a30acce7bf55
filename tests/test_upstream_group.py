"""
Tests for L{squeak.upstream.group}: selection and health together.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.upstream.group import UpstreamGroup
from squeak.upstream.health import Change, HealthPolicy
from squeak.upstream.selection import CarpSelection, FirstUp, Member

A, B, C = Member("a"), Member("b"), Member("c")


class GroupTests(SynchronousTestCase):
    def test_failover_and_recovery(self) -> None:
        """
        first-up: a leads; after max_fails it is down (reported once) and b
        leads; a probe's success brings a back.
        """
        group = UpstreamGroup(
            "parents", [A, B], FirstUp([A, B]), HealthPolicy(max_fails=2, probed=True)
        )
        self.assertEqual(group.candidates(b"", 0.0)[0], A)
        self.assertEqual([group.failed(A, 1.0), group.failed(A, 2.0)], [None, Change.DOWN])
        self.assertEqual(group.candidates(b"", 3.0), [B])
        self.assertEqual(group.to_probe(), [A])
        self.assertTrue(group.is_down(A))
        self.assertEqual(group.succeeded(A, 4.0), Change.UP)
        self.assertEqual(group.candidates(b"", 4.0), [A, B])
        self.assertEqual(group.to_probe(), [])

    def test_none_up(self) -> None:
        """With every member down, there is nothing to try."""
        group = UpstreamGroup("pool", [A], FirstUp([A]), HealthPolicy(max_fails=1, probed=True))
        group.failed(A, 0.0)
        self.assertEqual(group.candidates(b"", 1.0), [])

    def test_allowed_filters(self) -> None:
        """Members a request may not use (their access rules) are left out."""
        group = UpstreamGroup("parents", [A, B, C], FirstUp([A, B, C]), HealthPolicy())
        self.assertEqual(group.candidates(b"", 0.0, allowed=lambda m: m is not A), [B, C])

    def test_carp_share_moves_back(self) -> None:
        """
        With CARP, a down member's URLs go elsewhere and come back to it
        when it is up again; the other URLs never move.
        """
        members = [A, B, C]
        group = UpstreamGroup(
            "array", members, CarpSelection(members), HealthPolicy(max_fails=1, probed=True)
        )
        urls = [b"http://h.test/%d" % i for i in range(300)]
        before = {url: group.candidates(url, 0.0)[0] for url in urls}
        group.failed(B, 1.0)
        during = {url: group.candidates(url, 1.0)[0] for url in urls}
        self.assertEqual(
            {u for u in urls if before[u] != during[u]}, {u for u in urls if before[u] is B}
        )
        group.succeeded(B, 2.0)
        self.assertEqual({url: group.candidates(url, 2.0)[0] for url in urls}, before)

    def test_names_unique(self) -> None:
        """Two members of one name could not be told apart in logs or health."""
        self.assertRaises(
            ValueError, UpstreamGroup, "g", [A, Member("a")], FirstUp([A]), HealthPolicy()
        )
