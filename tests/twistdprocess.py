"""
Run the installed squeak as a real C{twistd -n squeak} subprocess, the way
its users start it, for end-to-end tests.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(r"squeak listening on (\S+):(\d+)")


class TwistdProxy:
    """
    A C{twistd -n --pidfile= squeak} child process started in a scratch
    directory (so the installed package is imported, not the checkout).

    @ivar port: The port the proxy reported in its "listening on" line.
    @ivar output: Everything it printed so far (stdout and stderr).
    """

    def __init__(
        self,
        config_text: str | None,
        *,
        env: dict[str, str] | None = None,
        twistd_options: tuple[str, ...] = (),
        nofile: tuple[int, int] | None = None,
    ) -> None:
        """
        @param nofile: The soft and hard C{RLIMIT_NOFILE} to start twistd
            with (set by a small exec wrapper, not C{preexec_fn}, which is
            unsafe with the test's threads).
        """
        self.directory = tempfile.mkdtemp(prefix="squeak-e2e-")
        self.config_path: str | None = None
        if config_text is not None:
            self.config_path = os.path.join(self.directory, "squeak.toml")
            Path(self.config_path).write_text(config_text, encoding="utf-8")
        self._env = {**os.environ, **(env or {})}
        self._twistd_options = list(twistd_options)
        self._nofile = nofile
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def args(self) -> list[str]:
        args = [TWISTD, "-n", "--pidfile=", *self._twistd_options, "squeak"]
        if self.config_path is not None:
            args += ["--config", self.config_path]
        if self._nofile is not None:
            soft, hard = self._nofile
            limit = (
                "import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
                "os.execv(sys.argv[1], sys.argv[1:])"
            )
            args = [sys.executable, "-c", limit, *args]
        return args

    def start(self, timeout: float = 20.0) -> TwistdProxy:
        """
        Start and wait (bounded) for the "listening on" line.
        """
        self.process = subprocess.Popen(
            self.args(),
            cwd=self.directory,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.output)
            if match:
                self.port = int(match.group(2))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"twistd did not start listening:\n{self.output}")

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    def rss_kib(self) -> int:
        """
        The process's resident set size in KiB, from /proc.
        """
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self, timeout: float = 15.0) -> int:
        """
        SIGTERM, then wait (bounded); SIGKILL if it does not stop.
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        code = self.process.returncode
        shutil.rmtree(self.directory, ignore_errors=True)
        return code
