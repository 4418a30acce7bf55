# -*- test-case-name: tests.test_http_grammar -*-
"""
Tests for L{squeak.http.grammar}: each pattern against the ABNF it quotes
(RFC 9110 §5, RFC 9112 §2-§7), one table of matches and non-matches per
rule.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http import grammar

TABLES: list[tuple[str, re.Pattern[bytes], list[bytes], list[bytes]]] = [
    # (why, pattern, must match whole, must not match whole)
    (
        "RFC 9110 §5.6.2 token",
        grammar.TOKEN_RE,
        [b"GET", b"X-Custom_1", b"!#$%&'*+-.^_`|~", b"a"],
        [b"", b"a b", b"a:b", b"a\x00", b"(a)", b"\xe9", b'"a"', b"a/b"],
    ),
    (
        "RFC 9112 §5 field-line",
        grammar.FIELD_LINE,
        [b"Host: o.test", b"X-A:", b"X-A:\t1 ", b"X-A: \xe9t\xe9", b"X-A: a:b"],
        [b" X-A: 1", b"X-A : 1", b"X-A", b"X-A: a\x00b", b"X-A: a\rb", b"X-A: a\nb", b": 1"],
    ),
    (
        "RFC 9112 §3 request-line",
        grammar.REQUEST_LINE,
        [b"GET / HTTP/1.1", b"CONNECT o.test:443 HTTP/1.1", b"GET http://o/?a=%20 HTTP/1.0"],
        [
            b"GET  / HTTP/1.1",
            b"GET / HTTP/1.1 ",
            b"GET / http/1.1",
            b"GET / HTTP/11",
            b"G T / HTTP/1.1",
        ],
    ),
    (
        "RFC 9112 §4 status-line",
        grammar.STATUS_LINE,
        [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.0 404 Not Found",
            b"HTTP/1.1 304",
            b"HTTP/1.1 200 ",
            b"HTTP/1.1 999 x",
        ],
        [
            b"HTTP/1.1 000 Zero",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.1 200 O\x00K",
            b"HTTP/1.1 200 O\nK",
        ],
    ),
    (
        "RFC 9112 §7.1 chunk-size [ chunk-ext ]",
        grammar.CHUNK_SIZE_LINE,
        [b"0", b"5", b"fF", b"0000000000000001", b"5;name=value", b"5 ; ext", b"5\t;x"],
        [b"", b"+5", b"-5", b"0x5", b" 5", b"5 ", b"g", b"11111111111111111", b"5;\x00"],
    ),
]


class GrammarTests(SynchronousTestCase):
    """
    Each pattern matches what its rule allows and nothing else.
    """

    def test_tables(self) -> None:
        """
        Every row's good strings match the pattern whole and its bad strings
        do not.
        """
        wrong = []
        for why, pattern, good, bad in TABLES:
            wrong += [(why, "refused", text) for text in good if not pattern.fullmatch(text)]
            wrong += [(why, "accepted", text) for text in bad if pattern.fullmatch(text)]
        self.assertEqual(wrong, [])

    def test_status_line_groups(self) -> None:
        """
        The status-line groups are the version digits, the code and the
        reason (absent when the line has no second SP).
        """
        match = grammar.STATUS_LINE.fullmatch(b"HTTP/1.0 404 Not Found")
        self.assertIsNotNone(match)
        assert match is not None
        self.assertEqual(match.groups(), (b"1", b"0", b"404", b"Not Found"))
        bare = grammar.STATUS_LINE.fullmatch(b"HTTP/1.1 304")
        assert bare is not None
        self.assertIsNone(bare.group(4))

    def test_field_block_is_field_lines_joined(self) -> None:
        """
        L{grammar.FIELD_BLOCK} matches exactly the CRLF-joined sequences of
        L{grammar.FIELD_LINE}s.
        """
        lines = [b"A: 1", b"B:", b"C: \t3"]
        self.assertIsNotNone(grammar.FIELD_BLOCK.fullmatch(b"\r\n".join(lines)))
        for bad in (b"A: 1\nB: 2", b"A: 1\r\n\r\nB: 2", b"A: 1\r\n B", b"A: 1\r\n"):
            self.assertIsNone(grammar.FIELD_BLOCK.fullmatch(bad), bad)

    def test_request_head_is_request_line_and_field_lines(self) -> None:
        """
        L{grammar.REQUEST_HEAD} matches exactly a L{grammar.REQUEST_LINE}
        followed, if there are any, by CRLF-joined L{grammar.FIELD_LINE}s,
        with L{grammar.REQUEST_LINE}'s groups.
        """
        heads = [b"GET / HTTP/1.1", b"GET http://o/ HTTP/1.0\r\nHost: o\r\nX-A:"]
        for head in heads:
            match = grammar.REQUEST_HEAD.fullmatch(head)
            assert match is not None, head
            first = grammar.REQUEST_LINE.fullmatch(head.split(b"\r\n")[0])
            assert first is not None
            self.assertEqual(match.groups(), first.groups())
        for bad in (
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: o\r\n",
            b"GET / HTTP/1.1\nHost: o",
            b"GET / HTTP/1.1\r\n Host: o",
            b"GET / HTTP/1.1\r\nHost : o",
            b"GET / HTTP/1.1 \r\nHost: o",
            b"GET / HTTP/1.1\r\nHost: o\r\n\r\nX: 1",
        ):
            self.assertIsNone(grammar.REQUEST_HEAD.fullmatch(bad), bad)

    @given(
        st.lists(
            st.sampled_from(
                [
                    *(b"GET", b" ", b"/", b"HTTP/1.1", b"\r\n", b"\r", b"\n", b"Host"),
                    *(b":", b"\t", b"a", b"\x00", b"\x7f", b"\xe9", b"(", b"HTTP/2.0"),
                ]
            ),
            max_size=24,
        ).map(b"".join)
    )
    @settings(max_examples=3000)
    def test_possessive_forms_match_the_plain_ones(self, text: bytes) -> None:
        """
        L{grammar.FIELD_BLOCK} and L{grammar.REQUEST_HEAD}, whose repetitions
        are possessive, match exactly what the plain patterns of the same
        rules match, with the same groups.
        """
        token, value = grammar.TOKEN, grammar.FIELD_VALUE
        line = token + rb":" + value
        block = rb"(?:" + line + rb")(?:\r\n" + line + rb")*"
        head = grammar.REQUEST_LINE.pattern + rb"(?:\r\n" + block + rb")?"
        for possessive, plain in ((grammar.FIELD_BLOCK, block), (grammar.REQUEST_HEAD, head)):
            for candidate in (text, b"GET / HTTP/1.1\r\n" + text, b"Host:" + text):
                mine, reference = possessive.fullmatch(candidate), re.fullmatch(plain, candidate)
                self.assertEqual(mine is None, reference is None, candidate)
                if mine is not None and reference is not None:
                    self.assertEqual(mine.groups(), reference.groups())
