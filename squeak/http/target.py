# -*- test-case-name: tests.test_http_target -*-
"""
Parse the request-target a forward proxy receives.

A client talking to a forward proxy sends the I{absolute-form} of the
request-target (RFC 9112 §3.2.2), C{GET http://example.com/a?b HTTP/1.1}, and
the I{authority-form} (RFC 9112 §3.2.3) only with C{CONNECT}.  This module turns
those bytes into a L{Target} value, or raises L{TargetError} carrying the
Squid-style error name and the status code to answer with.

The parser is deliberately strict: anything that two implementations could read
differently (userinfo, fragments, control characters, odd numeric hosts,
zone identifiers) is refused with a 400 rather than repaired, because a proxy
that repairs a URL can be made to route or match ACLs on something other than
what the origin will see.

This module is pure: it imports neither Twisted nor diskcache.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

from squeak.memo import remember_short

__all__ = [
    "SUPPORTED_SCHEMES",
    "Target",
    "TargetError",
    "format_authority",
    "parse_absolute_target",
    "parse_authority",
]

SUPPORTED_SCHEMES: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})
"""
The URI schemes accepted in an absolute-form request-target, each mapped to its
default port (RFC 9110 §4.2.1).  Adding C{"https": 443} here is all the parser
needs to accept C{https} URIs.
"""

ERR_INVALID_URL = "ERR_INVALID_URL"
ERR_UNSUP_REQ = "ERR_UNSUP_REQ"

_MAX_DETAIL_VALUE = 64

# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*")

# Host names: letters, digits, hyphen, dot and underscore.  This is a subset of
# RFC 3986's reg-name: sub-delims and pct-encoded octets are valid reg-name
# characters but can never name a host that DNS resolves, and letting them
# through would only carry odd bytes into logs, ACLs and the Host header.
_HOST_LABEL = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")
_NUMERIC_LABEL = re.compile(rb"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")


class TargetError(Exception):
    """
    A request-target cannot be used.

    @ivar name: the Squid error page name, e.g. C{"ERR_INVALID_URL"}.
    @ivar status: the HTTP status code to answer with.
    @ivar detail: a one-line explanation for the error page and the logs; it
        never contains control characters.
    """

    name: str
    status: int
    detail: str

    def __init__(self, name: str, status: int, detail: str) -> None:
        """
        @param name: see L{TargetError.name}.
        @param status: see L{TargetError.status}.
        @param detail: see L{TargetError.detail}.
        """
        super().__init__(name, status, detail)
        self.name = name
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        """
        @return: C{"<name> (<status>): <detail>"}.
        """
        return f"{self.name} ({self.status}): {self.detail}"


def _invalid(detail: str) -> TargetError:
    """
    Build the error for a request-target that is not a valid URI.

    @param detail: what is wrong with it.
    @return: an C{ERR_INVALID_URL} L{TargetError} with status 400.
    """
    return TargetError(ERR_INVALID_URL, 400, detail)


def _shown(value: bytes) -> str:
    """
    Render part of a request-target for an error detail.

    @param value: bytes from the request; they may be hostile.
    @return: a printable, length-limited representation (Python C{repr}
        escaping, so control characters never reach a log line or a page).
    """
    if len(value) > _MAX_DETAIL_VALUE:
        value = value[:_MAX_DETAIL_VALUE] + b"..."
    return repr(value.decode("ascii", "backslashreplace"))


@dataclass(frozen=True)
class Target:
    """
    A parsed absolute-form request-target (RFC 9112 §3.2.2).

    @ivar scheme: the lower-cased scheme, a key of L{SUPPORTED_SCHEMES}.
    @ivar host: the lower-cased host name, a dotted-quad IPv4 address, or an
        IPv6 address in its compressed form and without brackets.
    @ivar port: the port, 1-65535; the scheme's default when the URI had none.
    @ivar path: the path and query exactly as received (percent-encoding
        untouched, so C{%2F} stays C{%2F}), C{b"/"} when the URI had an empty
        path (RFC 9110 §4.2.3).
    """

    scheme: str
    host: str
    port: int
    path: bytes

    # Computed once: targets are remembered by parse_absolute_target, so the
    # same object serves every request for a URI.
    @cached_property
    def authority(self) -> bytes:
        """
        The authority to send in C{Host} (RFC 9110 §7.2).

        @return: C{host[:port]}, the port omitted when it is the scheme's
            default and an IPv6 address in brackets (RFC 3986 §3.2.2).
        """
        return format_authority(self.host, self.port, SUPPORTED_SCHEMES.get(self.scheme))

    @cached_property
    def uri(self) -> bytes:
        """
        The absolute URI again, normalized: C{parse_absolute_target(t.uri) == t}.

        @return: C{scheme://authority} followed by L{path}.
        """
        return self.scheme.encode("ascii") + b"://" + self.authority + self.path

    @cached_property
    def uri_text(self) -> str:
        """L{uri} as text (Latin-1, never failing), for logs, rules and keys."""
        return self.uri.decode("latin-1")

    @cached_property
    def path_text(self) -> str:
        """L{path} as text (Latin-1, never failing), for logs and rules."""
        return self.path.decode("latin-1")


def format_authority(host: str, port: int, default_port: int | None) -> bytes:
    """
    Format a host and port as an authority (RFC 3986 §3.2).

    @param host: a host name or IP address, IPv6 without brackets.
    @param port: the port.
    @param default_port: the scheme's default port, omitted from the result.
    @return: C{host}, C{host:port}, C{[v6]} or C{[v6]:port}.
    """
    shown = f"[{host}]" if ":" in host else host
    if port != default_port:
        shown = f"{shown}:{port}"
    return shown.encode("ascii")


#: Whitespace, control and non-ASCII octets (one regex scan instead of a
#: Python loop over every byte, which showed up in the cache-hit profile).
_FORBIDDEN = re.compile(rb"[\x00-\x20\x7f-\xff]")


def _check_characters(value: bytes) -> None:
    """
    Refuse bytes that can never appear in a request-target.

    RFC 9112 §3.2 builds the request-target from RFC 3986 characters, which
    exclude whitespace, controls and non-ASCII octets; a C{#} fragment is never
    sent (RFC 9112 §3.2: "fragment ... not part of the request-target").

    @param value: the request-target.
    @raise TargetError: C{ERR_INVALID_URL} if a byte is not allowed.
    """
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        byte = value[bad.start()]
        raise _invalid(
            f"request-target contains the byte 0x{byte:02x} "
            "(whitespace, control and non-ASCII bytes are not allowed)"
        )
    if b"#" in value:
        raise _invalid("request-target contains a fragment ('#'), which clients never send")


def _parse_port(port: bytes, default_port: int | None) -> int:
    """
    Parse the port of an authority (RFC 3986 §3.2.3: C{port = *DIGIT}).

    @param port: the bytes after the colon, possibly empty.
    @param default_port: the port to use when C{port} is empty ("URI producers
        and normalizers should omit the port component and its ':' delimiter
        if port is empty"), or L{None} if a port is required.
    @return: the port number, 1-65535.
    @raise TargetError: C{ERR_INVALID_URL} for non-digits, 0, a value over
        65535, or an empty port where one is required.
    """
    if not port:
        if default_port is None:
            raise _invalid("a port is required")
        return default_port
    if not port.isdigit():
        raise _invalid(f"port {_shown(port)} is not a number")
    significant = port.lstrip(b"0")
    if len(significant) > 5 or not 0 < int(significant or b"0") <= 65535:
        raise _invalid(f"port {_shown(port)} is out of range 1-65535")
    return int(significant)


def _parse_ipv6(literal: bytes) -> str:
    """
    Validate an IP-literal's content (RFC 3986 §3.2.2).

    IPvFuture (C{[v1.x]}) and zone identifiers (RFC 6874, C{%25eth0}) are
    refused: neither can name an origin server on the Internet.

    @param literal: the text between the brackets.
    @return: the address in its compressed, lower-case form.
    @raise TargetError: C{ERR_INVALID_URL} if it is not an IPv6 address.
    """
    text = literal.decode("ascii")
    if "%" in text:
        raise _invalid("IPv6 zone identifiers are not supported")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise _invalid(f"{_shown(literal)} is not a valid IPv6 address") from None
    return address.compressed


def _parse_reg_name(host: bytes) -> str:
    """
    Validate a host name or IPv4 address (RFC 3986 §3.2.2, RFC 1123 §2.1).

    Each dot-separated label must be 1-63 letters, digits, hyphens or
    underscores, not starting or ending with a hyphen; one trailing dot (a
    fully qualified name) is allowed.  If the last label is numeric the host
    must be a canonical dotted-quad IPv4 address: C{2130706433}, C{0x7f.1} or
    C{127.000.0.1} are refused because resolvers read them as addresses that
    differ from the text ACLs would match on (the WHATWG URL standard calls
    these "IPv4 numbers").

    @param host: the host bytes, non-empty.
    @return: the lower-cased host.
    @raise TargetError: C{ERR_INVALID_URL} if the host is not acceptable.
    """
    labels = host.split(b".")
    if len(labels) > 1 and labels[-1] == b"":
        labels.pop()
    if len(host) > 254 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _invalid(f"host {_shown(host)} is not a valid host name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(host.decode("ascii"))
        except ValueError:
            raise _invalid(
                f"host {_shown(host)} is neither a host name nor a dotted-quad IPv4 address"
            ) from None
    return host.decode("ascii").lower()


def _parse_host_port(authority: bytes, default_port: int | None) -> tuple[str, int]:
    """
    Split and validate C{host [ ":" port ]} (RFC 3986 §3.2).

    @param authority: the authority, already checked for forbidden bytes.
    @param default_port: see L{_parse_port}.
    @return: C{(host, port)}.
    @raise TargetError: C{ERR_INVALID_URL} if the authority is not acceptable.
    """
    if b"@" in authority:
        # RFC 9110 §4.2.4: senders must not generate userinfo in http(s) URIs,
        # and recipients ought to treat it as an error: it is used to
        # obscure the real authority in phishing.
        raise _invalid("userinfo ('user@') is not allowed in the authority (RFC 9110 §4.2.4)")
    if not authority:
        raise _invalid("the host is missing")
    if authority.startswith(b"["):
        close = authority.find(b"]")
        if close == -1:
            raise _invalid("unterminated IPv6 literal ('[' without ']')")
        host = _parse_ipv6(authority[1:close])
        rest = authority[close + 1 :]
        if rest and not rest.startswith(b":"):
            raise _invalid(f"unexpected {_shown(rest)} after the IPv6 literal")
        return host, _parse_port(rest[1:], default_port)
    name, _, port = authority.partition(b":")
    if not name:
        raise _invalid("the host is missing")
    if b":" in port:
        raise _invalid("more than one ':' in the authority (an IPv6 address must be in brackets)")
    if b"[" in name or b"]" in name:
        raise _invalid(f"host {_shown(name)} is not a valid host name")
    return _parse_reg_name(name), _parse_port(port, default_port)


@remember_short()
def parse_absolute_target(uri: bytes) -> Target:
    """
    Parse the absolute-form request-target a forward proxy receives.

    RFC 9112 §3.2.2: "When making a request to a proxy, other than a CONNECT
    or server-wide OPTIONS request, a client MUST send the target URI in
    absolute-form."  So origin-form (C{/path}), asterisk-form (C{*}) and
    authority-form (C{host:port}) are refused here.

    The host is lower-cased (RFC 3986 §6.2.2.1) and an IPv6 literal is
    normalized; the path and query are kept byte for byte.

    @param uri: the request-target as received.
    @return: the parsed target.
    @raise TargetError: C{ERR_UNSUP_REQ} 400 for a scheme other than those in
        L{SUPPORTED_SCHEMES}; C{ERR_INVALID_URL} 400 for anything else that
        is not an acceptable absolute URI.

    Results are remembered (L{remember_short}): a L{Target} is immutable.
    """
    _check_characters(uri)
    if not uri:
        raise _invalid("empty request-target; absolute URI required")
    if uri.startswith(b"/"):
        raise _invalid("origin-form request-target sent to a proxy; absolute URI required")
    if uri.startswith(b"["):
        raise _invalid("authority-form request-target is only for CONNECT; absolute URI required")
    if uri == b"*":
        raise _invalid("asterisk-form request-target sent to a proxy; absolute URI required")
    scheme_bytes, colon, rest = uri.partition(b":")
    if not colon or not _SCHEME.fullmatch(scheme_bytes):
        raise _invalid(f"{_shown(uri)} has no scheme; absolute URI required")
    if rest.isdigit():
        raise _invalid("authority-form request-target is only for CONNECT; absolute URI required")
    scheme = scheme_bytes.decode("ascii").lower()
    default_port = SUPPORTED_SCHEMES.get(scheme)
    if default_port is None:
        raise TargetError(ERR_UNSUP_REQ, 400, f"scheme {scheme!r} is not supported")
    if not rest.startswith(b"//"):
        raise _invalid(f"{scheme} URI without '//authority'; absolute URI required")
    hier = rest[2:]
    end = len(hier)
    for delimiter in (b"/", b"?"):
        found = hier.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, path = hier[:end], hier[end:]
    host, port = _parse_host_port(authority, default_port)
    if not path.startswith(b"/"):
        path = b"/" + path
    return Target(scheme=scheme, host=host, port=port, path=path)


def parse_authority(authority: bytes, default_port: int | None) -> tuple[str, int]:
    """
    Parse an authority-form request-target, as sent with C{CONNECT}.

    RFC 9112 §3.2.3: C{authority-form = uri-host ":" port}; the host is
    validated as for L{parse_absolute_target}.

    @param authority: C{host:port} or C{[v6]:port}.
    @param default_port: the port to use when none is given, or L{None} if the
        port is required (as RFC 9112 §3.2.3 requires for CONNECT).
    @return: C{(host, port)}, the host lower-cased and IPv6 without brackets.
    @raise TargetError: C{ERR_INVALID_URL} 400 if the authority is not valid.
    """
    _check_characters(authority)
    return _parse_host_port(authority, default_port)
