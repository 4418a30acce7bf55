"""
Socket-free transcripts of L{squeak.proxy.relay}: a protocol upgrade
(RFC 9110 §7.8) that turns the client connection into a byte relay.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.proxy.state import ExchangeState
from tests.transcript import ORIGIN_IP, Transcript

_HOST = ORIGIN_IP.encode()
_UPGRADE = (
    b"GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\n\r\n" % (_HOST, _HOST)
)


class UpgradeTranscriptTests(SynchronousTestCase):
    """
    An upgrade request goes to the origin over its own connection; a 101
    makes both connections one relay.
    """

    def test_switching_protocols_relays_both_ways(self) -> None:
        """
        The origin sees the upgrade request with Connection and Upgrade
        kept; its 101 reaches the client; then bytes flow both ways
        unchanged, and closing the relay writes the line (TCP_MISS, 101).
        """
        t = Transcript(self)
        t.client_sends(_UPGRADE)
        forwarded = t.origin_received()
        self.assertTrue(forwarded.startswith(b"GET /ws HTTP/1.1\r\n"), forwarded)
        self.assertIn(b"Connection: Upgrade\r\n", forwarded)
        self.assertIn(b"Upgrade: websocket\r\n", forwarded)
        t.origin_sends(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n"
        )
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), answer)
        self.assertIn(b"Upgrade: websocket\r\n", answer)
        t.client_sends(b"\x81\x05hello")
        self.assertEqual(t.origin_received(), b"\x81\x05hello")
        t.origin_sends(b"\x81\x02hi")
        self.assertEqual(t.client_received(), b"\x81\x02hi")
        self.assertEqual(t.log_tags(), [])
        t.origin_closes()
        self.assertEqual(t.log_tags(), ["TCP_MISS"])
        self.assertEqual(t.log.records[0].status, 101)

    def test_refused_upgrade_is_relayed_once(self) -> None:
        """
        An origin that answers the upgrade with anything but 101 has its
        answer relayed, and the connection closes after it.
        """
        t = Transcript(self)
        t.client_sends(_UPGRADE)
        t.origin_sends(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno")
        answer = t.client_received()
        self.assertTrue(answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), answer)
        self.assertIn(b"Connection: close\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nno"), answer)

    def test_exchange_is_tunnelling(self) -> None:
        """
        Once the origin switched protocols, the exchange says it is
        tunnelling.
        """
        t = Transcript(self)
        t.client_sends(_UPGRADE)
        exchange = t.channel._exchange
        self.assertIs(exchange.state, ExchangeState.FETCHING)
        t.origin_sends(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n"
        )
        self.assertIs(exchange.state, ExchangeState.TUNNELLING)
        self.assertIn("TUNNELLING", repr(exchange))
