# -*- test-case-name: tests.test_plugin -*-
"""
The twistd entry point: C{twistd -n squeak [--config FILE]}.

C{postOptions} only checks arguments.  The configuration is loaded in
L{makeService}: a L{ConfigError} becomes exactly one line on stderr,
C{squeak: FILE:LINE: KEY: problem}, and exit status 2 (a C{UsageError}
would print twistd's whole usage text first, and any other exception a
traceback).
"""

from __future__ import annotations

import select
import sys
from typing import Any, cast

from twisted.application.service import IService
from twisted.python import usage

from squeak.config import Config, ConfigError, load_config
from squeak.net.allocator import tune_malloc


class Options(usage.Options):
    """
    Command-line options of the squeak plugin.
    """

    synopsis = "[--config FILE]"
    longdesc = (
        "Run squeak, a caching forward HTTP proxy. Without --config it runs on safe "
        "embedded defaults: listen on 127.0.0.1:3128, allow loopback clients only."
    )
    optParameters = [
        ["config", "c", None, "Path to a TOML configuration file (see etc/squeak.toml)."],
    ]


def makeService(options: Options) -> IService:
    """
    Load the configuration and build the service tree.
    """
    # Bulk read buffers reuse heap memory instead of new pages per read
    # (squeak.net.allocator says why).
    tune_malloc()
    if hasattr(select, "epoll"):
        from squeak.net.eventloop import install_default

        # Unless twistd --reactor chose one: Twisted's epoll reactor without
        # its per-event logging context (squeak.net.eventloop says why).
        install_default()
    from twisted.internet import reactor

    from squeak.service import build_service

    # Name lookups (HostnameEndpoint) and password hashing run in the
    # reactor's thread pool; its default of 10 threads is small for a proxy.
    reactor.suggestThreadPoolSize(64)
    path = options["config"]
    try:
        config = load_config(path) if path else Config()
        service: Any = build_service(config, reactor)
    except ConfigError as error:
        sys.stderr.write(f"squeak: {error}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None
    return cast(IService, service)
