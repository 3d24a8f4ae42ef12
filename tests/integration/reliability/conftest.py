"""Fixtures for the reliability tests: a three-way policy and a server factory over it.

The tiny models (``tiny_store``), their scores (``guard_scores``) and the generic server
factory (``start_service``) are shared in tests/integration/conftest.py. The policy's
flag and block thresholds are put between the lowest, a middle and the highest score of
the tiny guard (random weights), so the server must allow one text, flag one and block one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml

from loadtests._server import BentoServer
from tests.helpers.tiny_models import TinyStore
from tests.integration.reliability._server import Texts


@pytest.fixture(scope="session")
def texts(guard_scores: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> Texts:
    scores = sorted((score, text) for text, score in guard_scores.items())
    (low, allow), (mid, flag), (high, block) = scores[0], scores[len(scores) // 2], scores[-1]
    assert low < mid < high and high - low > 1e-5, f"tiny guard scores too close: {scores}"
    policy = {
        "version": "reliability-1",
        "groups": {"source": "request", "allowed": ["female", "male", "nonbinary"]},
        "toxicity": {
            "categories": {"toxicity": {"flag": round((low + mid) / 2, 7), "block": round((mid + high) / 2, 7)}},
            "stages": ["input"],
            "on_error": "flag",
        },
        "rates": {
            "monitors": [{"name": "blocked", "source": "guard", "outcome": "block", "harm": "high_rate"}],
            "window": {"size": 200},
            "min_samples": 20,
        },
    }
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return Texts(allow=allow, flag=flag, block=block, policy=path, version="reliability-1")


def base_env(store: TinyStore, texts: Texts, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "FAIRGATE_CLASSIFIER_TAG": store.classifier_tag,
        "FAIRGATE_GUARD_TAG": store.guard_tag,
        "FAIRGATE_POLICY": str(texts.policy),
        "FAIRGATE_MAX_ITEMS": "64",
        "FAIRGATE_MAX_TEXT_CHARS": "500",
        "FAIRGATE_INTRA_OP_THREADS": "1",
        "FAIRGATE_ONNX_VARIANT": "fp32",
        "FAIRGATE_AUDIT_DB": str(tmp / "audit.sqlite3"),
        **extra,
    }


@pytest.fixture(scope="module")
def start_server(
    start_service: Callable[..., BentoServer], tiny_store: TinyStore, texts: Texts, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., BentoServer]:
    """Factory: ``start_server(name, **env)`` -> a started (not yet ready) server with its audit
    store in ``server.workdir``; all stopped at module end."""

    def start(name: str, env: Mapping[str, str] | None = None, **extra: str) -> BentoServer:
        workdir = tmp_path_factory.mktemp(name)
        return start_service({**base_env(tiny_store, texts, workdir, **extra), **(env or {})}, name=name, workdir=workdir)

    return start
