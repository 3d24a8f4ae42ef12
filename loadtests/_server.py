"""Start a BentoML service on a free loopback port, wait until ready, always stop it.

The benchmark starts servers itself so one command measures everything; each server
runs in its own session (process group) so stopping it stops BentoML's workers too,
and nothing outlives the benchmark.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The service did not become ready in time, or exited while starting."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


class BentoServer:
    """``bentoml serve TARGET`` on ``127.0.0.1:<free port>`` for the life of a ``with`` block."""

    def __init__(
        self,
        *,
        target: str,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
        ready_path: str = "/readyz",
        start_timeout_s: float = 180.0,
        workers: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.target = target
        self.host = host
        self.port = free_port(host)
        self._env = dict(env)
        self._log_path = log_path
        self._cwd = cwd
        self._ready_path = ready_path
        self._start_timeout_s = start_timeout_s
        self._workers = workers
        self._process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        bentoml = Path(sys.executable).with_name("bentoml")
        cmd = [str(bentoml), "serve", self.target, "--host", self.host, "--port", str(self.port)]
        if self._workers is not None:
            cmd += ["--api-workers", str(self._workers)]
        return cmd

    def __enter__(self) -> Self:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self._log_path.open("wb")
        started = time.perf_counter()
        self._process = subprocess.Popen(
            self.command(),
            cwd=self._cwd,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def _wait_ready(self, started: float) -> None:
        assert self._process is not None
        deadline = started + self._start_timeout_s
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"{self.target} exited with code {self._process.returncode} while starting; "
                    f"see its log {self._log_path}"
                )
            if _http_ok(self.url + self._ready_path):
                return
            time.sleep(0.5)
        raise ServerStartError(
            f"{self.target} not ready at {self.url}{self._ready_path} after {self._start_timeout_s:.0f}s; "
            f"see its log {self._log_path}"
        )

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds used so far by the server and all its workers.

        On a machine shared with other work, CPU per request is a steadier figure than
        requests per second: it does not change when a neighbour takes a core.
        """
        import psutil

        if self._process is None:
            return None
        try:
            root = psutil.Process(self._process.pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``grace_s``.

        BentoML starts each worker of a multi-worker service in a session of its own, so
        the descendants are listed first and any still alive after the grace period are
        killed by pid: nothing the benchmark started outlives it.
        """
        import psutil

        process = self._process
        if process is None:
            return
        self._process = None
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0fs; killing its process group", self.target, grace_s)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a clean parent exit
        except ProcessLookupError:
            pass
        process.wait(timeout=grace_s)
        _, alive = psutil.wait_procs(descendants, timeout=grace_s)
        for child in alive:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
