"""
The systemd readiness protocol (L{squeak.notify}): a datagram to
C{$NOTIFY_SOCKET}, and the states a real twistd sends through it.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from twisted.trial import unittest

from squeak.notify import notify
from tests.test_drain import proxy_config, wait_for
from tests.twistdprocess import TwistdProxy


class NotifyTests(unittest.SynchronousTestCase):
    """
    L{notify} sends one datagram, or nothing outside systemd.
    """

    def _socket(self) -> tuple[socket.socket, str]:
        path = os.path.abspath(self.mktemp())
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(20)
        self.addCleanup(sock.close)
        return sock, path

    def test_sends_the_state(self) -> None:
        """
        The state goes to the socket the environment names.
        """
        sock, path = self._socket()
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": path}))
        self.assertEqual(sock.recv(4096), b"READY=1")

    def test_abstract_socket(self) -> None:
        """
        C{@name} is a socket in the abstract namespace.
        """
        name = f"squeak-test-{os.getpid()}-{id(self)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + name)
        self.addCleanup(sock.close)
        self.assertTrue(notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(sock.recv(4096), b"STOPPING=1")

    def test_outside_systemd(self) -> None:
        """
        Without C{NOTIFY_SOCKET}, or with one that is gone, nothing is sent.
        """
        self.assertFalse(notify("READY=1", {}))
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "relative"}))
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"}))

    def test_twistd_tells_systemd(self) -> None:
        """
        A real twistd says READY=1 once it serves, RELOADING=1 then READY=1
        around a reload, and STOPPING=1 when it stops.
        """
        sock, path = self._socket()
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        proxy = TwistdProxy(proxy_config(directory), env={"NOTIFY_SOCKET": path}).start()
        self.addCleanup(proxy.stop)
        self.assertTrue(sock.recv(4096).startswith(b"READY=1\nMAINPID="))
        proxy.signal(signal.SIGHUP)
        self.assertTrue(sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC="))
        self.assertEqual(sock.recv(4096), b"READY=1")
        self.assertTrue(wait_for(proxy, r"reload done \(1\)"))
        proxy.signal(signal.SIGTERM)
        self.assertEqual(sock.recv(4096), b"STOPPING=1")
