# -*- test-case-name: tests.test_logformat -*-
"""
Squid's C{logformat} language, compiled once into a line formatter.

C{[access_log] format} may be a custom format string written with Squid's
C{%} codes (Squid's C{src/cf.data.pre}, C{NAME: logformat})::

    % [encoding] [-] [[0]width] [{arg}] code [{arg}]

L{compile_format} parses such a string once, at configuration load, and
returns a plain function from an L{squeak.accessrecord.AccessRecord} to a line.
The function is generated Python source: one expression per code, joined,
so that a line costs one call and no per-code dispatch.  Only constants made
here are ever put into that source (literal text goes in through C{repr}),
never text from the format string.

How each code is written follows Squid's C{Format::assemble}
(C{src/format/Format.cc}):

  - a missing or empty value is C{-}, never padded;
  - numbers are zero-padded to the width with a C{0} flag, and never cut;
  - strings are encoded, then cut to C{.max}, then padded to the width
    (left-aligned with C{-});
  - the encoding is the code's C{"}, C{[}, C{#}, C{/} or C{'} flag, else the
    one opened by a C{"} or C{[} in the literal text before it (so
    C{"%\\{Referer\\}>h"} is quoted-string encoded), else the code's own:
    raw for most, "pass-through URL encoding" (RFC 1738 unsafe characters
    %-encoded, C{%} kept) for C{%rm}, C{%>ru}, C{%rp} and the headers.

One deliberate difference: where Squid writes a raw value byte for byte,
squeak still %-encodes control characters (C{\\x00-\\x1f}, C{\\x7f}) and
non-ASCII bytes, so that no value can end a line or forge another one.

This module is pure: it imports no Twisted and never reads the clock.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from squeak.values import quote

if TYPE_CHECKING:
    from squeak.accessrecord import AccessRecord

__all__ = [
    "CODES",
    "PRESETS",
    "CompiledFormat",
    "FormatError",
    "compile_format",
    "media_type",
]


class FormatError(ValueError):
    """
    A format string cannot be compiled.

    @ivar code: The offending code as written (e.g. C{"%dt"}), or the text
        at fault.
    @ivar column: The 1-based column of C{code} in the format string.
    """

    def __init__(self, problem: str, code: str, column: int) -> None:
        super().__init__(f"{problem}: {quote(code)} at column {column}")
        self.code = code
        self.column = column


# --- Encodings -------------------------------------------------------------------

#: Encoding names, as Squid's C{Format::Quoting}.
NONE, QUOTES, MIMEBLOB, URL, SHELL, RAW, PASS_THROUGH = (
    "none",
    "quotes",
    "mimeblob",
    "url",
    "shell",
    "raw",
    "pass-through",
)

#: The encoding flag characters after C{%}.
_ENCODING_FLAGS = {'"': QUOTES, "'": RAW, "[": MIMEBLOB, "#": URL, "/": SHELL}

# Bytes that would break a line or are not ASCII: %-encoded even by "raw".
_UNSAFE_FOR_A_LINE = re.compile(r"[^\x20-\x7e]")
# RFC 1738 unsafe characters as Squid's rfc1738_do_escape lists them, plus
# anything at or below space and anything not ASCII (lib/rfc1738.c).
# What stays: letters, digits and ! $ & ( ) * + , - . / : ; = ? @ _ (and % for
# the pass-through variant); DEL is escaped too, unlike Squid.
_RFC1738_UNSAFE = re.compile(r"[^\x21\x24\x26\x28-\x3b\x3d\x3f-\x5a\x5f\x61-\x7a]")
_RFC1738_UNSAFE_KEEP_PERCENT = re.compile(r"[^\x21\x24-\x26\x28-\x3b\x3d\x3f-\x5a\x5f\x61-\x7a]")
# Squid's QuoteMimeBlob: CR and LF as \r and \n, backslash doubled, controls,
# DEL and above, %, [ and ] as %xx (lower-case hex); space kept.
_MIMEBLOB_SPECIAL = re.compile(r"[^\x20-\x24\x26-\x5a\x5e-\x7e]")
# Squid's log_quoted_string: " and \ backslash-escaped, CR LF TAB as \r \n \t.
_QUOTED_SPECIAL = re.compile(r'["\\\r\n\t]')
# Squid's strwordquote: " and \ backslash-escaped, CR LF as \r \n.
_SHELL_SPECIAL = re.compile(r'["\\\r\n]')

_BACKSLASHED = {"\r": "\\r", "\n": "\\n", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _octets(c: str) -> bytes:
    """
    The bytes a character of a logged value stands for: itself for the
    latin-1 range the proxy decodes header bytes into, else its UTF-8 form.
    """
    if ord(c) < 256:
        return bytes((ord(c),))
    return c.encode("utf-8", "surrogateescape" if "\udc80" <= c <= "\udcff" else "surrogatepass")


def _percent_upper(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in _octets(match.group()))


def _percent_lower(match: re.Match[str]) -> str:
    return "".join(f"%{b:02x}" for b in _octets(match.group()))


def _line_safe(value: str) -> str:
    """
    As-is, except that control characters and non-ASCII bytes are
    %-encoded (upper-case hex, as Squid's URL encoding writes them).
    """
    if _UNSAFE_FOR_A_LINE.search(value) is None:
        return value
    return _UNSAFE_FOR_A_LINE.sub(_percent_upper, value)


def encode_raw(value: str) -> str:
    """Squid's raw (C{'}) encoding, kept to one printable ASCII line."""
    return _line_safe(value)


def encode_url(value: str) -> str:
    """
    Squid's URL encoding (C{#}, C{rfc1738_escape}): everything but letters,
    digits and RFC 1738's safe, extra and reserved characters becomes
    C{%XX}, the percent sign included.
    """
    if _RFC1738_UNSAFE.search(value) is None:
        return value
    return _RFC1738_UNSAFE.sub(_percent_upper, value)


def encode_pass_through(value: str) -> str:
    """
    Squid's "pass-through URL encoding" (C{rfc1738_escape_unescaped}): as
    L{encode_url}, but a percent sign is left as it is, so an already
    encoded URL is not encoded twice.
    """
    if _RFC1738_UNSAFE_KEEP_PERCENT.search(value) is None:
        return value
    return _RFC1738_UNSAFE_KEEP_PERCENT.sub(_percent_upper, value)


def _mimeblob_one(match: re.Match[str]) -> str:
    c = match.group()
    if c == "\r":
        return "\\r"
    if c == "\n":
        return "\\n"
    if c == "\\":
        return "\\\\"
    return _percent_lower(match)


def encode_mimeblob(value: str) -> str:
    """
    Squid's custom encoding (C{[}, C{QuoteMimeBlob}): CR and LF as C{\\r}
    and C{\\n}, a backslash doubled, C{%}, C{[}, C{]}, control characters
    and bytes outside 32-126 as C{%xx}; spaces are kept.
    """
    if _MIMEBLOB_SPECIAL.search(value) is None:
        return value
    return _MIMEBLOB_SPECIAL.sub(_mimeblob_one, value)


def _backslashed(match: re.Match[str]) -> str:
    return _BACKSLASHED[match.group()]


def encode_quoted(value: str) -> str:
    """
    Squid's quoted-string encoding (C{"}, C{log_quoted_string}): C{"} and
    C{\\} backslash-escaped, CR, LF and TAB as C{\\r}, C{\\n}, C{\\t}.
    """
    return _line_safe(_QUOTED_SPECIAL.sub(_backslashed, value))


def encode_shell(value: str) -> str:
    """
    Squid's shell-like encoding (C{/}, C{strwordquote}): C{"} and C{\\}
    backslash-escaped, CR and LF as C{\\r} and C{\\n}, and the whole value
    in double quotes when it contains a space.
    """
    out = _line_safe(_SHELL_SPECIAL.sub(_backslashed, value))
    return f'"{out}"' if " " in value else out


_ENCODERS: dict[str, Callable[[str], str]] = {
    NONE: encode_raw,
    RAW: encode_raw,
    QUOTES: encode_quoted,
    MIMEBLOB: encode_mimeblob,
    URL: encode_url,
    SHELL: encode_shell,
    PASS_THROUGH: encode_pass_through,
}


# --- Values ----------------------------------------------------------------------

_MEDIA_TYPE = re.compile(r"[^;\t ]*")


def media_type(content_type: str) -> str:
    """
    The media type as Squid logs it for C{%mt}: the I{Content-Type} value
    up to its first C{;}, tab or space, parameters dropped
    (C{HttpReply::hdrCacheInit}: C{strcspn(str, ";\\t ")}), so
    C{text/html; charset=utf-8} is logged as C{text/html}.

    @return: The media type, or C{""} when there is none.
    """
    if ";" in content_type or " " in content_type or "\t" in content_type:
        match = _MEDIA_TYPE.match(content_type)
        return match.group() if match else ""
    return content_type


def _content_type_value(content_type: str) -> str | None:
    """The I{Content-Type} as recorded, or L{None} when none was sent."""
    return None if content_type in ("", "-") else content_type


def _peer(peer: str) -> str | None:
    return None if peer in ("", "-") else peer


def _server_name(hierarchy: str, url: str, method: str) -> str | None:
    """
    Squid's C{%<A}: the name of the server or peer the request went to,
    that is the URL's host when a server was contacted.
    """
    if hierarchy in ("", "HIER_NONE", "-"):
        return None
    if method == "CONNECT":
        host, _, _ = url.rpartition(":")
        return host.strip("[]") or None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _url_path(url: str, method: str) -> str | None:
    """
    Squid's C{%rp}: the URL's path and query, without scheme and host;
    none for C{CONNECT}'s authority form.
    """
    if method == "CONNECT":
        return None
    if url.startswith("/"):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _version_number(version: str) -> str:
    """C{%rv}: C{HTTP/1.1} is logged as C{1.1}."""
    return version[5:] if version.startswith("HTTP/") else version


def _strftime(spec: str, local: bool) -> Callable[[float], str]:
    """
    C{%tl} and C{%tg}: the time in C{spec}'s C{strftime} format, local or
    UTC.  Month and day names are the C locale's, as Squid writes them.
    """
    convert = time.localtime if local else time.gmtime

    def render(timestamp: float) -> str:
        return time.strftime(spec, convert(int(timestamp)))

    return render


# --- Codes -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Code:
    """
    One format code.

    @ivar expr: A Python expression over C{rec} giving the value: an
        C{int} for numbers, else a C{str} or L{None}.
    @ivar numeric: Whether the value is a number (never encoded nor cut).
    @ivar encoding: The code's own default encoding.
    @ivar arg: C{"none"}, C{"optional"} or C{"required"}.
    @ivar doc: What it logs, for the documentation and error messages.
    @ivar msec: Whether C{.max} means decimals of a millisecond count.
    @ivar subsecond: Whether C{.max} means the number of digits of the
        second (C{%tu}); the expression is then made at compile time, as
        for the times C{%tl} and C{%tg}, whose strftime format is given.
    """

    expr: str
    doc: str
    numeric: bool = False
    encoding: str = NONE
    arg: str = "none"
    msec: bool = False
    subsecond: bool = False


#: The supported codes (without C{%}), as Squid names them.  C{http::} may
#: prefix any of them, as in Squid.
CODES: dict[str, _Code] = {
    "ts": _Code("int(rec.timestamp)", "seconds since the epoch", numeric=True),
    "tu": _Code(
        "_subsecond(rec.timestamp)", "sub-second time (milliseconds)", numeric=True, subsecond=True
    ),
    "tr": _Code("rec.elapsed_ms", "response time (milliseconds)", numeric=True, msec=True),
    "tl": _Code("_time(rec.timestamp)", "local time; optional strftime argument", arg="optional"),
    "tg": _Code("_time(rec.timestamp)", "UTC time; optional strftime argument", arg="optional"),
    ">a": _Code("rec.client", "client IP address"),
    ">A": _Code("rec.client", "client FQDN (squeak logs the address, as Squid without log_fqdn)"),
    ">p": _Code("(rec.client_port or None)", "client source port (- when unknown)", numeric=True),
    ">la": _Code("rec.local_host", "local IP address the client connected to"),
    ">lp": _Code("(rec.local_port or None)", "local port the client connected to", numeric=True),
    "la": _Code("rec.local_host", "local listening IP address"),
    "lp": _Code("(rec.local_port or None)", "local listening port", numeric=True),
    "<a": _Code("_peer(rec.peer)", "server or peer IP address"),
    "<A": _Code("_server_name(rec.hierarchy, rec.url, rec.method)", "server or peer name"),
    "Ss": _Code("rec.code", "Squid request status (TCP_MISS etc.)"),
    "Sh": _Code("rec.hierarchy", "Squid hierarchy status (HIER_DIRECT etc.)"),
    ">Hs": _Code("rec.status", "HTTP status code sent to the client", numeric=True),
    "Hs": _Code("rec.status", "old name of >Hs", numeric=True),
    "<st": _Code("rec.size", "bytes sent to the client, headers included", numeric=True),
    "rm": _Code("rec.method", "request method", encoding=PASS_THROUGH),
    ">rm": _Code("rec.method", "request method from the client", encoding=PASS_THROUGH),
    "ru": _Code("rec.url", "request URL"),
    ">ru": _Code("rec.url", "request URL from the client", encoding=PASS_THROUGH),
    "rp": _Code(
        "_url_path(rec.url, rec.method)", "request URL path and query", encoding=PASS_THROUGH
    ),
    ">rp": _Code(
        "_url_path(rec.url, rec.method)", "request URL path from the client", encoding=PASS_THROUGH
    ),
    "rv": _Code("_version_number(rec.version)", "request protocol version (1.1)"),
    ">rv": _Code("_version_number(rec.version)", "request protocol version from the client"),
    "un": _Code("rec.user", "user name (any available)"),
    "ul": _Code("rec.user", "user name from authentication"),
    "ue": _Code("None", "user name from an external ACL helper (squeak has none: always -)"),
    "mt": _Code("_media_type(rec.content_type)", "MIME content type, without parameters"),
    ">h": _Code(
        "",
        "request header: only Referer and User-Agent are recorded",
        encoding=PASS_THROUGH,
        arg="required",
    ),
    "<h": _Code(
        "", "reply header: only Content-Type is recorded", encoding=PASS_THROUGH, arg="required"
    ),
}

#: The request headers a record carries, by lower-case name: the value's
#: expression and the record field the proxy fills only on request.
_REQUEST_HEADERS = {
    "referer": ("rec.referer", "referer"),
    "user-agent": ("rec.user_agent", "user_agent"),
}
_REPLY_HEADERS = {"content-type": ("_content_type_value(rec.content_type)", "")}

_DEFAULT_TIME_FORMATS = {
    # Squid's defaults in Format::assemble: the local time with its offset,
    # the UTC time without one (cf.data.pre shows %z for both; the code wins).
    "tl": "%d/%b/%Y:%H:%M:%S %z",
    "tg": "%d/%b/%Y:%H:%M:%S",
}

# Longest first, so that ">Hs" wins over "Hs" and ">la" over ">a"... (Squid
# scans its token tables by decreasing size for the same reason: bug 3310).
_CODE_NAMES = sorted(CODES, key=len, reverse=True)

#: Squid's built-in formats that squeak writes from their Squid definitions
#: (the squid, common and combined presets have hand-written formatters in
#: L{squeak.accesslog}).
PRESETS = {
    "referrer": "%ts.%03tu %>a %{Referer}>h %ru",
    "useragent": '%>a [%tl] "%{User-Agent}>h"',
}


# --- Parsing ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """A parsed C{%} code with its modifiers."""

    name: str
    encoding: str
    left: bool
    zero: bool
    width_min: int | None
    width_max: int | None
    arg: str | None
    text: str
    column: int


_MODIFIERS = re.compile(r"(?P<left>-)?(?P<zero>0)?(?P<min>[0-9]+)?(?:\.(?P<max>[0-9]+))?")


def _parse(spec: str) -> list[str | _Token]:
    """
    Split a format string into literal text and tokens.

    @raise FormatError: On an unknown code, a missing or unexpected
        argument, or an unterminated C{\\{}.
    """
    parts: list[str | _Token] = []
    context = NONE  # the encoding a " or [ in the literal text opened
    i = 0
    literal: list[str] = []
    while i < len(spec):
        c = spec[i]
        if c != "%":
            # Squid's Token::parse: a " toggles quoted-string encoding for
            # the codes that follow, [ opens its custom encoding, ] closes it.
            if c == '"':
                context = QUOTES if context == NONE else (NONE if context == QUOTES else context)
            elif c == "[" and context == NONE:
                context = MIMEBLOB
            elif c == "]" and context == MIMEBLOB:
                context = NONE
            literal.append(c)
            i += 1
            continue
        start = i
        i += 1
        if spec.startswith("%", i):
            literal.append("%")
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        encoding = _ENCODING_FLAGS.get(spec[i : i + 1])
        if encoding is not None:
            i += 1
        modifiers = _MODIFIERS.match(spec, i)
        assert modifiers is not None  # the pattern matches the empty string
        i = modifiers.end()
        arg = None
        if spec.startswith("{", i):
            arg, i = _argument(spec, i, start)
        name = next((n for n in _CODE_NAMES if spec.startswith(n, i)), None)
        if name is None and spec.startswith("http::", i):
            i += len("http::")
            name = next((n for n in _CODE_NAMES if spec.startswith(n, i)), None)
        if name is None:
            end = i
            while end < len(spec) and not spec[end].isspace() and spec[end] not in "%\"'[]":
                end += 1
            text = spec[start : max(end, i + 1)]
            raise FormatError("unknown or unsupported format code", text, start + 1)
        i += len(name)
        if spec.startswith("{", i) and arg is None:
            arg, i = _argument(spec, i, start)
        text = spec[start:i]
        code = CODES[name]
        if arg is not None and code.arg == "none":
            raise FormatError("this format code takes no {argument}", text, start + 1)
        if arg is None and code.arg == "required":
            raise FormatError("this format code needs a {header name}", text, start + 1)
        parts.append(
            _Token(
                name=name,
                encoding=encoding or (context if context != NONE else code.encoding),
                left=modifiers.group("left") is not None,
                zero=modifiers.group("zero") is not None,
                width_min=int(modifiers.group("min")) if modifiers.group("min") else None,
                width_max=int(modifiers.group("max")) if modifiers.group("max") else None,
                arg=arg,
                text=text,
                column=start + 1,
            )
        )
    if literal:
        parts.append("".join(literal))
    return parts


def _argument(spec: str, i: int, start: int) -> tuple[str, int]:
    """Read a C{\\{...\\}} argument at C{i}; return it and the index after."""
    end = spec.find("}", i)
    if end < 0:
        raise FormatError("unterminated {argument}", spec[start:], start + 1)
    return spec[i + 1 : end], end + 1


# --- Compiling -------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledFormat:
    """
    A compiled format.

    @ivar spec: The format string (or preset name) it was compiled from.
    @ivar line: The formatter: a record in, one line out, without its
        newline.
    @ivar needs: The record fields the proxy fills only when a format asks
        (C{"referer"}, C{"user_agent"}).
    """

    spec: str
    line: Callable[[AccessRecord], str]
    needs: frozenset[str]

    def __call__(self, rec: AccessRecord) -> str:
        """Format C{rec} as one line, without its newline."""
        return self.line(rec)


def _pad(value: str, token: _Token) -> str:
    """Apply C{%-W.M}: cut a string to M, pad to W (C{%*.*s} in Squid)."""
    if token.width_max is not None:
        value = value[: token.width_max]
    if token.width_min:
        value = value.ljust(token.width_min) if token.left else value.rjust(token.width_min)
    return value


def _number_emitter(token: _Token, code: _Code) -> Callable[[int | None], str]:
    """
    How a numeric code is written: C{%0*d} zero-padding when the C{0} flag
    is given, then the same space padding as strings; a missing number is
    C{-}.  C{%.Ntu} gives N digits of the second; C{%.Ntr} milliseconds
    with N decimals (squeak records whole milliseconds, so they are zeros).
    """
    width = token.width_min or 0
    zero = token.zero
    no_cut = _no_cut(token)
    if code.msec and token.width_max is not None:
        # Squid's "%0*ld.%0*ld": the integer part zero-padded to what the
        # width leaves after the point and the decimals.
        precision = token.width_max
        int_width = width - precision - 1 if zero and width - precision - 1 >= 0 else 0
        tail = "." + "0" * precision

        def msec(value: int | None) -> str:
            if value is None:
                return "-"
            return _pad(f"{value:0{int_width}d}{tail}", no_cut)

        return msec

    digits = f"%0{width}d" if zero and width else "%d"

    def number(value: int | None) -> str:
        if value is None:
            return "-"
        return _pad(digits % value, no_cut)

    return number


def _no_cut(token: _Token) -> _Token:
    """The token without C{.max}: numbers are never cut."""
    return _Token(
        token.name,
        token.encoding,
        token.left,
        token.zero,
        token.width_min,
        None,
        token.arg,
        token.text,
        token.column,
    )


def _string_emitter(token: _Token) -> Callable[[str | None], str]:
    """How a string code is written: encoded, cut and padded; C{-} if empty."""
    encode = _ENCODERS[token.encoding]
    if token.width_min is None and token.width_max is None:
        if encode is encode_raw:

            def raw(value: str | None) -> str:
                if not value:
                    return "-"
                if _UNSAFE_FOR_A_LINE.search(value) is None:
                    return value
                return _line_safe(value)

            return raw

        def encoded(value: str | None) -> str:
            return encode(value) if value else "-"

        return encoded

    def padded(value: str | None) -> str:
        if not value:
            return "-"
        return _pad(encode(value), token)

    return padded


def _inline(token: _Token, code: _Code, expr: str, n: int, namespace: dict[str, object]) -> str:
    """
    The Python expression that writes one token, for the generated line
    function.  The common cases are written inline, saving a call per field:
    a number that is always there (C{'%03d' % ...}), and a raw string with
    no width that needs no escaping.  The others call an emitter put into
    C{namespace} as C{_eN}.
    """
    always_there = "None" not in expr
    if code.numeric and always_there and not (code.msec and token.width_max is not None):
        width = token.width_min or 0
        if not width:
            spec = "%d"
        elif token.zero:
            spec = f"%0{width}d"
        else:
            spec = f"%-{width}d" if token.left else f"%{width}d"
        return f"{spec!r} % ({expr})"
    if code.numeric:
        namespace[f"_e{n}"] = _number_emitter(token, code)
        return f"_e{n}({expr})"
    emitter = _string_emitter(token)
    namespace[f"_e{n}"] = emitter
    if token.encoding in (NONE, RAW) and token.width_min is None and token.width_max is None:
        # The value itself when it is there and safe; else the emitter ("-"
        # or the escaped value).
        return f"(_v{n} if (_v{n} := {expr}) and _unsafe(_v{n}) is None else _e{n}(_v{n}))"
    return f"_e{n}({expr})"


@functools.lru_cache(maxsize=32)
def compile_format(spec: str) -> CompiledFormat:
    """
    Compile a Squid C{logformat} string (or the name of one of L{PRESETS}).

    Compiled formats are cached: the same string is compiled once, when the
    configuration is loaded, and the service reuses it.

    @param spec: The format string, e.g. C{"%ts.%03tu %>a %Ss/%03>Hs %ru"}.
    @return: The formatter.
    @raise FormatError: If C{spec} has an unknown code, a bad argument, or
        no code at all.
    """
    source = PRESETS.get(spec, spec)
    parts = _parse(source)
    if not any(isinstance(part, _Token) for part in parts):
        raise FormatError("a format needs at least one %code", spec, 1)
    namespace: dict[str, object] = {
        "_peer": _peer,
        "_server_name": _server_name,
        "_url_path": _url_path,
        "_version_number": _version_number,
        "_media_type": media_type,
        "_content_type_value": _content_type_value,
    }
    pieces: list[str] = []
    needs: set[str] = set()
    for n, part in enumerate(parts):
        if isinstance(part, str):
            pieces.append(repr(part))
            continue
        code = CODES[part.name]
        expr = code.expr
        if part.name in ("tl", "tg"):
            fmt = part.arg or _DEFAULT_TIME_FORMATS[part.name]
            namespace[f"_time{n}"] = _strftime(fmt, local=part.name == "tl")
            expr = f"_time{n}(rec.timestamp)"
        elif code.subsecond:
            # Squid's divisor: milliseconds, or .N digits of the second.
            digits = part.width_max if part.width_max else 3
            scale = 10 ** min(digits, 6)
            expr = f"(int(rec.timestamp * {scale}) % {scale})"
        elif part.name in (">h", "<h"):
            assert part.arg is not None
            table = _REQUEST_HEADERS if part.name == ">h" else _REPLY_HEADERS
            name = part.arg.strip().lower()
            if name not in table:
                known = " and ".join(h.title() for h in table)
                raise FormatError(
                    f"squeak records only the {known} header here", part.text, part.column
                )
            expr, field = table[name]
            if field:
                needs.add(field)
        pieces.append(_inline(part, code, expr, n, namespace))
    source_code = "def line(rec):\n    return ''.join((" + ", ".join(pieces) + ",))\n"
    namespace["_unsafe"] = _UNSAFE_FOR_A_LINE.search
    exec(compile(source_code, f"<logformat {spec!r}>", "exec"), namespace)
    line = namespace["line"]
    assert callable(line)
    return CompiledFormat(spec, line, frozenset(needs))
