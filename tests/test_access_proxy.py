"""
Access rules and proxy authentication on a running proxy, from several
loopback client addresses: allowed, denied and 407 paths, no open-proxy
path, garbage credentials, an htpasswd file edited while running, and no
credentials ever reaching the origin.
"""

from __future__ import annotations

import base64
import os
import socket
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.threadpool import ThreadPool

from squeak.access.auth import hash_password
from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.resolvers import ScriptedResolver


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _Client:
    """
    A raw HTTP client bound to a chosen loopback source address.
    """

    def __init__(self, proxy_port: int, source: str) -> None:
        self.proxy_port = proxy_port
        self.source = source

    def send(self, request: bytes) -> bytes:
        with socket.socket() as s:
            s.settimeout(10)
            s.bind((self.source, 0))
            s.connect(("127.0.0.1", self.proxy_port))
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    def get(self, url: str, *headers: str) -> bytes:
        extra = "".join(f"{h}\r\n" for h in headers)
        return self.send(
            f"GET {url} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()
        )


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


class DefaultRulesTests(ProxyTestCase):
    """
    The shipped default rules leave no open-proxy path.
    """

    async def test_lan_client_cannot_reach_the_proxy_hosts_services(self) -> None:
        """
        A client that is not this host (127.0.0.2) asking for a service on
        127.0.0.1, or for the proxy's own port, is denied (to_localhost);
        TCP_DENIED/403 is logged and nothing reaches the origin.
        """
        origin = Origin(reactor)
        self.listen(origin)
        client = _Client(self.proxy_port, "127.0.0.2")
        to_origin = await threads.deferToThread(client.get, origin.url("/echo"))
        to_proxy = await threads.deferToThread(client.get, f"http://127.0.0.1:{self.proxy_port}/")
        self.assertEqual((_status(to_origin), _status(to_proxy)), (403, 403))
        self.assertIn(b"ERR_ACCESS_DENIED", to_origin)
        self.assertEqual(origin.requests, [])
        lines = self.access_log_lines()
        self.assertTrue(all(" 127.0.0.2 TCP_DENIED/403 " in line for line in lines), lines)

    async def test_connect_only_to_ssl_ports(self) -> None:
        """
        CONNECT to port 22 (or any non-SSL port) is denied before any
        connection is made.
        """
        client = _Client(self.proxy_port, "127.0.0.1")
        raw = await threads.deferToThread(
            client.send, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(_status(raw), 403)

    async def test_request_to_the_proxy_itself_does_not_loop(self) -> None:
        """
        A local client asking the proxy for its own address gets the loop
        page, not an endless chain of requests.
        """
        client = _Client(self.proxy_port, "127.0.0.1")
        raw = await threads.deferToThread(client.get, f"http://127.0.0.1:{self.proxy_port}/")
        self.assertEqual(_status(raw), 508)
        self.assertIn(b"ERR_FORWARDING_LOOP", raw)

    async def test_unsafe_port_is_denied(self) -> None:
        """
        Plain requests to ports outside Safe_ports (25) are denied.
        """
        client = _Client(self.proxy_port, "127.0.0.1")
        raw = await threads.deferToThread(client.get, "http://127.0.0.1:25/")
        self.assertEqual(_status(raw), 403)


class AuthenticationTests(ProxyTestCase):
    """
    Rules with proxy_auth ask for Basic credentials, verified against an
    htpasswd file.
    """

    def setUp(self) -> Any:
        result = super().setUp()
        self.htpasswd = os.path.join(self.directory, "htpasswd")
        self._write_htpasswd({"alice": "wonderland", "bob": "builder"})
        self.use_access_config(
            f"""
[acl]
localhost = {{ src = ["127.0.0.0/8"] }}
staff_net = {{ src = ["127.0.0.2/32"] }}
readers = {{ proxy_auth = ["alice"] }}

[access]
http_access = [
  "deny !Safe_ports",
  "deny CONNECT !SSL_ports",
  "deny to_localhost !localhost",
  "allow staff_net",
  "allow localhost readers",
  "deny all",
]

[auth]
htpasswd = "{self.htpasswd}"
realm = "squeak test"
credentials_ttl = "1h"
"""
        )
        self.origin = Origin(reactor)
        self.listen(self.origin)
        return result

    def _write_htpasswd(self, users: dict[str, str]) -> None:
        lines = "".join(f"{u}:{hash_password(p, rounds=4)}\n" for u, p in users.items())
        temporary = self.htpasswd + ".new"
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(lines)
        os.replace(temporary, self.htpasswd)

    def _count_verifications(self) -> list[str]:
        """
        Record the user of every password verification from now on.
        """
        authenticator = self.service.context.gatekeeper._auth
        calls: list[str] = []
        verify = authenticator.verify

        def counting(user: str, password: str) -> Any:
            calls.append(user)
            return verify(user, password)

        authenticator.verify = counting
        return calls

    async def _get(self, source: str, *headers: str) -> bytes:
        client = _Client(self.proxy_port, source)
        return await threads.deferToThread(client.get, self.origin.url("/echo"), *headers)

    async def test_rules_by_source_and_user(self) -> None:
        """
        127.0.0.2 is allowed without credentials; 127.0.0.3 gets 407 with a
        Basic challenge, then 200 as alice; bob (a valid user not in the
        rule) is denied.
        """
        staff = await self._get("127.0.0.2")
        anonymous = await self._get("127.0.0.3")
        alice = await self._get(
            "127.0.0.3", f"Proxy-Authorization: {_basic('alice', 'wonderland')}"
        )
        bob = await self._get("127.0.0.3", f"Proxy-Authorization: {_basic('bob', 'builder')}")
        self.assertEqual(
            [_status(r) for r in (staff, anonymous, alice, bob)], [200, 407, 200, 403]
        )
        self.assertIn(b'Proxy-Authenticate: Basic realm="squeak test"', anonymous)
        self.assertIn(b"ERR_CACHE_ACCESS_DENIED", anonymous)

    async def test_credentials_never_reach_the_origin_or_the_log(self) -> None:
        """
        The origin never sees Proxy-Authorization; the access log names the
        user and holds no password or credentials.
        """
        header = _basic("alice", "wonderland")
        await self._get("127.0.0.3", f"Proxy-Authorization: {header}")
        [seen] = self.origin.requests
        self.assertEqual([k for k, _ in seen["headers"] if k.lower() == "proxy-authorization"], [])
        [line] = self.access_log_lines()
        self.assertIn(" alice HIER_DIRECT/", line)
        self.assertNotIn("wonderland", line)
        self.assertNotIn(header.split()[1], line)

    async def test_wrong_and_garbage_credentials_get_407(self) -> None:
        """
        A wrong password, malformed base64, no colon, another scheme, an
        empty value: each gets 407, never a 500.
        """
        values = [
            _basic("alice", "wrong"),
            "Basic !!!not-base64!!!",
            "Basic " + base64.b64encode(b"no-colon-here").decode(),
            "Digest username=alice",
            "Basic",
            "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
            "Basic " + "A" * 5000,
        ]
        statuses = []
        for value in values:
            raw = await self._get("127.0.0.3", f"Proxy-Authorization: {value}")
            statuses.append(_status(raw))
        self.assertEqual(statuses, [407] * len(values))
        self.assertEqual(self.origin.requests, [])

    async def test_one_bcrypt_verification_per_ttl(self) -> None:
        """
        A client repeating the same credentials costs one password
        verification, not one per request.
        """
        calls = self._count_verifications()
        header = f"Proxy-Authorization: {_basic('alice', 'wonderland')}"
        statuses = [_status(await self._get("127.0.0.3", header)) for _ in range(5)]
        self.assertEqual((statuses, calls), ([200] * 5, ["alice"]))

    async def test_a_burst_of_new_credentials_shares_one_check(self) -> None:
        """
        Twenty connections arriving at once with the same, not yet verified
        credentials cost one password verification, and all are served.
        """
        calls = self._count_verifications()
        header = f"Proxy-Authorization: {_basic('alice', 'wonderland')}"
        clients = ThreadPool(minthreads=0, maxthreads=32, name="burst")
        clients.start()
        self.addCleanup(clients.stop)
        client = _Client(self.proxy_port, "127.0.0.3")
        answers = await defer.gatherResults(
            [
                threads.deferToThreadPool(
                    reactor, clients, client.get, self.origin.url("/echo"), header
                )
                for _ in range(20)
            ]
        )
        self.assertEqual(([_status(a) for a in answers], calls), ([200] * 20, ["alice"]))

    async def test_htpasswd_edited_while_running(self) -> None:
        """
        After the htpasswd file changes, the old password stops working and
        the new one works, with no restart.
        """
        old = f"Proxy-Authorization: {_basic('alice', 'wonderland')}"
        new = f"Proxy-Authorization: {_basic('alice', 'looking-glass')}"
        self.assertEqual(_status(await self._get("127.0.0.3", old)), 200)
        self._write_htpasswd({"alice": "looking-glass"})
        await deferLater(reactor, 1.1, lambda: None)  # the file is checked once a second
        self.assertEqual(_status(await self._get("127.0.0.3", old)), 407)
        self.assertEqual(_status(await self._get("127.0.0.3", new)), 200)


class DnsRebindingTests(ProxyTestCase):
    """
    A name that resolves to an allowed address for the rules and to a
    denied one for the connection made just after (DNS rebinding) does not
    get through: the address actually connected to is checked against the
    rules too, on new and pooled connections, for requests, upgrades and
    CONNECT tunnels.
    """

    def _resolver(self, *answers: str) -> ScriptedResolver:
        """
        Resolve C{rebind.test} to each of C{answers} in turn (the last
        repeating); nothing else resolves.
        """
        resolver = ScriptedResolver({"rebind.test": answers})
        previous = reactor.installNameResolver(resolver)
        self.addCleanup(reactor.installNameResolver, previous)
        return resolver

    def _recording_origin(self) -> tuple[int, list[bytes]]:
        """
        A loopback TCP server that keeps whatever it receives: its port,
        and the list the bytes go to.
        """
        received: list[bytes] = []
        server = Factory.forProtocol(_Recorder)
        server.received = received  # type: ignore[attr-defined]
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening.getHost().port, received

    async def test_request_to_a_rebound_name_is_denied(self) -> None:
        """
        The rules see 192.0.2.1 for a LAN client (127.0.0.2), the connection
        goes to 127.0.0.1: 403 naming the address, TCP_DENIED logged, and
        the origin gets nothing.
        """
        origin = Origin(reactor)
        port = self.listen(origin)
        resolver = self._resolver("192.0.2.1", "127.0.0.1")
        client = _Client(self.proxy_port, "127.0.0.2")
        answer = await threads.deferToThread(client.get, f"http://rebind.test:{port}/echo")
        self.assertEqual(_status(answer), 403, answer[:200])
        self.assertIn(b"ERR_ACCESS_DENIED", answer)
        self.assertIn(b"the connection to rebind.test went to 127.0.0.1", answer)
        self.assertEqual(resolver.lookups["rebind.test"], 2)
        self.assertEqual(origin.requests, [])
        [line] = self.access_log_lines()
        self.assertIn(" 127.0.0.2 TCP_DENIED/403 ", line)

    async def test_allow_rule_on_dst_sees_the_address_connected_to(self) -> None:
        """
        With C{allow localnet origin} (C{origin} = dst 127.0.0.3): a name
        that resolves to 127.0.0.3 both times is served (the control); one
        that resolves to 127.0.0.3 for the rules and 127.0.0.1 for the
        connection is refused by C{deny all}.
        """
        origin = Origin(reactor)
        port = origin.listen("127.0.0.3")
        self.addCleanup(origin.port.stopListening)
        elsewhere = Origin(reactor)
        self.listen(elsewhere)
        self.use_access_config(
            """
            [acl]
            origin = { dst = ["127.0.0.3/32"] }
            [access]
            http_access = ["allow localnet origin", "deny all"]
            """
        )
        client = _Client(self.proxy_port, "127.0.0.2")
        self._resolver("127.0.0.3")
        served = await threads.deferToThread(client.get, f"http://rebind.test:{port}/echo")
        self.assertEqual(_status(served), 200, served[:200])
        self.assertEqual(len(origin.requests), 1)
        # The rebound name, on the other origin's port (127.0.0.3 has
        # nothing there, 127.0.0.1 has it).
        other = elsewhere.port.getHost().port
        self._resolver("127.0.0.3", "127.0.0.1")
        refused = await threads.deferToThread(client.get, f"http://rebind.test:{other}/echo")
        self.assertEqual(_status(refused), 403, refused[:200])
        self.assertIn(b"by rule &quot;deny all&quot;", refused)
        self.assertEqual(elsewhere.requests, [])

    async def test_pooled_connection_to_a_denied_address_is_not_used(self) -> None:
        """
        A connection to 127.0.0.1 opened for the proxy's own host (which may
        reach it) stays pooled; a LAN client whose rules saw 192.0.2.1 for
        the same name is refused it (403), and the connection is still
        there for the next allowed request.
        """
        origin = Origin(reactor)
        port = self.listen(origin)
        resolver = self._resolver("127.0.0.1", "192.0.2.1")
        url = f"http://rebind.test:{port}/echo"
        local = _Client(self.proxy_port, "127.0.0.1")
        lan = _Client(self.proxy_port, "127.0.0.2")
        first = await threads.deferToThread(local.get, url)
        refused = await threads.deferToThread(lan.get, url)
        again = await threads.deferToThread(local.get, url)
        self.assertEqual([_status(first), _status(refused), _status(again)], [200, 403, 200])
        self.assertIn(b"went to 127.0.0.1", refused)
        self.assertEqual(len(origin.requests), 2)
        self.assertEqual(origin.connections, 1)
        # The connection's lookup, then the rules' for the LAN client.
        self.assertEqual(resolver.lookups["rebind.test"], 2)

    async def test_denied_revalidation_is_not_answered_from_a_stale_copy(self) -> None:
        """
        A stale entry that allows stale-if-error: when the revalidation's
        connection is refused (the LAN client's rules saw 192.0.2.1, the
        pooled connection goes to 127.0.0.1), the answer is the 403, not
        the stale copy that an origin failure would get.
        """
        origin = Origin(reactor)
        port = self.listen(origin)
        self._resolver("127.0.0.1", "192.0.2.1")
        url = f"http://rebind.test:{port}/cached/s?cc=max-age=0,stale-if-error=600&etag=v1"
        local = _Client(self.proxy_port, "127.0.0.1")
        lan = _Client(self.proxy_port, "127.0.0.2")
        stored = await threads.deferToThread(local.get, url)
        refused = await threads.deferToThread(lan.get, url)
        self.assertEqual((_status(stored), _status(refused)), (200, 403), refused[:300])
        self.assertEqual(origin.counts[b"/cached/s"], 1)

    async def test_tunnel_to_a_rebound_name_is_denied(self) -> None:
        """
        CONNECT: the tunnel is not opened (403, no 200) and nothing is
        relayed to the address connected to.
        """
        port, received = self._recording_origin()
        self.use_access_config(
            f"""
            [acl]
            SSL_ports = {{ port = [{port}] }}
            [access]
            http_access = [
              "deny CONNECT !SSL_ports",
              "deny to_localhost !localhost",
              "allow localnet",
              "deny all",
            ]
            """
        )
        self._resolver("192.0.2.1", "127.0.0.1")
        client = _Client(self.proxy_port, "127.0.0.2")
        answer = await threads.deferToThread(
            client.send,
            f"CONNECT rebind.test:{port} HTTP/1.1\r\nHost: rebind.test:{port}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        self.assertEqual(_status(answer), 403, answer[:200])
        self.assertIn(b"went to 127.0.0.1", answer)
        self.assertEqual(b"".join(received), b"")

    async def test_upgrade_to_a_rebound_name_is_denied(self) -> None:
        """
        A WebSocket upgrade: the request head is never sent to the address
        connected to.
        """
        port, received = self._recording_origin()
        self._resolver("192.0.2.1", "127.0.0.1")
        client = _Client(self.proxy_port, "127.0.0.2")
        answer = await threads.deferToThread(
            client.get,
            f"http://rebind.test:{port}/chat",
            "Upgrade: websocket",
            "Connection: Upgrade",
        )
        self.assertEqual(_status(answer), 403, answer[:200])
        self.assertIn(b"went to 127.0.0.1", answer)
        # Give a stray write time to arrive before looking.
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(b"".join(received), b"")


class _Recorder(Protocol):
    """Keeps whatever a client sends (the factory's C{received} list)."""

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)
