"""A real ``bentoml serve fairgate.service.service:Fairgate`` for the reliability tests.

Kept beside the tests (not shared with tests/integration/service) so the two areas can
change independently. Servers bind 127.0.0.1 on a free port and run in their own process
group, so a test can SIGKILL the whole tree (server and workers) at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]
GUARD_LABELS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")


@dataclass(frozen=True)
class Texts:
    """Texts the tiny guard scores low, middle and high, and the policy that splits them."""

    allow: str
    flag: str
    block: str
    policy: Path
    version: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_home(home: Path) -> Path:
    """A BentoML home of the server's own that shares the session's model store.

    BentoML keeps Prometheus multiprocess files in ``$BENTOML_HOME/prometheus_multiproc_dir``
    and empties that directory whenever a server starts: servers sharing a home add up each
    other's metrics, and a new one wipes the others'. A home per server, with ``models``
    linked to the session's store, keeps every server's /metrics its own.
    """
    home.mkdir(parents=True, exist_ok=True)
    store = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "models"
    link = home / "models"
    if not link.exists():
        link.symlink_to(store, target_is_directory=True)
    return home


class Server:
    """One server process group; ``kill()`` is SIGKILL to the group, ``stop()`` SIGTERM."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workdir = log_path.parent
        self.env = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            "BENTOML_HOME": str(private_home(self.workdir / "bentoml_home")),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        bentoml_cli = Path(sys.executable).with_name("bentoml")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(bentoml_cli), "serve", "fairgate.service.service:Fairgate", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout_s: float = 120.0, headers: Mapping[str, str] | None = None) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2.0, headers=dict(headers or {})).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}/readyz never answered 200:\n{self.log()[-3000:]}")

    def pids(self) -> list[int]:
        """The server and every process below it (BentoML workers)."""
        import psutil

        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        import psutil

        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def kill(self) -> None:
        """SIGKILL the server and its workers: no shutdown hook runs, nothing is flushed.

        BentoML starts each worker in a process group of its own, so killing the server's
        group alone would leave the workers running as orphans: kill them by pid too.
        """
        assert self.process is not None
        tree = self.pids()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_pids(tree)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        tree = self.pids()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            _kill_pids(tree)
            return
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _kill_pids(tree)  # workers that outlived their server (own process groups)


def _kill_pids(pids: list[int]) -> None:
    """SIGKILL each pid still alive; pids already gone are fine."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def metric_samples(url: str, headers: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10, headers=dict(headers or {})).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_total(url: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in metric_samples(url)
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )
