# -*- test-case-name: tests.test_accel_headers -*-
"""
The fields an application behind the accelerator sees, and the ones it
sends back that name its own address.

Towards the application: who the client is, by which scheme and which Host
it came (C{X-Forwarded-For}/C{-Proto}/C{-Host}, as nginx and gunicorn's
C{forwarded_allow_ips} expect, or RFC 7239 C{Forwarded}); a client's own
C{X-Forwarded-Proto}/C{-Host} are never passed on (they would let it claim
HTTPS or another site).

Back from it: C{Location} and C{Refresh} naming a server of the pool (or a
path under a rewritten prefix) are rewritten to the public URL, as nginx's
C{proxy_redirect default} does, so a redirect never sends the client to an
address it cannot reach.

Pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from squeak.accel.config import Route

__all__ = ["forwarding_fields", "rewrite_redirect", "rewrite_refresh"]

#: Client fields replaced (never relayed) in every forwarding style.
_REPLACED = frozenset({b"x-forwarded-proto", b"x-forwarded-host"})


def _forwarded_node(client_ip: str) -> str:
    """An RFC 7239 §6 node: IPv6 addresses quoted and bracketed."""
    return f'"[{client_ip}]"' if ":" in client_ip else client_ip


def _quoted(value: str) -> str:
    """An RFC 7239 value: a token as it is, anything else quoted."""
    if value and all(ch.isalnum() or ch in "!#$%&'*+-.^_`|~" for ch in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwarding_fields(
    fields: Sequence[tuple[bytes, bytes]],
    *,
    style: str,
    client_ip: str,
    proto: str,
    host: bytes,
) -> list[tuple[bytes, bytes]]:
    """
    The request fields with the forwarding fields of C{style} in place.

    @param fields: The fields to send (C{Host} first), with any
        C{X-Forwarded-For} the generic rebuild left.
    @param style: C{x-forwarded}, C{forwarded}, C{both} or C{none}.
    @param proto: The scheme the client used (C{http}, C{https}).
    @param host: The C{Host} the client sent.
    @return: New fields: the client's C{X-Forwarded-Proto}/C{-Host} removed,
        its C{X-Forwarded-For} chain and C{Forwarded} list extended.
    """
    replaced = set(_REPLACED)
    if style in ("x-forwarded", "both"):
        replaced.add(b"x-forwarded-for")
    if style in ("forwarded", "both"):
        replaced.add(b"forwarded")
    chain: list[bytes] = []
    forwarded: list[bytes] = []
    kept: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        low = name.lower()
        if low not in replaced:
            kept.append((name, value))
        elif low == b"x-forwarded-for":
            chain += [part.strip() for part in value.split(b",") if part.strip()]
        elif low == b"forwarded":
            forwarded += [part.strip() for part in value.split(b",") if part.strip()]
    if style in ("x-forwarded", "both"):
        chain.append(client_ip.encode("ascii"))
        kept.append((b"X-Forwarded-For", b", ".join(chain)))
        kept.append((b"X-Forwarded-Proto", proto.encode("ascii")))
        kept.append((b"X-Forwarded-Host", host))
    if style in ("forwarded", "both"):
        element = (
            f"for={_forwarded_node(client_ip)};proto={proto};"
            f"host={_quoted(host.decode('latin-1'))}"
        )
        forwarded.append(element.encode("latin-1"))
        kept.append((b"Forwarded", b", ".join(forwarded)))
    return kept


_ABSOLUTE = re.compile(rb"(?i)^(https?)://([^/?#]*)(.*)$", re.DOTALL)


def rewrite_redirect(
    value: bytes,
    *,
    servers: Collection[bytes],
    public_origin: bytes,
    route: Route | None,
) -> bytes:
    """
    A C{Location} value rewritten for the client.

    @param servers: The authorities (C{host:port}, lower case) of the
        pool's servers and the Host they were sent.
    @param public_origin: C{scheme://host[:port]} as the client used it.
    @param route: The route the request took, whose rewritten prefix is
        put back (a redirect to C{/login} from an application mounted at
        C{/app/} becomes C{/app/login}).
    @return: The value to send; unchanged when it names another site.
    """
    value = value.strip()
    absolute = _ABSOLUTE.match(value)
    if absolute is not None:
        if absolute.group(2).lower() not in servers:
            return value
        path = absolute.group(3) or b"/"
        if not path.startswith(b"/"):
            return value
        return public_origin + _unrewrite(path, route)
    if value.startswith(b"/") and not value.startswith(b"//"):
        return _unrewrite(value, route)
    return value


def _unrewrite(path: bytes, route: Route | None) -> bytes:
    """The public path of an application path under C{route}."""
    if route is None or route.rewrite is None:
        return path
    rewrite = route.rewrite.encode("latin-1")
    prefix = route.prefix.encode("latin-1")
    if rewrite in (b"", b"/"):
        # Stripped: every application path is under the prefix.
        return prefix.rstrip(b"/") + path
    if path.startswith(rewrite):
        return prefix + path[len(rewrite) :]
    return path


_REFRESH_URL = re.compile(rb"(?i)^(\s*\d+(?:\.\d*)?\s*[;,]\s*url\s*=\s*)(['\"]?)(.*?)(\2)\s*$")


def rewrite_refresh(
    value: bytes,
    *,
    servers: Collection[bytes],
    public_origin: bytes,
    route: Route | None,
) -> bytes:
    """
    A C{Refresh} value (C{5; url=...}) with its URL rewritten as a
    C{Location} would be.
    """
    found = _REFRESH_URL.match(value)
    if found is None:
        return value
    url = rewrite_redirect(
        found.group(3), servers=servers, public_origin=public_origin, route=route
    )
    return found.group(1) + found.group(2) + url + found.group(4)
