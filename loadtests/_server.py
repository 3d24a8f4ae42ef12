"""One harness for ``bentoml serve``: start on a free loopback port, wait until ready, stop
the whole process tree. Used by the benchmark and by the integration tests.

It lives in ``loadtests`` (not ``tests``) because the dependency may only point one way:
``python -m loadtests.bench`` must run without the test tree (and its conftest side
effects), while the tests already import ``loadtests``. Neither folder is installed.

Two things every caller needs and once got from only some copies of this code:

- **Workers die with their server.** BentoML's arbiter starts each worker in a process
  group of its own, so signalling the server's group misses them. Every process seen in
  the tree is remembered and killed by pid (through psutil, which refuses a pid that has
  since been reused) once the server is gone, also after SIGKILL or a crash.
- **A BentoML home per server.** BentoML keeps its Prometheus multiprocess files under
  ``$BENTOML_HOME`` and empties that directory whenever a server starts, so two servers
  on one home add up, then wipe, each other's metrics. Each server gets a home of its
  own with ``models`` linked to the caller's store.
"""

from __future__ import annotations

import json
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

import psutil  # a dependency of bentoml itself

REPO_ROOT = Path(__file__).resolve().parents[1]
FAIRGATE_TARGET = "fairgate.service.service:Fairgate"

# A worker still shutting down when its server has exited gets this long before SIGKILL.
_WORKER_GRACE_S = 3.0
# Loopback only: never send the harness's own requests through an HTTP proxy from the environment.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    """The server exited while starting, or did not answer the expected status in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def model_store(env: Mapping[str, str] | None = None) -> Path:
    """The model store a ``bentoml`` command would use with ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    return Path(env.get("BENTOML_HOME") or Path.home() / "bentoml") / "models"


def private_home(home: Path, store: Path | None = None) -> Path:
    """``home`` as a BentoML home of its own whose ``models`` is a link to ``store``.

    Idempotent, so a restarted server keeps its home (see the module docstring for why
    servers must not share one).
    """
    home.mkdir(parents=True, exist_ok=True)
    link = home / "models"
    if not link.is_symlink():
        link.symlink_to(store or model_store(), target_is_directory=True)
    return home


def _get_json(url: str, headers: Mapping[str, str], timeout_s: float = 2.0) -> tuple[int, object]:
    """(status, parsed body) of one GET; (0, None) when nothing answered or the body is not JSON."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with _LOOPBACK.open(request, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def _readyz_status(url: str, headers: Mapping[str, str], timeout_s: float = 2.0) -> int:
    """The HTTP status of one GET; 0 when nothing answered."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with _LOOPBACK.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


class BentoServer:
    """``bentoml serve TARGET`` on ``host:<free port>``, run in a session of its own.

    ``start()`` spawns it (again after ``kill()``: same port, home and log, appended);
    ``wait_ready()`` polls ``/readyz``; ``stop()`` is SIGTERM, ``kill()`` SIGKILL, and both
    leave no worker behind. As a context manager it starts, waits for 200 and always stops.
    ``env`` is laid over this process's environment; ``BENTOML_HOME`` in it (or in the
    environment) names the store to link, not the home the server runs in.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        log_path: Path,
        target: str = FAIRGATE_TARGET,
        cwd: Path = REPO_ROOT,
        host: str = "127.0.0.1",
        port: int | None = None,
        home: Path | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.target = target
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.workdir = log_path.parent
        base = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", **env}
        self.home = home or self.workdir / f"{log_path.stem}.bentoml_home"
        self.env = {**base, "BENTOML_HOME": str(self.home)}
        self._store = model_store(base)
        self._cwd = cwd
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.readyz_codes: list[int] = []  # every /readyz status seen while waiting, in order
        self.startup_s: float | None = None  # start() to ready, of the latest start
        self._started_at = 0.0
        self._workers: dict[int, psutil.Process] = {}  # every process seen below the server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        bentoml = Path(sys.executable).with_name("bentoml")
        return [str(bentoml), "serve", self.target, "--host", self.host, "--port", str(self.port)]

    def start(self) -> Self:
        """Spawn the server (not yet ready); its output is appended to ``log_path``."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.target} on {self.url} is already running")
        private_home(self.home, self._store)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command(),
                cwd=self._cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(
        self, timeout_s: float | None = None, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Self:
        """Poll ``/readyz`` until it answers ``status`` (503 to see a server refuse to get ready)."""
        process = self._running_process()
        deadline = time.monotonic() + (self.start_timeout_s if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(
                    f"{self.target} exited with {process.returncode} while starting:\n{self.log_tail()}"
                )
            code = _readyz_status(self.url + "/readyz", headers or {})
            self.readyz_codes.append(code)
            if code == status:
                if status == 200:
                    self._wait_every_worker(deadline, headers or {})
                self.startup_s = time.perf_counter() - self._started_at
                self._tree()
                return self
            time.sleep(0.1)
        raise ServerStartError(
            f"{self.url}/readyz never answered {status} (saw {sorted(set(self.readyz_codes))}):\n{self.log_tail()}"
        )

    def _wait_every_worker(self, deadline: float, headers: Mapping[str, str]) -> None:
        """Wait until every worker has said it is ready, not only the one /readyz reached.

        ``/readyz`` is answered by whichever worker accepts the connection, so with several
        workers one ready answer leaves the others loading (a request there gets 503 and
        Retry-After). ``/guardrails/status`` names the worker that answered and how many
        there are; new connections reach every worker in turn. A target without that
        route (404), or one that needs a key the caller did not pass (401, 403), is taken
        as ready on ``/readyz`` alone.
        """
        ready: set[int] = set()
        while time.monotonic() < deadline:
            code, body = _get_json(self.url + "/guardrails/status", headers)
            if code in (401, 403, 404):
                return
            if code == 200 and isinstance(body, dict) and isinstance(body.get("worker"), dict):
                worker = body["worker"]
                if body.get("ready"):
                    ready.add(int(worker["pid"]))
                if len(ready) >= int(worker.get("workers") or 1):
                    return
            time.sleep(0.05)
        raise ServerStartError(
            f"{self.url}: only workers {sorted(ready)} said ready on /guardrails/status in time:\n{self.log_tail()}"
        )

    def wait_exit(self, timeout_s: float) -> int:
        """The server's exit code once it has exited by itself (e.g. a startup failure)."""
        return self._running_process().wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The server and every process below it now (BentoML workers); empty once it has exited."""
        return [proc.pid for proc in self._tree()]

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        total = 0
        for proc in self._tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue  # gone between listing and reading
        return total

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds used so far by the server and all its workers.

        On a machine shared with other work, CPU per request is a steadier figure than
        requests per second: it does not change when a neighbour takes a core.
        """
        tree = self._tree()
        if not tree:
            return None
        total = 0.0
        for proc in tree:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def kill(self) -> None:
        """SIGKILL the server and its workers: no shutdown hook runs, nothing is flushed."""
        if self.process is None:
            return
        self._tree()
        _killpg(self.process.pid, signal.SIGKILL)
        self._kill_workers()
        self.process.wait(timeout=20)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the server's group, SIGKILL it after ``grace_s``; then kill any worker left.

        Idempotent, and safe on a server that never started or has exited by itself.
        """
        if self.process is None:
            return
        self._tree()
        if self.process.poll() is None:
            _killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        _killpg(self.process.pid, signal.SIGKILL)  # anything still in the server's own group
        self._kill_workers(grace_s=_WORKER_GRACE_S)

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.target} was never started: call start() first")
        return self.process

    def _tree(self) -> list[psutil.Process]:
        """The live tree, server first; its workers are remembered for stop() and kill().

        Empty once the server has been reaped: its pid may name another process by then.
        """
        if self.process is None or self.process.poll() is not None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            workers = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self._workers.update((proc.pid, proc) for proc in workers)
        return [root, *workers]

    def _kill_workers(self, grace_s: float = 0.0) -> None:
        """Kill every worker seen in the tree that still runs: workers outlive their server."""
        _kill_and_wait(list(self._workers.values()), grace_s=grace_s)
        self._workers.clear()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_and_wait(procs: list[psutil.Process], grace_s: float = 0.0, timeout_s: float = 10.0) -> None:
    """Give ``procs`` ``grace_s`` to exit by themselves, SIGKILL the rest, wait until none runs.

    psutil refuses to signal a pid that now names another process. A zombie counts as
    gone: a worker orphaned by its server is reaped by init, not by us.
    """
    _wait_gone(procs, grace_s)
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            continue
    _wait_gone(procs, timeout_s)


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_running(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
