# -*- test-case-name: tests.test_upstream_selection -*-
"""
Which server of a group to try first: the orders parents (Squid's
C{cache_peer} selection) and accelerator origin pools (nginx's C{upstream}
balancing) share.

A selection answers with every usable member, best first, so the caller can
fall back to the next on a connect failure without asking again.  Only
usable members are offered: health is the caller's (L{squeak.upstream.health}),
passed in as a predicate, so a member that comes back is offered again at
once.

Pure: no I/O; the only state is the rotation of the round-robin kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from squeak.upstream.carp import CarpArray

__all__ = [
    "SELECTIONS",
    "CarpSelection",
    "FirstUp",
    "LeastConnections",
    "Member",
    "RoundRobin",
    "Selection",
    "SelectionKind",
    "WeightedRoundRobin",
    "build_selection",
]


@dataclass(frozen=True, slots=True)
class Member:
    """
    One server of a group.

    @ivar name: Unique within the group; what logs and pages show, and what
        CARP hashes (Squid hashes the C{cache_peer} name).
    @ivar weight: Its relative share, for the weighted kinds (at least 1,
        or 0 to take no share of hashed selection).
    """

    name: str
    weight: int = 1


#: Is this member usable now (up, and allowed for this request)?
Usable = Callable[[Member], bool]


class Selection(Protocol):
    """
    An order in which to try a group's members for one request.
    """

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        """
        The usable members, best first.

        @param key: What hashed kinds hash (the URL, or the client's
            address); the others ignore it.
        @param usable: Whether a member may be offered.
        """
        ...


class SelectionKind(StrEnum):
    """The configuration's names for the selections."""

    FIRST_UP = "first-up"
    ROUND_ROBIN = "round-robin"
    WEIGHTED_ROUND_ROBIN = "weighted-round-robin"
    LEAST_CONNECTIONS = "least-connections"
    CARP = "carp"
    HASH = "hash"


class FirstUp:
    """
    The members in configuration order: the first usable one takes every
    request (Squid's default for parents, C{FIRSTUP_PARENT}).
    """

    __slots__ = ("_members",)

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = tuple(members)

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        return [member for member in self._members if usable(member)]


class RoundRobin:
    """
    Each request starts one member further along (Squid's C{round-robin},
    nginx's default without weights); the rest follow in order as
    fallbacks.
    """

    __slots__ = ("_members", "_next")

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = tuple(members)
        self._next = 0

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        members = self._members
        if not members:
            return []
        start = self._next % len(members)
        rotated = members[start:] + members[:start]
        offered = [member for member in rotated if usable(member)]
        if offered:
            # The next request starts after the member chosen, not after
            # the start: a member that is down does not hand its turn to
            # its neighbour, which would then get two shares.
            self._next = members.index(offered[0]) + 1
        return offered


class WeightedRoundRobin:
    """
    nginx's smooth weighted round-robin: each member's current weight grows
    by its weight every request, the highest goes first and drops by the
    total.  A member of weight 3 beside one of weight 1 gets requests
    a, a, b, a rather than a, a, a, b: the shares are exact over every
    cycle and spread within it.  Only usable members take part, so a member
    that is down neither wins nor banks credit.
    """

    __slots__ = ("_current", "_members")

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = tuple(members)
        self._current = dict.fromkeys((member.name for member in members), 0)

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        candidates = [member for member in self._members if usable(member) and member.weight > 0]
        if not candidates:
            return []
        current = self._current
        total = 0
        for member in candidates:
            current[member.name] += member.weight
            total += member.weight
        # Stable: among equal current weights the earlier member wins.
        ranked = sorted(candidates, key=lambda member: -current[member.name])
        current[ranked[0].name] -= total
        return ranked


class LeastConnections:
    """
    The member with the fewest active requests per unit of weight first
    (nginx's C{least_conn}); ties go round-robin so an idle pool still
    spreads its requests.

    @ivar active: How many requests a member is serving now (the pool's
        count, read at each choice).
    """

    __slots__ = ("_members", "_tie_break", "active")

    def __init__(self, members: Sequence[Member], active: Callable[[Member], int]) -> None:
        self._members = tuple(members)
        self._tie_break = RoundRobin(members)
        self.active = active

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        rotated = self._tie_break.choose(key, lambda member: usable(member) and member.weight > 0)
        return sorted(rotated, key=lambda member: self.active(member) / member.weight)


class CarpSelection:
    """
    Squid's CARP over the members (L{squeak.upstream.carp}): each key always
    ranks the members the same way, so one member going down moves only the
    keys it had, and they come back when it does.  Also what C{hash}
    selection uses, with the client's address or the URL as the key:
    weighted rendezvous hashing is consistent without a ring to build.
    """

    __slots__ = ("_array", "_by_name")

    def __init__(self, members: Sequence[Member]) -> None:
        self._array = CarpArray([(member.name, member.weight) for member in members])
        self._by_name = {member.name: member for member in members}

    def choose(self, key: bytes, usable: Usable) -> list[Member]:
        ranked = (self._by_name[carp.name] for carp in self._array.ranked(key))
        return [member for member in ranked if usable(member)]


#: The selections that need nothing but their members.
SELECTIONS: dict[SelectionKind, Callable[[Sequence[Member]], Selection]] = {
    SelectionKind.FIRST_UP: FirstUp,
    SelectionKind.ROUND_ROBIN: RoundRobin,
    SelectionKind.WEIGHTED_ROUND_ROBIN: WeightedRoundRobin,
    SelectionKind.CARP: CarpSelection,
    SelectionKind.HASH: CarpSelection,
}


def build_selection(
    kind: SelectionKind,
    members: Sequence[Member],
    active: Callable[[Member], int] | None = None,
) -> Selection:
    """
    The selection of C{kind} over C{members}.

    @param active: For C{least-connections}: each member's active requests.
    @raise ValueError: C{least-connections} without C{active}.
    """
    if kind is SelectionKind.LEAST_CONNECTIONS:
        if active is None:
            raise ValueError("least-connections needs the members' active counts")
        return LeastConnections(members, active)
    return SELECTIONS[kind](members)
