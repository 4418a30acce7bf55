"""
TLS both ways: verified upstream TLS for https:// URIs, and the TLS
listener (an HTTPS proxy port) for clients.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.ssl import CertificateOptions, KeyPair, PrivateCertificate

from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.tlsfixtures import ServerFiles, make_server_files


def _tls_origin(test: ProxyTestCase, files: ServerFiles) -> tuple[Origin, int]:
    """
    A loopback HTTPS origin serving L{Origin}'s resources with C{files}.
    """
    origin = Origin(reactor)
    key = KeyPair.load(files.key.read_bytes(), 1)
    cert = PrivateCertificate.load(files.certificate.read_bytes(), key, 1)
    options = CertificateOptions(privateKey=key.original, certificate=cert.original)
    port = reactor.listenSSL(0, origin.site, options, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    origin.port = port
    return origin, port.getHost().port


def _get(proxy_port: int, url: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class UpstreamTlsTests(ProxyTestCase):
    """
    https:// URIs are fetched over TLS with certificate and host name
    verification.
    """

    def setUp(self) -> Any:
        directory = Path(os.path.abspath(self.mktemp()))
        self.good = make_server_files(directory / "good", ["127.0.0.1", "localhost"])
        self.wrong_name = make_server_files(directory / "wrong", ["other.test"])
        bundle = directory / "cas.pem"
        bundle.write_bytes(self.good.ca.read_bytes() + self.wrong_name.ca.read_bytes())
        self.config_overrides = {"upstream": {"ca_file": str(bundle)}}
        return super().setUp()

    async def test_verified_https_origin_is_fetched(self) -> None:
        """
        An origin whose certificate chains to the configured CA and names
        the host is fetched; the origin sees the request.
        """
        origin, port = _tls_origin(self, self.good)
        status, body = await threads.deferToThread(
            _get, self.proxy_port, f"https://127.0.0.1:{port}/echo/secure"
        )
        self.assertEqual(status, 200, body[:200])
        self.assertEqual([r["uri"] for r in origin.requests], ["/echo/secure"])

    async def test_https_responses_are_cached_by_https_uri(self) -> None:
        """
        A cacheable response fetched over TLS is stored under its https URI
        and served from the cache the second time.
        """
        origin, port = _tls_origin(self, self.good)
        url = f"https://127.0.0.1:{port}/cached/tls?cc=max-age=60"
        first = await threads.deferToThread(_get, self.proxy_port, url)
        second = await threads.deferToThread(_get, self.proxy_port, url)
        self.assertEqual(first, second)
        self.assertEqual(origin.counts[b"/cached/tls"], 1)
        self.assertIn("TCP_MEM_HIT/200", self.access_log_lines()[-1])
        self.assertIn(url, self.access_log_lines()[-1])

    async def test_host_name_mismatch_is_502(self) -> None:
        """
        A certificate for another name gives 502 ERR_SECURE_CONNECT_FAIL and
        no request reaches the origin.
        """
        origin, port = _tls_origin(self, self.wrong_name)
        status, body = await threads.deferToThread(
            _get, self.proxy_port, f"https://127.0.0.1:{port}/echo"
        )
        self.assertEqual(status, 502)
        self.assertIn(b"ERR_SECURE_CONNECT_FAIL", body)
        self.assertEqual(origin.requests, [])


class UntrustedUpstreamTlsTests(ProxyTestCase):
    """
    Without the test CA configured, the system trust store refuses it.
    """

    async def test_untrusted_certificate_is_502(self) -> None:
        """
        A certificate from an unknown CA gives 502 ERR_SECURE_CONNECT_FAIL.
        """
        files = make_server_files(Path(os.path.abspath(self.mktemp())), ["127.0.0.1"])
        origin, port = _tls_origin(self, files)
        status, body = await threads.deferToThread(
            _get, self.proxy_port, f"https://127.0.0.1:{port}/echo"
        )
        self.assertEqual(status, 502)
        self.assertIn(b"ERR_SECURE_CONNECT_FAIL", body)
        self.assertEqual(origin.requests, [])


class TlsListenerTests(ProxyTestCase):
    """
    Clients can speak TLS to the proxy (an HTTPS proxy port).
    """

    def setUp(self) -> Any:
        directory = Path(os.path.abspath(self.mktemp()))
        self.files = make_server_files(directory, ["127.0.0.1"])
        self.config_overrides = {
            "tls": {
                "https_port": (__import__("squeak.config").config.ListenAddress("127.0.0.1", 0),),
                "certificate": str(self.files.certificate),
                "key": str(self.files.key),
            }
        }
        result = super().setUp()
        self.tls_port = self.service.services[2].port.getHost().port
        return result

    def _client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.files.ca))
        return context

    async def test_absolute_uri_request_over_tls(self) -> None:
        """
        A request sent inside TLS to the proxy is proxied like any other.
        """
        origin = Origin(reactor)
        self.listen(origin)

        def fetch() -> tuple[str, bytes]:
            with (
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw,
                self._client_context().wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                version = s.version() or ""
                s.sendall(
                    f"GET {origin.url('/echo/tls')} HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return version, data

        version, data = await threads.deferToThread(fetch)
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:60])
        self.assertIn(b"/echo/tls", data)

    async def test_old_tls_versions_are_refused(self) -> None:
        """
        A client limited to TLS 1.1 cannot complete a handshake.
        """

        def handshake() -> str:
            context = self._client_context()
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            with contextlib.suppress(ssl.SSLError):
                context.set_ciphers("ALL:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
                try:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                        return s.version() or "?"
                except (ssl.SSLError, ConnectionResetError, OSError) as error:
                    return f"refused: {type(error).__name__}"

        result = await threads.deferToThread(handshake)
        self.assertTrue(result.startswith("refused"), result)

    async def test_connect_tunnel_inside_tls(self) -> None:
        """
        A CONNECT tunnel works inside the TLS connection to the proxy.
        """
        from twisted.internet import protocol

        class Echo(protocol.Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data)

        factory = protocol.ServerFactory.forProtocol(Echo)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        target = port.getHost().port
        self.use_access_config(f"[acl]\nSSL_ports = {{ port = [443, {target}] }}\n")

        def exchange() -> bytes:
            with (
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw,
                self._client_context().wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                s.sendall(f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    data += s.recv(4096)
                head, _, rest = data.partition(b"\r\n\r\n")
                s.sendall(b"ping-through-tls")
                while len(rest) < len(b"ping-through-tls"):
                    rest += s.recv(4096)
                return head + b"|" + rest

        result = await threads.deferToThread(exchange)
        self.assertEqual(result, b"HTTP/1.1 200 Connection established|ping-through-tls")
