# -*- test-case-name: tests.test_upstream_carp -*-
"""
The Cache Array Routing Protocol's hash, as Squid computes it (src/carp.cc).

CARP (draft-vinod-carp-v1) spreads URLs over an array of parents by weight,
so that each URL always goes to the same parent and a parent that leaves
moves only its own share.  A squeak child and a Squid child in the same
array must pick the same parent for the same URL, so this module follows
Squid's code rather than the draft where the two differ:

  - the URL's hash is not reset between members: Squid's C{user_hash}
    accumulates over the members in their order (sorted by weight, then in
    configuration order), so a member's score depends on the members before
    it;
  - bytes are C{char}, which is signed on the platforms Squid ships for: a
    byte at or above 0x80 adds its value minus 256, modulo 2**32;
  - a member whose load factor rounds to under a thousandth gets a
    multiplier of 0, as does a member of weight 0 (which Squid leaves out).

Pure: no I/O, only 32-bit arithmetic on Python integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CarpArray", "CarpMember", "member_hash", "rotate_left"]

_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x62531965


def rotate_left(value: int, bits: int) -> int:
    """C{ROTATE_LEFT} of carp.cc on a 32-bit unsigned value."""
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def _signed_char(byte: int) -> int:
    """A byte as a C{char} promoted to C{unsigned int} (x86 C{char} is signed)."""
    return (byte - 256) & _MASK if byte >= 0x80 else byte


def _accumulate(state: int, data: bytes) -> int:
    """carp.cc's loop C{h += ROTATE_LEFT(h, 19) + c} over C{data}."""
    for byte in data:
        state = (state + rotate_left(state, 19) + _signed_char(byte)) & _MASK
    return state


def _mix(value: int) -> int:
    """carp.cc's finishing step: C{h += h * 0x62531965; h = ROTATE_LEFT(h, 21)}."""
    value = (value + value * _MULTIPLIER) & _MASK
    return rotate_left(value, 21)


def member_hash(name: str) -> int:
    """A member's own hash, from its name (Squid: the C{cache_peer} name)."""
    return _mix(_accumulate(0, name.encode("utf-8")))


@dataclass(frozen=True, slots=True)
class CarpMember:
    """
    One member of the array, with what CARP derives from its name and weight.

    @ivar name: The member's name, hashed as Squid hashes a peer's name.
    @ivar weight: Its relative share of URLs.
    @ivar hash: L{member_hash} of the name.
    @ivar load_factor: Its weight over the array's total.
    @ivar load_multiplier: The multiplier of the draft's section 3.3.
    """

    name: str
    weight: int
    hash: int
    load_factor: float
    load_multiplier: float


class CarpArray:
    """
    An array of members with weights: scores URLs as Squid's
    C{carpSelectParent} does.
    """

    __slots__ = ("members",)

    def __init__(self, members: Sequence[tuple[str, int]]) -> None:
        """
        @param members: C{(name, weight)} in configuration order; members of
            weight 0 take no share, as in Squid.
        """
        weighted = [(name, weight) for name, weight in members if weight > 0]
        total = sum(weight for _, weight in weighted)
        # Squid sorts with qsort by weight; glibc's qsort is a merge sort
        # for small arrays, so members of equal weight keep their order.
        # Python's sort is stable too.
        weighted.sort(key=lambda member: member[1])
        count = len(weighted)
        built: list[CarpMember] = []
        product = 1.0  # X_1 * ... * X_{k-1}
        previous_multiplier = 0.0
        previous_factor = 0.0
        for k, (name, weight) in enumerate(weighted, start=1):
            factor = weight / total
            if math.floor(factor * 1000.0) == 0.0:
                factor = 0.0
            remaining = float(count - k + 1)
            multiplier = (remaining * (factor - previous_factor)) / product
            multiplier += previous_multiplier**remaining
            multiplier = multiplier ** (1.0 / remaining)
            product *= multiplier
            previous_multiplier = multiplier
            previous_factor = factor
            built.append(CarpMember(name, weight, member_hash(name), factor, multiplier))
        self.members: tuple[CarpMember, ...] = tuple(built)

    def scores(self, key: bytes) -> list[tuple[float, CarpMember]]:
        """
        Each member's score for C{key} (Squid: the effective request URI),
        in the array's order.  The URL's hash runs on across members, as in
        Squid (see the module's docstring).
        """
        scored = []
        url_hash = 0
        for member in self.members:
            url_hash = _accumulate(url_hash, key)
            combined = _mix(url_hash ^ member.hash)
            scored.append((combined * member.load_multiplier, member))
        return scored

    def ranked(self, key: bytes) -> list[CarpMember]:
        """
        The members best first for C{key}.  Squid takes the first usable
        one with a strictly higher score than the best so far, starting
        from 0: among equal scores the earlier member wins (the sort is
        stable on the negated score), and a member scoring 0 is never
        chosen.
        """
        ranked = sorted(self.scores(key), key=lambda pair: -pair[0])
        return [member for score, member in ranked if score > 0.0]
