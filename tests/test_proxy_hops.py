"""
A squeak child with squeak parents on loopback: requests through a parent
(plain and CONNECT), credentials, a two-level hierarchy that caches at both
levels, failover and recovery, never_direct, CARP over three real parents,
and the access log's hierarchy codes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, KeyPair, PrivateCertificate
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.origins import Origin, ScriptedOrigin
from tests.peerharness import (
    RunningProxy,
    free_port,
    get,
    peer_toml,
    raw_request,
    squid_peer_lines,
    start_squeak,
    start_squid,
)
from tests.tlsfixtures import ServerFiles, make_server_files


def _sha_line(user: str, password: str) -> str:
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class HierarchyTestCase(unittest.TestCase):
    timeout = 60

    def origin(self) -> Origin:
        origin = Origin(reactor)
        origin.listen()
        self.addCleanup(origin.port.stopListening)
        return origin

    def parent(self, name: str, extra: str = "") -> RunningProxy:
        return start_squeak(self, name, extra)

    def authenticating_parent(self, name: str, user: str, password: str) -> RunningProxy:
        """A squeak parent that serves only C{user}, by Basic proxy authentication."""
        htpasswd = os.path.join(tempfile.mkdtemp(), "htpasswd")
        with open(htpasswd, "w") as handle:
            handle.write(_sha_line(user, password))
        return self.parent(
            name,
            f"""
[auth]
htpasswd = "{htpasswd}"
[acl]
users = {{ proxy_auth = ["{user}"] }}
[access]
http_access = ["deny !localnet", "allow users", "deny all"]
""",
        )

    def child(self, peers: str, hierarchy: str = "", extra: str = "") -> RunningProxy:
        table = f"[hierarchy]\n{hierarchy}\n" if hierarchy else ""
        return start_squeak(self, "child", peers + "\n" + table + extra)

    def last_fields(self, proxy: RunningProxy) -> list[str]:
        return proxy.log_lines()[-1].split()


class ThroughParentTests(HierarchyTestCase):
    async def test_get_goes_through_the_parent_and_is_logged(self) -> None:
        """A GET goes to the parent in absolute form; the child logs FIRSTUP_PARENT/name."""
        origin = self.origin()
        parent = self.parent("north")
        child = self.child(peer_toml("north", parent.port))
        status, _, body = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 200)
        self.assertIn(b'"uri": "/echo"', body)
        fields = self.last_fields(child)
        self.assertEqual(fields[8], "FIRSTUP_PARENT/north")
        parent_fields = self.last_fields(parent)
        self.assertEqual(parent_fields[6], origin.url("/echo"))
        self.assertTrue(parent_fields[8].startswith("HIER_DIRECT/127.0.0.1"), parent_fields)
        # Via names both proxies, in order.
        received = dict((k.lower(), v) for k, v in origin.requests[-1]["headers"])
        self.assertIn("child.test", received["via"])
        self.assertIn("north.test", received["via"])

    async def test_login_reaches_the_parent_never_the_origin(self) -> None:
        """
        The parent demands credentials: the child's login gets through, and
        the origin never sees them.
        """
        origin = self.origin()
        parent = self.authenticating_parent("north", "child", "s3cret")
        wrong = self.child(peer_toml("north", parent.port, 'login = "child:wrong"'))
        status, _, _ = await get(wrong.port, origin.url("/echo"))
        self.assertEqual(status, 407)
        child = start_squeak(
            self, "child2", peer_toml("north", parent.port, 'login = "child:s3cret"')
        )
        status, _, body = await get(
            child.port,
            origin.url("/echo"),
            {"Proxy-Authorization": "Basic " + base64.b64encode(b"client:own").decode()},
        )
        self.assertEqual(status, 200)
        names = [k.lower() for k, _ in origin.requests[-1]["headers"]]
        self.assertNotIn("proxy-authorization", names)
        self.assertNotIn(b"s3cret", body)
        self.assertNotIn(b"client:own", body)
        self.assertEqual(self.last_fields(parent)[7], "child")

    async def test_passthru_sends_the_clients_credentials_to_the_parent(self) -> None:
        """login = "PASSTHRU": the client's own Proxy-Authorization goes to the parent."""
        origin = self.origin()
        parent = self.authenticating_parent("north", "alice", "pw")
        child = self.child(peer_toml("north", parent.port, 'login = "PASSTHRU"'))
        status, _, _ = await get(
            child.port,
            origin.url("/echo"),
            {"Proxy-Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()},
        )
        self.assertEqual(status, 200)
        self.assertEqual(self.last_fields(parent)[7], "alice")

    async def test_two_levels_both_cache(self) -> None:
        """A cacheable response is stored by the parent and by the child."""
        origin = self.origin()
        parent = self.parent("north")
        child = self.child(peer_toml("north", parent.port))
        url = origin.url("/cached/x?cc=max-age%3D600")
        first = await get(child.port, url)
        self.assertEqual(first[0], 200)
        second = await get(child.port, url)
        self.assertEqual(second[2], first[2])
        self.assertIn("HIT", self.last_fields(child)[3])
        # Another child of the same parent: a miss here, a hit there.
        other = start_squeak(self, "other", peer_toml("north", parent.port))
        third = await get(other.port, url)
        self.assertEqual(third[2], first[2])
        self.assertIn("MISS", self.last_fields(other)[3])
        self.assertIn("HIT", self.last_fields(parent)[3])
        self.assertEqual(origin.counts[b"/cached/x"], 1)

    async def test_loop_through_the_hierarchy_is_refused(self) -> None:
        """
        Two proxies each the other's parent (both never_direct): Via shows
        the loop at the first proxy reached twice, answered 508, and the
        origin is never asked.
        """
        origin = self.origin()
        a_port = free_port()
        never = '[hierarchy]\nnever_direct = ["allow all"]\n'
        b = start_squeak(self, "loop-b", peer_toml("a", a_port) + never)
        a = start_squeak(self, "loop-a", peer_toml("b", b.port) + never, port=a_port)
        status, head, body = await get(a.port, origin.url("/echo"))
        self.assertEqual(status, 508, head + body[:300])
        self.assertIn(b"ERR_FORWARDING_LOOP", head + body)
        self.assertEqual(origin.requests, [])
        # a -> b -> a: the second visit to a is refused, logged there.
        self.assertIn("/508", " ".join(a.log_lines()))


class UpgradeThroughParentTests(HierarchyTestCase):
    async def test_websocket_upgrade_goes_through_the_parent(self) -> None:
        """
        An Upgrade: websocket request goes to the parent in absolute form,
        with the login; the origin's 101 comes back through both proxies.
        """
        origin = ScriptedOrigin(
            reactor,
            [
                (
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n\r\n",
                    True,
                )
            ],
        )
        origin.listen()
        self.addCleanup(origin.port.stopListening)
        parent = self.parent("north")
        child = self.child(
            peer_toml("north", parent.port, 'login = "child:pw"'), 'never_direct = ["allow all"]'
        )
        request = (
            f"GET {origin.url('/ws')} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        answer = await deferToThread(raw_request, child.port, request)
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer[:200])
        [head] = origin.heads
        self.assertTrue(head.startswith(b"GET /ws HTTP/1.1\r\n"), head)
        self.assertNotIn(b"proxy-authorization", head.lower())
        self.assertIn(b"child.test", head)
        self.assertIn(b"north.test", head)
        for _ in range(20):
            if child.log_lines():
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/north")


class ConnectThroughParentTests(HierarchyTestCase):
    async def test_connect_goes_through_the_parent(self) -> None:
        """CONNECT is sent to the parent as CONNECT host:port; bytes are relayed."""
        echo = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        port = echo.getHost().port
        parent = self.parent("north", "[acl]\nSSL_ports = { port = [443, " + str(port) + "] }\n")
        child = self.child(
            peer_toml("north", parent.port),
            extra="[acl]\nSSL_ports = { port = [443, " + str(port) + "] }\n",
        )

        def tunnel() -> bytes:
            with socket.create_connection(("127.0.0.1", child.port), timeout=10) as s:
                s.sendall(
                    b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                s.sendall(b"ping through two proxies")
                got = b""
                while len(got) < 24:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                return head + b"|" + got

        answer = await deferToThread(tunnel)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertTrue(answer.endswith(b"ping through two proxies"), answer)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/north")
        self.assertEqual(self.last_fields(parent)[5], "CONNECT")


class HealthTests(HierarchyTestCase):
    async def test_failover_then_recovery_by_the_prober(self) -> None:
        """A parent that goes down: requests fail over; the prober brings it back."""
        origin = self.origin()
        first = self.parent("first")
        second = self.parent("second")
        first_port = first.port
        child = self.child(
            peer_toml("first", first.port) + peer_toml("second", second.port),
            'max_fails = 1\nprobe = "tcp"\nprobe_interval = "0.2s"\nnever_direct = ["allow all"]',
        )
        await get(child.port, origin.url("/echo?1"))
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/first")
        # The first parent goes away.
        await first.go_down()
        await get(child.port, origin.url("/echo?2"))
        self.assertEqual(self.last_fields(child)[8], "ANY_OLD_PARENT/second")
        await get(child.port, origin.url("/echo?3"))
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/second")
        # Back on the same port: the prober finds it.
        from squeak.config import parse_config
        from squeak.service import build_service

        directory = tempfile.mkdtemp()
        config = parse_config(
            f'[proxy]\nhttp_port = ["127.0.0.1:{first_port}"]\nvisible_hostname = "first.test"\n'
            f'[cache]\ndir = "{directory}/c"\n[access_log]\npath = "{directory}/a.log"\n',
            os.path.join(directory, "s.toml"),
        )
        service = build_service(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        parents: Any = child.service.context.parents
        for _ in range(50):
            await deferLater(reactor, 0.1, lambda: None)
            if not parents.hierarchy.is_down(parents.hierarchy.peer("first")):
                break
        self.assertFalse(parents.hierarchy.is_down(parents.hierarchy.peer("first")))
        self.assertGreater(parents.prober.probes_sent, 0)
        await get(child.port, origin.url("/echo?4"))
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/first")

    async def test_never_direct_with_every_parent_down_is_503_naming_them(self) -> None:
        """never_direct and no parent answers: 503 ERR_CANNOT_FORWARD naming the parents."""
        origin = self.origin()
        dead = []
        for _ in range(2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                dead.append(probe.getsockname()[1])
        child = self.child(
            peer_toml("east", dead[0]) + peer_toml("west", dead[1]),
            'never_direct = ["allow all"]\nmax_fails = 1',
        )
        status, head, body = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 503)
        self.assertIn(b"ERR_CANNOT_FORWARD", head + body)
        self.assertIn(b"east", body)
        self.assertIn(b"west", body)
        self.assertEqual(origin.requests, [])
        # Both are down now: the next request names them without trying.
        status, _, body = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 503)
        self.assertIn(b"no parent is up", body)
        self.assertIn(b"east, west", body)

    async def test_without_never_direct_it_goes_direct_when_parents_are_down(self) -> None:
        """Squid's default: parents first, direct when none answers."""
        origin = self.origin()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        child = self.child(peer_toml("gone", dead))
        status, _, _ = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 200)
        self.assertTrue(self.last_fields(child)[8].startswith("HIER_DIRECT/127.0.0.1"))

    async def test_always_direct_skips_the_parents(self) -> None:
        """always_direct allows: the request goes to the origin itself."""
        origin = self.origin()
        parent = self.parent("north")
        child = self.child(peer_toml("north", parent.port), 'always_direct = ["allow all"]')
        status, _, _ = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 200)
        self.assertTrue(self.last_fields(child)[8].startswith("HIER_DIRECT/"))
        self.assertEqual(parent.log_lines(), [])


class CarpArrayTests(HierarchyTestCase):
    async def test_each_url_always_to_the_same_parent_and_a_down_one_moves_only_its_share(
        self,
    ) -> None:
        """Three real parents under CARP: stable choices; one down moves only its URLs."""
        origin = self.origin()
        parents = {name: self.parent(name) for name in ("alpha", "bravo", "charlie")}
        weights = {"alpha": 1, "bravo": 2, "charlie": 3}
        peers = "".join(
            peer_toml(name, proxy.port, f"weight = {weights[name]}")
            for name, proxy in parents.items()
        )
        child = self.child(
            peers,
            'selection = "carp"\nnever_direct = ["allow all"]\n'
            'max_fails = 1\nprobe_interval = "60s"',
        )
        urls = [origin.url(f"/echo/{n}") for n in range(24)]
        chosen = {}
        for url in urls:
            await get(child.port, url)
            code, name = self.last_fields(child)[8].split("/")
            self.assertEqual(code, "CARP")
            chosen[url] = name
        for url in urls[:8]:
            await get(child.port, url)
            self.assertEqual(self.last_fields(child)[8], f"CARP/{chosen[url]}")
        self.assertEqual(len(set(chosen.values())), 3, chosen)
        await parents["charlie"].go_down()
        moved = {}
        for url in urls:
            await get(child.port, url)
            moved[url] = self.last_fields(child)[8].split("/")[1]
        for url in urls:
            if chosen[url] != "charlie":
                self.assertEqual(moved[url], chosen[url], url)
            else:
                self.assertNotEqual(moved[url], "charlie")


class SquidParentTests(HierarchyTestCase):
    """The same hierarchy with a real Squid (the Debian package) as the parent."""

    async def test_get_and_two_level_caching_through_a_squid_parent(self) -> None:
        """squeak children of a Squid parent: a miss at both, then a hit at each level."""
        origin = self.origin()
        squid = start_squid(self, "squidparent")
        child = self.child(peer_toml("squidparent", squid.port))
        url = origin.url("/cached/squid?cc=max-age%3D600")
        status, _, body = await get(child.port, url)
        self.assertEqual(status, 200)
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/squidparent")
        again = await get(child.port, url)
        self.assertEqual(again[2], body)
        self.assertIn("HIT", self.last_fields(child)[3])
        other = start_squeak(self, "other", peer_toml("squidparent", squid.port))
        third = await get(other.port, url)
        self.assertEqual(third[2], body)
        self.assertEqual(origin.counts[b"/cached/squid"], 1)
        lines = await _squid_log(squid, 2)
        self.assertIn("TCP_MISS", lines[0])
        self.assertIn("HIER_DIRECT/127.0.0.1", lines[0])
        self.assertIn("HIT", lines[1])

    async def test_connect_through_a_squid_parent(self) -> None:
        """CONNECT through Squid: a tunnel to an echo server."""
        echo = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        port = echo.getHost().port
        squid = start_squid(self, "squidparent")
        child = self.child(
            peer_toml("squidparent", squid.port),
            extra=f"[acl]\nSSL_ports = {{ port = [443, {port}] }}\n",
        )
        answer = await deferToThread(_tunnel_echo, child.port, port)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertTrue(answer.endswith(b"ping through two proxies"), answer)
        lines = await _squid_log(squid, 1)
        self.assertIn(f"CONNECT 127.0.0.1:{port}", lines[0])

    async def test_login_reaches_a_squid_parent(self) -> None:
        """Squid with basic_ncsa_auth accepts the child's login; the origin never sees it."""
        helper = "/usr/lib/squid/basic_ncsa_auth"
        if not os.access(helper, os.X_OK):
            raise unittest.SkipTest(f"{helper} is missing (Debian package squid)")
        origin = self.origin()
        directory = tempfile.mkdtemp()
        os.chmod(directory, 0o755)
        hashed = subprocess.run(
            ["openssl", "passwd", "-1", "s3cret"], capture_output=True, check=True, text=True
        ).stdout.strip()
        passwords = os.path.join(directory, "passwd")
        with open(passwords, "w") as handle:
            handle.write(f"child:{hashed}\n")
        os.chmod(passwords, 0o644)
        squid = start_squid(
            self,
            "squidauth",
            f"auth_param basic program {helper} {passwords}\n"
            "acl users proxy_auth REQUIRED\nhttp_access allow users\n",
            access="http_access deny !localhost",
        )
        wrong = self.child(peer_toml("squidauth", squid.port, 'login = "child:wrong"'))
        status, _, _ = await get(wrong.port, origin.url("/echo"))
        self.assertEqual(status, 407)
        child = start_squeak(
            self, "child2", peer_toml("squidauth", squid.port, 'login = "child:s3cret"')
        )
        status, _, _ = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 200)
        names = [k.lower() for k, _ in origin.requests[-1]["headers"]]
        self.assertNotIn("proxy-authorization", names)
        lines = await _squid_log(squid, 2)
        self.assertIn(" child ", lines[-1])


class SquidParentHealthTests(HierarchyTestCase):
    async def test_a_squid_parent_goes_down_then_comes_back(self) -> None:
        """
        Two Squid parents: the first stops mid-run, requests fail over to
        the second; it starts again and the prober brings it back.
        """
        origin = self.origin()
        first = start_squid(self, "squidone")
        second = start_squid(self, "squidtwo")
        child = self.child(
            peer_toml("squidone", first.port) + peer_toml("squidtwo", second.port),
            'never_direct = ["allow all"]\nmax_fails = 1\nprobe_interval = "0.3s"',
        )
        status, _, _ = await get(child.port, origin.url("/echo/1"))
        self.assertEqual((status, self.last_fields(child)[8]), (200, "FIRSTUP_PARENT/squidone"))
        await deferToThread(first.stop_squid)
        status, _, _ = await get(child.port, origin.url("/echo/2"))
        self.assertEqual((status, self.last_fields(child)[8]), (200, "ANY_OLD_PARENT/squidtwo"))
        status, _, _ = await get(child.port, origin.url("/echo/3"))
        self.assertEqual((status, self.last_fields(child)[8]), (200, "FIRSTUP_PARENT/squidtwo"))
        await deferToThread(first.start_squid)
        parents: Any = child.service.context.parents
        peer = parents.hierarchy.peer("squidone")
        for _ in range(50):
            if not parents.hierarchy.is_down(peer):
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(parents.hierarchy.is_down(peer))
        status, _, _ = await get(child.port, origin.url("/echo/4"))
        self.assertEqual((status, self.last_fields(child)[8]), (200, "FIRSTUP_PARENT/squidone"))


class CarpAgainstSquidTests(HierarchyTestCase):
    async def test_squid_child_and_squeak_child_pick_the_same_parents(self) -> None:
        """
        A Squid child and a squeak child with the same CARP array send each
        URL to the same parent.
        """
        origin = self.origin()
        weights = {"alpha": 1, "bravo": 2, "charlie": 3}
        parents = {name: self.parent(name) for name in weights}
        squid = start_squid(
            self,
            "squidchild",
            squid_peer_lines([(n, parents[n].port, w) for n, w in weights.items()], "carp")
            + "\nnever_direct allow all\ncache deny all\n",
        )
        child = self.child(
            "".join(peer_toml(n, parents[n].port, f"weight = {w}") for n, w in weights.items()),
            'selection = "carp"\nnever_direct = ["allow all"]',
        )
        urls = [origin.url(f"/echo/carp/{n}?q={n * 7}") for n in range(30)]

        def receiver(url: str) -> str:
            found = [
                name
                for name, proxy in parents.items()
                if any(f" {url} " in line for line in proxy.log_lines())
            ]
            return ",".join(found)

        squeak_choice = {}
        for url in urls:
            await get(child.port, url)
            squeak_choice[url] = self.last_fields(child)[8].split("/")[1]
        for proxy in parents.values():
            proxy.service.context.access_log.flush()
            open(proxy.log_path, "w").close()
        for url in urls:
            status, _, _ = await get(squid.port, url)
            self.assertEqual(status, 200)
        squid_choice = {url: receiver(url) for url in urls}
        self.assertEqual(squid_choice, squeak_choice)
        self.assertEqual(len(set(squeak_choice.values())), 3)


def _tunnel_echo(proxy_port: int, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        s.sendall(b"ping through two proxies")
        got = b""
        while len(got) < 24:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return head + b"|" + got


async def _squid_log(squid: RunningProxy, count: int) -> list[str]:
    """
    Squid's access-log lines, once there are C{count} (it writes them soon
    after), without the one of the harness's connect that saw it listening.
    """

    def lines() -> list[str]:
        return [line for line in squid.log_lines() if "transaction-end-before-headers" not in line]

    for _ in range(50):
        if len(lines()) >= count:
            break
        await deferLater(reactor, 0.1, lambda: None)
    return lines()


class TlsThroughParentTests(HierarchyTestCase):
    def setUp(self) -> None:
        directory = Path(os.path.abspath(self.mktemp()))
        self.files = make_server_files(directory / "good", ["127.0.0.1", "localhost"])
        self.wrong = make_server_files(directory / "wrong", ["other.test"])
        self.bundle = directory / "cas.pem"
        self.bundle.write_bytes(self.files.ca.read_bytes() + self.wrong.ca.read_bytes())

    def tls_origin(self, files: ServerFiles) -> tuple[Origin, int]:
        origin = Origin(reactor)
        key = KeyPair.load(files.key.read_bytes(), 1)
        cert = PrivateCertificate.load(files.certificate.read_bytes(), key, 1)
        options = CertificateOptions(privateKey=key.original, certificate=cert.original)
        port = reactor.listenSSL(0, origin.site, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        origin.port = port
        return origin, port.getHost().port

    async def test_https_uri_goes_through_a_connect_tunnel_verified_against_the_origin(
        self,
    ) -> None:
        """An https:// URI squeak fetches itself: CONNECT through the parent, TLS to the origin."""
        origin, port = self.tls_origin(self.files)
        ssl_ports = f"[acl]\nSSL_ports = {{ port = [443, {port}] }}\n"
        parent = self.parent("north", ssl_ports)
        child = self.child(
            peer_toml("north", parent.port),
            'never_direct = ["allow all"]',
            extra=f'[upstream]\nca_file = "{self.bundle}"\n',
        )
        url = f"https://127.0.0.1:{port}/echo/secure"
        status, _, body = await get(child.port, url)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual([r["uri"] for r in origin.requests], ["/echo/secure"])
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/north")
        # The tunnel is pooled for the next https request; the parent logs
        # it as a CONNECT once it closes.
        parents: Any = child.service.context.parents
        self.assertEqual(parents.clients["north"].pool.idle_count("https", "127.0.0.1", port), 1)
        await parents.close()
        for _ in range(20):
            if parent.log_lines():
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.last_fields(parent)[5], "CONNECT")
        # A certificate that does not name the origin is refused through
        # the tunnel as it is directly.
        _, wrong_port = self.tls_origin(self.wrong)
        ssl_ports = f"[acl]\nSSL_ports = {{ port = [443, {wrong_port}] }}\n"
        parent2 = start_squeak(self, "south", ssl_ports)
        child2 = start_squeak(
            self,
            "child2",
            peer_toml("south", parent2.port)
            + '[hierarchy]\nnever_direct = ["allow all"]\n'
            + f'[upstream]\nca_file = "{self.bundle}"\n',
        )
        status, head, body = await get(child2.port, f"https://127.0.0.1:{wrong_port}/echo")
        self.assertEqual(status, 502, head)
        self.assertIn(b"ERR_SECURE_CONNECT_FAIL", head + body)

    async def test_tls_to_the_parent(self) -> None:
        """tls = true: the child speaks TLS to the parent, verified against its name."""
        origin = self.origin()
        parent = self.parent(
            "north",
            f'[tls]\nhttps_port = ["127.0.0.1:0"]\ncertificate = "{self.files.certificate}"\n'
            f'key = "{self.files.key}"\n',
        )
        tls_port = parent.service.services[2].port.getHost().port
        child = self.child(
            peer_toml("north", tls_port, "tls = true"),
            extra=f'[upstream]\nca_file = "{self.bundle}"\n',
        )
        status, _, body = await get(child.port, origin.url("/echo"))
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(self.last_fields(child)[8], "FIRSTUP_PARENT/north")
        self.assertEqual(self.last_fields(parent)[6], origin.url("/echo"))
