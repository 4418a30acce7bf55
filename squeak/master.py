# -*- test-case-name: tests.test_workers -*-
"""
The process that owns the listening sockets, and what serves behind them.

Two shapes, one life cycle:

  - L{SingleProcess} (C{proxy.workers = 1}): the process binds the
    listeners and serves them itself, through one L{Serving} at a time;
  - L{Master} (C{proxy.workers} above 1): the process binds the listeners,
    serves no traffic, and runs that many worker processes
    (L{squeak.worker}), which inherit the sockets and adopt them.

Both keep the listening sockets open for as long as they run, so that
whatever serves behind them can be replaced without a connection being
refused or reset: connections that arrive meanwhile wait in the socket's
queue.  C{SIGHUP} reloads (L{Supervisor.reload}): the file is read and
checked again, and a bad one is logged in the one-line form and changes
nothing; a good one gets its listeners (bound anew where the file adds
some), then new servers on them, and once those serve, the old ones stop
accepting, finish their work for at most C{timeouts.shutdown_lifetime}
seconds, and go.  C{SIGTERM} or C{SIGINT} stops the same way, and a second
one stops at once (L{squeak.drain}).

How a worker is started (L{Master}): C{python -m squeak worker} with
  - file descriptor 0: a pipe from the master that carries the checked
    configuration text, so that the worker runs exactly what the master
    checked, and then stays open: its end tells the worker the master is
    gone;
  - 1 and 2: pipes whose lines the master logs, prefixed with the worker's
    PID;
  - 3: a pipe on which the worker says C{ready} once it serves;
  - 4 onwards: the listening sockets, named on the command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from typing_extensions import override

from squeak.config import Config, ConfigError, load_config_and_text
from squeak.drain import Serving, StopSignals
from squeak.net.accepts import AcceptLedger
from squeak.net.channel import ClientChannel
from squeak.net.listeners import BoundListeners, ListenerKey, describe, listener_keys
from squeak.notify import notify
from squeak.stats.table import SlotAllocator, StatsTable

__all__ = ["Master", "SingleProcess", "Supervisor", "read_config", "serve", "sweep_cache"]

#: Seconds new workers have to say they serve before a reload gives up on
#: them (and keeps the old ones).
READY_TIMEOUT = 60.0

#: Restart back-off: the first delay, the longest, and how long a worker
#: must have run for its exit not to count as a failure in a row.
BACKOFF_FIRST = 0.5
BACKOFF_LONGEST = 30.0
BACKOFF_STABLE = 10.0

#: Seconds a stopping worker may take beyond C{shutdown_lifetime} before
#: it is killed.
KILL_MARGIN = 10.0


def read_config(path: str) -> tuple[Config, str]:
    """
    Read and check the configuration file.

    @return: The configuration and the text it was parsed from (which the
        workers parse again, so that they run what was checked).
    @raise ConfigError: As L{squeak.config.load_config}.
    """
    return load_config_and_text(path)


def sweep_cache(config: Config) -> int:
    """
    Sweep the disk cache of what a crash left, before anything serves
    (L{squeak.cache.facade.sweep_disk_cache}), saying so when it deleted
    something.

    @return: How many files were deleted.
    """
    from squeak.cache.facade import sweep_disk_cache

    swept = sweep_disk_cache(config.cache)
    if swept:
        Supervisor._log.info(
            "cache: deleted {count} files a crash left in {directory}",
            count=swept,
            directory=config.cache.dir,
        )
    return swept


def serve(
    config: Config,
    reactor: Any,
    sockets: Mapping[ListenerKey, Any],
    build: Callable[..., Any],
) -> Serving:
    """
    Build what serves C{config} on C{sockets}.

    @param build: L{squeak.service.build_service}, passed in so that this
        module does not import the whole proxy.
    """
    # Process-wide: a process serves one configuration at a time, and a
    # reload in a single process switches every new response.
    ClientChannel.identity_field = (
        b"X-Squeak-Worker: %d" % os.getpid() if config.proxy.worker_header else b""
    )
    from squeak.cache.facade import share_between_processes

    share_between_processes(config.proxy.workers > 1)
    return Serving(build(config, reactor, sockets), config.timeouts.shutdown_lifetime)


class Supervisor(Service):
    """
    The common part of L{SingleProcess} and L{Master}: the configuration
    file, the bound listeners, the reload and stop signals.
    """

    _log = Logger()

    def __init__(
        self, reactor: Any, path: str | None, config: Config, text: str, bound: BoundListeners
    ) -> None:
        """
        @param path: The configuration file (L{None}: the embedded
            defaults, which a reload keeps).
        @param config: Its configuration, checked.
        @param text: Its text.
        @param bound: Its listeners, bound.
        """
        self.reactor = reactor
        self.path = path
        self.config = config
        self.text = text
        self.bound = bound
        self.stopping = False
        self._reloading = False
        self._reload_again = False
        self.reloads = 0
        self.signals = StopSignals(reactor, self._stop_gracefully, self.stop_now)
        #: Further checks of a configuration before it is served (the TLS
        #: listener's certificate and key); raises L{ConfigError}.
        self.validate: Callable[[Config], object] = lambda config: None
        self.reactor.addSystemEventTrigger("before", "shutdown", notify, "STOPPING=1")

    # -- the life cycle ----------------------------------------------------

    @override
    def startService(self) -> None:
        cast(Any, super()).startService()
        self.start_serving()
        self.reactor.callWhenRunning(self._install_signals)
        self.reactor.callWhenRunning(notify, f"READY=1\nMAINPID={os.getpid()}")

    def _install_signals(self) -> None:
        """
        Once the reactor runs (it installs its own handlers as it starts):
        HUP reloads, TERM and INT stop gracefully, then at once.
        """
        self.signals.install()
        signal.signal(signal.SIGHUP, self._hangup)

    def _hangup(self, number: int, frame: FrameType | None) -> None:
        # In a signal handler: only hand over to the reactor.
        self.reactor.callFromThread(self.reload)

    def _stop_gracefully(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def start_serving(self) -> None:
        """
        Start serving the current configuration (subclasses).
        """
        raise NotImplementedError

    def stop_now(self) -> None:
        """
        Cut what is still being served (a second stop signal).
        """
        raise NotImplementedError

    # -- reloading ---------------------------------------------------------

    def reload(self) -> None:
        """
        Read the file again; serve it if it is good, else say why and keep
        the running configuration.  A reload asked for during another runs
        after it.
        """
        if self.stopping:
            return
        if self._reloading:
            self._reload_again = True
            return
        if self.path is None:
            self._log.info("reload: no configuration file (embedded defaults); nothing to do")
            return
        try:
            config, text = read_config(self.path)
            self.check_reload(config)
            self.validate(config)
        except ConfigError as error:
            self._log.error(
                "squeak: {error} (reload refused; the running configuration stays)",
                error=str(error),
            )
            return
        try:
            dropped = self.bound.update(listener_keys(config), config.source, self.copies(config))
        except ConfigError as error:
            self._log.error(
                "squeak: {error} (reload refused; the running configuration stays)",
                error=str(error),
            )
            return
        self._reloading = True
        self._log.info("reload: serving {path}", path=self.path)
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        switching = self.switch(config, text)

        def switched(ok: bool) -> None:
            if ok:
                self.config, self.text = config, text
                self.reloads += 1
                self._log.info("reload done ({count})", count=self.reloads)
                for socks in dropped.values():
                    for sock in socks:
                        sock.close()
            else:
                # Back to the old listeners: what was dropped is taken
                # back, and what was bound for the new file is closed.
                self.bound.restore(dropped)
                old = listener_keys(self.config)
                unused = self.bound.update(old, self.config.source, self.copies(self.config))
                for socks in unused.values():
                    for sock in socks:
                        sock.close()
            notify("READY=1")
            self._reloading = False
            if self._reload_again:
                self._reload_again = False
                self.reload()

        switching.addCallback(switched)

    def check_reload(self, config: Config) -> None:
        """
        Refuse what a reload cannot change.

        @raise ConfigError: With the key that needs a restart.
        """
        if config.proxy.user != self.config.proxy.user or (
            config.proxy.group != self.config.proxy.group
        ):
            raise ConfigError(config.source, "proxy.user", "changes only at a restart")

    def copies(self, config: Config) -> int:
        """
        Sockets per listener C{config} needs (one per worker with
        C{reuseport}).
        """
        return 1

    def switch(self, config: Config, text: str) -> Deferred[bool]:
        """
        Start serving C{config} and retire what served before (subclasses).

        @return: Fires with whether the new configuration serves.
        """
        raise NotImplementedError


class SingleProcess(Supervisor):
    """
    C{proxy.workers = 1}: this process serves, one L{Serving} at a time; a
    reload starts the new one on the same sockets before the old one
    drains.
    """

    def __init__(
        self,
        reactor: Any,
        path: str | None,
        config: Config,
        text: str,
        bound: BoundListeners,
        build: Callable[..., Any],
    ) -> None:
        super().__init__(reactor, path, config, text, bound)
        self._build = build
        self.swept_once = False
        self.serving: Serving | None = None
        self._retiring: set[Serving] = set()

    def prepare(self) -> None:
        """
        Build what serves the configuration, before the service starts, so
        that a problem is a start-up error.

        @raise ConfigError: If the configuration cannot be served.
        """
        if not self.swept_once:
            # Once, before anything serves; a reload's servers never sweep.
            self.swept_once = True
            sweep_cache(self.config)
        self.serving = serve(self.config, self.reactor, self.bound.for_slot(0), self._build)

    @override
    def start_serving(self) -> None:
        if self.serving is None:
            self.prepare()
        assert self.serving is not None
        self.serving.startService()

    @override
    def check_reload(self, config: Config) -> None:
        super().check_reload(config)
        if config.proxy.workers != 1:
            raise ConfigError(
                config.source, "proxy.workers", "changes from 1 to more only at a restart"
            )

    @override
    def switch(self, config: Config, text: str) -> Deferred[bool]:
        old = self.serving
        try:
            new = serve(config, self.reactor, self.bound.for_slot(0), self._build)
            new.startService()
        except (ConfigError, OSError) as error:
            self._log.error("squeak: {error} (reload refused)", error=str(error))
            return succeed(False)
        self.serving = new
        if old is not None:
            self._retire(old)
        return succeed(True)

    def _retire(self, old: Serving) -> None:
        self._retiring.add(old)
        stopped = old.stopService()
        stopped.addBoth(lambda _: self._retiring.discard(old))

    @override
    def stop_now(self) -> None:
        for serving in [self.serving, *self._retiring]:
            if serving is not None:
                serving.stop_now()

    @override
    def stopService(self) -> Deferred[None]:
        cast(Any, super()).stopService()
        self.stopping = True
        stops = [old.stopService() for old in list(self._retiring) if old.running]
        if self.serving is not None and self.serving.running:
            stops.append(self.serving.stopService())
        done: Deferred[Any] = DeferredList(stops)
        done.addCallback(lambda _: self.bound.close())
        return done


@dataclass(eq=False)
class Worker:
    """
    One worker process, as the master sees it.

    @ivar slot: Its place (0 to workers - 1): which C{SO_REUSEPORT} sockets
        it serves, and which restarts replace it.
    @ivar generation: The reload it belongs to.
    """

    slot: int
    generation: int
    started: float
    protocol: WorkerProtocol
    #: Its entry in the accept ledger (a shared accept queue), else 0.
    entry: int = 0
    ready: Deferred[bool] = field(default_factory=Deferred)
    ended: Deferred[None] = field(default_factory=Deferred)
    exited = False
    #: Its slot in the shared stats table (squeak.stats.table).
    stats_slot: int | None = None

    @property
    def pid(self) -> int | None:
        transport = self.protocol.transport
        return None if transport is None else cast(Any, transport).pid

    def signal(self, number: int) -> None:
        """Send C{number} to the process if it still runs."""
        if not self.exited and self.protocol.transport is not None:
            with contextlib.suppress(OSError, ProcessExitedAlready):
                cast(Any, self.protocol.transport).signalProcess(number)


class WorkerProtocol(ProcessProtocol):
    """
    The master's end of one worker: its log lines, its readiness, its end.
    """

    _log = Logger()

    def __init__(self, master: Master, config_text: str) -> None:
        self._master = master
        self._config = config_text.encode("utf-8")
        self._partial: dict[int, bytes] = {}
        self.worker: Worker | None = None
        self.pid: int | None = None

    @override
    def connectionMade(self) -> None:
        self.pid = cast(Any, self.transport).pid
        # The configuration, length first; the pipe then stays open.
        cast(Any, self.transport).writeToChild(0, b"%d\n%s" % (len(self._config), self._config))

    @override
    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 3:
            if b"ready" in data and self.worker is not None and not self.worker.ready.called:
                self.worker.ready.callback(True)
            return
        lines = (self._partial.pop(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._log.info("worker {pid}: {line}", pid=self.pid, line=text)

    @override
    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            if rest:
                self._relay(rest)
        self._partial = {}
        if self.worker is not None:
            self._master.worker_ended(self.worker, reason)


def describe_exit(reason: Failure) -> str:
    """
    How a process ended, in words: C{status 0}, C{status 2},
    C{signal SIGKILL}.
    """
    value = reason.value
    code = getattr(value, "exitCode", None)
    number = getattr(value, "signal", None)
    if number is not None:
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    return f"status {code if code is not None else 0}"


class Master(Supervisor):
    """
    C{proxy.workers} above 1: runs the workers, restarts one that dies
    (after a back-off that grows while restarts fail in a row), replaces
    them all on a reload, and stops them when it stops.
    """

    def __init__(
        self,
        reactor: Any,
        path: str | None,
        config: Config,
        text: str,
        bound: BoundListeners,
        *,
        executable: str = sys.executable,
    ) -> None:
        super().__init__(reactor, path, config, text, bound)
        self._executable = executable
        self.generation = 0
        self.workers: list[Worker] = []
        self._failures: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}
        #: Files the start-up sweep of the disk cache deleted.
        self.swept = 0
        # The longest shutdown_lifetime a running worker may have.
        self._longest_lifetime = config.timeouts.shutdown_lifetime
        #: What each worker holds, for the workers to share one accept
        #: queue fairly (squeak.net.accepts.SharedQueuePort); none with
        #: reuseport, where each worker has its own queue.
        self.ledger = None if config.proxy.reuseport else AcceptLedger.create()
        #: The workers' counters, shared (the manager pages and metrics).
        self.stats_slots = SlotAllocator(StatsTable.create())

    @override
    def copies(self, config: Config) -> int:
        return config.proxy.workers

    @override
    def _install_signals(self) -> None:
        super()._install_signals()
        # The workers own the access log: pass SIGUSR1 (reopen) on.
        signal.signal(signal.SIGUSR1, self._reopen_logs)

    def _reopen_logs(self, number: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self._signal_workers, signal.SIGUSR1)

    def _signal_workers(self, number: int) -> None:
        for worker in self.workers:
            worker.signal(number)

    @override
    def check_reload(self, config: Config) -> None:
        super().check_reload(config)
        if config.proxy.reuseport != self.config.proxy.reuseport:
            raise ConfigError(config.source, "proxy.reuseport", "changes only at a restart")

    # -- starting workers --------------------------------------------------

    @override
    def start_serving(self) -> None:
        # The disk cache's start-up sweep runs here, once, before any
        # worker exists: workers open the cache without sweeping (one's
        # sweep could delete a body another just renamed into place).
        self.swept = sweep_cache(self.config)
        for listener, socks in self.bound.sockets.items():
            kind = {"tls.https_port": "TLS ", "metrics.http_port": "metrics "}.get(
                listener.key, ""
            )
            self._log.info(
                "squeak listening on {kind}{address}", kind=kind, address=describe(socks[0])
            )
        for slot in range(self.config.proxy.workers):
            self.spawn(slot, self.generation, self.config, self.text)

    def spawn(self, slot: int, generation: int, config: Config, text: str) -> Worker:
        """
        Start one worker for C{slot} serving C{config}.
        """
        protocol = WorkerProtocol(self, text)
        sockets = self.bound.for_slot(slot)
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r", 3: "r"}
        args = [self._executable, "-m", "squeak", "worker", "--config", config.source]
        number = 3
        for number, (listener, sock) in enumerate(sockets.items(), start=4):
            child_fds[number] = sock.fileno()
            args += ["--listener", f"{listener}@{number}"]
        accepting = f"slot={slot},generation={generation}"
        entry = 0
        if self.ledger is not None:
            entry = self.ledger.hand_out({worker.entry for worker in self.workers})
            child_fds[number + 1] = self.ledger.fd
            accepting += f",ledger={number + 1},entry={entry}"
        args += ["--accepting", accepting]
        worker = Worker(slot, generation, self.reactor.seconds(), protocol, entry)
        protocol.worker = worker
        env = os.environ.copy()
        worker.stats_slot = self.stats_slots.assign(child_fds, env)
        self.reactor.spawnProcess(protocol, self._executable, args, env=env, childFDs=child_fds)
        self._log.info("started worker {pid} (slot {slot})", pid=protocol.pid, slot=slot)
        self.workers.append(worker)
        return worker

    def worker_ended(self, worker: Worker, reason: Failure) -> None:
        """
        A worker exited: forget it; replace it if it belongs to the
        current generation and the master is not stopping.
        """
        worker.exited = True
        self.stats_slots.release(worker.stats_slot)
        worker.stats_slot = None
        if worker in self.workers:
            self.workers.remove(worker)
        if self.ledger is not None and worker.entry:
            # What it held is gone with it: its peers must not yield to it.
            self.ledger.clear(worker.entry)
        how = describe_exit(reason)
        never_ready = not worker.ready.called
        if never_ready:
            worker.ready.callback(False)
        current = worker.generation == self.generation and not self.stopping
        # A new worker that fails during a reload is not replaced: the
        # reload is abandoned and the old workers keep serving.
        if not current or (self._reloading and never_ready):
            self._log.info(
                "worker {pid} (slot {slot}) exited with {how}",
                pid=worker.protocol.pid,
                slot=worker.slot,
                how=how,
            )
        else:
            ran = self.reactor.seconds() - worker.started
            failures = 0 if ran >= BACKOFF_STABLE else self._failures.get(worker.slot, 0) + 1
            self._failures[worker.slot] = failures
            delay = (
                0.0 if failures == 0 else min(BACKOFF_LONGEST, BACKOFF_FIRST * 2 ** (failures - 1))
            )
            self._log.warn(
                "worker {pid} (slot {slot}) exited with {how}; starting another in {delay:g}s",
                pid=worker.protocol.pid,
                slot=worker.slot,
                how=how,
                delay=delay,
            )
            self._restarts[worker.slot] = self.reactor.callLater(delay, self._restart, worker.slot)
        worker.ended.callback(None)

    def _restart(self, slot: int) -> None:
        self._restarts.pop(slot, None)
        if self.stopping or slot >= self.config.proxy.workers:
            return
        self.spawn(slot, self.generation, self.config, self.text)

    # -- reloading ---------------------------------------------------------

    @override
    def switch(self, config: Config, text: str) -> Deferred[bool]:
        old = [worker for worker in self.workers if worker.generation == self.generation]
        self.generation += 1
        generation = self.generation
        self._longest_lifetime = max(self._longest_lifetime, config.timeouts.shutdown_lifetime)
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        self._failures.clear()
        fresh = [
            self.spawn(slot, generation, config, text) for slot in range(config.proxy.workers)
        ]
        timeout = self.reactor.callLater(READY_TIMEOUT, self._not_ready, fresh)
        decided: Deferred[bool] = Deferred()
        waiting = set(fresh)

        def decide(ok: bool) -> None:
            if timeout.active():
                timeout.cancel()
            if ok:
                for worker in old:
                    worker.signal(signal.SIGTERM)
            else:
                self._log.error("reload: the new workers did not start; the old ones keep serving")
                self.generation = generation - 1
                for worker in fresh:
                    worker.signal(signal.SIGKILL)
            decided.callback(ok)

        def one_ready(ready: bool, worker: Worker) -> None:
            # All ready: switch.  One failed (or timed out): give up at once.
            if decided.called:
                return
            waiting.discard(worker)
            if not ready:
                decide(False)
            elif not waiting:
                decide(True)

        for worker in fresh:
            worker.ready.addCallback(one_ready, worker)
        return decided

    def _not_ready(self, fresh: list[Worker]) -> None:
        for worker in fresh:
            if not worker.ready.called:
                worker.ready.callback(False)

    # -- stopping ------------------------------------------------------------

    @override
    def stop_now(self) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGTERM)

    @override
    def stopService(self) -> Deferred[None]:
        cast(Any, super()).stopService()
        self.stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        lifetime = self._longest_lifetime
        kill = self.reactor.callLater(lifetime + KILL_MARGIN, self._kill_all)
        done: Deferred[Any] = DeferredList([worker.ended for worker in workers])

        def finished(_: object) -> None:
            if kill.active():
                kill.cancel()
            self.bound.close()

        done.addCallback(finished)
        return done

    def _kill_all(self) -> None:
        for worker in self.workers:
            self._log.warn("worker {pid} did not stop in time: killing it", pid=worker.pid)
            worker.signal(signal.SIGKILL)
