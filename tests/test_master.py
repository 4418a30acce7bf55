"""
L{squeak.master.Master} on a fake clock and fake processes: restarts with a
growing back-off, reloads that switch only once the new workers are ready,
and a stop that waits for every worker.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from squeak.config import parse_config
from squeak.master import Master, describe_exit
from squeak.net.listeners import bind_all


class _Process:
    """A spawned process as the master's protocol sees its transport."""

    def __init__(self, protocol: Any, pid: int, args: list[str], fds: dict[int, Any]) -> None:
        self.protocol = protocol
        self.pid = pid
        self.args = args
        self.fds = fds
        self.signals: list[int] = []
        self.written = b""
        protocol.makeConnection(self)

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written += data

    def signalProcess(self, number: int) -> None:
        self.signals.append(number)

    def ready(self) -> None:
        self.protocol.childDataReceived(3, b"ready\n")

    def exit(self, reason: Failure) -> None:
        self.protocol.processEnded(reason)


class _Reactor(MemoryReactorClock):
    """A clock that records spawned processes."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[_Process] = []
        self.running = True

    def spawnProcess(
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: Any = None,
        childFDs: dict[int, Any] | None = None,
        **kw: Any,
    ) -> _Process:
        process = _Process(protocol, 1000 + len(self.processes), args, childFDs or {})
        self.processes.append(process)
        return process


def _killed() -> Failure:
    return Failure(ProcessTerminated(signal=signal.SIGKILL))


class MasterTests(unittest.SynchronousTestCase):
    """
    The master's bookkeeping of its workers.
    """

    def _master(self, tables: str = "") -> tuple[Master, _Reactor]:
        directory = self.mktemp()
        config = parse_config(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\nworkers = 2\n'
            f'[cache]\ndir = "{directory}"\n{tables}',
            "x.toml",
        )
        bound = bind_all(config, copies=2)
        self.addCleanup(bound.close)
        reactor = _Reactor()
        master = Master(reactor, None, config, "text", bound, executable="/bin/python")
        master.startService()
        return master, reactor

    def test_workers_started_with_the_sockets(self) -> None:
        """
        Each worker gets the configuration text on its standard input and
        the listening socket as descriptor 4, named on its command line.
        """
        master, reactor = self._master()
        self.assertEqual(len(reactor.processes), 2)
        process = reactor.processes[0]
        self.assertEqual(process.written, b"4\ntext")
        self.assertEqual((process.fds[0], process.fds[3]), ("w", "r"))
        [(key, [sock])] = master.bound.sockets.items()
        self.assertEqual(process.fds[4], sock.fileno())
        self.assertIn(f"{key}@4", process.args)

    def test_restart_backs_off(self) -> None:
        """
        A worker that dies soon after its start is replaced after 0.5 s,
        then 1 s, 2 s...; one that ran long enough is replaced at once.
        """
        master, reactor = self._master()
        delays = []
        for _ in range(3):
            slot0 = next(w for w in master.workers if w.slot == 0)
            count = len(reactor.processes)
            slot0.protocol.processEnded(_killed())
            waited = 0.0
            while len(reactor.processes) == count:
                reactor.advance(0.25)
                waited += 0.25
            delays.append(waited)
        self.assertEqual(delays, [0.5, 1.0, 2.0])
        slot0 = next(w for w in master.workers if w.slot == 0)
        reactor.advance(11)
        count = len(reactor.processes)
        slot0.protocol.processEnded(_killed())
        reactor.advance(0)
        self.assertEqual(len(reactor.processes), count + 1)

    def test_reload_switches_once_new_workers_are_ready(self) -> None:
        """
        The old workers get SIGTERM only when every new one is ready.
        """
        master, reactor = self._master()
        old = list(reactor.processes)
        done = master.switch(master.config, "text")
        new = reactor.processes[2:]
        self.assertEqual(len(new), 2)
        new[0].ready()
        self.assertEqual([p.signals for p in old], [[], []])
        new[1].ready()
        self.assertEqual([p.signals for p in old], [[signal.SIGTERM], [signal.SIGTERM]])
        self.assertTrue(self.successResultOf(done))
        # The retired workers' exits are not restarts.
        count = len(reactor.processes)
        for process in old:
            process.exit(Failure(ProcessDone(0)))
        reactor.advance(60)
        self.assertEqual(len(reactor.processes), count)

    def test_reload_abandoned_if_a_new_worker_fails(self) -> None:
        """
        A new worker that exits before it is ready: the new ones are
        killed, the old ones keep serving, nothing is restarted.
        """
        master, reactor = self._master()
        old = list(reactor.processes)
        master._reloading = True
        done = master.switch(master.config, "text")
        new = reactor.processes[2:]
        new[0].exit(Failure(ProcessTerminated(exitCode=2)))
        self.assertFalse(self.successResultOf(done))
        self.assertEqual(new[1].signals, [signal.SIGKILL])
        self.assertEqual([p.signals for p in old], [[], []])
        reactor.advance(60)
        self.assertEqual(len(reactor.processes), 4)

    def test_stop_waits_for_every_worker(self) -> None:
        """
        Stopping signals each worker and waits for them all; a second stop
        signal is passed on.
        """
        master, reactor = self._master()
        stopped = master.stopService()
        self.assertEqual([p.signals for p in reactor.processes], [[signal.SIGTERM]] * 2)
        master.stop_now()
        self.assertEqual([p.signals for p in reactor.processes], [[signal.SIGTERM] * 2] * 2)
        reactor.processes[0].exit(Failure(ProcessDone(0)))
        self.assertNoResult(stopped)
        reactor.processes[1].exit(Failure(ProcessDone(0)))
        self.successResultOf(stopped)
        self.assertEqual(master.bound.sockets, {})

    def test_stop_kills_stragglers(self) -> None:
        """
        A worker still running shutdown_lifetime plus a margin after the
        stop is killed.
        """
        master, reactor = self._master('[timeouts]\nshutdown_lifetime = "5s"\n')
        master.stopService()
        reactor.advance(14.9)
        self.assertEqual([p.signals for p in reactor.processes], [[signal.SIGTERM]] * 2)
        reactor.advance(0.1)
        self.assertEqual([p.signals[-1] for p in reactor.processes], [signal.SIGKILL] * 2)

    def test_describe_exit(self) -> None:
        """
        Exits are named by status or by signal.
        """
        self.assertEqual(describe_exit(Failure(ProcessDone(0))), "status 0")
        self.assertEqual(describe_exit(Failure(ProcessTerminated(exitCode=2))), "status 2")
        self.assertEqual(describe_exit(_killed()), "signal SIGKILL")
