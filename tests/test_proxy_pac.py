"""
The PAC file on the proxy port (squeak.proxy.pac), over real loopback
sockets: origin-form and absolute-form fetches, another host's
/proxy.pac still forwarded, who may fetch it, a file served as it is.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import reactor, threads

from squeak.pac import PAC_CONTENT_TYPE
from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.test_pac import pac_engine


def _fetch(port: int, request: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def _split(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split(b" ")[1]), fields, body


class PacServedTests(ProxyTestCase):
    """
    The generated file, with the default [pac] settings.
    """

    async def _get(self, target: str, host: str = "proxy.lan", *, method: str = "GET") -> Any:
        request = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        raw = await threads.deferToThread(_fetch, self.proxy_port, request.encode())
        return _split(raw)

    async def test_origin_form_fetch_of_both_names(self) -> None:
        """
        GET /proxy.pac and GET /wpad.dat, as browsers send them, get the
        file with its media type; it offers this listener then DIRECT, and
        sends LAN and loopback addresses direct (checked by pypac).
        """
        for path in ("/proxy.pac", "/wpad.dat"):
            status, fields, body = await self._get(path)
            self.assertEqual(status, 200, body[:200])
            self.assertEqual(fields[b"content-type"], PAC_CONTENT_TYPE)
            self.assertEqual(int(fields[b"content-length"]), len(body))
            engine = pac_engine(body.decode("ascii"))
            offered = f"PROXY 127.0.0.1:{self.proxy_port}; DIRECT"
            self.assertEqual(
                engine.find_proxy_for_url("http://example.org/", "example.org"), offered
            )
            self.assertEqual(engine.find_proxy_for_url("http://10.2.3.4/", "10.2.3.4"), "DIRECT")
        [line] = [line for line in self.access_log_lines() if "/proxy.pac" in line]
        fields = line.split()
        self.assertEqual(fields[2:4], ["127.0.0.1", "TCP_MISS/200"], line)
        self.assertEqual(fields[-2:], ["HIER_NONE/-", PAC_CONTENT_TYPE.decode()], line)

    async def test_head_gets_the_fields_only(self) -> None:
        """
        HEAD /proxy.pac: the file's fields and length, no body.
        """
        status, fields, body = await self._get("/proxy.pac", method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(fields[b"content-type"], PAC_CONTENT_TYPE)
        self.assertGreater(int(fields[b"content-length"]), 0)
        self.assertEqual(body, b"")

    async def test_absolute_form_naming_this_proxy(self) -> None:
        """
        http://127.0.0.1:PORT/proxy.pac and http://localhost:PORT/wpad.dat,
        this proxy's address and name on the port the client reached, are
        answered here, not forwarded.
        """
        for host in ("127.0.0.1", "localhost", "squeak.test"):
            status, fields, body = await self._get(f"http://{host}:{self.proxy_port}/wpad.dat")
            self.assertEqual(status, 200, (host, body[:300]))
            self.assertEqual(fields[b"content-type"], PAC_CONTENT_TYPE)
            self.assertIn(b"FindProxyForURL", body)

    async def test_another_hosts_proxy_pac_is_forwarded(self) -> None:
        """
        An absolute URI for some other server's /proxy.pac (another port,
        here an origin on the same address) is proxied as any request.
        """
        origin = Origin(reactor)
        port = self.listen(origin)
        status, fields, _body = await self._get(f"http://127.0.0.1:{port}/proxy.pac")
        self.assertNotEqual(fields.get(b"content-type"), PAC_CONTENT_TYPE)
        self.assertEqual([r["uri"] for r in origin.requests], ["/proxy.pac"])
        self.assertIn(status, (200, 404))

    async def test_other_methods_and_paths_are_not_the_file(self) -> None:
        """
        POST /proxy.pac and GET /x/proxy.pac in origin form are not the
        file: a forward proxy refuses origin-form requests (400).
        """
        for method, target in (("POST", "/proxy.pac"), ("GET", "/x/proxy.pac")):
            status, _fields, _body = await self._get(target, method=method)
            self.assertEqual(status, 400, (method, target))


class PacAccessTests(ProxyTestCase):
    """
    [pac] allow: only its src ACLs' clients get the file.
    """

    config_overrides = {"pac": {"allow": ("localhost",)}}

    async def test_clients_outside_allow_get_403(self) -> None:
        """
        127.0.0.1 (localhost) gets the file; 127.0.0.2 (localnet, but not
        in [pac] allow) gets 403, logged as denied.
        """
        request = b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        allowed = await threads.deferToThread(_fetch, self.proxy_port, request, "127.0.0.1")
        denied = await threads.deferToThread(_fetch, self.proxy_port, request, "127.0.0.2")
        self.assertEqual(_split(allowed)[0], 200)
        self.assertEqual(_split(denied)[0], 403)
        self.assertIn(b"ERR_ACCESS_DENIED", denied)
        [line] = [line for line in self.access_log_lines() if "127.0.0.2" in line]
        self.assertIn("TCP_DENIED/403", line)


class PacFileTests(ProxyTestCase):
    """
    [pac] file: served as it is, and again as soon as it changes.
    """

    def setUp(self) -> Any:
        self.pac_path = os.path.join(os.path.abspath(self.mktemp()) + ".pac")
        with open(self.pac_path, "w", encoding="ascii") as handle:
            handle.write('function FindProxyForURL(url, host) { return "PROXY one:1"; }\n')
        self.config_overrides = {"pac": {"file": self.pac_path}}
        return super().setUp()

    async def test_file_served_and_edits_seen(self) -> None:
        """
        The file's bytes are the answer; after an edit, the new bytes.
        """
        request = b"GET /wpad.dat HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        raw = await threads.deferToThread(_fetch, self.proxy_port, request)
        status, fields, body = _split(raw)
        self.assertEqual((status, fields[b"content-type"]), (200, PAC_CONTENT_TYPE))
        self.assertIn(b'"PROXY one:1"', body)
        with open(self.pac_path, "w", encoding="ascii") as handle:
            handle.write('function FindProxyForURL(url, host) { return "PROXY two:22"; }\n')
        raw = await threads.deferToThread(_fetch, self.proxy_port, request)
        self.assertIn(b'"PROXY two:22"', _split(raw)[2])

    async def test_unreadable_file_is_a_500_page(self) -> None:
        """
        A file removed since the configuration was loaded: 500, saying so.
        """
        os.remove(self.pac_path)
        request = b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        raw = await threads.deferToThread(_fetch, self.proxy_port, request)
        self.assertEqual(_split(raw)[0], 500)
        self.assertIn(b"cannot read the PAC file", raw)


class PacDisabledTests(ProxyTestCase):
    """
    [pac] enabled = false: nothing is served.
    """

    config_overrides = {"pac": {"enabled": False}}

    async def test_no_file(self) -> None:
        """
        GET /proxy.pac is then an origin-form request like any other: 400.
        """
        request = b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        raw = await threads.deferToThread(_fetch, self.proxy_port, request)
        self.assertEqual(_split(raw)[0], 400)
