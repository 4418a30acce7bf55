"""
The twistd plugin is visible to a real C{twistd}, both from the editable
install C{make} does and from a plain (non-editable) wheel install.

An in-process C{getPlugins} check would pass from the repository root even
when C{twistd} cannot see the plugin (the checkout is on C{sys.path}), so
these tests run C{twistd} in a subprocess from a scratch directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from twisted.trial import unittest

from tests.twistdprocess import TWISTD

ROOT = Path(__file__).resolve().parent.parent


class PluginTests(unittest.SynchronousTestCase):
    """
    C{twistd --help} lists squeak however squeak was installed.
    """

    timeout = 240

    def test_twistd_lists_squeak_from_the_development_install(self) -> None:
        """
        The venv that C{make test} built (editable, compat mode) exposes the
        plugin to twistd run outside the checkout.
        """
        scratch = os.path.abspath(self.mktemp())
        os.makedirs(scratch)
        result = subprocess.run(
            [TWISTD, "--help"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"\n\s+squeak\s+A caching forward HTTP proxy")

    def test_twistd_lists_squeak_from_a_wheel_install(self) -> None:
        """
        A wheel of the project installed (non-editable) into a fresh venv
        ships twisted/plugins/squeak_plugin.py where twistd finds it, and
        the plugin imports squeak from that venv, not from the checkout.

        The fresh venv reaches the already-installed dependencies through a
        .pth line (no registry is contacted); that line does not process
        the development venv's own .pth files, so the editable squeak stays
        invisible.
        """
        scratch = Path(os.path.abspath(self.mktemp()))
        wheels = scratch / "wheels"
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(wheels),
                str(ROOT),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(built.returncode, 0, built.stderr)
        [wheel] = wheels.glob("squeak-*.whl")
        env_dir = scratch / "venv"
        venv.EnvBuilder(with_pip=False).create(env_dir)
        fresh_python = env_dir / "bin" / "python"
        site = subprocess.run(
            [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                "--target",
                site,
                str(wheel),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(installed.returncode, 0, installed.stderr)
        Path(site, "squeak-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        twistd = "from twisted.scripts.twistd import run; run()"
        result = subprocess.run(
            [str(fresh_python), "-c", twistd, "--help"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"\n\s+squeak\s+A caching forward HTTP proxy")
        where = subprocess.run(
            [str(fresh_python), "-c", "import squeak; print(squeak.__file__)"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        self.assertTrue(where.startswith(site), where)
        self.assertTrue(Path(site, "twisted", "plugins", "squeak_plugin.py").exists())
        self.assertFalse(Path(site, "twisted", "plugins", "__init__.py").exists())


class StartupLineTests(unittest.SynchronousTestCase):
    """
    The start-up line saying where the cache and the access log are.
    """

    def test_table(self) -> None:
        """
        Each configuration's line names the cache (or says it is off) and
        where the access log goes, in which format.
        """
        from squeak.config import parse_config
        from squeak.tap import where_things_are

        cases = [
            (
                '[cache]\ndir = "/srv/c"\nsize = "10 GiB"\nmemory_size = "512 KiB"\n'
                '[access_log]\npath = "/var/log/a.log"\nformat = "combined"\n',
                "squeak cache: /srv/c (disk up to 10 GiB, memory up to 512 KiB); "
                "access log: /var/log/a.log (combined format)",
            ),
            (
                '[cache]\nenabled = false\n[access_log]\npath = ""\n',
                "squeak cache: off; access log: off",
            ),
            (
                '[cache]\ndir = "/c"\nsize = 1000\n[access_log]\npath = "syslog"\n'
                'format = "%ts %ru"\n',
                "squeak cache: /c (disk up to 1000 bytes, memory up to 64 MiB); "
                "access log: syslog (local4.info, tag squeak; a custom format)",
            ),
        ]
        wrong = [
            (got, want)
            for text, want in cases
            if (got := where_things_are(parse_config(text, "/etc/squeak.toml"))) != want
        ]
        self.assertEqual(wrong, [])
