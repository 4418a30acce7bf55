"""
Socket-free transcripts of L{squeak.proxy.local} and refusals: answers the
proxy gives itself, with no origin connection.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.transcript import ORIGIN_IP, Transcript

_HOST = ORIGIN_IP.encode()


class RefusalTranscriptTests(SynchronousTestCase):
    """
    Requests the rules refuse are answered 403 without an origin.
    """

    def test_client_outside_the_rules_is_refused(self) -> None:
        """
        A client that is not on loopback (the default rules' only clients)
        gets Squid's ERR_ACCESS_DENIED page, logged TCP_DENIED, and no
        origin connection is opened.
        """
        t = Transcript(self, client_ip="198.51.100.7")
        t.client_sends(b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (_HOST, _HOST))
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
        self.assertIn(b"ERR_ACCESS_DENIED", answer)
        self.assertEqual(t.origins, [])
        self.assertEqual(t.log_tags(), ["TCP_DENIED"])

    def test_purge_from_another_address_is_refused(self) -> None:
        """
        PURGE from an address outside C{cache.purge_from} is 403,
        TCP_DENIED.
        """
        t = Transcript(self, cache={"purge_from": ()})
        t.client_sends(b"PURGE http://%s/x HTTP/1.1\r\nHost: %s\r\n\r\n" % (_HOST, _HOST))
        self.assertTrue(t.client_received().startswith(b"HTTP/1.1 403 "))
        self.assertEqual(t.log_tags(), ["TCP_DENIED"])

    def test_malformed_target_is_tag_none(self) -> None:
        """
        A request-target that is not an absolute URI is refused 400 before
        anything is chosen: TAG_NONE.
        """
        t = Transcript(self)
        t.client_sends(b"GET /relative HTTP/1.1\r\nHost: %s\r\n\r\n" % _HOST)
        self.assertTrue(t.client_received().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(t.log_tags(), ["TAG_NONE"])


class LocalAnswerTranscriptTests(SynchronousTestCase):
    """
    TRACE at Max-Forwards 0 and PURGE are answered by the proxy.
    """

    def test_trace_at_max_forwards_zero_is_echoed(self) -> None:
        """
        RFC 9110 §7.6.2: TRACE with Max-Forwards 0 is answered here with the
        request as message/http, without its credentials (§9.3.8).
        """
        t = Transcript(self)
        t.client_sends(
            b"TRACE http://%s/t HTTP/1.1\r\nHost: %s\r\nMax-Forwards: 0\r\n"
            b"Cookie: secret\r\n\r\n" % (_HOST, _HOST)
        )
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"Content-Type: message/http", answer)
        self.assertIn(b"TRACE http://%s/t HTTP/1.1" % _HOST, answer)
        self.assertNotIn(b"secret", answer)
        self.assertEqual(t.origins, [])
        self.assertEqual(t.log_tags(), ["TCP_MISS"])

    def test_purge_removes_a_stored_entry(self) -> None:
        """
        PURGE from loopback removes the entry (200), then finds nothing
        (404); the next GET goes to the origin again.
        """
        t = Transcript(self)
        get = b"GET http://%s/p HTTP/1.1\r\nHost: %s\r\n\r\n" % (_HOST, _HOST)
        purge = b"PURGE http://%s/p HTTP/1.1\r\nHost: %s\r\n\r\n" % (_HOST, _HOST)
        t.client_sends(get)
        t.origin_sends(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 1\r\n\r\nx"
        )
        t.client_received()
        t.origin_received()
        t.client_sends(purge)
        self.assertTrue(t.client_received().startswith(b"HTTP/1.1 200 OK\r\n"))
        t.client_sends(purge)
        self.assertTrue(t.client_received().startswith(b"HTTP/1.1 404 "))
        t.client_sends(get)
        self.assertTrue(t.origin_received().startswith(b"GET /p HTTP/1.1\r\n"))
