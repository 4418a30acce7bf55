# -*- test-case-name: tests.test_access_proxy -*-
"""
The I/O side of access control: runs the pure rule evaluation
(L{squeak.access.rules.evaluate}) to a final answer, doing what a verdict
asks for in between: resolving the destination (C{NEED_DST}) and verifying
Basic credentials off the reactor thread (C{AUTH_REQUIRED}).

Squid's semantics: credentials are asked for only when a rule that decides
needs them, and the destination is resolved only when a rule needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from squeak.access.acl import (
    Facts,
    IPAddress,
    LocalTime,
    address_literal,
    client_address,
    normalize_host,
)
from squeak.access.auth import Authenticator, parse_basic
from squeak.access.facts import hashed_address
from squeak.access.rules import AccessPolicy, Action, Verdict, evaluate
from squeak.config import Config
from squeak.errors import ProxyError
from squeak.memo import remember_short

#: More rounds than the rules can need (destination, then user, then final).
_MAX_ROUNDS = 4


class AuthenticationRequiredError(ProxyError):
    """
    A rule needs a verified user and the request has none (or a wrong one):
    answered 407 with a C{Proxy-Authenticate} challenge.
    """

    def __init__(self, detail: str, realm: str, outcome: str = "missing") -> None:
        """
        @param outcome: What the check found, for the counters
            (L{squeak.stats}): C{missing}, C{malformed}, C{wrong} or
            C{unconfigured}.
        """
        super().__init__("ERR_CACHE_ACCESS_DENIED", 407, detail)
        self.realm = realm
        self.outcome = outcome


class AccessDeniedError(ProxyError):
    """
    The rules deny the request: 403.
    """

    def __init__(self, verdict: Verdict, why: str = "") -> None:
        rule = f' by rule "{verdict.rule}"' if verdict.rule else ""
        super().__init__("ERR_ACCESS_DENIED", 403, f"access denied{rule}{why}")
        self.verdict = verdict


@implementer(IResolutionReceiver)
class _Addresses:
    """
    Collects the addresses a name resolves to into a L{Deferred}.
    """

    def __init__(self) -> None:
        self.found: list[Any] = []
        self.done: defer.Deferred[list[Any]] = defer.Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.found.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolve(reactor: Any, host: str) -> defer.Deferred[tuple[Any, ...]]:
    """
    All addresses of C{host} through the reactor's name resolver (a lookup
    failure gives C{()}, which no C{dst} ACL matches).
    """
    receiver = _Addresses()
    reactor.nameResolver.resolveHostName(receiver, host, 0)

    def as_addresses(found: list[Any]) -> tuple[Any, ...]:
        addresses = []
        for address in found:
            try:
                addresses.append(ipaddress.ip_address(address.host.split("%", 1)[0]))
            except ValueError:
                continue
        return tuple(addresses)

    return receiver.done.addCallback(as_addresses)


@functools.lru_cache(maxsize=4096)
def _client_address(text: str) -> Any:
    """
    L{client_address}, remembered: the same few client addresses make
    every request.  With its hash computed once (L{hashed_address}): the
    verdict memo hashes it on every request.
    """
    return hashed_address(client_address(text))


@remember_short()
def _address_literal(host: str) -> tuple[IPAddress, ...] | None:
    """
    L{address_literal}, remembered likewise (a LAN asks for the same hosts
    over and over), its address with its hash computed once.
    """
    found = address_literal(host)
    return None if found is None else tuple(hashed_address(address) for address in found)


#: L{normalize_host}, remembered likewise.
_normalize_host = remember_short()(normalize_host)


@remember_short()
def _host_facts(host: str) -> tuple[str, tuple[IPAddress, ...] | None]:
    """
    L{normalize_host} and L{address_literal} of a request's host, remembered
    together: what a request without a known destination needs, in one
    lookup.
    """
    return _normalize_host(host), _address_literal(host)


class Gatekeeper:
    """
    Decides whether a request may go ahead, and as whom.

    @ivar policy: The compiled rules (with the proxy's own addresses in
        C{to_localhost}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        policy: AccessPolicy,
        authenticator: Authenticator | None,
        realm: str,
    ) -> None:
        self._reactor = reactor
        self.policy = policy
        self._auth = authenticator
        self._realm = realm
        # Password checks in flight, by a keyed digest of the credentials:
        # a burst of connections with the same new credentials shares one
        # bcrypt run.  And at most two run at once: bcrypt is CPU-bound, so
        # more threads only make every check slower.
        self._verifying: dict[bytes, defer.Deferred[Any]] = {}
        self._bcrypt_slots = defer.DeferredSemaphore(2)
        self._inflight_key = secrets.token_bytes(32)
        # The local time the time ACLs see, computed once a second.
        self._local_second = -1
        self._local_time = LocalTime(0, 0)

    @classmethod
    def from_config(
        cls, config: Config, reactor: Any, local_addresses: Iterable[Any] = ()
    ) -> Gatekeeper:
        """
        The gatekeeper a configuration describes: its compiled rules, with
        this host's own addresses added to C{to_localhost}, and its htpasswd
        file if one is set (weak or malformed entries are logged).
        """
        authenticator = None
        if config.auth.htpasswd:
            authenticator = Authenticator(
                config.auth.htpasswd,
                ttl=config.auth.credentials_ttl,
                on_warning=lambda message: cls._log.warn("{message}", message=message),
            )
        return cls(
            reactor,
            config.policy.with_local_addresses(local_addresses),
            authenticator,
            config.auth.realm,
        )

    def facts(
        self,
        *,
        client: str,
        method: bytes,
        scheme: str,
        host: str,
        port: int,
        url: str,
        path: str,
        user_agent: bytes | None,
        client_connections: int,
        destination: str | None = None,
    ) -> Facts:
        """
        The facts of one request, before any lookup or authentication.

        @param destination: The address the request goes to when it is
            already known (an intercepted connection's original
            destination); otherwise an IP-literal C{host} is the destination
            and a name is resolved only if a rule needs it.
        """
        second = int(self._reactor.seconds())
        if second != self._local_second:
            self._local_second = second
            self._local_time = LocalTime.of(time.localtime(second))
        if destination:
            host_name, dst_addresses = _normalize_host(host), _address_literal(destination)
        else:
            host_name, dst_addresses = _host_facts(host)
        # Positional, in the order of Facts' fields: called with keywords,
        # a class gets them as a dict, built on every request (a third of
        # the cost of making the facts).
        return Facts(
            _client_address(client),  # client_ip
            method.decode("latin-1"),  # method
            scheme,
            host_name,
            port,
            url,
            path,
            self._local_time,  # now_local
            dst_addresses,
            None,  # user
            user_agent.decode("latin-1") if user_agent is not None else None,
            client_connections,
        )

    def admit(
        self, facts: Facts, proxy_authorization: Callable[[], bytes | None]
    ) -> defer.Deferred[Facts]:
        """
        Evaluate the rules to a final answer.

        @param proxy_authorization: Gives the request's C{Proxy-Authorization}
            value, read only if a rule needs a user.
        @return: A L{Deferred} firing with the final facts (with the verified
            user) when allowed, failing with L{AccessDeniedError} or
            L{AuthenticationRequiredError}.
        """
        # The common case decides at once: no coroutine, no waiting.
        verdict = evaluate(self.policy.http_access, facts)
        if verdict.action is Action.ALLOW:
            return defer.succeed(facts)
        if verdict.action is Action.DENY:
            return defer.fail(AccessDeniedError(verdict))
        return defer.ensureDeferred(self._admit(facts, proxy_authorization))

    def allows_at_once(self, facts: Facts) -> bool:
        """
        Whether the rules allow these facts as they are, with no lookup and
        no credentials: the caller may go ahead without waiting on
        L{admit}, which it calls otherwise.
        """
        return evaluate(self.policy.http_access, facts).action is Action.ALLOW

    async def _admit(self, facts: Facts, proxy_authorization: Callable[[], bytes | None]) -> Facts:
        for _ in range(_MAX_ROUNDS):
            verdict = evaluate(self.policy.http_access, facts)
            if verdict.action is Action.ALLOW:
                return facts
            if verdict.action is Action.DENY:
                raise AccessDeniedError(verdict)
            if verdict.action is Action.NEED_DST:
                addresses = await resolve(self._reactor, facts.host)
                facts = dataclasses.replace(facts, dst_addresses=addresses)
                continue
            user = await self._authenticate(proxy_authorization())
            facts = dataclasses.replace(facts, user=user)
        raise AccessDeniedError(verdict)

    def peer_check(self, facts: Facts) -> Callable[[str], None] | None:
        """
        What to check the address a connection for an admitted request goes
        to with (L{check_peer} on C{facts}), or L{None} when there is
        nothing to check: the rules did not look at the destination's
        addresses (their verdict holds for any address), or the host is an
        IP literal (the connection goes to exactly that address).
        """
        addresses = facts.dst_addresses
        if addresses is None or addresses == _address_literal(facts.host):
            return None
        return functools.partial(self.check_peer, facts)

    def check_peer(self, facts: Facts, peer: str) -> None:
        """
        An admitted request's connection went to C{peer}: when the rules
        looked at the destination's addresses to admit it, they must allow
        this address too.

        A name can resolve one way for the rules and another for the
        connection made a moment later (DNS rebinding: a name that gave
        the rules a public address, then 127.0.0.1 to the connection, would
        reach this host's own services past C{deny to_localhost}).  So the
        rules are asked again with C{dst} = the address actually connected
        to.  When they never needed C{dst}, their verdict holds for any
        address and nothing is asked.

        @param facts: The facts the request was admitted with.
        @param peer: The connection's remote address, as the transport
            reports it.
        @raise AccessDeniedError: The rules deny that address.
        """
        addresses = facts.dst_addresses
        if addresses is None:
            return
        try:
            address = _client_address(peer)
        except ValueError:
            return  # not an IP address (a UNIX socket): no dst ACL applies
        if addresses == (address,):
            return  # exactly what the rules were asked about
        verdict = evaluate(
            self.policy.http_access, dataclasses.replace(facts, dst_addresses=(address,))
        )
        if verdict.action is not Action.ALLOW:
            raise AccessDeniedError(
                verdict, f" (the connection to {facts.host} went to {address})"
            )

    def _verify_once(self, user: str, password: str) -> defer.Deferred[bool]:
        """
        Verify a password in a thread, sharing one check among concurrent
        requests with the same credentials.  The result is cached when the
        check ends, even if every request that waited for it has gone: a
        client that gave up must not make the next one pay again.

        @return: A L{Deferred} of this caller's own (cancelling it leaves the
            shared check running).
        """
        assert self._auth is not None
        authenticator = self._auth
        key = hmac.new(self._inflight_key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        shared = self._verifying.get(key)
        if shared is None:

            def finished(result: Any) -> Any:
                self._verifying.pop(key, None)
                if not isinstance(result, Failure):
                    authenticator.record(user, password, result, self._reactor.seconds())
                return result

            shared = self._bcrypt_slots.run(
                threads.deferToThreadPool,
                self._reactor,
                self._reactor.getThreadPool(),
                authenticator.verify,
                user,
                password,
            )
            shared.addBoth(finished)
            self._verifying[key] = shared
        mine: defer.Deferred[bool] = defer.Deferred()

        def deliver(result: Any) -> Any:
            if not mine.called:
                if isinstance(result, Failure):
                    mine.errback(result)
                else:
                    mine.callback(result.ok)
            return result

        shared.addBoth(deliver)
        return mine

    async def _authenticate(self, header: bytes | None) -> str:
        """
        Verify Basic credentials (cached; bcrypt in a thread on a miss).

        @raise AuthenticationRequiredError: Missing, malformed or wrong.
        """
        if self._auth is None:
            raise AuthenticationRequiredError(
                "no authentication is configured", self._realm, "unconfigured"
            )
        if header is None:
            raise AuthenticationRequiredError(
                "this proxy requires a user name and password", self._realm
            )
        credentials = parse_basic(header)
        if credentials is None:
            raise AuthenticationRequiredError(
                "malformed Proxy-Authorization credentials", self._realm, "malformed"
            )
        user, password = credentials
        now = self._reactor.seconds()
        ok = self._auth.cached(user, password, now)
        if ok is None:
            ok = await self._verify_once(user, password)
        if not ok:
            self._log.info("proxy authentication failed for user {user!r}", user=user)
            raise AuthenticationRequiredError("wrong user name or password", self._realm, "wrong")
        return user
