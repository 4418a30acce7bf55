"""
Running out of file descriptors (issue 14 item 4), against a real
C{twistd -n squeak} whose C{RLIMIT_NOFILE} is lowered: every request gets
an answer, the proxy does not spin and says so once, and serves normally
once the load is gone; at start-up the soft limit is raised to the hard
one; an error page renders with no descriptor left.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial import unittest

from tests.sloworigin import SlowOrigin, fetch
from tests.test_drain import proxy_config, wait_for
from tests.twistdprocess import TwistdProxy

#: The descriptor limit of the proxy under test, and how many clients
#: connect at once: several times more than it can hold.
LIMIT = 64
CLIENTS = 200


def _cpu_seconds(pid: int) -> float:
    """
    User plus system CPU time of C{pid} so far, from C{/proc/PID/stat}.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_all(clients: list[socket.socket], timeout: float) -> list[bytes]:
    """
    Read every client until the proxy closes it or C{timeout} seconds
    have passed (bounded), all at once.
    """
    received = [b""] * len(clients)
    selector = selectors.DefaultSelector()
    for index, client in enumerate(clients):
        client.setblocking(False)
        selector.register(client, selectors.EVENT_READ, index)
    deadline = time.monotonic() + timeout
    try:
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                index = key.data
                try:
                    data = clients[index].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    received[index] += data
                else:
                    selector.unregister(clients[index])
    finally:
        selector.close()
    return received


class DescriptorExhaustionTests(unittest.SynchronousTestCase):
    """
    A proxy limited to L{LIMIT} descriptors, and L{CLIENTS} clients.
    """

    timeout = 120

    def setUp(self) -> None:
        self.origin = SlowOrigin()
        self.addCleanup(self.origin.close)
        self.directory = Path(os.path.abspath(self.mktemp()))
        self.directory.mkdir(parents=True)
        config = proxy_config(self.directory, extra="enabled = false")
        self.proxy = TwistdProxy(config, nofile=(LIMIT, LIMIT)).start()
        self.addCleanup(self.proxy.stop)

    def test_every_request_answered_without_spinning(self) -> None:
        """
        With every descriptor taken by idle clients and more queued, the
        proxy pauses accepting (its CPU time over 2 s stays far below 2 s)
        and logs it once, naming EMFILE; the queued connections are not
        closed.  When they all send a request, each gets an answer within a
        normal timeout: the response, or a 503 page naming EMFILE when no
        descriptor was left to connect to the origin.  Afterwards the
        proxy serves normally.
        """
        url = self.origin.url("/body/10")
        self.assertEqual(fetch(self.proxy.port, url)[0], 200)
        assert self.proxy.process is not None
        pid = self.proxy.process.pid
        clients = []
        for _ in range(CLIENTS):
            client = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
            self.addCleanup(client.close)
            clients.append(client)
        # Asserted last, so that the answers are checked whatever is logged.
        said = wait_for(self.proxy, "cannot accept connections", timeout=10)
        time.sleep(0.3)
        before = _cpu_seconds(pid)
        time.sleep(2.0)
        spent = _cpu_seconds(pid) - before
        self.assertLess(spent, 0.5, f"{spent:.2f} s of CPU in 2 s of exhaustion")

        authority = url.removeprefix("http://").partition("/")[0]
        request = (
            f"GET {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        ).encode()
        for client in clients:
            client.sendall(request)
        answers = _read_all(clients, timeout=30)
        statuses: dict[str, int] = {}
        unanswered, unclear = [], []
        for index, answer in enumerate(answers):
            match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
            if match is None:
                unanswered.append((index, answer[:100]))
                continue
            status = match.group(1).decode()
            statuses[status] = statuses.get(status, 0) + 1
            if status != "200" and (
                status != "503"
                or b"X-Squeak-Error: ERR_CONNECT_FAIL" not in answer
                or b"EMFILE" not in answer
            ):
                unclear.append((index, answer[-300:]))
        self.assertEqual(unanswered, [], f"{len(unanswered)} unanswered; {statuses}")
        self.assertEqual(unclear, [], statuses)
        self.assertEqual(sum(statuses.values()), CLIENTS, statuses)
        # The first requests found no descriptor for their origin socket.
        self.assertGreater(statuses.get("503", 0), 0, statuses)

        for client in clients:
            client.close()
        self.assertTrue(said, self.proxy.output[-3000:])
        self.assertTrue(wait_for(self.proxy, "accepting normally again", timeout=10))
        self.assertEqual(fetch(self.proxy.port, url)[0], 200)
        # Each 503 is in the access log, and squeak.proxy.miss says why per
        # request; the listener's shortage is said once.
        lines = [
            line
            for line in self.proxy.output.splitlines()
            if "EMFILE" in line and "upstream failure for" not in line
        ]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("cannot accept connections", lines[0])
        self.assertNotIn("Could not accept new connection", self.proxy.output)
        self.assertRegex(self.proxy.output, r"accepting normally again .*: \d+ accepts")


class DescriptorLimitTests(unittest.SynchronousTestCase):
    """
    The soft descriptor limit is raised to the hard one at start-up.
    """

    timeout = 60

    def test_soft_limit_raised_and_logged(self) -> None:
        """
        Started with a soft limit of 64 under a hard limit of 256, the
        proxy runs with 256, says so in one line, and its workers inherit
        it.
        """
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        proxy = TwistdProxy(proxy_config(directory, workers=2), nofile=(64, 256)).start()
        self.addCleanup(proxy.stop)
        self.assertTrue(wait_for(proxy, r"worker \d+: .*squeak listening on", count=2))
        lines = [line for line in proxy.output.splitlines() if "file descriptors" in line]
        self.assertEqual(len(lines), 1, proxy.output)
        self.assertIn(
            "squeak can open 256 file descriptors (RLIMIT_NOFILE raised from 64)", lines[0]
        )
        assert proxy.process is not None
        pids = [proxy.process.pid, *map(int, re.findall(r"worker (\d+): ", proxy.output))]
        for pid in set(pids):
            limits = Path(f"/proc/{pid}/limits").read_text()
            self.assertRegex(limits, r"Max open files\s+256\s+256\s", pid)


_RAISE = """
import resource, sys
from squeak.startup import raise_descriptor_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
ceiling = int(sys.argv[3]) if len(sys.argv) > 3 else None
print(raise_descriptor_limit(ceiling))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


class RaiseDescriptorLimitTests(unittest.SynchronousTestCase):
    """
    L{squeak.startup.raise_descriptor_limit}, in a child process (it
    changes the limits of the process it runs in).
    """

    def _raise(self, *args: int) -> tuple[str, int]:
        result = subprocess.run(
            [sys.executable, "-c", _RAISE, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        line, soft = result.stdout.splitlines()
        return line, int(soft)

    def test_table(self) -> None:
        """
        The soft limit goes up to the hard one, or to the ceiling (the
        select reactor's 1024) when that is lower; one already at the
        hard limit is left, and the line names the figure every time.
        """
        cases = [
            (
                (64, 256),
                ("squeak can open 256 file descriptors (RLIMIT_NOFILE raised from 64)", 256),
            ),
            (
                (64, 256, 100),
                ("squeak can open 100 file descriptors (RLIMIT_NOFILE raised from 64)", 100),
            ),
            ((256, 256), ("squeak can open 256 file descriptors (RLIMIT_NOFILE)", 256)),
            ((200, 256, 100), ("squeak can open 200 file descriptors (RLIMIT_NOFILE)", 200)),
        ]
        self.assertEqual([self._raise(*args) for args, _ in cases], [want for _, want in cases])


_RENDER_WITH_NO_DESCRIPTOR = """
import errno, resource, sys
from squeak.errors import ProxyError
from squeak.errorpages import render_error_page
held = []
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
try:
    while True:
        held.append(open("/dev/null"))
except OSError as error:
    assert error.errno == errno.EMFILE, error
page = render_error_page(
    ProxyError("ERR_CONNECT_FAIL", 503, "no descriptor"),
    url="http://example.com/", method="GET", client="127.0.0.1",
    visible_hostname="squeak", now=0.0,
)
sys.stdout.write("rendered %d bytes\\n" % len(page))
"""


class TemplateTests(unittest.SynchronousTestCase):
    """
    Error pages are rendered from memory.
    """

    def test_render_with_no_descriptor_left(self) -> None:
        """
        A process that has used every descriptor it may have still renders
        an error page: the template was read when the module was loaded,
        not on first use.
        """
        result = subprocess.run(
            [sys.executable, "-c", _RENDER_WITH_NO_DESCRIPTOR],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"rendered \d+ bytes")
