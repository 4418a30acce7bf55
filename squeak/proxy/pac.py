# -*- test-case-name: tests.test_proxy_pac -*-
"""
The proxy auto-config file on the proxy port: C{/proxy.pac} and
C{/wpad.dat} (what it says: L{squeak.pac}; how browsers find it:
docs/pac.md).

Which requests it answers:
  - origin form, C{GET /proxy.pac} (or C{/wpad.dat}), whatever C{Host}
    says: a forward proxy gets origin-form requests only from clients
    talking to it as a server, which is how browsers fetch a PAC file (never
    through a proxy; DNS WPAD names the proxy C{wpad.<domain>});
  - absolute form naming this proxy: C{GET http://proxy.lan:3128/proxy.pac}
    whose port is the port the client connected to and whose host is the
    address it connected to, C{visible_hostname}, C{[pac] proxy_host}, or
    C{localhost} on a loopback connection.  Any other absolute URI, for
    another host's C{/proxy.pac}, is forwarded as usual.
Intercept listeners never answer it: their origin-form requests are the
LAN's web traffic.

Who gets it: clients of C{[pac] allow}'s C{src} ACLs (C{localnet} by
default), checked here rather than by C{http_access}: browsers fetch the
file without credentials, so a C{proxy_auth} rule would refuse it, while a
forward proxy must not answer the whole internet either.  Others get 403.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from squeak.access.facts import AddressSet, client_address
from squeak.config import ListenAddress
from squeak.errors import ProxyError
from squeak.http.target import TargetError, parse_absolute_target
from squeak.pac import (
    PAC_CONTENT_TYPE,
    PAC_PATHS,
    PacConfig,
    offered_proxies,
    pac_script,
    proxy_name_from_host,
)
from squeak.proxy.context import ProxyContext
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState
from squeak.values import IPNetwork, parse_network

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["answer_pac"]

#: Seconds browsers may keep the file (most refetch it at start-up anyway).
_MAX_AGE = 300

#: The served file's text by path, with the (mtime, size) it was read at:
#: an edited file is served at once, an unchanged one not read again.
_FILES: dict[str, tuple[tuple[int, int], bytes]] = {}


def answer_pac(exchange: ProxyExchange, context: ProxyContext) -> bool:
    """
    Answer C{exchange} with the PAC file if it asks this proxy for it.

    @return: Whether it was answered here (the file, a 403 or a 500); when
        L{False} the request goes on as any other.
    """
    path = exchange.uri
    # Every request comes here: one test of the bytes, nothing allocated.
    if not path.endswith(PAC_PATHS):
        return False
    config = context.config
    pac = config.pac
    if not pac.enabled or exchange.method not in (b"GET", b"HEAD"):
        return False
    if exchange.channel.intercepting:
        return False
    if path.startswith(b"/"):
        if path not in PAC_PATHS:
            return False
        fetched_as = proxy_name_from_host(exchange.field(b"host"))
    else:
        fetched_as = _names_this_proxy(exchange, context)
        if fetched_as is None:
            return False
    exchange.answer = Answer.ORIGIN
    if not _may_fetch(exchange.client_host, pac, context):
        exchange.answer = Answer.DENIED
        exchange.send_error(
            ProxyError(
                "ERR_ACCESS_DENIED", 403, "the PAC file is served to the clients of [pac] allow"
            )
        )
        return True
    try:
        body = _pac_text(exchange, fetched_as, context)
    except OSError as error:
        exchange.send_error(
            ProxyError(
                "ERR_GATEWAY_FAILURE", 500, f"cannot read the PAC file: {error.strerror or error}"
            )
        )
        return True
    exchange.state = ExchangeState.ANSWERING
    exchange.set_status(200)
    exchange.set_field(b"Content-Type", PAC_CONTENT_TYPE)
    exchange.set_field(b"Cache-Control", b"max-age=%d" % _MAX_AGE)
    exchange.content_length = len(body)
    exchange.write(body)
    exchange.finish()
    return True


def _names_this_proxy(exchange: ProxyExchange, context: ProxyContext) -> str | None:
    """
    For an absolute-form request: the host it names, when it names this
    proxy (the port the client connected to, and one of this proxy's
    names); else L{None}, and the request is forwarded.
    """
    try:
        target = parse_absolute_target(exchange.uri)
    except TargetError:
        return None
    if target.scheme != "http" or target.path not in PAC_PATHS:
        return None
    names, port = exchange.names_of_this_proxy()
    if target.port != port:
        return None
    if context.config.pac.proxy_host:
        names.add(context.config.pac.proxy_host)
    if target.host not in names:
        return None
    return f"[{target.host}]" if ":" in target.host else target.host


def _may_fetch(client: str, pac: PacConfig, context: ProxyContext) -> bool:
    """
    Whether C{client} is in one of C{[pac] allow}'s C{src} ACLs (checked to
    be C{src} ACLs when the configuration was loaded).
    """
    acls = context.config.policy.acls
    networks: list[IPNetwork] = []
    for name in pac.allow:
        acl = acls.get(name)
        if acl is not None and acl.kind == "src":
            networks += [parse_network(entry) for entry in acl.entries]
    try:
        return client_address(client) in AddressSet(networks)
    except ValueError:
        return False


def _pac_text(exchange: ProxyExchange, fetched_as: str | None, context: ProxyContext) -> bytes:
    """
    The file to serve: C{[pac] file} as it is, or the generated script.

    @raise OSError: If C{[pac] file} cannot be read.
    """
    pac = context.config.pac
    if pac.file:
        return _read_file(pac.file)
    config = context.config
    # A listener configured on port 0 (tests) is offered with the port it
    # got, which is the one this client reached.
    local_port = getattr(exchange.channel.transport.getHost(), "port", 0)
    listeners = [
        address if address.port else ListenAddress(address.host, local_port)
        for address in config.proxy.http_port
    ]
    entries = offered_proxies(pac, listeners, fetched_as, config.proxy.visible_hostname)
    networks: list[IPNetwork] = list(pac.bypass_networks)
    localnet = config.policy.acls.get("localnet")
    if pac.bypass_localnet and localnet is not None and localnet.kind == "src":
        networks += [parse_network(entry) for entry in localnet.entries]
    script = pac_script(
        entries,
        bypass_domains=pac.bypass_domains,
        bypass_networks=networks,
        resolve_hosts=pac.resolve_hosts,
        source=os.path.basename(config.source),
    )
    return script.encode("ascii")


def _read_file(path: str) -> bytes:
    """
    C{path}'s bytes, read again only when its modification time or size
    changed (a small file on a local disk: read on the reactor thread).
    """
    status = os.stat(path)
    stamp = (status.st_mtime_ns, status.st_size)
    known = _FILES.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    with open(path, "rb") as handle:
        data = handle.read(1024 * 1024)
    _FILES[path] = (stamp, data)
    return data
