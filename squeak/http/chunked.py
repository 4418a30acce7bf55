# -*- test-case-name: tests.test_http_chunked -*-
"""
The chunked transfer coding (RFC 9112 §7.1), decoded as it arrives: one
decoder for request bodies (L{squeak.net.channel}) and response bodies
(L{squeak.net.origin}), as Twisted's C{_ChunkedTransferDecoder} and h11's
C{ChunkedReader} each serve both roles.

Strict, in both directions alike: a chunk-size is hexadecimal digits only
(no sign, no C{0x}, no whitespace before it), every line ends with CRLF,
chunk data is followed by CRLF, and trailer fields are read (each must be a
field line) and dropped (RFC 9112 §7.1.2 lets a recipient discard them).
Every limit is checked the same way whether a line arrives in one read or in
many, so the verdict depends on the bytes alone.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from squeak.http.grammar import CHUNK_SIZE_LINE, FIELD_LINE
from squeak.http.head import MessageError, why_bad_field

__all__ = ["MAX_CHUNK_LINE", "MAX_TRAILER", "ChunkedDecoder"]

#: Longest chunk-size line (size and extensions, without the CRLF).
MAX_CHUNK_LINE = 4096
#: Most bytes of a trailer section, by default.
MAX_TRAILER = 16384

# ChunkedDecoder states
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4


class ChunkedDecoder:
    """
    Decodes one chunked body (RFC 9112 §7.1) as it arrives.
    """

    __slots__ = (
        "_error",
        "_left",
        "_max_line",
        "_max_trailer",
        "_max_trailer_fields",
        "_pending",
        "_state",
        "_trailer_fields",
        "_trailer_size",
        "_why_bad",
    )

    def __init__(
        self,
        *,
        max_line: int = MAX_CHUNK_LINE,
        max_trailer: int = MAX_TRAILER,
        max_trailer_fields: int | None = None,
        error: Callable[[str], MessageError] = MessageError,
        why_bad: Callable[[bytes], str] = why_bad_field,
    ) -> None:
        """
        @param max_line: Longest chunk-size line, extensions included.
        @param max_trailer: Most bytes of the trailer section.
        @param max_trailer_fields: Most trailer field lines (no limit but
            C{max_trailer} when L{None}).
        @param error: Builds the exception raised, from its detail: a
            L{MessageError} (400) for requests, a
            L{squeak.http.response.MalformedResponseError} (502) for
            responses.
        @param why_bad: Says why a trailer line was refused.
        """
        self._state = _SIZE
        self._pending = b""
        self._left = 0
        self._max_line = max_line
        self._max_trailer = max_trailer
        self._max_trailer_fields = max_trailer_fields
        self._trailer_size = 0
        self._trailer_fields = 0
        self._error = error
        self._why_bad = why_bad

    @property
    def done(self) -> bool:
        """
        Whether the last chunk and the trailer section were read.
        """
        return self._state == _DONE

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """
        Decode what C{data} holds.

        @return: The body pieces decoded (never empty ones), and the bytes
            that follow the end of the body (the start of the next message),
            which are only returned once L{done}.
        @raise MessageError: The body's framing is malformed.
        """
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        pieces: list[bytes] = []
        # An index into the buffer rather than slices of it: a read holding
        # many chunks is not copied once per chunk.
        at = 0
        size = len(buffer)
        state = self._state
        while at < size:
            if state == _DATA:
                left = self._left
                if size - at <= left:
                    pieces.append(buffer[at:] if at else buffer)
                    left -= size - at
                    self._left = left
                    self._state = _DATA if left else _DATA_END
                    return pieces, b""
                pieces.append(buffer[at : at + left])
                at += left
                self._left = 0
                state = _DATA_END
            elif state == _DATA_END:
                if size - at < 2:
                    if buffer[at] != 13:  # a lone CR may start the CRLF
                        raise self._error("chunk data not followed by CRLF")
                    self._pending = b"\r"
                    self._state = state
                    return pieces, b""
                if not buffer.startswith(b"\r\n", at):
                    raise self._error("chunk data not followed by CRLF")
                at += 2
                state = _SIZE
            elif state == _SIZE:
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    self._state = state
                    self._wait_for_line(buffer[at:], self._max_line, "chunk-size line too long")
                    return pieces, b""
                if end - at > self._max_line:
                    raise self._error("chunk-size line too long")
                size_line = CHUNK_SIZE_LINE.fullmatch(buffer, at, end)
                if size_line is None:
                    shown = buffer[at : min(end, at + 40)]
                    raise self._error(f"malformed chunk-size line {shown!r}")
                chunk = int(size_line.group(1), 16)
                at = end + 2
                if not chunk:
                    state = _TRAILER
                elif buffer.startswith(b"\r\n", at + chunk):
                    # The whole chunk and its CRLF are here: the common case
                    # of a read holding complete chunks.
                    pieces.append(buffer[at : at + chunk])
                    at += chunk + 2
                else:
                    self._left = chunk
                    state = _DATA
            elif state == _TRAILER:
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    self._state = state
                    self._wait_for_line(
                        buffer[at:], self._max_trailer, "trailer section too large"
                    )
                    return pieces, b""
                if end == at:
                    self._state = _DONE
                    return pieces, buffer[end + 2 :]
                line = buffer[at:end]
                at = end + 2
                self._trailer_size += len(line) + 2
                if self._trailer_size > self._max_trailer:
                    raise self._error("trailer section too large")
                self._trailer_fields += 1
                limit = self._max_trailer_fields
                if limit is not None and self._trailer_fields > limit:
                    raise self._error(f"more than {limit} trailer fields")
                if FIELD_LINE.fullmatch(line) is None:
                    raise self._error(self._why_bad(line))
            else:
                self._state = state
                return pieces, buffer[at:]
        self._state = state
        return pieces, b""

    def _wait_for_line(self, buffer: bytes, limit: int, too_long: str) -> None:
        # A last CR may start the CRLF: it is not counted as part of the
        # line, so the verdict is the same as when the line arrives whole.
        if len(buffer) - buffer.endswith(b"\r") > limit:
            raise self._error(too_long)
        if b"\n" in buffer:
            raise self._error("bare LF in the chunked body (lines end with CRLF)")
        self._pending = buffer
