# -*- test-case-name: tests.test_errors -*-
"""
Tests for L{squeak.errors}: error names, the body-ending vocabulary, and
the error pages (the mapping of network failures is tested in
tests/test_net_failures.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser

from twisted.trial.unittest import SynchronousTestCase

from squeak.errorpages import render_error_page
from squeak.errors import (
    CATALOGUE,
    ERROR_CONTENT_TYPE,
    BodyComplete,
    BodyEnded,
    BodyEndedByClose,
    ProxyError,
    error_headers,
)

NAMES = {  # the names squeak uses, with their default status
    "ERR_INVALID_REQ": 400,
    "ERR_INVALID_URL": 400,
    "ERR_UNSUP_REQ": 400,
    "ERR_TOO_BIG": 413,
    "ERR_DNS_FAIL": 503,
    "ERR_CONNECT_FAIL": 502,
    "ERR_READ_TIMEOUT": 504,
    "ERR_READ_ERROR": 502,
    "ERR_WRITE_ERROR": 502,
    "ERR_INVALID_RESP": 502,
    "ERR_ZERO_SIZE_OBJECT": 502,
    "ERR_FORWARDING_LOOP": 508,
    "ERR_ACCESS_DENIED": 403,
    "ERR_CACHE_ACCESS_DENIED": 407,
    "ERR_SECURE_CONNECT_FAIL": 502,
    "ERR_GATEWAY_FAILURE": 500,
    "ERR_ONLY_IF_CACHED_MISS": 504,
}


class _PageParser(HTMLParser):
    """
    Collect the text of C{<p id="reason">}, the comments and the title of
    an error page.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.comments: list[str] = []
        self.reason = ""
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in = "title"
        elif tag == "p" and ("id", "reason") in attrs:
            self._in = "reason"

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "reason":
            self.reason += data

    def handle_comment(self, data: str) -> None:
        self.comments.append(data.strip())


def _render(error: ProxyError, url: str = "http://o.test/", method: str = "GET") -> bytes:
    """
    Render C{error} with fixed request facts.
    """
    return render_error_page(
        error,
        url=url,
        method=method,
        client="192.0.2.7",
        visible_hostname="proxy.test",
        now=784111777.0,
    )


class ProxyErrorTests(SynchronousTestCase):
    """
    Tests for L{ProxyError} and L{CATALOGUE}.
    """

    def test_catalogue_names_and_statuses(self) -> None:
        """
        The catalogue holds every error name squeak uses, each with its default
        status, a title and a one-paragraph explanation.
        """
        wrong = [
            (name, CATALOGUE[name].status if name in CATALOGUE else None, status)
            for name, status in NAMES.items()
            if name not in CATALOGUE or CATALOGUE[name].status != status
        ]
        self.assertEqual(wrong, [])
        empty = [
            name
            for name, info in CATALOGUE.items()
            if not info.title or len(info.explanation) < 40 or "\n" in info.explanation
        ]
        self.assertEqual(empty, [])

    def test_fields(self) -> None:
        """
        A L{ProxyError} carries its name, status and detail, and says all
        three in C{str()}.
        """
        e = ProxyError("ERR_DNS_FAIL", 503, "cannot resolve host nx.test")
        self.assertEqual((e.name, e.status, e.detail), ("ERR_DNS_FAIL", 503, e.detail))
        self.assertEqual(str(e), "ERR_DNS_FAIL 503: cannot resolve host nx.test")
        self.assertIsInstance(e, Exception)

    def test_default_status_from_catalogue(self) -> None:
        """
        Without a status, the catalogue's default status is used.
        """
        self.assertEqual(ProxyError("ERR_FORWARDING_LOOP").status, 508)
        self.assertEqual(ProxyError("ERR_ACCESS_DENIED", detail="x").status, 403)

    def test_explicit_status_overrides_default(self) -> None:
        """
        An explicit status wins: a connect timeout is C{ERR_CONNECT_FAIL} with
        504 rather than the default 502.
        """
        self.assertEqual(ProxyError("ERR_CONNECT_FAIL", 504, "connect timed out").status, 504)

    def test_unknown_name_is_tolerated(self) -> None:
        """
        A name missing from the catalogue defaults to status 500 and a generic
        entry, so that answering with an error never fails.
        """
        e = ProxyError("ERR_SOMETHING_NEW")
        self.assertEqual(e.status, 500)
        self.assertTrue(e.info.title)
        self.assertIn(b"ERR_SOMETHING_NEW", _render(e))


class RenderErrorPageTests(SynchronousTestCase):
    """
    Tests for L{render_error_page} and L{error_headers}.
    """

    def test_page_contents(self) -> None:
        """
        The page is UTF-8 HTML with Squid's title and the error name, status,
        explanation, detail, method, URL, client, proxy name and the time.
        """
        e = ProxyError("ERR_DNS_FAIL", 503, "cannot resolve host nx.test")
        page = _render(e, url="http://nx.test/a?b=c", method="GET").decode("utf-8")
        wanted = [
            "<title>ERROR: The requested URL could not be retrieved</title>",
            "ERR_DNS_FAIL",
            "503 Service Unavailable",
            CATALOGUE["ERR_DNS_FAIL"].title,
            CATALOGUE["ERR_DNS_FAIL"].explanation,
            "cannot resolve host nx.test",
            "GET http://nx.test/a?b=c",
            "192.0.2.7",
            "proxy.test",
            "Sun, 06 Nov 1994 08:49:37 GMT",
        ]
        self.assertEqual([w for w in wanted if w not in page], [])

    def test_name_comment_and_reason(self) -> None:
        """
        A script finds the error name in a comment and the plain reason in
        C{<p id="reason">}.
        """
        e = ProxyError("ERR_CONNECT_FAIL", 502, "connection refused")
        parser = _PageParser()
        parser.feed(_render(e).decode("utf-8"))
        self.assertIn("ERR_CONNECT_FAIL", parser.comments)
        self.assertEqual(parser.reason, "connection refused")
        self.assertEqual(parser.title, "ERROR: The requested URL could not be retrieved")
        self.assertIn(b"<!-- ERR_CONNECT_FAIL -->", _render(e))

    def test_reason_defaults_to_title(self) -> None:
        """
        Without a detail, the reason paragraph holds the error's title.
        """
        parser = _PageParser()
        parser.feed(_render(ProxyError("ERR_ACCESS_DENIED")).decode("utf-8"))
        self.assertEqual(parser.reason, "Access Denied")

    def test_interpolated_values_escaped(self) -> None:
        """
        A hostile URL, method, detail or host name comes out HTML-escaped:
        no tag from the request reaches the page.
        """
        e = ProxyError("ERR_INVALID_URL", 400, 'bad "url" <b>here</b>')
        page = render_error_page(
            e,
            url='http://x.test/<script>alert("x")</script>',
            method="<img src=x onerror=alert(1)>",
            client="<i>client</i>",
            visible_hostname="<proxy>",
            now=0.0,
        ).decode("utf-8")
        leaked = [s for s in ("<script>", "<img", "<b>here", "<i>client", "<proxy>") if s in page]
        self.assertEqual(leaked, [])
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;", page)
        parser = _PageParser()
        parser.feed(page)
        self.assertEqual(parser.reason, 'bad "url" <b>here</b>')

    def test_no_placeholders_left(self) -> None:
        """
        Every placeholder of the template is filled, for every catalogue entry.
        """
        left = [name for name in CATALOGUE if re.search(rb"\$\{?\w", _render(ProxyError(name)))]
        self.assertEqual(left, [])

    def test_non_ascii_url(self) -> None:
        """
        Text outside ASCII is encoded as UTF-8, matching L{ERROR_CONTENT_TYPE}.
        """
        page = _render(ProxyError("ERR_DNS_FAIL"), url="http://bücher.test/")
        self.assertIn("bücher".encode(), page)
        self.assertEqual(ERROR_CONTENT_TYPE, b"text/html; charset=utf-8")

    def test_error_headers(self) -> None:
        """
        The headers name the error in C{X-Squeak-Error}, give the content type
        and forbid caching; a length is added when given.
        """
        e = ProxyError("ERR_DNS_FAIL", 503, "x")
        self.assertEqual(
            error_headers(e),
            [
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Cache-Control", b"no-store"),
                (b"X-Squeak-Error", b"ERR_DNS_FAIL"),
            ],
        )
        self.assertIn((b"Content-Length", b"12"), error_headers(e, content_length=12))

    def test_error_header_cannot_be_split(self) -> None:
        """
        An error name with CR or LF cannot inject a header line.
        """
        headers = error_headers(ProxyError("ERR_X\r\nSet-Cookie: a=b"))
        values = [v for n, v in headers if n == b"X-Squeak-Error"]
        self.assertEqual(values, [b"ERR_X__Set_Cookie__a_b"])


class VocabularyTests(SynchronousTestCase):
    """
    L{squeak.errors} is a pure vocabulary.
    """

    def test_body_endings(self) -> None:
        """
        L{BodyComplete} and L{BodyEndedByClose} are both L{BodyEnded}, and
        neither is the other: only the first may commit a cache entry.
        """
        self.assertTrue(issubclass(BodyComplete, BodyEnded))
        self.assertTrue(issubclass(BodyEndedByClose, BodyEnded))
        self.assertFalse(issubclass(BodyEndedByClose, BodyComplete))
        self.assertFalse(issubclass(BodyComplete, BodyEndedByClose))

    def test_imports_no_network_code(self) -> None:
        """
        Importing L{squeak.errors} in a fresh interpreter loads no Twisted
        reactor code, no TLS library and nothing from L{squeak.net}.
        """
        code = (
            "import sys, squeak.errors\n"
            "bad = sorted(m for m in sys.modules if m.startswith(("
            "'twisted', 'OpenSSL', 'service_identity', 'squeak.net')))\n"
            "print(','.join(bad))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.assertEqual(out, "")
