# -*- test-case-name: tests.test_accesslog -*-
"""
The access log: one line per transaction, in Squid's or Apache's format.

The formatters are pure functions of an L{AccessRecord}: no I/O and no clock,
so that they can be tested with tables.  L{AccessLog} is the thin file shell
around them, and L{install_reopen_signal} lets C{logrotate} ask for the file
to be reopened with C{SIGUSR1}.

Nothing here imports Twisted: the reactor is passed in, and only its
C{callFromThread} is used.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TextIO

__all__ = [
    "FORMATTERS",
    "AccessLog",
    "AccessRecord",
    "format_combined",
    "format_common",
    "format_squid",
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

    @param rec: The record.
    @return: One line, without its newline.
    """
    seconds, millis = divmod(int(rec.timestamp * 1000), 1000)
    client, code, method, url = rec.client, rec.code, rec.method, rec.url
    user, hierarchy, peer, content_type = (
        rec.user or "-",
        rec.hierarchy,
        rec.peer,
        rec.content_type,
    )
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
    return "%d.%03d %6d %s %s/%03d %d %s %s %s %s/%s %s" % (  # noqa: UP031
        seconds,
        millis,
        rec.elapsed_ms,
        client,
        code,
        rec.status,
        rec.size,
        method,
        url,
        user,
        hierarchy,
        peer,
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


FORMATTERS: dict[str, Callable[[AccessRecord], str]] = {
    "squid": format_squid,
    "common": format_common,
    "combined": format_combined,
}


class AccessLog:
    """
    Where access log lines go: a file, standard output, or nowhere.

    By default each record is written with one C{write} call and flushed at
    once, so that lines are never interleaved and none is lost by a crash.
    Under load that costs a C{write(2)} per request (about 5 % of the CPU in
    the 1 KiB pass-through profile, docs/performance.md), so the running
    service calls L{start_buffering}: lines are then collected and written
    together every C{interval} seconds or once C{lines} records are waiting,
    and always before the file is reopened or closed.  A crash can then lose
    at most that much.

    @ivar path: The configured path: C{"-"} for standard output, C{""} when
        the log is off.
    @ivar fmt: The name of the format, a key of L{FORMATTERS}.
    """

    def __init__(self, path: str, fmt: str) -> None:
        """
        Open the log.

        @param path: A file to append to (its parent directories are
            created), C{"-"} for the process's standard output, or C{""} to
            log nothing.
        @param fmt: A key of L{FORMATTERS}.
        @raise ValueError: If C{fmt} is not a known format.
        @raise OSError: If the file cannot be opened.
        """
        try:
            self._format = FORMATTERS[fmt]
        except KeyError:
            known = ", ".join(sorted(FORMATTERS))
            raise ValueError(
                f"unknown access log format {fmt!r} (expected one of {known})"
            ) from None
        self.path = path
        self.fmt = fmt
        #: Whether lines carry the request's Referer and User-Agent (only
        #: the combined format does; the others need not look them up).
        self.wants_agent = fmt == "combined"
        self._file: TextIO | None = None
        self._reactor: Any = None
        self._interval = 0.5
        self._limit = 512
        self._records: list[AccessRecord] = []
        self._flush_call: Any = None
        if path == "-":
            self._file = sys.__stdout__
        elif path:
            self._file = self._open()

    def _open(self) -> TextIO:
        """
        Open C{self.path} for appending, creating its parent directories.
        """
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        return open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)

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
        return self._file is not None and self.path not in ("", "-")

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
        leaves the log writing where it was.  Standard output and a disabled
        or closed log are left alone.

        @raise OSError: If the file cannot be opened.
        """
        if not self._owns_file():
            return
        self.flush()
        new = self._open()
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
        # Only if still ours: a reload may have installed the handler of the
        # configuration that replaced this one, which must stay.
        if signal.getsignal(signal.SIGUSR1) is _usr1_received:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL if previous is None else previous)

    return uninstall
