"""Server harness for the service's integration tests (imported by conftest and tests)."""

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
class TinyStore:
    classifier_tag: str
    guard_tag: str
    guard_path: Path


@dataclass(frozen=True)
class SplitPolicy:
    path: Path
    toxic_text: str
    benign_text: str
    threshold: float
    version: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """``bentoml serve fairgate.service.service:Fairgate`` in its own process group."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.readyz_codes: list[int] = []
        # Each server gets its own BENTOML_HOME sharing the session's model store: BentoML
        # keeps its Prometheus multiprocess files under BENTOML_HOME and clears them when a
        # server starts, so two servers on one home would mix and wipe each other's metrics.
        home = log_path.parent / "bentoml-home"
        home.mkdir(exist_ok=True)
        store = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "models"
        (home / "models").symlink_to(store, target_is_directory=True)
        full_env = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            "BENTOML_HOME": str(home),
            **env,
        }
        bentoml_cli = Path(sys.executable).with_name("bentoml")
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(bentoml_cli), "serve", "fairgate.service.service:Fairgate", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_until(self, predicate_status: int, timeout_s: float = 90.0) -> None:
        """Poll /readyz (recording every status) until it answers ``predicate_status``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                code = httpx.get(self.url + "/readyz", timeout=2.0).status_code
            except httpx.HTTPError:
                code = 0
            self.readyz_codes.append(code)
            if code == predicate_status:
                return
            time.sleep(0.05)
        raise TimeoutError(f"/readyz never answered {predicate_status}; saw {set(self.readyz_codes)}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the server; then kill any of its workers left behind.

        BentoML's arbiter starts each worker in a process group of its own, so killing the
        server's group does not reach them; they are collected first and checked after.
        """
        import psutil

        try:
            workers = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        for worker in alive:
            worker.kill()


def service_env(tiny_store: TinyStore, policy: SplitPolicy, **extra: str) -> dict[str, str]:
    return {
        "FAIRGATE_CLASSIFIER_TAG": tiny_store.classifier_tag,
        "FAIRGATE_GUARD_TAG": tiny_store.guard_tag,
        "FAIRGATE_POLICY": str(policy.path),
        "FAIRGATE_MAX_ITEMS": "8",
        "FAIRGATE_MAX_TEXT_CHARS": "500",
        "FAIRGATE_INTRA_OP_THREADS": "1",
        "FAIRGATE_ONNX_VARIANT": "fp32",
        **extra,
    }
