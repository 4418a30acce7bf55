# -*- test-case-name: tests.test_control -*-
"""
Asking a running squeak something from the command line: C{squeak purge
URL} (Squid's C{PURGE} method, so the copy in the proxy's memory goes too)
and C{squeak mgr PAGE} (a cache manager page, as C{squidclient mgr:PAGE}
fetches it).

The proxy is found from its configuration: the first C{proxy.http_port},
a wildcard address asked on loopback; or from C{--proxy HOST:PORT}.  A
request is one blocking exchange with a short timeout (the command line
has no reactor): a proxy that is not running or does not answer is a
L{ControlError}, one line for the operator.

This module uses the standard library's HTTP client only (no Twisted), so
the command line starts fast.
"""

from __future__ import annotations

import html
import http.client
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from squeak.config import Config

__all__ = [
    "MANAGER_PREFIX",
    "ControlError",
    "ProxyAddress",
    "ProxyAnswer",
    "fetch_manager_page",
    "proxy_address",
    "send_purge",
]

#: Where the cache manager's pages are on the proxy port (Squid's prefix,
#: C{src/cache_manager.cc}).
MANAGER_PREFIX = "/squid-internal-mgr/"

#: How long a command waits for the proxy to connect and to answer.
TIMEOUT = 10.0


class ControlError(Exception):
    """
    The running proxy could not be asked; C{str(self)} is the one line
    shown to the operator.
    """


@dataclass(frozen=True, slots=True)
class ProxyAddress:
    """
    Where the running proxy listens, and how that was found (for messages).

    @ivar host: An address or host name to connect to.
    @ivar port: Its port.
    @ivar source: Where the address came from: C{"--proxy"} or the
        configuration file's name.
    """

    host: str
    port: int
    source: str

    @property
    def authority(self) -> str:
        """C{host:port}, an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyAnswer:
    """
    What the proxy answered.

    @ivar status: The status code.
    @ivar reason: The reason phrase.
    @ivar error: Its C{X-Squeak-Error} field (the error page's name), or
        C{""}.
    @ivar body: The body.
    """

    status: int
    reason: str
    error: str
    body: bytes

    @property
    def explanation(self) -> str:
        """
        What the answer says went wrong, for one line: the error name and,
        from an error page that has one (the shipped page does), the
        C{<p id="reason">} text; C{""} for neither.
        """
        found = _REASON.search(self.body)
        detail = ""
        if found is not None:
            text = html.unescape(found.group(1).decode("utf-8", errors="replace"))
            detail = " ".join(text.split())[:300]
        parts = [part for part in (self.error, detail) if part]
        return f" ({': '.join(parts)})" if parts else ""


#: The reason paragraph of squeak's shipped error page.
_REASON = re.compile(rb'<p id="reason">(.*?)</p>', re.DOTALL)


def proxy_address(config: Config, given: str | None) -> ProxyAddress:
    """
    The address to reach the running proxy at.

    @param config: Its configuration; its first C{proxy.http_port} is used
        when C{given} is L{None}.  A wildcard address (C{0.0.0.0}, C{::})
        is reached on loopback.
    @param given: C{--proxy HOST:PORT}, if given.
    @raise ControlError: If C{given} is not C{HOST:PORT}, or the
        configuration listens on port 0 (known only to the proxy's log).
    """
    if given is not None:
        return _given_address(given)
    listeners = config.proxy.http_port
    if not listeners:
        raise ControlError(
            f"{config.source}: proxy.http_port: no forward-proxy listener; give --proxy HOST:PORT"
        )
    first = listeners[0]
    if first.port == 0:
        raise ControlError(
            f"{config.source}: proxy.http_port: port 0 is chosen when the proxy starts "
            '(its log says "squeak listening on ..."); give --proxy HOST:PORT'
        )
    host = first.host
    try:
        if ipaddress.ip_address(host).is_unspecified:
            host = "::1" if ":" in host else "127.0.0.1"
    except ValueError:
        pass
    source = "the embedded defaults" if config.source == "<defaults>" else config.source
    return ProxyAddress(host, first.port, source)


def _given_address(given: str) -> ProxyAddress:
    """
    Read C{--proxy HOST:PORT} (a name, an IPv4 address, or an IPv6 address
    in brackets).

    @raise ControlError: If it is not that.
    """
    problem = f"--proxy: expected HOST:PORT, e.g. 127.0.0.1:3128 or [::1]:3128, got {given!r}"
    try:
        parts = urlsplit(f"//{given}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ControlError(problem) from None
    if not host or not port or parts.netloc != given or "@" in given:
        raise ControlError(problem)
    return ProxyAddress(host, port, "--proxy")


def _exchange(
    where: ProxyAddress, method: str, target: str, host: str, timeout: float
) -> ProxyAnswer:
    """
    Send one request to the proxy and read its whole answer.

    @param target: The request-target, in absolute form.
    @param host: The C{Host} field (the target's authority).
    @raise ControlError: If the proxy cannot be reached or does not answer.
    """
    connection = http.client.HTTPConnection(where.host, where.port, timeout=timeout)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        connection.putheader("User-Agent", "squeak-cli")
        connection.putheader("Connection", "close")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    except ConnectionRefusedError:
        raise ControlError(
            f"no proxy is running at {where.authority} (connection refused; the address "
            f"is from {where.source})"
        ) from None
    except TimeoutError:
        raise ControlError(
            f"the proxy at {where.authority} did not answer within {timeout:g}s"
        ) from None
    except socket.gaierror as e:
        raise ControlError(f"cannot resolve {where.host}: {e.strerror}") from None
    except (OSError, http.client.HTTPException) as e:
        text = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ControlError(f"the proxy at {where.authority} failed to answer: {text}") from None
    finally:
        connection.close()
    return ProxyAnswer(
        response.status,
        response.reason,
        response.getheader("X-Squeak-Error", ""),
        body,
    )


def send_purge(where: ProxyAddress, url: str, timeout: float = TIMEOUT) -> ProxyAnswer:
    """
    Ask the running proxy to remove C{url} from its cache (C{PURGE}: 200
    when something was removed, 404 when nothing was stored, 403 from an
    address outside C{cache.purge_from}).

    @raise ControlError: If C{url} is not an absolute http URL, or the
        proxy cannot be asked.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ControlError(f"{url!r}: expected an absolute URL, e.g. http://example.org/")
    return _exchange(where, "PURGE", url, parts.netloc, timeout)


def manager_url(where: ProxyAddress, page: str) -> str:
    """
    The URL of a manager page on the proxy port, in the form squidclient
    sends: C{http://HOST:PORT/squid-internal-mgr/PAGE}.
    """
    return f"http://{where.authority}{MANAGER_PREFIX}{page.lstrip('/')}"


def fetch_manager_page(where: ProxyAddress, page: str, timeout: float = TIMEOUT) -> ProxyAnswer:
    """
    GET a cache manager page from the proxy port (C{info}, C{counters},
    C{objects?url=...}), in absolute form as squidclient sends it.

    @raise ControlError: If the proxy cannot be asked.
    """
    return _exchange(where, "GET", manager_url(where, page), where.authority, timeout)
