"""
Tests for L{squeak.net.intercept}: the Host verification rule (pure tables),
original-destination lookup on fake and real sockets, L{SpliceProtocol} on
fake transports, and real interception through iptables C{REDIRECT} in a
private network namespace (see L{tests.netns}).
"""

from __future__ import annotations

import errno
import re
import shutil
import socket
import struct
from functools import cache
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.net import intercept
from squeak.net.intercept import (
    OriginalDestinationError,
    SpliceFactory,
    SpliceOutcome,
    SpliceProtocol,
    SpliceRecord,
    host_matches_destination,
    host_to_resolve,
    is_proxy_itself,
    original_destination,
)
from tests import netns
from tests.test_http_sni import TLS12_NONE, TLS13_SNI, record

# (why, Host, dst ip, dst port, resolved, default port, expected ok, part of the reason)
# fmt: off
HOST_CASES: list[tuple[str, bytes, str, int, list[str], int, bool, str]] = [
    ("the name resolves to the original destination",
     b"example.com", "93.184.216.34", 80, ["93.184.216.34"], 80, True, "resolves to"),
    ("one of several addresses is the destination",
     b"example.com", "10.0.0.2", 80, ["10.0.0.1", "10.0.0.2"], 80, True, "resolves to"),
    ("CVE-2009-0801: the name resolves elsewhere",
     b"example.com", "5.6.7.8", 80, ["1.2.3.4"], 80, False,
     "Host example.com resolves to 1.2.3.4, not to the original destination 5.6.7.8: "
     "response not cached"),
    ("the name does not resolve",
     b"nowhere.example", "5.6.7.8", 80, [], 80, False, "did not resolve"),
    ("RFC 9110 §7.2: the port is part of Host; 80 by default",
     b"example.com:8080", "1.2.3.4", 80, ["1.2.3.4"], 80, False, "port 8080"),
    ("an explicit default port",
     b"example.com:80", "1.2.3.4", 80, ["1.2.3.4"], 80, True, ""),
    ("443 is the default on an HTTPS listener",
     b"example.com", "1.2.3.4", 443, ["1.2.3.4"], 443, True, ""),
    ("a non-default destination port must be named",
     b"example.com", "1.2.3.4", 8080, ["1.2.3.4"], 80, False, "port 80"),
    ("a literal IPv4 Host equal to the destination",
     b"1.2.3.4", "1.2.3.4", 80, [], 80, True, "is the original destination"),
    ("a literal IPv4 Host that differs",
     b"1.2.3.5", "1.2.3.4", 80, [], 80, False, "not the original destination 1.2.3.4"),
    ("a literal IPv6 Host, compared as an address",
     b"[2001:DB8:0::1]:80", "2001:db8::1", 80, [], 80, True, ""),
    ("an IPv4-mapped destination equals its IPv4 address",
     b"1.2.3.4", "::ffff:1.2.3.4", 80, [], 80, True, ""),
    ("resolved IPv6 addresses are normalized",
     b"v6.example", "2001:db8::1", 80, ["2001:0db8:0:0::1"], 80, True, ""),
    ("host names are case-insensitive and may end in a dot",
     b"Example.COM.", "1.2.3.4", 80, ["1.2.3.4"], 80, True, "example.com"),
    ("an invalid Host is never verified",
     b"exa mple.com", "1.2.3.4", 80, ["1.2.3.4"], 80, False, "not valid"),
    ("an empty Host is never verified",
     b"", "1.2.3.4", 80, [], 80, False, "not valid"),
    ("RFC 9110 §4.2.4: userinfo in Host is refused",
     b"user@example.com", "1.2.3.4", 80, ["1.2.3.4"], 80, False, "not valid"),
    ("a numeric-looking non-canonical IPv4 Host is refused",
     b"0x01020304", "1.2.3.4", 80, ["1.2.3.4"], 80, False, "not valid"),
]
# fmt: on


class HostVerificationTests(SynchronousTestCase):
    """
    L{host_matches_destination}: the anti-poisoning rule for intercepted
    HTTP (CVE-2009-0801).
    """

    def test_table(self) -> None:
        """
        Each row gets its verdict and a reason saying why.
        """
        wrong = []
        for why, host, ip, port, resolved, default, ok, reason in HOST_CASES:
            got = host_matches_destination(host, ip, port, resolved, default_port=default)
            if got.ok is not ok or reason not in got.reason or not got.reason:
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_unpacks_as_a_pair(self) -> None:
        """
        The verdict unpacks as C{(ok, reason)}.
        """
        ok, reason = host_matches_destination(b"a.example", "1.2.3.4", 80, ["1.2.3.4"])
        self.assertEqual(
            (ok, reason), (True, "Host a.example resolves to the original destination 1.2.3.4")
        )

    def test_what_to_resolve(self) -> None:
        """
        L{host_to_resolve} names the host to look up, and nothing for
        literals or invalid values.
        """
        got = [
            host_to_resolve(value)
            for value in (b"Example.COM:8080", b"example.com.", b"1.2.3.4", b"[::1]:80", b"a b")
        ]
        self.assertEqual(got, ["example.com", "example.com", None, None, None])


class _FakeSocket:
    """
    Just enough of a socket for L{original_destination}.
    """

    def __init__(self, family: int, answer: bytes | OSError, peer: str = "10.0.0.5") -> None:
        self.family = family
        self._answer = answer
        self._peer = peer
        self.asked: list[tuple[int, int, int]] = []

    def getpeername(self) -> tuple[str, int]:
        return (self._peer, 5555)

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        self.asked.append((level, option, size))
        if isinstance(self._answer, OSError):
            raise self._answer
        return self._answer


def _sockaddr_in(host: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host)


def _sockaddr_in6(host: str, port: int) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6, host)
    return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + packed + b"\0" * 4


class OriginalDestinationTests(SynchronousTestCase):
    """
    L{original_destination} reads C{SO_ORIGINAL_DST}.
    """

    def test_ipv4(self) -> None:
        """
        An IPv4 socket is asked at C{SOL_IP} for a C{sockaddr_in}.
        """
        sock = _FakeSocket(socket.AF_INET, _sockaddr_in("93.184.216.34", 443) + b"\0" * 8)
        self.assertEqual(original_destination(sock), ("93.184.216.34", 443))
        self.assertEqual(sock.asked, [(socket.SOL_IP, 80, 16)])

    def test_ipv6(self) -> None:
        """
        An IPv6 socket is asked at C{SOL_IPV6} for a C{sockaddr_in6}
        (C{IP6T_SO_ORIGINAL_DST}).
        """
        sock = _FakeSocket(socket.AF_INET6, _sockaddr_in6("2001:db8::1", 80), peer="2001:db8::99")
        self.assertEqual(original_destination(sock), ("2001:db8::1", 80))
        self.assertEqual(sock.asked, [(intercept._SOL_IPV6, 80, 28)])

    def test_ipv4_client_on_a_dual_stack_socket(self) -> None:
        """
        A client on an IPv4-mapped address has an IPv4 conntrack entry, so
        it is looked up at C{SOL_IP}.
        """
        sock = _FakeSocket(
            socket.AF_INET6, _sockaddr_in("1.2.3.4", 80) + b"\0" * 8, peer="::ffff:10.0.0.5"
        )
        self.assertEqual(original_destination(sock), ("1.2.3.4", 80))
        self.assertEqual(sock.asked, [(socket.SOL_IP, 80, 16)])

    def test_errors(self) -> None:
        """
        C{ENOENT} (no NAT entry) and C{ENOPROTOOPT} (no NAT support) become
        L{OriginalDestinationError} with a reason for the log.
        """
        got = []
        for code in (errno.ENOENT, errno.ENOPROTOOPT, errno.EBADF):
            sock = _FakeSocket(socket.AF_INET, OSError(code, "x"))
            try:
                original_destination(sock)
            except OriginalDestinationError as e:
                got.append(str(e).split(" (")[0].split(":")[0])
        self.assertEqual(
            got,
            [
                "no NAT entry for this connection",
                "the kernel has no SO_ORIGINAL_DST for this socket",
                "getsockopt SO_ORIGINAL_DST failed",
            ],
        )

    def test_garbage_structure(self) -> None:
        """
        An answer that is no sockaddr is an error, not a wrong address.
        """
        sock = _FakeSocket(socket.AF_INET, b"\xff\xff")
        self.assertRaises(OriginalDestinationError, original_destination, sock)

    def test_real_socket_without_redirection(self) -> None:
        """
        On a real loopback connection that was not redirected, the kernel
        either has no NAT entry or returns the socket's own address, which
        L{is_proxy_itself} recognizes.
        """
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname()) as client:
                accepted, _ = server.accept()
                with accepted:
                    try:
                        dst = original_destination(accepted)
                    except OriginalDestinationError:
                        return
                    self.assertTrue(is_proxy_itself(dst, [accepted.getsockname()]))
                    del client

    def test_is_proxy_itself(self) -> None:
        """
        The original destination equal to a local address (compared as an
        address) means the client came directly.
        """
        local = [("127.0.0.1", 3129), ("2001:db8::1", 3129)]
        got = [
            is_proxy_itself(dst, local)
            for dst in (
                ("127.0.0.1", 3129),
                ("::ffff:127.0.0.1", 3129),
                ("2001:DB8:0::1", 3129),
                ("127.0.0.1", 80),
                ("10.0.0.1", 3129),
            )
        ]
        self.assertEqual(got, [True, True, True, False, False])


class _Transport(StringTransport):
    """
    A L{StringTransport} that, like a TCP transport, allows unregistering
    when no producer is registered.
    """

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


CLIENT = IPv4Address("TCP", "192.0.2.7", 50000)
LISTENER = IPv4Address("TCP", "127.0.0.1", 3130)
DESTINATION = ("198.51.100.9", 443)


class SpliceProtocolTests(SynchronousTestCase):
    """
    L{SpliceProtocol} on fake transports and a memory reactor.
    """

    timeout = 30

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.records: list[SpliceRecord] = []
        self.decisions: list[tuple[str | None, tuple[str, int], tuple[str, int]]] = []
        self.answer: Any = True

    def decide(self, sni: str | None, dst: tuple[str, int], client: tuple[str, int]) -> Any:
        self.decisions.append((sni, dst, client))
        return self.answer

    def splice(self, destination: Any = DESTINATION, **options: Any) -> SpliceProtocol:
        def find(transport: Any) -> tuple[str, int]:
            if isinstance(destination, Exception):
                raise destination
            return tuple(destination)  # type: ignore[return-value]

        factory = SpliceFactory(
            self.reactor, self.decide, self.records.append, find_destination=find, **options
        )
        protocol = factory.buildProtocol(CLIENT)
        self.client = _Transport(hostAddress=LISTENER, peerAddress=CLIENT)
        protocol.makeConnection(self.client)
        return protocol

    def outcomes(self) -> list[SpliceOutcome]:
        return [r.outcome for r in self.records]

    def connect_upstream(self, index: int = 0) -> tuple[Any, _Transport]:
        """
        Complete the C{index}th connection the splice started.
        """
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[index]
        upstream = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = _Transport()
        upstream.makeConnection(transport)
        return upstream, transport

    def test_garbage_is_closed(self) -> None:
        """
        Bytes that are not TLS close the connection at once, without asking
        for a decision or connecting anywhere.
        """
        splice = self.splice()
        splice.dataReceived(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertTrue(self.client.disconnecting)
        self.assertEqual((self.decisions, self.reactor.tcpClients), ([], []))
        [record_] = self.records
        self.assertEqual(record_.outcome, SpliceOutcome.NOT_TLS)
        self.assertIn("0x47", record_.reason)
        self.assertEqual((record_.from_client, record_.to_client), (35, 0))

    def test_malformed_hello_is_closed(self) -> None:
        """
        A TLS record whose hello breaks the rules is closed as MALFORMED.
        """
        splice = self.splice()
        splice.dataReceived(record(b"\x02\x00\x00\x00"))
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.MALFORMED])

    def test_no_sni_asks_with_none(self) -> None:
        """
        A hello without SNI asks for a decision with C{None}, the original
        destination and the client's address.
        """
        splice = self.splice()
        splice.dataReceived(TLS12_NONE)
        self.assertEqual(self.decisions, [(None, DESTINATION, ("192.0.2.7", 50000))])

    def test_denied_closes_without_connecting(self) -> None:
        """
        A denial closes the client connection and never connects upstream.
        """
        self.answer = False
        splice = self.splice()
        splice.dataReceived(TLS13_SNI)
        self.assertEqual(self.decisions[0][0], "www.example.com")
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.reactor.tcpClients, [])
        [record_] = self.records
        self.assertEqual(
            (record_.outcome, record_.sni, record_.destination, record_.from_client),
            (SpliceOutcome.DENIED, "www.example.com", DESTINATION, len(TLS13_SNI)),
        )

    def test_allowed_connects_to_the_original_destination_and_replays(self) -> None:
        """
        An allowed hello, received in pieces, makes the splice connect to
        the original destination address (not the SNI name) with the
        connect timeout, replay every byte read, and relay both ways.
        """
        splice = self.splice(connect_timeout=7.0)
        splice.dataReceived(TLS13_SNI[:100])
        self.assertEqual(self.decisions, [])
        splice.dataReceived(TLS13_SNI[100:])
        self.assertEqual(self.client.producerState, "paused")
        [(host, port, _factory, timeout, _bind)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), (*DESTINATION, 7.0))
        # Bytes that arrive before the upstream is connected are kept.
        splice.dataReceived(b"early")
        _upstream, upstream_transport = self.connect_upstream()
        self.assertEqual(upstream_transport.value(), TLS13_SNI + b"early")
        self.assertEqual(self.client.producerState, "producing")
        splice.dataReceived(b"more")
        _upstream.dataReceived(b"server hello")
        self.assertEqual(upstream_transport.value(), TLS13_SNI + b"earlymore")
        self.assertEqual(self.client.value(), b"server hello")
        self.assertEqual(self.records, [])
        splice.connectionLost(Failure(ConnectionRefusedError()))
        [record_] = self.records
        self.assertEqual(
            (record_.outcome, record_.from_client, record_.to_client, record_.sni),
            (SpliceOutcome.SPLICED, len(TLS13_SNI) + 9, 12, "www.example.com"),
        )
        self.assertTrue(upstream_transport.disconnecting)

    def test_asynchronous_decision(self) -> None:
        """
        A decision may come later, as a L{Deferred}; reading stays paused
        until then.
        """
        self.answer = defer.Deferred()
        splice = self.splice()
        splice.dataReceived(TLS13_SNI)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.client.producerState, "paused")
        self.answer.callback(True)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_hello_timeout(self) -> None:
        """
        A client that sends no complete hello within C{hello_timeout} is
        closed.
        """
        splice = self.splice(hello_timeout=5.0)
        splice.dataReceived(TLS13_SNI[:10])
        self.reactor.advance(4.9)
        self.assertFalse(self.client.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.HELLO_TIMEOUT])

    def test_decision_timeout(self) -> None:
        """
        A decision that does not come within C{hello_timeout} closes the
        connection; a late answer is ignored.
        """
        self.answer = defer.Deferred()
        splice = self.splice(hello_timeout=5.0)
        splice.dataReceived(TLS13_SNI)
        self.reactor.advance(5)
        self.assertTrue(self.client.disconnecting)
        self.answer.callback(True)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.outcomes(), [SpliceOutcome.HELLO_TIMEOUT])
        self.assertIn("no decision", self.records[0].reason)

    def test_connect_failure(self) -> None:
        """
        A failed or timed-out connection to the destination closes the
        client connection.
        """
        splice = self.splice()
        splice.dataReceived(TLS13_SNI)
        _host, _port, factory, _timeout, _bind = self.reactor.tcpClients[0]
        factory.clientConnectionFailed(self.reactor.connectors[0], Failure(TimeoutError()))
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.CONNECT_FAILED])
        self.assertIn("timeout", self.records[0].reason)

    def test_client_gone_while_connecting(self) -> None:
        """
        If the client leaves while the splice connects, the connection
        attempt is stopped and an upstream that connects anyway is closed.
        """
        splice = self.splice()
        splice.dataReceived(TLS13_SNI)
        splice.connectionLost(Failure(ConnectionRefusedError()))
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.CLIENT_CLOSED])
        _upstream, upstream_transport = self.connect_upstream()
        self.assertTrue(upstream_transport.disconnecting)
        self.assertEqual(upstream_transport.value(), b"")

    def test_client_half_close_before_hello(self) -> None:
        """
        A client that shuts down its sending side before a complete hello
        is closed.
        """
        splice = self.splice()
        splice.dataReceived(TLS13_SNI[:10])
        splice.readConnectionLost()
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.CLIENT_CLOSED])

    def test_no_original_destination(self) -> None:
        """
        A connection without an original destination is closed at once.
        """
        self.splice(destination=OriginalDestinationError("no NAT entry"))
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.NO_DESTINATION])
        self.assertEqual(self.records[0].reason, "no NAT entry")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_not_intercepted(self) -> None:
        """
        A client that connected to the listener directly (its original
        destination is the listener itself) is closed, never looped.
        """
        self.splice(destination=(LISTENER.host, LISTENER.port))
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.NOT_INTERCEPTED])

    def test_decision_error(self) -> None:
        """
        A failing decision callback closes the connection and is logged.
        """
        self.answer = defer.fail(ValueError("acl bug"))
        splice = self.splice()
        splice.dataReceived(TLS13_SNI)
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.outcomes(), [SpliceOutcome.ERROR])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_idle_relay_is_closed(self) -> None:
        """
        Once relaying, a splice that carries nothing for the idle timeout is
        closed and recorded as such.
        """
        splice = self.splice(idle_timeout=60.0)
        splice.dataReceived(TLS13_SNI)
        self.connect_upstream()
        self.reactor.advance(60)
        self.reactor.advance(60)
        self.assertTrue(self.client.disconnecting or self.client.disconnected)
        splice.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.outcomes(), [SpliceOutcome.IDLE_TIMEOUT])

    def test_finished_once(self) -> None:
        """
        C{on_finished} is called exactly once, whatever happens after.
        """
        splice = self.splice()
        splice.dataReceived(b"\x00garbage")
        splice.dataReceived(b"more")
        splice.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.outcomes(), [SpliceOutcome.NOT_TLS])
        self.assertIsInstance(splice, SpliceProtocol)


@cache
def _scenario() -> dict[str, Any]:
    return netns.run_scenario("splice")


class NamespaceInterceptTests(SynchronousTestCase):
    """
    Real interception: in a new network namespace, iptables C{REDIRECT}s
    connections for C{127.0.0.2:443} into a splice listener (one scenario
    run shared by these tests, see L{tests.netns}).
    """

    timeout = 120

    def setUp(self) -> None:
        missing = netns.missing_prerequisites()
        if missing is not None:
            raise SkipTest(f"real interception tests need a network namespace: {missing}")
        self.result = _scenario()
        self.assertNotIn("error", self.result, self.result.get("error"))

    def client(self, label: str) -> dict[str, Any]:
        seen: dict[str, Any] = self.result["clients"][label]
        return seen

    def test_redirected_client_reaches_the_origin(self) -> None:
        """
        A client connecting to 127.0.0.2:443 is redirected into the splice
        listener, whose C{original_destination} is 127.0.0.2:443; the SNI
        is read, the origin sees the same name in the replayed hello, and
        the echo comes back through the verified TLS session.
        """
        allowed = self.client("allowed")
        self.assertEqual(allowed["echo"], "echo:ping through the splice", allowed)
        [rec] = allowed["records"]
        self.assertEqual(
            (rec["outcome"], rec["sni"], rec["destination"]),
            ("spliced", netns.ALLOWED_NAME, [netns.ORIGIN_V4, 443]),
        )
        self.assertNotEqual(rec["client"][0], netns.ORIGIN_V4)
        self.assertGreater(rec["to_client"], 0)
        self.assertIn(
            {"servername": netns.ALLOWED_NAME, "local": netns.ORIGIN_V4}, self.result["origin"]
        )

    def test_hello_without_sni(self) -> None:
        """
        A hello without SNI is decided on the original destination alone
        and spliced.
        """
        no_sni = self.client("no_sni")
        self.assertEqual(no_sni["echo"], "echo:ping through the splice", no_sni)
        self.assertIn([None, [netns.ORIGIN_V4, 443], "127.0.0.1"], self.result["decisions"])
        self.assertIn({"servername": None, "local": netns.ORIGIN_V4}, self.result["origin"])

    def test_denied_sni_is_closed(self) -> None:
        """
        A denied SNI gets the connection closed, and the origin never sees
        the client.
        """
        denied = self.client("denied")
        self.assertFalse(denied["ok"])
        self.assertEqual([r["outcome"] for r in denied["records"]], ["denied"])
        names = [seen["servername"] for seen in self.result["origin"]]
        self.assertNotIn(netns.DENIED_NAME, names)

    def test_garbage_is_closed(self) -> None:
        """
        Plain HTTP sent to the intercepted TLS port is closed unanswered.
        """
        garbage = self.client("garbage")
        self.assertEqual((garbage["ok"], garbage["received"]), (True, ""), garbage)
        self.assertEqual([r["outcome"] for r in garbage["records"]], ["not-tls"])

    def test_direct_connection_is_not_looped(self) -> None:
        """
        A client connecting to the splice listener itself (no REDIRECT) is
        closed: its original destination is the listener.
        """
        direct = self.client("direct")
        self.assertFalse(direct["ok"])
        self.assertEqual([r["outcome"] for r in direct["records"]], ["not-intercepted"])

    def test_ipv6(self) -> None:
        """
        The same through ip6tables: C{IP6T_SO_ORIGINAL_DST} gives the IPv6
        original destination.
        """
        if self.result["ipv6"] != "ok":
            raise SkipTest(f"IPv6 interception: {self.result['ipv6']}")
        ipv6 = self.client("ipv6")
        self.assertEqual(ipv6["echo"], "echo:ping through the splice", ipv6)
        [rec] = ipv6["records"]
        self.assertEqual((rec["outcome"], rec["destination"]), ("spliced", [netns.ORIGIN_V6, 443]))


def _recipe_blocks(language: str, heading: str) -> list[str]:
    """
    The code blocks of C{language} in the section of docs/transparent.md
    under C{heading}.
    """
    text = (Path(__file__).resolve().parent.parent / "docs" / "transparent.md").read_text()
    section = re.split(r"\n#{2,4} ", text.split(heading, 1)[1], maxsplit=1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


class TransparentRecipeTests(SynchronousTestCase):
    """
    The firewall rules of docs/transparent.md, run literally in a
    throw-away network namespace with a stand-in LAN interface.
    """

    timeout = 60

    def setUp(self) -> None:
        missing = netns.missing_prerequisites()
        if missing is not None:
            raise SkipTest(f"checking the firewall recipe needs a network namespace: {missing}")

    def _apply(self, script: str) -> None:
        done = netns.run_shell(netns.GATEWAY_SETUP + script)
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_iptables_recipe(self) -> None:
        """
        The iptables/ip6tables rules (redirects, direct-port drop, QUIC
        block) are accepted as written.
        """
        blocks = _recipe_blocks("sh", "### With iptables") + _recipe_blocks("sh", "### QUIC")
        self.assertEqual(len(blocks), 2)
        self._apply("\n".join(blocks))

    def test_output_chain_recipe(self) -> None:
        """
        The OUTPUT-chain rules for the gateway's own traffic are accepted
        (with C{nobody} standing in for the C{squeak} user).
        """
        [block] = _recipe_blocks("sh", "### Also intercepting")
        self._apply(block.replace("--uid-owner squeak", "--uid-owner nobody"))

    def test_nftables_recipe(self) -> None:
        """
        The nftables ruleset loads as written.
        """
        if shutil.which("nft") is None:
            raise SkipTest("nft not found on PATH (bash .ci/setup-netns installs nftables)")
        [ruleset] = _recipe_blocks("", "### With nftables")
        self._apply(f"nft -f - <<'RULES'\n{ruleset}RULES\n")


class SqueakInterceptTests(SynchronousTestCase):
    """
    The whole proxy as a transparent gateway, in a network namespace:
    redirected HTTP reaches the right origin and is cached when Host
    matches; a forged Host still reaches the original destination but is
    never cached; redirected TLS is spliced or refused by dstdomain; the
    intercept port refuses direct use.
    """

    def setUp(self) -> None:
        missing = netns.missing_prerequisites()
        if missing is not None:
            raise SkipTest(f"real interception tests need a network namespace: {missing}")
        self.result = _squeak_scenario()
        self.assertNotIn("error", self.result, self.result.get("error"))

    def test_redirected_http_is_proxied_and_cached(self) -> None:
        """
        Two requests for http://127.0.0.2/page (Host matching the original
        destination) reach the origin once; the second is a cache hit.
        """
        clients = self.result["clients"]
        self.assertIn("origin answer 1", clients["first"]["received"])
        self.assertIn("origin answer 1", clients["second"]["received"])
        self.assertIn("X-Cache: HIT from gateway.test", clients["second"]["received"])

    def test_redirected_http_over_ipv6(self) -> None:
        """
        The same through ip6tables: a request for http://[fd00::2]/page is
        redirected to the IPv6 intercept listener, C{IP6T_SO_ORIGINAL_DST}
        names the origin, which is reached once; the second request is a
        cache hit, and the access log names the IPv6 origin.
        """
        if self.result["ipv6"] != "ok":
            raise SkipTest(f"IPv6 interception: {self.result['ipv6']}")
        clients = self.result["clients"]
        self.assertIn("origin answer 1", clients["v6_first"]["received"])
        self.assertIn("origin answer 1", clients["v6_second"]["received"])
        self.assertIn("X-Cache: HIT from gateway.test", clients["v6_second"]["received"])
        self.assertEqual(self.result["counts_v6"], {"/page": 1})
        self.assertEqual(self.result["hosts_v6"], [f"[{netns.ORIGIN_V6}]"])
        self.assertIn(f"HIER_DIRECT/{netns.ORIGIN_V6}", self.result["access_log"])

    def test_forged_host_goes_to_the_original_destination_uncached(self) -> None:
        """
        A Host that does not resolve to the original destination is sent
        there anyway (never to the Host) and its answers are not cached.
        """
        clients = self.result["clients"]
        self.assertIn("origin answer 2", clients["forged1"]["received"])
        self.assertIn("origin answer 3", clients["forged2"]["received"])
        self.assertEqual(self.result["counts"], {"/page": 3})
        self.assertIn("forged.invalid", self.result["hosts"])

    def test_tls_is_spliced_by_sni_rules(self) -> None:
        """
        Redirected TLS with an allowed SNI is spliced to the origin; a
        blocked SNI (dstdomain) is closed; both are logged.
        """
        clients = self.result["clients"]
        self.assertEqual(clients["tls_allowed"]["echo"], "echo:ping through the splice")
        self.assertFalse(clients["tls_denied"]["ok"])
        log = self.result["access_log"]
        self.assertIn("TCP_TUNNEL/200", log)
        self.assertIn("TCP_DENIED/403", log)
        self.assertIn("denied.test:443", log)

    def test_direct_use_of_the_intercept_port_is_refused(self) -> None:
        """
        A request sent straight to the intercept port (no redirection) gets
        a 400 page saying so, never a loop.
        """
        direct = self.result["clients"]["direct"]
        self.assertTrue(direct.startswith("HTTP/1.1 400"), direct[:80])
        self.assertIn("redirected by the firewall", direct)


@cache
def _squeak_scenario() -> dict[str, Any]:
    return netns.run_scenario("squeak")
