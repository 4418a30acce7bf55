# -*- test-case-name: tests.test_http_chunked -*-
"""
Tests for L{squeak.http.chunked}: the one chunked decoder (RFC 9112 §7.1),
used for request bodies by the client side and for response bodies by the
origin side.

Tables of bodies that must be read exactly and bodies that must be refused,
and properties checking that the verdict never depends on how the bytes were
split by the network, in both roles.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.http.chunked import ChunkedDecoder
from squeak.http.head import MessageError
from squeak.http.response import MalformedResponseError
from tests.splits import pieces_of

Outcome = tuple[bytes, bytes, bool] | None


def decode(data: bytes, sizes: Iterable[int] = (), /, **limits: int) -> Outcome:
    """
    Feed C{data} to a fresh L{ChunkedDecoder} in pieces of C{sizes} (all at
    once by default).

    @return: L{None} if the decoder raised L{MessageError}, else the body,
        the bytes returned as following the body, and whether the decoder
        is done.
    """
    decoder = ChunkedDecoder(**limits)
    body: list[bytes] = []
    rest: list[bytes] = []
    try:
        for piece in pieces_of(data, sizes):
            was_done = decoder.done
            got, after = decoder.feed(piece)
            if b"" in got:
                raise AssertionError(f"empty body piece from {piece!r}")
            if after and not decoder.done:
                raise AssertionError(f"bytes after the body before it ended: {after!r}")
            if was_done and (got or after != piece):
                raise AssertionError(f"decoder kept working after done: {got!r} {after!r}")
            body.extend(got)
            rest.append(after)
    except MessageError:
        return None
    return b"".join(body), b"".join(rest), decoder.done


def decode_error(data: bytes, **limits: int) -> MessageError:
    """
    The error a fresh decoder raises for C{data} fed whole.
    """
    decoder = ChunkedDecoder(**limits)
    try:
        decoder.feed(data)
    except MessageError as error:
        return error
    raise AssertionError(f"accepted {data!r}")


def byte_by_byte(data: bytes) -> list[int]:
    """
    Piece sizes that feed C{data} one byte at a time.
    """
    return [1] * len(data)


# --- ChunkedDecoder ---------------------------------------------------------

BODY = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

GOOD_BODIES = [  # (why, encoded, decoded, rest)
    ("RFC 9112 §7.1: two chunks and the last chunk", BODY, b"hello world", b""),
    ("RFC 9112 §7.1: only the last chunk, an empty body", b"0\r\n\r\n", b"", b""),
    (
        "RFC 9110 §5.6.2: HEXDIG is case-insensitive",
        b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        b"0123456789" * 2,
        b"",
    ),
    (
        "RFC 9112 §7.1: leading zeros in a chunk-size",
        b"0005\r\nhello\r\n000\r\n\r\n",
        b"hello",
        b"",
    ),
    (
        "RFC 9112 §7.1.1: chunk extensions are ignored",
        b"5;name=value\r\nhello\r\n0;last\r\n\r\n",
        b"hello",
        b"",
    ),
    (
        "RFC 9112 §7.1.1: BWS before the semicolon, quoted values",
        b'5 ;a="x ; y"\r\nhello\r\n0\t; b = c\r\n\r\n',
        b"hello",
        b"",
    ),
    ("RFC 9112 §7.1.1: several extensions", b"5;a;b=1;c\r\nhello\r\n0\r\n\r\n", b"hello", b""),
    (
        "RFC 9112 §7.1.2: trailer fields are dropped",
        b"5\r\nhello\r\n0\r\nX-Sum: abc\r\nExpires:  never \r\n\r\n",
        b"hello",
        b"",
    ),
    (
        "RFC 9112 §9.3.2: bytes after the body start the next request",
        BODY + b"GET / HTTP/1.1\r\n\r\n",
        b"hello world",
        b"GET / HTTP/1.1\r\n\r\n",
    ),
    (
        "RFC 9112 §9.3.2: bytes after a trailer section",
        b"1\r\nx\r\n0\r\nA: b\r\n\r\n\r\nGET",
        b"x",
        b"\r\nGET",
    ),
    ("RFC 9112 §7.1: chunk data is opaque", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", b""),
    (
        "RFC 9112 §7.1: sixteen hex digits are allowed",
        b"0000000000000003\r\nabc\r\n0\r\n\r\n",
        b"abc",
        b"",
    ),
]

BAD_BODIES = [  # (why, encoded, detail fragment)
    ("CVE-2022-24801: a plus sign in the chunk-size", b"+5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    ("CVE-2022-24801: a minus sign in the chunk-size", b"-5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    ("CVE-2022-24801: a 0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    ("CVE-2022-24801: an underscore (int(_, 16) takes it)", b"1_0\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a space before the chunk-size", b" 5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a tab before the chunk-size", b"\t5\r\nhello\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a space after it without an extension", b"5 \r\nhello\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a non-hex digit", b"5g\r\nhello\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a non-ASCII digit", "\u0665\r\nhello\r\n".encode(), "chunk-size"),
    ("RFC 9112 §7.1: an empty chunk-size", b"\r\nhello\r\n", "chunk-size"),
    ("RFC 9112 §7.1: a missing chunk-size", b";ext\r\n", "chunk-size"),
    (
        "RFC 9112 §7.1: more than sixteen hex digits",
        b"00000000000000005\r\nhello\r\n",
        "chunk-size",
    ),
    ("RFC 9112 §7.1.1: NUL in a chunk extension", b"5;a=\x00\r\nhello\r\n", "chunk-size"),
    ("CVE-2022-24801: bare LF in a chunk extension", b"5;a\nb\r\nhello\r\n", "chunk-size"),
    ("RFC 9112 §2.2: bare CR in a chunk extension", b"5;a\rb\r\nhello\r\n", "chunk-size"),
    (
        "CVE-2022-24801: a chunk-size line ending with LF only",
        b"5\nhello\r\n0\r\n\r\n",
        "chunk-size",
    ),
    ("RFC 9112 §2.2: the last chunk ending with LF only", b"5\r\nhello\r\n0\n\n", "bare LF"),
    ("RFC 9112 §2.2: the body ending with LF only", b"0\r\n\n", "bare LF"),
    (
        "RFC 9112 §7.1: data not followed by CRLF",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        "not followed by CRLF",
    ),
    ("RFC 9112 §7.1: more data than the size", b"3\r\nhello\r\n0\r\n\r\n", "not followed by CRLF"),
    ("RFC 9112 §2.2: data followed by LF only", b"5\r\nhello\n0\r\n\r\n", "not followed by CRLF"),
    ("RFC 9112 §2.2: data followed by CR only", b"5\r\nhello\r0\r\n\r\n", "not followed by CRLF"),
    ("RFC 9112 §7.1: data followed by LF CR", b"5\r\nhello\n\r", "not followed by CRLF"),
    (
        "RFC 9112 §5.2: obs-fold in the trailer",
        b"0\r\nA: b\r\n c\r\n\r\n",
        "obsolete line folding",
    ),
    ("RFC 9112 §5.1: space before a trailer colon", b"0\r\nA : b\r\n\r\n", "field name"),
    ("RFC 9112 §5: a trailer line without a colon", b"0\r\nAb\r\n\r\n", "without a colon"),
    ("RFC 9110 §5.5: NUL in a trailer value", b"0\r\nA: \x00\r\n\r\n", "control character"),
    ("RFC 9112 §2.2: bare LF in a trailer line", b"0\r\nA: b\nC: d\r\n\r\n", "bare CR or LF"),
    ("RFC 9112 §2.2: bare LF ending a trailer line", b"0\r\nA: b\n\r\n", "bare CR or LF"),
]


class ChunkedDecoderTests(SynchronousTestCase):
    """
    Tests for L{ChunkedDecoder} on bodies it must accept (RFC 9112 §7.1).
    """

    def test_table_whole(self) -> None:
        """
        Each good body fed whole is decoded, the decoder is done, and the
        bytes after it are handed back.
        """
        wrong: list[object] = []
        for why, data, body, rest in GOOD_BODIES:
            got = decode(data)
            if got != (body, rest, True):
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_table_byte_by_byte(self) -> None:
        """
        Each good body fed one byte at a time gives the same result as fed
        whole.
        """
        wrong: list[object] = []
        for why, data, body, rest in GOOD_BODIES:
            got = decode(data, byte_by_byte(data))
            if got != (body, rest, True):
                wrong.append((why, got))
        self.assertEqual(wrong, [])

    def test_incomplete(self) -> None:
        """
        Until the empty line after the last chunk arrives, the decoder is
        not done and nothing is handed back as following the body.
        """
        data = b"5;x\r\nhello\r\n0\r\nA: b\r\n\r\n"
        wrong: list[object] = []
        for n in range(len(data)):
            got = decode(data[:n])
            if got is None or got[1:] != (b"", False):
                wrong.append((n, got))
        self.assertEqual(wrong, [])

    def test_pieces_as_they_arrive(self) -> None:
        """
        Chunk data is handed out as soon as it arrives, before the chunk is
        complete, so a large chunk is never held in memory.
        """
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"a\r\n01234"), ([b"01234"], b""))
        self.assertEqual(decoder.feed(b"567"), ([b"567"], b""))
        self.assertEqual(decoder.feed(b"89\r\n0\r"), ([b"89"], b""))
        self.assertFalse(decoder.done)
        self.assertEqual(decoder.feed(b"\n\r\nnext"), ([], b"next"))
        self.assertTrue(decoder.done)

    def test_after_done(self) -> None:
        """
        Once done, the decoder hands back whatever it is fed, untouched.
        """
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"0\r\n\r\n"), ([], b""))
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.feed(b"0\r\nx"), ([], b"0\r\nx"))

    def test_huge_chunk_size(self) -> None:
        """
        The largest chunk-size, sixteen hex digits, is read as a number and
        waits for its data (RFC 9112 §7.1: recipients must anticipate large
        numerals without overflowing).
        """
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"ffffffffffffffff\r\nab"), ([b"ab"], b""))
        self.assertFalse(decoder.done)

    def test_limits_allow_their_size(self) -> None:
        """
        A chunk-size line of exactly C{max_line} bytes (without its CRLF)
        and a trailer section of exactly C{max_trailer} bytes (field lines
        with their CRLFs) are accepted, whole or byte by byte; one byte
        more is refused either way.
        """
        line = b"1;" + b"e" * 14  # 16 bytes
        trailer = b"A: 1234\r\nB: 5678\r\n"  # 18 bytes
        data = line + b"\r\nx\r\n0\r\n" + trailer + b"\r\n"
        limits = {"max_line": 16, "max_trailer": 18}
        self.assertEqual(decode(data, **limits), (b"x", b"", True))
        self.assertEqual(decode(data, byte_by_byte(data), **limits), (b"x", b"", True))
        tighter = [{"max_line": 15, "max_trailer": 18}, {"max_line": 16, "max_trailer": 17}]
        for limits in tighter:
            self.assertIsNone(decode(data, **limits))
            self.assertIsNone(decode(data, byte_by_byte(data), **limits))

    def test_no_trailer_allowed(self) -> None:
        """
        With C{max_trailer=0} a body without trailer fields is still read,
        even when its final CRLF arrives in two pieces.
        """
        data = b"1\r\nx\r\n0\r\n\r\n"
        self.assertEqual(decode(data, byte_by_byte(data), max_trailer=0), (b"x", b"", True))
        self.assertIsNone(decode(b"0\r\nA: b\r\n\r\n", max_trailer=0))


class ChunkedDecoderRejectionTests(SynchronousTestCase):
    """
    Tests for L{ChunkedDecoder} on bodies it must refuse.
    """

    def test_table(self) -> None:
        """
        Each bad body fed whole raises L{MessageError} (400) with a detail
        naming the problem.
        """
        wrong: list[object] = []
        for why, data, fragment in BAD_BODIES:
            try:
                ChunkedDecoder().feed(data)
            except MessageError as error:
                if error.status != 400 or fragment not in error.detail:
                    wrong.append((why, error.status, error.detail))
            else:
                wrong.append((why, "accepted"))
        self.assertEqual(wrong, [])

    def test_table_byte_by_byte(self) -> None:
        """
        Each bad body is refused just the same when it arrives one byte at
        a time (the detail may differ: the problem can be seen earlier).
        """
        wrong: list[object] = []
        for why, data, _fragment in BAD_BODIES:
            if decode(data, byte_by_byte(data)) is not None:
                wrong.append(why)
        self.assertEqual(wrong, [])

    def test_details_are_short_and_printable(self) -> None:
        """
        Details quote hostile bytes escaped and truncated.
        """
        for data in [b"\x00" * 1000 + b"\r\n", b"0\r\n" + b"\x01" * 1000 + b"\r\n"]:
            error = decode_error(data)
            self.assertTrue(error.detail.isprintable())
            self.assertLess(len(error.detail), 200)

    def test_size_line_too_long(self) -> None:
        """
        A chunk-size line longer than C{max_line} is refused whether its
        CRLF arrived with it or not: long extensions cannot be used to make
        the decoder buffer without bound, and the verdict does not depend
        on how the bytes were split.
        """
        line = b"1;" + b"x" * 100
        self.assertIn("too long", decode_error(line, max_line=50).detail)
        self.assertIn("too long", decode_error(line + b"\r\nx\r\n0\r\n\r\n", max_line=50).detail)
        self.assertIn("too long", decode_error(b"0" * 5000).detail)
        whole = line + b"\r\nx\r\n0\r\n\r\n"
        self.assertIsNone(decode(whole, byte_by_byte(whole), max_line=50))

    def test_trailer_too_large(self) -> None:
        """
        A trailer section larger than C{max_trailer} is refused, as many
        small fields or one large one, complete or still arriving.
        """
        many = b"0\r\n" + b"X: y\r\n" * 10 + b"\r\n"
        self.assertIn("trailer section too large", decode_error(many, max_trailer=50).detail)
        big = b"0\r\nX: " + b"y" * 100
        self.assertIn("trailer section too large", decode_error(big, max_trailer=50).detail)
        self.assertIn(
            "trailer section too large", decode_error(big + b"\r\n\r\n", max_trailer=50).detail
        )
        self.assertEqual(decode(b"0\r\n" + b"X: y\r\n" * 10 + b"\r\n"), (b"", b"", True))

    def test_smuggling_in_one_segment(self) -> None:
        """
        CVE-2022-24801: a body that a lenient parser reads as C{0x5} or
        C{+5} followed by a smuggled request is refused before any of it is
        handed out as a body or as the next request.
        """
        smuggled = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
        for size in (b"+0", b"0x0", b"-0", b" 0", b"0\n"):
            decoder = ChunkedDecoder()
            self.assertRaises(MessageError, decoder.feed, size + b"\r\n\r\n" + smuggled)
            self.assertFalse(decoder.done)


# --- properties ---------------------------------------------------------------

TOKENS = [
    b"0",
    b"1",
    b"5",
    b"a",
    b"F",
    b"00",
    b"+",
    b"-",
    b"0x",
    b" ",
    b"\t",
    b";",
    b";ext=1",
    b"\r\n",
    b"\r",
    b"\n",
    b"X: y",
    b":",
    b"hello",
    b"\x00",
    b"0\r\n\r\n",
    b"3\r\nabc\r\n",
]

near_chunked = st.lists(
    st.sampled_from(TOKENS) | st.binary(max_size=3),
    max_size=30,
).map(b"".join)


@st.composite
def encoded_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """
    A chunked encoding of random chunks, with random chunk-size spellings,
    extensions and trailer fields, followed by random bytes.

    @return: the encoding, the body, and the bytes after it.
    """
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
    encoded = b""
    for chunk in chunks:
        size = f"{len(chunk):x}"
        size = draw(st.sampled_from([size, size.upper(), "00" + size]))
        ext = draw(st.sampled_from([b"", b";a", b" ;a=b", b'\t; q="x;\\"y"']))
        encoded += size.encode() + ext + b"\r\n" + chunk + b"\r\n"
    encoded += draw(st.sampled_from([b"0", b"000", b"0;end"])) + b"\r\n"
    trailers = draw(st.lists(st.sampled_from([b"A: b", b"Digest: x=1", b"E:"]), max_size=3))
    encoded += b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    after = draw(st.binary(max_size=20))
    return encoded + after, b"".join(chunks), after


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """
    A valid chunked encoding with a few bytes replaced, removed, or with
    tokens from L{TOKENS} inserted.
    """
    data = bytearray(draw(encoded_bodies())[0])
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "insert":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif at < len(data):
            if action == "replace":
                data[at] = draw(st.sampled_from(b"0aF+-x ;\t\r\n:"))
            else:
                del data[at]
    return bytes(data)


class ChunkedDecoderPropertyTests(SynchronousTestCase):
    """
    Property tests: the decoder's verdict depends on the bytes alone, never
    on how the network split them.
    """

    @given(
        st.one_of(near_chunked, mutated_bodies(), st.binary(max_size=60)),
        st.lists(st.integers(1, 10), max_size=40),
        st.integers(0, 12),
        st.integers(0, 24),
    )
    @settings(max_examples=2000)
    def test_split_independent(
        self, data: bytes, sizes: list[int], max_line: int, max_trailer: int
    ) -> None:
        """
        Random bytes fed in random pieces give exactly what they give when
        fed whole: the same body, the same bytes after it and the same
        state, or a L{MessageError} in both cases.
        """
        limits = {"max_line": max_line, "max_trailer": max_trailer}
        self.assertEqual(decode(data, sizes, **limits), decode(data, **limits))

    @given(encoded_bodies(), st.lists(st.integers(1, 16), max_size=60))
    @settings(max_examples=500)
    def test_round_trip(self, encoded: tuple[bytes, bytes, bytes], sizes: list[int]) -> None:
        """
        Encoding random chunks and decoding them, in random pieces, gives
        back the body, and the bytes after it as the next request's start.
        """
        data, body, after = encoded
        self.assertEqual(decode(data, sizes), (body, after, True))
        self.assertEqual(decode(data), (body, after, True))

    @given(
        st.one_of(near_chunked, mutated_bodies(), st.binary(max_size=60)),
        st.integers(0, 12),
        st.integers(0, 24),
    )
    @settings(max_examples=500)
    def test_every_split_point_in_the_request_role(
        self, data: bytes, max_line: int, max_trailer: int
    ) -> None:
        """
        In the request role, the bytes split in two at every boundary give
        what they give whole: the same body, rest and state, or a refusal
        in both cases.
        """
        limits = {"max_line": max_line, "max_trailer": max_trailer}
        whole = decode(data, **limits)
        for at in range(1, len(data)):
            self.assertEqual(decode(data, [at], **limits), whole, at)

    @given(
        st.one_of(near_chunked, mutated_bodies(), st.binary(max_size=60)),
        st.integers(0, 12),
        st.integers(0, 24),
        st.integers(0, 3),
    )
    @settings(max_examples=500)
    def test_every_split_point_in_the_response_role(
        self, data: bytes, max_line: int, max_trailer: int, max_fields: int
    ) -> None:
        """
        In the response role (502 errors, a trailer field limit), the bytes
        split in two at every boundary give what they give whole: the same
        body, rest and state, or a refusal with status 502 in both cases.
        """
        whole = decode_response(data, [], max_line, max_trailer, max_fields)
        for at in range(1, len(data)):
            self.assertEqual(
                decode_response(data, [at], max_line, max_trailer, max_fields), whole, at
            )


def decode_response(
    data: bytes, sizes: list[int], max_line: int, max_trailer: int, max_fields: int
) -> Outcome | int:
    """
    Like L{decode}, with a decoder in the response role.

    @return: The outcome, or the status the refusal carries.
    """
    decoder = ChunkedDecoder(
        max_line=max_line,
        max_trailer=max_trailer,
        max_trailer_fields=max_fields,
        error=MalformedResponseError,
    )
    body: list[bytes] = []
    rest: list[bytes] = []
    try:
        for piece in pieces_of(data, sizes):
            got, after = decoder.feed(piece)
            body.extend(got)
            rest.append(after)
    except MalformedResponseError as error:
        return error.status
    return b"".join(body), b"".join(rest), decoder.done


class ResponseRoleTests(SynchronousTestCase):
    """
    The decoder in the response role: the same rules, the response side's
    error and limits.
    """

    def test_refusal_carries_502(self) -> None:
        """
        With C{error=MalformedResponseError}, a bad body is refused with
        that error, whose status is 502 (the request role's is 400).
        """
        decoder = ChunkedDecoder(error=MalformedResponseError)
        with self.assertRaises(MalformedResponseError) as caught:
            decoder.feed(b"z\r\n")
        self.assertEqual(caught.exception.status, 502)
        self.assertEqual(decode_error(b"z\r\n").status, 400)

    def test_trailer_field_limit(self) -> None:
        """
        C{max_trailer_fields} bounds the number of trailer field lines;
        without it only the trailer's size is bounded.
        """
        data = b"0\r\n" + b"X-T: 1\r\n" * 3 + b"\r\n"
        self.assertEqual(decode(data), (b"", b"", True))
        self.assertEqual(decode(data, max_trailer_fields=3), (b"", b"", True))
        self.assertIsNone(decode(data, max_trailer_fields=2))
        self.assertIn(
            "more than 2 trailer fields", decode_error(data, max_trailer_fields=2).detail
        )

    def test_long_size_line_refused_in_one_read(self) -> None:
        """
        A chunk-size line over C{max_line} is refused when it arrives whole
        with its CRLF, as when it arrives in pieces.
        """
        line = b"5;" + b"x" * 5000 + b"\r\n"
        self.assertEqual(decode_error(line + b"hello\r\n").detail, "chunk-size line too long")
        self.assertIsNone(decode(line + b"hello\r\n", [100]))

    def test_many_chunks_in_one_read(self) -> None:
        """
        A read holding many whole chunks (the fast path) and one holding
        their bytes one at a time decode to the same body.
        """
        data = b"".join(b"%x\r\n%s\r\n" % (n, b"a" * n) for n in range(1, 40)) + b"0\r\n\r\nNEXT"
        body = b"".join(b"a" * n for n in range(1, 40))
        self.assertEqual(decode(data), (body, b"NEXT", True))
        self.assertEqual(decode(data, byte_by_byte(data)), (body, b"NEXT", True))
