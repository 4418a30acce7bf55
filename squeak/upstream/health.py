# -*- test-case-name: tests.test_upstream_health -*-
"""
Whether a server is up, from what happened to the requests sent to it.

Squid marks a parent dead after C{connect-fail-limit} failures and probes
it until it answers; nginx counts C{max_fails} failures within
C{fail_timeout}, takes the server out for C{fail_timeout}, then tries it
with real requests again.  One state machine does both: with probing on, a
server that went down stays down until a success (a probe's, or a
request's) brings it back; with probing off, it is tried again after
C{fail_timeout}, and one more failure takes it out for another period.

Each change is reported once (L{Change}), so the caller logs "down" and
"up" once per outage rather than per failed request.

Pure: the caller passes the clock's time to every call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Change", "HealthPolicy", "MemberHealth"]


class Change(StrEnum):
    """A change of a server's state, to log once."""

    DOWN = "down"
    UP = "up"


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """
    @ivar max_fails: Failures within C{fail_timeout} that take a server
        down (at least 1).
    @ivar fail_timeout: Seconds: the window in which failures count, and,
        without probing, how long a server stays out before it is tried.
    @ivar probed: Whether something probes down servers: if so, a down
        server is offered again only after a success.
    """

    max_fails: int = 1
    fail_timeout: float = 10.0
    probed: bool = False


class MemberHealth:
    """
    One server's recent failures and whether it is down.
    """

    __slots__ = ("_down_until", "_failures", "down", "policy")

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self._failures: deque[float] = deque()
        #: Whether the server was reported down and not yet up again.
        self.down = False
        #: Without probing: when it may be tried again.
        self._down_until = 0.0

    def usable(self, now: float) -> bool:
        """Whether requests may be sent to it now."""
        if not self.down:
            return True
        return not self.policy.probed and now >= self._down_until

    def failed(self, now: float) -> Change | None:
        """
        A connection to it failed, or it sent no response in time.

        @return: L{Change.DOWN} when this failure takes it down (once per
            outage), else L{None}.
        """
        policy = self.policy
        if self.down:
            # A trial after the pause failed: out for another period,
            # already reported.
            self._down_until = now + policy.fail_timeout
            return None
        failures = self._failures
        failures.append(now)
        while failures and failures[0] <= now - policy.fail_timeout:
            failures.popleft()
        if len(failures) < policy.max_fails:
            return None
        failures.clear()
        self.down = True
        self._down_until = now + policy.fail_timeout
        return Change.DOWN

    def succeeded(self, now: float) -> Change | None:
        """
        It answered (a response, or a probe's success).

        @return: L{Change.UP} when it was down, else L{None}.
        """
        self._failures.clear()
        if not self.down:
            return None
        self.down = False
        return Change.UP

    def needs_probe(self) -> bool:
        """Whether a prober should try it (it is down and probing is on)."""
        return self.down and self.policy.probed
