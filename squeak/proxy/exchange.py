# -*- test-case-name: tests.test_proxy -*-
"""
The client side of the proxy: one L{ForwardProxy} channel per client
connection, one L{ForwardRequest} per request on it.

This module only moves bytes and orchestrates.  Every decision is a call to a
pure module: L{squeak.http.target} parses the request-target, L{squeak.http.fields}
rewrites fields and checks framing, L{squeak.errors} names failures and
renders their pages, L{squeak.accesslog} formats the log line.

The streaming contract (see docs/architecture.md):
  - a response body is copied by a L{BodyRelay} handed to
    C{response.deliverBody}; the upstream transport is registered as the
    client request's streaming producer, so a slow client pauses the origin
    read and memory stays bounded whatever the body size;
  - only L{ResponseDone} (or L{PotentialDataLoss} for a close-delimited
    body) finishes the client response cleanly; any other ending aborts the
    client connection, so a truncated body never looks complete.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, cast

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import ClientFactory, Factory, connectionDone
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from typing_extensions import override

from squeak import __version__
from squeak.access.acl import Facts, client_address
from squeak.access.gatekeeper import (
    AccessDeniedError,
    AuthenticationRequiredError,
    Gatekeeper,
    resolve,
)
from squeak.access.rules import may_cache
from squeak.accesslog import AccessLog, AccessRecord
from squeak.cache.facade import CacheLookup, HttpCache, ResponseStorer
from squeak.cache.policy import (
    FreshnessRules,
    Reuse,
    ReuseDecision,
    StoredResponse,
    Validation,
    age_header_value,
    answer_client_conditional,
    decide_reuse,
    derived_values,
    freshen_stored,
    handle_validation_response,
    headers_for_reuse,
    not_modified_headers,
    stored_fields_for_reuse,
    validation_request_headers,
)
from squeak.cache.ranges import (
    RangeKind,
    RangePlan,
    ShortReadError,
    file_reader,
    iter_body,
    plan_range_response,
)
from squeak.cache.store import CacheHit, Store, Transient
from squeak.config import Config
from squeak.errors import BodyComplete, BodyEnded, ProxyError, error_headers, render_error_page
from squeak.http.fields import (
    RawHeaders,
    connection_options,
    downstream_response_headers,
    first_value,
    is_forwarding_loop,
    parse_max_forwards,
    upstream_request_headers,
)
from squeak.http.request import MessageError, RequestHead
from squeak.http.target import Target, TargetError, parse_absolute_target, parse_authority
from squeak.net.channel import ClientChannel, Exchange, serialise_fields
from squeak.net.deadlines import Deadlines, deadline_resolution
from squeak.net.failures import error_for_failure
from squeak.net.intercept import (
    OriginalDestinationError,
    host_matches_destination,
    host_to_resolve,
    is_proxy_itself,
    original_destination,
)
from squeak.net.origin import UpstreamClient, UpstreamResponse
from squeak.net.tunnel import Tunnel, UpstreamEnd, UpstreamEndFactory
from squeak.net.upgrade import (
    BadResponseHeadError,
    ResponseHead,
    UpgradeUpstream,
    content_length,
    request_head,
    response_head,
)
from squeak.net.wire import SendBatcher

#: Methods the proxy answers itself when Max-Forwards reaches 0
#: (RFC 9110 §7.6.2).
_MAX_FORWARDS_METHODS = frozenset({b"TRACE", b"OPTIONS"})

#: Request fields never echoed back by a local TRACE (RFC 9110 §9.3.8:
#: exclude fields likely to hold sensitive data).
_TRACE_HIDDEN = frozenset({b"authorization", b"proxy-authorization", b"cookie"})

#: Request fields that make a request conditional (RFC 9110 §13.1) for
#: L{answer_client_conditional}.
_CONDITIONAL_FIELDS = frozenset({b"if-none-match", b"if-modified-since"})

#: Squid's cache-result fields, set by this proxy on every response.
_X_CACHE_FIELDS = frozenset({b"x-cache", b"x-cache-lookup"})
#: The error page of a request refused while it was read, by status
#: (L{ForwardProxy.reject_message}); any other is ERR_INVALID_REQ.
_REJECTION_NAMES = {
    408: "ERR_REQUEST_PARSE_TIMEOUT",
    413: "ERR_TOO_BIG",
    505: "ERR_UNSUP_REQ",
}
#: HTTP-version bytes of the common (protocol, major, minor) triples.
_HTTP_VERSIONS = {(b"HTTP", 1, 1): b"HTTP/1.1", (b"HTTP", 1, 0): b"HTTP/1.0"}

#: Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT_STATUSES = frozenset({204, 304})


@dataclass
class ProxyContext:
    """
    Everything a request needs from the running service, built once.

    @ivar gatekeeper: Access rules and proxy authentication.
    """

    config: Config
    reactor: Any
    upstream: UpstreamClient
    access_log: AccessLog
    gatekeeper: Gatekeeper
    cooperator: Cooperator
    cache: HttpCache
    #: The origins' answer and read timeouts (L{squeak.net.deadlines}).
    deadlines: Deadlines
    #: Sends each reactor turn's writes together (L{squeak.net.wire}).
    batcher: SendBatcher

    #: Open client connections, and how many each client address has (for
    #: stats, C{maxconn} rules and a clean shutdown).
    channels: set[Any] = field(default_factory=set)
    connections_by_client: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        config: Config,
        reactor: Any,
        access_log: AccessLog,
        local_addresses: Iterable[Any] = (),
    ) -> ProxyContext:
        """
        Wire the context from configuration.

        @param local_addresses: This host's own addresses (listeners and,
            for wildcard listeners, interfaces), added to C{to_localhost}.
        """
        gatekeeper = Gatekeeper.from_config(config, reactor, local_addresses)
        batcher = SendBatcher(reactor)
        upstream = UpstreamClient(
            reactor,
            connect_timeout=config.timeouts.connect,
            max_idle_per_host=config.upstream.max_idle_per_host,
            idle_timeout=config.timeouts.server_idle,
            ca_file=config.upstream.ca_file,
            sender=batcher,
        )
        # One write(2) per request costs ~5 % under load, and formatting a
        # line between two requests more than formatting many in a row:
        # collect records, format and write them every 0.5 s or 512 lines
        # (and at reopen and close).
        access_log.start_buffering(reactor)
        return cls(
            config=config,
            reactor=reactor,
            upstream=upstream,
            access_log=access_log,
            gatekeeper=gatekeeper,
            cache=HttpCache(
                Store.from_config(config.cache) if config.cache.enabled else None,
                FreshnessRules.from_config(config.cache),
            ),
            cooperator=Cooperator(scheduler=lambda work: reactor.callLater(0, work)),
            deadlines=Deadlines(
                reactor,
                deadline_resolution(min(config.timeouts.connect, config.timeouts.read)),
            ),
            batcher=batcher,
        )


@functools.lru_cache(maxsize=4)
def _x_cache_values(visible_hostname: str) -> tuple[bytes, bytes]:
    """
    C{HIT from NAME} and C{MISS from NAME}, the values of Squid's
    C{X-Cache} and C{X-Cache-Lookup} fields.
    """
    name = visible_hostname.encode("ascii", "replace")
    return b"HIT from " + name, b"MISS from " + name


def _text(value: bytes) -> str:
    """
    Bytes from the wire as text for logs and pages, never failing.
    """
    return value.decode("latin-1")


def _no_credentials() -> None:
    """
    What an intercepted client can offer when asked for credentials.
    """
    return None


def _asks_for_upgrade(received: RawHeaders) -> bool:
    """
    Whether a request asks to switch protocols (RFC 9110 §7.8): an Upgrade
    field named by Connection.
    """
    return b"upgrade" in connection_options(received) and any(
        name.lower() == b"upgrade" for name, _ in received
    )


class _UpgradeFactory(ClientFactory):
    """
    Builds the L{UpgradeUpstream} that carries one upgrade request.
    """

    noisy = False

    def __init__(self, head: bytes, check_peer: Callable[[str], None] | None) -> None:
        self._head = head
        self._check_peer = check_peer

    def buildProtocol(self, addr: Any) -> UpgradeUpstream:
        upstream = UpgradeUpstream(self._head, self._check_peer)
        upstream.factory = self
        return upstream


class BodyRelay:
    """
    Copies one upstream response body to the client, with backpressure and a
    read timeout.

    It is both the L{IProtocol} given to C{response.deliverBody} and the
    L{IPushProducer} registered with the client request.  It forwards pause
    and resume to the upstream transport, and it suspends the read timeout
    while paused: an origin is not to blame for a slow client.
    """

    #: Bodies of at most this many bytes (known in advance) are relayed
    #: without registering as the client connection's producer.
    SMALL_BODY = 65536

    def __init__(
        self,
        request: ForwardRequest,
        read_timeout: float,
        reactor: Any,
        deadlines: Deadlines | None = None,
    ) -> None:
        """
        @param deadlines: Where the read timeout is kept (the proxy's,
            shared by every relay); by default the relay's own.
        """
        self._request = request
        self._read_timeout = read_timeout
        if deadlines is None:
            deadlines = Deadlines(reactor, deadline_resolution(read_timeout))
        self._deadlines = deadlines
        self._paused = False
        self.transport: Any = None
        self.done = False

    # IProtocol, driven by Twisted's response
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        length = getattr(self.transport, "length", None)
        if not (isinstance(length, int) and length <= self.SMALL_BODY):
            # A body of unknown length, or a large one: let the client's
            # connection pause the origin as its buffer fills.  A small one
            # cannot fill it (and the request stops the relay itself if the
            # client leaves), so most small misses skip the bookkeeping.
            self._request.register_producer(self, True)
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        self._arm()
        self._request.write(data)

    def connectionLost(self, reason: Failure) -> None:
        self.done = True
        self._disarm()
        self._request.body_ended(reason)

    # IPushProducer, driven by the client channel
    def pauseProducing(self) -> None:
        self._paused = True
        self._disarm()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resumeProducing()
        if not self.done:
            self._arm()

    def stopProducing(self) -> None:
        """
        The client went away: stop reading from the origin.  Losing the
        upstream connection keeps a half-read response out of the pool.
        """
        self._disarm()
        if self.transport is not None and not self.done:
            self.transport.stopProducing()

    def _arm(self) -> None:
        if self._paused or self.done:
            return
        self._deadlines.set(self, self._read_timeout, self._timed_out)

    def _disarm(self) -> None:
        self._deadlines.cancel(self)

    def _timed_out(self) -> None:
        self._request.note_read_timeout()
        if self.transport is not None:
            self.transport.stopProducing()


class ForwardRequest(Exchange):
    """
    One proxied request: checks, rebuilds and forwards it, then relays the
    answer.

    The upstream side is a pooled persistent L{UpstreamClient} (Twisted's
    C{ProxyClient} speaks HTTP/1.0 with a connection per request; see
    shared/ARCHITECTURE.md "Traps").
    """

    _log = Logger()
    channel: ForwardProxy

    # Per-request state.  The initial values are class attributes, shadowed
    # by instance attributes when set: a request is built per request, and
    # most of these are never set on a hit.
    _log_code = "NONE"
    _hierarchy = "HIER_NONE"
    _peer = "-"
    _logged = False
    _pending: defer.Deferred[Any] | None = None
    _pending_access: defer.Deferred[Any] | None = None
    _user: str | None = None
    _facts: Facts | None = None
    _lookup: CacheLookup | None = None
    _validating = False
    _storer: ResponseStorer | None = None
    _transient: Transient | None = None
    _request_time = 0.0
    _collapsed = False
    # Intercepted requests: the Host the client sent (kept upstream), the URI
    # they are cached under, and whether Host matched the socket's original
    # destination (a forged Host is never cached).
    _intercept_authority: bytes | None = None
    _cache_uri: str | None = None
    _cacheable = True
    _relay: BodyRelay | None = None
    _read_timed_out = False
    # Whether the origin's answer is being timed (context.deadlines).
    _timing_answer = False
    # A hit's Content-Type, when its fields went out as a field_block.
    _content_type: bytes | None = None
    _overdue: float | None = None

    def __init__(self, channel: ForwardProxy, head: RequestHead, body: IO[bytes] | None) -> None:
        super().__init__(channel, head, body)
        self.context: ProxyContext = channel.context
        self._started = self.context.reactor.seconds()

    @override
    def process(self) -> None:
        try:
            self._forward()
        except ProxyError as error:
            self.send_error(error)

    def _forward(self) -> None:
        """
        Parse the target, then ask the access rules (which may resolve the
        destination or verify credentials) before anything is forwarded.
        """
        client_ip = self.client_host
        hostname = self.context.config.proxy.visible_hostname
        if b"via" in self.field_names and is_forwarding_loop(self.received, hostname):
            # First: a request that already passed through here (even one
            # rewritten into origin form by this proxy) must not go round.
            raise ProxyError(
                "ERR_FORWARDING_LOOP", 508, f"this request already passed through {hostname} (Via)"
            )
        if self.channel.intercepting:
            self._forward_intercepted(client_ip)
            return
        try:
            if self.method == b"CONNECT":
                host, port = parse_authority(self.uri, None)
                target = None
                scheme, url, path = "authority", _text(self.uri), ""
            else:
                target = parse_absolute_target(self.uri)
                host, port, scheme = target.host, target.port, target.scheme
                url, path = target.uri_text, target.path_text
        except TargetError as error:
            raise ProxyError(error.name, error.status, error.detail) from None
        self._ask_access(
            target, client_ip, scheme=scheme, host=host, port=port, url=url, path=path
        )

    def _ask_access(
        self,
        target: Target | None,
        client_ip: str,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        path: str,
        destination: str | None = None,
    ) -> None:
        """
        Ask the access rules about this request; go on in L{_admitted}, or
        answer 403/407 in L{_refused}.

        @param destination: The address the request will go to when it is
            already known (an intercepted connection's original destination);
            it is then what C{dst} rules see, and no credentials are asked
            for (such clients cannot answer 407).
        """
        gatekeeper = self.context.gatekeeper
        facts = gatekeeper.facts(
            client=client_ip,
            method=self.method,
            scheme=scheme,
            host=host,
            port=port,
            url=url,
            path=path,
            user_agent=self.field(b"user-agent"),
            client_connections=self.context.connections_by_client.get(client_ip, 1),
            destination=destination,
        )
        if gatekeeper.allows_at_once(facts):
            self._admitted(facts, target, host, port, client_ip)
            return
        credentials = self._proxy_credentials if destination is None else _no_credentials
        admitted = gatekeeper.admit(facts, credentials)
        self._pending_access = admitted
        admitted.addCallback(self._admitted, target, host, port, client_ip)
        admitted.addErrback(self._refused)
        admitted.addErrback(self._internal_error)

    def _proxy_credentials(self) -> bytes | None:
        """
        The request's C{Proxy-Authorization} value, if any.
        """
        return self.field(b"proxy-authorization")

    def _outgoing_headers(
        self, target: Target, received: RawHeaders, client_ip: str, max_forwards: int | None
    ) -> RawHeaders:
        """
        The request fields to send upstream, rebuilt from the client's.  The
        Host is the URI's authority, or for an intercepted request the Host
        its client sent.
        """
        proxy = self.context.config.proxy
        return upstream_request_headers(
            received,
            authority=self._intercept_authority or target.authority,
            client_ip=client_ip,
            visible_hostname=proxy.visible_hostname,
            forwarded_for=proxy.forwarded_for,
            via=proxy.via,
            max_forwards=max_forwards,
            request_version=self.version,
        )

    def _forward_intercepted(self, client_ip: str) -> None:
        """
        A request redirected here by the firewall (origin form, Host): it
        goes to the socket's original destination whatever Host says; Host
        must resolve to that destination for the response to be cached (the
        CVE-2009-0801 class of cache poisoning).
        """
        try:
            destination = self.channel.original_destination()
        except OriginalDestinationError as error:
            raise ProxyError(
                "ERR_INVALID_REQ", 400, f"not an intercepted connection: {error}"
            ) from None
        local = self.channel.transport.getHost()
        if is_proxy_itself(destination, [(local.host, local.port)]):
            raise ProxyError(
                "ERR_INVALID_REQ",
                400,
                "this port takes only connections redirected by the firewall; "
                "configure squeak as a proxy on its http_port instead",
            )
        dst_host, dst_port = destination
        if self.uri.startswith(b"/"):
            path = self.uri
        else:
            try:
                path = parse_absolute_target(self.uri).path
            except TargetError as error:
                raise ProxyError(error.name, error.status, error.detail) from None
        shown = f"[{dst_host}]" if ":" in dst_host else dst_host
        host_value = self.field(b"host") or shown.encode()
        target = Target("http", dst_host, dst_port, path)
        name = host_to_resolve(host_value, default_port=80)
        self._intercept_authority = host_value
        pending = resolve(self.context.reactor, name) if name else defer.succeed(())
        self._pending_access = pending
        pending.addCallback(self._intercepted_host_checked, target, name, host_value, client_ip)
        pending.addErrback(self._refused)
        pending.addErrback(self._internal_error)

    def _intercepted_host_checked(
        self,
        addresses: tuple[Any, ...],
        target: Target,
        name: str | None,
        host_value: bytes,
        client_ip: str,
    ) -> defer.Deferred[Any] | None:
        self._pending_access = None
        if self.disconnected:
            return None
        matches, reason = host_matches_destination(
            host_value, target.host, target.port, [str(a) for a in addresses], default_port=80
        )
        if matches:
            self._cache_uri = f"http://{host_value.decode('latin-1').lower()}{_text(target.path)}"
        else:
            self._cacheable = False
            self._log.info("intercepted {url}: {reason}", url=_text(target.uri), reason=reason)
        self._ask_access(
            target,
            client_ip,
            scheme="http",
            host=name or target.host,
            port=target.port,
            url=self._cache_uri or _text(target.uri),
            path=_text(target.path),
            destination=target.host,
        )
        return None

    def _refused(self, reason: Failure) -> None:
        """
        The rules said no (403), or want credentials (407).
        """
        self._pending_access = None
        if reason.check(defer.CancelledError):
            return  # the client left while its access was being decided
        error = reason.trap(AccessDeniedError, AuthenticationRequiredError)
        self._log_code = "TCP_DENIED"
        if error is AuthenticationRequiredError:
            realm = reason.value.realm.replace("\\", "\\\\").replace('"', '\\"')
            self.send_error(
                cast(ProxyError, reason.value),
                extra_headers=[(b"Proxy-Authenticate", f'Basic realm="{realm}"'.encode())],
            )
        else:
            self.send_error(cast(ProxyError, reason.value))

    def _admitted(
        self, facts: Facts, target: Target | None, host: str, port: int, client_ip: str
    ) -> None:
        self._pending_access = None
        if self.disconnected:
            return
        self._user = facts.user
        self._facts = facts
        if target is None:
            self._open_tunnel(host, port)
            return
        try:
            self._forward_admitted(target, client_ip)
        except ProxyError as error:
            self.send_error(error)

    def _peer_check(self) -> Callable[[str], None] | None:
        """
        What checks the address a connection for this request goes to
        against the rules (L{Gatekeeper.peer_check}: DNS rebinding), if
        anything needs to.
        """
        facts = self._facts
        return None if facts is None else self.context.gatekeeper.peer_check(facts)

    def _forward_admitted(self, target: Target, client_ip: str) -> None:
        received = self.received
        max_forwards = None
        if self.method in _MAX_FORWARDS_METHODS:
            max_forwards = parse_max_forwards(received)
            if max_forwards == 0:
                self._answer_locally(received)
                return
            if max_forwards is not None:
                max_forwards -= 1
        if self.method == b"PURGE":
            self._purge(target, client_ip)
            return
        upgrading = (
            self.method == b"GET"
            and b"upgrade" in self.field_names
            and _asks_for_upgrade(received)
        )
        if not upgrading and self._answer_from_cache(target, received, client_ip):
            return
        if upgrading:
            self._log_code = "TCP_MISS"
            self._open_upgrade(target, received, client_ip)
            return
        outgoing = self._outgoing_headers(target, received, client_ip, max_forwards)
        if self._validating and self._lookup is not None and self._lookup.hit is not None:
            outgoing = validation_request_headers(outgoing, self._lookup.hit.meta.headers)
        self._send_upstream(target, outgoing)

    # -- the cache -------------------------------------------------------

    def _answer_from_cache(self, target: Target, received: RawHeaders, client_ip: str) -> bool:
        """
        Look the request up; serve it when the stored response may be
        reused, wait for an identical fetch already in flight (collapsed
        forwarding), or mark it for validation.

        @return: Whether the request was answered (or parked) here.
        """
        if not self._cacheable:
            return False
        cache = self.context.cache
        now = self.context.reactor.seconds()
        uri = self._cache_uri or target.uri_text
        lookup = cache.lookup(self.method, uri, received, client_ip, now, self.field_names)
        self._lookup = lookup
        if lookup is None:
            return False
        decision = lookup.decision
        if lookup.hit is not None and decision.kind in (Reuse.FRESH, Reuse.STALE_SERVE):
            code = "TCP_MEM_HIT" if lookup.hit.tier == "memory" else "TCP_HIT"
            self._serve_stored(lookup.hit, lookup.hit.meta, code)
            return True
        if decision.only_if_cached:
            lookup.release()
            raise ProxyError(
                "ERR_ONLY_IF_CACHED_MISS", 504, "not in the cache and only-if-cached was asked"
            )
        if lookup.hit is not None and decision.kind is Reuse.VALIDATE:
            self._validating = True
            return False
        if (
            self.method == b"GET"
            and not self._collapsed
            and not lookup.uncacheable
            and cache.store is not None
        ):
            transient, leader = cache.store.inflight.join(lookup.primary)
            if not leader:
                # Collapsed forwarding: an identical fetch is under way;
                # answer from the cache when it ends (or fetch then).
                self._collapsed = True
                transient.on_finished(lambda complete: self._collapsed_fetch_ended(target))
                return True
            self._transient = transient
        return False

    def _collapsed_fetch_ended(self, target: Target) -> None:
        if self.disconnected or self.finished:
            return
        try:
            self._forward_admitted(target, self.client_host)
        except ProxyError as error:
            self.send_error(error)

    def _end_transient(self, stored: bool) -> None:
        if self._transient is not None:
            transient, self._transient = self._transient, None
            transient.finish(complete=stored)

    def _serve_stored(self, hit: CacheHit, meta: StoredResponse, code: str) -> None:
        """
        Answer from a stored response: 304 to a matching conditional
        request, else the stored status, headers (with Age) and body.
        """
        cache = self.context.cache
        lookup = self._lookup
        now = self.context.reactor.seconds()
        self._log_code = code
        self._hierarchy, self._peer = "HIER_NONE", "-"
        if lookup is None:
            decision = None
        elif lookup.hit is not None and meta is lookup.hit.meta:
            decision = lookup.decision  # decided a moment ago, in lookup()
        else:
            decision = decide_reuse(lookup.request, meta, now, rules=cache.rules)
        received = self.received
        names = self.field_names
        if decision is None or not names.isdisjoint(_CONDITIONAL_FIELDS) or b"range" in names:
            # Without another cache's X-Cache fields: _annotate adds ours.
            if decision is None:
                headers = [(n, v) for n, v in meta.headers if n.lower() not in _X_CACHE_FIELDS]
            else:
                headers = headers_for_reuse(meta, decision, _X_CACHE_FIELDS)
            if not names.isdisjoint(_CONDITIONAL_FIELDS) and answer_client_conditional(
                received, headers, method=self.method, status=meta.status
            ):
                hit.close()
                if code in ("TCP_MEM_HIT", "TCP_HIT"):
                    # Squid's name for a client's conditional answered
                    # from a fresh entry.
                    self._log_code = "TCP_IMS_HIT"
                self.set_status(304)
                for name, value in not_modified_headers(headers):
                    self.add_field(name, value)
                self._annotate(hit=True, replace=False)
                self.finish()
                return
            if b"range" in names:
                plan = plan_range_response(
                    self.method, received, meta.status, headers, meta.body_length
                )
                if plan.kind is not RangeKind.FULL:
                    self._serve_stored_ranges(hit, plan)
                    return
            self.set_status(meta.status, meta.reason)
            self.response_fields += headers
            self._annotate(hit=True, replace=False)
        else:
            # The common hit: the stored fields and ours, serialised once
            # per entry; only Age is new.
            self.set_status(meta.status, meta.reason)
            self.field_block, self._content_type = self._served_fields(meta, decision)
            self.response_fields.append((b"Age", age_header_value(decision.age)))
        if meta.status not in _NO_CONTENT_STATUSES:
            self.content_length = meta.body_length
        if meta.status in _NO_CONTENT_STATUSES or self.method == b"HEAD":
            # Request.finish writes the head when no body was written.
            hit.close()
            self.finish()
            return
        if hit.body is not None and len(hit.body) <= _StoredBodySender.CHUNK:
            # A small memory hit: one write, no producer.
            self.write(hit.body)
            self.finish()
            return
        _StoredBodySender(self, hit, hit.chunks(_StoredBodySender.CHUNK)).start()

    def _served_fields(
        self, meta: StoredResponse, decision: ReuseDecision
    ) -> tuple[bytes, bytes | None]:
        """
        L{stored_fields_for_reuse} of C{meta} and our X-Cache fields,
        serialised for L{Exchange.field_block}; and the
        Content-Type among them, for the access log.  Remembered with the
        stored response, so a hot entry is serialised once.
        """
        hostname = self.context.config.proxy.visible_hostname
        found = self._lookup is not None and self._lookup.hit is not None
        key = ("squeak.proxy.exchange.served_fields", decision.strip_fields, hostname, found)
        remembered = derived_values(meta)
        served = remembered.get(key)
        if served is None:
            fields = [
                *stored_fields_for_reuse(meta, decision, _X_CACHE_FIELDS),
                *self._x_cache_fields(hit=True),
            ]
            served = remembered[key] = (
                serialise_fields(fields),
                first_value(fields, b"content-type"),
            )
        return cast("tuple[bytes, bytes | None]", served)

    def _serve_stored_ranges(self, hit: CacheHit, plan: RangePlan) -> None:
        """
        RFC 9110 §14: a Range request answered from a fully stored
        response: 206 with one range or multipart/byteranges, or 416.
        """
        self.set_status(plan.status)
        for name, value in plan.headers:
            self.add_field(name, value)
        self._annotate(hit=True)
        if plan.kind is RangeKind.UNSATISFIABLE or self.method == b"HEAD":
            hit.close()
            self.finish()
            return
        if hit.body is not None:
            body = hit.body

            def read(offset: int, size: int) -> bytes:
                return body[offset : offset + size]
        else:
            read = file_reader(hit.open())  # type: ignore[assignment]
        pieces = iter_body(plan, read, chunk_size=_StoredBodySender.CHUNK)
        _StoredBodySender(self, hit, pieces).start()

    def _annotate(self, *, hit: bool, replace: bool = True) -> None:
        """
        Squid's X-Cache and X-Cache-Lookup fields.

        @param replace: Whether the response fields may hold another
            cache's X-Cache fields (relayed or stored), which are removed;
            L{headers_for_reuse} has left them out of a served entry's.
        """
        if replace:
            self.response_fields = [
                (key, value)
                for key, value in self.response_fields
                if key.lower() not in _X_CACHE_FIELDS
            ]
        self.response_fields += self._x_cache_fields(hit=hit)

    def _x_cache_fields(self, *, hit: bool) -> RawHeaders:
        """
        Squid's C{X-Cache} (whether this response came from the cache) and
        C{X-Cache-Lookup} (whether the cache held an entry for it).
        """
        found = self._lookup is not None and self._lookup.hit is not None
        hit_value, miss_value = _x_cache_values(self.context.config.proxy.visible_hostname)
        return [
            (b"X-Cache", hit_value if hit else miss_value),
            (b"X-Cache-Lookup", hit_value if found else miss_value),
        ]

    def _purge(self, target: Target, client_ip: str) -> None:
        """
        PURGE removes a URI from the cache; only from the addresses in
        C{cache.purge_from} (loopback by default).
        """
        try:
            client = client_address(client_ip)
        except ValueError:
            client = None
        allowed = client is not None and any(
            client in network for network in self.context.config.cache.purge_from
        )
        if not allowed:
            self._log_code = "TCP_DENIED"
            raise ProxyError("ERR_ACCESS_DENIED", 403, "PURGE is not allowed from this address")
        purged = self.context.cache.purge(_text(target.uri))
        self._log_code = "TCP_MISS"
        self.set_status(200 if purged else 404)
        self.content_length = 0
        self.finish()

    @override
    def write(self, data: bytes) -> None:
        """
        Write to the client, and tee relayed body bytes into the cache entry
        being stored.
        """
        if self._storer is not None and data:
            self._storer.data(data)
        super().write(data)

    def _open_upgrade(self, target: Target, received: RawHeaders, client_ip: str) -> None:
        """
        A protocol upgrade (WebSocket, RFC 9110 §7.8): the request goes over
        a raw connection so the origin's 101 can be seen (L{squeak.net.upgrade}).
        """
        outgoing = self._outgoing_headers(target, received, client_ip, None)
        offered = b", ".join(v for n, v in received if n.lower() == b"upgrade")
        outgoing += [(b"Connection", b"Upgrade"), (b"Upgrade", offered)]
        head = request_head(self.method, target.path, outgoing)
        self._hierarchy = "HIER_DIRECT"
        self._peer = target.host
        endpoint = self.context.upstream.endpoint(target.scheme, target.host, target.port)
        pending = endpoint.connect(_UpgradeFactory(head, self._peer_check()))
        self._pending = pending
        pending.addCallbacks(self._upgrade_connected, self._upstream_failed)
        pending.addErrback(self._internal_error)

    def _upgrade_connected(self, upstream: UpgradeUpstream) -> None:
        self._pending = None
        if self.disconnected:
            upstream.transport.loseConnection()
            return
        self._peer = getattr(upstream.transport.getPeer(), "host", self._peer)
        waiting = upstream.head_received
        self._pending = waiting
        waiting.addTimeout(
            self.context.config.timeouts.read,
            self.context.reactor,
            onTimeoutCancel=self._response_timed_out,
        )
        waiting.addCallback(self._upgrade_answered, upstream)
        waiting.addErrback(self._upgrade_failed, upstream)
        waiting.addErrback(self._internal_error)

    def _response_timed_out(self, result: Any, timeout: float) -> Any:
        """
        The origin did not answer an upgrade request in time: 504.
        """
        if isinstance(result, Failure) and result.check(defer.CancelledError):
            return Failure(
                ProxyError(
                    "ERR_READ_TIMEOUT", 504, f"no response from the origin within {timeout:g}s"
                )
            )
        return result

    def _upgrade_failed(self, reason: Failure, upstream: UpgradeUpstream) -> None:
        self._pending = None
        upstream.transport.abortConnection()
        if reason.check(BadResponseHeadError):
            reason = Failure(ProxyError("ERR_INVALID_RESP", 502, reason.getErrorMessage()))
        self._upstream_failed(reason)

    def _upgrade_answered(
        self, answer: tuple[ResponseHead, bytes], upstream: UpgradeUpstream
    ) -> None:
        """
        Relay the origin's answer: a 101 turns the connection into a tunnel;
        anything else is relayed once and the connection closes.
        """
        self._pending = None
        head, rest = answer
        if self.disconnected:
            upstream.transport.loseConnection()
            return
        config = self.context.config
        fields = downstream_response_headers(
            head.headers,
            visible_hostname=config.proxy.visible_hostname,
            via=config.proxy.via,
            response_version=head.version,
        )
        limit = None
        if head.status == 101:
            switched = b", ".join(v for n, v in head.headers if n.lower() == b"upgrade")
            fields += [(b"Connection", b"Upgrade"), (b"Upgrade", switched)]
        else:
            framing = [(n, v) for n, v in head.headers if n.lower() == b"transfer-encoding"]
            length = content_length(head.headers)
            if length is not None:
                fields.append((b"Content-Length", b"%d" % length))
                limit = length
            fields += [*framing, (b"Connection", b"close")]
        first = response_head(head, fields)
        self.code = head.status
        self.head_bytes = len(first)
        self.set_field(b"Content-Type", first_value(head.headers, b"content-type") or b"-")
        if rest:
            upstream.early.append(rest)
        tunnel = Tunnel(
            self.context.reactor,
            config.timeouts.tunnel_idle,
            self._upgrade_closed,
            limit_to_client=limit,
        )
        tunnel.start(self.channel, upstream, first)
        if limit == 0:
            tunnel.upstream_data(b"")

    def _upgrade_closed(self, tunnel: Tunnel) -> None:
        self.write_access_log(status=self.code, size=self.head_bytes + tunnel.to_client)

    def _open_tunnel(self, host: str, port: int) -> None:
        """
        CONNECT (RFC 9110 §9.3.6): connect to the authority, answer 200 only
        once the connection is open, then relay bytes both ways.
        """
        self._hierarchy = "HIER_DIRECT"
        self._peer = host
        endpoint = HostnameEndpoint(
            self.context.reactor, host, port, timeout=self.context.config.timeouts.connect
        )
        pending = endpoint.connect(UpstreamEndFactory())  # type: ignore[arg-type]
        self._pending = pending
        pending.addCallbacks(self._tunnel_connected, self._upstream_failed)
        pending.addErrback(self._internal_error)

    def _tunnel_connected(self, upstream: UpstreamEnd) -> None:
        self._pending = None
        if self.disconnected:
            upstream.transport.loseConnection()
            return
        self._peer = getattr(upstream.transport.getPeer(), "host", self._peer)
        check_peer = self._peer_check()
        if check_peer is not None:
            try:
                check_peer(self._peer)
            except AccessDeniedError as error:
                # Nothing was sent to it: close, and refuse the client.
                upstream.transport.abortConnection()
                self._log_code = "TCP_DENIED"
                self.send_error(error)
                return
        self._log_code = "TCP_TUNNEL"
        tunnel = Tunnel(
            self.context.reactor, self.context.config.timeouts.tunnel_idle, self._tunnel_closed
        )
        tunnel.start(self.channel, upstream, b"HTTP/1.1 200 Connection established\r\n\r\n")

    def _tunnel_closed(self, tunnel: Tunnel) -> None:
        """
        Log the tunnel: Squid's size field is the bytes relayed to the
        client; both directions go to the service log.
        """
        self._log.info(
            "tunnel to {target} closed: {down} bytes to client, {up} from client{idle}",
            target=_text(self.uri),
            down=tunnel.to_client,
            up=tunnel.from_client,
            idle=" (idle timeout)" if tunnel.idle_timed_out else "",
        )
        self.write_access_log(status=200, size=tunnel.to_client)

    def _send_upstream(self, target: Target, outgoing: RawHeaders) -> None:
        body = None
        if self.body is not None:
            # The spooled body, sent from its start with a computed length.
            body = self.body
            body.seek(0)
        timeouts = self.context.config.timeouts
        self._hierarchy = "HIER_DIRECT"
        self._peer = target.host
        self._request_time = self.context.reactor.seconds()
        pending = self.context.upstream.request(
            self.method, target, outgoing, body, check_peer=self._peer_check()
        )
        self._pending = pending
        # A shared deadline sweep, not a timer (let alone Deferred.addTimeout)
        # per request: this runs on every miss (squeak/net/deadlines.py).
        timeout = timeouts.connect + timeouts.read
        self._timing_answer = True
        self.context.deadlines.set(self, timeout, self._no_answer_in_time, pending, timeout)
        pending.addCallbacks(self._got_response, self._upstream_failed)
        pending.addErrback(self._internal_error)

    def _no_answer_in_time(self, pending: defer.Deferred[Any], timeout: float) -> None:
        """
        The origin did not answer (connect plus read timeout): give up on
        it; L{_upstream_failed} answers 504.
        """
        self._timing_answer = False
        self._overdue = timeout
        pending.cancel()

    def _stop_timing_answer(self) -> None:
        if self._timing_answer:
            self._timing_answer = False
            self.context.deadlines.cancel(self)

    def _upstream_failed(self, reason: Failure) -> None:
        self._pending = None
        self._stop_timing_answer()
        if self._overdue is not None and reason.check(defer.CancelledError):
            reason = Failure(
                ProxyError(
                    "ERR_READ_TIMEOUT",
                    504,
                    f"no response from the origin within {self._overdue:g}s",
                )
            )
        self._end_transient(False)
        lookup = self._lookup
        if (
            self._validating
            # A refusal (Gatekeeper.check_peer) is answered as one, never
            # with a stale copy.
            and not reason.check(AccessDeniedError)
            and lookup is not None
            and lookup.hit is not None
            and lookup.decision.stale_if_error
            and not self.disconnected
        ):
            # RFC 5861 stale-if-error: the origin is unreachable, serve stale.
            self._serve_stored(lookup.hit, lookup.hit.meta, "TCP_REFRESH_FAIL_OLD")
            return
        if self.disconnected:
            return
        error = error_for_failure(reason)
        # Denied at connection time (Gatekeeper.check_peer): a refusal, not
        # a miss.
        self._log_code = "TCP_DENIED" if isinstance(error, AccessDeniedError) else "TCP_MISS"
        self._log.info(
            "upstream failure for {url}: {name} {detail}",
            url=_text(self.uri),
            name=error.name,
            detail=error.detail,
        )
        self.send_error(error)

    def _internal_error(self, reason: Failure) -> None:
        self._log.failure("internal error while proxying {url}", reason, url=_text(self.uri))
        if not self.disconnected and not self.finished:
            if self.started_writing:
                self.abort_client()
            else:
                self.send_error(ProxyError("ERR_GATEWAY_FAILURE", 500, "internal proxy error"))

    def _got_response(self, response: UpstreamResponse) -> None:
        self._pending = None
        self._stop_timing_answer()
        if response.peer:
            self._peer = response.peer
        if self.disconnected:
            response.deliverBody(_Discard())
            return
        self._log_code = "TCP_MISS"
        config = self.context.config
        annotated = self._lookup is not None
        fields = downstream_response_headers(
            response.raw_headers,
            visible_hostname=config.proxy.visible_hostname,
            via=config.proxy.via,
            response_version=_HTTP_VERSIONS.get(response.version)
            or b"HTTP/%d.%d" % (response.version[1], response.version[2]),
            # Another cache's X-Cache fields, when ours are added.
            replaced=_X_CACHE_FIELDS if annotated else frozenset(),
        )
        if self._validating and self._answered_by_validation(response, fields):
            return
        self._store_or_invalidate(response, fields)
        self.set_status(response.code, response.phrase)
        self.response_fields += fields
        if annotated:
            self._annotate(hit=False, replace=False)
        if self.method == b"HEAD":
            if response.content_length is not None:
                self.content_length = response.content_length
        elif response.code not in _NO_CONTENT_STATUSES and isinstance(response.length, int):
            # A known length is relayed as Content-Length, so Twisted does not
            # re-chunk it and a truncation is visible to the client.
            self.content_length = response.length
        relay = BodyRelay(self, config.timeouts.read, self.context.reactor, self.context.deadlines)
        self._relay = relay
        response.deliverBody(relay)

    def _answered_by_validation(self, response: UpstreamResponse, fields: RawHeaders) -> bool:
        """
        The origin answered a validation request (RFC 9111 §4.3.3): a 304
        freshens the stored response, which is served; a server error may
        let a stale one be served (stale-if-error); anything else replaces
        it, continuing as a miss.
        """
        lookup = self._lookup
        assert lookup is not None and lookup.hit is not None
        stored = lookup.hit.meta
        verdict = handle_validation_response(
            stored, response.code, fields, stale_if_error=lookup.decision.stale_if_error
        )
        if verdict.kind is Validation.FRESHEN:
            now = self.context.reactor.seconds()
            meta = freshen_stored(
                stored, fields, request_time=self._request_time, response_time=now
            )
            self.context.cache.freshen(lookup, meta)
            response.deliverBody(_Drain())
            self._serve_stored(lookup.hit, meta, "TCP_REFRESH_UNMODIFIED")
            return True
        if verdict.kind is Validation.SERVE_STALE:
            response.deliverBody(_Discard())
            self._serve_stored(lookup.hit, stored, "TCP_REFRESH_FAIL_OLD")
            return True
        lookup.release()
        self._log_code = "TCP_REFRESH_MODIFIED"
        return False

    def _store_or_invalidate(self, response: UpstreamResponse, fields: RawHeaders) -> None:
        """
        Start storing a cacheable response as it streams, or invalidate
        after an unsafe method (RFC 9111 §4.4).
        """
        cache = self.context.cache
        if not cache.enabled:
            return
        uri = self._cache_uri or _text(self.uri)
        if self.method not in (b"GET", b"HEAD", b"OPTIONS", b"TRACE"):
            cache.invalidate_after(self.method, response.code, uri, fields)
            return
        if self._lookup is not None and self._lookup.uncacheable:
            # Known not storable a moment ago: no storability decision per
            # request (the memo expires and the URL is tried again).
            return
        length = response.length if isinstance(response.length, int) else None
        allowed = self._facts is None or may_cache(
            self.context.gatekeeper.policy.cache, self._facts
        )
        self._storer = cache.storer(
            self._lookup,
            method=self.method,
            request_headers=self.received,
            status=response.code,
            reason=response.phrase,
            response_headers=fields,
            length=length,
            request_time=self._request_time,
            response_time=self.context.reactor.seconds(),
            client=self.client_host,
            allowed_by_rules=allowed,
        )
        if self._storer is None:
            if self._lookup is not None and self.method == b"GET":
                cache.note_uncacheable(self._lookup.primary, self.context.reactor.seconds())
            self._end_transient(False)

    def note_read_timeout(self) -> None:
        """
        The relay stopped an origin that went silent mid-body.
        """
        self._read_timed_out = True

    def body_ended(self, reason: Failure) -> None:
        """
        The upstream body ended: finish cleanly only when it is known to be
        complete; otherwise abort the client connection.
        """
        # The relay is done: let go of it, so that this request and its
        # relay (which refers back to it) are freed by reference counting
        # rather than left for the cyclic garbage collector.
        self._relay = None
        stored = False
        if self._storer is not None:
            # Only a body known to be complete is committed; a close-delimited
            # one (PotentialDataLoss) might have been cut short.
            stored = self._storer.finish(complete=isinstance(reason.value, BodyComplete))
            self._storer = None
        self._end_transient(stored)
        if self.disconnected or self.finished:
            return
        self.unregister_producer()
        if isinstance(reason.value, BodyEnded):
            self.finish()
            return
        self._log_code = "TCP_MISS_ABORTED"
        why = (
            f"no data from the origin for {self.context.config.timeouts.read:g}s"
            if self._read_timed_out
            else error_for_failure(reason).detail
        )
        expected = "" if self.content_length is None else f" of {self.content_length}"
        self._log.info(
            "origin response for {url} ended after {sent}{expected} body bytes ({why}); "
            "closing the client connection",
            url=_text(self.uri),
            sent=self.sent_length,
            expected=expected,
            why=why,
        )
        self.abort_client()

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

    def _answer_locally(self, received: RawHeaders) -> None:
        """
        Max-Forwards reached 0 on TRACE or OPTIONS: this proxy is the final
        recipient (RFC 9110 §7.6.2).
        """
        self._log_code = "TCP_MISS"
        if self.method == b"TRACE":
            lines = [b"%s %s %s" % (self.method, self.uri, self.version)]
            lines += [
                name + b": " + value
                for name, value in received
                if name.lower() not in _TRACE_HIDDEN
            ]
            body = b"\r\n".join(lines) + b"\r\n\r\n"
            self.set_status(200)
            self.set_field(b"Content-Type", b"message/http")
        else:
            body = b""
            self.set_status(200)
            self.set_field(b"Allow", b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE")
        self.content_length = len(body)
        self.write(body)
        self.finish()

    def send_error(
        self, error: ProxyError, extra_headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """
        Answer with the error's page, or abort if a response already started.
        """
        if self.disconnected or self.finished:
            return
        if self.started_writing:
            self.abort_client()
            return
        if self._log_code == "NONE" and error.status in (400, 413, 501):
            self._log_code = "TAG_NONE"
        page = render_error_page(
            error,
            url=_text(self.uri),
            method=_text(self.method),
            client=self.client_host,
            visible_hostname=self.context.config.proxy.visible_hostname,
            now=self.context.reactor.seconds(),
        )
        self.set_status(error.status)
        for name, value in error_headers(error):
            self.set_field(name, value)
        for name, value in extra_headers:
            self.add_field(name, value)
        self.content_length = len(page)
        if error.status in (400, 413):
            # After a malformed or refused request the framing of what
            # follows on this connection is not trustworthy.
            self.channel.persistent = False
        self.write(page)
        self.finish()

    @override
    def ended(self, reason: Failure | None) -> None:
        """
        The response finished or the client went away: stop any upstream
        work still running and write the access-log line.
        """
        self._stop_timing_answer()
        if reason is not None:
            if self._pending_access is not None:
                access, self._pending_access = self._pending_access, None
                access.cancel()
            if self._pending is not None:
                pending, self._pending = self._pending, None
                pending.cancel()
            if self._relay is not None and not self._relay.done:
                self._relay.stopProducing()
            if self._log_code == "TCP_MISS":
                self._log_code = "TCP_MISS_ABORTED"
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
        access_log = self.context.access_log
        if not access_log.is_open:
            return
        now = self.context.reactor.seconds()
        content_type = self._content_type or self.response_field(b"content-type")
        user_agent = referer = None
        if access_log.wants_agent:
            user_agent = self.field(b"user-agent")
            referer = self.field(b"referer")
        # Positional and with inline decoding: this runs for every request.
        record = AccessRecord(
            now,
            max(0, round((now - self._started) * 1000)),
            self.channel.client_host,
            self._log_code,
            status if status is not None else (self.code if self.started_writing else 0),
            size if size is not None else self.head_bytes + self.sent_length,
            (self.method or b"-").decode("latin-1"),
            (self.uri or b"-").decode("latin-1"),
            self._user,
            self._hierarchy,
            self._peer,
            content_type.decode("latin-1") if content_type else "-",
            referer.decode("latin-1") if referer is not None else None,
            user_agent.decode("latin-1") if user_agent is not None else None,
            (self.version or b"HTTP/1.0").decode("latin-1"),
        )
        access_log.write(record)


class _StoredBodySender:
    """
    Streams a stored body to the client as a push producer: reads a chunk
    whenever the client connection can take more, so a large disk hit is
    never read whole into memory.
    """

    CHUNK = 64 * 1024

    def __init__(self, request: ForwardRequest, hit: CacheHit, pieces: Iterator[bytes]) -> None:
        self._request = request
        self._hit = hit
        self._chunks = pieces
        self._paused = False
        self._done = False

    def start(self) -> None:
        self._request.register_producer(self, True)
        self._request.notify_finish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and not self._done:
            try:
                chunk = next(self._chunks, None)
            except ShortReadError:
                # The stored body is shorter than its metadata says: never
                # finish a response that cannot be whole.
                self.stopProducing()
                self._request.abort_client()
                return
            if chunk is None:
                self._finish()
                return
            self._request.write(chunk)

    def stopProducing(self) -> None:
        if not self._done:
            self._done = True
            self._hit.close()

    def _finish(self) -> None:
        self._done = True
        self._hit.close()
        request = self._request
        request.unregister_producer()
        if not request.disconnected and not request.finished:
            request.finish()


class _Drain:
    """
    Consumes a response body that carries nothing wanted (a 304's), leaving
    the upstream connection reusable.
    """

    def makeConnection(self, transport: Any) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class _Discard:
    """
    Drains and drops a response body nobody wants any more (its client
    left), stopping the upstream read at once.
    """

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class ForwardProxy(ClientChannel):
    """
    A client connection of the proxy: runs a L{ForwardRequest} per request,
    answers unreadable requests with a reasoned error page, and keeps the
    per-client connection counts the access rules use.
    """

    exchange_factory = ForwardRequest
    _log = Logger()
    #: Whether this connection was redirected here by the firewall
    #: (an intercept listener): its requests are in origin form.
    intercepting = False
    context: ProxyContext

    @override
    def reject_message(self, error: MessageError) -> None:
        name = _REJECTION_NAMES.get(error.status, "ERR_INVALID_REQ")
        self.reject(ProxyError(name, error.status, error.detail))

    def reject(self, error: ProxyError) -> None:
        """
        Refuse a request before it was fully received: write the error page
        straight to the transport, log it, and close the connection.
        """
        self.rejected = True
        context = self.context
        now = context.reactor.seconds()
        method_seen, uri_seen, version_seen = self.request_line
        uri = _text(uri_seen or b"-")
        method = _text(method_seen or b"-")
        client = self.client_host
        page = render_error_page(
            error,
            url=uri,
            method=method,
            client=client,
            visible_hostname=context.config.proxy.visible_hostname,
            now=now,
        )
        head = [b"HTTP/1.1 %d %s" % (error.status, http.RESPONSES.get(error.status, b"Error"))]
        head += [name + b": " + value for name, value in error_headers(error)]
        head += [b"Content-Length: %d" % len(page), b"Connection: close"]
        data = b"\r\n".join(head) + b"\r\n\r\n" + page
        self.send(data)
        self._log.info(
            "rejected request from {client}: {detail}", client=client, detail=error.detail
        )
        context.access_log.write(
            AccessRecord(
                timestamp=now,
                elapsed_ms=0,
                client=client,
                code="TAG_NONE",
                status=error.status,
                size=len(data),
                method=method,
                url=uri,
                user=None,
                hierarchy="HIER_NONE",
                peer="-",
                content_type="text/html",
                referer=None,
                user_agent=None,
                version=_text(version_seen or b"HTTP/1.1"),
            )
        )
        self.lingering_close()

    @override
    def connectionMade(self) -> None:
        super().connectionMade()
        context = self.context
        context.channels.add(self)
        counts = context.connections_by_client
        counts[self.client_host] = counts.get(self.client_host, 0) + 1

    def original_destination(self) -> tuple[str, int]:
        """
        Where the client really connected before the firewall redirected
        it (read from the socket once per connection).

        @raise OriginalDestinationError: No redirection is recorded.
        """
        cached = getattr(self, "_original_destination", None)
        if cached is None:
            cached = original_destination(self.transport)
            self._original_destination = cached
        return cached

    def forget(self) -> None:
        """
        Stop counting this connection (when it closes, also after a tunnel
        took it over).
        """
        context = self.context
        if self not in context.channels:
            return
        context.channels.discard(self)
        counts = context.connections_by_client
        left = counts.get(self.client_host, 1) - 1
        if left > 0:
            counts[self.client_host] = left
        else:
            counts.pop(self.client_host, None)

    @override
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.forget()
        super().connectionLost(reason)


class ForwardProxyFactory(Factory):
    """
    Builds L{ForwardProxy} channels with the configured limits and the
    client-idle timeout.
    """

    protocol = ForwardProxy
    noisy = False

    def __init__(self, context: ProxyContext, *, intercepting: bool = False) -> None:
        self.context = context
        self.intercepting = intercepting

    @override
    def buildProtocol(self, addr: Any) -> ForwardProxy:
        channel = ForwardProxy()
        channel.factory = self
        config = self.context.config
        channel.context = self.context
        channel.reactor = self.context.reactor
        channel.sender = self.context.batcher
        channel.idle_timeout = config.timeouts.client_idle
        channel.head_timeout = config.timeouts.request_head
        channel.max_head_size = config.limits.request_header_size
        channel.max_fields = config.limits.request_headers
        channel.max_body_size = config.limits.request_body_size
        channel.intercepting = self.intercepting
        return channel


SERVER_SOFTWARE = f"squeak/{__version__}"
