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
from typing import Any, NoReturn, cast

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from squeak import __version__
from squeak.config import Config, ConfigError
from squeak.logline import PRESET_NAMES
from squeak.net.allocator import tune_malloc
from twisted import __version__ as twisted_version

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

    def opt_version(self) -> NoReturn:
        """
        Print squeak's version (and the Twisted it runs on) and exit:
        C{twistd squeak --version} is about squeak, where the inherited
        option printed Twisted's alone.
        """
        print(f"squeak {__version__} (Twisted {twisted_version})")
        sys.exit(0)


def _size(count: int) -> str:
    """A byte count in the largest binary unit that divides it: C{1 GiB}."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def where_things_are(config: Config) -> str:
    """
    One start-up line saying where the cache and the access log are, so
    that an operator reading the log finds them without the configuration.
    """
    cache = config.cache
    if not cache.enabled:
        stored = "off"
    else:
        stored = (
            f"{cache.dir} (disk up to {_size(cache.size)}, "
            f"memory up to {_size(cache.memory_size)})"
        )
    log = config.access_log
    form = f"{log.format} format" if log.format in PRESET_NAMES else "a custom format"
    if log.path == "":
        logged = "off"
    elif log.path == "-":
        logged = f"standard output ({form})"
    elif log.path == "syslog":
        logged = f"syslog ({log.syslog_facility}, tag {log.syslog_tag}; {form})"
    else:
        logged = f"{log.path} ({form})"
    return f"squeak cache: {stored}; access log: {logged}"


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
    from squeak.worker import tune_garbage_collector

    # twistd starts the service before the reactor runs: once running, what
    # start-up built is settled (squeak.worker.tune_garbage_collector says
    # why: full collections paused every connection for 30-100 ms).  In the
    # reactor's first turn, after the service's own start-up calls (signal
    # handlers, READY=1), so that the collection does not delay them.
    reactor.callWhenRunning(reactor.callLater, 0, tune_garbage_collector)
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

    import squeak.errorpages  # noqa: F401 - reads the shipped page now
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

    if path:
        config, text = read_config(path)
    else:
        config, text = Config(), ""
    _log.info("{line}", line=where_things_are(config))
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
