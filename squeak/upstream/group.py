# -*- test-case-name: tests.test_upstream_group -*-
"""
A group of servers tried in turn: parent peers, or an accelerator's origin
pool.  It puts a selection (L{squeak.upstream.selection}) and each member's
health (L{squeak.upstream.health}) together, so the code that connects only
asks "which, in what order?" and says what happened.

Pure: the caller passes the time; connecting, probing and logging are the
caller's, driven by what this returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from squeak.upstream.health import Change, HealthPolicy, MemberHealth
from squeak.upstream.selection import Member, Selection

__all__ = ["UpstreamGroup"]


def _always(member: Member) -> bool:
    return True


class UpstreamGroup:
    """
    Members, the order to try them in, and which of them are up.

    @ivar name: The group's name, for logs and error pages.
    @ivar members: In configuration order.
    """

    __slots__ = ("_health", "_selection", "members", "name")

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        selection: Selection,
        policy: HealthPolicy,
    ) -> None:
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ValueError(f"group {name!r}: member names must be unique: {names}")
        self.name = name
        self.members = tuple(members)
        self._selection = selection
        self._health = {member.name: MemberHealth(policy) for member in members}

    def candidates(
        self, key: bytes, now: float, allowed: Callable[[Member], bool] = _always
    ) -> list[Member]:
        """
        The members to try for one request, best first: up (or due for a
        trial) and C{allowed} (e.g. by the peer's access rules).  Empty
        when none is: the caller goes direct or answers 503 naming
        L{name}.
        """
        health = self._health
        return self._selection.choose(
            key, lambda member: health[member.name].usable(now) and allowed(member)
        )

    def failed(self, member: Member, now: float) -> Change | None:
        """A request to C{member} failed to connect or got no answer."""
        return self._health[member.name].failed(now)

    def succeeded(self, member: Member, now: float) -> Change | None:
        """C{member} answered a request or a probe."""
        return self._health[member.name].succeeded(now)

    def is_down(self, member: Member) -> bool:
        """Whether C{member} was reported down and is not up again."""
        return self._health[member.name].down

    def to_probe(self) -> list[Member]:
        """The members a prober should try now."""
        return [member for member in self.members if self._health[member.name].needs_probe()]
