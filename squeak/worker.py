# -*- test-case-name: tests.test_workers -*-
"""
A worker process: C{python -m squeak worker}, started by the master
(L{squeak.master.Master}), never by hand.

It reads the configuration text the master checked from its standard
input (a length line, then the text), adopts the listening sockets it
inherited (C{--listener KEY=ADDRESS@FD}), serves them, and says C{ready}
on descriptor 3.  It logs plain lines on standard output, which the master
logs with the worker's PID.

It stops gracefully (L{squeak.drain}) on C{SIGTERM} or C{SIGINT} (the
master retiring it, or stopping), or when its standard input ends (the
master is gone); a second signal stops it at once.  C{SIGHUP} is the
master's business and is ignored here; C{SIGUSR1} reopens the access log.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import ILogObserver, LogEvent, Logger, formatEvent, globalLogBeginner
from zope.interface import implementer

from squeak.config import ConfigError, parse_config
from squeak.net.accepts import WorkerAccepts
from squeak.net.listeners import ListenerKey, adopt_with

__all__ = ["read_config_text", "run"]

#: The descriptor a worker says it is ready on.
READY_FD = 3

_log = Logger(namespace="squeak.worker")


def read_config_text(fd: int = 0) -> str:
    """
    Read the configuration the master sends: its length in decimal and a
    newline, then that many bytes of UTF-8.

    @raise ValueError: If the stream ends early or is malformed.
    """
    head = b""
    while not head.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte or len(head) > 20:
            raise ValueError("no configuration from the master")
        head += byte
    size = int(head)
    data = b""
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise ValueError("the configuration from the master is cut short")
        data += more
    return data.decode("utf-8")


@implementer(ILogObserver)
class LineObserver:
    """
    Writes each log event as one plain line (the master adds the time and
    the worker's PID), a failure's traceback after it.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        level = event.get("log_level")
        name = level.name if level is not None else "info"
        # The master may be gone (its pipe closed): the worker is stopping
        # then, and has nowhere to log.
        with contextlib.suppress(OSError):
            self._out.write(f"[{event.get('log_namespace', '-')}#{name}] {text}\n")
            self._out.flush()


@implementer(IReadDescriptor)
class MasterWatch:
    """
    Watches the worker's standard input, the master's pipe: when it ends,
    the master is gone, and the worker stops gracefully.
    """

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self.gone = False

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "master-watch"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reactor.removeReader(self)
            self._master_gone()

    def connectionLost(self, reason: object) -> None:
        # A pipe whose writer closed polls as a hang-up without input: the
        # reactor removes it and reports it here, not through doRead.
        self._master_gone()

    def _master_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        _log.info("the master is gone: stopping")
        if self._reactor.running:
            self._reactor.stop()


def _parse_listeners(specs: Sequence[str]) -> dict[ListenerKey, socket.socket]:
    """
    C{KEY=ADDRESS@FD} arguments into the inherited sockets.
    """
    sockets: dict[ListenerKey, socket.socket] = {}
    for spec in specs:
        name, _, fd = spec.rpartition("@")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        sockets[ListenerKey.parse(name)] = sock
    return sockets


#: The collector's thresholds once serving (L{tune_garbage_collector}):
#: generation 0 collected after 20,000 net allocations instead of 700, the
#: older generations as Python's defaults scale them.
GC_THRESHOLDS = (20000, 50, 1000)


def tune_garbage_collector() -> None:
    """
    Prepare the cyclic garbage collector for serving; called once, when the
    process starts serving.

    Measured under load (docs/performance.md, issue 18): with Python's
    defaults the young objects of one reactor turn's requests pass the
    generation-0 threshold (700) on their own, and every few tens of
    thousands of requests a full collection walks every object of the
    process -- the configuration, the compiled rules, the cache index,
    Twisted's modules -- pausing every connection at once for 30-100 ms.

    So: collect what start-up left behind, then C{gc.freeze()} the
    survivors into the permanent generation (they live as long as the
    process and no collection needs to walk them again), and collect the
    young generation less often.  What it trades: up to about 20,000
    container objects of cyclic garbage wait longer before they are freed
    (a few MiB at most; almost all of a request's objects are freed at
    once by reference counting and never wait for the collector), and
    whatever start-up leaves in cycles and later drops stays frozen.  A
    reload builds new objects, which the collector walks as usual.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(
    config_path: str,
    listeners: Sequence[str],
    reactor: Any,
    err: TextIO,
    accepting: str | None = None,
) -> int:
    """
    Serve until stopped.

    @param config_path: The configuration file's name, for messages and
        relative paths (the text comes from the master).
    @param listeners: C{KEY=ADDRESS@FD} for each inherited socket.
    @param accepting: How to accept on them (the master's C{--accepting},
        L{squeak.net.accepts.WorkerAccepts.parse}): this worker's slot
        and generation, and with a shared accept queue the ledger that
        keeps it fair.
    @return: The exit status: 0, or 2 when the configuration cannot be
        served (one line on C{err}).
    """
    from squeak.drain import StopSignals
    from squeak.master import serve
    from squeak.service import build_service

    try:
        text = read_config_text(0)
        config = parse_config(text, config_path)
        sockets = _parse_listeners(listeners)
        if accepting is not None:
            adopt_with(WorkerAccepts.parse(reactor, accepting).adopt)
    except ConfigError as error:
        err.write(f"squeak: {error}\n")
        return 2
    except (ValueError, KeyError, OSError) as error:
        err.write(f"squeak: worker: {error}\n")
        return 2
    observer = cast(ILogObserver, LineObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        serving = serve(config, reactor, sockets, build_service)
        serving.startService()
    except ConfigError as error:
        err.write(f"squeak: {error}\n")
        return 2
    # The inherited descriptors are adopted (duplicated) by now.
    for sock in sockets.values():
        sock.close()
    os.set_blocking(0, False)
    watch = MasterWatch(reactor, 0)
    reactor.addReader(watch)

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    signals = StopSignals(reactor, stop, serving.stop_now)

    def running() -> None:
        signals.install()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.write(READY_FD, b"ready\n")
        # After telling the master, which waits for it.
        tune_garbage_collector()

    reactor.callWhenRunning(running)
    reactor.addSystemEventTrigger("before", "shutdown", serving.stopService)
    reactor.run()
    # The reactor put back the default handlers as it stopped: a late stop
    # signal from the master must not turn a clean exit into a killed one.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_IGN)
    return 0
