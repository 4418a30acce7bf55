"""
Tests for L{squeak.upstream.carp}: the same parent as a real Squid for the
same URL, weights respected, and only a leaving member's share moves.
"""

from __future__ import annotations

import os
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from squeak.upstream.carp import CarpArray, member_hash, rotate_left

_VECTORS = os.path.join(os.path.dirname(__file__), "data", "carp_squid57.txt")


def squid_vectors() -> list[tuple[list[tuple[str, int]], list[tuple[str, str]]]]:
    """
    The arrays and choices in tests/data/carp_squid57.txt, recorded from a
    real Squid 5.7 (the file's header says how).
    """
    arrays: list[tuple[list[tuple[str, int]], list[tuple[str, str]]]] = []
    with open(_VECTORS, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[array "):
                members = []
                for item in line.removeprefix("[array ").removesuffix("]").split():
                    name, weight = item.split("=")
                    members.append((name, int(weight)))
                arrays.append((members, []))
            else:
                parent, url = line.split()
                arrays[-1][1].append((parent, url))
    return arrays


class SquidCompatibilityTests(SynchronousTestCase):
    def test_vectors_present(self) -> None:
        """The recorded file holds two arrays with their URLs."""
        arrays = squid_vectors()
        self.assertEqual(len(arrays), 2)
        self.assertEqual([len(urls) >= 30 for _, urls in arrays], [True, True])

    def test_same_parent_as_squid(self) -> None:
        """
        For every recorded URL, the best-ranked member is the parent the
        real Squid sent it to, with unequal weights and with equal weights
        in a configuration order that is not alphabetical.
        """
        for members, choices in squid_vectors():
            array = CarpArray(members)
            mismatches = [
                (url, parent, array.ranked(url.encode())[0].name)
                for parent, url in choices
                if array.ranked(url.encode())[0].name != parent
            ]
            self.assertEqual(mismatches, [], members)

    def test_recorded_choices_use_every_parent(self) -> None:
        """The vectors are not degenerate: each array's URLs reach all its parents."""
        for members, choices in squid_vectors():
            self.assertEqual({parent for parent, _ in choices}, {name for name, _ in members})


class HashTests(SynchronousTestCase):
    def test_rotate_left(self) -> None:
        """32-bit rotation: bits leaving on the left come back on the right."""
        self.assertEqual(rotate_left(0x80000001, 1), 0x00000003)
        self.assertEqual(rotate_left(0x12345678, 8), 0x34567812)

    def test_member_hash_is_32_bit(self) -> None:
        """A long name still hashes to an unsigned 32-bit value."""
        value = member_hash("p" * 500)
        self.assertTrue(0 <= value <= 0xFFFFFFFF)

    def test_high_bytes_are_signed_chars(self) -> None:
        """
        A byte of 0x80 or more counts as a negative C char (x86 C{char} is
        signed): "é" is UTF-8 C3 A9, which carp.cc adds as -61 and -87.
        """

        def by_hand(values: list[int]) -> int:
            state = 0
            for value in values:
                state = (state + rotate_left(state, 19) + value) & 0xFFFFFFFF
            state = (state + state * 0x62531965) & 0xFFFFFFFF
            return rotate_left(state, 21)

        signed = by_hand([(0xC3 - 256) & 0xFFFFFFFF, (0xA9 - 256) & 0xFFFFFFFF])
        self.assertEqual(member_hash("\u00e9"), signed)
        self.assertNotEqual(signed, by_hand([0xC3, 0xA9]))


class WeightTests(SynchronousTestCase):
    def test_load_factors_sum_to_one(self) -> None:
        """The members' load factors are their weights over the total."""
        array = CarpArray([("a", 1), ("b", 3)])
        factors = {m.name: m.load_factor for m in array.members}
        self.assertEqual(factors, {"a": 0.25, "b": 0.75})

    def test_zero_weight_takes_no_share(self) -> None:
        """A member of weight 0 is left out, as in Squid."""
        array = CarpArray([("a", 1), ("b", 0)])
        self.assertEqual([m.name for m in array.members], ["a"])

    def test_spread_follows_weights(self) -> None:
        """
        10,000 URLs over weights 1, 2, 3 land within 10 % of each share
        (the issue's figure).
        """
        array = CarpArray([("p1", 1), ("p2", 2), ("p3", 3)])
        counts = Counter(
            array.ranked(b"http://site%d.test/x/%d" % (i % 97, i))[0].name for i in range(10_000)
        )
        for name, weight in (("p1", 1), ("p2", 2), ("p3", 3)):
            expected = 10_000 * weight / 6
            self.assertLess(abs(counts[name] - expected), expected * 0.10, counts)

    def test_leaving_member_moves_only_its_share(self) -> None:
        """
        Ranking is per URL and stable: when the first choice is unusable,
        the URL goes to its second choice, and URLs whose first choice is
        still there do not move.
        """
        array = CarpArray([("p1", 1), ("p2", 1), ("p3", 1)])
        urls = [b"http://x.test/%d" % i for i in range(3_000)]
        before = {url: array.ranked(url)[0].name for url in urls}
        after = {url: next(m.name for m in array.ranked(url) if m.name != "p2") for url in urls}
        moved = {url for url in urls if before[url] != after[url]}
        self.assertEqual(moved, {url for url in urls if before[url] == "p2"})
        self.assertGreater(len(moved), 500)
