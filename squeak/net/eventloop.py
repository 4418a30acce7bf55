# -*- test-case-name: tests.test_net_eventloop -*-
"""
The reactor squeak runs on under twistd: Twisted's epoll reactor without
the logging context around each event.

Twisted's L{EPollReactor} hands every ready socket to its handler through
C{log.callWithLogger}: it asks the connection for its C{logPrefix()},
builds a context dictionary and pushes it on a context stack, so that a
legacy C{twisted.python.log} message emitted while handling the event
carries the connection's name as its C{system}.  That is five Python calls
and two dictionaries per event.  A proxy on small keep-alive requests
handles two or three events per request (the client's request, the
origin's answer) and spends about a tenth of its time there
(docs/performance.md: about 10 % more hits and misses a second without
it).

squeak logs through C{twisted.logger.Logger}, whose events never read
that context; only Twisted's own legacy messages would, and those keep
their text and traceback, with C{-} as their C{system}.  Everything else
is the stock reactor: L{LeanEPollReactor.doPoll} polls exactly as
Twisted's does and calls the same C{_doReadOrWrite}, which turns each
event into C{doRead}/C{doWrite} and handles their errors and
disconnections; an error escaping that is logged and the loop goes on to
the next event, as C{callWithLogger} did.

L{install_default} installs it under twistd only when nobody chose a
reactor: C{twistd --reactor epoll squeak ...} runs on the stock one.  This
module needs epoll (Linux); L{squeak.tap} imports it only where
C{select.epoll} exists.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.logger import Logger

__all__ = ["LeanEPollReactor", "install_default"]

_log = Logger()


class LeanEPollReactor(epollreactor.EPollReactor):
    """
    L{EPollReactor} dispatching events without C{log.callWithLogger}.

    Relies on the reactor's private C{_poller}, C{_selectables} and
    C{_doReadOrWrite} (docs/architecture.md, "Private Twisted details");
    tests/test_net_eventloop.py runs real connections over it.
    """

    def doPoll(self, timeout: float | None) -> None:
        """
        Poll for events and hand each ready descriptor to its handler.
        """
        if timeout is None:
            timeout = -1  # wait until an event
        try:
            # As Twisted's: at most one event per descriptor watched.
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as error:
            if error.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle: Any = self._doReadOrWrite  # untyped in Twisted
        for fd, event in events:
            # A handler earlier in this batch may have closed this one.
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except BaseException:
                _log.failure("Unhandled error handling {selectable!r}", selectable=selectable)

    doIteration = doPoll


def install_default() -> bool:
    """
    Install L{LeanEPollReactor} as the global reactor, unless one is
    installed already (C{twistd --reactor}, or an embedding program that
    imported C{twisted.internet.reactor}).

    @return: Whether it was installed.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    # Both untyped in Twisted.
    make: Any = LeanEPollReactor
    install: Any = installReactor
    install(make())
    return True
