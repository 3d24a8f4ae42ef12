"""A Redis for the benchmark's ``--redis`` phase: an existing URL, or a private redis-server.

``--redis auto`` starts ``redis-server`` from PATH on 127.0.0.1 and a free port, without
persistence, for the life of a ``with`` block (in its own session, so it never outlives
the benchmark). ``--redis redis://HOST:PORT/DB`` uses that server as it is.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from loadtests._server import free_port

logger = logging.getLogger(__name__)


class RedisStartError(RuntimeError):
    """redis-server is missing or did not start; the message names the fix."""


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_for_bench(spec: str, *, log_dir: Path) -> Iterator[str]:
    """The URL to hand the service: ``spec`` itself, or a private server's for ``auto``."""
    if spec != "auto":
        yield spec
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisStartError(
            "redis-server is not on PATH; install it (apt-get install redis-server, or bash tests/setup/redis.sh) "
            "or pass --redis redis://HOST:PORT/DB"
        )
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="fairgate-bench-redis-"))
    with (log_dir / "redis.log").open("ab") as log:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(data), "--loglevel", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RedisStartError(f"redis-server did not start on port {port}; see {log_dir / 'redis.log'}")
            time.sleep(0.05)
        logger.info("private redis-server on 127.0.0.1:%d", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(data, ignore_errors=True)
