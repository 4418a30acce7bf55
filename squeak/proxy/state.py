# -*- test-case-name: tests.test_proxy_hit -*-
"""
Where an exchange is (L{ExchangeState}), and what it asks of the handler
working for it (L{Handler}).

As h11's C{_state.py} and mitmproxy's C{HttpStream} do, one attribute names
the state, so a reader (and a C{repr}) sees where an exchange is instead of
working it out from which of many flags are set.
"""

from __future__ import annotations

import enum
from typing import Protocol

from twisted.python.failure import Failure

__all__ = ["ExchangeState", "Handler"]


class ExchangeState(enum.Enum):
    """
    Where an exchange is.
    """

    ADMITTING = "admitting"
    """The target is parsed and the access rules asked (they may wait)."""
    WAITING = "waiting"
    """Collapsed forwarding: an identical fetch is under way."""
    FETCHING = "fetching"
    """The request went to the origin (or a tunnel is being opened)."""
    RELAYING_BODY = "relaying body"
    """The origin's answer is being relayed (and perhaps stored)."""
    SERVING = "serving"
    """Answered from a stored entry."""
    ANSWERING = "answering"
    """Answered by the proxy itself (TRACE, OPTIONS, PURGE, an error page)."""
    TUNNELLING = "tunnelling"
    """A CONNECT tunnel or an upgraded connection relays bytes."""
    DONE = "done"
    """The response finished or the client left; the line is logged."""


class Handler(Protocol):
    """
    What an exchange asks of the handler working for it: to know that the
    exchange is over and, when C{reason} is set, that the client left, so
    any upstream work is stopped.
    """

    def ended(self, reason: Failure | None) -> None: ...
