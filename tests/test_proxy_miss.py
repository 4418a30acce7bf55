"""
Socket-free transcripts of L{squeak.proxy.miss}: a miss forwarded to an
in-memory origin and relayed, and a validation (RFC 9111 §4.3).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from squeak.proxy import miss
from squeak.proxy.state import ExchangeState
from tests.transcript import ORIGIN_IP, Transcript


def _get(path: bytes, *fields: bytes) -> bytes:
    head = b"GET http://%s%s HTTP/1.1\r\nHost: %s\r\n" % (
        ORIGIN_IP.encode(),
        path,
        ORIGIN_IP.encode(),
    )
    return head + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


class MissTranscriptTests(SynchronousTestCase):
    """
    A miss goes to the origin rebuilt (origin form, Via) and comes back
    relayed with our fields.
    """

    def test_miss_is_forwarded_and_relayed(self) -> None:
        """
        The origin receives the request in origin form with our Via; the
        client receives the origin's answer with X-Cache MISS, and the line
        says TCP_MISS.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/page"))
        forwarded = t.origin_received()
        self.assertTrue(forwarded.startswith(b"GET /page HTTP/1.1\r\n"), forwarded)
        self.assertIn(b"Via: 1.1 squeak.test", forwarded)
        self.assertEqual(t.client_received(), b"")
        exchange = t.channel._exchange
        self.assertIs(exchange.state, ExchangeState.FETCHING)
        self.assertIn("FETCHING", repr(exchange))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"X-Cache: MISS from squeak.test", answer)
        self.assertIn(b"Content-Length: 5\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nhello"))
        self.assertIs(exchange.state, ExchangeState.DONE)
        self.assertEqual(t.log_tags(), ["TCP_MISS"])

    def test_body_cut_short_aborts_the_client(self) -> None:
        """
        An origin that closes before its Content-Length is complete makes
        the proxy close the client connection (a truncation the client can
        see), logged TCP_MISS_ABORTED.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/short"))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        t.origin_closes()
        self.assertTrue(t.client_received().endswith(b"half"))
        self.assertTrue(t.client.disconnecting)
        self.assertEqual(t.log_tags(), ["TCP_MISS_ABORTED"])


class ValidationTranscriptTests(SynchronousTestCase):
    """
    A stale entry is validated with the origin (RFC 9111 §4.3.1), and a 304
    freshens and serves it (§4.3.4).
    """

    def test_not_modified_serves_the_stored_entry(self) -> None:
        """
        The second request carries the stored ETag as If-None-Match; the
        origin's 304 lets the stored body be served, logged
        TCP_REFRESH_UNMODIFIED.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/v"))
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: "v1"\r\n'
            b"Content-Length: 6\r\n\r\nstored"
        )
        self.assertTrue(t.client_received().endswith(b"stored"))
        t.client_sends(_get(b"/v"))
        validation = t.origin_received()
        self.assertTrue(validation.startswith(b"GET /v HTTP/1.1\r\n"), validation)
        self.assertIn(b'If-None-Match: "v1"', validation)
        t.origin_sends(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"X-Cache: HIT from squeak.test", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nstored"))
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_REFRESH_UNMODIFIED"])

    def test_modified_replaces_the_stored_entry(self) -> None:
        """
        A full answer to the validation is relayed (and replaces the entry),
        logged TCP_REFRESH_MODIFIED.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/m"))
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: "v1"\r\n'
            b"Content-Length: 3\r\n\r\nold"
        )
        t.client_received()
        t.client_sends(_get(b"/m"))
        self.assertIn(b'If-None-Match: "v1"', t.origin_received())
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: "v2"\r\n'
            b"Content-Length: 3\r\n\r\nnew"
        )
        self.assertTrue(t.client_received().endswith(b"\r\n\r\nnew"))
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_REFRESH_MODIFIED"])

    def test_server_error_serves_stale_if_allowed(self) -> None:
        """
        RFC 5861 §4: a 5xx answer to the validation of an entry whose
        stale-if-error window is open serves the stored entry instead,
        logged TCP_REFRESH_FAIL_OLD.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/s"))
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-if-error=600\r\nETag: "v1"\r\n'
            b"Content-Length: 5\r\n\r\nstale"
        )
        t.client_received()
        t.clock.advance(5)
        t.client_sends(_get(b"/s"))
        self.assertIn(b'If-None-Match: "v1"', t.origin_received())
        t.origin_sends(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nstale"))
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_REFRESH_FAIL_OLD"])

    def test_not_modified_about_another_response_is_retried(self) -> None:
        """
        RFC 9111 §4.3.4: a 304 whose ETag is not the stored one is not
        relayed to a client that asked no conditional question: the
        request goes again without If-None-Match and its answer is
        relayed.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/r"))
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: "v1"\r\n'
            b"Content-Length: 3\r\n\r\nold"
        )
        t.client_received()
        t.client_sends(_get(b"/r"))
        self.assertIn(b'If-None-Match: "v1"', t.origin_received())
        t.origin_sends(b'HTTP/1.1 304 Not Modified\r\nETag: "v2"\r\n\r\n')
        self.assertEqual(t.client_received(), b"")
        retried = t.origin_received()
        self.assertTrue(retried.startswith(b"GET /r HTTP/1.1\r\n"), retried)
        self.assertNotIn(b"if-none-match", retried.lower())
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: "v2"\r\n'
            b"Content-Length: 3\r\n\r\nnew"
        )
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nnew"), answer)
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_MISS"])

    def test_unreadable_validation_answer_serves_stale(self) -> None:
        """
        RFC 9111 §4.2.4: an answer to the validation that cannot be read is
        no answer: the stale entry is served, logged TCP_REFRESH_FAIL_OLD.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/u"))
        t.origin_sends(
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: "v1"\r\n'
            b"Content-Length: 5\r\n\r\nstale"
        )
        t.client_received()
        t.client_sends(_get(b"/u"))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nstale"), answer)
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_REFRESH_FAIL_OLD"])


class AgeTranscriptTests(SynchronousTestCase):
    """
    RFC 9111 §4.2.3: the origin's Age counts in a hit's Age.
    """

    def test_hit_age_adds_the_origins(self) -> None:
        """
        A response that came with C{Age: 100}, served from cache 5 s
        later, says C{Age: 105}.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/a"))
        t.origin_sends(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nAge: 100\r\n"
            b"Content-Length: 1\r\n\r\na"
        )
        self.assertIn(b"Age: 100\r\n", t.client_received())
        t.clock.advance(5)
        t.client_sends(_get(b"/a"))
        answer = t.client_received()
        self.assertIn(b"X-Cache: HIT from squeak.test", answer)
        self.assertIn(b"Age: 105\r\n", answer)
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_MEM_HIT"])


class OriginFailureTranscriptTests(SynchronousTestCase):
    """
    An origin that answers what cannot be read gets the client an error
    page, not a guess.
    """

    def test_unreadable_answer_is_502(self) -> None:
        """
        A response head with a malformed Content-Length is refused: the
        client gets 502 ERR_INVALID_RESP, logged TCP_MISS.
        """
        t = Transcript(self)
        t.client_sends(_get(b"/bad"))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), answer)
        self.assertIn(b"ERR_INVALID_RESP", answer)
        self.assertEqual(t.log_tags(), ["TCP_MISS"])

    def test_bug_handling_the_answer_is_500(self) -> None:
        """
        A bug while handling the origin's answer (no L{Deferred} catches it
        on this path) is logged and answers 500, as an errback did.
        """

        def broken(*args: object, **kwargs: object) -> None:
            raise ZeroDivisionError("a bug")

        self.patch(miss, "downstream_response_headers", broken)
        t = Transcript(self)
        t.client_sends(_get(b"/bug"))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 500 "), answer)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class StalledHeadTranscriptTests(SynchronousTestCase):
    """
    A response head is sent as soon as the response is decided, not held
    back until the first body byte.
    """

    def test_head_goes_out_before_the_body(self) -> None:
        """
        An origin that sends its head and stalls: the client has the status
        and fields at once (it had nothing until the read timeout, then an
        empty reply); after the read timeout the body is cut, logged
        TCP_MISS_ABORTED.
        """
        t = Transcript(self, timeouts={"read": 5.0})
        t.client_sends(_get(b"/stall"))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        head = t.client_received()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertTrue(head.endswith(b"Content-Length: 10\r\n\r\n"), head)
        self.assertFalse(t.client.disconnecting)
        t.origin_sends(b"12345")
        self.assertEqual(t.client_received(), b"12345")
        t.clock.advance(6.0)
        t.run()
        self.assertTrue(t.client.disconnecting)
        self.assertEqual(t.log_tags(), ["TCP_MISS_ABORTED"])


class _RaisingStorer:
    """A storer with a bug: it raises on the first body bytes."""

    def data(self, chunk: bytes) -> None:
        raise RuntimeError("injected store failure")

    def finish(self, complete: bool) -> bool:
        return False


class CollapsedForwardingTranscriptTests(SynchronousTestCase):
    """
    Identical misses wait for one fetch (collapsed forwarding) and are
    answered from the cache when it ends.
    """

    def test_second_client_waits_for_the_first_fetch(self) -> None:
        """
        While one client's GET is at the origin, another client's identical
        GET waits (state WAITING) instead of opening a second fetch; when
        the first is stored, the second is a memory hit.
        """
        t = Transcript(self)
        second = t.connect_client()
        t.client_sends(_get(b"/c"))
        t.client_sends(_get(b"/c"), client=second)
        self.assertEqual(len(t.origins), 1)
        waiting = t.clients[second].channel._exchange
        self.assertIs(waiting.state, ExchangeState.WAITING)
        t.origin_sends(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\none"
        )
        self.assertTrue(t.client_received().endswith(b"\r\n\r\none"))
        answer = t.client_received(second)
        self.assertTrue(answer.endswith(b"\r\n\r\none"), answer)
        self.assertIn(b"X-Cache: HIT from squeak.test", answer)
        self.assertEqual(len(t.origins), 1)
        # The waiting request is answered as the entry commits, a moment
        # before the leader's own response finishes.
        self.assertEqual(t.log_tags(), ["TCP_MEM_HIT", "TCP_MISS"])

    def test_store_that_raises_releases_the_follower(self) -> None:
        """
        A storer raising while the leader's body streams: the leader's
        client gets its whole body, the waiting request is released to the
        origin at once (it waited for good), and the URL's next request
        works.
        """
        t = Transcript(self)
        cache = t.context.cache

        def storer(*args: Any, **kwargs: Any) -> _RaisingStorer:
            return _RaisingStorer()

        cache.storer = storer  # type: ignore[method-assign]
        second = t.connect_client()
        t.client_sends(_get(b"/s"))
        t.client_sends(_get(b"/s"), client=second)
        self.assertEqual(len(t.origins), 1)
        t.origin_sends(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\none", 0
        )
        self.assertTrue(t.client_received().endswith(b"\r\n\r\none"))
        self.assertEqual(len(t.origins), 2)
        self.assertEqual(len(cache.store.inflight), 0)
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        self.assertTrue(t.client_received(second).endswith(b"\r\n\r\ntwo"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(t.log_tags(), ["TCP_MISS", "TCP_MISS"])

    def test_leader_client_leaving_mid_body_releases_the_follower(self) -> None:
        """
        The leader's client leaves while its body streams: the waiting
        request is released as the leader's exchange ends (a transient
        never outlives its leader) and fetches the URL itself.
        """
        t = Transcript(self)
        second = t.connect_client()
        t.client_sends(_get(b"/l"))
        t.client_sends(_get(b"/l"), client=second)
        t.origin_sends(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\nabc", 0
        )
        self.assertEqual(len(t.origins), 1)
        t.client.loseConnection()
        t.run()
        # Released, it fetches for itself (a request collapses once only).
        self.assertEqual((len(t.origins), len(t.context.cache.store.inflight)), (2, 0))
        t.origin_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef")
        self.assertTrue(t.client_received(second).endswith(b"\r\n\r\nabcdef"))
        self.assertEqual(t.log_tags(), ["TCP_MISS_ABORTED", "TCP_MISS"])
