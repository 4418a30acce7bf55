# -*- test-case-name: tests.test_cache_keys -*-
"""
Cache keys (RFC 9111 §2, §4.1).

The primary key is the request method's class and the normalised absolute
target URI: GET and HEAD share the GET entry, since a HEAD is answered from a
stored GET response (RFC 9110 §9.3.2, RFC 9111 §4.3.5). The secondary key is
built from the request header fields that the stored response's C{Vary}
names (RFC 9111 §4.1), normalised so that equivalent requests share it.

This module is pure: it imports neither Twisted nor diskcache.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from squeak.cache.directives import field_values, split_list
from squeak.memo import remember_short

__all__ = [
    "VARY_ANY",
    "normalise_uri",
    "primary_key",
    "secondary_key",
    "vary_fields",
]

VARY_ANY = b"*"
"""The C{Vary} member that no request can match (RFC 9111 §4.1)."""

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
_WHITESPACE = re.compile(rb"[ \t]+")
_COMMA = re.compile(rb"[ \t]*,[ \t]*")


@remember_short()
def normalise_uri(uri: str) -> str:
    """
    Normalise an absolute URI the way RFC 9110 §4.2.3 describes for C{http}
    and C{https}: the scheme and host are lower-cased, a default or empty
    port is dropped, an empty path becomes C{/}, percent-encodings get
    upper-case hexadecimal digits, and a fragment is removed.

    Anything else is kept as it is (notably the query and the case of the
    path), so two URIs that may name different resources never share a key.

    @param uri: An absolute URI such as C{HTTP://Example.COM:80?q}.
    @return: The normalised URI (C{http://example.com/?q}); a value that is
        not an absolute URI is returned unchanged but for its fragment.
    """
    uri = uri.partition("#")[0]
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        return uri
    scheme = scheme.lower()
    cut = len(rest)
    for delimiter in "/?":
        index = rest.find(delimiter)
        if index != -1:
            cut = min(cut, index)
    authority, path_and_query = rest[:cut], rest[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        host, bracket, port = hostport.partition("]")
        host += bracket
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = hostport.partition(":")
    host = host.lower()
    hostport = host if port in ("", _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    if not path_and_query.startswith("/"):
        path_and_query = "/" + path_and_query
    path_and_query = _PERCENT.sub(lambda m: m.group(0).upper(), path_and_query)
    return f"{scheme}://{userinfo}{at}{hostport}{path_and_query}"


#: The methods whose key is C{GET}'s, as sent (upper case).
_GET_CLASS = frozenset({b"GET", b"HEAD"})


@remember_short()
def _get_key(uri: str) -> str:
    """The primary key of a GET or HEAD of C{uri} (L{primary_key})."""
    return "GET " + normalise_uri(uri)


def primary_key(method: bytes, uri: str) -> str:
    """
    The primary cache key of a request: method class and normalised URI.

    RFC 9111 §2: "the cache key ... consists of, at a minimum, the request
    method and target URI". GET and HEAD both map to C{GET}, so a HEAD finds
    the stored GET response; other methods keep their own (upper-cased)
    name and, since squeak stores only GET responses, never hit.

    @param method: The request method, e.g. C{b"HEAD"}.
    @param uri: The absolute target URI.
    @return: E.g. C{"GET http://example.com/"}.
    """
    if method in _GET_CLASS:
        return _get_key(uri)  # every lookup and store: remembered whole
    name = method.upper()
    if name == b"HEAD":
        name = b"GET"
    return name.decode("latin-1") + " " + normalise_uri(uri)


def vary_fields(response_headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, ...]:
    """
    The field names a response's C{Vary} lists (RFC 9110 §12.5.5).

    @param response_headers: The stored response's header section.
    @return: Lower-cased, de-duplicated, sorted names; contains L{VARY_ANY}
        if C{Vary: *} was present; empty when there is no C{Vary}.
    """
    names = {name.lower() for name in split_list(field_values(response_headers, b"vary"))}
    return tuple(sorted(names))


def _normalised_value(values: Sequence[bytes]) -> bytes:
    """
    Combine the field lines of one field into one normalised value: lines
    joined with C{", "} (RFC 9110 §5.3), whitespace runs collapsed to one
    space, and whitespace around commas made uniform (RFC 9111 §4.1 permits
    normalisations known to keep the semantics).
    """
    combined = b", ".join(values)
    combined = _WHITESPACE.sub(b" ", combined.strip(b" \t"))
    return _COMMA.sub(b", ", combined)


def secondary_key(
    fields: Sequence[bytes], request_headers: Iterable[tuple[bytes, bytes]]
) -> str | None:
    """
    The secondary (Vary) key of a request for a response that varies on
    C{fields} (RFC 9111 §4.1).

    Each named field contributes C{name: value} with its normalised value; a
    field absent from the request contributes its bare name, so it matches
    only requests where it is absent too ("If ... a header field is absent
    from a request, it can only match another request if it is also absent
    there"). An empty field is present with an empty value.

    @param fields: The output of L{vary_fields}.
    @param request_headers: The request's header section.
    @return: The key (C{""} when nothing varies), or L{None} if C{fields}
        contains L{VARY_ANY}: such a response never matches (RFC 9111 §4.1).
    """
    if not fields:
        return ""  # most responses do not vary
    if VARY_ANY in fields:
        return None
    if not isinstance(request_headers, list):
        request_headers = list(request_headers)
    parts = []
    for name in fields:
        values = [value.strip(b" \t") for key, value in request_headers if key.lower() == name]
        if values:
            parts.append(name + b": " + _normalised_value(values))
        else:
            parts.append(name)
    return b"\n".join(parts).decode("latin-1")
