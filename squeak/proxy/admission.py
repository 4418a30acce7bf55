# -*- test-case-name: tests.test_access_proxy -*-
"""
Admitting a request: its target, forwarding loops, interception, and the
access rules, before any handler answers it.

The decisions are pure (L{squeak.http.target}, L{squeak.http.fields},
L{squeak.access.rules}); this module asks them and waits where the rules
need I/O (DNS for C{dst} rules, bcrypt for credentials) through the
L{Gatekeeper}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from squeak.access.gatekeeper import AccessDeniedError, AuthenticationRequiredError, resolve
from squeak.errors import ProxyError
from squeak.http.fields import first_value, is_forwarding_loop
from squeak.http.target import Target, TargetError, parse_absolute_target, parse_authority
from squeak.net.intercept import (
    OriginalDestinationError,
    host_matches_destination,
    host_to_resolve,
    is_proxy_itself,
)
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer

if TYPE_CHECKING:
    from squeak.access.acl import Facts
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["Admission"]


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


class Admission:
    """
    Admits one request, then hands it back to its exchange
    (L{ProxyExchange.admitted}); or refuses it (403, 407).
    """

    __slots__ = ("_context", "_exchange", "_pending")
    _log = Logger()

    def __init__(self, exchange: ProxyExchange, context: ProxyContext) -> None:
        self._exchange = exchange
        self._context = context
        self._pending: defer.Deferred[Any] | None = None

    def start(self) -> None:
        """
        Parse the target, then ask the access rules (which may resolve the
        destination or verify credentials) before anything is forwarded.

        @raise ProxyError: For a loop or a target that cannot be used.
        """
        exchange = self._exchange
        hostname = self._context.config.proxy.visible_hostname
        if b"via" in exchange.field_names and is_forwarding_loop(exchange.received, hostname):
            # First: a request that already passed through here (even one
            # rewritten into origin form by this proxy) must not go round.
            raise ProxyError(
                "ERR_FORWARDING_LOOP", 508, f"this request already passed through {hostname} (Via)"
            )
        if exchange.channel.intercepting:
            self._intercepted()
            return
        target: Target | None
        try:
            if exchange.method == b"CONNECT":
                host, port = parse_authority(exchange.uri, None)
                target = None
                scheme, url, path = "authority", _text(exchange.uri), ""
            else:
                target = parse_absolute_target(exchange.uri)
                host, port, scheme = target.host, target.port, target.scheme
                url, path = target.uri_text, target.path_text
        except TargetError as error:
            raise ProxyError(error.name, error.status, error.detail) from None
        self._ask(target, scheme=scheme, host=host, port=port, url=url, path=path)

    def _ask(
        self,
        target: Target | None,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        path: str,
        destination: str | None = None,
    ) -> None:
        """
        Ask the access rules about this request; go on in
        L{ProxyExchange.admitted}, or answer 403/407 in L{_refused}.

        @param destination: The address the request will go to when it is
            already known (an intercepted connection's original destination);
            it is then what C{dst} rules see, and no credentials are asked
            for (such clients cannot answer 407).
        """
        exchange = self._exchange
        context = self._context
        gatekeeper = context.gatekeeper
        client_ip = exchange.channel.client_host
        facts = gatekeeper.facts(
            client=client_ip,
            method=exchange.method,
            scheme=scheme,
            host=host,
            port=port,
            url=url,
            path=path,
            user_agent=first_value(exchange.received, b"user-agent"),
            client_connections=context.connections_by_client.get(client_ip, 1),
            destination=destination,
        )
        if gatekeeper.allows_at_once(facts):
            exchange.admitted(facts, target, host, port)
            return
        credentials = self._proxy_credentials if destination is None else _no_credentials
        admitted = gatekeeper.admit(facts, credentials)
        self._pending = admitted
        admitted.addCallback(self._admitted, target, host, port)
        admitted.addErrback(self._refused)
        admitted.addErrback(exchange.internal_error)

    def _admitted(self, facts: Facts, target: Target | None, host: str, port: int) -> None:
        self._pending = None
        if facts.user is not None:
            self._context.counters.auth_checked("ok")
        if not self._exchange.disconnected:
            self._exchange.admitted(facts, target, host, port)

    def _proxy_credentials(self) -> bytes | None:
        """
        The request's C{Proxy-Authorization} value, if any.
        """
        return self._exchange.field(b"proxy-authorization")

    def _intercepted(self) -> None:
        """
        A request redirected here by the firewall (origin form, Host): it
        goes to the socket's original destination whatever Host says; Host
        must resolve to that destination for the response to be cached (the
        CVE-2009-0801 class of cache poisoning).
        """
        exchange = self._exchange
        try:
            destination = exchange.channel.original_destination()
        except OriginalDestinationError as error:
            raise ProxyError(
                "ERR_INVALID_REQ", 400, f"not an intercepted connection: {error}"
            ) from None
        local = exchange.channel.transport.getHost()
        if is_proxy_itself(destination, [(local.host, local.port)]):
            raise ProxyError(
                "ERR_INVALID_REQ",
                400,
                "this port takes only connections redirected by the firewall; "
                "configure squeak as a proxy on its http_port instead",
            )
        dst_host, dst_port = destination
        if exchange.uri.startswith(b"/"):
            path = exchange.uri
        else:
            try:
                path = parse_absolute_target(exchange.uri).path
            except TargetError as error:
                raise ProxyError(error.name, error.status, error.detail) from None
        shown = f"[{dst_host}]" if ":" in dst_host else dst_host
        host_value = exchange.field(b"host") or shown.encode()
        target = Target("http", dst_host, dst_port, path)
        name = host_to_resolve(host_value, default_port=80)
        exchange.intercept_authority = host_value
        pending: defer.Deferred[Any] = (
            resolve(self._context.reactor, name) if name else defer.succeed(())
        )
        self._pending = pending
        pending.addCallback(self._intercepted_host_checked, target, name, host_value)
        pending.addErrback(self._refused)
        pending.addErrback(exchange.internal_error)

    def _intercepted_host_checked(
        self, addresses: tuple[Any, ...], target: Target, name: str | None, host_value: bytes
    ) -> None:
        self._pending = None
        exchange = self._exchange
        if exchange.disconnected:
            return
        matches, reason = host_matches_destination(
            host_value, target.host, target.port, [str(a) for a in addresses], default_port=80
        )
        if matches:
            exchange.cache_uri = (
                f"http://{host_value.decode('latin-1').lower()}{_text(target.path)}"
            )
        else:
            exchange.cacheable = False
            self._log.info("intercepted {url}: {reason}", url=_text(target.uri), reason=reason)
        self._ask(
            target,
            scheme="http",
            host=name or target.host,
            port=target.port,
            url=exchange.cache_uri or _text(target.uri),
            path=_text(target.path),
            destination=target.host,
        )

    def _refused(self, reason: Failure) -> Failure | None:
        """
        The rules said no (403), or want credentials (407).
        """
        self._pending = None
        error = reason.value
        if isinstance(error, defer.CancelledError):
            return None  # the client left while its access was being decided
        if not isinstance(error, (AccessDeniedError, AuthenticationRequiredError)):
            return reason
        exchange = self._exchange
        exchange.answer = Answer.DENIED
        counters = self._context.counters
        if isinstance(error, AuthenticationRequiredError):
            counters.auth_checked(error.outcome)
        else:
            counters.denied_by(error.verdict.rule)
        if isinstance(error, AuthenticationRequiredError):
            realm = error.realm.replace("\\", "\\\\").replace('"', '\\"')
            exchange.send_error(
                error,
                extra_headers=[(b"Proxy-Authenticate", f'Basic realm="{realm}"'.encode())],
            )
        else:
            exchange.send_error(error)
        return None

    def ended(self, reason: Failure | None) -> None:
        """
        The exchange is over: if the client left, stop deciding.
        """
        if reason is not None and self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()
