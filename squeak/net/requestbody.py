# -*- test-case-name: tests.test_net_channel -*-
"""
Reading one request body: framing, the size limit, spooling.

L{squeak.net.channel.ClientChannel} builds a L{RequestBodyReader} for each
request that has a body (none for the many that do not) and feeds it the
bytes that follow the head until it says the body is complete.  It is kept
apart from the channel so that the channel is about the connection (order,
timers, taking over, refusing) and this is about one message's content.

The reader refers to nothing of the channel's: it answers with return values
and raises L{MessageError} for a body that cannot be accepted, which the
channel turns into its refusal.  So it holds no reference back to its owner
(no cycle per request) and the import graph keeps pointing one way.
"""

from __future__ import annotations

from tempfile import SpooledTemporaryFile
from typing import IO

from squeak.http.chunked import ChunkedDecoder
from squeak.http.request import MessageError, RequestHead

__all__ = ["BODY_IN_MEMORY", "RequestBodyReader"]

#: Request bodies larger than this are spooled to a temporary file.
BODY_IN_MEMORY = 100_000


class RequestBodyReader:
    """
    The body of one request, decoded (C{Content-Length} or chunked) and
    spooled in memory up to L{BODY_IN_MEMORY} bytes, then to a temporary
    file, bounded by a limit.

    @ivar head: The request the body belongs to.
    @ivar spool: Where the content goes; once the body is complete its
        owner is whoever L{feed} handed it to, and until then L{close}
        closes it.
    """

    __slots__ = ("_chunked", "_left", "_limit", "_size", "head", "spool")

    def __init__(self, head: RequestHead, limit: int) -> None:
        """
        @param head: A request whose body is not empty: a positive
            C{Content-Length}, or chunked (no length).
        @param limit: Most bytes of content accepted.
        """
        self.head = head
        # Closed by the exchange, or by the channel if the client leaves.
        self.spool: IO[bytes] = SpooledTemporaryFile(max_size=BODY_IN_MEMORY)  # noqa: SIM115
        self._limit = limit
        self._size = 0
        length = head.content_length
        self._chunked = ChunkedDecoder() if length is None else None
        self._left = 0 if length is None else length

    @staticmethod
    def refuse_declared(length: int | None, limit: int) -> MessageError | None:
        """
        The refusal (413) of a body declared larger than C{limit}, before any
        of it is read; L{None} if the declared length (if any) is within it.
        """
        if length is not None and length > limit:
            return MessageError(
                f"request body of {length} bytes exceeds the limit of {limit} bytes", 413
            )
        return None

    def feed(self, data: bytes) -> bytes | None:
        """
        Take bytes the client sent after the head.

        @return: L{None} while the body is incomplete; once it is complete,
            the bytes after it (the next request's, possibly empty), with
            L{spool} rewound for reading.
        @raise MessageError: The chunked framing is malformed (400), or the
            body grew past the limit (413).
        """
        chunked = self._chunked
        if chunked is not None:
            try:
                pieces, rest = chunked.feed(data)
            except MessageError as error:
                raise MessageError(f"malformed chunked request body: {error.detail}") from None
            for piece in pieces:
                self._spool_piece(piece)
            if not chunked.done:
                return None
            self._chunked = None
        else:
            left = self._left
            if len(data) < left:
                self._left = left - len(data)
                self._spool_piece(data)
                return None
            rest = data[left:]
            self._spool_piece(data[:left])
            self._left = 0
        self.spool.seek(0)
        return rest

    def _spool_piece(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._limit:
            raise MessageError(f"request body exceeds the limit of {self._limit} bytes", 413)
        self.spool.write(piece)

    def close(self) -> None:
        """
        Discard a body that will not be handed on (the request was refused,
        or the client left while sending it).
        """
        self.spool.close()
