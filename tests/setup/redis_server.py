"""redis-server for the tests: install on demand, run on 127.0.0.1, stop after.

``ensure_redis()`` runs ``tests/setup/redis.sh`` (installs Debian's ``redis-server``
package when missing) and ``require_redis()`` skips the calling test with the script's
reason when it cannot be installed. :class:`RedisServer` starts a private redis-server on
127.0.0.1 and a free port, without persistence, in a temporary directory, and kills it on
exit; ``stop()``/``start()`` restart it on the same port (an outage), ``pause()``/``resume()``
freeze it (a hung Redis: connections accepted, nothing answered).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from loadtests._server import free_port
from tests.setup._install import run_setup_script

SETUP_SCRIPT = Path(__file__).resolve().parent / "redis.sh"


class RedisUnavailable(RuntimeError):
    """redis-server is missing and could not be installed here."""


def ensure_redis() -> Path:
    """The directory holding ``redis-server``, installing it if needed."""
    found = shutil.which("redis-server")
    if found:
        return Path(found).parent
    return run_setup_script(SETUP_SCRIPT, error=RedisUnavailable)


def require_redis() -> Path:
    """Like :func:`ensure_redis`, but skips the calling pytest test when unavailable."""
    import pytest

    try:
        return ensure_redis()
    except RedisUnavailable as error:
        pytest.skip(f"redis-server cannot be installed here: {error}")


class RedisServer:
    """A private redis-server on 127.0.0.1; use as a context manager."""

    def __init__(self, *, bin_dir: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="fairgate-redis-"))
        self._log = open(self._dir / "redis.log", "ab")
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        """Start (or restart, on the same port) with an empty dataset."""
        assert self._dir is not None, "use RedisServer as a context manager"
        self._process = subprocess.Popen(
            [
                str(self.bin_dir / "redis-server"),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._dir),
                "--protected-mode", "yes",
                "--loglevel", "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout_s=20)

    def _wait_ready(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server not ready after {timeout_s}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); ``start()`` brings it back empty."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        if self._dir is None or not (self._dir / "redis.log").exists():
            return ""
        text = (self._dir / "redis.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.resume()  # a paused server ignores SIGTERM until continued
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
