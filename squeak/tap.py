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
from twisted.logger import Logger
from twisted.python import usage

from squeak.config import Config, ConfigError
from squeak.net.allocator import tune_malloc

_log = Logger(namespace="squeak")

#: The first descriptor number C{select(2)} cannot watch (glibc).
_FD_SETSIZE = 1024


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

    # Name lookups (HostnameEndpoint) and password hashing run in the
    # reactor's thread pool; its default of 10 threads is small for a proxy.
    reactor.suggestThreadPoolSize(64)
    path = options["config"]
    try:
        service: Any = build_supervisor(path, reactor)
    except ConfigError as error:
        sys.stderr.write(f"squeak: {error}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None
    return cast(IService, service)


def build_supervisor(path: str | None, reactor: Any) -> Any:
    """
    Load the configuration, bind the listeners, prepare the cache and log
    paths, switch to C{proxy.user}, and build what serves: this process
    (C{workers = 1}) or a master of worker processes.

    Everything that can fail at start-up fails here, before twistd runs the
    service, as a L{ConfigError}: one line, exit status 2.
    """
    # Before anything is opened: as many descriptors as the system allows
    # (workers inherit the limit), and the error pages in memory, so that
    # a proxy out of descriptors still answers (issue 14).
    from twisted.internet.selectreactor import SelectReactor

    from squeak.errors import load_templates
    from squeak.master import Master, SingleProcess, read_config
    from squeak.net.listeners import bind_all
    from squeak.service import build_service, server_tls_options
    from squeak.startup import (
        check_paths,
        drop_privileges,
        prepare_paths,
        raise_descriptor_limit,
        resolve_account,
    )

    ceiling = _FD_SETSIZE if isinstance(reactor, SelectReactor) else None
    _log.info("{line}", line=raise_descriptor_limit(ceiling))
    load_templates()

    if path:
        config, text = read_config(path)
    else:
        config, text = Config(), ""
    account = resolve_account(config)

    def validate(config: Config) -> None:
        if config.tls.https_port:
            server_tls_options(config)

    validate(config)
    workers = config.proxy.workers
    bound = bind_all(config, copies=workers)
    try:
        prepare_paths(config, account)
        drop_privileges(config, account)
        check_paths(config)
        supervisor: Master | SingleProcess
        if workers > 1:
            supervisor = Master(reactor, path, config, text, bound)
        else:
            supervisor = SingleProcess(reactor, path, config, text, bound, build_service)
            supervisor.prepare()
        supervisor.validate = validate
        return supervisor
    except BaseException:
        bound.close()
        raise
