# -*- test-case-name: tests.test_accesslog_tools -*-
"""
Logs that tools read: an access log written by a real in-process proxy for
real requests (misses, hits, a denied CONNECT, a tunnel, an origin that
breaks off, a malformed request) is checked line by line against a strict
pattern of Squid's native line, and, when it is installed, fed to
calamaris, a Squid log analyser, which must find no invalid line.

calamaris is the Debian package of the same name; C{.ci/setup-tools}
installs it (C{bash .ci/setup-tools}), else its test skips saying so.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import shutil
import socket
import subprocess
import time

from twisted.internet import protocol, reactor, threads

from tests.origins import Origin, ScriptedOrigin
from tests.proxyharness import ProxyTestCase

#: Squid's result codes (src/LogTags.cc) with its suffixes, and squeak's
#: NONE for a connection that never became a request.
_RESULT = (
    r"(?:TCP_(?:HIT|MISS|REFRESH_UNMODIFIED|REFRESH_MODIFIED|REFRESH_FAIL_OLD|"
    r"REFRESH_FAIL_ERR|CLIENT_REFRESH_MISS|IMS_HIT|INM_HIT|SWAPFAIL_MISS|NEGATIVE_HIT|"
    r"MEM_HIT|DENIED|DENIED_REPLY|OFFLINE_HIT|REDIRECT|TUNNEL)|TAG_NONE|NONE|NONE_NONE)"
    r"(?:_ABORTED|_TIMEOUT|_IGNORED)*"
)
#: Squid's hierarchy codes (src/hier_code.h), with its TIMEOUT_ prefix.
_HIERARCHY = (
    r"(?:TIMEOUT_)?(?:HIER_NONE|HIER_DIRECT|SIBLING_HIT|PARENT_HIT|DEFAULT_PARENT|"
    r"SINGLE_PARENT|FIRST_UP_PARENT|FIRST_PARENT_MISS|CLOSEST_PARENT_MISS|CLOSEST_PARENT|"
    r"CLOSEST_DIRECT|NO_DIRECT_FAIL|SOURCEHASH_PARENT|PINNED|ORIGINAL_DST|ANY_OLD_PARENT|"
    r"USERHASH_PARENT|CARP|ROUNDROBIN_PARENT|WEIGHTED_ROUNDROBIN_PARENT|NO_PARENT_DIRECT)"
)
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 §5.6.2

#: Squid's native line, C{%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un
#: %Sh/%<a %mt}, field by field; the media type is a bare type/subtype, as
#: Squid logs it (no parameters, no escaped space).
SQUID_LINE = re.compile(
    rf"(?P<time>[0-9]{{9,}}\.[0-9]{{3}}) (?P<elapsed> *[0-9]+) (?P<client>[0-9A-Fa-f.:]+) "
    rf"(?P<code>{_RESULT})/(?P<status>[0-9]{{3}}) (?P<size>[0-9]+) (?P<method>{_TOKEN}) "
    rf"(?P<url>[!-~]+) (?P<user>[!-~]+) (?P<hierarchy>{_HIERARCHY})/(?P<peer>-|[0-9A-Fa-f.:]+) "
    rf"(?P<type>-|{_TOKEN}/{_TOKEN})"
)


def check_squid_line(line: str, now: float) -> list[str]:
    """
    Check one line against Squid's native format beyond the pattern: the
    time is recent, the elapsed field is at least 6 columns wide
    (C{%6tr}), addresses parse.

    @return: What is wrong, empty if nothing.
    """
    match = SQUID_LINE.fullmatch(line)
    if match is None:
        return [f"not a Squid native line: {line!r}"]
    problems = []
    if not now - 600 < float(match["time"]) <= now + 1:
        problems.append(f"time {match['time']} is not now")
    if len(match["elapsed"]) < 6:
        problems.append(f"elapsed {match['elapsed']!r} narrower than %6tr")
    for name in ("client", "peer"):
        if match[name] != "-":
            try:
                ipaddress.ip_address(match[name])
            except ValueError:
                problems.append(f"{name} {match[name]!r} is not an IP address")
    return problems


class _Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class RealLogTests(ProxyTestCase):
    """
    A log from real traffic, read as the tools read it.
    """

    def _get(self, url: str, method: str = "GET", body: bytes | None = None) -> int:
        """Fetch C{url} through the proxy (in a thread); the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request(method, url, body=body)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _read_all(self, url: str) -> bytes:
        """Fetch C{url} with a raw socket, reading until the proxy closes."""
        return self.raw_exchange(
            f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )

    def _tunnel(self, port: int) -> bytes:
        """Open a CONNECT tunnel to C{port}, echo a few bytes, close."""
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10) as s:
            s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk
            s.sendall(b"ping")
            while not data.endswith(b"ping"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data

    async def _traffic(self) -> tuple[list[str], list[str]]:
        """
        Send a realistic mix of requests; return the log lines and the
        result codes expected in them.
        """
        origin = Origin(reactor)
        self.listen(origin)
        typed = ScriptedOrigin(
            reactor,
            [
                (
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                    b"Content-Length: 5\r\n\r\nhello",
                    False,
                )
            ],
        )
        self.listen(typed)
        broken = ScriptedOrigin(
            reactor, [(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", True)]
        )
        self.listen(broken)
        echo = protocol.ServerFactory.forProtocol(_Echo)
        echo.noisy = False
        echo_port = reactor.listenTCP(0, echo, interface="127.0.0.1")
        self.addCleanup(echo_port.stopListening)
        port = echo_port.getHost().port
        self.use_access_config(f"[acl]\nSSL_ports = {{ port = [443, {port}] }}\n")

        fresh = origin.url("/cached/page?cc=max-age%3D600")
        statuses = []
        for url in (fresh, fresh, origin.url("/echo"), typed.url("/index.html")):
            statuses.append(await threads.deferToThread(self._get, url))
        statuses.append(await threads.deferToThread(self._get, origin.url("/echo"), "POST", b"x"))
        statuses.append(await threads.deferToThread(self._get, origin.url("/status/404")))
        await threads.deferToThread(self._read_all, broken.url("/"))
        denied = await threads.deferToThread(
            self.raw_exchange,
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        tunnelled = await threads.deferToThread(self._tunnel, port)
        bad = await threads.deferToThread(self.raw_exchange, b"GET /relative HTTP/1.1\r\n\r\n")
        self.assertEqual(statuses, [200, 200, 200, 200, 200, 404])
        self.assertTrue(denied.startswith(b"HTTP/1.1 403 "), denied[:40])
        self.assertTrue(tunnelled.startswith(b"HTTP/1.1 200 ") and tunnelled.endswith(b"ping"))
        self.assertTrue(bad.startswith(b"HTTP/1.1 400 "), bad[:40])
        # The tunnel's line is written when it closes: wait for it.
        for _ in range(100):
            lines = self.access_log_lines()
            if any(" TCP_TUNNEL/" in line for line in lines):
                break
            await threads.deferToThread(time.sleep, 0.05)
        expected = ["TCP_MISS", "TCP_MEM_HIT", "TCP_MISS_ABORTED", "TCP_DENIED", "TCP_TUNNEL"]
        return lines, expected

    async def test_lines_match_squid_native_format(self) -> None:
        """
        Every line of a log from real traffic is a strict Squid native line,
        the traffic's result codes are all there, and a I{Content-Type} with
        parameters is logged as Squid logs it: the bare media type.
        """
        lines, expected = await self._traffic()
        now = time.time()
        problems = [problem for line in lines for problem in check_squid_line(line, now)]
        self.assertEqual(problems, [])
        codes = {SQUID_LINE.fullmatch(line)["code"] for line in lines}  # type: ignore[index]
        self.assertEqual(sorted(set(expected) - codes), [])
        [typed] = [
            line
            for line in lines
            if line.endswith("/index.html - HIER_DIRECT/127.0.0.1 text/html")
        ]
        self.assertIn(" TCP_MISS/200 ", typed)

    async def test_calamaris_finds_no_invalid_line(self) -> None:
        """
        calamaris, a Squid log analyser, parses every line of a log from real
        traffic, counts each request, and files the media types as types.
        """
        calamaris = shutil.which("calamaris")
        if calamaris is None:
            self.skipTest(
                "calamaris is not installed (Debian package calamaris; "
                "bash .ci/setup-tools installs it)"
            )
        lines, expected = await self._traffic()
        log = "".join(line + "\n" for line in lines)
        result = await threads.deferToThread(
            subprocess.run,
            [calamaris, "--all-useful-reports", "--requester-report-no-dns-lookup"],
            input=log.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        report = result.stdout.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))
        parsed = re.search(r"^lines parsed: +lines +([0-9]+)", report, re.MULTILINE)
        invalid = re.search(r"^invalid lines: +lines +([0-9]+)", report, re.MULTILINE)
        self.assertIsNotNone(parsed, report)
        self.assertIsNotNone(invalid, report)
        assert parsed is not None and invalid is not None
        self.assertEqual((int(parsed.group(1)), int(invalid.group(1))), (len(lines), 0))
        for code in expected:
            self.assertRegex(report, rf"(?m)^ {code} +[1-9]")
        types = report.partition("# Requested content-type")[2].partition("\n# ")[0]
        self.assertRegex(types, r"(?m)^text/html +[1-9]")
        self.assertNotIn("charset", types)


class CustomFormatProxyTests(ProxyTestCase):
    """
    A custom Squid format string configured for a running proxy.
    """

    config_overrides = {
        "access_log": {"format": '%>a %Ss/%03>Hs %rm %rp %mt "%{User-Agent}>h" %{Referer}>h'}
    }

    def _get(self, url: str) -> int:
        """Fetch C{url} through the proxy with a User-Agent and a Referer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            conn.request(
                "GET", url, headers={"User-Agent": 'tool/1.0 "x"', "Referer": "http://r.test/a b"}
            )
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    async def test_request_headers_reach_the_line(self) -> None:
        """
        A format that logs C{%\\{User-Agent\\}>h} makes the proxy record the
        request's headers, and each code is written with its encoding: the
        quoted one inside the literal quotes, pass-through URL encoding for
        the bare Referer.
        """
        origin = Origin(reactor)
        self.listen(origin)
        status = await threads.deferToThread(self._get, origin.url("/echo?q=1"))
        self.assertEqual(status, 200)
        self.assertEqual(
            self.access_log_lines(),
            [
                '127.0.0.1 TCP_MISS/200 GET /echo?q=1 application/json "tool/1.0 \\"x\\"" '
                "http://r.test/a%20b"
            ],
        )
