"""
The fields an application behind the accelerator sees and sends back
(squeak/accel/headers.py).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.accel.config import Route
from squeak.accel.headers import forwarding_fields, rewrite_redirect, rewrite_refresh

_SENT = [
    (b"Host", b"app.example"),
    (b"X-Forwarded-For", b"10.0.0.1"),
    (b"X-Forwarded-Proto", b"https"),
    (b"x-forwarded-host", b"evil.example"),
    (b"Forwarded", b"for=10.0.0.1"),
    (b"Accept", b"*/*"),
]


class ForwardingTests(SynchronousTestCase):
    def _fields(self, style: str, client: str = "192.0.2.7") -> list[tuple[bytes, bytes]]:
        return forwarding_fields(
            _SENT, style=style, client_ip=client, proto="http", host=b"app.example"
        )

    def test_x_forwarded(self) -> None:
        """The chain extended, Proto and Host replaced, Forwarded left as sent."""
        self.assertEqual(
            self._fields("x-forwarded"),
            [
                (b"Host", b"app.example"),
                (b"Forwarded", b"for=10.0.0.1"),
                (b"Accept", b"*/*"),
                (b"X-Forwarded-For", b"10.0.0.1, 192.0.2.7"),
                (b"X-Forwarded-Proto", b"http"),
                (b"X-Forwarded-Host", b"app.example"),
            ],
        )

    def test_forwarded(self) -> None:
        """RFC 7239: one element appended; IPv6 nodes quoted and bracketed (§6)."""
        fields = dict(self._fields("forwarded", "2001:db8::1"))
        self.assertEqual(
            fields[b"Forwarded"], b'for=10.0.0.1, for="[2001:db8::1]";proto=http;host=app.example'
        )
        self.assertEqual(fields[b"X-Forwarded-For"], b"10.0.0.1")
        self.assertNotIn(b"X-Forwarded-Proto", fields)

    def test_both_and_none(self) -> None:
        """Both styles at once; none removes only the spoofable Proto and Host."""
        both = dict(self._fields("both"))
        self.assertIn(b"Forwarded", both)
        self.assertEqual(both[b"X-Forwarded-Proto"], b"http")
        none = self._fields("none")
        self.assertEqual(
            [name for name, _ in none], [b"Host", b"X-Forwarded-For", b"Forwarded", b"Accept"]
        )


class RedirectTests(SynchronousTestCase):
    SERVERS = frozenset({b"127.0.0.1:9000", b"app.internal"})

    def _rewrite(self, value: bytes, route: Route | None = None) -> bytes:
        return rewrite_redirect(
            value, servers=self.SERVERS, public_origin=b"https://app.example", route=route
        )

    def test_table(self) -> None:
        """Server addresses become the public origin; other sites are left alone."""
        stripped = Route("/shop/", "p", "/")
        moved = Route("/new/", "p", "/v2/")
        cases = [
            (b"http://127.0.0.1:9000/login", None, b"https://app.example/login"),
            (b"HTTP://APP.INTERNAL/x?y=1", None, b"https://app.example/x?y=1"),
            (b"http://127.0.0.1:9000", None, b"https://app.example/"),
            (b"http://127.0.0.1:9001/login", None, b"http://127.0.0.1:9001/login"),
            (b"https://other.example/", None, b"https://other.example/"),
            (b"/login", None, b"/login"),
            (b"/login", stripped, b"/shop/login"),
            (b"http://127.0.0.1:9000/cart", stripped, b"https://app.example/shop/cart"),
            (b"/v2/page", moved, b"/new/page"),
            (b"/elsewhere", moved, b"/elsewhere"),
            (b"//cdn.example/x", stripped, b"//cdn.example/x"),
            (b"relative", stripped, b"relative"),
        ]
        wrong = [
            (value, got, want)
            for value, route, want in cases
            if (got := self._rewrite(value, route)) != want
        ]
        self.assertEqual(wrong, [])

    def test_refresh(self) -> None:
        """Refresh's URL is rewritten as a Location; other forms left alone."""

        def rewrite(value: bytes) -> bytes:
            return rewrite_refresh(
                value, servers=self.SERVERS, public_origin=b"https://app.example", route=None
            )

        self.assertEqual(
            rewrite(b"5; url=http://127.0.0.1:9000/next"), b"5; url=https://app.example/next"
        )
        self.assertEqual(
            rewrite(b"0;URL='http://app.internal/a'"), b"0;URL='https://app.example/a'"
        )
        self.assertEqual(rewrite(b"30"), b"30")
