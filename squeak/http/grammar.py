# -*- test-case-name: tests.test_http_grammar -*-
"""
The HTTP/1.1 message grammar, one compiled pattern per rule, each beside the
ABNF it implements (RFC 9110 §5.6, RFC 9112 §3-§7), in the manner of h11's
C{_abnf.py}.

Requests, responses and chunked bodies are read with these patterns and no
others, so that the request side and the response side can never disagree on
what a token, a field line or a chunk header is.  The patterns are stricter
than the ABNF in three deliberate ways, each noted where it applies: the
version is HTTP/1.x only where squeak reads it, a chunk size has at most 16
hexadecimal digits, and obsolete line folding (obs-fold) is never matched.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import re

__all__ = [
    "CHUNK_SIZE_LINE",
    "FIELD_BLOCK",
    "FIELD_LINE",
    "FIELD_VALUE",
    "HTTP_VERSION",
    "REQUEST_HEAD",
    "REQUEST_LINE",
    "STATUS_LINE",
    "TOKEN",
    "TOKEN_RE",
]

#: RFC 9110 §5.6.2::
#:
#:   token = 1*tchar
#:   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#:           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
TOKEN_RE = re.compile(TOKEN)

#: RFC 9110 §5.5::
#:
#:   field-value   = *field-content
#:   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#:   field-vchar   = VCHAR / obs-text
#:   obs-text      = %x80-FF
#:
#: Read here as any run of VCHAR, obs-text, SP and HTAB: the surrounding
#: whitespace (OWS) is matched too and stripped by the reader.  NUL, CR, LF
#: and the other controls are excluded (RFC 9110 §5.5: "a recipient of CR,
#: LF, or NUL within a field value MUST either reject the message or ...").
FIELD_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"

#: RFC 9112 §5::
#:
#:   field-line = field-name ":" OWS field-value OWS
#:   field-name = token                                  ; RFC 9110 §5.1
#:
#: No whitespace between the name and the colon (RFC 9112 §5.1: "MUST
#: reject"), and no obs-fold (a line starting with SP or HTAB is no field
#: line at all).
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):(" + FIELD_VALUE + rb")")

#: The repetitions of L{TOKEN} and L{FIELD_VALUE} made possessive (Python
#: 3.11's C{++} and C{*+}) for the patterns that check whole blocks: each
#: repeated class excludes what must follow it (a token never holds ":" or
#: SP, a field value never CR), so giving characters back could never lead
#: to a match, and the engine is spared the bookkeeping for it, about a
#: third of the cost of matching a head (callgrind).  They match exactly
#: what the plain forms match.
_TOKEN_RUN = TOKEN + rb"+"
_VALUE_RUN = FIELD_VALUE + rb"+"

#: Field lines joined by CRLF, each a L{FIELD_LINE}: a field value excludes
#: CR and LF, so the block cannot be read any other way, and one match checks
#: a whole head (cheaper than one match per line).
FIELD_BLOCK = re.compile(
    rb"(?:" + _TOKEN_RUN + rb":" + _VALUE_RUN + rb")"
    rb"(?:\r\n" + _TOKEN_RUN + rb":" + _VALUE_RUN + rb")*+"
)

#: RFC 9112 §2.3::
#:
#:   HTTP-version = HTTP-name "/" DIGIT "." DIGIT
#:   HTTP-name    = %s"HTTP"
HTTP_VERSION = rb"HTTP/([0-9])\.([0-9])"

#: RFC 9112 §3::
#:
#:   request-line   = method SP request-target SP HTTP-version
#:   method         = token                              ; RFC 9110 §9.1
#:
#: The request-target is matched as any run of visible characters (and
#: obs-text); its form (RFC 9112 §3.2) is checked by L{squeak.http.target}.
#: Groups: method, target, major, minor.
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e\x80-\xff]+) " + HTTP_VERSION)

#: A whole request head without its final empty line: a L{REQUEST_LINE},
#: then, after a CRLF, a L{FIELD_BLOCK} if there are field lines.  Neither
#: can hold a CR or LF, so the head cannot be read any other way, and one
#: match checks the common (valid) head at once; when it fails, the two
#: patterns, tried apart, say what is wrong.  Groups: L{REQUEST_LINE}'s.
REQUEST_HEAD = re.compile(
    rb"("
    + _TOKEN_RUN
    + rb") ([\x21-\x7e\x80-\xff]++) "
    + HTTP_VERSION
    + rb"(?:\r\n"
    + FIELD_BLOCK.pattern
    + rb")?+"
)

#: RFC 9112 §4::
#:
#:   status-line   = HTTP-version SP status-code SP [ reason-phrase ]
#:   status-code   = 3DIGIT
#:   reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
#:
#: Two leniencies, both unambiguous: the second SP may be missing when the
#: reason is (older servers send C{HTTP/1.1 200}), and the reason may be
#: empty.  The status code is 100-999: RFC 9110 §15 defines codes by their
#: first digit, and none starts with 0.  Groups: major, minor, code, reason.
STATUS_LINE = re.compile(HTTP_VERSION + rb" ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?")

#: RFC 9112 §7.1::
#:
#:   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
#:   last-chunk = 1*("0") [ chunk-ext ] CRLF
#:   chunk-size = 1*HEXDIG
#:   chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#:
#: The line without its CRLF.  The size is bounded to 16 hexadecimal digits
#: (a 64-bit length), with no sign, prefix or leading whitespace; extensions
#: are matched loosely (any visible text after the first ";") because they
#: are ignored (RFC 9112 §7.1.1).  Group: the size.
CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;" + FIELD_VALUE + rb")?")
