# -*- test-case-name: tests.test_cache_keys -*-
"""
Tests for L{squeak.cache.keys}: primary and secondary (Vary) keys
(RFC 9111 §2, §4.1).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.cache.keys import normalise_uri, primary_key, secondary_key, vary_fields

URIS = [  # (why, uri, expected)
    (
        "RFC 9110 §4.2.3: scheme and host are case-insensitive",
        "HTTP://Example.COM/a",
        "http://example.com/a",
    ),
    ("RFC 9110 §4.2.3: default port dropped", "http://example.com:80/a", "http://example.com/a"),
    (
        "RFC 9110 §4.2.3: https default port dropped",
        "https://example.com:443/",
        "https://example.com/",
    ),
    ("RFC 9110 §4.2.3: empty port dropped", "http://example.com:/a", "http://example.com/a"),
    ("RFC 9110 §4.2.3: other port kept", "http://example.com:8080/a", "http://example.com:8080/a"),
    ("RFC 9110 §4.2.3: empty path is /", "http://example.com", "http://example.com/"),
    (
        "RFC 9110 §4.2.3: empty path before a query",
        "http://example.com?q=1",
        "http://example.com/?q=1",
    ),
    (
        "RFC 3986 §6.2.2.1: percent-encodings upper-cased",
        "http://e.com/a%2fb",
        "http://e.com/a%2Fb",
    ),
    ("RFC 9110 §4.2.3: path case kept", "http://e.com/A/b", "http://e.com/A/b"),
    ("RFC 9110 §7.1: fragment removed", "http://e.com/a#frag", "http://e.com/a"),
    ("IPv6 literal", "http://[::1]:80/", "http://[::1]/"),
    ("IPv6 literal with port", "http://[::1]:8080/", "http://[::1]:8080/"),
    ("not absolute: unchanged", "/just/a/path", "/just/a/path"),
]


class PrimaryKeyTests(SynchronousTestCase):
    """
    Tests for L{normalise_uri} and L{primary_key}.
    """

    def test_normalise_table(self) -> None:
        """
        Each row normalises as the section it cites allows.
        """
        wrong = [
            (why, got, want) for why, uri, want in URIS if (got := normalise_uri(uri)) != want
        ]
        self.assertEqual(wrong, [])

    def test_head_shares_get(self) -> None:
        """
        RFC 9110 §9.3.2: HEAD is answered from a stored GET, so both share a key.
        """
        self.assertEqual(
            primary_key(b"HEAD", "http://e.com/"), primary_key(b"GET", "http://E.com:80")
        )

    def test_other_methods_differ(self) -> None:
        """
        RFC 9111 §2: the method is part of the key.
        """
        self.assertNotEqual(
            primary_key(b"POST", "http://e.com/"), primary_key(b"GET", "http://e.com/")
        )

    @given(st.text())
    def test_never_raises(self, uri: str) -> None:
        """
        Any string can be keyed.
        """
        primary_key(b"GET", uri)


class VaryTests(SynchronousTestCase):
    """
    Tests for L{vary_fields} and L{secondary_key} (RFC 9111 §4.1).
    """

    def test_fields(self) -> None:
        """
        Vary names are lower-cased, de-duplicated and sorted across lines.
        """
        self.assertEqual(
            vary_fields(
                [(b"Vary", b"Accept-Encoding, User-Agent"), (b"vary", b"accept-encoding")]
            ),
            (b"accept-encoding", b"user-agent"),
        )

    def test_same_key_table(self) -> None:
        """
        Requests whose Vary-named fields normalise alike share a key; others do not.
        """
        fields = (b"accept-encoding", b"accept-language")
        cases = [  # (why, request a, request b, same)
            (
                "RFC 9111 §4.1: identical values match",
                [(b"Accept-Encoding", b"gzip")],
                [(b"accept-encoding", b"gzip")],
                True,
            ),
            (
                "RFC 9111 §4.1: whitespace is normalised",
                [(b"Accept-Encoding", b"gzip,  br")],
                [(b"Accept-Encoding", b"gzip , br")],
                True,
            ),
            (
                "RFC 9111 §4.1: repeated lines combine with a comma",
                [(b"Accept-Encoding", b"gzip"), (b"Accept-Encoding", b"br")],
                [(b"Accept-Encoding", b"gzip, br")],
                True,
            ),
            (
                "RFC 9111 §4.1: different values differ",
                [(b"Accept-Encoding", b"gzip")],
                [(b"Accept-Encoding", b"br")],
                False,
            ),
            ("RFC 9111 §4.1: absent matches only absent", [], [(b"Accept-Encoding", b"")], False),
            ("RFC 9111 §4.1: both absent match", [(b"X", b"1")], [], True),
            (
                "RFC 9111 §4.1: fields not named do not matter",
                [(b"Cookie", b"a")],
                [(b"Cookie", b"b")],
                True,
            ),
        ]
        wrong = [
            why
            for why, a, b, same in cases
            if (secondary_key(fields, a) == secondary_key(fields, b)) != same
        ]
        self.assertEqual(wrong, [])

    def test_star_never_matches(self) -> None:
        """
        RFC 9111 §4.1: a Vary of * always fails to match.
        """
        self.assertIsNone(secondary_key(vary_fields([(b"Vary", b"Accept, *")]), []))

    def test_no_vary(self) -> None:
        """
        Without Vary the secondary key is empty.
        """
        self.assertEqual(secondary_key((), [(b"Accept", b"x")]), "")
