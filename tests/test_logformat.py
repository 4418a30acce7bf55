# -*- test-case-name: tests.test_logformat -*-
"""
Tests for L{squeak.logformat}: Squid's C{logformat} codes, modifiers and
encodings, each row checked against Squid's documentation of the directive
(C{src/cf.data.pre}, C{NAME: logformat}, quoted as "doc") or, where the
documentation is silent, against what Squid's C{Format::assemble}
(C{src/format/Format.cc}, "code") does.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from squeak.accessrecord import AccessRecord
from squeak.logformat import (
    CODES,
    FormatError,
    compile_format,
    encode_mimeblob,
    encode_pass_through,
    encode_quoted,
    encode_raw,
    encode_shell,
    encode_url,
    media_type,
)
from squeak.logline import format_squid

REC = AccessRecord(
    1700000000.0421,
    42,
    "192.0.2.7",
    "TCP_MISS",
    200,
    1234,
    "GET",
    "http://o.test:8080/a/b?c=d",
    "alice",
    "HIER_DIRECT",
    "198.51.100.1",
    "text/html; charset=utf-8",
    "http://ref.test/x y",
    'curl/8.5.0 "x"',
    "HTTP/1.1",
    client_port=51234,
    local_host="127.0.0.1",
    local_port=3128,
)

#: A request that went nowhere: no user, peer, type, headers or addresses.
BARE = AccessRecord(
    1700000000.5,
    0,
    "2001:db8::1",
    "TCP_DENIED",
    403,
    0,
    "CONNECT",
    "o.test:443",
    None,
    "HIER_NONE",
    "-",
    "-",
    None,
    None,
    "HTTP/1.0",
)

CODE_CASES = [  # (why, format, record, expected line)
    ('doc: "%  a literal % character"', "%tr%%", REC, "42%"),
    ('doc: "ts  Seconds since epoch"', "%ts", REC, "1700000000"),
    ('doc: "tu  subsecond time (milliseconds)"', "%tu", REC, "42"),
    ('doc: "When minimum starts with 0, the field is zero-padded"', "%03tu", REC, "042"),
    (
        "code: %.Ntu is the second in N digits (Token::parse divisor), not zero-padded",
        "%.6tu",
        REC,
        "42100",
    ),
    ("code: ... unless the 0 flag asks", "%06.6tu", REC, "042100"),
    ('doc: "tr  Response time (milliseconds)"', "%tr", REC, "42"),
    ('doc: "width  minimum ... field width" (spaces, right-aligned)', "%6tr", REC, "    42"),
    ('doc: "-  left aligned"', "%-6tr|", REC, "42    |"),
    (
        "code: numbers are never cut by .max (haveMaxWidth excludes them)",
        "%.1ts",
        REC,
        "1700000000",
    ),
    ("code: %.Ntr is milliseconds with N decimals", "%.3tr", REC, "42.000"),
    (
        'doc: "tg  GMT time"; code: default %d/%b/%Y:%H:%M:%S, no zone',
        "%tg",
        REC,
        "14/Nov/2023:22:13:20",
    ),
    (
        'doc: "tg ... Optional strftime format argument"',
        "%{%Y-%m-%dT%H:%M:%SZ}tg",
        REC,
        "2023-11-14T22:13:20Z",
    ),
    ('doc: "{arg} ... may be placed before or after the token"', "%tg{%Y}", REC, "2023"),
    ('doc: ">a  Client source IP address"', "%>a", REC, "192.0.2.7"),
    ('doc: ">p  Client source port"', "%>p", REC, "51234"),
    ("code: a number that is not known is -", "%>p %lp", BARE, "- -"),
    ('doc: ">la  Local IP address the client connected to"', "%>la:%>lp", REC, "127.0.0.1:3128"),
    ('doc: "la  Local listening IP address"', "%la:%lp", REC, "127.0.0.1:3128"),
    (
        'doc: "<a  Server IP address of the last server or peer connection"',
        "%<a",
        REC,
        "198.51.100.1",
    ),
    ("code: no server connection is -", "%<a", BARE, "-"),
    ('doc: "<A  Server FQDN or peer name"', "%<A", REC, "o.test"),
    ('doc: "Ss  Squid request status (TCP_MISS etc)"', "%Ss", REC, "TCP_MISS"),
    ('doc: "Sh  Squid hierarchy status"', "%Sh/%<a", BARE, "HIER_NONE/-"),
    (
        'doc: ">Hs  HTTP status code sent to the client"',
        "%>Hs %03>Hs",
        replace(REC, status=0),
        "0 000",
    ),
    ('doc: "<st  Total size of reply sent to client"', "%<st", REC, "1234"),
    ('doc: "rm  Request method"', "%rm %>rm", REC, "GET GET"),
    (
        'doc: "ru  Request URL ... This field is not encoded by default"',
        "%ru",
        REC,
        "http://o.test:8080/a/b?c=d",
    ),
    ('doc: "rp  Request URL path excluding hostname"', "%rp", REC, "/a/b?c=d"),
    ("code: a CONNECT has no path", "%rp", BARE, "-"),
    ('doc: "rv  Request protocol version"', "%rv", REC, "1.1"),
    ('doc: "un  User name (any available)"', "%un %ul", REC, "alice alice"),
    ('doc: "ue  User name from external acl helper": squeak has none', "%ue", REC, "-"),
    ("code: an empty value is -, and - is never padded", "%10un|%-5un|", BARE, "-|-|"),
    (
        'doc: "mt  MIME content type"; code: Content-Type up to ; tab or space',
        "%mt",
        REC,
        "text/html",
    ),
    ("code: no Content-Type is -", "%mt", BARE, "-"),
    (
        'doc: ">h  Original received request header", pass-through URL encoded',
        "%{Referer}>h",
        REC,
        "http://ref.test/x%20y",
    ),
    ('doc: "<h  Reply header"', "%{Content-Type}<h", REC, "text/html;%20charset=utf-8"),
    ("code: an absent header is -", '%{Referer}>h "%{User-Agent}>h"', BARE, '- "-"'),
    ('doc: "[http::]rm": the http:: prefix is accepted', "%http::rm %http::>Hs", REC, "GET 200"),
    (
        'doc: "logformat squid %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt"',
        "%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt",
        REC,
        "1700000000.042     42 192.0.2.7 TCP_MISS/200 1234 GET http://o.test:8080/a/b?c=d alice "
        "HIER_DIRECT/198.51.100.1 text/html",
    ),
    (
        'doc: "logformat referrer %ts.%03tu %>a %{Referer}>h %ru"',
        "referrer",
        REC,
        "1700000000.042 192.0.2.7 http://ref.test/x%20y http://o.test:8080/a/b?c=d",
    ),
]

ENCODING_CASES = [  # (why, format, record, expected line)
    (
        'doc: "\\"  Quoted string encoding where quote(\\") and backslash(\\\\) characters are '
        '\\-escaped while CR, LF, and TAB ... \\r, \\n, and \\t"',
        '%"{User-Agent}>h',
        replace(REC, user_agent='a"b\\c\r\n\td'),
        'a\\"b\\\\c\\r\\n\\td',
    ),
    (
        'code: a " in the literal text quotes the codes after it (Token::parse)',
        '"%{User-Agent}>h"',
        REC,
        '"curl/8.5.0 \\"x\\""',
    ),
    (
        'doc: "[  Custom Squid encoding where percent(%), square brackets([]), backslash(\\\\) '
        'and characters ... outside [32,126] are %-encoded. SP is not encoded."',
        "%[un",
        replace(REC, user="a b%[c]\\\x01"),
        "a b%25%5bc%5d\\\\%01",
    ),
    (
        'doc: "#  URL encoding ... all URL unsafe and control characters ... are %-encoded"',
        "%#un",
        replace(REC, user="a b%<c>"),
        "a%20b%25%3Cc%3E",
    ),
    (
        'doc: "/  Shell-like encoding ... Values containing SP character(s) are surrounded by '
        'quotes"',
        "%/un",
        replace(REC, user='a "b"'),
        '"a \\"b\\""',
    ),
    (
        'doc: "\'  Raw/as-is encoding with no escaping/quoting"',
        "%'un",
        replace(REC, user='a "b"'),
        'a "b"',
    ),
    (
        'doc: "pass-through URL encoding ... the percent character(%) is left as is"',
        "%rp",
        replace(REC, url="http://o.test/a%20b c"),
        "/a%20b%20c",
    ),
    (
        "squeak: raw still %-encodes a control character, so no value ends the line",
        "%un",
        replace(REC, user="a\nb"),
        "a%0Ab",
    ),
    (
        "squeak: raw %-encodes each non-ASCII byte",
        "%ru",
        replace(REC, url="http://o.test/\xe9"),
        "http://o.test/%E9",
    ),
    (
        'doc: "String values exceeding maximum width are truncated" (after encoding)',
        "%.4un",
        replace(REC, user="abcdefgh"),
        "abcd",
    ),
    ("doc: width and .max together, left-aligned", "%-6.3un|", REC, "ali   |"),
]


class CodeTests(SynchronousTestCase):
    """
    Each code logs what Squid documents for it.
    """

    def test_code_table(self) -> None:
        """
        Each row's format gives the line its citation describes.
        """
        wrong = [
            (why, got, want)
            for why, spec, rec, want in CODE_CASES
            if (got := compile_format(spec)(rec)) != want
        ]
        self.assertEqual(wrong, [])

    def test_encoding_table(self) -> None:
        """
        Each encoding escapes what its citation says it does.
        """
        wrong = [
            (why, got, want)
            for why, spec, rec, want in ENCODING_CASES
            if (got := compile_format(spec)(rec)) != want
        ]
        self.assertEqual(wrong, [])

    def test_local_time(self) -> None:
        """
        C{%tl} is the local time with its offset (doc: "tl  Local time",
        default C{%d/%b/%Y:%H:%M:%S %z}): in a fixed zone the line is known.
        """
        old = os.environ.get("TZ")
        self.addCleanup(time.tzset)
        self.addCleanup(
            (lambda: os.environ.pop("TZ", None))
            if old is None
            else (lambda: os.environ.__setitem__("TZ", old))
        )
        os.environ["TZ"] = "UTC-2"
        time.tzset()
        self.assertEqual(compile_format("[%tl]")(REC), "[15/Nov/2023:00:13:20 +0200]")

    def test_every_code_compiles_and_formats(self) -> None:
        """
        Every supported code gives a non-empty single line for a full and
        for a bare record (none raises on a missing value).
        """
        bad = []
        for name, code in CODES.items():
            spec = f"%{{Referer}}{name}" if code.arg == "required" else f"%{name}"
            if name == "<h":
                spec = "%{Content-Type}<h"
            for rec in (REC, BARE):
                line = compile_format(spec)(rec)
                if not line or "\n" in line:
                    bad.append((spec, line))
        self.assertEqual(bad, [])

    def test_compiled_squid_matches_the_preset(self) -> None:
        """
        Squid's definition of its native format, compiled, gives the same
        line as the hand-written L{format_squid} for ordinary records.
        """
        compiled = compile_format("%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt")
        self.assertEqual(
            [compiled(rec) for rec in (REC, BARE)], [format_squid(rec) for rec in (REC, BARE)]
        )

    def test_enum_codes_log_their_values(self) -> None:
        """
        Codes given as str-valued enum members (the proxy's log tags) are
        logged as their values, raw or padded, even for a C{(str, Enum)}
        whose C{str()} is C{"Tag.TCP_MISS"}.
        """

        class Tag(str, enum.Enum):  # noqa: UP042 - the case under test
            TCP_MISS = "TCP_MISS"
            HIER_DIRECT = "HIER_DIRECT"

        rec = replace(REC, code=Tag.TCP_MISS, hierarchy=Tag.HIER_DIRECT)
        self.assertEqual(
            compile_format("%Ss/%>Hs %Sh/%<a %-10Ss| %#Sh")(rec),
            "TCP_MISS/200 HIER_DIRECT/198.51.100.1 TCP_MISS  | HIER_DIRECT",
        )

    def test_needs(self) -> None:
        """
        A format says which on-request fields it logs, so the proxy looks up
        Referer and User-Agent only for formats that use them.
        """
        self.assertEqual(
            [
                compile_format(spec).needs
                for spec in ("%ru", "referrer", "useragent", "%{Referer}>h %{User-Agent}>h")
            ],
            [
                frozenset(),
                {"referer"},
                {"user_agent"},
                {"referer", "user_agent"},
            ],
        )

    def test_compiled_once(self) -> None:
        """
        The same string compiles to the same formatter: the configuration
        loader compiles it and the service reuses it.
        """
        self.assertIs(compile_format("%ts %ru"), compile_format("%ts %ru"))


ERROR_CASES = [  # (why, format, message)
    (
        "a code squeak does not record",
        "%ts %dt",
        'unknown or unsupported format code: "%dt" at column 5',
    ),
    (
        "a code that does not exist",
        "%>a %zz",
        'unknown or unsupported format code: "%zz" at column 5',
    ),
    ("a lone % at the end", "%ts %", 'unknown or unsupported format code: "%" at column 5'),
    (
        "a header the record does not carry",
        "%{Cookie}>h",
        'squeak records only the Referer and User-Agent header here: "%{Cookie}>h" at column 1',
    ),
    (
        "a reply header the record does not carry",
        "%{Server}<h",
        'squeak records only the Content-Type header here: "%{Server}<h" at column 1',
    ),
    ("all headers (no name)", "%>h", 'this format code needs a {header name}: "%>h" at column 1'),
    (
        "an argument where none is taken",
        "%{x}ts",
        'this format code takes no {argument}: "%{x}ts" at column 1',
    ),
    (
        "an unterminated argument",
        "%{Referer>h",
        'unterminated {argument}: "%{Referer>h" at column 1',
    ),
    ("no code at all", "hello", 'a format needs at least one %code: "hello" at column 1'),
]


class ErrorTests(SynchronousTestCase):
    """
    A bad format string is refused with a message naming the code.
    """

    def test_error_table(self) -> None:
        """
        Each row's format is refused with its message; the error carries the
        code and its column.
        """
        wrong = []
        for why, spec, message in ERROR_CASES:
            try:
                compile_format(spec)
            except FormatError as e:
                if str(e) != message:
                    wrong.append((why, str(e), message))
            else:
                wrong.append((why, "accepted", message))
        self.assertEqual(wrong, [])

    def test_error_attributes(self) -> None:
        """
        L{FormatError} carries the code as written and its 1-based column.
        """
        e = self.assertRaises(FormatError, compile_format, "%ts %03dt")
        self.assertEqual((e.code, e.column), ("%03dt", 5))


class EncoderTests(SynchronousTestCase):
    """
    The encoders on their own, byte by byte.
    """

    def test_encoder_table(self) -> None:
        """
        Each encoder keeps and escapes the characters Squid's does.
        """
        cases = [  # (why, encoder, value, expected)
            (
                "lib/rfc1738.c: letters, digits, safe and reserved kept",
                encode_url,
                "aZ9$-_.+!*'(),;/?:@=&",
                "aZ9$-_.+!*%27(),;/?:@=&",
            ),
            (
                'lib/rfc1738.c: unsafe <>"#%{}|\\^~[]` and space escaped',
                encode_url,
                '<>"#%{}|\\^~[]` ',
                "%3C%3E%22%23%25%7B%7D%7C%5C%5E%7E%5B%5D%60%20",
            ),
            ("rfc1738_escape_unescaped keeps %", encode_pass_through, "%41 b", "%41%20b"),
            ("QuoteMimeBlob: lower-case hex", encode_mimeblob, "\x7f\xff", "%7f%ff"),
            ("log_quoted_string: other controls still made safe", encode_quoted, "\x01", "%01"),
            ("strwordquote: no space, no quotes", encode_shell, "a\\b", "a\\\\b"),
            ("raw: printable ASCII as is", encode_raw, 'a "b" \\c', 'a "b" \\c'),
        ]
        wrong = [
            (why, got, want)
            for why, encode, value, want in cases
            if (got := encode(value)) != want
        ]
        self.assertEqual(wrong, [])

    def test_media_type_table(self) -> None:
        """
        L{media_type} keeps the I{Content-Type} up to its first C{;}, tab or
        space, as Squid's C{HttpReply::hdrCacheInit}
        (C{strcspn(str, ";\\t ")}) does before C{%mt} logs it.
        """
        cases = [
            ("text/html; charset=utf-8", "text/html"),
            ("text/html;charset=utf-8", "text/html"),
            ("text/html ; charset=utf-8", "text/html"),
            ("text/plain\tx", "text/plain"),
            ("application/json", "application/json"),
            ("; charset=utf-8", ""),
            ("", ""),
        ]
        self.assertEqual([(v, media_type(v)) for v, _ in cases], cases)
