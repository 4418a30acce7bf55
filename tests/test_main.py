# -*- test-case-name: tests.test_main -*-
"""
Tests for L{squeak.__main__}, the C{python -m squeak} command line.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from squeak.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join("etc", "squeak.toml")


def _run(*argv: str) -> tuple[int, str, str]:
    """Run L{main} in this process; return its status, output and errors."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


class CheckConfigTests(SynchronousTestCase):
    """
    Tests for C{check-config FILE}, run in this process.
    """

    def _write(self, text: str) -> str:
        """Write C{text} to a new file; return its path."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_valid(self) -> None:
        """
        A valid file exits 0 and summarizes the listen addresses, allowed
        client networks, access log and cache directory.
        """
        path = self._write(
            '[proxy]\nhttp_port = ["127.0.0.1:0", "[::1]:8080"]\n'
            '[access]\nallow_src = ["192.168.1.0/24"]\n'
            '[access_log]\npath = "/var/log/squeak.log"\nformat = "combined"\n'
            '[cache]\ndir = "/var/cache/squeak"\n'
        )
        self.assertEqual(
            _run("check-config", path),
            (
                0,
                f"{path}: OK\n"
                "listen:      127.0.0.1:0, [::1]:8080\n"
                "allow_src:   192.168.1.0/24\n"
                "access_log:  /var/log/squeak.log (combined format)\n"
                "cache dir:   /var/cache/squeak\n",
                "",
            ),
        )

    def test_special_access_logs(self) -> None:
        """
        The summary spells out C{"-"} as standard output, C{""} as off, and an
        empty C{allow_src} as denying everyone.
        """
        stdout = self._write('[access_log]\npath = "-"\n')
        off = self._write('[access_log]\npath = ""\n[access]\nallow_src = []\n')
        lines = [_run("check-config", path)[1].splitlines()[2:4] for path in (stdout, off)]
        self.assertEqual(
            lines,
            [
                [
                    "allow_src:   127.0.0.0/8, ::1/128",
                    "access_log:  standard output (squid format)",
                ],
                ["allow_src:   (nobody: every client is denied)", "access_log:  off"],
            ],
        )

    def test_invalid(self) -> None:
        """
        An invalid file exits 2 with one line, C{squeak: <error>}, on standard
        error and nothing on standard output.
        """
        path = self._write("[timeouts]\nconnect = 'abc'\n")
        self.assertEqual(
            _run("check-config", path),
            (
                2,
                "",
                f'squeak: {path}:2: timeouts.connect: expected a duration like "30s" or "2min", '
                'got "abc"\n',
            ),
        )

    def test_missing_file(self) -> None:
        """
        A missing file exits 2 with one line saying it cannot be read.
        """
        path = self.mktemp()
        self.assertEqual(
            _run("check-config", path),
            (2, "", f"squeak: {path}: cannot read: No such file or directory\n"),
        )

    def test_usage_errors(self) -> None:
        """
        A missing or unknown command or argument exits 2 with one line.
        """
        cases = [
            (
                (),
                "squeak: the following arguments are required: COMMAND "
                "(try: python -m squeak --help)\n",
            ),
            (
                ("check-config",),
                "squeak: the following arguments are required: FILE "
                "(try: python -m squeak check-config --help)\n",
            ),
            (
                ("frobnicate",),
                "squeak: argument COMMAND: invalid choice: 'frobnicate' (choose from "
                "'check-config') (try: python -m squeak --help)\n",
            ),
        ]
        wrong = [
            (argv, got, want) for argv, want in cases if (got := _run(*argv)) != (2, "", want)
        ]
        self.assertEqual(wrong, [])


class SubprocessTests(SynchronousTestCase):
    """
    Tests for C{python -m squeak check-config} as operators run it.
    """

    timeout = 30

    def _squeak(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run C{python -m squeak} from the checkout's root."""
        env = dict(os.environ, XDG_CACHE_HOME="/nonexistent/xdg")
        return subprocess.run(
            [sys.executable, "-m", "squeak", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )

    def test_sample(self) -> None:
        """
        The sample configuration checks out: exit 0, a summary naming the
        loopback listener and the per-user cache directory.
        """
        result = self._squeak("check-config", SAMPLE)
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (
                0,
                "etc/squeak.toml: OK\n"
                "listen:      127.0.0.1:3128\n"
                "allow_src:   127.0.0.0/8, ::1/128\n"
                "access_log:  standard output (squid format)\n"
                "cache dir:   /nonexistent/xdg/squeak\n",
                "",
            ),
        )

    def test_bad_config(self) -> None:
        """
        A bad configuration exits 2 with exactly one line on standard error,
        naming the file, line and key, and nothing on standard output.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write('[access]\nallow_src = ["0.0.0.0/0"]\n')
        result = self._squeak("check-config", path)
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (
                2,
                "",
                f'squeak: {path}:2: access.allow_src: "0.0.0.0/0" would make an open proxy '
                "(list only the networks of your own clients)\n",
            ),
        )

    def test_no_command(self) -> None:
        """
        Without a command, the exit status is 2 and the error one line.
        """
        result = self._squeak()
        self.assertEqual(
            (result.returncode, result.stdout, len(result.stderr.splitlines())), (2, "", 1)
        )

    def test_no_twisted_needed(self) -> None:
        """
        C{check-config} does not import Twisted, so it stays fast and works
        where only the pure modules are usable.
        """
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import io, sys; from squeak.__main__ import main; "
                "main(['check-config', 'etc/squeak.toml'], out=io.StringIO()); "
                "print('twisted' in sys.modules)",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "False\n", ""))
