# -*- test-case-name: tests.test_accesslog -*-
"""
Access-log lines: the hand-written formatters of the presets that must be
fast (Squid's native C{squid}, Apache's C{common} and C{combined}), and
L{formatter}, which picks one of them or compiles a Squid C{logformat}
string with L{squeak.logformat}.

The formatters are pure functions of an L{AccessRecord}: no I/O and no
clock, so that they can be tested with tables.  The compiled form of
Squid's definition of C{squid} costs about 1.3 times as much as
L{format_squid}, which is why the presets are written by hand.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from squeak.accessrecord import AccessRecord
from squeak.logformat import PRESETS, compile_format, media_type

__all__ = [
    "FORMATTERS",
    "NEEDS",
    "PRESET_NAMES",
    "format_combined",
    "format_common",
    "format_squid",
    "formatter",
]


_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
_PLAIN_WITH_SPACE = _PLAIN | {" "}
_PLAIN_ONLY = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]*")
# The same sets as patterns of what they exclude: one C-speed search decides
# that the common field needs no escaping.
_NEEDS_ESCAPE = {
    _PLAIN: re.compile(r"[^\x21\x23-\x5b\x5d-\x7e]"),
    _PLAIN_WITH_SPACE: re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]"),
}


def _escape(value: str, plain: frozenset[str] = _PLAIN) -> str:
    """
    Escape a field for a log line.

    Characters outside C{plain} become C{\\xNN}, one per byte of their UTF-8
    encoding (a lone surrogate from C{surrogateescape} decoding becomes the
    byte it stands for).

    @param value: The text to log.
    @param plain: The characters logged as they are.
    @return: Printable ASCII text.
    """
    needs_escape = _NEEDS_ESCAPE.get(plain)
    if needs_escape is not None:
        if needs_escape.search(value) is None:
            return value
    elif all(c in plain for c in value):
        return value
    out = []
    for c in value:
        if c in plain:
            out.append(c)
            continue
        try:
            raw = c.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = c.encode("utf-8", "surrogatepass")
        out.extend(f"\\x{b:02x}" for b in raw)
    return "".join(out)


def _field(value: str | None, plain: frozenset[str] = _PLAIN) -> str:
    """
    @return: The escaped value, or C{"-"} when it is missing or empty.
    """
    if not value:
        return "-"
    if plain is _PLAIN and _PLAIN_ONLY.fullmatch(value) is not None:
        return value  # the common case, decided by one C-speed match
    return _escape(value, plain)


#: C{%03d} of every millisecond and C{%6d} of the common elapsed times,
#: made once: indexing a tuple costs a tenth of a format with a width.
_MILLIS = tuple(f"{n:03d}" for n in range(1000))
_ELAPSED = tuple(f"{n:6d}" for n in range(1000))


def format_squid(rec: AccessRecord) -> str:
    """
    Format a record in Squid's native format.

    This is C{logformat squid %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un
    %Sh/%<a %mt}: time in seconds and milliseconds, the elapsed milliseconds
    right-aligned in 6 columns, client, result code and status, bytes sent to
    the client, method, URL, user, hierarchy code and peer, media type.
    Fields are separated by single spaces, so any space inside one is escaped.
    The media type is logged as Squid logs it: without its parameters
    (L{squeak.logformat.media_type}).

    The common line (no field empty, none needing escaping) is formatted
    first and checked afterwards, by C-speed scans of the fields' part of
    the line: a field needs escaping if it holds a character outside the
    plain ones (for ASCII text, C{isprintable} is exactly 0x20-0x7e, and a
    quote or a backslash is looked for) or a space (the line then has more
    than the 7 spaces between its 8 fields).  Any other line is formatted
    by L{_format_squid_escaped}, to the same bytes.

    @param rec: The record.
    @return: One line, without its newline.
    """
    client, code, method, url = rec.client, rec.code, rec.method, rec.url
    content_type, hierarchy, peer = rec.content_type, rec.hierarchy, rec.peer
    if ";" in content_type:
        content_type = media_type(content_type)
    if client and code and method and url and hierarchy and peer and content_type:
        status = rec.status
        # The code and the hierarchy go in concatenated with their slash:
        # that gives an exact str even for a str-valued enum member, whose
        # own __format__ ("LogTag.TCP_MISS" for a (str, Enum)) the f-string
        # would call.
        fields = (
            f"{client} {code + '/'}{status if status >= 100 else f'{status:03d}'} {rec.size} "
            f"{method} {url} {rec.user or '-'} {hierarchy + '/' + peer} {content_type}"
        )
        if (
            fields.isascii()
            and fields.isprintable()
            and '"' not in fields
            and "\\" not in fields
            and fields.count(" ") == 7
        ):
            seconds, millis = divmod(int(rec.timestamp * 1000), 1000)
            elapsed = rec.elapsed_ms
            return (
                f"{seconds}.{_MILLIS[millis]} "
                f"{_ELAPSED[elapsed] if 0 <= elapsed < 1000 else f'{elapsed:6d}'} {fields}"
            )
    return _format_squid_escaped(rec)


def _format_squid_escaped(rec: AccessRecord) -> str:
    """
    L{format_squid} for any record: every field that is empty becomes
    C{"-"} and every one that needs it is escaped.
    """
    seconds, millis = divmod(int(rec.timestamp * 1000), 1000)
    client, code, method, url = rec.client, rec.code, rec.method, rec.url
    content_type = rec.content_type
    if ";" in content_type or " " in content_type or "\t" in content_type:
        content_type = media_type(content_type)
    user, hierarchy, peer = rec.user or "-", rec.hierarchy, rec.peer
    client, code, method, url = _field(client), _field(code), _field(method), _field(url)
    user, hierarchy, peer = _field(user), _field(hierarchy), _field(peer)
    content_type = _field(content_type)
    return "%d.%03d %6d %s %s%03d %d %s %s %s %s %s" % (  # noqa: UP031
        seconds,
        millis,
        rec.elapsed_ms,
        client,
        code + "/",
        rec.status,
        rec.size,
        method,
        url,
        user,
        hierarchy + "/" + peer,
        content_type,
    )


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _clf_time(timestamp: float) -> str:
    """
    @return: C{dd/Mon/yyyy:HH:MM:SS +0000}, in UTC and independent of the
        locale (unlike C{strftime("%b")}).
    """
    t = time.gmtime(int(timestamp))
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def format_common(rec: AccessRecord) -> str:
    """
    Format a record in Apache's Common Log Format.

    This is C{%h %l %u %t "%r" %>s %b}: the size is C{"-"} when no bytes were
    sent, as CLF requires.  Inside the quoted request line spaces are kept,
    and quotes, backslashes, control and non-ASCII characters are escaped as
    C{\\xNN}.

    @param rec: The record.
    @return: One line, without its newline.
    """
    request_line = " ".join(
        _escape(part, _PLAIN_WITH_SPACE) for part in (rec.method, rec.url, rec.version) if part
    )
    size = str(rec.size) if rec.size else "-"
    return (
        f"{_field(rec.client)} - {_field(rec.user)} [{_clf_time(rec.timestamp)}] "
        f'"{request_line}" {rec.status:d} {size}'
    )


def format_combined(rec: AccessRecord) -> str:
    """
    Format a record in Apache's Combined Log Format: the common format
    followed by the quoted I{Referer} and I{User-Agent}, or C{"-"} for either
    when it is absent.

    @param rec: The record.
    @return: One line, without its newline.
    """
    referer = _field(rec.referer, _PLAIN_WITH_SPACE)
    user_agent = _field(rec.user_agent, _PLAIN_WITH_SPACE)
    return f'{format_common(rec)} "{referer}" "{user_agent}"'


#: The hand-written formatters of the presets that must be fast (the
#: compiled form of Squid's definition of C{squid} is slower, see
#: docs/operations.md).
FORMATTERS: dict[str, Callable[[AccessRecord], str]] = {
    "squid": format_squid,
    "common": format_common,
    "combined": format_combined,
}

#: Every preset name C{[access_log] format} accepts.
PRESET_NAMES = (*FORMATTERS, *PRESETS)

#: The record fields each hand-written preset needs filled.
NEEDS: dict[str, frozenset[str]] = {
    "squid": frozenset(),
    "common": frozenset(),
    "combined": frozenset({"referer", "user_agent"}),
}


def formatter(fmt: str) -> tuple[Callable[[AccessRecord], str], frozenset[str]]:
    """
    The formatter for a preset name or a Squid C{logformat} string.

    @param fmt: C{"squid"}, C{"common"}, C{"combined"}, C{"referrer"},
        C{"useragent"}, or a format string with C{%} codes.
    @return: The function from a record to a line, and the record fields
        (C{"referer"}, C{"user_agent"}) that it logs and that the proxy
        fills only when asked.
    @raise ValueError: If C{fmt} is neither (a
        L{squeak.logformat.FormatError} for a format string with a bad code).
    """
    if fmt in FORMATTERS:
        return FORMATTERS[fmt], NEEDS[fmt]
    if fmt not in PRESETS and "%" not in fmt:
        names = ", ".join(f'"{name}"' for name in PRESET_NAMES)
        raise ValueError(f"expected one of {names} or a format string with %codes, got {fmt!r}")
    compiled = compile_format(fmt)
    return compiled.line, compiled.needs
