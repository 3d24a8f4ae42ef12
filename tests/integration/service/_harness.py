"""The service tests' own pieces: the policy that splits two known texts, and the server
environment they run under.

The server itself is ``loadtests._server.BentoServer``, the one harness for tests and the
benchmark. The names this module used to define stay importable for code written against
it (tests/integration/fleet, measure scripts): ``ServiceProcess`` is that harness started
on construction, with the old ``wait_until``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtests._server import REPO_ROOT as REPO
from loadtests._server import BentoServer, free_port
from tests.helpers.tiny_models import GUARD_LABELS, TinyStore

__all__ = ["GUARD_LABELS", "REPO", "ServiceProcess", "SplitPolicy", "TinyStore", "free_port", "service_env"]


@dataclass(frozen=True)
class SplitPolicy:
    """A policy whose toxicity block threshold lies between two texts' scores by the tiny guard."""

    path: Path
    toxic_text: str
    benign_text: str
    threshold: float
    version: str


def service_env(tiny_store: TinyStore, policy: SplitPolicy, **extra: str) -> dict[str, str]:
    """The tiny models, the split policy, small limits, fp32 and one ONNX thread; ``extra`` on top."""
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


class ServiceProcess(BentoServer):
    """Compatibility: a ``BentoServer`` that starts on construction. New code: ``start_service``."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(env=env, log_path=log_path)
        self.start()

    def wait_until(self, predicate_status: int, timeout_s: float = 90.0) -> None:
        self.wait_ready(timeout_s, status=predicate_status)
