# -*- test-case-name: tests.test_proxy_pools -*-
"""
The accelerator's origin pools: which server answers, trying the next one
when a server cannot be reached, keeping each server's health from what
happens to requests (passive) and, when configured, from probes (active).

The decisions are L{squeak.upstream}'s (the same L{UpstreamGroup} parent
peers use): the order of the servers for one request (round-robin,
smooth weighted round-robin, least-connections, or weighted rendezvous
hashing of the client's address or the URL), and whether a server is up
(C{max_fails} within C{fail_timeout}).  This module sends the requests
through the proxy's pooled origin client and reports what happened.

When to try another server (nginx's C{proxy_next_upstream error timeout},
without its non-idempotent option):
  - the connection could not be made: always, whatever the method, since
    nothing reached the server;
  - the connection ended before any response byte: only for idempotent
    methods (RFC 9110 §9.2.2), since a POST may have been acted upon;
  - anything else (a response, even a 5xx, or a malformed one): never.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from squeak.accel.config import AccelConfig, AccelPool, OriginServer
from squeak.errors import ProxyError
from squeak.http.fields import RawHeaders
from squeak.http.target import Target
from squeak.net.failures import NoResponseError, error_for_failure, failure_of
from squeak.net.origin import IDEMPOTENT, UpstreamClient, UpstreamResponse
from squeak.proxy.validate import DiscardBody
from squeak.upstream.group import UpstreamGroup
from squeak.upstream.health import Change, HealthPolicy
from squeak.upstream.selection import Member, SelectionKind, build_selection

__all__ = ["OriginPool", "OriginPools", "PoolRequest", "is_connect_failure"]

_log = Logger()

#: The configuration's balance names, as selections.
_SELECTIONS = {
    "round-robin": SelectionKind.ROUND_ROBIN,
    "least-connections": SelectionKind.LEAST_CONNECTIONS,
    "hash-client": SelectionKind.HASH,
    "hash-url": SelectionKind.HASH,
    "first-up": SelectionKind.FIRST_UP,
}


def is_connect_failure(exc: BaseException | None) -> bool:
    """
    Whether C{exc} says the connection to a server was never made, so
    nothing of the request reached it.
    """
    return isinstance(exc, (ierror.ConnectError, ierror.DNSLookupError))


#: The access log's hierarchy code for each balance, as Squid logs an
#: accelerator's C{originserver} peers: its C{round-robin} balances by
#: counts per weight, as least-connections does, and CARP is its URL hash.
HIERARCHY_CODES = {
    "round-robin": "ROUNDROBIN_PARENT",
    "least-connections": "ROUNDROBIN_PARENT",
    "hash-client": "SOURCEHASH_PARENT",
    "hash-url": "CARP",
    "first-up": "FIRSTUP_PARENT",
}


class OriginPool:
    """
    One pool: its servers as an L{UpstreamGroup}, and how many requests
    each is serving (for least-connections).

    @ivar authorities: The servers' C{host:port}, lower case, for
        redirect rewriting.
    """

    def __init__(self, name: str, config: AccelPool) -> None:
        self.name = name
        self.config = config
        self.servers = {server.name: server for server in config.origins}
        members = [Member(server.name, server.weight) for server in config.origins]
        self.active = dict.fromkeys(self.servers, 0)
        #: What the access log says chose the server (Squid's hier code).
        self.hierarchy_code = HIERARCHY_CODES[config.balance]
        kind = _SELECTIONS[config.balance]
        if kind is SelectionKind.ROUND_ROBIN and any(m.weight != 1 for m in members):
            kind = SelectionKind.WEIGHTED_ROUND_ROBIN
        selection = build_selection(kind, members, lambda member: self.active[member.name])
        self.group = UpstreamGroup(
            name,
            members,
            selection,
            HealthPolicy(
                max_fails=config.max_fails,
                fail_timeout=config.fail_timeout,
                probed=bool(config.check_path),
            ),
        )
        self.authorities = (
            frozenset(name.lower().encode("latin-1") for name in self.servers)
            | frozenset(
                f"{server.host}:{server.port}".lower().encode("latin-1")
                for server in config.origins
                if server.port == 80
            )
            | frozenset(
                server.host.lower().encode("latin-1")
                for server in config.origins
                if server.port == 80
            )
        )

    def key_for(self, client_ip: str, url: str) -> bytes:
        """What a hash balance hashes for one request."""
        if self.config.balance == "hash-client":
            return client_ip.encode("latin-1")
        return url.encode("latin-1")

    def report(self, member: Member, change: Change | None) -> None:
        """Log a server going down or coming back, once per change."""
        if change is not None:
            _log.warn(
                "origin {server} of pool {pool} is {change}",
                server=member.name,
                pool=self.name,
                change=change.value,
            )


class PoolRequest:
    """
    One request to a pool: tried on its servers in turn, as long as
    retrying is safe.

    @ivar deferred: Fires with the L{UpstreamResponse} of the server that
        answered, or fails with the last failure (or a 503 naming the pool
        when no server is up).  Cancelling it cancels the attempt under way.
    @ivar server: The server that answered, once one did.
    """

    def __init__(
        self,
        pools: OriginPools,
        pool: OriginPool,
        candidates: list[Member],
        method: bytes,
        path: bytes,
        headers: RawHeaders,
        body: IO[bytes] | None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None,
    ) -> None:
        self._pools = pools
        self._pool = pool
        self._candidates = candidates
        self._method = method
        self._path = path
        self._headers = headers
        self._body = body
        self._body_start = body.tell() if body is not None else 0
        self._on_interim = on_interim
        self._attempt: Deferred[UpstreamResponse] | None = None
        self._member: Member | None = None
        self._timer: Any = None
        self._timed_out: Member | None = None
        self.server: OriginServer | None = None
        self.tried: list[str] = []
        self.deferred: Deferred[UpstreamResponse] = Deferred(self._cancel)

    def start(self) -> None:
        """Send the request to the first server."""
        self._next(None)

    def _next(self, last: Failure | None) -> None:
        if not self._candidates:
            if last is None:
                last = failure_of(
                    ProxyError(
                        "ERR_ACCEL_POOL_DOWN",
                        503,
                        f"no server of pool {self._pool.name} is up",
                    )
                )
            self.deferred.errback(last)
            return
        member = self._candidates.pop(0)
        self._member = member
        self.tried.append(member.name)
        pool = self._pool
        pool.active[member.name] += 1
        server = pool.servers[member.name]
        if self._body is not None:
            self._body.seek(self._body_start)
        attempt = self._pools.upstream.request(
            self._method,
            Target("http", server.host, server.port, self._path),
            self._headers,
            self._body,
            on_interim=self._on_interim,
        )
        self._attempt = attempt
        limit = pool.config.answer_timeout
        if limit and self._candidates and self._method in IDEMPOTENT:
            # nginx's proxy_next_upstream timeout: a server that does not
            # start answering in time is given up for the next one.
            self._timer = self._pools.call_later(limit, self._no_answer, attempt, member)
        attempt.addCallbacks(
            self._answered, self._failed, callbackArgs=(member,), errbackArgs=(member,)
        )

    def _no_answer(self, attempt: Deferred[UpstreamResponse], member: Member) -> None:
        """The server did not start answering within C{answer_timeout}."""
        self._timer = None
        if attempt is not self._attempt:
            return
        self._attempt = None
        self._timed_out = member
        attempt.cancel()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _answered(self, response: UpstreamResponse, member: Member) -> None:
        self._attempt = None
        self._stop_timer()
        pool = self._pool
        pool.report(member, pool.group.succeeded(member, self._pools.now()))
        self.server = pool.servers[member.name]
        self.deferred.callback(response)

    def _failed(self, reason: Failure, member: Member) -> None:
        self._attempt = None
        self._stop_timer()
        pool = self._pool
        pool.active[member.name] -= 1
        self._member = None
        timed_out = self._timed_out is member
        self._timed_out = None
        if isinstance(reason.value, CancelledError) and not timed_out:
            return  # we were cancelled: the outer deferred fails already
        exc = reason.value
        connect_failed = is_connect_failure(exc)
        no_response = timed_out or isinstance(exc, NoResponseError)
        if connect_failed or no_response:
            pool.report(member, pool.group.failed(member, self._pools.now()))
        retry = connect_failed or (no_response and self._method in IDEMPOTENT)
        if retry and self._candidates:
            _log.info(
                "pool {pool}: {server} failed ({why}); trying {next}",
                pool=pool.name,
                server=member.name,
                why="no answer in time" if timed_out else type(exc).__name__,
                next=self._candidates[0].name,
            )
            self._next(reason)
            return
        self.deferred.errback(self._named(reason, member))

    def _named(self, reason: Failure, member: Member) -> Failure:
        """
        The failure answered, naming the pool and the servers tried, so
        that the error page says which application failed.
        """
        error = error_for_failure(reason, host=member.name)
        tried = ", ".join(self.tried)
        return failure_of(
            ProxyError(
                error.name,
                error.status,
                f"pool {self._pool.name}: {error.detail} (tried {tried})",
            )
        )

    def _cancel(self, deferred: Deferred[UpstreamResponse]) -> None:
        self._stop_timer()
        attempt, self._attempt = self._attempt, None
        self._candidates = []
        if attempt is not None:
            attempt.cancel()

    def release(self) -> None:
        """The answering server is done with this request (least-connections)."""
        member, self._member = self._member, None
        if member is not None:
            self._pool.active[member.name] -= 1


class OriginPools:
    """
    Every pool of the configuration, and their active checks.
    """

    def __init__(self, reactor: Any, upstream: UpstreamClient, config: AccelConfig) -> None:
        self._reactor = reactor
        self.upstream = upstream
        self.pools = {name: OriginPool(name, pool) for name, pool in config.pools.items()}
        #: Cache entries being refreshed in the background
        #: (L{squeak.proxy.accel}), one refresh each at a time.
        self.refreshing: set[str] = set()
        self._loops: list[LoopingCall] = []
        self._probes: dict[tuple[str, str], Deferred[Any]] = {}

    def now(self) -> float:
        return float(self._reactor.seconds())

    def call_later(self, delay: float, function: Callable[..., None], *args: Any) -> Any:
        """The reactor's C{callLater}."""
        return self._reactor.callLater(delay, function, *args)

    def request(
        self,
        pool_name: str,
        key: bytes,
        method: bytes,
        path: bytes,
        headers: RawHeaders,
        body: IO[bytes] | None,
        *,
        candidates: list[Member] | None = None,
        on_interim: Callable[[int, bytes, RawHeaders], None] | None = None,
    ) -> PoolRequest:
        """
        Send a request to the pool C{pool_name}, trying its servers best
        first; the result is in the returned request's C{deferred}.

        @param key: What a hash balance hashes (L{OriginPool.key_for}).
        @param candidates: The servers to try, from L{candidates} (asked
            once per request: asking turns the round-robin), or L{None}
            to ask now.
        """
        pool = self.pools[pool_name]
        if candidates is None:
            candidates = pool.group.candidates(key, self.now())
        pending = PoolRequest(self, pool, candidates, method, path, headers, body, on_interim)
        pending.start()
        return pending

    def candidates(self, pool_name: str, key: bytes) -> list[Member]:
        """The servers to try for one request, best first (up ones only)."""
        return self.pools[pool_name].group.candidates(key, self.now())

    # -- active checks --------------------------------------------------

    def start_checks(self) -> None:
        """Probe the servers of every pool with a C{check_path}."""
        for pool in self.pools.values():
            if not pool.config.check_path:
                continue
            loop = LoopingCall(self._probe_pool, pool)
            loop.clock = self._reactor
            loop.start(pool.config.check_interval, now=False)
            self._loops.append(loop)

    def stop_checks(self) -> None:
        """Stop probing, and give up on probes under way."""
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()
        probes, self._probes = self._probes, {}
        for probe in probes.values():
            probe.cancel()

    def _probe_pool(self, pool: OriginPool) -> None:
        """
        One round: a GET of C{check_path} to every server whose previous
        probe is over (never more than one probe per server in flight).
        """
        config = pool.config
        for member in pool.group.members:
            key = (pool.name, member.name)
            if key in self._probes:
                continue
            server = pool.servers[member.name]
            host = (config.host or server.name).encode("latin-1")
            probe = self.upstream.request(
                b"GET",
                Target("http", server.host, server.port, config.check_path.encode("latin-1")),
                [(b"Host", host), (b"User-Agent", b"squeak-health-check")],
                None,
            )
            self._probes[key] = probe
            timer = self._reactor.callLater(config.check_timeout, probe.cancel)
            probe.addBoth(self._probed, pool, member, key, timer)

    def _probed(
        self, result: Any, pool: OriginPool, member: Member, key: tuple[str, str], timer: Any
    ) -> None:
        if timer.active():
            timer.cancel()
        if self._probes.pop(key, None) is None:
            return  # stopped
        now = self.now()
        if isinstance(result, UpstreamResponse):
            result.deliverBody(DiscardBody())
            if result.code == pool.config.check_status:
                pool.report(member, pool.group.succeeded(member, now))
                return
        pool.report(member, pool.group.failed(member, now))
