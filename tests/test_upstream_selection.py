"""
Tests for L{squeak.upstream.selection}: each kind's order, fallbacks, and
how unusable members are left out.
"""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from squeak.upstream.selection import (
    CarpSelection,
    FirstUp,
    LeastConnections,
    Member,
    RoundRobin,
    SelectionKind,
    WeightedRoundRobin,
    build_selection,
)

A, B, C = Member("a"), Member("b"), Member("c")


def everyone(member: Member) -> bool:
    return True


def names(members: list[Member]) -> list[str]:
    return [member.name for member in members]


class FirstUpTests(SynchronousTestCase):
    def test_configuration_order(self) -> None:
        """The first member leads every time; the others follow as fallbacks."""
        selection = FirstUp([A, B, C])
        self.assertEqual(
            [names(selection.choose(b"", everyone)) for _ in range(2)], [["a", "b", "c"]] * 2
        )

    def test_unusable_left_out(self) -> None:
        """A member that is down is not offered."""
        self.assertEqual(names(FirstUp([A, B, C]).choose(b"", lambda m: m is not A)), ["b", "c"])


class RoundRobinTests(SynchronousTestCase):
    def test_rotates(self) -> None:
        """Each request starts one member further along."""
        selection = RoundRobin([A, B, C])
        firsts = [selection.choose(b"", everyone)[0].name for _ in range(6)]
        self.assertEqual(firsts, ["a", "b", "c", "a", "b", "c"])

    def test_down_member_skipped(self) -> None:
        """With b down, a and c share the requests."""
        selection = RoundRobin([A, B, C])
        firsts = Counter(selection.choose(b"", lambda m: m is not B)[0].name for _ in range(6))
        self.assertEqual(firsts, Counter({"a": 3, "c": 3}))

    def test_empty(self) -> None:
        """No members, nothing to try."""
        self.assertEqual(RoundRobin([]).choose(b"", everyone), [])


class WeightedRoundRobinTests(SynchronousTestCase):
    def test_smooth_shares(self) -> None:
        """
        Weights 5, 1, 1 give nginx's smooth order: a a b a c a a, then
        again.
        """
        selection = WeightedRoundRobin([Member("a", 5), Member("b", 1), Member("c", 1)])
        firsts = "".join(selection.choose(b"", everyone)[0].name for _ in range(14))
        self.assertEqual(firsts, "aabacaa" * 2)

    def test_all_members_offered(self) -> None:
        """The first choice leads; every usable member follows as a fallback."""
        selection = WeightedRoundRobin([Member("a", 2), Member("b", 1)])
        self.assertEqual(sorted(names(selection.choose(b"", everyone))), ["a", "b"])

    def test_down_member_banks_nothing(self) -> None:
        """
        A member that was down does not come back with a burst of credit:
        right after it returns, the shares are its weight's.
        """
        a, b = Member("a", 1), Member("b", 1)
        selection = WeightedRoundRobin([a, b])
        for _ in range(10):
            selection.choose(b"", lambda m: m is a)
        firsts = [selection.choose(b"", everyone)[0].name for _ in range(4)]
        self.assertEqual(Counter(firsts), Counter({"a": 2, "b": 2}))


class LeastConnectionsTests(SynchronousTestCase):
    def test_fewest_active_first(self) -> None:
        """The member serving the fewest requests per weight leads."""
        active = {"a": 4, "b": 1, "c": 2}
        selection = LeastConnections([A, B, C], lambda m: active[m.name])
        self.assertEqual(names(selection.choose(b"", everyone)), ["b", "c", "a"])

    def test_weight_divides(self) -> None:
        """Four requests on a weight-4 member count as one on a weight-1 member."""
        heavy, light = Member("heavy", 4), Member("light", 1)
        active = {"heavy": 3, "light": 1}
        selection = LeastConnections([light, heavy], lambda m: active[m.name])
        self.assertEqual(selection.choose(b"", everyone)[0].name, "heavy")

    def test_ties_rotate(self) -> None:
        """An idle pool still spreads its requests."""
        selection = LeastConnections([A, B], lambda m: 0)
        self.assertEqual(
            [selection.choose(b"", everyone)[0].name for _ in range(4)], ["a", "b", "a", "b"]
        )


class CarpSelectionTests(SynchronousTestCase):
    def test_same_key_same_member(self) -> None:
        """A key always leads with the same member."""
        selection = CarpSelection([A, B, C])
        leads = {selection.choose(b"http://x.test/1", everyone)[0].name for _ in range(5)}
        self.assertEqual(len(leads), 1)

    def test_down_member_left_out(self) -> None:
        """A key whose member is down goes to its next-ranked member."""
        selection = CarpSelection([A, B, C])
        ranked = names(selection.choose(b"http://x.test/1", everyone))
        without = names(selection.choose(b"http://x.test/1", lambda m: m.name != ranked[0]))
        self.assertEqual(without, ranked[1:])


class BuildTests(SynchronousTestCase):
    def test_every_kind_builds(self) -> None:
        """Each configured name gives a selection that offers the members."""
        for kind in SelectionKind:
            selection = build_selection(kind, [A, B], active=lambda m: 0)
            self.assertEqual(sorted(names(selection.choose(b"k", everyone))), ["a", "b"], kind)

    def test_least_connections_needs_counts(self) -> None:
        """least-connections without the pool's counts is a programming error."""
        self.assertRaises(ValueError, build_selection, SelectionKind.LEAST_CONNECTIONS, [A])
