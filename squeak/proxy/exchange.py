# -*- test-case-name: tests.test_proxy -*-
"""
One request on the proxy: a L{ForwardRequest}, whose state is one named
value (L{ExchangeState}) and whose answer comes from one handler per kind
of answer.

The exchange only moves between handlers and keeps what the access log
needs; the handlers do the work, and every decision is a call to a pure
module:

  - L{squeak.proxy.admission}: the target, loops, interception and the
    access rules (L{squeak.access});
  - L{squeak.proxy.hit}: an answer from a stored entry (304, Range, Age);
  - L{squeak.proxy.miss}: the origin's answer, teed into the cache, and
    validation (RFC 9111 §4.3) with stale-if-error;
  - L{squeak.proxy.relay}: CONNECT tunnels and protocol upgrades;
  - L{squeak.proxy.local}: TRACE/OPTIONS at Max-Forwards 0, PURGE and
    error pages.

What happened is recorded as an outcome (L{squeak.proxy.logtag.Answer}
and a few facts beside it) and named once by L{log_tag} for the log line.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from typing_extensions import override

from squeak.access.acl import Facts
from squeak.access.facts import client_address
from squeak.accesslog import AccessRecord
from squeak.cache.facade import CACHE_VIEW_FIELD, CacheLookup, Transient
from squeak.errors import ProxyError, error_headers
from squeak.http.fields import RawHeaders, upstream_request_headers
from squeak.http.request import RequestHead
from squeak.http.target import Target
from squeak.net.channel import Exchange
from squeak.net.origin import UpstreamResponse
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer, hierarchy_note, log_tag
from squeak.proxy.state import ExchangeState, Handler
from squeak.proxy.xcache import X_CACHE_FIELDS, x_cache_fields
from squeak.stats.counters import DURATION_BUCKETS

if TYPE_CHECKING:
    from squeak.proxy.client import ForwardProxy

__all__ = ["ExchangeState", "Handler", "ProxyExchange"]

#: Statuses after which the client connection is closed: the framing of
#: what follows a malformed or refused request is not trustworthy.
_CLOSING_STATUSES = frozenset({400, 413})


class ProxyExchange(Exchange):
    """
    One proxied request: admitted, then answered by a handler.

    The upstream side is a pooled persistent L{squeak.net.origin.UpstreamClient}
    (Twisted's C{ProxyClient} speaks HTTP/1.0 with a connection per
    request; see shared/ARCHITECTURE.md "Traps").

    @ivar state: Where the exchange is (L{ExchangeState}).
    @ivar answer: Where its answer came from, for L{log_tag}.
    @ivar lookup: The cache lookup, once the cache was asked.
    @ivar transient: The collapsed fetch this request leads, if any: ended
        (as incomplete, if its handler did not end it first) when the
        exchange ends, whatever ended it, so that no follower waits for a
        leader that is gone.
    """

    _log = Logger()
    channel: ForwardProxy

    # Per-request state.  The initial values are class attributes, shadowed
    # by instance attributes when set: an exchange is built per request, and
    # most of these are never set on a hit.
    state = ExchangeState.ADMITTING
    # The outcome (squeak.proxy.logtag.OutcomeFacts).
    answer = Answer.NOTHING
    client_conditional_met = False
    body_cut = False
    client_left = False
    error_status = 0
    # For the log line.
    hierarchy = "HIER_NONE"
    peer = "-"
    user: str | None = None
    #: A hit's Content-Type, when its fields went out as a field_block.
    content_type: bytes | None = None
    # What admission found.
    facts: Facts | None = None
    lookup: CacheLookup | None = None
    collapsed = False
    #: The fetch this request leads that identical requests wait for
    #: (collapsed forwarding), until it ends.
    transient: Transient | None = None
    # Intercepted requests: the Host the client sent (kept upstream), the URI
    # they are cached under, and whether Host matched the socket's original
    # destination (a forged Host is never cached).
    intercept_authority: bytes | None = None
    cache_uri: str | None = None
    cacheable = True
    #: Whether a fetch goes through the cache hierarchy (parents) when one
    #: is configured; an accelerated request has its own origin pools.
    through_hierarchy = True
    #: Whether the request counts in the counters (squeak.stats): a cache
    #: manager page does not, so that watching the proxy does not move
    #: its request figures.
    counted = True
    _logged = False
    _handler: Handler | None = None

    def __init__(self, channel: ForwardProxy, head: RequestHead, body: IO[bytes] | None) -> None:
        super().__init__(channel, head, body)
        self.context: ProxyContext = channel.context
        self._started: float = self.context.reactor.seconds()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method!r} {self.uri!r} {self.state.name}>"

    def admitted(self, facts: Facts | None, target: Target | None, host: str, port: int) -> None:
        """
        The access rules admitted the request (called by
        L{squeak.proxy.admission.Admission}); the router
        (L{squeak.proxy.router.ForwardRequest}) picks the handler that
        answers it.
        """
        raise NotImplementedError

    def peer_check(self) -> Callable[[str], None] | None:
        """
        What checks the address a connection for this request goes to
        against the rules (L{Gatekeeper.peer_check}: DNS rebinding), if
        anything needs to.
        """
        facts = self.facts
        return None if facts is None else self.context.gatekeeper.peer_check(facts)

    def outgoing_headers(self, target: Target, max_forwards: int | None) -> RawHeaders:
        """
        The request fields to send upstream, rebuilt from the client's.  The
        Host is the URI's authority, or for an intercepted request the Host
        its client sent.
        """
        proxy = self.context.config.proxy
        return upstream_request_headers(
            self.received,
            authority=self.intercept_authority or target.authority,
            client_ip=self.client_host,
            visible_hostname=proxy.visible_hostname,
            forwarded_for=proxy.forwarded_for,
            via=proxy.via,
            max_forwards=max_forwards,
            request_version=self.version,
        )

    def request_upstream(
        self,
        method: bytes,
        target: Target,
        headers: RawHeaders,
        body: IO[bytes] | None,
        *,
        check_peer: Callable[[str], None] | None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None,
    ) -> Deferred[UpstreamResponse]:
        """
        Send the request on (L{UpstreamClient.request}): to the target's
        origin here; an accelerator's exchange sends it to a pool of
        servers instead (L{squeak.proxy.accel}).
        """
        return self.context.upstream.request(
            method, target, headers, body, check_peer=check_peer, on_interim=on_interim
        )

    def fields_to_store(self, fields: RawHeaders) -> RawHeaders:
        """
        The response fields as the cache keeps them: as relayed, less a
        C{Squeak-Cache-View} an origin sent (only squeak sets the cache's
        own view of a response: an accelerator's exchange,
        L{squeak.proxy.accel}).
        """
        if any(name.lower() == CACHE_VIEW_FIELD for name, _ in fields):
            return [(name, value) for name, value in fields if name.lower() != CACHE_VIEW_FIELD]
        return fields

    def annotate(self, *, hit: bool, replace: bool = True) -> None:
        """
        Squid's X-Cache and X-Cache-Lookup fields.

        @param replace: Whether the response fields may hold another
            cache's X-Cache fields (relayed or stored), which are removed;
            a served entry's fields already leave them out.
        """
        if replace:
            self.response_fields = [
                (key, value)
                for key, value in self.response_fields
                if key.lower() not in X_CACHE_FIELDS
            ]
        self.response_fields += self.x_cache_fields(hit=hit)

    def x_cache_fields(self, *, hit: bool) -> tuple[tuple[bytes, bytes], ...]:
        """
        Squid's C{X-Cache} (whether this response came from the cache) and
        C{X-Cache-Lookup} (whether the cache held an entry for it).
        """
        found = self.lookup is not None and self.lookup.hit is not None
        return x_cache_fields(self.context.config.proxy.visible_hostname, hit=hit, found=found)

    def hand_over(self, handler: Handler | None) -> None:
        """
        Let C{handler} be told when the exchange ends (or nobody, once a
        tunnel took the connection over).
        """
        self._handler = handler

    def names_of_this_proxy(self) -> tuple[set[str], int]:
        """
        The host names by which a client may name this proxy in an absolute
        URI (the address it connected to, C{visible_hostname}, and
        C{localhost} on a loopback connection), lower case, and the port it
        connected to: what the PAC file and the manager pages answer
        rather than forward to the proxy itself.
        """
        local = self.channel.transport.getHost()
        host = str(getattr(local, "host", "")).lower()
        names = {host, self.context.config.proxy.visible_hostname.lower()}
        try:
            if client_address(host).is_loopback:
                names.add("localhost")
        except ValueError:
            pass
        return names, int(getattr(local, "port", 0))

    def send_error(
        self, error: ProxyError, extra_headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """
        Answer with the error's page (Squid's, from C{templates/error.html}),
        or abort the client connection if a response already started: a
        response cannot be taken back, only shown to be cut short.
        """
        if self.disconnected or self.finished:
            return
        if self.started_writing:
            self.abort_client()
            return
        self.state = ExchangeState.ANSWERING
        self.error_status = error.status
        accept_language = self.field(b"accept-language")
        rendered = self.context.error_pages.render(
            error,
            accept_language=accept_language.decode("latin-1") if accept_language else None,
            url=self.uri.decode("latin-1"),
            method=self.method.decode("latin-1"),
            client=self.client_host,
            visible_hostname=self.context.config.proxy.visible_hostname,
            now=self.context.reactor.seconds(),
        )
        page = rendered.body
        self.set_status(error.status)
        for name, value in error_headers(
            error, language=rendered.language, negotiated=rendered.negotiated
        ):
            self.set_field(name, value)
        for name, value in extra_headers:
            self.add_field(name, value)
        self.content_length = len(page)
        if error.status in _CLOSING_STATUSES:
            # After a malformed or refused request the framing of what
            # follows on this connection is not trustworthy.
            self.channel.persistent = False
        self.write(page)
        self.finish()

    def internal_error(self, reason: Failure) -> None:
        """
        A bug in a handler: log it, and answer 500 or cut the response.
        """
        self._log.failure(
            "internal error while proxying {url}", reason, url=self.uri.decode("latin-1")
        )
        if not self.disconnected and not self.finished:
            if self.started_writing:
                self.abort_client()
            else:
                self.send_error(ProxyError("ERR_GATEWAY_FAILURE", 500, "internal proxy error"))

    def abort_client(self) -> None:
        """
        Close the client connection without finishing the response, so the
        client sees a truncated message rather than a short complete one.

        A FIN, not a reset: the client still reads what was relayed, then
        sees the body end short of its Content-Length or without the last
        chunk, which every HTTP client reports as truncation.
        """
        self.channel.persistent = False
        self.channel.lose_connection()

    @override
    def ended(self, reason: Failure | None) -> None:
        """
        The response finished or the client went away: stop any upstream
        work still running and write the access-log line.
        """
        handler = self._handler
        if handler is not None:
            # Let go of it: the handler refers back to this exchange.
            self._handler = None
            handler.ended(reason)
        transient = self.transient
        if transient is not None:
            # Whatever ended the exchange (a finished response, an error
            # page, a bug, the client leaving), its waiters are let go: a
            # transient never outlives its leader.  The handler ended it
            # already when the body was stored; this is then a no-op.
            self.transient = None
            transient.finish(complete=False)
        if reason is not None:
            self.client_left = True
        self.state = ExchangeState.DONE
        self.write_access_log()

    def write_access_log(self, *, status: int | None = None, size: int | None = None) -> None:
        """
        One line per request, written once.

        @param status: The status to log when it was not sent through this
            request (a tunnel's 200); else the response's.
        @param size: Bytes sent to the client when not counted by this
            request (a tunnel's relayed bytes).
        """
        if self._logged:
            return
        self._logged = True
        context = self.context
        now = context.reactor.seconds()
        tag = log_tag(self)
        if status is None:
            status = self.code if self.started_writing else 0
        if size is None:
            size = self.head_bytes + self.sent_length
        method = (self.method or b"-").decode("latin-1")
        elapsed = now - self._started
        # The counters of the manager pages and metrics (squeak.stats).
        if self.counted:
            counters = context.counters
            # Counters.request_done, inlined for the common case (its cell
            # exists): a call per request costs more than the counting.
            by_method = counters.requests.get(tag)
            cell = None if by_method is None else by_method.get(method)
            if cell is None:
                counters.request_done(method, tag, status, size, elapsed)
            else:
                klass = status // 100
                cell[klass] += 1
                cell[10 + klass] += size
                counters.durations[bisect_left(DURATION_BUCKETS, elapsed)] += 1
                counters.duration_sum += elapsed
        access_log = context.access_log
        if not access_log.is_open:
            return
        content_type = self.content_type or self.response_field(b"content-type")
        user_agent = referer = None
        if access_log.wants_agent:
            user_agent = self.field(b"user-agent")
            referer = self.field(b"referer")
        hierarchy, peer = hierarchy_note(tag, self.hierarchy, self.peer)
        # Positional and with inline decoding: this runs for every request.
        record = AccessRecord(
            now,
            max(0, round(elapsed * 1000)),
            self.channel.client_host,
            tag,
            status,
            size,
            method,
            (self.uri or b"-").decode("latin-1"),
            self.user,
            hierarchy,
            peer,
            content_type.decode("latin-1") if content_type else "-",
            referer.decode("latin-1") if referer is not None else None,
            user_agent.decode("latin-1") if user_agent is not None else None,
            (self.version or b"HTTP/1.0").decode("latin-1"),
        )
        access_log.write(record)
