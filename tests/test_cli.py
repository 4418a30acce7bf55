# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{squeak.cli}, the C{squeak} (and C{python -m squeak}) command line.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from squeak.access.auth import Htpasswd
from squeak.cli import main
from squeak.config import Config

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
        A valid file exits 0 and summarizes the listen addresses, access log,
        cache directory, authentication, the effective rules in order with
        their defaults, and the ACLs used or defined.
        """
        users = self._write("")
        path = self._write(
            '[proxy]\nhttp_port = ["127.0.0.1:0", "[::1]:8080"]\n'
            '[acl]\nlan = { src = ["192.168.1.0/24"] }\nstaff = { proxy_auth = "REQUIRED" }\n'
            "unused = { port = [8080] }\n"
            '[access]\nhttp_access = ["deny !Safe_ports", "allow lan staff"]\n'
            'cache = ["deny CONNECT"]\n'
            f'[auth]\nhtpasswd = "{os.path.abspath(users)}"\n'
            '[access_log]\npath = "/var/log/squeak.log"\nformat = "combined"\n'
            '[cache]\ndir = "/var/cache/squeak"\n'
        )
        self.assertEqual(
            _run("check-config", path),
            (
                0,
                f"{path}: OK\n"
                "listen:      127.0.0.1:0, [::1]:8080\n"
                "access_log:  /var/log/squeak.log (combined format)\n"
                "cache dir:   /var/cache/squeak\n"
                f'auth:        {os.path.abspath(users)} (realm "squeak", credentials cached 1h)\n'
                "http_access: 1. deny !Safe_ports\n"
                "http_access: 2. allow lan staff\n"
                "http_access: otherwise deny\n"
                "cache:       1. deny CONNECT\n"
                "cache:       otherwise allow\n"
                "acl:         Safe_ports = port 80, 443, 21, 70, 210, 280, ... (10 entries) "
                "(built-in)\n"
                "acl:         CONNECT = method CONNECT (built-in)\n"
                "acl:         lan = src 192.168.1.0/24\n"
                "acl:         staff = proxy_auth REQUIRED\n"
                "acl:         unused = port 8080\n",
                "",
            ),
        )

    def test_special_access_logs(self) -> None:
        """
        The summary spells out C{"-"} as standard output, C{""} as off, and an
        empty C{http_access} as denying everyone.
        """
        stdout = self._write('[access_log]\npath = "-"\n')
        off = self._write('[access_log]\npath = ""\n[access]\nhttp_access = []\n')
        lines = [_run("check-config", path)[1].splitlines()[2:] for path in (stdout, off)]
        self.assertEqual(
            [lines[0][0], lines[1]],
            [
                "access_log:  standard output (squid format)",
                [
                    "access_log:  off",
                    f"cache dir:   {Config().cache.dir}",
                    "auth:        off",
                    "http_access: otherwise deny",
                    "cache:       otherwise allow",
                ],
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
                "squeak: the following arguments are required: COMMAND (try: squeak --help)\n",
            ),
            (
                ("check-config",),
                "squeak: the following arguments are required: FILE "
                "(try: squeak check-config --help)\n",
            ),
            (
                ("frobnicate",),
                "squeak: argument COMMAND: invalid choice: 'frobnicate' (choose from "
                "'run', 'check-config', 'purge', 'mgr', 'reload', 'passwd', 'worker') (try: "
                "squeak --help)\n",
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
                "access_log:  standard output (squid format)\n"
                "cache dir:   /nonexistent/xdg/squeak\n"
                "auth:        off\n"
                "http_access: 1. deny !Safe_ports\n"
                "http_access: 2. deny CONNECT !SSL_ports\n"
                "http_access: 3. deny to_localhost !localhost\n"
                "http_access: 4. allow localnet\n"
                "http_access: 5. deny all\n"
                "http_access: otherwise deny\n"
                "cache:       otherwise allow\n"
                "acl:         all = src 0.0.0.0/0, ::/0 (built-in)\n"
                "acl:         localhost = src 127.0.0.1/32, ::1/128 (built-in)\n"
                "acl:         to_localhost = dst 127.0.0.0/8, 0.0.0.0/32, ::1/128, ::/128 "
                "(built-in)\n"
                "acl:         localnet = src 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "
                "100.64.0.0/10, 169.254.0.0/16, 127.0.0.0/8, ... (9 entries) (built-in)\n"
                "acl:         SSL_ports = port 443 (built-in)\n"
                "acl:         Safe_ports = port 80, 443, 21, 70, 210, 280, ... (10 entries) "
                "(built-in)\n"
                "acl:         CONNECT = method CONNECT (built-in)\n",
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
            f.write('[access]\nhttp_access = ["allow all"]\n')
        result = self._squeak("check-config", path)
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (
                2,
                "",
                f'squeak: {path}:2: access.http_access: rule "allow all" would make an open '
                "proxy: it allows clients from any address (add a src ACL such as localnet, or "
                'a proxy_auth ACL, to it, or put "deny !localnet" before it)\n',
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
                "import io, sys; from squeak.cli import main; "
                "main(['check-config', 'etc/squeak.toml'], out=io.StringIO()); "
                "print('twisted' in sys.modules)",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "False\n", ""))


class PasswdTests(SynchronousTestCase):
    """
    Tests for C{passwd FILE USER}, run in this process with a piped password.
    """

    def _passwd(self, path: str, user: str, password: str) -> tuple[int, str, str]:
        """Run C{passwd} at the lowest bcrypt cost with C{password} on stdin."""
        out, err = io.StringIO(), io.StringIO()
        status = main(
            ["passwd", path, user, "--cost", "4"], out=out, err=err, stdin=io.StringIO(password)
        )
        return status, out.getvalue(), err.getvalue()

    def test_add_then_update(self) -> None:
        """
        A new file gets the user; a second user is appended; setting the
        first user again replaces its line in place, keeping the others, and
        the new password verifies while the old one does not.
        """
        path = self.mktemp()
        results = [
            self._passwd(path, "alice", "one\n"),
            self._passwd(path, "bob", "two\n"),
            self._passwd(path, "alice", "three\r\n"),
        ]
        self.assertEqual(
            results,
            [
                (0, f"Added user alice in {path}\n", ""),
                (0, f"Added user bob in {path}\n", ""),
                (0, f"Updated user alice in {path}\n", ""),
            ],
        )
        htpasswd = Htpasswd.load(path)
        with open(path, encoding="utf-8") as f:
            users = [line.split(":")[0] for line in f]
        self.assertEqual(
            (
                users,
                htpasswd.verify("alice", "three"),
                htpasswd.verify("alice", "one"),
                htpasswd.verify("bob", "two"),
                htpasswd.entries["alice"].hashed[:7],
                htpasswd.warnings,
            ),
            (["alice", "bob"], True, False, True, "$2y$04$", []),
        )

    def test_keeps_other_lines_and_mode(self) -> None:
        """
        Lines other than the user's, even ones squeak would ignore, are kept
        byte for byte, and the file keeps its permissions.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# users\ncarol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\nalice:old\n")
        os.chmod(path, 0o640)
        self.assertEqual(self._passwd(path, "alice", "pw\n")[0], 0)
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(
            (lines[:2], lines[2][:13], oct(os.stat(path).st_mode & 0o777)),
            (["# users", "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="], "alice:$2y$04$", "0o640"),
        )

    def test_refused(self) -> None:
        """
        An empty password, a password bcrypt would truncate, and a user name
        with a colon are refused with one line and status 2; nothing is
        written.
        """
        path = self.mktemp()
        results = [
            self._passwd(path, "alice", "\n"),
            self._passwd(path, "alice", "x" * 73 + "\n"),
            self._passwd(path, "a:b", "pw\n"),
        ]
        self.assertEqual(
            (results, os.path.exists(path)),
            (
                [
                    (2, "", "squeak: the password is empty\n"),
                    (
                        2,
                        "",
                        "squeak: the password is longer than 72 bytes, which bcrypt ignores\n",
                    ),
                    (
                        2,
                        "",
                        "squeak: a user name must be non-empty, without ':' or control "
                        "characters\n",
                    ),
                ],
                False,
            ),
        )
