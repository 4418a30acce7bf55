# -*- test-case-name: tests.test_http_sni -*-
"""
Read the server name a TLS client asks for, from the first bytes it sends.

An intercepting proxy that does not decrypt TLS sees only the client's
first flight: one or more TLS records (RFC 8446 §5.1, RFC 5246 §6.2.1)
carrying a C{ClientHello} handshake message (RFC 8446 §4.1.2, RFC 5246
§7.4.1.2) whose C{server_name} extension (RFC 6066 §3) names the host.
L{parse_client_hello} looks at a prefix of that byte stream and says either
that it needs more bytes, or what the hello asks for, or why the bytes are
not a usable ClientHello.

The parser is strict where the RFCs are: a record or hello whose lengths do
not add up, an extension repeated, a server name list with two host names,
a name that is not an ASCII DNS name, or an IP literal in C{HostName} is
refused with a reason, because a lenient parser and the origin's TLS stack
could read different names from the same bytes and the ACL would then judge
a name the origin never sees.

Pure: no I/O, no clock, no Twisted; it never raises on any input.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "MAX_HELLO_RECORDS",
    "MAX_HELLO_SIZE",
    "MAX_PREFIX_SIZE",
    "ClientHelloResult",
    "Outcome",
    "parse_client_hello",
]

#: RFC 8446 §5.1 C{ContentType.handshake}.
_HANDSHAKE_RECORD = 22
#: RFC 8446 §4 C{HandshakeType.client_hello}.
_CLIENT_HELLO = 1
#: RFC 6066 §3 C{ExtensionType.server_name}.
_SERVER_NAME = 0
#: RFC 6066 §3 C{NameType.host_name}.
_HOST_NAME = 0
#: RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes."
_MAX_RECORD = 2**14
_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4

#: The largest ClientHello message accepted, header included.  Real hellos
#: are well under 2 KiB even with post-quantum key shares; anything larger
#: is refused rather than buffered.
MAX_HELLO_SIZE = 16 * 1024
#: A hello split over more records than this is refused (a client
#: fragmenting into tiny records is probing parsers, not talking TLS).
MAX_HELLO_RECORDS = 8
#: The most bytes L{parse_client_hello} can ever ask for before it reaches a
#: verdict: the largest hello plus the headers of the records carrying it.
MAX_PREFIX_SIZE = MAX_HELLO_SIZE + MAX_HELLO_RECORDS * _RECORD_HEADER

# RFC 1123 §2.1 / RFC 952 labels: letters, digits, hyphens, not starting or
# ending with a hyphen.  Underscores are tolerated because real host names
# carry them (as squeak.http.target does).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
_MAX_NAME = 253


class Outcome(enum.Enum):
    """
    What the bytes seen so far amount to.
    """

    #: Not enough bytes yet to decide; see L{ClientHelloResult.needed}.
    NEED_MORE = "need-more"
    #: A well-formed ClientHello without a C{server_name} extension.
    NO_SNI = "no-sni"
    #: A well-formed ClientHello naming a host (L{ClientHelloResult.server_name}).
    SNI = "sni"
    #: The stream does not start with a TLS handshake record at all (plain
    #: HTTP, SSLv2-style hello, random bytes).
    NOT_TLS = "not-tls"
    #: It starts like TLS, but the records or the hello are invalid.
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class ClientHelloResult:
    """
    The verdict of L{parse_client_hello}.

    @ivar outcome: see L{Outcome}.
    @ivar server_name: for L{Outcome.SNI}, the host name, lower-cased ASCII
        without a trailing dot; otherwise L{None}.
    @ivar needed: for L{Outcome.NEED_MORE}, the least number of further bytes
        needed before the verdict can change; otherwise 0.
    @ivar reason: for L{Outcome.NOT_TLS} and L{Outcome.MALFORMED}, why, with
        the section of the RFC broken; otherwise empty.
    @ivar hello_end: for L{Outcome.SNI} and L{Outcome.NO_SNI}, how many bytes
        of the input the records up to the one completing the hello take.
    """

    outcome: Outcome
    server_name: str | None = None
    needed: int = 0
    reason: str = ""
    hello_end: int = 0


class _MalformedError(Exception):
    """
    Internal: the hello is invalid; the message is the reason.
    """


class _Reader:
    """
    Bounds-checked reads from a complete handshake message.
    """

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._at = 0
        self._what = what

    def remaining(self) -> int:
        return len(self._data) - self._at

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining():
            raise _MalformedError(
                f"{what} needs {count} bytes but only {self.remaining()} remain in {self._what}"
            )
        piece = self._data[self._at : self._at + count]
        self._at += count
        return piece

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_size: int, what: str, minimum: int, maximum: int) -> bytes:
        """
        Read a variable-length vector C{<minimum..maximum>} (RFC 8446 §3.4).
        """
        length = self.uint(length_size, f"the length of {what}")
        if not minimum <= length <= maximum:
            raise _MalformedError(f"{what} is {length} bytes, outside {minimum}..{maximum}")
        return self.take(length, what)


def _need(count: int) -> ClientHelloResult:
    return ClientHelloResult(Outcome.NEED_MORE, needed=count)


def parse_client_hello(data: bytes) -> ClientHelloResult:
    """
    Find the server name in the ClientHello at the start of C{data}.

    C{data} is everything the client sent so far; bytes after the records
    that carry the ClientHello are ignored (they are relayed untouched).  The
    handshake message may be split over several records (RFC 8446 §5.1:
    "Handshake messages MAY be coalesced into a single TLSPlaintext record or
    fragmented across several records"), but no other record type may come
    between its fragments.

    @param data: a prefix of the client's byte stream.
    @return: the verdict; never raises.  A caller keeps reading while the
        outcome is L{Outcome.NEED_MORE}, which can only happen while
        C{len(data)} is below L{MAX_PREFIX_SIZE}.
    """
    try:
        return _parse(data)
    except _MalformedError as e:
        return ClientHelloResult(Outcome.MALFORMED, reason=str(e))


def _parse(data: bytes) -> ClientHelloResult:
    at = 0
    fragments: list[bytes] = []
    have = 0
    records = 0
    while True:
        # The record header (RFC 8446 §5.1 TLSPlaintext; RFC 5246 §6.2.1).
        header = data[at : at + _RECORD_HEADER]
        first = records == 0
        if header and header[0] != _HANDSHAKE_RECORD:
            if first:
                return ClientHelloResult(
                    Outcome.NOT_TLS,
                    reason=f"first byte 0x{header[0]:02x} is not a TLS handshake record "
                    "(content type 22, RFC 8446 §5.1)",
                )
            raise _MalformedError(
                f"record {records + 1} has content type {header[0]}, but handshake messages "
                "must not be interleaved with other record types (RFC 8446 §5.1)"
            )
        if len(header) >= 2 and header[1] != 3:
            if first:
                return ClientHelloResult(
                    Outcome.NOT_TLS,
                    reason=f"record version major {header[1]} is not 3 (TLS, RFC 8446 §5.1)",
                )
            raise _MalformedError(f"record {records + 1} has version major {header[1]}, not 3")
        if len(header) >= 3 and header[2] > 4:
            if first:
                return ClientHelloResult(
                    Outcome.NOT_TLS,
                    reason=f"record version 3.{header[2]} is not SSL 3.0-TLS 1.3 (RFC 8446 §5.1)",
                )
            raise _MalformedError(f"record {records + 1} has version 3.{header[2]}")
        if len(header) < _RECORD_HEADER:
            return _need(_RECORD_HEADER - len(header))
        length = int.from_bytes(header[3:5], "big")
        if length == 0:
            raise _MalformedError(
                f"record {records + 1} is empty: zero-length handshake fragments "
                "must not be sent (RFC 8446 §5.1)"
            )
        if length > _MAX_RECORD:
            raise _MalformedError(
                f"record {records + 1} is {length} bytes, over the 2^14 limit (RFC 8446 §5.1)"
            )
        records += 1
        if records > MAX_HELLO_RECORDS:
            raise _MalformedError(
                f"ClientHello fragmented over more than {MAX_HELLO_RECORDS} records"
            )
        body = data[at + _RECORD_HEADER : at + _RECORD_HEADER + length]
        fragments.append(body)
        have += len(body)
        # The handshake header (RFC 8446 §4): msg_type and a 24-bit length.
        if have >= 1:
            first_fragment = fragments[0]
            msg_type = first_fragment[0]
            if msg_type != _CLIENT_HELLO:
                raise _MalformedError(
                    f"first handshake message has type {msg_type}, not client_hello (1) "
                    "(RFC 8446 §4)"
                )
        total: int | None = None
        if have >= _HANDSHAKE_HEADER:
            head = b"".join(fragments)[:_HANDSHAKE_HEADER]
            total = _HANDSHAKE_HEADER + int.from_bytes(head[1:4], "big")
            if total > MAX_HELLO_SIZE:
                raise _MalformedError(
                    f"ClientHello of {total} bytes is over the {MAX_HELLO_SIZE}-byte limit"
                )
        if len(body) < length:
            # This record is incomplete: its length is known, so wait for all of it.
            return _need(length - len(body))
        at += _RECORD_HEADER + length
        if total is not None and have >= total:
            message = b"".join(fragments)[:total]
            return _parse_hello(message[_HANDSHAKE_HEADER:], hello_end=at)
        # The message continues in the next record.


def _parse_hello(hello: bytes, hello_end: int) -> ClientHelloResult:
    """
    Parse a complete ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2).
    """
    r = _Reader(hello, "the ClientHello")
    major = r.uint(1, "legacy_version")
    r.uint(1, "legacy_version")
    if major != 3:
        raise _MalformedError(f"ClientHello version major {major} is not 3 (RFC 8446 §4.1.2)")
    r.take(32, "random")
    r.vector(1, "legacy_session_id", 0, 32)
    suites = r.vector(2, "cipher_suites", 2, 2**16 - 2)
    if len(suites) % 2:
        raise _MalformedError("cipher_suites has an odd length (RFC 8446 §4.1.2)")
    r.vector(1, "legacy_compression_methods", 1, 2**8 - 1)
    if r.remaining() == 0:
        # RFC 5246 §7.4.1.2: "the presence of extensions can be detected by
        # determining whether there are bytes following the
        # compression_methods at the end of the ClientHello".
        return ClientHelloResult(Outcome.NO_SNI, hello_end=hello_end)
    extensions = r.vector(2, "extensions", 0, 2**16 - 1)
    if r.remaining():
        raise _MalformedError(
            f"{r.remaining()} bytes follow the extensions inside the ClientHello (RFC 8446 §4.1.2)"
        )
    name: str | None = None
    seen: set[int] = set()
    e = _Reader(extensions, "the extensions")
    while e.remaining():
        kind = e.uint(2, "an extension type")
        content = e.vector(2, f"extension {kind}", 0, 2**16 - 1)
        if kind in seen:
            raise _MalformedError(
                f"extension {kind} appears twice; there MUST NOT be more than one "
                "extension of the same type (RFC 8446 §4.2)"
            )
        seen.add(kind)
        if kind == _SERVER_NAME:
            name = _parse_server_name(content)
    if name is None:
        return ClientHelloResult(Outcome.NO_SNI, hello_end=hello_end)
    return ClientHelloResult(Outcome.SNI, server_name=name, hello_end=hello_end)


def _parse_server_name(content: bytes) -> str:
    """
    Parse the C{server_name} extension of a ClientHello (RFC 6066 §3).
    """
    r = _Reader(content, "the server_name extension")
    names = r.vector(2, "server_name_list", 1, 2**16 - 1)
    if r.remaining():
        raise _MalformedError(f"{r.remaining()} bytes follow the server_name_list (RFC 6066 §3)")
    found: str | None = None
    n = _Reader(names, "the server_name_list")
    while n.remaining():
        name_type = n.uint(1, "a name_type")
        if name_type != _HOST_NAME:
            # Only host_name(0) is defined, and the layout of any other type
            # is unknown, so the rest of the list cannot be read safely.
            raise _MalformedError(f"unknown server name type {name_type} (RFC 6066 §3)")
        host = n.vector(2, "a HostName", 1, 2**16 - 1)
        if found is not None:
            raise _MalformedError(
                "more than one host_name in server_name; the list MUST NOT contain more "
                "than one name of the same name_type (RFC 6066 §3)"
            )
        found = _check_host_name(host)
    if found is None:  # pragma: no cover - the list is at least 1 byte, so a name was read
        raise _MalformedError("empty server_name_list (RFC 6066 §3)")
    return found


def _check_host_name(host: bytes) -> str:
    """
    Validate C{HostName}: RFC 6066 §3 says it "contains the fully qualified
    DNS hostname of the server", "represented as a byte string using ASCII
    encoding without a trailing dot", and "Literal IPv4 and IPv6 addresses
    are not permitted in HostName".
    """
    if any(byte >= 0x80 for byte in host):
        raise _MalformedError(
            "HostName is not ASCII; internationalized names must be sent as A-labels (RFC 6066 §3)"
        )
    text = host.decode("ascii").lower()
    shown = ascii(text)[1:-1][:80]
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise _MalformedError(f"HostName {shown} is an IP literal, not permitted (RFC 6066 §3)")
    if text.endswith("."):
        raise _MalformedError(f"HostName {shown} has a trailing dot (RFC 6066 §3)")
    labels = text.split(".")
    if len(text) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        raise _MalformedError(f"HostName {shown} is not a valid DNS host name (RFC 6066 §3)")
    if labels[-1].isdigit():
        raise _MalformedError(
            f"HostName {shown} ends in a numeric label, read as an IPv4 address by "
            "resolvers (RFC 6066 §3 forbids IP literals)"
        )
    return text
