# -*- test-case-name: tests.test_accesslog -*-
"""
The access log's I/O: L{AccessLog} writes the lines of L{squeak.logline}'s
formatters (pure functions of an L{AccessRecord}) to a file, standard
output or syslog, buffered per reactor turn, and L{install_reopen_signal}
lets C{logrotate} ask for the file to be reopened with C{SIGUSR1}.

Nothing here imports Twisted: the reactor is passed in, and only its
C{callFromThread} is used.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TextIO

from squeak.accessrecord import AccessRecord
from squeak.logline import formatter
from squeak.values import syslog_priority

__all__ = [
    "AccessLog",
    "AccessRecord",
    "SyslogWriter",
    "install_reopen_signal",
]


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
        # Only if still ours: a reload may have installed the handler of the
        # configuration that replaced this one, which must stay.
        if signal.getsignal(signal.SIGUSR1) is _usr1_received:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL if previous is None else previous)

    return uninstall
