# -*- test-case-name: tests.test_accesslog -*-
"""
The access log: one line per transaction, in Squid's or Apache's format, or
in a Squid C{logformat} string compiled by L{squeak.logformat}.

The formatters are pure functions of an L{AccessRecord}: no I/O and no clock,
so that they can be tested with tables.  The C{squid}, C{common} and
C{combined} presets are written by hand because they must be fast (the
compiled form of Squid's definition of C{squid} costs about 1.3 times as
much).  L{AccessLog} is the thin shell around them that writes to a file,
standard output or syslog, and L{install_reopen_signal} lets C{logrotate}
ask for the file to be reopened with C{SIGUSR1}.

Nothing here imports Twisted: the reactor is passed in, and only its
C{callFromThread} is used.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TextIO

from squeak.logformat import PRESETS, compile_format, media_type

__all__ = [
    "FORMATTERS",
    "NEEDS",
    "PRESET_NAMES",
    "AccessLog",
    "AccessRecord",
    "format_combined",
    "format_common",
    "format_squid",
    "formatter",
    "install_reopen_signal",
]


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class AccessRecord:
    """
    What is logged about one transaction.

    @ivar timestamp: When the transaction ended, in seconds since the epoch.
    @ivar elapsed_ms: How long it took, in milliseconds.
    @ivar client: The client's IP address.
    @ivar code: Squid's result code, e.g. C{"TCP_MISS"}, C{"TCP_DENIED"},
        C{"TCP_MISS_ABORTED"} or C{"NONE"}.
    @ivar status: The status sent to the client, or 0 when none was sent.
    @ivar size: Bytes sent to the client, headers included.
    @ivar method: The request method.
    @ivar url: The request URL (C{host:port} for C{CONNECT}).
    @ivar user: The authenticated user name, or L{None}.
    @ivar hierarchy: Squid's hierarchy code, e.g. C{"HIER_DIRECT"} or
        C{"HIER_NONE"}.
    @ivar peer: The address of the server the request went to, or C{"-"}.
    @ivar content_type: The response's media type, or C{"-"}.
    @ivar referer: The request's I{Referer}, or L{None}.
    @ivar user_agent: The request's I{User-Agent}, or L{None}.
    @ivar version: The request's HTTP version, e.g. C{"HTTP/1.1"}.
    @ivar client_port: The client's source port, or 0 when unknown
        (C{%>p}).
    @ivar local_host: The local address the client connected to, or C{""}
        when unknown (C{%>la}, C{%la}).
    @ivar local_port: The local port the client connected to, or 0 when
        unknown (C{%>lp}, C{%lp}).
    """

    timestamp: float
    elapsed_ms: int
    client: str
    code: str
    status: int
    size: int
    method: str
    url: str
    user: str | None
    hierarchy: str
    peer: str
    content_type: str
    referer: str | None
    user_agent: str | None
    version: str
    # Appended with defaults: the proxy builds records positionally with the
    # fields above, and only custom formats log these.
    client_port: int = 0
    local_host: str = ""
    local_port: int = 0


# Characters logged as themselves; everything else (controls, space where it
# would split a field, quote, backslash, non-ASCII) becomes \xNN, so a hostile
# URL or header can neither forge a line nor shift a field.
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

    @param rec: The record.
    @return: One line, without its newline.
    """
    seconds, millis = divmod(int(rec.timestamp * 1000), 1000)
    client, code, method, url = rec.client, rec.code, rec.method, rec.url
    content_type = rec.content_type
    if ";" in content_type or " " in content_type or "\t" in content_type:
        content_type = media_type(content_type)
    user, hierarchy, peer = rec.user or "-", rec.hierarchy, rec.peer
    if not (
        client
        and code
        and method
        and url
        and hierarchy
        and peer
        and content_type
        # The common line: no field is empty and none needs escaping,
        # decided by one C-speed match over them all.
        and _PLAIN_ONLY.fullmatch(
            client + code + method + url + user + hierarchy + peer + content_type
        )
    ):
        client, code, method, url = _field(client), _field(code), _field(method), _field(url)
        user, hierarchy, peer = _field(user), _field(hierarchy), _field(peer)
        content_type = _field(content_type)
    # One %-format: about half the cost of the same f-string with specs.
    # The code and the hierarchy go in concatenated with their slash: that
    # gives an exact str even for a str-valued enum member, whose own
    # __str__ ("LogTag.TCP_MISS" for a (str, Enum)) %s would call.
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


#: Syslog facilities by name (RFC 5424 section 6.2.1), as Squid's
#: C{access_log syslog:facility.priority} and C{syslog.h} name them.
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip

#: Syslog severities by name (RFC 5424 section 6.2.1).
SYSLOG_PRIORITIES = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
    "debug": 7,
}  # fmt: skip


def syslog_priority(text: str) -> int:
    """
    Parse Squid's C{facility.priority} (C{"local4.info"}; the priority may
    be left out and is then C{info}, as Squid's default for C{access_log
    syslog} is C{LOG_LOCAL4 | LOG_INFO}).

    @return: The syslog PRI value, C{facility * 8 + severity}.
    @raise ValueError: If either name is unknown.
    """
    facility, _, priority = text.strip().lower().partition(".")
    if facility.startswith("log_"):
        facility = facility[4:]
    if priority.startswith("log_"):
        priority = priority[4:]
    if facility not in SYSLOG_FACILITIES:
        raise ValueError(
            f"unknown syslog facility {facility!r} (expected e.g. local4, daemon, user)"
        )
    severity = SYSLOG_PRIORITIES.get(priority or "info")
    if severity is None:
        raise ValueError(
            f"unknown syslog priority {priority!r} (expected e.g. info, notice, debug)"
        )
    return SYSLOG_FACILITIES[facility] * 8 + severity


class SyslogWriter:
    """
    A file-like sink that sends each line to the local syslog daemon as one
    datagram, C{<PRI>tag[pid]: line}, the way C{syslog(3)} does over
    C{/dev/log}: the daemon adds the time stamp and host name.

    Written with the stdlib C{socket} module rather than
    L{logging.handlers.SysLogHandler}, whose errors go to
    C{Handler.handleError} (a traceback on standard error) instead of to the
    caller; C{syslog(3)} cannot be pointed at another socket, which the
    tests need.
    """

    def __init__(self, address: str, priority: int, tag: str) -> None:
        """
        Connect to the syslog socket.

        @param address: The path of the daemon's Unix datagram socket,
            normally C{/dev/log}.
        @param priority: The PRI value (L{syslog_priority}).
        @param tag: The program name that the daemon files the lines under.
        @raise OSError: If the socket cannot be reached.
        """
        self.address = address
        self._prefix = f"<{priority}>{tag}[{os.getpid()}]: ".encode("ascii", "replace")
        self._socket = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def write(self, text: str) -> int:
        """
        Send each line of C{text} as one message.  If the daemon went away
        (restarted), reconnect once and resend.

        @raise OSError: If a line cannot be sent.
        """
        prefix = self._prefix
        for line in text.split("\n"):
            if not line:
                continue
            message = prefix + line.encode("utf-8", "backslashreplace")
            try:
                self._socket.send(message)
            except (ConnectionRefusedError, ConnectionResetError, FileNotFoundError):
                self._socket.close()
                self._socket = self._connect()
                self._socket.send(message)
        return len(text)

    def flush(self) -> None:
        """Nothing is held back: every line was sent by L{write}."""

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()


class AccessLog:
    """
    Where access log lines go: a file, standard output, syslog, or nowhere.

    By default each record is written with one C{write} call and flushed at
    once, so that lines are never interleaved and none is lost by a crash.
    Under load that costs a C{write(2)} per request (about 5 % of the CPU in
    the 1 KiB pass-through profile, docs/performance.md), so the running
    service calls L{start_buffering}: lines are then collected and written
    together every C{interval} seconds or once C{lines} records are waiting,
    and always before the file is reopened or closed.  A crash can then lose
    at most that much.

    @ivar path: The configured path: C{"-"} for standard output,
        C{"syslog"} for the syslog daemon, C{""} when the log is off.
    @ivar fmt: The format: a preset name or a Squid C{logformat} string.
    """

    def __init__(
        self,
        path: str,
        fmt: str,
        *,
        syslog_facility: str = "local4.info",
        syslog_tag: str = "squeak",
        syslog_address: str = "/dev/log",
    ) -> None:
        """
        Open the log.

        @param path: A file to append to (its parent directories are
            created), C{"-"} for the process's standard output, C{"syslog"}
            for the local syslog daemon, or C{""} to log nothing.
        @param fmt: A preset name (a key of L{FORMATTERS} or
            L{squeak.logformat.PRESETS}) or a Squid C{logformat} string.
        @param syslog_facility: Squid's C{facility.priority} for syslog.
        @param syslog_tag: The program name syslog files the lines under.
        @param syslog_address: The syslog daemon's socket.
        @raise ValueError: If C{fmt} is not a known format or a valid
            format string, or C{syslog_facility} is unknown.
        @raise OSError: If the file or the syslog socket cannot be opened.
        """
        self._format, needs = formatter(fmt)
        self.path = path
        self.fmt = fmt
        #: Whether lines carry the request's Referer and User-Agent (only
        #: formats that log them do; the others need not look them up).
        self.wants_agent = bool(needs)
        self._file: TextIO | SyslogWriter | None = None
        self._reactor: Any = None
        self._interval = 0.5
        self._limit = 512
        self._records: list[AccessRecord] = []
        self._flush_call: Any = None
        if path == "-":
            self._file = sys.__stdout__
        elif path == "syslog":
            self._file = SyslogWriter(syslog_address, syslog_priority(syslog_facility), syslog_tag)
        elif path:
            self._file = self._open()

    def _open(self, mode: int | None = None) -> TextIO:
        """
        Open C{self.path} for appending, creating its parent directories.

        @param mode: The permissions to give the file if this creates it,
            whatever the umask (a reopened log keeps the first file's mode:
            twistd sets a umask of 077 once daemonised, after the first file
            was opened under the operator's umask); L{None} for the usual
            C{0666 & ~umask}.
        """
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        if mode is None:
            fd = os.open(self.path, flags, 0o666)
        else:
            try:
                fd = os.open(self.path, flags | os.O_EXCL, mode)
            except FileExistsError:
                fd = os.open(self.path, flags & ~os.O_CREAT)
            else:
                try:
                    os.fchmod(fd, mode)  # the umask may have taken bits away
                except OSError:
                    os.close(fd)
                    raise
        return open(fd, "a", encoding="utf-8", errors="backslashreplace", buffering=1)

    @property
    def is_open(self) -> bool:
        """
        Whether lines are being written (not off, not closed).
        """
        return self._file is not None

    def _owns_file(self) -> bool:
        """
        @return: Whether the log has a file of its own (not standard output).
        """
        return self._file is not None and self.path not in ("", "-", "syslog")

    def write(self, rec: AccessRecord) -> None:
        """
        Log one record.  Does nothing when the log is off or closed.

        @param rec: The record.
        @raise OSError: If the line cannot be written.
        """
        if self._file is None:
            return
        if self._reactor is None:
            self._file.write(self._format(rec) + "\n")
            self._file.flush()
            return
        # Formatted at the flush, all together: the same lines cost less
        # CPU formatted in one loop than one between each two requests.
        records = self._records
        records.append(rec)
        if len(records) >= self._limit:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self._reactor.callLater(self._interval, self._flush_due)

    def start_buffering(
        self, reactor: _ReactorTime, *, interval: float = 0.5, lines: int = 512
    ) -> None:
        """
        Collect records and write their lines together, every C{interval}
        seconds or once C{lines} records wait, whichever comes first.

        @param reactor: Provides C{callLater} for the timer.
        """
        self._reactor = reactor
        self._interval = interval
        self._limit = lines

    def flush(self) -> None:
        """
        Write the lines collected so far (if buffering) in one call.

        @raise OSError: If they cannot be written.
        """
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        records, self._records = self._records, []
        if records and self._file is not None:
            fmt = self._format
            self._file.write("\n".join([fmt(rec) for rec in records]) + "\n")
            self._file.flush()

    def _flush_due(self) -> None:
        self._flush_call = None
        self.flush()

    def reopen(self) -> None:
        """
        Reopen the file at C{self.path}, for C{logrotate}: once the old file
        has been renamed, new lines go to a new file at the same path.  The
        new file is opened before the old one is closed, so that a failure
        leaves the log writing where it was.  The new file gets the old
        one's permissions.  Standard output, syslog and a disabled or closed
        log are left alone.

        @raise OSError: If the file cannot be opened.
        """
        if not self._owns_file():
            return
        self.flush()
        mode = None
        if self._file is not None and not isinstance(self._file, SyslogWriter):
            try:
                mode = stat.S_IMODE(os.fstat(self._file.fileno()).st_mode)
            except (OSError, ValueError):
                mode = None
        new = self._open(mode)
        old, self._file = self._file, new
        if old is not None:
            old.close()

    def close(self) -> None:
        """
        Close the file (standard output is never closed), writing any lines
        still collected; later writes do nothing.
        """
        self.flush()
        old, self._file = self._file, None
        if old is not None and self.path not in ("", "-"):
            old.close()


class _ReactorTime(Protocol):
    """
    The part of C{IReactorTime} used here.
    """

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run C{f} after C{delay} seconds."""


class _ReactorFromThreads(Protocol):
    """
    The part of C{IReactorFromThreads} used here.
    """

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run C{f} in the reactor thread."""


def install_reopen_signal(
    access_log: AccessLog, reactor: _ReactorFromThreads
) -> Callable[[], None]:
    """
    Reopen C{access_log} when the process receives C{SIGUSR1}.

    The signal handler itself does no I/O: it only asks the reactor, with
    C{callFromThread} (safe to call from a signal handler), to run
    L{AccessLog.reopen} in the reactor thread, between the writes.  Must be
    called from the main thread, as Python requires of C{signal.signal}.

    @param access_log: The log to reopen.
    @param reactor: The reactor that runs the reopen.
    @return: A function that puts back the handler that was there before.
    """

    def _usr1_received(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(access_log.reopen)

    previous = signal.signal(signal.SIGUSR1, _usr1_received)

    def uninstall() -> None:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL if previous is None else previous)

    return uninstall
