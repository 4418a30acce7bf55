"""
Socket-free transcripts of L{squeak.proxy.hit}: answers from a stored
entry (Age, 304 to a client's conditional, Range) with no origin contact.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from squeak.proxy.logtag import Answer
from squeak.proxy.router import ForwardRequest
from squeak.proxy.state import ExchangeState
from tests.transcript import ORIGIN_IP, Transcript


def _get(path: bytes, *fields: bytes) -> bytes:
    host = ORIGIN_IP.encode()
    head = b"GET http://%s%s HTTP/1.1\r\nHost: %s\r\n" % (host, path, host)
    return head + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


_STORED = (
    b'HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nETag: "e1"\r\n'
    b"Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789"
)


def _stored(testcase: SynchronousTestCase, path: bytes = b"/h") -> Transcript:
    """
    A transcript whose cache holds a fresh entry for C{path}, fetched once.
    """
    t = Transcript(testcase)
    t.client_sends(_get(path))
    t.origin_sends(_STORED)
    t.client_received()
    return t


class HitTranscriptTests(SynchronousTestCase):
    """
    A fresh entry is served from memory: the stored head with Age and our
    X-Cache fields, and the origin is not asked.
    """

    def test_fresh_entry_is_served_from_memory(self) -> None:
        """
        The second request is answered from the memory tier without a byte
        to the origin, with Age and X-Cache HIT, logged TCP_MEM_HIT.
        """
        t = _stored(self)
        t.origin_received()
        t.clock.advance(7)
        t.client_sends(_get(b"/h"))
        self.assertEqual(t.origin_received(), b"")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"X-Cache: HIT from squeak.test\r\n", answer)
        self.assertIn(b"\r\nAge: 7\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\n0123456789"))
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_MEM_HIT"])
        self.assertEqual(t.log.records[-1].content_type, "text/plain")

    def test_stored_head_is_serialised_once_per_entry(self) -> None:
        """
        Two hits on one entry send the same stored head, built once: the
        cache remembers it for the entry.
        """
        t = _stored(self)
        t.client_sends(_get(b"/h"))
        first = t.client_received()
        t.client_sends(_get(b"/h"))
        second = t.client_received()
        self.assertEqual(first, second)
        self.assertEqual(len(t.context.cache.served_heads), 1)

    def test_client_conditional_gets_304(self) -> None:
        """
        If-None-Match with the stored ETag is answered 304 from the entry
        (RFC 9111 §4.3.2), logged TCP_IMS_HIT.
        """
        t = _stored(self)
        t.client_sends(_get(b"/h", b'If-None-Match: "e1"'))
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 304 Not Modified\r\n"), answer)
        self.assertIn(b'ETag: "e1"', answer)
        self.assertTrue(answer.endswith(b"\r\n\r\n"))
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_IMS_HIT"])

    def test_range_is_answered_from_the_entry(self) -> None:
        """
        A Range request is answered 206 with the range from the stored body
        (RFC 9110 §14.2), without the origin.
        """
        t = _stored(self)
        t.origin_received()
        t.client_sends(_get(b"/h", b"Range: bytes=2-4"))
        self.assertEqual(t.origin_received(), b"")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 206 Partial Content\r\n"), answer)
        self.assertIn(b"Content-Range: bytes 2-4/10", answer)
        # The range's length is not announced: the body is chunked.
        self.assertTrue(answer.endswith(b"\r\n\r\n3\r\n234\r\n0\r\n\r\n"), answer)
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_MEM_HIT"])

    def test_exchange_ends_done_with_its_answer_recorded(self) -> None:
        """
        A served exchange ends DONE (as its repr says), its outcome recording
        a memory hit, from which the log tag was named.
        """
        t = _stored(self)
        made: list[ForwardRequest] = []

        def record(*args: Any) -> ForwardRequest:
            made.append(ForwardRequest(*args))
            return made[-1]

        t.channel.exchange_factory = record  # type: ignore[assignment]
        t.client_sends(_get(b"/h"))
        [exchange] = made
        self.assertIs(exchange.state, ExchangeState.DONE)
        self.assertIs(exchange.answer, Answer.MEMORY)
        self.assertIn("DONE", repr(exchange))
        self.assertEqual(t.log_tags()[-1], "TCP_MEM_HIT")
