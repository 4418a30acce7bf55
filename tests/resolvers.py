"""
A name resolver for tests: answers only the names it is given, from a
script, and never sends anything to a DNS server.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from zope.interface import implementer


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


class ScriptedResolver:
    """
    Resolves each name in C{answers} to the next IPv4 address of its list
    (the last one repeating, so a list of one is a fixed answer, and a
    longer one is a name whose answer changes between lookups, as an
    attacker's DNS server with a zero TTL would make it); every other name
    fails.  Install it with C{reactor.installNameResolver}.

    @ivar lookups: How many times each name was looked up.
    """

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self._answers = {name: list(addresses) for name, addresses in answers.items()}
        self.lookups: collections.Counter[str] = collections.Counter()

    def resolveHostName(
        self,
        receiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = _Resolution(hostName)
        receiver.resolutionBegan(resolution)
        addresses = self._answers.get(hostName)
        if addresses:
            self.lookups[hostName] += 1
            answer = addresses.pop(0) if len(addresses) > 1 else addresses[0]
            receiver.addressResolved(IPv4Address("TCP", answer, portNumber))
        receiver.resolutionComplete()
        return resolution
