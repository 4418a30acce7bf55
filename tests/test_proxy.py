"""
Forward proxying over real loopback sockets: methods, bodies, headers,
persistent connections, failures and their pages, strict framing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.logger import formatEvent, globalLogPublisher

from tests.origins import Origin, ScriptedOrigin
from tests.proxyharness import ProxyTestCase
from tests.resolvers import ScriptedResolver


def _in_thread(function: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThread(function, *args)


class _Result:
    """
    What a blocking client got: status, headers (repeats kept), body.
    """

    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.getheaders()
        self.body = body

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class ForwardingTests(ProxyTestCase):
    """
    Absolute-URI requests are forwarded faithfully and answered faithfully.
    """

    def _request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> _Result:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request(method, url, body=body, headers=headers or {}, **kwargs)
            response = conn.getresponse()
            return _Result(response, response.read())
        finally:
            conn.close()

    async def test_get_passes_path_and_query_untouched(self) -> None:
        """
        The origin sees the origin-form of the absolute URI byte for byte
        (encoded characters kept), with Host from the URI.
        """
        origin = Origin(reactor)
        port = self.listen(origin)
        url = origin.url("/echo/a%2Fb%20c?q=%2F&x=1&x=2")
        result = await _in_thread(self._request, "GET", url)
        self.assertEqual(result.status, 200)
        seen = result.json()
        self.assertEqual(seen["uri"], "/echo/a%2Fb%20c?q=%2F&x=1&x=2")
        hosts = [v for k, v in seen["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, [f"127.0.0.1:{port}"])

    async def test_every_method_is_forwarded(self) -> None:
        """
        Standard and extension methods reach the origin unchanged, with
        their bodies.
        """
        origin = Origin(reactor)
        self.listen(origin)
        seen = []
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "BREW"]:
            body = b"payload-" + method.encode() if method in ("POST", "PUT", "PATCH") else None
            result = await _in_thread(self._request, method, origin.url("/echo"), body)
            got = result.json()
            seen.append((method, result.status, got["method"], got["body_length"]))
        expected = [
            (m, 200, m, len(b"payload-" + m.encode()) if m in ("POST", "PUT", "PATCH") else 0)
            for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "BREW"]
        ]
        self.assertEqual(seen, expected)

    async def test_head_is_relayed_without_body(self) -> None:
        """
        HEAD gets the origin's status and Content-Length, and no body.
        """
        origin = Origin(reactor)
        self.listen(origin)
        result = await _in_thread(self._request, "HEAD", origin.url("/big/5000"))
        self.assertEqual(
            (result.status, result.header("content-length"), result.body), (200, ["5000"], b"")
        )

    async def test_chunked_request_body_is_forwarded_with_regenerated_framing(self) -> None:
        """
        A chunked request body arrives whole at the origin, framed by a
        Content-Length the proxy computed, with no Transfer-Encoding left.
        """
        origin = Origin(reactor)
        self.listen(origin)
        pieces = [b"x" * 1000, b"y" * 150000, b"z"]
        result = await _in_thread(
            lambda: self._request(
                "POST",
                origin.url("/echo"),
                body=iter(pieces),
                encode_chunked=True,
                headers={"Transfer-Encoding": "chunked"},
            )
        )
        got = result.json()
        names = [k.lower() for k, _ in got["headers"]]
        self.assertEqual(got["body_length"], 151001)
        self.assertEqual(got["body_sha256"], hashlib.sha256(b"".join(pieces)).hexdigest())
        self.assertNotIn("transfer-encoding", names)
        self.assertEqual(
            [v for k, v in got["headers"] if k.lower() == "content-length"], ["151001"]
        )

    async def test_repeated_response_fields_are_kept_apart(self) -> None:
        """
        Two Set-Cookie fields from the origin reach the client as two fields.
        """
        origin = Origin(reactor)
        self.listen(origin)
        result = await _in_thread(self._request, "GET", origin.url("/cookies"))
        self.assertEqual(result.header("set-cookie"), ["a=1; Path=/", "b=2; Path=/"])

    async def test_chunked_response_reaches_http11_client(self) -> None:
        """
        A response of unknown length is relayed whole (re-chunked to an
        HTTP/1.1 client).
        """
        origin = Origin(reactor)
        self.listen(origin)
        result = await _in_thread(self._request, "GET", origin.url("/chunked"))
        self.assertEqual(result.body, b"alpha-beta-gamma")

    async def test_error_statuses_are_relayed(self) -> None:
        """
        Origin error statuses are relayed, not replaced.
        """
        origin = Origin(reactor)
        self.listen(origin)
        result = await _in_thread(self._request, "GET", origin.url("/status/404"))
        self.assertEqual((result.status, result.body), (404, b"status body"))

    async def test_request_hop_by_hop_fields_are_removed(self) -> None:
        """
        RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive, TE,
        Proxy-Connection and Proxy-Authorization never reach the origin;
        Via and X-Forwarded-For are added.
        """
        origin = Origin(reactor)
        self.listen(origin)
        headers = {
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Connection": "keep-alive",
            "Proxy-Authorization": "Basic dXNlcjpwYXNz",
            "X-End-To-End": "kept",
        }
        result = await _in_thread(self._request, "GET", origin.url("/echo"), None, headers)
        got = {k.lower(): v for k, v in result.json()["headers"]}
        leaked = sorted(
            set(got)
            & {
                "connection",
                "x-secret",
                "keep-alive",
                "te",
                "proxy-connection",
                "proxy-authorization",
            }
        )
        self.assertEqual(leaked, [])
        self.assertEqual(got["x-end-to-end"], "kept")
        self.assertEqual(got["x-forwarded-for"], "127.0.0.1")
        self.assertIn("squeak.test", got["via"])

    async def test_response_hop_by_hop_fields_are_removed(self) -> None:
        """
        Fields named by the origin's Connection header, and Keep-Alive and
        Proxy-Authenticate, are not relayed to the client.
        """
        body = b"hello"
        answer = (
            b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm=x\r\n"
            b"X-Kept: yes\r\nContent-Length: 5\r\n\r\n" + body
        )
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        result = await _in_thread(self._request, "GET", origin.url("/"))
        names = {k.lower() for k, _ in result.headers}
        self.assertEqual(sorted(names & {"x-hop", "keep-alive", "proxy-authenticate"}), [])
        self.assertEqual((result.header("x-kept"), result.body), (["yes"], body))
        self.assertTrue(any("squeak.test" in v for v in result.header("via")))

    async def test_persistent_connections_both_sides(self) -> None:
        """
        Three requests on one client connection are answered on it, and
        reach the origin over one pooled connection.
        """
        origin = Origin(reactor)
        self.listen(origin)

        def three() -> list[int]:
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
            statuses = []
            sockets = set()
            for i in range(3):
                conn.request("GET", origin.url(f"/echo/{i}"))
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
                sockets.add(id(conn.sock))
            conn.close()
            return [*statuses, len(sockets)]

        got = await _in_thread(three)
        self.assertEqual(got, [200, 200, 200, 1])
        self.assertEqual(origin.connections, 1)

    async def test_pipelined_requests_are_answered_in_order(self) -> None:
        """
        Two requests sent back to back get their answers in request order.
        """
        origin = Origin(reactor)
        self.listen(origin)
        data = (
            f"GET {origin.url('/echo/first')} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET {origin.url('/echo/second')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ).encode()
        raw = await _in_thread(self.raw_exchange, data)
        self.assertEqual(raw.count(b"HTTP/1.1 200"), 2)
        self.assertLess(raw.index(b"/echo/first"), raw.index(b"/echo/second"))

    async def test_http10_client_gets_no_chunking_and_a_close(self) -> None:
        """
        An HTTP/1.0 client never gets a chunked body; its connection ends
        the body.
        """
        origin = Origin(reactor)
        self.listen(origin)
        data = f"GET {origin.url('/chunked')} HTTP/1.0\r\n\r\n".encode()
        raw = await _in_thread(self.raw_exchange, data)
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertNotIn(b"chunked", head.lower())
        self.assertEqual(body, b"alpha-beta-gamma")

    async def test_access_log_line_in_squid_format(self) -> None:
        """
        One Squid-native line per request: time, elapsed, client, code/status,
        bytes, method, URL, user, hierarchy/peer, type.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/echo")
        await _in_thread(self._request, "GET", url)
        [line] = self.access_log_lines()
        pattern = (
            r"^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_MISS/200 \d+ GET "
            + re.escape(url)
            + r" - HIER_DIRECT/127\.0\.0\.1 application/json$"
        )
        self.assertRegex(line, pattern)


class LocalAnswerTests(ProxyTestCase):
    """
    Loops and Max-Forwards are handled by the proxy itself.
    """

    def _raw(self, data: bytes) -> bytes:
        return self.raw_exchange(data)

    async def test_forwarding_loop_is_refused(self) -> None:
        """
        A request whose Via already names this proxy gets a 508 page instead
        of being forwarded again.
        """
        origin = Origin(reactor)
        self.listen(origin)
        data = (
            f"GET {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nVia: 1.1 squeak.test\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        raw = await _in_thread(self._raw, data)
        self.assertTrue(raw.startswith(b"HTTP/1.1 508"), raw[:80])
        self.assertIn(b"ERR_FORWARDING_LOOP", raw)
        self.assertEqual(origin.requests, [])

    async def test_max_forwards_zero_is_answered_locally(self) -> None:
        """
        RFC 9110 §7.6.2: TRACE and OPTIONS with Max-Forwards: 0 are answered
        by the proxy; TRACE echoes the request without credentials.
        """
        origin = Origin(reactor)
        self.listen(origin)
        trace = (
            f"TRACE {origin.url('/')} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n"
            "Proxy-Authorization: Basic c2VjcmV0\r\nX-Probe: 1\r\nConnection: close\r\n\r\n"
        ).encode()
        raw = await _in_thread(self._raw, trace)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw[:80])
        self.assertIn(b"X-Probe: 1", raw)
        self.assertNotIn(b"c2VjcmV0", raw)
        options = (
            f"OPTIONS {origin.url('/')} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        raw = await _in_thread(self._raw, options)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw[:80])
        self.assertIn(b"Allow: ", raw)
        self.assertEqual(origin.requests, [])

    async def test_max_forwards_is_decremented(self) -> None:
        """
        RFC 9110 §7.6.2: a forwarded OPTIONS carries Max-Forwards minus one.
        """
        origin = Origin(reactor)
        self.listen(origin)
        data = (
            f"OPTIONS {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 3\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        await _in_thread(self._raw, data)
        [seen] = origin.requests
        self.assertEqual([v for k, v in seen["headers"] if k.lower() == "max-forwards"], ["2"])


class FailureTests(ProxyTestCase):
    """
    Origin failures get clear pages; truncation is never disguised.
    """

    config_overrides = {"timeouts": {"read": 1.0, "connect": 2.0}}

    def _read_whole(self, url: str) -> str:
        """
        GET through the proxy and say whether the body arrived whole.
        """
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        conn.request("GET", url)
        response = conn.getresponse()
        try:
            response.read()
        except http.client.IncompleteRead as error:
            return f"incomplete after {len(error.partial)}"
        finally:
            conn.close()
        return "complete"

    def _get(self, url: str) -> _Result:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request("GET", url)
            response = conn.getresponse()
            return _Result(response, response.read())
        finally:
            conn.close()

    async def test_connection_refused_is_502(self) -> None:
        """
        A closed origin port gives 502 ERR_CONNECT_FAIL.
        """
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        result = await _in_thread(self._get, f"http://127.0.0.1:{port}/")
        self.assertEqual(result.status, 502)
        self.assertIn(b"ERR_CONNECT_FAIL", result.body)
        self.assertIn("ERR_CONNECT_FAIL", " ".join(v for _, v in result.headers))

    async def test_unresolvable_host_is_503(self) -> None:
        """
        A name that does not resolve gives 503 ERR_DNS_FAIL naming the host.
        """
        # localhost is 127.0.0.1; every other name fails.
        previous = reactor.installNameResolver(ScriptedResolver({"localhost": ["127.0.0.1"]}))
        self.addCleanup(reactor.installNameResolver, previous)
        result = await _in_thread(self._get, "http://no-such-host.test/")
        self.assertEqual(result.status, 503)
        self.assertIn(b"ERR_DNS_FAIL", result.body)
        self.assertIn(b"no-such-host.test", result.body)
        # No connection was tried: HIER_NONE/-, as Squid logs it.
        self.assertIn(" TCP_MISS/503 ", self.access_log_lines()[-1])
        self.assertIn(" HIER_NONE/- ", self.access_log_lines()[-1])
        self.flushLoggedErrors(DNSLookupError)

    async def test_silent_origin_is_504(self) -> None:
        """
        An origin that accepts the request and never answers gives 504
        ERR_READ_TIMEOUT after the configured timeout.
        """
        origin = Origin(reactor)
        self.listen(origin)
        result = await _in_thread(self._get, origin.url("/hang"))
        self.assertEqual(result.status, 504)
        self.assertIn(b"ERR_READ_TIMEOUT", result.body)
        for channel in list(origin.site.__dict__.get("_channels", [])):
            channel.transport.loseConnection()

    async def test_origin_closing_mid_body_aborts_the_client(self) -> None:
        """
        An origin that promises 100 bytes and closes after 10 makes the proxy
        close the client connection: the client sees a short read, never a
        complete-looking response; the log says TCP_MISS_ABORTED.
        """
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"0123456789"
        origin = ScriptedOrigin(reactor, [(answer, True)])
        self.listen(origin)

        messages = self._log_messages()
        self.assertEqual(
            await _in_thread(self._read_whole, origin.url("/")), "incomplete after 10"
        )
        [line] = self.access_log_lines()
        self.assertIn(" TCP_MISS_ABORTED/200 ", line)
        self.assertIn(
            f"origin response for {origin.url('/')} ended after 10 of 100 body bytes "
            "(connection lost before the response was complete: Connection was closed "
            "cleanly); closing the client connection",
            messages,
        )

    def _log_messages(self) -> list[str]:
        """The proxy's log messages from now until the end of the test."""
        messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            text = formatEvent(event)
            if text:
                messages.append(text)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return messages

    async def test_origin_silent_mid_body_is_cut_after_read_timeout(self) -> None:
        """
        An origin that sends part of a body and then nothing: after the read
        timeout the client connection is closed short, never finished.
        """
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"0123456789"
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)

        messages = self._log_messages()
        self.assertEqual(
            await _in_thread(self._read_whole, origin.url("/")), "incomplete after 10"
        )
        [line] = self.access_log_lines()
        self.assertIn(" TCP_MISS_ABORTED/200 ", line)
        timeout = self.config.timeouts.read
        self.assertIn(
            f"origin response for {origin.url('/')} ended after 10 of 100 body bytes "
            f"(no data from the origin for {timeout:g}s); closing the client connection",
            messages,
        )

    async def test_bad_framing_from_origin_is_502(self) -> None:
        """
        Conflicting Content-Length values from an origin give 502
        ERR_INVALID_RESP and the connection is not reused.
        """
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
        origin = ScriptedOrigin(reactor, [(answer, False), (answer, False)])
        self.listen(origin)
        result = await _in_thread(self._get, origin.url("/"))
        self.assertEqual(result.status, 502)
        self.assertIn(b"ERR_INVALID_RESP", result.body)

    async def test_transfer_encoding_with_content_length_from_origin_is_502(self) -> None:
        """
        RFC 9112 §6.3: a response with both Transfer-Encoding and
        Content-Length may be a smuggling attempt; squeak refuses it.
        """
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        origin = ScriptedOrigin(reactor, [(answer, False)])
        self.listen(origin)
        result = await _in_thread(self._get, origin.url("/"))
        self.assertEqual(result.status, 502)


class RequestValidationTests(ProxyTestCase):
    """
    Malformed requests get a 400 that says why, and the connection closes.
    """

    config_overrides = {"limits": {"request_body_size": 1000}}

    async def _status_and_page(self, data: bytes) -> tuple[bytes, bytes]:
        raw = await _in_thread(self.raw_exchange, data)
        return raw.split(b"\r\n", 1)[0], raw

    async def test_malformed_requests_get_reasoned_400s(self) -> None:
        """
        Each malformed request gets a 400 naming its problem.
        """
        cases = [
            (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", b"ERR_INVALID_URL"),
            (b"GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", b"ERR_UNSUP_REQ"),
            (
                b"POST http://127.0.0.1:9/ HTTP/1.1\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"Transfer-Encoding",
            ),
            (
                b"POST http://127.0.0.1:9/ HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
                b"Content-Length",
            ),
            (
                b"POST http://127.0.0.1:9/ HTTP/1.1\r\nContent-Length: 3\r\n"
                b"Content-Length: 4\r\n\r\nabcd",
                b"Content-Length",
            ),
            (b"GET http://127.0.0.1:9/ HTTP/1.1\r\nNo colon here\r\n\r\n", b"colon"),
            (b"NOT A REQUEST LINE AT ALL\r\n\r\n", b"request line"),
            (b"GET http://127.0.0.1:9/ HTTP/1.1\r\nAccept: */*\r\n\r\n", b"without a Host"),
        ]
        wrong = []
        for data, needle in cases:
            status, raw = await self._status_and_page(data)
            if not status.startswith(b"HTTP/1.1 400") or needle not in raw:
                wrong.append((data, status, raw[-300:]))
        self.assertEqual(wrong, [])

    async def test_oversized_head_is_refused(self) -> None:
        """
        A request head over the limit gets 400 saying so.
        """
        data = b"GET http://127.0.0.1:9/ HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        status, raw = await self._status_and_page(data)
        self.assertTrue(status.startswith(b"HTTP/1.1 400"), status)
        self.assertIn(b"larger than", raw)

    async def test_oversized_body_is_refused(self) -> None:
        """
        A declared body over limits.request_body_size gets 413 at once.
        """
        data = (
            b"POST http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
            b"Content-Length: 5000\r\n\r\n" + b"a" * 100
        )
        status, raw = await self._status_and_page(data)
        self.assertTrue(status.startswith(b"HTTP/1.1 413"), status)
        self.assertIn(b"ERR_TOO_BIG", raw)
