# -*- test-case-name: tests.test_control -*-
"""
Tests for L{squeak.control}: finding the running proxy, and the requests
C{squeak purge} and C{squeak mgr} send, checked by real loopback servers
that record what they receive.
"""

from __future__ import annotations

import dataclasses
import io
import socket
from typing import Any

from twisted.internet import protocol, reactor, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from squeak.config import Config, ListenAddress
from squeak.control import (
    ControlError,
    ProxyAddress,
    fetch_manager_page,
    proxy_address,
    send_purge,
)


def _listening_on(*addresses: ListenAddress) -> Config:
    config = Config()
    proxy = dataclasses.replace(config.proxy, http_port=addresses)
    return dataclasses.replace(config, proxy=proxy, source="/etc/squeak/squeak.toml")


class ProxyAddressTests(SynchronousTestCase):
    """
    L{proxy_address} finds the proxy from C{--proxy} or the configuration.
    """

    def test_from_the_configuration(self) -> None:
        """
        The first listener is used; a wildcard address is asked on loopback
        of its family.
        """
        cases = [
            ((ListenAddress("127.0.0.1", 3128),), ("127.0.0.1", 3128)),
            ((ListenAddress("192.0.2.1", 8080), ListenAddress("::1", 3128)), ("192.0.2.1", 8080)),
            ((ListenAddress("0.0.0.0", 3128),), ("127.0.0.1", 3128)),
            ((ListenAddress("::", 3129),), ("::1", 3129)),
        ]
        wrong = [
            (listeners, got, want)
            for listeners, want in cases
            if (got := proxy_address(_listening_on(*listeners), None))
            != ProxyAddress(*want, "/etc/squeak/squeak.toml")
        ]
        self.assertEqual(wrong, [])

    def test_given_address(self) -> None:
        """
        C{--proxy HOST:PORT} wins over the configuration; an IPv6 address
        in brackets and a host name are accepted.
        """
        config = _listening_on(ListenAddress("127.0.0.1", 3128))
        cases = [
            ("127.0.0.1:8080", ProxyAddress("127.0.0.1", 8080, "--proxy")),
            ("[::1]:3128", ProxyAddress("::1", 3128, "--proxy")),
            ("proxy.lan:3128", ProxyAddress("proxy.lan", 3128, "--proxy")),
        ]
        self.assertEqual(
            [proxy_address(config, given) for given, _ in cases], [c[1] for c in cases]
        )
        self.assertEqual(ProxyAddress("::1", 3128, "--proxy").authority, "[::1]:3128")
        self.assertEqual(
            proxy_address(Config(), None), ProxyAddress("127.0.0.1", 3128, "the embedded defaults")
        )

    def test_bad_addresses(self) -> None:
        """
        A C{--proxy} that is not C{HOST:PORT}, or a configuration listening
        on port 0 (known only once the proxy runs), is a one-line error.
        """
        config = _listening_on(ListenAddress("127.0.0.1", 3128))
        for given in ("localhost", "127.0.0.1:0", "h:99999", "[::1]", "u@h:1", "h:1/x"):
            with self.assertRaises(ControlError) as caught:
                proxy_address(config, given)
            self.assertIn("--proxy: expected HOST:PORT", str(caught.exception))
        with self.assertRaises(ControlError) as caught:
            proxy_address(_listening_on(ListenAddress("127.0.0.1", 0)), None)
        self.assertEqual(
            str(caught.exception),
            "/etc/squeak/squeak.toml: proxy.http_port: port 0 is chosen when the proxy starts "
            '(its log says "squeak listening on ..."); give --proxy HOST:PORT',
        )


class _Recorder(protocol.Protocol):
    """
    Reads one request head, records it, and answers with the factory's
    canned response (or never, if it has none).
    """

    factory: _RecordingServer

    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and self.factory.answer is not None:
            self.factory.heads.append(self.buffer.split(b"\r\n\r\n")[0])
            self.transport.write(self.factory.answer)
            self.transport.loseConnection()


class _RecordingServer(protocol.ServerFactory):
    protocol = _Recorder
    noisy = False

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.heads: list[bytes] = []


class RequestTests(TestCase):
    """
    The requests sent to the proxy, as a real loopback server receives
    them, and what is made of the answers.
    """

    timeout = 30

    def _serve(self, answer: bytes | None) -> tuple[_RecordingServer, ProxyAddress]:
        server = _RecordingServer(answer)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return server, ProxyAddress("127.0.0.1", port.getHost().port, "--proxy")

    async def test_manager_page_request(self) -> None:
        """
        C{mgr PAGE} sends what squidclient sends: a GET for
        C{http://HOST:PORT/squid-internal-mgr/PAGE} in absolute form, with
        the proxy's authority as Host, and returns the body.
        """
        body = b"Squid Object Cache: Version squeak\nUptime: 12 s\n"
        server, where = self._serve(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        answer = await threads.deferToThread(
            fetch_manager_page, where, "objects?url=http://o.test/"
        )
        self.assertEqual((answer.status, answer.body), (200, body))
        [head] = server.heads
        lines = head.split(b"\r\n")
        self.assertEqual(
            lines[0],
            b"GET http://%s/squid-internal-mgr/objects?url=http://o.test/ HTTP/1.1"
            % where.authority.encode(),
        )
        self.assertIn(b"Host: " + where.authority.encode(), lines[1:])

    async def test_purge_request(self) -> None:
        """
        C{purge URL} sends PURGE for the absolute URL with the URL's
        authority as Host; the answer's status and X-Squeak-Error come back.
        """
        server, where = self._serve(
            b"HTTP/1.1 403 Forbidden\r\nX-Squeak-Error: ERR_ACCESS_DENIED\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        answer = await threads.deferToThread(send_purge, where, "http://o.test:8080/a?b")
        self.assertEqual((answer.status, answer.error), (403, "ERR_ACCESS_DENIED"))
        lines = server.heads[0].split(b"\r\n")
        self.assertEqual(lines[0], b"PURGE http://o.test:8080/a?b HTTP/1.1")
        self.assertIn(b"Host: o.test:8080", lines[1:])

    async def test_manager_page_from_the_command_line(self) -> None:
        """
        C{squeak mgr PAGE --json} asks for C{format=json} and prints the
        body; another status is one line on standard error with the error
        name and the reason from the page, exit 1.
        """
        from squeak.cli import main

        def run(*argv: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()

        server, where = self._serve(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"up": 12}\n')
        got = await threads.deferToThread(run, "mgr", "info", "--json", "--proxy", where.authority)
        self.assertEqual(got, (0, '{"up": 12}\n', ""))
        self.assertTrue(
            server.heads[0].startswith(
                b"GET http://%s/squid-internal-mgr/info?format=json HTTP/1.1\r\n"
                % where.authority.encode()
            )
        )
        page = b'<p id="reason">no page &quot;x&quot;\n here</p>'
        _, where = self._serve(
            b"HTTP/1.1 404 Not Found\r\nX-Squeak-Error: ERR_NO_PAGE\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(page), page)
        )
        got = await threads.deferToThread(run, "mgr", "x", "--proxy", where.authority)
        self.assertEqual(
            got,
            (
                1,
                "",
                f"squeak: http://{where.authority}/squid-internal-mgr/x: 404 Not Found "
                '(ERR_NO_PAGE: no page "x" here)\n',
            ),
        )

    def test_purge_needs_an_absolute_url(self) -> None:
        """
        A URL without scheme or host is refused before anything is sent.
        """
        where = ProxyAddress("127.0.0.1", 9, "--proxy")
        for url in ("example.org/", "/a", "ftp://o.test/"):
            self.assertRaises(ControlError, send_purge, where, url)

    async def test_proxy_not_running(self) -> None:
        """
        Nothing listening: one line naming the address and where it came
        from.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        where = ProxyAddress("127.0.0.1", port, "/etc/squeak/squeak.toml")
        failure: Any = None
        try:
            await threads.deferToThread(fetch_manager_page, where, "info")
        except ControlError as e:
            failure = e
        self.assertEqual(
            str(failure),
            f"no proxy is running at 127.0.0.1:{port} (connection refused; the address is "
            "from /etc/squeak/squeak.toml)",
        )

    async def test_proxy_silent(self) -> None:
        """
        A proxy that accepts and never answers is given up on after the
        timeout, in one line.
        """
        _, where = self._serve(None)
        failure: Any = None
        try:
            await threads.deferToThread(fetch_manager_page, where, "info", 0.3)
        except ControlError as e:
            failure = e
        self.assertEqual(
            str(failure), f"the proxy at {where.authority} did not answer within 0.3s"
        )
