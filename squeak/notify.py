# -*- test-case-name: tests.test_notify -*-
"""
The systemd readiness protocol (C{sd_notify}), without a library: one
datagram such as C{READY=1} to the UNIX socket named by C{$NOTIFY_SOCKET}
(a path, or an abstract name after C{@}).  Outside systemd, or when the
socket is gone, nothing happens.

squeak says C{READY=1} once its listeners are bound and serving starts,
C{RELOADING=1} then C{READY=1} around a reload, and C{STOPPING=1} when it
starts to drain; C{etc/squeak.service} is C{Type=notify}.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify"]


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send C{state} (C{"READY=1"}, lines of C{KEY=VALUE}) to systemd.

    @param environ: Where C{NOTIFY_SOCKET} is read; C{os.environ} by
        default.
    @return: Whether it was sent.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), target)
    except OSError:
        return False
    return True
