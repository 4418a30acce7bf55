"""
Error pages from an administrator's C{error_directory}, served to real
requests through a proxy on a loopback port: by error name, in the
client's language, with the contact, and a broken template falling back
with one log line, never a 500.
"""

from __future__ import annotations

import http.client
import os
import socket
from typing import Any

from twisted.internet import threads
from twisted.logger import formatEvent, globalLogPublisher

from tests.proxyharness import ProxyTestCase


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class ErrorDirectoryTests(ProxyTestCase):
    """
    A proxy whose C{[errors]} table names a template directory.
    """

    def setUp(self) -> Any:
        directory = os.path.abspath(self.mktemp())
        _write(f"{directory}/ERR_CONNECT_FAIL.html", "<p>EN ${status}: ask ${cache_mgr}</p>\n")
        _write(f"{directory}/de/error.html", "<p>DE ${name} ${status}</p>\n")
        _write(f"{directory}/fr/ERR_CONNECT_FAIL.html", "<p>FR ${status} ${nope}</p>\n")
        self.config_overrides = {
            "errors": {"error_directory": directory, "cache_mgr": "ops@example.org"}
        }
        self.logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "squeak.errorpages":
                self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.directory_of_pages = directory
        return super().setUp()

    def _closed_port(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port

    def _get(self, url: str, language: str | None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            headers = {"Accept-Language": language} if language else {}
            connection.request("GET", url, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    async def test_pages_by_name_and_language(self) -> None:
        """
        A refused connection's page is the directory's ERR_CONNECT_FAIL.html
        for an English or unknown language, the German error.html for
        C{de}, and for C{fr}, whose template is broken, the next one (the
        default language's); one log line names the broken file; never a
        500.
        """
        url = f"http://127.0.0.1:{self._closed_port()}/"
        answers = [
            await threads.deferToThread(self._get, url, language)
            for language in (None, "de-AT, en;q=0.5", "ja", "fr")
        ]
        self.assertEqual(
            [(status, body, headers.get("Content-Language")) for status, headers, body in answers],
            [
                (502, b"<p>EN 502: ask ops@example.org</p>\n", "en"),
                (502, b"<p>DE ERR_CONNECT_FAIL 502</p>\n", "de"),
                (502, b"<p>EN 502: ask ops@example.org</p>\n", "en"),
                (502, b"<p>EN 502: ask ops@example.org</p>\n", "en"),
            ],
        )
        self.assertEqual({headers.get("Vary") for _, headers, _ in answers}, {"Accept-Language"})
        self.assertEqual(
            self.logged,
            [
                f"error page template {self.directory_of_pages}/fr/ERR_CONNECT_FAIL.html: "
                "unknown placeholder ${nope} (known: ${cache_mgr}, ${client}, ${date}, "
                "${detail}, ${explanation}, ${hostname}, ${language}, ${method}, ${name}, "
                "${phrase}, ${status}, ${title}, ${url}); using the next template "
                "(ultimately the shipped page) instead"
            ],
        )

    async def test_shipped_page_shows_the_contact(self) -> None:
        """
        An error without a template of its own (a malformed request,
        refused before its head was read) gets the shipped page with the
        administrator's contact.
        """
        answer = await threads.deferToThread(
            self.raw_exchange,
            b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nBad Field: x\r\n\r\n",
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertIn(b"Content-Language: en", head)
        self.assertIn(b"<!-- ERR_INVALID_REQ -->", body)
        self.assertIn(
            b'Your cache administrator is <a href="mailto:ops@example.org">ops@example.org</a>.',
            body,
        )
