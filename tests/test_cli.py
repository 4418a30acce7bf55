# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{squeak.cli}, the C{squeak} (and C{python -m squeak}) command line.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys

from twisted.internet import reactor, threads
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak import __version__
from squeak.access.auth import Htpasswd
from squeak.cli import main
from squeak.config import Config
from tests.origins import Origin
from tests.proxyharness import ProxyTestCase
from tests.twistdprocess import TWISTD, TwistdProxy
from twisted import __version__ as twisted_version

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


class PurgeTests(ProxyTestCase):
    """
    C{squeak purge} against a running in-process proxy: the memory copy
    goes too, and what was purged is said.
    """

    async def _squeak(self, *argv: str) -> tuple[int, str, str]:
        return await threads.deferToThread(_run, *argv)

    def _get(self, url: str) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=10)
        try:
            connection.request("GET", url)
            return connection.getresponse().read()
        finally:
            connection.close()

    async def test_purge_asks_the_running_proxy(self) -> None:
        """
        A cached URL (in memory) is purged by PURGE to the proxy: exit 0,
        the next request goes to the origin; a second purge finds nothing
        (exit 1).
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/p?cc=max-age=600")
        first = await threads.deferToThread(self._get, url)
        self.assertEqual(await threads.deferToThread(self._get, url), first)
        proxy = f"127.0.0.1:{self.proxy_port}"
        where = f"the running proxy at {proxy} (memory and disk)"
        self.assertEqual(
            await self._squeak("purge", url, "--proxy", proxy),
            (0, f"Purged from {where}: {url}\n", ""),
        )
        third = await threads.deferToThread(self._get, url)
        self.assertIn(b"response 2", third)
        self.assertEqual(
            [line.split()[3] for line in self.access_log_lines()],
            ["TCP_MISS/200", "TCP_MEM_HIT/200", "TCP_MISS/200", "TCP_MISS/200"],
        )
        # The copy the third request stored goes, then nothing is left.
        self.assertEqual((await self._squeak("purge", url, "--proxy", proxy))[0], 0)
        self.assertEqual(
            await self._squeak("purge", url, "--proxy", proxy),
            (1, f"Not cached in {where}: {url}\n", ""),
        )

    async def test_offline_purges_the_files(self) -> None:
        """
        C{--offline} removes the URL from the configured disk cache's files,
        saying which cache; the running proxy drops its memory copy too (the
        cache directory's invalidation tags), so the next request is a miss.
        """
        origin = Origin(reactor)
        self.listen(origin)
        url = origin.url("/cached/o?cc=max-age=600")
        await threads.deferToThread(self._get, url)
        config = os.path.join(self.directory, "squeak.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f'[cache]\ndir = "{self.config.cache.dir}"\n')
        files = f"the disk cache files in {self.config.cache.dir} (offline)"
        self.assertEqual(
            await self._squeak("purge", url, "--offline", "--config", config),
            (0, f"Purged from {files}: {url}\n", ""),
        )
        self.assertEqual(
            await self._squeak("purge", url, "--offline", "--config", config),
            (1, f"Not cached in {files}: {url}\n", ""),
        )
        self.assertIn(b"response 2", await threads.deferToThread(self._get, url))
        self.assertEqual(
            [line.split()[3] for line in self.access_log_lines()], ["TCP_MISS/200", "TCP_MISS/200"]
        )

    async def test_proxy_not_running(self) -> None:
        """
        No proxy at the address: exit 2 with one line, nothing on stdout.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.assertEqual(
            await self._squeak("purge", "http://o.test/", "--proxy", f"127.0.0.1:{port}"),
            (
                2,
                "",
                f"squeak: no proxy is running at 127.0.0.1:{port} (connection refused; the "
                "address is from --proxy)\n",
            ),
        )


class PurgeRefusedTests(ProxyTestCase):
    """
    A proxy that does not allow PURGE from this address.
    """

    config_overrides = {"cache": {"purge_from": ()}}

    async def test_refused_is_one_line(self) -> None:
        """
        The proxy's 403 is exit 2 and one line saying what to change.
        """
        proxy = f"127.0.0.1:{self.proxy_port}"
        self.assertEqual(
            await threads.deferToThread(_run, "purge", "http://o.test/", "--proxy", proxy),
            (
                2,
                "",
                f"squeak: the proxy at {proxy} answered PURGE with 403 Forbidden "
                "(ERR_ACCESS_DENIED: PURGE is not allowed from this address)\n",
            ),
        )


class TwistdTests(SynchronousTestCase):
    """
    The command line and twistd against a real C{twistd -n squeak}.
    """

    timeout = 60

    def test_twistd_squeak_version(self) -> None:
        """
        C{twistd squeak --version} prints squeak's version (and Twisted's),
        not Twisted's alone.
        """
        result = subprocess.run(
            [TWISTD, "squeak", "--version"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, f"squeak {__version__} (Twisted {twisted_version})\n", ""),
        )

    def test_startup_log_and_a_missing_manager_page(self) -> None:
        """
        The start-up log says where the cache and the access log are; C{mgr}
        for a page the proxy does not have prints the status it answered,
        in one line, and exits 1.
        """
        scratch = os.path.abspath(self.mktemp())
        os.makedirs(scratch)
        cache, log = os.path.join(scratch, "cache"), os.path.join(scratch, "access.log")
        proxy = TwistdProxy(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\n'
            f'[cache]\ndir = "{cache}"\nsize = "256 MiB"\n[access_log]\npath = "{log}"\n'
        )
        proxy.start()
        try:
            self.assertIn(
                f"squeak cache: {cache} (disk up to 256 MiB, memory up to 64 MiB); "
                f"access log: {log} (squid format)",
                proxy.output,
            )
            page = "no-such-page"
            url = f"http://127.0.0.1:{proxy.port}/squid-internal-mgr/{page}"
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                s.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n".encode())
                head = s.recv(65536).split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            status_line = head[0].split(" ", 2)
            error = [
                v for k, _, v in (f.partition(": ") for f in head[1:]) if k == "X-Squeak-Error"
            ]
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "squeak",
                    "mgr",
                    page,
                    "--proxy",
                    f"127.0.0.1:{proxy.port}",
                ],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            proxy.stop()
        self.assertGreaterEqual(int(status_line[1]), 400)
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertTrue(
            result.stderr.startswith(f"squeak: {url}: {status_line[1]} {status_line[2]}"),
            result.stderr,
        )
        if error:
            self.assertIn(f" ({error[0]}", result.stderr)


#: pip's options for installing the checkout with what is installed already.
_OFFLINE_INSTALL = ("--no-deps", "--no-index", "--no-build-isolation")


class FreshInstallTests(SynchronousTestCase):
    """
    The C{squeak} console script from a fresh C{pip install .} in a new
    venv, run outside the checkout.

    The venv reaches the dependencies already installed in the development
    venv through a C{.pth} line (that line does not run the development
    venv's own C{.pth} files, so its editable squeak stays invisible), and
    pip installs with C{--no-deps --no-index --no-build-isolation}: nothing
    is fetched from the registry, the build uses the setuptools already
    installed, and the test takes seconds rather than minutes.  What it
    proves is what an operator's C{pip install .} gets: the console script,
    the twistd plugin, and squeak imported from the venv's site-packages.
    """

    timeout = 240

    def test_console_script(self) -> None:
        """
        C{squeak --help} says how to start the proxy and lists the commands;
        C{squeak --version} and C{twistd squeak --version} print squeak's
        version; C{squeak run} starts the proxy, and C{squeak purge} and
        C{squeak mgr} reach it.
        """
        import sysconfig
        import time
        import venv

        scratch = os.path.abspath(self.mktemp())
        env_dir = os.path.join(scratch, "venv")
        try:
            venv.EnvBuilder(with_pip=True).create(env_dir)
        except (subprocess.CalledProcessError, OSError) as e:
            raise SkipTest(f"cannot make a venv with pip (ensurepip): {e}") from None
        bin_dir = os.path.join(env_dir, "bin")
        python = os.path.join(bin_dir, "python")
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        with open(os.path.join(site, "squeak-test-deps.pth"), "w", encoding="utf-8") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        installed = subprocess.run(
            [python, "-m", "pip", "install", "-q", *_OFFLINE_INSTALL, ROOT],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if installed.returncode != 0:
            raise SkipTest(f"pip cannot install squeak offline here: {installed.stderr[-500:]}")

        def squeak(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [os.path.join(bin_dir, "squeak"), *argv],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        where = subprocess.run(
            [python, "-c", "import squeak; print(squeak.__file__)"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        self.assertTrue(where.startswith(site), where)
        # The installed distribution's version is the one squeak prints.
        metadata = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('squeak'))"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(metadata.stdout, f"{__version__}\n")
        helped = squeak("--help")
        self.assertEqual((helped.returncode, helped.stderr), (0, ""))
        for expected in (
            "squeak run --config /etc/squeak/squeak.toml",
            "twistd -n --pidfile= squeak --config",
            "run ",
            "check-config",
            "purge ",
            "mgr ",
            "reload ",
            "passwd ",
        ):
            self.assertIn(expected, helped.stdout)
        self.assertEqual(squeak("--version").stdout, f"squeak {__version__}\n")
        twistd = subprocess.run(
            [python, "-c", "from twisted.scripts.twistd import run; run()", "squeak", "--version"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(twistd.stdout, f"squeak {__version__} (Twisted {twisted_version})\n")

        config = os.path.join(scratch, "squeak.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                '[proxy]\nhttp_port = ["127.0.0.1:0"]\n'
                f'[cache]\ndir = "{os.path.join(scratch, "cache")}"\n'
            )
        running = subprocess.Popen(
            [os.path.join(bin_dir, "squeak"), "run", "--config", config],
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert running.stdout is not None
            output, port = "", 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not port:
                line = running.stdout.readline()
                if not line:
                    break
                output += line
                if "squeak listening on 127.0.0.1:" in line:
                    port = int(line.rsplit(":", 1)[1])
            self.assertTrue(port, output)
            proxy = f"127.0.0.1:{port}"
            purged = squeak("purge", "http://o.test/nothing", "--proxy", proxy)
            self.assertEqual(
                (purged.returncode, purged.stdout, purged.stderr),
                (
                    1,
                    f"Not cached in the running proxy at {proxy} (memory and disk): "
                    "http://o.test/nothing\n",
                    "",
                ),
            )
            page = squeak("mgr", "info", "--proxy", proxy)
            # The pages are served by the proxy (another part of issue 16):
            # either the page, or one line with the status it answered.
            if page.returncode == 0:
                self.assertTrue(page.stdout)
            else:
                self.assertEqual(page.returncode, 1, page.stderr)
                self.assertRegex(
                    page.stderr, rf"^squeak: http://{proxy}/squid-internal-mgr/info: \d{{3}} .*\n$"
                )
        finally:
            running.terminate()
            running.wait(15)
        stopped = squeak("mgr", "info", "--proxy", proxy)
        self.assertEqual(
            (stopped.returncode, stopped.stdout, stopped.stderr),
            (
                2,
                "",
                f"squeak: no proxy is running at {proxy} (connection refused; the address is "
                "from --proxy)\n",
            ),
        )
