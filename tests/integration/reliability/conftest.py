"""Fixtures for the reliability tests: tiny models, a three-way policy, server factory.

The tiny guard (random weights) scores a handful of candidate texts here, in the test;
the policy's flag and block thresholds are put between the lowest, a middle and the
highest score, so the server must allow one text, flag one and block one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from tests.integration.reliability._server import GUARD_LABELS, Server, Texts

CANDIDATES = (
    "the food was great and the staff were very kind",
    "i hate this stupid idiot i will kill you",
    "you are an awful rude person",
    "great product fast delivery would buy again",
    "terrible service never again",
    "the movie was good",
    "stupid idiot",
    "i love it",
)


@pytest.fixture(scope="session")
def tiny_tags() -> tuple[str, str]:
    """Tiny classifier and guard in this session's private store (reused when present)."""
    import bentoml
    import bentoml.exceptions

    from tests.helpers.tiny_models import save_tiny_model_to_store

    def existing(name: str) -> str | None:
        try:
            models = [m for m in bentoml.models.list(name) if m.info.metadata.get("role") == "test"]
        except bentoml.exceptions.NotFound:
            return None
        return str(max(models, key=lambda m: m.creation_time).tag) if models else None

    classifier = existing("fairgate-classifier") or save_tiny_model_to_store("fairgate-classifier", seed=3)
    guard = existing("fairgate-toxicity") or save_tiny_model_to_store(
        "fairgate-toxicity", task="multi_label_classification", labels=GUARD_LABELS, seed=4
    )
    return classifier, guard


@pytest.fixture(scope="session")
def texts(tiny_tags: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Texts:
    import bentoml

    from fairgate.guardrails.onnx_model import OnnxTextModel

    guard = OnnxTextModel.from_directory(bentoml.models.get(tiny_tags[1]).path, variant="fp32")
    scores = sorted((float(guard.predict_proba([t])[0][0]), t) for t in CANDIDATES)
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


def base_env(tags: tuple[str, str], texts: Texts, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "FAIRGATE_CLASSIFIER_TAG": tags[0],
        "FAIRGATE_GUARD_TAG": tags[1],
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
    tiny_tags: tuple[str, str], texts: Texts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """Factory: ``start_server(name, **env)`` -> a started (not yet ready) server; all stopped at module end."""
    started: list[Server] = []

    def start(name: str, env: Mapping[str, str] | None = None, **extra: str) -> Server:
        tmp = tmp_path_factory.mktemp(name)
        server = Server(env={**base_env(tiny_tags, texts, tmp, **extra), **(env or {})}, log_path=tmp / "server.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
