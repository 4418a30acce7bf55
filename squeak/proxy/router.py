# -*- test-case-name: tests.test_proxy -*-
"""
Which handler answers a request: the routing step of the proxy.

L{ForwardRequest} is the exchange (L{squeak.proxy.exchange.ProxyExchange})
that picks its handlers: admission first (L{squeak.proxy.admission}); then,
once admitted, a tunnel for CONNECT, a local answer (Max-Forwards 0, PURGE),
an upgrade relay, a stored answer (L{squeak.proxy.hit}), a wait for an
identical fetch in flight (collapsed forwarding), or the origin
(L{squeak.proxy.miss}).

The routing lives apart from the exchange so that the handlers can use the
exchange without the exchange knowing them: the import graph stays a tree
(C{tests/test_architecture.py}).  The composition root
(L{squeak.service}) gives this class to the client channels' factory.
"""

from __future__ import annotations

from typing_extensions import override

from squeak.access.acl import Facts
from squeak.cache.facade import CacheLookup, Reuse
from squeak.errors import ProxyError
from squeak.http.fields import parse_max_forwards, upgrade_offer
from squeak.http.methods import uses_max_forwards
from squeak.http.target import Target
from squeak.proxy.admission import Admission
from squeak.proxy.exchange import ProxyExchange
from squeak.proxy.hit import HitHandler
from squeak.proxy.local import LocalAnswers
from squeak.proxy.logtag import Answer
from squeak.proxy.manager import answer_manager_request
from squeak.proxy.miss import MissHandler
from squeak.proxy.pac import answer_pac
from squeak.proxy.relay import RelayHandler
from squeak.proxy.state import ExchangeState

__all__ = ["ForwardRequest"]


class ForwardRequest(ProxyExchange):
    """
    One proxied request: admitted, then answered by the handler its kind of
    answer calls for.
    """

    @override
    def process(self) -> None:
        if answer_pac(self, self.context):
            # The proxy's own PAC file (squeak.proxy.pac): before admission,
            # with its own who-may rule, as browsers fetch it directly.
            return
        if b"squid-internal-mgr/" in self.uri and answer_manager_request(self):
            # A cache manager page asked of this proxy (squeak.proxy.manager),
            # in origin form or naming the proxy in absolute form: before
            # admission, with its own who-may rule, never forwarded (not
            # even to itself).  Other requests pay one substring test.
            return
        admission = Admission(self, self.context)
        self.hand_over(admission)
        try:
            admission.start()
        except ProxyError as error:
            # squidclient's cache_object:// target is no URI admission
            # accepts: looked for only once it is refused, so that other
            # requests pay nothing for it.
            if not answer_manager_request(self):
                self.send_error(error)

    @override
    def admitted(self, facts: Facts | None, target: Target | None, host: str, port: int) -> None:
        """
        The access rules admitted the request: CONNECT opens a tunnel,
        anything else is forwarded (or answered here).
        """
        self.hand_over(None)
        if facts is not None:
            self.user = facts.user
            self.facts = facts
        if target is None:
            relay = RelayHandler(self, self.context)
            self.hand_over(relay)
            relay.connect(host, port)
            return
        try:
            self.forward(target)
        except ProxyError as error:
            self.send_error(error)

    def forward(self, target: Target) -> None:
        """
        Answer an admitted request: locally (Max-Forwards 0, PURGE), by an
        upgrade, from the cache, or from the origin.

        @raise ProxyError: When it is answered with an error page.
        """
        received = self.received
        method = self.method
        max_forwards = None
        if uses_max_forwards(method):
            max_forwards = parse_max_forwards(received)
            if max_forwards == 0:
                LocalAnswers(self, self.context).max_forwards_reached()
                return
            if max_forwards is not None:
                max_forwards -= 1
        if method == b"PURGE":
            LocalAnswers(self, self.context).purge(target)
            return
        if method == b"GET" and b"upgrade" in self.field_names and self.version == b"HTTP/1.1":
            # RFC 9110 §7.8: only to the protocols squeak relays; any other
            # Upgrade is stripped (upstream_request_headers) and the request
            # goes as a plain one.  An HTTP/1.0 request's is ignored.
            offered = upgrade_offer(received, self.context.config.proxy.upgrade_protocols)
            if offered:
                self.answer = Answer.ORIGIN
                relay = RelayHandler(self, self.context)
                self.hand_over(relay)
                relay.upgrade(target, offered)
                return
        miss: MissHandler | None = None
        if self.cacheable:
            lookup = self.context.cache.lookup(
                method,
                self.cache_uri or target.uri_text,
                received,
                self.channel.client_host,
                self.context.reactor.seconds(),
                self.field_names,
            )
            self.lookup = lookup
            if lookup is not None:
                miss = self._answer_from_cache(lookup, target)
                if miss is None:
                    return
        if miss is None:
            miss = MissHandler(self, self.context)
        self.hand_over(miss)
        miss.fetch(target, max_forwards)

    def _answer_from_cache(self, lookup: CacheLookup, target: Target) -> MissHandler | None:
        """
        Serve a reusable stored response, wait for an identical fetch in
        flight (collapsed forwarding), or prepare the fetch: a validation,
        or a miss that may lead the fetch other requests wait for.

        @return: L{None} when answered (or parked) here; else the handler
            that goes to the origin.
        @raise ProxyError: For C{only-if-cached} without a servable entry
            (RFC 9111 §5.2.1.7).
        """
        decision = lookup.decision
        hit = lookup.hit
        if hit is not None and decision.kind in (Reuse.FRESH, Reuse.STALE_SERVE):
            answer = Answer.MEMORY if hit.tier == "memory" else Answer.DISK
            HitHandler(self, self.context).serve(hit, hit.meta, answer)
            return None
        if decision.only_if_cached:
            lookup.release()
            raise ProxyError(
                "ERR_ONLY_IF_CACHED_MISS", 504, "not in the cache and only-if-cached was asked"
            )
        if hit is not None and decision.kind is Reuse.VALIDATE:
            return MissHandler(self, self.context, validating=True)
        if self.method == b"GET" and not self.collapsed and not lookup.uncacheable:
            joined = self.context.cache.join_fetch(lookup, self.context.reactor.callLater)
            if joined is not None:
                transient, leader = joined
                if not leader:
                    # Collapsed forwarding: an identical fetch is under way;
                    # answer from the cache when it ends (or fetch then).
                    self.collapsed = True
                    self.context.counters.collapsed_waits += 1
                    self.state = ExchangeState.WAITING
                    transient.on_finished(lambda complete: self._collapsed_fetch_ended(target))
                    return None
                # Ended with the exchange at the latest (ProxyExchange.ended).
                self.transient = transient
                return MissHandler(self, self.context, transient=transient)
        return MissHandler(self, self.context)

    def _collapsed_fetch_ended(self, target: Target) -> None:
        if self.disconnected or self.finished:
            return
        try:
            self.forward(target)
        except ProxyError as error:
            self.send_error(error)
