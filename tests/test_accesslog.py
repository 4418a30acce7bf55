# -*- test-case-name: tests.test_accesslog -*-
"""
Tests for L{squeak.accesslog}: the hand-written line formats, the log file,
its reopening on C{SIGUSR1} (and its permissions then), custom formats and
syslog.
"""

from __future__ import annotations

import enum
import os
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from squeak.accesslog import AccessLog, AccessRecord, install_reopen_signal
from squeak.logformat import FormatError
from squeak.logline import (
    FORMATTERS,
    _format_squid_escaped,
    format_combined,
    format_common,
    format_squid,
)

MISS = AccessRecord(
    timestamp=784111777.123,
    elapsed_ms=42,
    client="192.0.2.7",
    code="TCP_MISS",
    status=200,
    size=1234,
    method="GET",
    url="http://o.test/a?b=c",
    user=None,
    hierarchy="HIER_DIRECT",
    peer="198.51.100.1",
    content_type="text/html",
    referer="http://ref.test/",
    user_agent="curl/8.5.0",
    version="HTTP/1.1",
)

DENIED = AccessRecord(
    timestamp=1700000000.0,
    elapsed_ms=0,
    client="2001:db8::1",
    code="TCP_DENIED",
    status=403,
    size=0,
    method="CONNECT",
    url="o.test:443",
    user="alice",
    hierarchy="HIER_NONE",
    peer="-",
    content_type="-",
    referer=None,
    user_agent=None,
    version="HTTP/1.0",
)

ABORTED = replace(
    MISS,
    timestamp=1700000000.9999,
    elapsed_ms=1234567,
    code="TCP_MISS_ABORTED",
    status=0,
    size=0,
    content_type="",
    peer="-",
)

HOSTILE = replace(
    MISS,
    url='http://o.test/"\\é',
    user="bob smith",
    user_agent='evil\n192.0.2.9 - - [01/Jan/2000:00:00:00 +0000] "GET / HTTP/1.1" 200 1',
    referer='a"b',
    content_type="text/html; charset=utf-8",
)

CASES = [  # (why, formatter, record, expected line)
    (
        "Squid native: %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt",
        format_squid,
        MISS,
        "784111777.123     42 192.0.2.7 TCP_MISS/200 1234 GET http://o.test/a?b=c - "
        "HIER_DIRECT/198.51.100.1 text/html",
    ),
    (
        "Squid native: user logged, no peer, no content type, whole seconds",
        format_squid,
        DENIED,
        "1700000000.000      0 2001:db8::1 TCP_DENIED/403 0 CONNECT o.test:443 alice "
        "HIER_NONE/- -",
    ),
    (
        "Squid native: no status is 000, milliseconds truncate, wide elapsed not cut",
        format_squid,
        ABORTED,
        "1700000000.999 1234567 192.0.2.7 TCP_MISS_ABORTED/000 0 GET http://o.test/a?b=c - "
        "HIER_DIRECT/- -",
    ),
    (
        "Squid native: spaces, quotes, backslashes and non-ASCII escaped as \\xNN; %mt is "
        "the media type without parameters, as Squid's HttpReply::hdrCacheInit keeps it",
        format_squid,
        HOSTILE,
        "784111777.123     42 192.0.2.7 TCP_MISS/200 1234 GET http://o.test/\\x22\\x5c\\xc3\\xa9 "
        "bob\\x20smith HIER_DIRECT/198.51.100.1 text/html",
    ),
    (
        'Apache common: %h %l %u %t "%r" %>s %b, UTC',
        format_common,
        MISS,
        '192.0.2.7 - - [06/Nov/1994:08:49:37 +0000] "GET http://o.test/a?b=c HTTP/1.1" 200 1234',
    ),
    (
        "Apache common: user logged, %b is - for no bytes",
        format_common,
        DENIED,
        '2001:db8::1 - alice [14/Nov/2023:22:13:20 +0000] "CONNECT o.test:443 HTTP/1.0" 403 -',
    ),
    (
        "Apache common: escaped user and request line",
        format_common,
        HOSTILE,
        "192.0.2.7 - bob\\x20smith [06/Nov/1994:08:49:37 +0000] "
        '"GET http://o.test/\\x22\\x5c\\xc3\\xa9 HTTP/1.1" 200 1234',
    ),
    (
        "Apache combined: common plus quoted referer and user agent",
        format_combined,
        MISS,
        '192.0.2.7 - - [06/Nov/1994:08:49:37 +0000] "GET http://o.test/a?b=c HTTP/1.1" 200 1234 '
        '"http://ref.test/" "curl/8.5.0"',
    ),
    (
        "Apache combined: absent referer and user agent are -",
        format_combined,
        DENIED,
        '2001:db8::1 - alice [14/Nov/2023:22:13:20 +0000] "CONNECT o.test:443 HTTP/1.0" 403 - '
        '"-" "-"',
    ),
    (
        "Apache combined: a newline in the user agent cannot forge a second line",
        format_combined,
        HOSTILE,
        "192.0.2.7 - bob\\x20smith [06/Nov/1994:08:49:37 +0000] "
        '"GET http://o.test/\\x22\\x5c\\xc3\\xa9 HTTP/1.1" 200 1234 "a\\x22b" '
        '"evil\\x0a192.0.2.9 - - [01/Jan/2000:00:00:00 +0000] \\x22GET / HTTP/1.1\\x22 200 1"',
    ),
]


class FormatterTests(SynchronousTestCase):
    """
    Tests for L{format_squid}, L{format_common} and L{format_combined}.
    """

    def test_format_table(self) -> None:
        """
        Each row's record formats to exactly the expected line.
        """
        wrong = [(why, got, want) for why, fmt, rec, want in CASES if (got := fmt(rec)) != want]
        self.assertEqual(wrong, [])

    def test_squid_common_line_as_escaped(self) -> None:
        """
        L{format_squid}'s line for a record it formats without escaping
        (checking the line afterwards) is the line of the general path that
        escapes field by field, whatever one field holds: a space or a tab
        (which must be escaped, not taken for a separator), an empty value,
        a quote, parameters of the media type, a status or elapsed time at
        the edges of their padding.
        """
        variants: dict[str, list[Any]] = {
            "timestamp": [0.0, 0.0009, 1.9999, 1700000000.5],
            "elapsed_ms": [-1, 0, 5, 999, 1000, 99999, 1234567],
            "client": ["", " ", "a b", "-", '"'],
            "code": ["", "TCP MISS", "TCP_MISS/", "TCP\tMISS"],
            "status": [-5, 0, 7, 99, 100, 200, 599, 1000],
            "size": [0, 1, 10**12],
            "method": ["", "G T", "GET\\"],
            "url": ["", "http://o.test/a b", "http://o.test/\x7f", "http://o.test/\u00e9"],
            "user": [None, "", "a b", "al ice", "-", "bob"],
            "hierarchy": ["", "HIER DIRECT", "HIER/DIRECT"],
            "peer": ["", "-", "a b", "198.51.100.1"],
            "content_type": [
                "",
                "-",
                "text/html;charset=utf-8",
                "text/html; charset=utf-8",
                ";x",
                "text/html ",
                "text/html\tx",
                'text/"html"',
                " text/html",
            ],
        }
        records = [MISS, DENIED, ABORTED, HOSTILE]
        records += [
            replace(base, **{name: value})
            for base in (MISS, DENIED)
            for name, values in variants.items()
            for value in values
        ]
        wrong = [
            (rec, got, want)
            for rec in records
            if (got := format_squid(rec)) != (want := _format_squid_escaped(rec))
        ]
        self.assertEqual(wrong, [])
        self.assertGreater(len(records), 100)

    def test_formatters_registry(self) -> None:
        """
        L{FORMATTERS} maps the configured format names to the formatters.
        """
        self.assertEqual(
            FORMATTERS,
            {"squid": format_squid, "common": format_common, "combined": format_combined},
        )

    def test_lines_are_single_printable_ascii(self) -> None:
        """
        Whatever the fields hold, every format gives one line of printable
        ASCII, and the Squid format always has exactly ten fields.
        """
        nasty = replace(
            HOSTILE,
            url="http://o.test/\r\n\x00\x7f\u2028\udcff",
            method="G T",
            client="\t",
            user="\x1b[31m",
            code="",
        )
        wrong = []
        for name, fmt in FORMATTERS.items():
            for rec in (MISS, DENIED, ABORTED, HOSTILE, nasty):
                line = fmt(rec)
                if not (line.isascii() and line.isprintable()):
                    wrong.append((name, line))
                if name == "squid" and len(line.split()) != 10:
                    wrong.append((name, line))
        self.assertEqual(wrong, [])

    def test_enum_codes_log_their_values(self) -> None:
        """
        A result or hierarchy code given as a str-valued enum member (as the
        proxy's log tags are) is logged as its value, whether the enum is a
        C{StrEnum} or a C{(str, Enum)}, whose C{str()} is C{"Tag.TCP_MISS"}.
        """

        class Plain(str, enum.Enum):  # noqa: UP042 - the case under test
            TCP_MISS = "TCP_MISS"
            HIER_DIRECT = "HIER_DIRECT"

        class Strict(enum.StrEnum):
            TCP_MISS = "TCP_MISS"
            HIER_DIRECT = "HIER_DIRECT"

        lines = {
            format_squid(replace(MISS, code=tags.TCP_MISS, hierarchy=tags.HIER_DIRECT))
            for tags in (Plain, Strict)
        }
        self.assertEqual(lines, {format_squid(MISS)})

    def test_records_are_slotted(self) -> None:
        """
        L{AccessRecord} is slotted: one is built per request, so it carries
        no per-instance dict (and, for the same reason, is not frozen).
        """
        self.assertFalse(hasattr(MISS, "__dict__"))
        with self.assertRaises(AttributeError):
            MISS.unknown_field = 1  # type: ignore[attr-defined]


class AccessLogTests(SynchronousTestCase):
    """
    Tests for L{AccessLog}.
    """

    def _path(self) -> str:
        """
        @return: A log path inside directories that do not exist yet.
        """
        return os.path.join(self.mktemp(), "sub", "access.log")

    def _read(self, path: str) -> list[str]:
        """
        @return: The lines of the file at C{path}.
        """
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    def test_writes_formatted_lines(self) -> None:
        """
        Each record becomes one line in the chosen format, flushed at once,
        in a file whose parent directories were created.
        """
        path = self._path()
        log = AccessLog(path, "combined")
        self.addCleanup(log.close)
        log.write(MISS)
        self.assertEqual(self._read(path), [format_combined(MISS)])
        log.write(DENIED)
        self.assertEqual(self._read(path), [format_combined(MISS), format_combined(DENIED)])

    def test_appends(self) -> None:
        """
        An existing log is appended to, not truncated.
        """
        path = self._path()
        first = AccessLog(path, "squid")
        first.write(MISS)
        first.close()
        second = AccessLog(path, "squid")
        self.addCleanup(second.close)
        second.write(DENIED)
        self.assertEqual(self._read(path), [format_squid(MISS), format_squid(DENIED)])

    def test_reopen_after_rename(self) -> None:
        """
        After logrotate renames the file, L{AccessLog.reopen} sends new lines
        to a new file at the configured path; the renamed file keeps the old
        lines.
        """
        path = self._path()
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        log.write(MISS)
        os.rename(path, path + ".1")
        log.write(DENIED)  # still goes to the renamed file
        log.reopen()
        log.write(ABORTED)
        self.assertEqual(self._read(path + ".1"), [format_squid(MISS), format_squid(DENIED)])
        self.assertEqual(self._read(path), [format_squid(ABORTED)])

    def test_reopen_failure_keeps_old_file(self) -> None:
        """
        If the path cannot be reopened, the log keeps writing to the file it
        had.
        """
        path = self._path()
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        os.rename(path, path + ".1")
        os.mkdir(path)  # a directory where the file should be
        self.assertRaises(OSError, log.reopen)
        log.write(MISS)
        self.assertEqual(self._read(path + ".1"), [format_squid(MISS)])

    def test_disabled(self) -> None:
        """
        The path C{""} turns the log off: writing, reopening and closing do
        nothing.
        """
        log = AccessLog("", "squid")
        log.write(MISS)
        log.reopen()
        log.close()
        log.write(MISS)

    def test_stdout(self) -> None:
        """
        The path C{"-"} writes to the process's real standard output, which
        reopening and closing leave open.
        """
        written: list[str] = []

        class FakeStdout:
            closed = False

            def write(self, text: str) -> int:
                written.append(text)
                return len(text)

            def flush(self) -> None:
                written.append("<flush>")

            def close(self) -> None:
                self.closed = True

        fake = FakeStdout()
        self.patch(sys, "__stdout__", fake)
        log = AccessLog("-", "common")
        log.write(MISS)
        log.reopen()
        log.close()
        log.write(DENIED)
        self.assertEqual(written, [format_common(MISS) + "\n", "<flush>"])
        self.assertFalse(fake.closed)

    def test_write_after_close_is_ignored(self) -> None:
        """
        Lines written after L{AccessLog.close} are dropped, and the file is
        closed.
        """
        path = self._path()
        log = AccessLog(path, "squid")
        log.write(MISS)
        log.close()
        log.write(DENIED)
        log.reopen()
        log.close()
        self.assertEqual(self._read(path), [format_squid(MISS)])

    def test_unknown_format(self) -> None:
        """
        An unknown format name is refused, naming the known ones.
        """
        e = self.assertRaises(ValueError, AccessLog, "", "apache")
        self.assertIn('"squid", "common", "combined", "referrer", "useragent"', str(e))


class FakeReactor:
    """
    Records C{callFromThread} calls instead of running them.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.append(f)


class ReopenSignalTests(TestCase):
    """
    Tests for L{install_reopen_signal}, using the real reactor for the
    signal's delivery.
    """

    timeout = 30

    def _install(self, log: AccessLog, reactor: Any) -> Callable[[], None]:
        """
        Install the handler, uninstalling it at the end of the test.
        """
        uninstall = install_reopen_signal(log, reactor)
        self.addCleanup(uninstall)
        return uninstall

    def test_handler_defers_reopen_to_reactor(self) -> None:
        """
        The signal handler does no I/O itself: it hands L{AccessLog.reopen} to
        the reactor's C{callFromThread}.
        """
        log = AccessLog("", "squid")
        reactor = FakeReactor()
        self._install(log, reactor)
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler)
        handler(signal.SIGUSR1, None)
        self.assertEqual(reactor.calls, [log.reopen])

    def test_uninstall_restores_previous_handler(self) -> None:
        """
        The returned function puts back the handler that was there before.
        """
        seen: list[int] = []

        def previous(signum: int, frame: object) -> None:
            seen.append(signum)

        old = signal.signal(signal.SIGUSR1, previous)
        self.addCleanup(signal.signal, signal.SIGUSR1, old)
        uninstall = install_reopen_signal(AccessLog("", "squid"), FakeReactor())
        self.assertIsNot(signal.getsignal(signal.SIGUSR1), previous)
        uninstall()
        self.assertIs(signal.getsignal(signal.SIGUSR1), previous)

    def test_sigusr1_reopens_after_rename(self) -> defer.Deferred[None]:
        """
        After the log file is renamed, C{SIGUSR1} sent to the process makes the
        reactor reopen the log, so that new lines go to a new file at the
        configured path.
        """
        from twisted.internet import reactor as _reactor

        reactor: Any = _reactor
        path = os.path.join(self.mktemp(), "access.log")
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        self._install(log, reactor)
        log.write(MISS)
        os.rename(path, path + ".1")
        os.kill(os.getpid(), signal.SIGUSR1)

        reopened: defer.Deferred[None] = defer.Deferred()
        deadline = reactor.seconds() + 2.0

        def poll() -> None:
            if os.path.exists(path):
                reopened.callback(None)
            elif reactor.seconds() > deadline:
                reopened.errback(AssertionError("log not reopened within 2 s of SIGUSR1"))
            else:
                reactor.callLater(0.01, poll)

        def check(_: None) -> None:
            log.write(DENIED)
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), format_squid(DENIED) + "\n")
            with open(path + ".1", encoding="utf-8") as f:
                self.assertEqual(f.read(), format_squid(MISS) + "\n")

        poll()
        return reopened.addCallback(check)

    def test_sigusr1_reopened_file_keeps_the_mode(self) -> defer.Deferred[None]:
        """
        A file reopened on C{SIGUSR1} gets the first file's permissions even
        when the umask has changed since: twistd sets a umask of 077 once it
        has daemonised, after the first file was opened with the operator's
        umask, and the rotated log used to become 0600 (unreadable to the
        log analysers that read it as another user).
        """
        from twisted.internet import reactor as _reactor

        reactor: Any = _reactor
        path = os.path.join(self.mktemp(), "access.log")
        old_umask = os.umask(0o022)
        self.addCleanup(os.umask, old_umask)
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        os.chmod(path, 0o640)  # what the operator chose for the first file
        self._install(log, reactor)
        log.write(MISS)
        os.rename(path, path + ".1")
        os.umask(0o077)  # twistd's daemon umask
        os.kill(os.getpid(), signal.SIGUSR1)

        reopened: defer.Deferred[None] = defer.Deferred()
        deadline = reactor.seconds() + 2.0

        def poll() -> None:
            if os.path.exists(path):
                reopened.callback(None)
            elif reactor.seconds() > deadline:
                reopened.errback(AssertionError("log not reopened within 2 s of SIGUSR1"))
            else:
                reactor.callLater(0.01, poll)

        def check(_: None) -> None:
            log.write(DENIED)
            self.assertEqual(
                (oct(stat.S_IMODE(os.stat(path).st_mode)), self._lines(path)),
                (oct(0o640), [format_squid(DENIED)]),
            )

        poll()
        return reopened.addCallback(check)

    def _lines(self, path: str) -> list[str]:
        """
        @return: The lines of the file at C{path}.
        """
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()


class ReopenModeTests(SynchronousTestCase):
    """
    L{AccessLog.reopen} and the file's permissions.
    """

    def test_first_file_follows_the_umask(self) -> None:
        """
        The first file is created with C{0666 & ~umask}, as any program's.
        """
        path = os.path.join(self.mktemp(), "access.log")
        old_umask = os.umask(0o027)
        self.addCleanup(os.umask, old_umask)
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        self.assertEqual(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o640))

    def test_reopen_onto_an_existing_file_keeps_its_mode(self) -> None:
        """
        When a file is already at the path at reopen (logrotate's
        C{create 0600} made it), it is appended to with its own permissions.
        """
        path = os.path.join(self.mktemp(), "access.log")
        os.makedirs(os.path.dirname(path))
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        os.rename(path, path + ".1")
        with open(path, "w") as f:
            f.write("x\n")
        os.chmod(path, 0o600)
        log.reopen()
        log.write(MISS)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(
            (oct(stat.S_IMODE(os.stat(path).st_mode)), lines),
            (oct(0o600), ["x", format_squid(MISS)]),
        )


class CustomFormatTests(SynchronousTestCase):
    """
    L{AccessLog} with Squid's presets and custom logformat strings.
    """

    def test_custom_format_lines(self) -> None:
        """
        A custom format string is compiled and each record written with it.
        """
        path = os.path.join(self.mktemp(), "access.log")
        log = AccessLog(path, "%>a %Ss/%03>Hs %mt")
        self.addCleanup(log.close)
        log.write(HOSTILE)
        log.write(DENIED)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(
                f.read().splitlines(),
                ["192.0.2.7 TCP_MISS/200 text/html", "2001:db8::1 TCP_DENIED/403 -"],
            )

    def test_wants_agent_only_when_logged(self) -> None:
        """
        The proxy looks up Referer and User-Agent only for formats that log
        one of them.
        """
        self.assertEqual(
            [
                AccessLog("", fmt).wants_agent
                for fmt in ("squid", "common", "combined", "referrer", "useragent", "%ru")
            ],
            [False, False, True, True, True, False],
        )

    def test_bad_format_string(self) -> None:
        """
        A format string with an unknown code is refused, naming the code.
        """
        e = self.assertRaises(FormatError, AccessLog, "", "%ts %dt")
        self.assertEqual(e.code, "%dt")


class SyslogTests(SynchronousTestCase):
    """
    C{path = "syslog"}: one datagram per line to the syslog socket.  The
    test binds its own Unix datagram socket and passes its path as the
    syslog address, so no syslog daemon is needed.
    """

    def _listen(self) -> tuple[socket.socket, str]:
        """
        Bind a Unix datagram socket standing in for C{/dev/log}.
        """
        if not hasattr(socket, "AF_UNIX"):
            raise SkipTest("no AF_UNIX sockets on this platform")
        directory = tempfile.mkdtemp(prefix="sq-")  # short: sun_path is 108 bytes
        self.addCleanup(os.rmdir, directory)
        address = os.path.join(directory, "log")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(address)
        self.addCleanup(os.unlink, address)
        self.addCleanup(server.close)
        server.settimeout(2)
        return server, address

    def test_lines_are_datagrams(self) -> None:
        """
        Each record is one message, C{<PRI>tag[pid]: line}, with Squid's
        default C{local4.info} (PRI 166) unless configured.
        """
        server, address = self._listen()
        log = AccessLog("syslog", "squid", syslog_address=address)
        self.addCleanup(log.close)
        log.write(MISS)
        log.write(DENIED)
        pid = os.getpid()
        self.assertEqual(
            [server.recv(65536), server.recv(65536)],
            [
                f"<166>squeak[{pid}]: {format_squid(MISS)}".encode(),
                f"<166>squeak[{pid}]: {format_squid(DENIED)}".encode(),
            ],
        )

    def test_facility_and_tag(self) -> None:
        """
        C{syslog_facility} and C{syslog_tag} set the PRI value and the tag:
        C{daemon.notice} is 3 * 8 + 5 = 29.
        """
        server, address = self._listen()
        log = AccessLog(
            "syslog",
            "%Ss",
            syslog_facility="daemon.notice",
            syslog_tag="proxy",
            syslog_address=address,
        )
        self.addCleanup(log.close)
        log.write(MISS)
        self.assertEqual(server.recv(65536), f"<29>proxy[{os.getpid()}]: TCP_MISS".encode())

    def test_buffered_lines_are_still_one_message_each(self) -> None:
        """
        Lines collected by buffering go out as one datagram each.
        """
        server, address = self._listen()
        log = AccessLog("syslog", "%Ss", syslog_address=address)
        self.addCleanup(log.close)
        log.start_buffering(Clock(), lines=2)
        log.write(MISS)
        log.write(DENIED)
        prefix = f"<166>squeak[{os.getpid()}]: ".encode()
        self.assertEqual(
            [server.recv(65536), server.recv(65536)],
            [prefix + b"TCP_MISS", prefix + b"TCP_DENIED"],
        )

    def test_reconnects_after_the_daemon_restarts(self) -> None:
        """
        When the syslog daemon's socket is recreated (a restart), the next
        line reconnects to it instead of being lost.
        """
        server, address = self._listen()
        log = AccessLog("syslog", "%Ss", syslog_address=address)
        self.addCleanup(log.close)
        server.close()
        os.unlink(address)
        restarted = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        restarted.bind(address)
        self.addCleanup(restarted.close)
        restarted.settimeout(2)
        log.write(MISS)
        self.assertEqual(restarted.recv(65536), f"<166>squeak[{os.getpid()}]: TCP_MISS".encode())

    def test_no_syslog_socket(self) -> None:
        """
        Without a syslog socket at the address, opening the log fails as an
        unwritable file does, so start-up stops.
        """
        self.assertRaises(OSError, AccessLog, "syslog", "squid", syslog_address=self.mktemp())

    def test_reopen_and_close(self) -> None:
        """
        SIGUSR1's reopen leaves syslog alone; close closes the socket.
        """
        server, address = self._listen()
        log = AccessLog("syslog", "%Ss", syslog_address=address)
        log.reopen()
        log.write(MISS)
        log.close()
        log.write(DENIED)
        self.assertEqual(server.recv(65536), f"<166>squeak[{os.getpid()}]: TCP_MISS".encode())
        server.setblocking(False)
        self.assertRaises(BlockingIOError, server.recv, 65536)


class BufferedAccessLogTests(SynchronousTestCase):
    """
    With L{AccessLog.start_buffering}, lines are written together: after
    C{interval} seconds, at C{lines} records, and before a reopen or close.
    """

    def _log(self, lines: int = 512) -> tuple[AccessLog, str, Any]:
        from twisted.internet.task import Clock

        path = os.path.join(self.mktemp(), "access.log")
        clock = Clock()
        log = AccessLog(path, "squid")
        self.addCleanup(log.close)
        log.start_buffering(clock, interval=0.5, lines=lines)
        return log, path, clock

    def _read(self, path: str) -> list[str]:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    def test_flushed_after_the_interval(self) -> None:
        """
        Lines wait until the interval has passed, then go out in order; no
        timer is left behind.
        """
        log, path, clock = self._log()
        log.write(MISS)
        log.write(DENIED)
        self.assertEqual(self._read(path), [])
        clock.advance(0.5)
        self.assertEqual(self._read(path), [format_squid(MISS), format_squid(DENIED)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_flushed_at_the_size_limit(self) -> None:
        """
        Once C{lines} records wait they are written at once.
        """
        log, path, clock = self._log(lines=2)
        log.write(MISS)
        self.assertEqual(self._read(path), [])
        log.write(MISS)
        self.assertEqual(len(self._read(path)), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_flushed_at_reopen_and_close(self) -> None:
        """
        A reopen writes waiting lines to the old file first; close writes the
        rest and cancels the timer.
        """
        log, path, clock = self._log()
        log.write(MISS)
        os.rename(path, path + ".1")
        log.reopen()
        self.assertEqual(self._read(path + ".1"), [format_squid(MISS)])
        log.write(DENIED)
        log.close()
        self.assertEqual(self._read(path), [format_squid(DENIED)])
        self.assertEqual(clock.getDelayedCalls(), [])
