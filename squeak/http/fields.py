# -*- test-case-name: tests.test_http_fields -*-
"""
Header rules for a forwarding intermediary.

What a proxy must do to the header section of a message it forwards: remove the
connection-specific fields (RFC 9110 §7.6.1), add C{Via} (RFC 9110 §7.6.3),
honour C{Max-Forwards} (RFC 9110 §7.6.2), notice forwarding loops, maintain
C{X-Forwarded-For} the way Squid's C{forwarded_for} directive does, and refuse
messages whose framing (RFC 9112 §6) two implementations could read
differently, which is how request smuggling and response splitting start.

Headers are L{RawHeaders}: a list of C{(name, value)} byte pairs, names as
received and compared case-insensitively, order and repeats preserved.  No
function here ever joins repeated fields, so C{Set-Cookie} lines stay apart.

This module is pure: it imports neither Twisted nor diskcache.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from squeak import __version__

__all__ = [
    "HOP_BY_HOP",
    "IMPERSONATED_FIELDS",
    "IMPERSONATOR_NAMES",
    "FramingError",
    "RawHeaders",
    "check_request_framing",
    "check_response_framing",
    "connection_options",
    "downstream_response_headers",
    "first_value",
    "impersonated_field",
    "is_forwarding_loop",
    "parse_max_forwards",
    "strip_hop_by_hop",
    "upgrade_accepted",
    "upgrade_offer",
    "upstream_request_headers",
    "via_entry",
]

#: Fields the upstream client regenerates for every request it sends.
_UPSTREAM_REGENERATED = frozenset({b"host", b"content-length", b"transfer-encoding"})
#: Fields the client side regenerates for every response (its framing).
_DOWNSTREAM_REGENERATED = frozenset({b"content-length", b"transfer-encoding"})
_MAX_FORWARDS = frozenset({b"max-forwards"})
_X_FORWARDED_FOR = frozenset({b"x-forwarded-for"})
_NONE: frozenset[bytes] = frozenset()

RawHeaders = list[tuple[bytes, bytes]]
"""
A header section as received: C{(name, value)} pairs in order, repeats kept.
"""

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",  # RFC 9110 §7.6.1
        b"keep-alive",  # RFC 9110 §7.6.1 (RFC 2068 §19.7.1)
        b"proxy-connection",  # RFC 9110 §7.6.1
        b"te",  # RFC 9110 §10.1.4
        b"trailer",  # RFC 9110 §6.6.2 (listed by RFC 2616 §13.5.1)
        b"transfer-encoding",  # RFC 9112 §6.1
        b"upgrade",  # RFC 9110 §7.8
        b"proxy-authorization",  # RFC 9110 §11.7.2: consumed by this proxy
        b"proxy-authenticate",  # RFC 9110 §11.7.1: addressed to the next client only
    }
)
"""
Lower-cased names of the fields that apply to one connection only and are
never forwarded, whether or not C{Connection} lists them.
"""

IMPERSONATED_FIELDS: frozenset[bytes] = frozenset(
    name for name in HOP_BY_HOP | {b"content-length", b"host"} if b"-" in name
)
"""
The framing and connection-specific fields whose names hold a hyphen, and
so can be impersonated by the same name spelt with an underscore.
"""

IMPERSONATOR_NAMES: frozenset[bytes] = frozenset(
    name.replace(b"-", b"_") for name in IMPERSONATED_FIELDS
)
"""
The lower-cased names L{impersonated_field} recognises (C{content_length},
C{transfer_encoding}, ...): every one of L{IMPERSONATED_FIELDS} has a single
hyphen, so each has exactly one underscore spelling.
"""

_OWS = b" \t"
_DIGITS = re.compile(rb"[0-9]+")
_HTTP_VERSION = re.compile(rb"HTTP/([0-9](?:\.[0-9])?)")
_MAX_FORWARDS_CEILING = 2**31 - 1
_FORWARDED_FOR_MODES = frozenset({"on", "off", "transparent", "delete"})


class FramingError(Exception):
    """
    A message's framing is invalid or ambiguous (RFC 9112 §6).

    The caller answers 400 for a request and 502 for a response, and does not
    reuse the connection.

    @ivar detail: a one-line explanation for the error page and the logs.
    """

    detail: str

    def __init__(self, detail: str) -> None:
        """
        @param detail: see L{FramingError.detail}.
        """
        super().__init__(detail)
        self.detail = detail


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    Collect the values of every field with a given name.

    @param headers: the header section.
    @param name: a lower-case field name.
    @return: the values in order, with leading and trailing whitespace removed
        (RFC 9110 §5.5: it is not part of the field value).
    """
    return [value.strip(_OWS) for key, value in headers if key.lower() == name]


def first_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """
    The value of the first field named C{name} (lower-case), as stored, or
    L{None} when there is none.
    """
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def impersonated_field(name: bytes) -> bytes | None:
    """
    The framing or connection-specific field a request field's name
    impersonates, if it does.

    CGI (RFC 3875 §4.1.18) and the gateways modelled on it (WSGI, PHP,
    many application servers) turn a field name into a variable by
    upper-casing it and replacing C{-} with C{_}: C{Transfer_Encoding} and
    C{Transfer-Encoding} become the same C{HTTP_TRANSFER_ENCODING}.  A proxy
    that frames the message by the real field and forwards the look-alike
    lets the application read a different framing, or a C{Connection} or
    C{Proxy-Authorization} the proxy never saw: a smuggling vector.  Names
    are tokens (RFC 9110 §5.1) and C{_} is a valid token character, so
    such a name is not malformed, only dangerous; the caller drops it.

    Only the fields of L{IMPERSONATED_FIELDS} count (C{Content-Length},
    C{Transfer-Encoding}, C{Keep-Alive}, C{Proxy-Connection},
    C{Proxy-Authorization}, C{Proxy-Authenticate}): C{Host}, C{Connection},
    C{Upgrade}, C{TE} and C{Trailer} have no hyphen to impersonate, and
    other underscore names (C{X_Forwarded_For}, C{Api_Key}) are an
    application's business, unlike nginx, which drops every one by default
    (C{underscores_in_headers off}).

    @param name: A field name as received, in any case.
    @return: The lower-cased name of the impersonated field, e.g.
        C{b"content-length"} for C{Content_Length}, or L{None}.
    """
    lowered = name.lower()
    if lowered not in IMPERSONATOR_NAMES:
        return None
    return lowered.replace(b"_", b"-")


def _list_elements(values: Iterable[bytes]) -> list[bytes]:
    """
    Split list-based field values into their elements (RFC 9110 §5.6.1).

    Empty elements are dropped, as RFC 9110 §5.6.1.2 requires of recipients.
    This split does not understand quoted strings or comments; use it only for
    fields whose grammar has neither (C{Connection}, C{Transfer-Encoding}
    codings without parameters, C{X-Forwarded-For}).

    @param values: field values, one per field line.
    @return: the elements, stripped of whitespace, in order.
    """
    elements = []
    for value in values:
        for element in value.split(b","):
            element = element.strip(_OWS)
            if element:
                elements.append(element)
    return elements


def connection_options(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """
    The connection options a message's C{Connection} fields name (RFC 9110 §7.6.1).

    @param headers: the header section.
    @return: the lower-cased option names, e.g. C{{b"close", b"x-private"}}.
    """
    return frozenset(e.lower() for e in _list_elements(_values(headers, b"connection")))


def strip_hop_by_hop(
    headers: Sequence[tuple[bytes, bytes]], *, keep_upgrade: bool = False
) -> RawHeaders:
    """
    Remove the fields that must not be forwarded (RFC 9110 §7.6.1).

    RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
    field before a message is forwarded and, for each connection-option in
    this field, remove any header or trailer field(s) from the message with
    the same name as the connection-option, and then remove the Connection
    header field itself".  The fields in L{HOP_BY_HOP} go too, named or not.
    Every other field is kept, in order, repeats and all.

    @param headers: the header section as received.
    @param keep_upgrade: keep C{Connection} and C{Upgrade} (and any field named
        C{upgrade} by C{Connection}), for relaying a protocol switch such as
        WebSocket (RFC 9110 §7.8); other options C{Connection} names are still
        removed.
    @return: a new list; C{headers} is not changed.
    """
    lowered = [name.lower() for name, _ in headers]
    removed = _hop_by_hop(headers, lowered)
    if keep_upgrade:
        removed = removed - {b"connection", b"upgrade"}
    return [field for field, low in zip(headers, lowered, strict=True) if low not in removed]


def _hop_by_hop(headers: Sequence[tuple[bytes, bytes]], lowered: list[bytes]) -> frozenset[bytes]:
    """
    The lower-cased names of the fields L{strip_hop_by_hop} removes.

    @param lowered: The lower-cased names of C{headers}, in order: the
        callers need them anyway, and lower-casing every name once instead
        of once per pass is a measurable part of a proxied request.
    """
    if b"connection" not in lowered:
        return HOP_BY_HOP
    values = tuple([headers[i][1] for i, low in enumerate(lowered) if low == b"connection"])
    if sum(map(len, values)) <= _REMEMBERED_CONNECTION:
        # Most messages say the same (keep-alive, close): one set each.
        return _named_by_connection(values)
    return _named_by_connection.__wrapped__(values)


#: The longest C{Connection} values (in bytes, all lines) whose hop-by-hop
#: set is remembered, so an origin cannot fill the memory with long ones.
_REMEMBERED_CONNECTION = 256


@functools.lru_cache(maxsize=64)
def _named_by_connection(values: tuple[bytes, ...]) -> frozenset[bytes]:
    """
    L{HOP_BY_HOP} and the options C{Connection} names (RFC 9110 §7.6.1).
    """
    return HOP_BY_HOP | {element.lower() for element in _list_elements(values)}


@functools.lru_cache(maxsize=64)
def _removed(*sets: frozenset[bytes]) -> frozenset[bytes]:
    """
    The union of field-name sets: the same few sets meet on every message
    (frozensets hash once), so each union is made once.
    """
    return frozenset().union(*sets)


def _protocol_name(protocol: bytes) -> bytes:
    """
    The lower-cased name of an C{Upgrade} entry, without its version
    (RFC 9110 §7.8: C{protocol = protocol-name ["/" protocol-version]}).
    """
    return protocol.split(b"/", 1)[0].strip(_OWS).lower()


def upgrade_offer(headers: Sequence[tuple[bytes, bytes]], allowed: Iterable[str]) -> bytes:
    """
    The protocols a request asks to upgrade to that the proxy relays.

    RFC 9110 §7.8: a sender of C{Upgrade} "MUST also send an C{upgrade}
    connection option", and C{Upgrade} is hop-by-hop: a proxy forwards it
    only by choice.  Squeak chooses to for the protocols it can relay
    (C{proxy.upgrade_protocols}, WebSocket by default), because past a
    C{101} it checks nothing more; any other entry (C{h2c}, C{TLS/1.0})
    is dropped, and with no entry left the request goes as a plain one,
    its C{Upgrade} stripped like every hop-by-hop field.

    @param headers: The request's header section.
    @param allowed: Lower-cased protocol names that may be asked for.
    @return: The allowed entries as sent, in order, joined by C{", "}, or
        C{b""} when the request asks for none of them (or C{Connection}
        does not name C{upgrade}).
    """
    if b"upgrade" not in connection_options(headers):
        return b""
    names = frozenset(name.encode("ascii") for name in allowed)
    kept = [
        entry
        for entry in _list_elements(_values(headers, b"upgrade"))
        if _protocol_name(entry) in names
    ]
    return b", ".join(kept)


def upgrade_accepted(offered: bytes, answered: Sequence[tuple[bytes, bytes]]) -> bool:
    """
    Whether an origin's C{101 Switching Protocols} switches only to
    protocols the request asked for.

    RFC 9110 §15.2.2: the server "MUST generate an Upgrade header field in
    the response that indicates which protocol(s) will be in effect", and
    §7.8: it switches "to one or more of the protocols listed" by the
    client.  A 101 that names none, or names another protocol, would turn
    the connection into a byte stream the proxy never agreed to relay.
    Names are compared without their versions, case-insensitively.

    @param offered: The C{Upgrade} value sent upstream (L{upgrade_offer}).
    @param answered: The 101's header section.
    @return: L{True} when every protocol the 101 names was offered, and it
        names at least one.
    """
    asked = {_protocol_name(entry) for entry in _list_elements([offered])}
    switched = [_protocol_name(e) for e in _list_elements(_values(answered, b"upgrade"))]
    return bool(switched) and all(name in asked for name in switched)


def _framing_fields(headers: Sequence[tuple[bytes, bytes]], message: str) -> None:
    """
    Check C{Content-Length} and C{Transfer-Encoding} (RFC 9112 §6.1-6.3).

    Strict rather than repair: several C{Content-Length} fields or a list of
    values are refused even when every value is the same, although RFC 9110
    §8.6 allows a recipient to collapse them.  Agreeing with whatever the
    next hop does is impossible to guarantee, and refusing is always safe.

    @param headers: the header section.
    @param message: C{"request"} or C{"response"}, for the detail.
    @raise FramingError: if the framing is invalid or ambiguous.
    """
    lengths = _values(headers, b"content-length")
    encodings = _values(headers, b"transfer-encoding")
    if lengths and encodings:
        # RFC 9112 §6.1: "Such a message might indicate an attempt to perform
        # request smuggling ... or response splitting ... and ought to be
        # handled as an error."
        raise FramingError(
            f"{message} has both Transfer-Encoding and Content-Length (RFC 9112 §6.1)"
        )
    if len(lengths) > 1:
        raise FramingError(f"{message} has {len(lengths)} Content-Length fields (RFC 9112 §6.3)")
    if lengths:
        (length,) = lengths
        if b"," in length:
            raise FramingError(f"{message} Content-Length is a list (RFC 9112 §6.3)")
        if not _DIGITS.fullmatch(length):
            # RFC 9110 §8.6: Content-Length = 1*DIGIT; no sign, no hex, no spaces.
            raise FramingError(
                f"{message} Content-Length {length[:32]!r} is not 1*DIGIT (RFC 9110 §8.6)"
            )
    if encodings:
        codings = [c.lower() for c in _list_elements(encodings)]
        if not codings:
            raise FramingError(f"{message} Transfer-Encoding is empty (RFC 9112 §6.1)")
        if codings.count(b"chunked") > 1:
            # RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer
            # coding more than once to a message body".
            raise FramingError(
                f"{message} Transfer-Encoding applies chunked twice (RFC 9112 §6.1)"
            )
        if codings[-1] != b"chunked":
            # RFC 9112 §6.3: for a request this must be a 400; for a response
            # it would mean a close-delimited body, which we do not relay.
            raise FramingError(
                f"{message} Transfer-Encoding does not end with chunked (RFC 9112 §6.3)"
            )
        if codings != [b"chunked"]:
            raise FramingError(
                f"{message} Transfer-Encoding has codings other than chunked, "
                "which this proxy does not decode (RFC 9112 §7)"
            )


def check_request_framing(headers: Sequence[tuple[bytes, bytes]]) -> None:
    """
    Refuse a request whose body length is invalid or ambiguous (RFC 9112 §6.1-6.3).

    Refused: a C{Content-Length} that is not C{1*DIGIT} (C{+5}, C{-1},
    C{0x10}, C{5 5}, empty; surrounding whitespace is not part of the value
    and is fine); several C{Content-Length} fields or a comma list, even of
    equal values (strict rather than repair, see RFC 9110 §8.6); both
    C{Transfer-Encoding} and C{Content-Length} (RFC 9112 §6.1: "ought to be
    handled as an error"); and any C{Transfer-Encoding} other than exactly
    C{chunked}: a final coding that is not chunked (RFC 9112 §6.3 requires a
    400), chunked applied twice, or other codings, which this proxy does not
    decode.

    @param headers: the request's header section.
    @raise FramingError: if the request must be refused with a 400.
    """
    _framing_fields(headers, "request")


def check_response_framing(headers: Sequence[tuple[bytes, bytes]]) -> None:
    """
    Refuse a response whose body length is invalid or ambiguous (RFC 9112 §6.3).

    The rules are those of L{check_request_framing}.  A response whose
    C{Transfer-Encoding} does not end in chunked would be close-delimited
    (RFC 9112 §6.3 item 4); to keep things simple and unambiguous, anything
    other than exactly C{chunked} is refused here too.

    @param headers: the response's header section.
    @raise FramingError: if the response must be refused with a 502.
    """
    _framing_fields(headers, "response")


def _split_via(value: bytes) -> list[bytes]:
    """
    Split a C{Via} field value into its entries (RFC 9110 §7.6.3).

    Unlike L{_list_elements} this skips commas inside comments, which may
    nest and contain quoted-pairs (RFC 9110 §5.6.5).

    @param value: one C{Via} field value.
    @return: the non-empty entries, stripped of whitespace.
    """
    entries = []
    depth = 0
    escaped = False
    start = 0
    for index, byte in enumerate(value):
        if escaped:
            escaped = False
        elif depth and byte == 0x5C:  # backslash: quoted-pair in a comment
            escaped = True
        elif byte == 0x28:  # (
            depth += 1
        elif byte == 0x29 and depth:  # )
            depth -= 1
        elif byte == 0x2C and not depth:  # ,
            entries.append(value[start:index])
            start = index + 1
    entries.append(value[start:])
    return [e.strip(_OWS) for e in entries if e.strip(_OWS)]


def is_forwarding_loop(headers: Sequence[tuple[bytes, bytes]], visible_hostname: str) -> bool:
    """
    Has this message already passed through this proxy?

    Each C{Via} entry is C{received-protocol RWS received-by [ RWS comment ]}
    (RFC 9110 §7.6.3); a loop is an entry whose received-by equals our
    C{visible_hostname}, compared case-insensitively.  The comparison is
    exact: C{squeak:3128} does not match C{squeak}.

    @param headers: the request's header section.
    @param visible_hostname: the name this proxy puts in C{Via}.
    @return: L{True} if an entry names this proxy.
    """
    ours = visible_hostname.encode("ascii", "replace").lower()
    if not ours:
        return False
    for value in _values(headers, b"via"):
        for entry in _split_via(value):
            parts = entry.split()
            if len(parts) >= 2 and parts[1].lower() == ours:
                return True
    return False


def parse_max_forwards(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """
    The C{Max-Forwards} value of a request (RFC 9110 §7.6.2).

    C{Max-Forwards = 1*DIGIT}.  A value that is not digits is ignored rather
    than refused: the field only matters for TRACE and OPTIONS, RFC 9110
    gives no error handling for it, and ignoring it forwards the request as
    if the client had not sent it, which is what an intermediary that does
    not implement the field would do anyway.  If several valid values are
    present the smallest wins, since it is the most conservative.  Values are
    capped at 2**31 - 1.

    @param headers: the request's header section.
    @return: the number, or L{None} if there is no valid value.
    """
    numbers = []
    for value in _values(headers, b"max-forwards"):
        if _DIGITS.fullmatch(value):
            significant = value.lstrip(b"0") or b"0"
            if len(significant) > 10:
                numbers.append(_MAX_FORWARDS_CEILING)
            else:
                numbers.append(min(int(significant), _MAX_FORWARDS_CEILING))
    return min(numbers) if numbers else None


@functools.lru_cache(maxsize=64)
def via_entry(version: bytes, visible_hostname: str) -> bytes:
    """
    Build this proxy's C{Via} entry (RFC 9110 §7.6.3).

    "received-protocol indicates the protocol version of the message received
    by the server or client along each segment of the request/response
    chain"; the protocol name is omitted because it is HTTP.

    @param version: the HTTP-version of the message as received, e.g.
        C{b"HTTP/1.0"}.
    @param visible_hostname: the received-by pseudonym.
    @return: e.g. C{b"1.0 squeak (squeak/0.1.0)"}.
    @raise ValueError: if C{version} is not C{HTTP/DIGIT[.DIGIT]}; callers
        pass only versions their parser accepted.
    """
    match = _HTTP_VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"not an HTTP-version: {version!r}")
    return b"%s %s (squeak/%s)" % (
        match.group(1),
        visible_hostname.encode("ascii"),
        __version__.encode("ascii"),
    )


def _append_via(headers: RawHeaders, entry: bytes, *, may_have_via: bool = True) -> RawHeaders:
    """
    Add a C{Via} entry after any that are already there.

    The entry is appended to the last C{Via} field line, so that recipients
    that read only one line still see the whole chain; with no C{Via} field a
    new one is added at the end.

    @param headers: the header section, changed in place.
    @param entry: the entry to add.
    @param may_have_via: false when the caller knows C{headers} has no
        C{Via} field, so none is looked for.
    @return: C{headers}.
    """
    if not may_have_via:
        headers.append((b"Via", entry))
        return headers
    for index in range(len(headers) - 1, -1, -1):
        name, value = headers[index]
        if name.lower() == b"via":
            value = value.strip(_OWS)
            headers[index] = (name, value + b", " + entry if value else entry)
            return headers
    headers.append((b"Via", entry))
    return headers


def upstream_request_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    authority: bytes,
    client_ip: str,
    visible_hostname: str,
    forwarded_for: str,
    via: bool,
    max_forwards: int | None,
    request_version: bytes,
) -> RawHeaders:
    """
    Build the header section to send upstream for a client's request.

    In order: hop-by-hop fields are removed (L{strip_hop_by_hop}); C{Host},
    C{Content-Length} and C{Transfer-Encoding} are dropped, since the
    upstream client regenerates framing, and C{Host: authority} goes first
    (RFC 9110 §7.2: "a user agent MUST generate a Host header field in a
    request", and RFC 9112 §3.2.2 requires a proxy to replace it with the
    target URI's authority); C{Max-Forwards} is replaced by C{max_forwards}
    when it is not L{None} (the caller has decremented it, RFC 9110 §7.6.2);
    C{X-Forwarded-For} is handled per Squid's C{forwarded_for}; and C{Via}
    gains our entry when C{via} is true (RFC 9110 §7.6.3).

    Squid's C{forwarded_for} modes: C{"on"} appends C{client_ip} to the
    existing list (C{a, b, client}); C{"off"} appends C{unknown}; C{"delete"}
    removes the field; C{"transparent"} leaves it untouched.  With C{"on"} and
    C{"off"} the existing fields are merged into one line at the end.

    @param headers: the client's header section.
    @param authority: the target's authority, e.g. L{squeak.http.target.Target.authority}.
    @param client_ip: the client's address, for C{X-Forwarded-For}.
    @param visible_hostname: this proxy's name in C{Via}.
    @param forwarded_for: C{"on"}, C{"off"}, C{"transparent"} or C{"delete"}.
    @param via: whether to add a C{Via} entry.
    @param max_forwards: the C{Max-Forwards} value to send, or L{None} to leave
        the field as the client sent it.
    @param request_version: the client's HTTP-version, e.g. C{b"HTTP/1.1"}.
    @return: a new header section.
    @raise ValueError: for an unknown C{forwarded_for} mode or an invalid
        C{request_version}.
    """
    if forwarded_for not in _FORWARDED_FOR_MODES:
        raise ValueError(f"unknown forwarded_for mode: {forwarded_for!r}")
    lowered = [name.lower() for name, _ in headers]
    hop_by_hop = _hop_by_hop(headers, lowered)
    removed = _removed(
        hop_by_hop,
        _UPSTREAM_REGENERATED,
        _MAX_FORWARDS if max_forwards is not None else _NONE,
        _NONE if forwarded_for == "transparent" else _X_FORWARDED_FOR,
    )
    result: RawHeaders = [(b"Host", authority)]
    result += [field for field, low in zip(headers, lowered, strict=True) if low not in removed]
    if max_forwards is not None:
        result.append((b"Max-Forwards", b"%d" % (max_forwards,)))
    if forwarded_for in ("on", "off"):
        chain = []
        if b"x-forwarded-for" in lowered and b"x-forwarded-for" not in hop_by_hop:
            chain = _list_elements(
                value
                for (_, value), low in zip(headers, lowered, strict=True)
                if low == b"x-forwarded-for"
            )
        chain.append(client_ip.encode("ascii") if forwarded_for == "on" else b"unknown")
        result.append((b"X-Forwarded-For", b", ".join(chain)))
    if via:
        _append_via(
            result,
            via_entry(request_version, visible_hostname),
            may_have_via=b"via" in lowered and b"via" not in removed,
        )
    return result


def downstream_response_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    visible_hostname: str,
    via: bool,
    response_version: bytes,
    replaced: frozenset[bytes] = frozenset(),
) -> RawHeaders:
    """
    Build the header section to send to the client for an upstream response.

    Hop-by-hop fields are removed (L{strip_hop_by_hop}; this includes
    C{Proxy-Authenticate}, which was addressed to us, RFC 9110 §11.7.1), as are
    C{Content-Length} and C{Transfer-Encoding}, since the caller sets the
    framing; C{Via} gains our entry when C{via} is true (RFC 9110 §7.6.3).
    Repeated fields such as C{Set-Cookie} stay on separate lines (RFC 9110
    §5.3: C{Set-Cookie} cannot be combined).

    @param headers: the upstream response's header section.
    @param visible_hostname: this proxy's name in C{Via}.
    @param via: whether to add a C{Via} entry.
    @param response_version: the HTTP-version of the response as received
        from upstream, e.g. C{b"HTTP/1.1"}.
    @param replaced: lower-cased names of fields the caller sends values of
        its own for, removed here too.
    @return: a new header section.
    @raise ValueError: for an invalid C{response_version}.
    """
    lowered = [name.lower() for name, _ in headers]
    removed = _removed(_hop_by_hop(headers, lowered), _DOWNSTREAM_REGENERATED, replaced)
    result = [field for field, low in zip(headers, lowered, strict=True) if low not in removed]
    if via:
        _append_via(
            result,
            via_entry(response_version, visible_hostname),
            may_have_via=b"via" in lowered and b"via" not in removed,
        )
    return result
