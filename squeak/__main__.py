# -*- test-case-name: tests.test_main -*-
"""
The C{squeak} command line: C{python -m squeak <command> ...}.

Each command is a subcommand with its own C{_add_<command>} function, which
declares its arguments and sets C{run}, a function from the parsed arguments
to an exit status. Status 0 means success and 2 a usage or configuration
error, which is reported as exactly one line, C{squeak: <message>}, on
standard error.

C{check-config} uses the same loader as the service (L{load_config}).
C{passwd} adds or updates a bcrypt entry in an htpasswd file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from squeak.accel.config import describe as describe_accel
from squeak.config import Config, ConfigError, load_config

#: Exit status for a usage or configuration error.
EXIT_ERROR = 2


class _UsageError(Exception):
    """The command line cannot be parsed; the message says why."""


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser that raises L{_UsageError} rather than printing the
    usage text and exiting, so that errors are one line.
    """

    def error(self, message: str) -> NoReturn:
        """Raise L{_UsageError} with C{message}."""
        raise _UsageError(f"{message} (try: python -m squeak {self._command()}--help)")

    def _command(self) -> str:
        """The subcommand part of C{prog}, with a trailing space, if any."""
        _, _, command = self.prog.partition(" ")
        return f"{command} " if command else ""


def _duration(seconds: float) -> str:
    """Show a duration in its largest whole unit: C{1h}, C{90s}."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def summarize(config: Config) -> list[str]:
    """
    Describe the parts of a configuration an operator most needs to check.

    @return: Lines naming the listen addresses, the access log, the cache
        directory, authentication, then the effective access rules in order
        with their defaults, and the ACLs they use (and any defined ones).
    """
    log = config.access_log
    if log.path == "-":
        where = "standard output"
    elif log.path == "":
        where = "off"
    else:
        where = log.path
    auth = config.auth
    if auth.htpasswd:
        ttl = _duration(auth.credentials_ttl)
        authentication = f'{auth.htpasswd} (realm "{auth.realm}", credentials cached {ttl})'
    else:
        authentication = "off"
    policy = config.policy
    lines = [
        f"{config.source}: OK",
        "listen:      " + ", ".join(str(address) for address in config.proxy.http_port),
        f"access_log:  {where}" + (f" ({log.format} format)" if log.path else ""),
        f"cache dir:   {config.cache.dir}",
        f"auth:        {authentication}",
    ]
    used: list[str] = []
    for label, rules in (("http_access", policy.http_access), ("cache", policy.cache)):
        for rule in rules.rules:
            lines.append(f"{label + ':':<13}{rule.number}. {rule.text}")
            used += [term.acl.name for term in rule.terms if term.acl.name not in used]
        lines.append(f"{label + ':':<13}otherwise {rules.default.value}")
    for name, acl in policy.acls.items():
        if name in used or not acl.builtin:
            lines.append(f"acl:         {name} = {acl.describe()}")
    lines += describe_accel(config.accel)
    return lines


def _check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Load the configuration file, then print a summary or the error."""
    try:
        config = load_config(args.file)
    except ConfigError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    for line in summarize(config):
        print(line, file=out)
    return 0


def _add_check_config(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{check-config FILE}."""
    parser = commands.add_parser(
        "check-config",
        help="validate a configuration file and summarize it",
        description="Validate FILE as the service would, then summarize the effective "
        "configuration. Exits 0 if it is valid, 2 otherwise.",
    )
    parser.add_argument("file", metavar="FILE", help="the TOML configuration file")
    parser.set_defaults(run=_check_config)


def _read_password(stdin: TextIO) -> str:
    """
    Prompt twice on the terminal, or read one line from a pipe.

    @raise ValueError: If the two entries differ.
    """
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Re-type new password: ") != first:
            raise ValueError("the passwords do not match")
        return first
    return stdin.readline().rstrip("\r\n")


def _passwd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Add or update a user's bcrypt entry in an htpasswd file."""
    from squeak.access.auth import hash_password, set_password

    try:
        hashed = hash_password(_read_password(args.stdin), rounds=args.cost)
        existed = set_password(args.file, args.user, hashed)
    except ValueError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    except OSError as e:
        print(f"squeak: {args.file}: {e.strerror or e}", file=err)
        return 1
    print(f"{'Updated' if existed else 'Added'} user {args.user} in {args.file}", file=out)
    return 0


def _cost(text: str) -> int:
    """A bcrypt cost, 4 to 31."""
    if not text.isdigit() or not 4 <= int(text) <= 31:
        raise argparse.ArgumentTypeError(f"expected a bcrypt cost from 4 to 31, got {text!r}")
    return int(text)


def _add_passwd(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{passwd FILE USER}."""
    parser = commands.add_parser(
        "passwd",
        help="add or update a user in an htpasswd file",
        description="Set USER's password in the htpasswd FILE (created if missing) as a "
        "bcrypt hash, keeping the other lines. The password is asked twice on a terminal, "
        "or read as one line from standard input. The file is replaced atomically; a "
        "running proxy notices the change within a second.",
    )
    parser.add_argument("file", metavar="FILE", help="the htpasswd file")
    parser.add_argument("user", metavar="USER", help="the user name (no ':')")
    parser.add_argument(
        "--cost", type=_cost, default=12, help="the bcrypt cost, 4 to 31 (default 12)"
    )
    parser.set_defaults(run=_passwd)


def _purge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Remove a URI's stored responses from the disk cache."""
    from squeak.cache.facade import purge_stored

    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    removed = purge_stored(config.cache, args.url)
    print(f"{'Purged' if removed else 'Not cached'}: {args.url}", file=out)
    return 0 if removed else 1


def _add_purge(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{purge URL [--config FILE]}."""
    parser = commands.add_parser(
        "purge",
        help="remove a URL from the cache",
        description="Remove every stored response for URL from the disk cache the "
        "configuration names (safe while the proxy runs; its memory tier keeps a copy "
        "until it is evicted, so prefer the PURGE method against a running proxy). "
        "Exits 0 if something was removed, 1 if nothing was stored.",
    )
    parser.add_argument("url", metavar="URL", help="the absolute URL, e.g. http://example.org/")
    parser.add_argument("--config", metavar="FILE", help="the TOML configuration file")
    parser.set_defaults(run=_purge)


def _reload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Send SIGHUP to the running squeak named by its pid file."""
    import os
    import signal

    try:
        with open(args.pidfile, encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError) as e:
        print(
            f"squeak: {args.pidfile}: no running squeak ({getattr(e, 'strerror', None) or e})",
            file=err,
        )
        return 1
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
    except OSError:
        command = b""
    if b"squeak" not in command:
        print(f"squeak: {args.pidfile}: process {pid} is not a running squeak", file=err)
        return 1
    os.kill(pid, signal.SIGHUP)
    print(
        f"Asked squeak (pid {pid}) to reload; its log says whether the file was accepted", file=out
    )
    return 0


def _add_reload(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{reload [--pidfile FILE]}."""
    parser = commands.add_parser(
        "reload",
        help="make a running squeak reload its configuration",
        description="Send SIGHUP to the squeak whose PID is in the pid file (twistd's "
        "--pidfile). It re-reads its configuration file: a good one replaces the running "
        "one without dropping a connection, a bad one is logged and changes nothing. "
        "Exits 0 if the signal was sent, 1 if no squeak runs.",
    )
    parser.add_argument(
        "--pidfile",
        metavar="FILE",
        default="twistd.pid",
        help="the pid file given to twistd (default: twistd.pid)",
    )
    parser.set_defaults(run=_reload)


def _worker(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run as a worker process of a master (squeak.worker)."""
    from squeak.net.allocator import tune_malloc
    from squeak.worker import run

    tune_malloc()
    from squeak.net.eventloop import install_default

    install_default()
    from twisted.internet import reactor

    reactor.suggestThreadPoolSize(64)
    return run(args.config, args.listener, reactor, err)


def _add_worker(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{worker}, started by the master only."""
    parser = commands.add_parser(
        "worker",
        description="A worker process, started by squeak's master (proxy.workers > 1) "
        "with the configuration on standard input and the listening sockets inherited. "
        "Not for use by hand.",
    )
    parser.add_argument("--config", default="<defaults>", help="the configuration file's name")
    parser.add_argument(
        "--listener",
        action="append",
        default=[],
        metavar="KEY=ADDRESS@FD",
        help="an inherited listening socket",
    )
    parser.set_defaults(run=_worker)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser for every subcommand."""
    parser = _ArgumentParser(prog="squeak", description="A caching forward HTTP proxy.")
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    _add_check_config(commands)
    _add_passwd(commands)
    _add_purge(commands)
    _add_reload(commands)
    _add_worker(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """
    Run one command.

    @param argv: The arguments after the program name; C{sys.argv[1:]} by
        default.
    @param out: Where normal output goes; standard output by default.
    @param err: Where errors go; standard error by default.
    @param stdin: Where input (a password) is read; standard input by
        default.
    @return: The exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    args.stdin = sys.stdin if stdin is None else stdin
    run: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.run
    return run(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
