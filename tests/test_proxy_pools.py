"""
The accelerator's origin pools (squeak/proxy/pools.py): which failures are
retried on another server, and two real gunicorn servers with one stopped
mid-run.
"""

from __future__ import annotations

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.accel.config import BALANCES, AccelPool, OriginServer
from squeak.http.response import MalformedResponseError
from squeak.net.failures import NoResponseError, ResponseTruncatedError
from squeak.proxy.pools import HIERARCHY_CODES, OriginPool, is_connect_failure
from tests.accelharness import AccelTestCase
from tests.wsgiapp import Gunicorn, gunicorn_missing


class ConnectFailureTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Only failures to connect say that nothing reached the server."""
        cases = [
            (ierror.ConnectionRefusedError(), True),
            (ierror.TimeoutError(), True),
            (ierror.NoRouteError(), True),
            (ierror.DNSLookupError("x"), True),
            (NoResponseError(ierror.ConnectionDone()), False),
            (ResponseTruncatedError(ierror.ConnectionLost()), False),
            (MalformedResponseError("bad"), False),
            (CancelledError(), False),
            (None, False),
        ]
        wrong = [(exc, want) for exc, want in cases if is_connect_failure(exc) is not want]
        self.assertEqual(wrong, [])


class GunicornPoolTests(AccelTestCase):
    """Two gunicorn servers; one stopped while requests go on."""

    def setUp(self) -> None:
        missing = gunicorn_missing()
        if missing:
            raise SkipTest(missing)
        self.apps = [Gunicorn(workers=1), Gunicorn(workers=1)]
        for app in self.apps:
            self.addCleanup(app.stop)

    async def test_one_stopped_mid_run(self) -> None:
        """
        Requests alternate between the servers; once one is stopped every
        request still succeeds (retried, then sent only to the other), the
        stopped one is down, and the application saw the forwarding fields.
        """
        first, second = self.apps
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"
origins = ["127.0.0.1:{first.port}", "127.0.0.1:{second.port}"]
"""
        )
        statuses = []
        pids = set()
        for n in range(12):
            if n == 4:
                first.stop()
            reply = await self.get(f"/echo?n={n}")
            statuses.append(reply.status)
            text = reply.body.decode()
            self.assertIn("x-forwarded-for=127.0.0.1", text)
            self.assertIn("host=app.example", text)
            if n < 4:
                pids.add(text.split("pid=")[1].strip())
        self.assertEqual(statuses, [200] * 12)
        self.assertEqual(len(pids), 2)
        pool = self.pools.pools["app.example"]
        down = [m.name for m in pool.group.members if pool.group.is_down(m)]
        self.assertEqual(down, [f"127.0.0.1:{first.port}"])

    async def test_location_rewritten(self) -> None:
        """
        With the pool's Host forced to the server's own address, gunicorn
        redirects to that address; the client sees the public one.
        """
        first, _ = self.apps
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
site = "app.example"

[accel_site."app.example"]
pool = "app"

[accel_pool.app]
origins = ["127.0.0.1:{first.port}"]
host = "127.0.0.1:{first.port}"
"""
        )
        reply = await self.get("/echo")
        self.assertIn(f"host=127.0.0.1:{first.port}", reply.body.decode())
        reply = await self.get("/login")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.header("location"), "http://app.example/welcome")


class HierarchyCodeTests(SynchronousTestCase):
    def test_each_balance_logs_squids_code(self) -> None:
        """
        A pool logs the hierarchy code Squid logs for its kind of choice
        (round-robin, source hash, CARP for the URL hash, first-up), and
        every balance has one.
        """
        self.assertEqual(set(HIERARCHY_CODES), set(BALANCES))
        servers = (OriginServer("127.0.0.1", 9000), OriginServer("127.0.0.1", 9001))
        codes = {
            balance: OriginPool("app", AccelPool(origins=servers, balance=balance)).hierarchy_code
            for balance in BALANCES
        }
        self.assertEqual(
            codes,
            {
                "round-robin": "ROUNDROBIN_PARENT",
                "least-connections": "ROUNDROBIN_PARENT",
                "hash-client": "SOURCEHASH_PARENT",
                "hash-url": "CARP",
                "first-up": "FIRSTUP_PARENT",
            },
        )
