# -*- test-case-name: tests.test_startup -*-
"""
What is checked before the proxy serves, so that a start-up failure is one
line (C{squeak: FILE: KEY: problem}, exit status 2) like a configuration
error, rather than a traceback from deep inside the service: the cache
directory and the access log can be created and written, and, when squeak
is started as root with C{proxy.user}, the switch to that account.

Order, as Squid's: bind the listeners as root (L{squeak.net.listeners}),
make the cache directory and the log file and hand them to the account
(L{prepare_paths}), switch to it (L{drop_privileges}), then check again as
that account that both can be written (L{check_paths}).

Before any of it, L{raise_descriptor_limit} raises the soft limit on open
files to the hard one, as Squid does (C{max_filedescriptors}): a proxy
holds two descriptors per request it forwards, and the usual soft limit of
1024 is met long before the CPU is busy.  Worker processes inherit it.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import tempfile
from dataclasses import dataclass

from squeak.config import Config, ConfigError

__all__ = [
    "Account",
    "check_paths",
    "drop_privileges",
    "prepare_paths",
    "raise_descriptor_limit",
    "resolve_account",
]

#: The most a soft limit is raised to when the hard limit is unlimited
#: (Linux refuses more than C{fs.nr_open}, 1048576 by default).
_UNLIMITED_CEILING = 1048576


@dataclass(frozen=True, slots=True)
class Account:
    """
    The user and group to run as.
    """

    user: str
    uid: int
    gid: int


def resolve_account(config: Config) -> Account | None:
    """
    The account C{proxy.user} and C{proxy.group} name, or L{None} when no
    user is named.

    @raise ConfigError: If the user or group does not exist, or a group is
        named without a user.
    """
    proxy = config.proxy
    if not proxy.user:
        if proxy.group:
            raise ConfigError(config.source, "proxy.group", "needs proxy.user as well")
        return None
    try:
        entry = (
            pwd.getpwnam(proxy.user) if not proxy.user.isdigit() else pwd.getpwuid(int(proxy.user))
        )
    except KeyError:
        raise ConfigError(config.source, "proxy.user", f"no such user: {proxy.user}") from None
    gid = entry.pw_gid
    if proxy.group:
        try:
            gid = (
                grp.getgrnam(proxy.group).gr_gid
                if not proxy.group.isdigit()
                else grp.getgrgid(int(proxy.group)).gr_gid
            )
        except KeyError:
            raise ConfigError(
                config.source, "proxy.group", f"no such group: {proxy.group}"
            ) from None
    return Account(entry.pw_name, entry.pw_uid, gid)


def _log_path(config: Config) -> str | None:
    """The access log's file, or L{None} when it is not a file."""
    path = config.access_log.path
    return None if path in ("-", "") else path


def prepare_paths(config: Config, account: Account | None) -> None:
    """
    Create the cache directory and the access log file (and their missing
    parent directories) and, when switching accounts as root, give them to
    the account.

    @raise ConfigError: If one cannot be created, naming its key.
    """
    handover = account is not None and os.geteuid() == 0
    if config.cache.enabled:
        try:
            os.makedirs(config.cache.dir, mode=0o750, exist_ok=True)
            if handover:
                assert account is not None
                os.chown(config.cache.dir, account.uid, account.gid)
        except OSError as error:
            raise ConfigError(
                config.source,
                "cache.dir",
                f"cannot create {config.cache.dir}: {error.strerror or error}",
            ) from None
    path = _log_path(config)
    if path is not None:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
            if handover:
                assert account is not None
                os.chown(path, account.uid, account.gid)
        except OSError as error:
            raise ConfigError(
                config.source,
                "access_log.path",
                f"cannot create {path}: {error.strerror or error}",
            ) from None


def check_paths(config: Config) -> None:
    """
    Check, as the account that serves, that the cache directory and the
    access log can be written.

    @raise ConfigError: If one cannot, naming its key.
    """
    if config.cache.enabled:
        try:
            with tempfile.TemporaryFile(dir=config.cache.dir):
                pass
        except OSError as error:
            raise ConfigError(
                config.source,
                "cache.dir",
                f"cannot write in {config.cache.dir}: {error.strerror or error}",
            ) from None
    path = _log_path(config)
    if path is not None:
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as error:
            raise ConfigError(
                config.source, "access_log.path", f"cannot write {path}: {error.strerror or error}"
            ) from None


def drop_privileges(config: Config, account: Account | None) -> None:
    """
    Become C{account} for good (groups, then group, then user), if squeak
    runs as root; as another user, only check that it already is that user.

    @raise ConfigError: If the switch is impossible.
    """
    if account is None:
        return
    if os.geteuid() != 0:
        if os.geteuid() != account.uid:
            raise ConfigError(
                config.source,
                "proxy.user",
                f"switching to {account.user} needs root (squeak runs as uid {os.geteuid()})",
            )
        return
    try:
        os.setgroups([account.gid])
        os.setgid(account.gid)
        os.setuid(account.uid)
    except OSError as error:
        raise ConfigError(
            config.source, "proxy.user", f"cannot switch to {account.user}: {error.strerror}"
        ) from None


def raise_descriptor_limit(ceiling: int | None = None) -> str:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit (Squid's
    C{max_filedescriptors}), so that the proxy can hold as many connections
    as the system lets it rather than as many as a login shell gets.

    @param ceiling: Raise it no further than this: C{select(2)} cannot
        watch a descriptor numbered C{FD_SETSIZE} (1024) or above, so
        under twistd's C{--reactor select} more would break the proxy
        rather than help it.
    @return: The one line for the start-up log, naming the figure; a limit
        that cannot be raised is kept, and the line says so rather than
        failing the start.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if ceiling is not None:
        wanted = min(wanted, ceiling)
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return f"squeak can open {soft} file descriptors (RLIMIT_NOFILE)"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError) as error:
        return (
            f"squeak can open {soft} file descriptors (RLIMIT_NOFILE; "
            f"raising it to {wanted} failed: {error})"
        )
    return f"squeak can open {wanted} file descriptors (RLIMIT_NOFILE raised from {soft})"


def _nr_open() -> int:
    """
    The most descriptors a process may have on this system: Linux's
    C{fs.nr_open}, or L{_UNLIMITED_CEILING} where it cannot be read.
    """
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return _UNLIMITED_CEILING
