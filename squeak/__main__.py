# -*- test-case-name: tests.test_main -*-
"""
The C{squeak} command line: C{python -m squeak <command> ...}.

Each command is a subcommand with its own C{_add_<command>} function, which
declares its arguments and sets C{run}, a function from the parsed arguments
to an exit status. Status 0 means success and 2 a usage or configuration
error, which is reported as exactly one line, C{squeak: <message>}, on
standard error.

C{check-config} uses the same loader as the service (L{load_config}).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

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


def summarize(config: Config) -> list[str]:
    """
    Describe the parts of a configuration an operator most needs to check.

    @return: Lines naming the listen addresses, the allowed client networks,
        the access log and the cache directory.
    """
    log = config.access_log
    if log.path == "-":
        where = "standard output"
    elif log.path == "":
        where = "off"
    else:
        where = log.path
    allowed = ", ".join(str(network) for network in config.access.allow_src)
    return [
        f"{config.source}: OK",
        "listen:      " + ", ".join(str(address) for address in config.proxy.http_port),
        "allow_src:   " + (allowed or "(nobody: every client is denied)"),
        f"access_log:  {where}" + (f" ({log.format} format)" if log.path else ""),
        f"cache dir:   {config.cache.dir}",
    ]


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


def build_parser() -> argparse.ArgumentParser:
    """Build the parser for every subcommand."""
    parser = _ArgumentParser(prog="squeak", description="A caching forward HTTP proxy.")
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    _add_check_config(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """
    Run one command.

    @param argv: The arguments after the program name; C{sys.argv[1:]} by
        default.
    @param out: Where normal output goes; standard output by default.
    @param err: Where errors go; standard error by default.
    @return: The exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as e:
        print(f"squeak: {e}", file=err)
        return EXIT_ERROR
    run: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.run
    return run(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
