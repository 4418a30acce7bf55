# -*- test-case-name: tests.test_net_intercept -*-
"""
Intercepted TLS (spliced, not decrypted) as the proxy sees it: the access
rules treat it as a CONNECT to the original destination, and it gets an
access-log line in the proxy's vocabulary (L{squeak.proxy.logtag}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from squeak.access.gatekeeper import AccessDeniedError
from squeak.accesslog import AccessRecord
from squeak.net.intercept import SpliceOutcome, SpliceRecord
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer, Outcome, log_tag

__all__ = ["SpliceAccess", "splice_answer"]


def _denied_is_false(failure: Failure) -> bool:
    """
    A refusal by the rules means "do not splice"; anything else propagates.
    """
    if isinstance(failure.value, AccessDeniedError):
        return False
    failure.raiseException()


def splice_answer(outcome: SpliceOutcome) -> Answer:
    """
    How a spliced connection's ending is named in the log: relayed
    (C{TCP_TUNNEL}), refused (C{TCP_DENIED}), or nothing (C{NONE}).
    """
    if outcome in (SpliceOutcome.SPLICED, SpliceOutcome.IDLE_TIMEOUT):
        return Answer.TUNNEL
    if outcome is SpliceOutcome.DENIED:
        return Answer.DENIED
    return Answer.NOTHING


class SpliceAccess:
    """
    Access rules and logging for intercepted TLS: the splice is treated as a
    CONNECT to the original destination, named by the SNI when there is one
    (so dstdomain rules see it), with the destination address known.
    """

    def __init__(self, context: ProxyContext) -> None:
        self._context = context

    def decide(
        self, sni: str | None, destination: tuple[str, int], client: tuple[str, int]
    ) -> Deferred[bool]:
        """
        Whether the rules let this connection be spliced.
        """
        gatekeeper = self._context.gatekeeper
        host = sni or destination[0]
        facts = gatekeeper.facts(
            client=client[0],
            method=b"CONNECT",
            scheme="authority",
            host=host,
            port=destination[1],
            url=f"{host}:{destination[1]}",
            path="",
            user_agent=None,
            client_connections=1,
            destination=destination[0],
        )
        admitted = gatekeeper.admit(facts, lambda: None)
        decided: Deferred[bool] = admitted.addCallback(lambda _: True)
        decided.addErrback(_denied_is_false)
        return decided

    def log(self, record: SpliceRecord) -> None:
        """
        One access-log line for a spliced connection.
        """
        answer = splice_answer(record.outcome)
        spliced = answer is Answer.TUNNEL
        destination = record.destination
        host = record.sni or (destination[0] if destination else "-")
        port = destination[1] if destination else 0
        self._context.access_log.write(
            AccessRecord(
                timestamp=record.started + record.duration,
                elapsed_ms=round(record.duration * 1000),
                client=record.client[0],
                code=log_tag(Outcome(answer)),
                status=200 if spliced else (403 if answer is Answer.DENIED else 0),
                size=record.to_client,
                method="CONNECT",
                url=f"{host}:{port}",
                user=None,
                hierarchy="ORIGINAL_DST" if spliced else "HIER_NONE",
                peer=destination[0] if destination and spliced else "-",
                content_type="-",
                referer=None,
                user_agent=None,
                version="-",
            )
        )
