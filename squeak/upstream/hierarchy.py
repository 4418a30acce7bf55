# -*- test-case-name: tests.test_upstream_hierarchy -*-
"""
Where one request goes in a cache hierarchy: the ordered hops (parents
and/or direct) with the hierarchy code each is logged under, as Squid's
C{peer_select.cc} decides them.

  - C{always_direct} allows: direct only (C{HIER_DIRECT}).
  - C{never_direct} allows: parents only; none usable is a 503 naming the
    parents (L{Hierarchy.names_for}).
  - C{prefer_direct} allows: direct first, then the parents.
  - otherwise, with parents configured: the parents first and direct last
    (Squid's default, C{prefer_direct off}).

The parents come in the order the group's selection gives (first-up,
round-robin, weighted round-robin, CARP), only those up and allowed by
their C{access} rules and under their C{max_connections}.  The first is
logged under the selection's code (C{FIRSTUP_PARENT}, C{ROUNDROBIN_PARENT},
C{CARP}), the fallbacks after it under C{ANY_OLD_PARENT}, and
C{default = true} parents, tried last, under C{DEFAULT_PARENT}, as Squid
logs them.  Squid's C{TIMEOUT_} prefix marks a choice made when ICP/HTCP
replies timed out; squeak asks no sibling, so it never applies.

Pure: the caller passes the time and the counts of requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from squeak.access.facts import Facts
from squeak.access.rules import Action, RuleList, evaluate
from squeak.upstream.group import UpstreamGroup
from squeak.upstream.health import Change, HealthPolicy
from squeak.upstream.peers import CachePeer, HierarchyConfig
from squeak.upstream.selection import Member, SelectionKind, build_selection

__all__ = ["DIRECT", "Hierarchy", "Hop", "Route", "hierarchy_code"]

#: The log's code for the first parent of each selection (Squid's
#: C{hier_code}; weighted round-robin is logged as round-robin there too).
_FIRST_CODES = {
    SelectionKind.FIRST_UP: "FIRSTUP_PARENT",
    SelectionKind.ROUND_ROBIN: "ROUNDROBIN_PARENT",
    SelectionKind.WEIGHTED_ROUND_ROBIN: "ROUNDROBIN_PARENT",
    SelectionKind.CARP: "CARP",
}


def hierarchy_code(selection: SelectionKind) -> str:
    """The log's code for a parent chosen first by C{selection}."""
    return _FIRST_CODES.get(selection, "FIRSTUP_PARENT")


@dataclass(frozen=True, slots=True)
class Hop:
    """
    One place to try: a parent, or the origin itself.

    @ivar peer: The parent, or L{None} for direct.
    @ivar code: The access log's hierarchy code when the request goes
        there (C{HIER_DIRECT}, C{FIRSTUP_PARENT}, C{CARP}...).
    """

    peer: CachePeer | None
    code: str

    @property
    def direct(self) -> bool:
        """Whether this hop is the origin itself."""
        return self.peer is None


#: Going to the origin itself.
DIRECT = Hop(None, "HIER_DIRECT")


@dataclass(frozen=True, slots=True)
class Route:
    """
    The hops for one request, best first, and why.

    @ivar hops: Where to try, in order; empty when nowhere may be tried
        (C{never_direct} with no parent up).
    @ivar reason: Which rule decided, for the debug log and error pages.
    @ivar never_direct: Whether C{never_direct} decided: no hop that
        answers is then a 503 naming the parents (L{Hierarchy.names_for}).
    """

    hops: tuple[Hop, ...]
    reason: str
    never_direct: bool = False


def _allows(rules: RuleList | None, facts: Facts | None) -> bool:
    """
    Whether an C{allow} of C{rules} matches.  A rule that would need the
    destination's addresses or a user not known yet does not match: routing
    never waits for a DNS lookup or a password check.
    """
    if rules is None or facts is None:
        return False
    return evaluate(rules, facts).action is Action.ALLOW


class Hierarchy:
    """
    The parents with their health, and the routing rules: the hops for each
    request, and what the I/O side reports back.

    @ivar config: The configuration it was built from.
    """

    __slots__ = ("_by_name", "_defaults", "_group", "_selection_code", "config")

    def __init__(self, config: HierarchyConfig) -> None:
        self.config = config
        policy = HealthPolicy(
            max_fails=config.max_fails,
            fail_timeout=config.fail_timeout,
            probed=config.probe != "off",
        )
        self._by_name = {peer.name: peer for peer in config.peers}
        selected = [Member(peer.name, peer.weight) for peer in config.peers if not peer.default]
        defaults = [Member(peer.name, peer.weight) for peer in config.peers if peer.default]
        self._group = UpstreamGroup(
            "parents", selected, build_selection(config.selection, selected), policy
        )
        self._defaults = UpstreamGroup(
            "default parents", defaults, build_selection(SelectionKind.FIRST_UP, defaults), policy
        )
        self._selection_code = hierarchy_code(config.selection)

    def peer(self, name: str) -> CachePeer:
        """The parent named C{name}."""
        return self._by_name[name]

    def _parents(
        self, facts: Facts | None, key: bytes, now: float, in_flight: Callable[[str], int]
    ) -> list[Hop]:
        """The usable parents for this request, best first."""
        by_name = self._by_name

        def allowed(member: Member) -> bool:
            peer = by_name[member.name]
            if peer.access is not None and (
                facts is None or evaluate(peer.access, facts).action is not Action.ALLOW
            ):
                return False
            limit = peer.max_connections
            return not limit or in_flight(peer.name) < limit

        hops: list[Hop] = []
        for index, member in enumerate(self._group.candidates(key, now, allowed)):
            code = self._selection_code if index == 0 else "ANY_OLD_PARENT"
            hops.append(Hop(by_name[member.name], code))
        if self._defaults.members:
            for member in self._defaults.candidates(key, now, allowed):
                hops.append(Hop(by_name[member.name], "DEFAULT_PARENT"))
        return hops

    def names_for(self, facts: Facts | None) -> tuple[str, ...]:
        """
        Every parent whose C{access} rules allow the request, up or not:
        what the 503 of C{never_direct} names.
        """
        return tuple(
            peer.name
            for peer in self.config.peers
            if peer.access is None
            or (facts is not None and evaluate(peer.access, facts).action is Action.ALLOW)
        )

    def route(
        self,
        facts: Facts | None,
        key: bytes,
        now: float,
        in_flight: Callable[[str], int] = lambda name: 0,
    ) -> Route:
        """
        The hops for one request.

        @param facts: What the ACLs look at (L{None}: no rule matches).
        @param key: What CARP hashes: the absolute URI as sent upstream, or
            C{host:port} for CONNECT (Squid's effective request URI).
        @param in_flight: How many requests each parent (by name) has in
            flight now, for C{max_connections}.
        """
        config = self.config
        if _allows(config.always_direct, facts):
            return Route((DIRECT,), "always_direct allowed it")
        parents = self._parents(facts, key, now, in_flight)
        if _allows(config.never_direct, facts):
            return Route(tuple(parents), "never_direct allowed it", never_direct=True)
        if _allows(config.prefer_direct, facts):
            return Route((DIRECT, *parents), "prefer_direct allowed it")
        return Route((*parents, DIRECT), "parents first (prefer_direct off)")

    # -- what happened --------------------------------------------------------

    def _group_of(self, peer: CachePeer) -> UpstreamGroup:
        return self._defaults if peer.default else self._group

    def failed(self, peer: CachePeer, now: float) -> Change | None:
        """A connection to C{peer} failed; L{Change.DOWN} once per outage."""
        return self._group_of(peer).failed(Member(peer.name, peer.weight), now)

    def succeeded(self, peer: CachePeer, now: float) -> Change | None:
        """C{peer} answered (a request or a probe); L{Change.UP} once."""
        return self._group_of(peer).succeeded(Member(peer.name, peer.weight), now)

    def is_down(self, peer: CachePeer) -> bool:
        """Whether C{peer} is marked down."""
        return self._group_of(peer).is_down(Member(peer.name, peer.weight))

    def to_probe(self) -> list[CachePeer]:
        """The parents a prober should try now (down, probing on)."""
        members = self._group.to_probe() + self._defaults.to_probe()
        return [self._by_name[member.name] for member in members]
