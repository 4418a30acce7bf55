"""
Start-up failures are one line and exit status 2, like configuration
errors: a port in use, a port below 1024 without the right to it, a cache
directory or an access log that cannot be made or written, an unknown
user; and the listening sockets that squeak binds itself
(L{squeak.net.listeners}) and the account switch (L{squeak.startup}).
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from twisted.trial import unittest

from squeak.config import ConfigError, ListenAddress, parse_config
from squeak.net.listeners import (
    BoundListeners,
    ListenerKey,
    _problem,
    bind_all,
    bind_socket,
    describe,
    listener_keys,
)
from squeak.startup import (
    check_paths,
    drop_privileges,
    prepare_paths,
    resolve_account,
)
from tests.twistdprocess import TWISTD

HERE = ListenerKey("proxy.http_port", ListenAddress("127.0.0.1", 0))


def _start_with(config: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n squeak --config CONFIG}, expecting it to exit (bounded).

    @param prefix: A command to run it through (C{setpriv ...}).
    """
    return subprocess.run(
        [*(prefix or []), TWISTD, "-n", "--pidfile=", "squeak", "--config", str(config)],
        cwd=str(config.parent),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


class StartupFailureTests(unittest.SynchronousTestCase):
    """
    A real twistd that cannot start says why in one line and exits 2.
    """

    def _directory(self) -> Path:
        directory = Path(os.path.abspath(self.mktemp()))
        directory.mkdir(parents=True)
        return directory

    def _assert_one_line(self, result: subprocess.CompletedProcess[str], text: str) -> str:
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(text, lines[0])
        self.assertTrue(lines[0].startswith("squeak: "), lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        return lines[0]

    def test_port_in_use(self) -> None:
        """
        A port another socket listens on is named, with its key.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            directory = self._directory()
            path = directory / "squeak.toml"
            path.write_text(
                f'[proxy]\nhttp_port = ["127.0.0.1:{port}"]\n[cache]\ndir = "cache"\n'
                '[access_log]\npath = ""\n'
            )
            result = _start_with(path)
        line = self._assert_one_line(
            result,
            f"{path}: proxy.http_port: cannot listen on 127.0.0.1:{port}: "
            "the address is already in use",
        )
        self.assertEqual(
            line,
            f"squeak: {path}: proxy.http_port: cannot listen on "
            f"127.0.0.1:{port}: the address is already in use",
        )

    def test_port_in_use_with_workers(self) -> None:
        """
        With workers, the master binds first: the same one line, and no
        worker is started.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            directory = self._directory()
            path = directory / "squeak.toml"
            path.write_text(
                f'[proxy]\nhttp_port = ["127.0.0.1:0", "127.0.0.1:{port}"]\nworkers = 2\n'
                '[cache]\ndir = "cache"\n[access_log]\npath = ""\n'
            )
            result = _start_with(path)
        self._assert_one_line(result, f"proxy.http_port: cannot listen on 127.0.0.1:{port}")
        self.assertNotIn("started worker", result.stdout)

    def test_privileged_port_without_permission(self) -> None:
        """
        A port below 1024 without the right to it (root without
        CAP_NET_BIND_SERVICE, through setpriv): the line says what is
        needed.
        """
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            raise unittest.SkipTest("needs root and setpriv to drop CAP_NET_BIND_SERVICE")
        directory = self._directory()
        path = directory / "squeak.toml"
        path.write_text(
            '[proxy]\nhttp_port = ["127.0.0.1:81"]\n[cache]\ndir = "cache"\n'
            '[access_log]\npath = ""\n'
        )
        prefix = [setpriv, "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service"]
        result = _start_with(path, prefix=prefix)
        self._assert_one_line(
            result,
            f"{path}: proxy.http_port: cannot listen on 127.0.0.1:81: permission denied "
            "(a port below 1024 needs root or CAP_NET_BIND_SERVICE)",
        )

    def test_cache_directory_cannot_be_created(self) -> None:
        """
        A cache directory under a file: the line names cache.dir.
        """
        directory = self._directory()
        (directory / "file").write_text("not a directory\n")
        path = directory / "squeak.toml"
        path.write_text(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\n[cache]\ndir = "file/cache"\n'
            '[access_log]\npath = ""\n'
        )
        self._assert_one_line(
            _start_with(path), f"{path}: cache.dir: cannot create {directory}/file/cache: "
        )

    def test_access_log_cannot_be_created(self) -> None:
        """
        An access log under a file: the line names access_log.path.
        """
        directory = self._directory()
        (directory / "file").write_text("not a directory\n")
        path = directory / "squeak.toml"
        path.write_text(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\n[cache]\ndir = "cache"\n'
            '[access_log]\npath = "file/access.log"\n'
        )
        self._assert_one_line(
            _start_with(path),
            f"{path}: access_log.path: cannot create {directory}/file/access.log: ",
        )

    def test_unknown_user(self) -> None:
        """
        proxy.user naming no account: one line.
        """
        directory = self._directory()
        path = directory / "squeak.toml"
        path.write_text(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\nuser = "no-such-user-here"\n'
            '[cache]\ndir = "cache"\n[access_log]\npath = ""\n'
        )
        self._assert_one_line(
            _start_with(path), f"{path}: proxy.user: no such user: no-such-user-here"
        )


class ListenerTests(unittest.SynchronousTestCase):
    """
    Binding listeners, keeping them across reloads.
    """

    def test_problems(self) -> None:
        """
        Each bind failure is told in the operator's terms.
        """
        address = ListenAddress("127.0.0.1", 80)
        cases = [
            (errno.EADDRINUSE, "cannot listen on 127.0.0.1:80: the address is already in use"),
            (
                errno.EACCES,
                "cannot listen on 127.0.0.1:80: permission denied (a port below 1024 needs "
                "root or CAP_NET_BIND_SERVICE)",
            ),
            (
                errno.EADDRNOTAVAIL,
                "cannot listen on 127.0.0.1:80: no interface of this host has that address",
            ),
        ]
        wrong = [
            (number, got, want)
            for number, want in cases
            if (got := _problem(OSError(number, os.strerror(number)), address)) != want
        ]
        self.assertEqual(wrong, [])

    def test_bound_socket_listens(self) -> None:
        """
        A bound socket is listening, non-blocking, and not inherited by
        programs this process runs unless passed on purpose.
        """
        sock = bind_socket(HERE, "x.toml")
        self.addCleanup(sock.close)
        client = socket.create_connection(sock.getsockname()[:2], timeout=5)
        client.close()
        self.assertFalse(sock.getblocking())
        self.assertFalse(sock.get_inheritable())
        self.assertRegex(describe(sock), r"^127\.0\.0\.1:\d+$")

    def test_in_use_is_a_config_error(self) -> None:
        """
        A port in use raises a L{ConfigError} naming the file and key.
        """
        first = bind_socket(HERE, "x.toml")
        self.addCleanup(first.close)
        port = first.getsockname()[1]
        taken = ListenerKey("tls.https_port", ListenAddress("127.0.0.1", port))
        with self.assertRaises(ConfigError) as caught:
            bind_socket(taken, "x.toml")
        self.assertEqual(
            str(caught.exception),
            f"x.toml: tls.https_port: cannot listen on 127.0.0.1:{port}: "
            "the address is already in use",
        )

    def test_update_keeps_sockets_and_drops_removed(self) -> None:
        """
        A reload keeps the very sockets of listeners it keeps, binds what it
        adds, and hands back what it drops; a failed reload can restore
        them.
        """
        config = parse_config('[proxy]\nhttp_port = ["127.0.0.1:0"]\n', "x.toml")
        bound = bind_all(config)
        self.addCleanup(bound.close)
        [(key, [sock])] = bound.sockets.items()
        other = ListenerKey("intercept.http_port", ListenAddress("127.0.0.1", 0))
        dropped = bound.update([key, other], "x.toml", 1)
        self.assertEqual(dropped, {})
        self.assertIs(bound.sockets[key][0], sock)
        self.assertIn(other, bound.sockets)
        dropped = bound.update([other], "x.toml", 1)
        self.assertEqual(dropped, {key: [sock]})
        bound.restore(dropped)
        self.assertEqual(set(bound.sockets), {key, other})

    def test_failed_update_changes_nothing(self) -> None:
        """
        If a new listener cannot be bound, nothing changes and what was bound
        for the attempt is closed.
        """
        blocker = bind_socket(HERE, "x.toml")
        self.addCleanup(blocker.close)
        bound = BoundListeners()
        self.addCleanup(bound.close)
        bound.update([HERE], "x.toml", 1)
        before = dict(bound.sockets)
        taken = ListenerKey(
            "proxy.http_port", ListenAddress("127.0.0.1", blocker.getsockname()[1])
        )
        with self.assertRaises(ConfigError):
            bound.update([HERE, taken], "x.toml", 1)
        self.assertEqual(bound.sockets, before)

    def test_reuseport_copies_share_a_port(self) -> None:
        """
        With C{reuseport}, each worker slot gets its own socket, all on the
        port the first got (also for a configured port 0).
        """
        config = parse_config(
            '[proxy]\nhttp_port = ["127.0.0.1:0"]\nworkers = 3\nreuseport = true\n', "x.toml"
        )
        bound = bind_all(config, copies=3)
        self.addCleanup(bound.close)
        [socks] = bound.sockets.values()
        self.assertEqual(len(socks), 3)
        self.assertEqual(len({sock.getsockname() for sock in socks}), 1)
        self.assertEqual(len({bound.for_slot(slot)[HERE].fileno() for slot in range(3)}), 3)

    def test_shared_socket_for_every_slot(self) -> None:
        """
        Without C{reuseport}, every worker slot shares one socket.
        """
        config = parse_config('[proxy]\nhttp_port = ["127.0.0.1:0"]\nworkers = 3\n', "x.toml")
        bound = bind_all(config, copies=3)
        self.addCleanup(bound.close)
        self.assertEqual(len({bound.for_slot(slot)[HERE].fileno() for slot in range(3)}), 1)

    def test_listener_keys_round_trip(self) -> None:
        """
        Listener keys of every kind survive the worker's command line.
        """
        config = parse_config(
            '[proxy]\nhttp_port = ["127.0.0.1:3128", "[::1]:3128"]\n'
            '[intercept]\nhttp_port = ["127.0.0.1:3129"]\n',
            "x.toml",
        )
        keys = listener_keys(config)
        self.assertEqual(len(keys), 3)
        self.assertEqual([ListenerKey.parse(str(key)) for key in keys], keys)


class AccountTests(unittest.SynchronousTestCase):
    """
    proxy.user and proxy.group, and the paths prepared for them.
    """

    def test_no_user(self) -> None:
        """
        Without proxy.user there is no switch; a group alone is refused.
        """
        self.assertIsNone(resolve_account(parse_config("", "x.toml")))
        with self.assertRaises(ConfigError) as caught:
            resolve_account(parse_config('[proxy]\ngroup = "root"\n', "x.toml"))
        self.assertEqual(str(caught.exception), "x.toml: proxy.group: needs proxy.user as well")

    def test_user_and_group(self) -> None:
        """
        A user's own group is the default; a named group replaces it.
        """
        root = pwd.getpwuid(0)
        account = resolve_account(parse_config(f'[proxy]\nuser = "{root.pw_name}"\n', "x.toml"))
        assert account is not None
        self.assertEqual((account.uid, account.gid), (0, root.pw_gid))
        with self.assertRaises(ConfigError) as caught:
            resolve_account(parse_config('[proxy]\nuser = "root"\ngroup = "nogroupx"\n', "x.toml"))
        self.assertEqual(str(caught.exception), "x.toml: proxy.group: no such group: nogroupx")

    def test_switch_needs_root(self) -> None:
        """
        As a user other than root, naming another user is an error, and
        naming oneself is nothing to do.
        """
        me = pwd.getpwuid(os.geteuid())
        config = parse_config(f'[proxy]\nuser = "{me.pw_name}"\n', "x.toml")
        if os.geteuid() == 0:
            # Root switching to root: nothing to refuse.
            drop_privileges(config, resolve_account(config))
            return
        drop_privileges(config, resolve_account(config))
        other = parse_config('[proxy]\nuser = "root"\n', "x.toml")
        with self.assertRaises(ConfigError):
            drop_privileges(other, resolve_account(other))

    def test_paths_made_and_checked(self) -> None:
        """
        The cache directory and the access log (and their parents) are
        created, then found writable.
        """
        directory = os.path.abspath(self.mktemp())
        config = parse_config(
            f'[cache]\ndir = "{directory}/a/cache"\n[access_log]\npath = "{directory}/b/x.log"\n',
            "x.toml",
        )
        prepare_paths(config, None)
        check_paths(config)
        self.assertTrue(os.path.isdir(f"{directory}/a/cache"))
        self.assertTrue(os.path.isfile(f"{directory}/b/x.log"))

    def test_paths_handed_to_the_account(self) -> None:
        """
        As root, the prepared paths belong to proxy.user.
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root")
        nobody = pwd.getpwnam("nobody")
        directory = os.path.abspath(self.mktemp())
        config = parse_config(
            f'[proxy]\nuser = "nobody"\n[cache]\ndir = "{directory}/cache"\n'
            f'[access_log]\npath = "{directory}/x.log"\n',
            "x.toml",
        )
        prepare_paths(config, resolve_account(config))
        for path in (f"{directory}/cache", f"{directory}/x.log"):
            self.assertEqual(os.stat(path).st_uid, nobody.pw_uid, path)

    def test_switch_for_good(self) -> None:
        """
        As root, the switch leaves no way back: user, group and
        supplementary groups are the account's (checked in a child
        process).
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root")
        config = parse_config('[proxy]\nuser = "nobody"\n', "x.toml")
        account = resolve_account(config)
        assert account is not None
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: switch, report, never return
            try:
                drop_privileges(config, account)
                try:
                    os.setuid(0)
                    regained = b"1"
                except PermissionError:
                    regained = b"0"
                ids = f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getgroups()} ".encode()
                os.write(writer, ids + regained)
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            report = pipe.read().decode()
        os.waitpid(pid, 0)
        self.assertEqual(
            report,
            f"{account.uid} {account.uid} {account.gid} [{account.gid}] 0",
        )
