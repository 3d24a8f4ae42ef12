"""The reliability tests' own pieces: the three-way texts and policy, and /metrics readers.

The server itself is ``loadtests._server.BentoServer``, the one harness for tests and the
benchmark (workers killed by pid, a BentoML home per server). The names this module used
to define stay importable for code written against it (tests/integration/fleet):
``Server`` is that harness started on construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests._server import REPO_ROOT as REPO
from loadtests._server import BentoServer, free_port, private_home
from tests.helpers.tiny_models import GUARD_LABELS

__all__ = ["GUARD_LABELS", "REPO", "Server", "Texts", "free_port", "metric_samples", "metric_total", "private_home"]


@dataclass(frozen=True)
class Texts:
    """Texts the tiny guard scores low, middle and high, and the policy that splits them."""

    allow: str
    flag: str
    block: str
    policy: Path
    version: str


class Server(BentoServer):
    """Compatibility: a ``BentoServer`` that starts on construction. New code: ``start_server``."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__(env=env, log_path=log_path, port=port)
        self.start()


def metric_samples(url: str, headers: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, str], float]]:
    """Every sample on the server's /metrics page: (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10, headers=dict(headers or {})).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_total(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (e.g. over every worker)."""
    return sum(
        value
        for sample, sample_labels, value in metric_samples(url)
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )
