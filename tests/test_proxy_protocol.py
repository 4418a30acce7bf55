"""
Protocol strictness over real loopback sockets (issue 13): interim
responses relayed, upgrades only to the protocols the proxy relays, framing
look-alike fields dropped, and registered methods in another case refused.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher

from tests.origins import ScriptedOrigin
from tests.proxyharness import ProxyTestCase


def _in_thread(function: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThread(function, *args)


def _heads(raw: bytes) -> list[bytes]:
    """
    The status lines of the responses in C{raw}, in order (the bodies in
    these tests hold no CRLF).
    """
    return [line for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def _field_names(head: bytes) -> set[bytes]:
    """
    The lower-cased field names of a request head as the origin got it.
    """
    return {line.partition(b":")[0].lower() for line in head.split(b"\r\n")[1:]}


class FramingLookalikeTests(ProxyTestCase):
    """
    Request fields whose names are a framing or connection-specific
    field's with C{_} for C{-} never reach the origin (item 8).
    """

    async def test_dropped_and_logged(self) -> None:
        """
        C{Content_Length}, C{Transfer_Encoding} and C{Proxy_Connection} are
        not forwarded, the service log names them and the client, and other
        underscore fields are relayed.
        """
        messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            messages.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        origin = ScriptedOrigin(
            reactor, [(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False)]
        )
        self.listen(origin)
        request = (
            f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Content_Length: 5\r\nTransfer_Encoding: chunked\r\n"
            + b"proxy_connection: keep-alive\r\nX_Custom: kept\r\nConnection: close\r\n\r\n"
        )
        raw = await _in_thread(self.raw_exchange, request)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:200])
        self.assertTrue(raw.endswith(b"\r\n\r\nok"))
        [head] = origin.heads
        names = _field_names(head)
        self.assertEqual(
            names & {b"content_length", b"transfer_encoding", b"proxy_connection"}, set()
        )
        self.assertIn(b"x_custom", names)
        logged = [m for m in messages if "dropped request field" in m]
        self.assertEqual(len(logged), 1, messages)
        for part in ("Content_Length", "Transfer_Encoding", "proxy_connection", "127.0.0.1"):
            self.assertIn(part, logged[0])


class MethodCaseTests(ProxyTestCase):
    """
    A registered method in another case cannot slip past a method rule
    (item 9).
    """

    async def test_lower_case_delete_refused(self) -> None:
        """
        With C{deny} of the C{method} ACL C{DELETE}, C{DELETE} is refused
        with 403 and C{delete} with 400 naming the reason; neither reaches
        the origin.
        """
        self.use_access_config(
            """
[acl]
deleting = { method = ["DELETE"] }
loopback = { src = ["127.0.0.0/8"] }

[access]
http_access = ["deny deleting", "allow loopback", "deny all"]
"""
        )
        origin = ScriptedOrigin(reactor, [(b"HTTP/1.1 204 No Content\r\n\r\n", False)] * 2)
        self.listen(origin)
        url = origin.url("/thing").encode()
        upper = await _in_thread(
            self.raw_exchange,
            b"DELETE " + url + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(upper.startswith(b"HTTP/1.1 403 "), upper[:100])
        for method in (b"delete", b"Delete"):
            lower = await _in_thread(
                self.raw_exchange,
                method + b" " + url + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            self.assertTrue(lower.startswith(b"HTTP/1.1 400 "), lower[:100])
            self.assertIn(b"RFC 9110 \xc2\xa79.1", lower)
        self.assertEqual(origin.heads, [])


_WEBSOCKET_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class UpgradeTests(ProxyTestCase):
    """
    C{Upgrade} is forwarded only for C{proxy.upgrade_protocols}, and a 101
    only relayed when it switches to a protocol asked for (item 7).
    """

    async def test_h2c_stripped(self) -> None:
        """
        C{Upgrade: h2c} is not forwarded (nor C{Connection: Upgrade}): the
        request goes as a plain one and its answer is relayed.
        """
        origin = ScriptedOrigin(reactor, [(_OK, False)])
        self.listen(origin)
        request = (
            f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
            + b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        )
        raw = await _in_thread(self.raw_exchange, request)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:200])
        [head] = origin.heads
        self.assertEqual(_field_names(head) & {b"upgrade", b"http2-settings"}, set())
        self.assertNotIn(b"upgrade", head.lower())

    async def test_unsolicited_101_is_502(self) -> None:
        """
        A 101 to a plain GET is a 502 and the connection to the origin is
        closed: the next request needs a new one.
        """
        origin = ScriptedOrigin(reactor, [(_WEBSOCKET_101, False), (_OK, False)])
        self.listen(origin)
        request = f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = await _in_thread(self.raw_exchange, request.encode())
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw[:200])
        raw = await _in_thread(self.raw_exchange, request.encode())
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:200])
        self.assertEqual(origin.connections, 2)

    async def test_101_to_a_stripped_upgrade_is_502(self) -> None:
        """
        A 101 to a request whose C{Upgrade: h2c} was stripped is a 502.
        """
        origin = ScriptedOrigin(reactor, [(_WEBSOCKET_101.replace(b"websocket", b"h2c"), False)])
        self.listen(origin)
        request = (
            f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Connection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"
        )
        raw = await _in_thread(self.raw_exchange, request)
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw[:200])

    async def test_101_to_another_protocol_is_502(self) -> None:
        """
        A 101 that switches to another protocol than the one asked for is
        a 502, and the client never gets the origin's bytes after it.
        """
        answer = _WEBSOCKET_101.replace(b"websocket", b"h2c") + b"\x00\x00\x12\x04"
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        request = (
            f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
            + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        raw = await _in_thread(self.raw_exchange, request)
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw[:200])
        self.assertNotIn(b"101", raw.split(b"\r\n", 1)[0])
        [head] = origin.heads
        self.assertIn(b"Upgrade: websocket", head)

    async def test_101_to_http10_is_502(self) -> None:
        """
        An HTTP/1.0 request's Upgrade is ignored (RFC 9110 §7.8), so a 101
        to it is a 502.
        """
        origin = ScriptedOrigin(reactor, [(_WEBSOCKET_101, False)])
        self.listen(origin)
        request = (
            f"GET {origin.url('/')} HTTP/1.0\r\n".encode()
            + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        raw = await _in_thread(self.raw_exchange, request)
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw[:200])
        [head] = origin.heads
        self.assertNotIn(b"upgrade", head.lower())


_EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
    b"Connection: X-Hop\r\nX-Hop: secret\r\n\r\n"
)
_CACHEABLE = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\n\r\nhello"


class InterimResponseTests(ProxyTestCase):
    """
    Interim responses from the origin reach HTTP/1.1 clients before the
    final one, never HTTP/1.0 clients, and are never stored (item 5).
    """

    async def test_early_hints_relayed_not_stored(self) -> None:
        """
        An HTTP/1.1 client sees the 103 with its C{Link} (hop-by-hop fields
        removed) then the 200 with its body intact; the cache stores only
        the 200, so the next request is a hit without the 103.
        """
        origin = ScriptedOrigin(reactor, [(_EARLY_HINTS + _CACHEABLE, False)])
        self.listen(origin)
        request = f"GET {origin.url('/hints')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = await _in_thread(self.raw_exchange, request.encode())
        self.assertEqual(_heads(raw), [b"HTTP/1.1 103 Early Hints", b"HTTP/1.1 200 OK"])
        interim, _, final = raw.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nLink: </style.css>; rel=preload; as=style", interim)
        self.assertNotIn(b"X-Hop", interim)
        self.assertTrue(final.endswith(b"\r\n\r\nhello"), final)
        self.assertIn(b"Content-Length: 5", final)
        again = await _in_thread(self.raw_exchange, request.encode())
        self.assertEqual(_heads(again), [b"HTTP/1.1 200 OK"])
        self.assertTrue(again.endswith(b"\r\n\r\nhello"))
        self.assertEqual(len(origin.heads), 1)

    async def test_processing_relayed(self) -> None:
        """
        102 Processing reaches an HTTP/1.1 client ahead of the 200.
        """
        answer = b"HTTP/1.1 102 Processing\r\n\r\n" + _OK
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        request = f"GET {origin.url('/')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = await _in_thread(self.raw_exchange, request.encode())
        self.assertEqual(_heads(raw), [b"HTTP/1.1 102 Processing", b"HTTP/1.1 200 OK"])
        self.assertTrue(raw.endswith(b"\r\n\r\nok"))

    async def test_never_to_http10(self) -> None:
        """
        An HTTP/1.0 client sees only the final response (RFC 9110 §15.2).
        """
        answer = b"HTTP/1.1 102 Processing\r\n\r\n" + _EARLY_HINTS + _OK
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        request = f"GET {origin.url('/')} HTTP/1.0\r\n\r\n"
        raw = await _in_thread(self.raw_exchange, request.encode())
        self.assertEqual(_heads(raw), [b"HTTP/1.1 200 OK"])
        self.assertTrue(raw.endswith(b"\r\n\r\nok"))

    def _expect_continue(self, url: str) -> bytes:
        """
        POST with C{Expect: 100-continue}, sending the body only after a
        100, and read everything until the proxy closes.
        """
        head = (
            f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10) as s:
            s.sendall(head.encode())
            first = s.recv(65536)
            s.sendall(b"body")
            chunks = [first]
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    async def test_expect_continue_one_100(self) -> None:
        """
        C{Expect: 100-continue} works end to end: the client gets squeak's
        own 100 before it sends the body, and the origin's 100 is not sent
        again (never two), then the final response.
        """
        answer = b"HTTP/1.1 100 Continue\r\n\r\n" + _OK
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        raw = await _in_thread(self._expect_continue, origin.url("/post"))
        self.assertEqual(_heads(raw), [b"HTTP/1.1 100 Continue", b"HTTP/1.1 200 OK"])
        self.assertTrue(raw.endswith(b"\r\n\r\nok"))

    async def test_expect_continue_http10_origin(self) -> None:
        """
        With an origin that never sends 100 (HTTP/1.0), squeak's own 100
        lets the client send its body.
        """
        answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
        origin = ScriptedOrigin(reactor, [(answer, True)])
        self.listen(origin)
        raw = await _in_thread(self._expect_continue, origin.url("/post"))
        self.assertEqual(_heads(raw), [b"HTTP/1.1 100 Continue", b"HTTP/1.1 200 OK"])
        self.assertTrue(raw.endswith(b"\r\n\r\nok"))
