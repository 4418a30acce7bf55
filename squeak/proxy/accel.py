# -*- test-case-name: tests.test_proxy_accel -*-
"""
Accelerator mode: an origin-form request (C{GET /path} + C{Host}) for one
of the configured sites, answered like any proxied request (the same
cache, collapsed forwarding, upgrades and error pages) but sent to a server
of the site's origin pool.

An accelerated request is a L{ForwardRequest} with two targets: the public
URL (C{http://app.example/path}), which the cache is keyed by and PURGE
names, and the chosen server with the routed path, which the connection
goes to.  What differs from the forward proxy is decided by the pure
modules of L{squeak.accel} (site, route, fields) and done by
L{squeak.proxy.pools} (which server, retries, health) and
L{squeak.proxy.buffering} (reading the application at its own pace).

An accelerator port is never an open proxy: absolute-URI requests and
CONNECT are refused there unless its entry says C{forward_proxy = true},
in which case they are handled exactly as on a forward-proxy port (the
C{http_access} rules apply).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from typing_extensions import override

from squeak.accel.caching import CACHE_VIEW_FIELD, cache_view
from squeak.accel.config import AccelListener, AccelSite
from squeak.accel.headers import forwarding_fields, rewrite_redirect, rewrite_refresh
from squeak.accel.routing import AccelRouter, Decision, RoutingError, host_name
from squeak.access.rules import Action, evaluate
from squeak.errors import BodyEnded, ProxyError
from squeak.http.fields import RawHeaders, is_forwarding_loop, upstream_request_headers
from squeak.http.target import Target
from squeak.net.origin import UpstreamResponse
from squeak.proxy.buffering import ResponseBuffer
from squeak.proxy.client import ForwardProxyFactory
from squeak.proxy.context import ProxyContext
from squeak.proxy.local import LocalAnswers
from squeak.proxy.logtag import Answer
from squeak.proxy.pools import OriginPools, PoolRequest
from squeak.proxy.router import ForwardRequest
from squeak.upstream.selection import Member

__all__ = ["AccelProxyFactory", "AccelRequest", "AccelService"]


@dataclass(frozen=True, slots=True)
class AccelService:
    """
    What the requests of one C{[[accel]]} entry share.

    @ivar scheme: C{http} (or C{https} on a TLS listener): the public
        URL's scheme, and the C{X-Forwarded-Proto} sent.
    """

    listener: AccelListener
    router: AccelRouter
    pools: OriginPools
    scheme: str = "http"


class AccelProxyFactory(ForwardProxyFactory):
    """
    The client channels of one C{[[accel]]} entry's listeners; its
    requests are L{AccelRequest}s.
    """

    def __init__(self, context: ProxyContext, service: AccelService) -> None:
        super().__init__(context, AccelRequest)
        self.accel = service


def _text(value: bytes) -> str:
    return value.decode("latin-1")


_log = Logger()

#: Request fields a background refresh does not copy: the client's own
#: cache directives and conditionals, ranges, and framing and
#: connection-level fields.
_NOT_REFRESHED = frozenset(
    {
        b"cache-control",
        b"pragma",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",
        b"connection",
        b"keep-alive",
        b"te",
        b"upgrade",
        b"content-length",
        b"transfer-encoding",
        b"expect",
    }
)


class _DrainToEnd:
    """Reads a body to its end (so it is stored), then fires C{done}."""

    __slots__ = ("_done",)

    def __init__(self, done: Deferred[None]) -> None:
        self._done = done

    def makeConnection(self, transport: Any) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        if isinstance(reason.value, BodyEnded):
            self._done.callback(None)
        else:
            self._done.errback(reason)


class AccelRequest(ForwardRequest):
    """
    One request on an accelerator port.
    """

    decision: Decision | None = None
    _service: AccelService | None = None
    _pool_request: PoolRequest | None = None
    _candidates: list[Member] | None = None
    _public_origin = b""
    _host_sent = b""
    _buffer: ResponseBuffer | None = None
    _cache_view: bytes | None = None

    @property
    def service(self) -> AccelService:
        if self._service is None:
            self._service = cast(AccelProxyFactory, self.channel.factory).accel
        return self._service

    @override
    def process(self) -> None:
        service = self.service
        uri = self.uri
        if self.method == b"CONNECT" or not uri.startswith(b"/"):
            if service.listener.forward_proxy:
                super().process()
                return
            self.answer = Answer.DENIED
            if self.method == b"CONNECT":
                what = "CONNECT"
            elif uri == b"*":
                what = "a request for * (asterisk-form)"
            else:
                what = "an absolute-URI request"
            self.send_error(
                ProxyError(
                    "ERR_ACCEL_NOT_A_PROXY",
                    405 if self.method == b"CONNECT" else 400,
                    f"this port is an accelerator for its own sites, not a proxy: "
                    f"{what} is refused here",
                )
            )
            return
        try:
            self._route()
        except ProxyError as error:
            self.send_error(error)

    def _route(self) -> None:
        """
        Site, route, rules; then answered as a forwarded request.

        @raise ProxyError: For a loop, an unknown site or path, or a
            refusal by the site's rules.
        """
        context = self.context
        service = self.service
        hostname = context.config.proxy.visible_hostname
        if b"via" in self.field_names and is_forwarding_loop(self.received, hostname):
            raise ProxyError(
                "ERR_FORWARDING_LOOP", 508, f"this request already passed through {hostname} (Via)"
            )
        host = self.field(b"host")
        try:
            site = service.router.site_for(host, self.version)
            decision = service.router.route(site, self.uri)
        except RoutingError as error:
            self.answer = Answer.DENIED
            raise ProxyError(error.name, error.status, error.detail) from None
        self.decision = decision
        # Its site's pools answer it, never the forward proxy's parents.
        self.through_hierarchy = False
        scheme = service.scheme
        named = host_name(host) if host else None
        if named is not None and (named == site.name or named in site.aliases):
            self._host_sent = host.strip() if host else b""
        else:
            # No Host, or one naming no site (a fallback): the application
            # sees the site's own name, never a Host of the client's
            # choosing that it might build links from into a response
            # cached for everyone (host-header cache poisoning).
            self._host_sent = site.name.encode("latin-1")
        self._public_origin = scheme.encode("ascii") + b"://" + self._host_sent
        default_port = 443 if scheme == "https" else 80
        public = Target(scheme, site.name, default_port, decision.path)
        self.cache_uri = public.uri_text
        # Logged and shown on error pages as the public URL (as Squid does
        # in accelerator mode), not as the bare path.
        self.uri = public.uri_text.encode("latin-1")
        if site.rules is not None and site.rules.rules:
            # Facts only for a site with rules (the common open site skips
            # them; the forward proxy's [access] cache rules do not apply).
            facts = context.gatekeeper.facts(
                client=self.client_host,
                method=self.method,
                scheme=scheme,
                host=site.name,
                port=default_port,
                url=public.uri_text,
                path=_text(decision.path),
                user_agent=self.field(b"user-agent"),
                client_connections=context.connections_by_client.get(self.client_host, 1),
            )
            self.facts = facts
            verdict = evaluate(site.rules, facts)
            if verdict.action is not Action.ALLOW:
                self.answer = Answer.DENIED
                raise ProxyError("ERR_ACCESS_DENIED", 403, f"denied by {verdict.reason}")
        if self.method == b"PURGE":
            LocalAnswers(self, context).purge(public)
            return
        pool = service.pools.pools[decision.pool]
        candidates = service.pools.candidates(decision.pool, self._balance_key())
        if not candidates:
            raise ProxyError("ERR_ACCEL_POOL_DOWN", 503, f"no server of pool {pool.name} is up")
        self._candidates = candidates
        server = pool.servers[candidates[0].name]
        self.forward(Target("http", server.host, server.port, decision.upstream_path))

    @override
    def forward(self, target: Target) -> None:
        """
        As for the forward proxy; then, when a stale entry was served within
        its C{stale-while-revalidate} window (the site's
        C{stale_while_updating}), refresh it in the background.
        """
        super().forward(target)
        lookup = self.lookup
        if (
            lookup is not None
            and lookup.decision.revalidate_in_background
            and self.decision is not None
            and self.service.scheme == "http"
        ):
            self._refresh_in_background(lookup.primary)

    def _refresh_in_background(self, primary: str) -> None:
        """
        Validate the entry this request was served stale from, through this
        very listener (a request with C{Cache-Control: max-age=0} and the
        client's other fields, so the same variant is refreshed), at most
        one at a time per entry; nobody waits for it (RFC 5861 §3).
        """
        refreshing = self.service.pools.refreshing
        if primary in refreshing:
            return
        refreshing.add(primary)
        local = self.channel.transport.getHost()
        decision = self.decision
        assert decision is not None
        fields = [
            (name, value) for name, value in self.received if name.lower() not in _NOT_REFRESHED
        ]
        fields.append((b"Cache-Control", b"max-age=0"))
        context = self.context
        pending = context.upstream.request(
            b"GET", Target("http", local.host, local.port, decision.path), fields, None
        )
        timeouts = context.config.timeouts
        timer = context.reactor.callLater(timeouts.connect + timeouts.read + 5, pending.cancel)

        def answered(response: UpstreamResponse) -> Deferred[None]:
            drained: Deferred[None] = Deferred()
            response.deliverBody(_DrainToEnd(drained))
            return drained

        def done(result: object) -> None:
            refreshing.discard(primary)
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                _log.info(
                    "background refresh of {url} failed: {why}",
                    url=primary,
                    why=result.getErrorMessage(),
                )

        pending.addCallback(answered)
        pending.addBoth(done)

    def _balance_key(self) -> bytes:
        decision = self.decision
        assert decision is not None
        pool = self.service.pools.pools[decision.pool]
        return pool.key_for(self.client_host, self.cache_uri or "")

    # -- towards the application ----------------------------------------

    @override
    def peer_check(self) -> Callable[[str], None] | None:
        """
        None: the servers are the operator's own (often on loopback, which
        the forward proxy's rules keep clients away from).
        """
        if self.decision is None:
            return super().peer_check()
        return None

    @override
    def outgoing_headers(self, target: Target, max_forwards: int | None) -> RawHeaders:
        decision = self.decision
        if decision is None:
            return super().outgoing_headers(target, max_forwards)
        proxy = self.context.config.proxy
        pool = self.service.pools.pools[decision.pool]
        authority = pool.config.host.encode("latin-1") or self._host_sent
        fields = upstream_request_headers(
            self.received,
            authority=authority,
            client_ip=self.client_host,
            visible_hostname=proxy.visible_hostname,
            forwarded_for="transparent",
            via=proxy.via,
            max_forwards=max_forwards,
            request_version=self.version,
        )
        return forwarding_fields(
            fields,
            style=decision.site.forwarded,
            client_ip=self.client_host,
            proto=self.service.scheme,
            host=self._host_sent,
        )

    @override
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
        decision = self.decision
        if decision is None:
            return super().request_upstream(
                method, target, headers, body, check_peer=check_peer, on_interim=on_interim
            )
        if self._pool_request is not None:
            # A second fetch for this request (a retry after a 304 about
            # another response): the first one is over.
            self._pool_request.release()
        pending = self.service.pools.request(
            decision.pool,
            self._balance_key(),
            method,
            target.path,
            headers,
            body,
            candidates=self._candidates,
            on_interim=on_interim,
        )
        self._candidates = None
        self._pool_request = pending
        site = decision.site
        if site.buffering and self._buffer is None:
            # Only the application's answers are buffered: a hit is read
            # from the cache at the client's pace.
            self._buffer = ResponseBuffer(
                self, site.buffer_memory, site.buffer_file, self.context.reactor
            )
        self.hierarchy = self.service.pools.pools[decision.pool].hierarchy_code
        return pending.deferred.addCallback(self._from_application, pending)

    def _from_application(self, response: UpstreamResponse, pending: PoolRequest) -> Any:
        """
        The application answered: name the server in the log, and rewrite
        the fields that name its address.
        """
        decision = self.decision
        assert decision is not None
        server = pending.server
        if server is not None:
            self.peer = server.name
        site = decision.site
        if site.rewrite_redirects:
            self._rewrite_redirects(response, site, decision)
        self._cache_view = cache_view(
            response.raw_headers, site, self.context.config.proxy.visible_hostname
        )
        if site.surrogate_control:
            # Addressed to surrogates (this cache), not to clients.
            response.raw_headers[:] = [
                (name, value)
                for name, value in response.raw_headers
                if name.lower() != b"surrogate-control"
            ]
        return response

    @override
    def fields_to_store(self, fields: RawHeaders) -> RawHeaders:
        """The relayed fields, with the site's view of the response for the cache."""
        fields = super().fields_to_store(fields)
        if self._cache_view is None:
            return fields
        return [*fields, (CACHE_VIEW_FIELD, self._cache_view)]

    def _rewrite_redirects(
        self, response: UpstreamResponse, site: AccelSite, decision: Decision
    ) -> None:
        pool = self.service.pools.pools[decision.pool]
        servers = pool.authorities
        if pool.config.host:
            servers = servers | {pool.config.host.lower().encode("latin-1")}
        fields = response.raw_headers
        for index, (name, value) in enumerate(fields):
            low = name.lower()
            if low == b"location":
                rewritten = rewrite_redirect(
                    value, servers=servers, public_origin=self._public_origin, route=decision.route
                )
            elif low == b"refresh":
                rewritten = rewrite_refresh(
                    value, servers=servers, public_origin=self._public_origin, route=decision.route
                )
            else:
                continue
            if rewritten != value:
                fields[index] = (name, rewritten)

    # -- towards the client: response buffering --------------------------

    @override
    def register_producer(self, producer: Any, streaming: bool) -> None:
        buffer = self._buffer
        if buffer is None:
            super().register_producer(producer, streaming)
        else:
            buffer.register_origin(producer)

    @override
    def unregister_producer(self) -> None:
        if self._buffer is None:
            super().unregister_producer()

    @override
    def write(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is None:
            super().write(data)
        else:
            buffer.write(data)

    @override
    def finish(self) -> None:
        buffer = self._buffer
        if buffer is None:
            super().finish()
        else:
            buffer.finish()

    def write_to_client(self, data: bytes) -> None:
        """What the buffer sends on (L{ResponseBuffer})."""
        super().write(data)

    def finish_to_client(self) -> None:
        """The buffer is drained and the body ended."""
        super().finish()

    def register_buffer(self, producer: Any) -> None:
        """Let the client connection pause the buffer's draining."""
        super().register_producer(producer, True)

    def unregister_buffer(self) -> None:
        super().unregister_producer()

    @override
    def ended(self, reason: Failure | None) -> None:
        pending, self._pool_request = self._pool_request, None
        if pending is not None:
            pending.release()
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.close()
        super().ended(reason)
