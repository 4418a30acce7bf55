# -*- test-case-name: tests.test_cli -*-
"""
The C{squeak} command line: C{squeak <command> ...} (the console script
C{pip install .} makes), also C{python -m squeak <command> ...}.

C{squeak --help} says how to start the proxy and lists the commands;
C{squeak --version} prints squeak's version.  Each command is a subcommand
with its own C{_add_<command>} function, which declares its arguments and
sets C{run}, a function from the parsed arguments to an exit status.
Status 0 means success and 2 a usage or configuration error (or a proxy
that cannot be asked), which is reported as exactly one line, C{squeak:
<message>}, on standard error.

C{run} starts the proxy in the foreground, as C{twistd -n squeak} does.
C{check-config} uses the same loader as the service (L{load_config}).
C{passwd} adds or updates a bcrypt entry in an htpasswd file.
C{purge} and C{mgr} ask the running proxy (L{squeak.control}); C{reload}
signals it.  C{worker} is for squeak's master only.

Commands that need a configuration read C{--config FILE}, else
L{DEFAULT_CONFIG} if it exists, else use the embedded defaults (as twistd
does without C{--config}), and say which they used when it matters.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from squeak import __version__
from squeak.accel.config import describe as describe_accel
from squeak.config import Config, ConfigError, load_config

#: Exit status for a usage or configuration error, or a proxy that cannot
#: be asked.
EXIT_ERROR = 2

#: The configuration file used when no C{--config} is given, if it exists
#: (where docs/operations.md and etc/squeak.service put it).
DEFAULT_CONFIG = "/etc/squeak/squeak.toml"


class _UsageError(Exception):
    """The command line cannot be parsed; the message says why."""


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser that raises L{_UsageError} rather than printing the
    usage text and exiting, so that errors are one line.
    """

    def error(self, message: str) -> NoReturn:
        """Raise L{_UsageError} with C{message}."""
        raise _UsageError(f"{message} (try: squeak {self._command()}--help)")

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
    lines += config.hierarchy.describe()
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


def _config_path(args: argparse.Namespace) -> str | None:
    """
    The configuration file a command uses: C{--config}, else
    L{DEFAULT_CONFIG} if it exists, else none (the embedded defaults).
    """
    given: str | None = args.config
    if given is not None:
        return given
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def _config(args: argparse.Namespace) -> Config:
    """
    Load the configuration a command uses (L{_config_path}).

    @raise ConfigError: If it cannot be used.
    """
    path = _config_path(args)
    return Config() if path is None else load_config(path)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    """Declare C{--config FILE}, with its default explained."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the TOML configuration file (default: {DEFAULT_CONFIG} if it exists, "
        "else the embedded defaults: 127.0.0.1:3128)",
    )


def _add_proxy_options(parser: argparse.ArgumentParser) -> None:
    """Declare C{--config FILE} and C{--proxy HOST:PORT}: which proxy to ask."""
    _add_config_option(parser)
    parser.add_argument(
        "--proxy", metavar="HOST:PORT", help="the proxy to ask (default: from the configuration)"
    )


def _purge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Ask the running proxy to PURGE a URL (memory and disk); with
    C{--offline}, remove it from the disk cache's files only.
    """
    from squeak.control import ControlError, proxy_address, send_purge

    try:
        config = _config(args)
    except ConfigError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    if args.offline:
        from squeak.cache.facade import purge_stored

        removed = purge_stored(config.cache, args.url)
        files = f"the disk cache files in {config.cache.dir} (offline)"
        print(f"{'Purged from' if removed else 'Not cached in'} {files}: {args.url}", file=out)
        return 0 if removed else 1
    try:
        where = proxy_address(config, args.proxy)
        answer = send_purge(where, args.url)
    except ControlError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    proxy = f"the running proxy at {where.authority} (memory and disk)"
    if answer.status == 200:
        print(f"Purged from {proxy}: {args.url}", file=out)
        return 0
    if answer.status == 404:
        print(f"Not cached in {proxy}: {args.url}", file=out)
        return 1
    print(
        f"squeak: the proxy at {where.authority} answered PURGE with "
        f"{answer.status} {answer.reason}{answer.explanation}",
        file=err,
    )
    return EXIT_ERROR


def _add_purge(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{purge URL [--config FILE] [--proxy HOST:PORT] [--offline]}."""
    parser = commands.add_parser(
        "purge",
        help="remove a URL from the running proxy's cache",
        description="Send PURGE for URL to the running proxy (its first http_port, or "
        "--proxy), which removes every stored response for it from memory and disk, in "
        "every worker. With --offline, remove it from the disk cache's files without "
        "asking a proxy (for one that is not running; the cache directory's invalidation "
        "tags still make a running one drop its memory copy). Exits 0 if "
        "something was removed, 1 if nothing was stored, 2 if the proxy cannot be asked or "
        "refuses.",
    )
    parser.add_argument("url", metavar="URL", help="the absolute URL, e.g. http://example.org/")
    _add_proxy_options(parser)
    parser.add_argument(
        "--offline",
        action="store_true",
        help="remove the URL from the disk cache's files without asking a proxy",
    )
    parser.set_defaults(run=_purge)


def _mgr(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a cache manager page of the running proxy."""
    from squeak.control import ControlError, fetch_manager_page, manager_url, proxy_address

    page: str = args.page
    if args.json:
        page += ("&" if "?" in page else "?") + "format=json"
    try:
        where = proxy_address(_config(args), args.proxy)
        answer = fetch_manager_page(where, page)
    except (ConfigError, ControlError) as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    if answer.status != 200:
        print(
            f"squeak: {manager_url(where, page)}: "
            f"{answer.status} {answer.reason}{answer.explanation}",
            file=err,
        )
        return 1
    text = answer.body.decode("utf-8", errors="replace")
    out.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _add_mgr(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{mgr PAGE [--json] [--config FILE] [--proxy HOST:PORT]}."""
    parser = commands.add_parser(
        "mgr",
        help="print a cache manager page of the running proxy",
        description="GET http://HOST:PORT/squid-internal-mgr/PAGE from the running proxy "
        "(as squidclient mgr:PAGE does) and print the body: e.g. info, counters, "
        "'objects?url=http://example.org/'. Exits 0 on 200, 1 if the proxy answers "
        "another status (printed), 2 if it cannot be asked.",
    )
    parser.add_argument("page", metavar="PAGE", help="the page, with its query if any")
    parser.add_argument("--json", action="store_true", help="ask for JSON (format=json)")
    _add_proxy_options(parser)
    parser.set_defaults(run=_mgr)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Start the proxy in the foreground: the same as C{twistd --nodaemon
    --pidfile=FILE squeak --config FILE} (twistd runs it, with squeak's
    plugin, so both ways behave alike).
    """
    from twisted.scripts.twistd import run

    argv = ["twistd", "--nodaemon", f"--pidfile={args.pidfile}"]
    if args.logfile:
        argv.append(f"--logfile={args.logfile}")
    argv.append("squeak")
    path = _config_path(args)
    if path is not None:
        argv += ["--config", path]
    sys.argv = argv
    run()  # type: ignore[no-untyped-call]
    return 0


def _add_run(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """Declare C{run [--config FILE] [--pidfile FILE] [--logfile FILE]}."""
    parser = commands.add_parser(
        "run",
        help="start the proxy in the foreground (twistd -n squeak)",
        description="Start squeak in the foreground, as 'twistd --nodaemon --pidfile= squeak "
        "--config FILE' does. SIGTERM or SIGINT stops it gracefully, SIGHUP (squeak reload) "
        "reloads the configuration. For twistd's other options (daemonising, --reactor, "
        "--uid), run twistd itself.",
    )
    _add_config_option(parser)
    parser.add_argument(
        "--pidfile",
        metavar="FILE",
        default="",
        help="write the process id there, for squeak reload (default: none)",
    )
    parser.add_argument(
        "--logfile", metavar="FILE", help="twistd's log file (default: standard output)"
    )
    parser.set_defaults(run=_run)


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
    return run(args.config, args.listener, reactor, err, args.accepting)


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
    parser.add_argument(
        "--accepting",
        metavar="slot=S,generation=G[,ledger=FD,entry=E]",
        help="the worker's slot and generation, and the shared accept queue's ledger",
    )
    parser.set_defaults(run=_worker)


#: What C{squeak --help} says after the commands.
_EPILOG = f"""\
Start the proxy (in the foreground; SIGTERM stops it):
  squeak run --config {DEFAULT_CONFIG}
  twistd -n --pidfile= squeak --config {DEFAULT_CONFIG}     (the same, by twistd)
Without --config, {DEFAULT_CONFIG} is used if it exists, else safe embedded
defaults (listen on 127.0.0.1:3128, loopback clients only). As a service:
etc/squeak.service; docs/operations.md says more.

'squeak COMMAND --help' describes a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the parser for every subcommand."""
    parser = _ArgumentParser(
        prog="squeak",
        description="squeak, a caching forward HTTP proxy (Squid-like) on Twisted.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"squeak {__version__}",
        help="print squeak's version and exit",
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    _add_run(commands)
    _add_check_config(commands)
    _add_purge(commands)
    _add_mgr(commands)
    _add_reload(commands)
    _add_passwd(commands)
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
