"""Fixtures for the service's integration tests: tiny models in the store, a policy that
splits known texts, and a real ``bentoml serve`` on a free port.

The tiny models predict nonsense (random weights), so the policy is derived from them:
the guard scores candidate texts here, in the test, and the block threshold is put
between the most and the least toxic one. The server must then block exactly the one
and allow the other, which checks the whole path against an independent computation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from tests.integration.service._harness import GUARD_LABELS, ServiceProcess, SplitPolicy, TinyStore

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
def tiny_store() -> TinyStore:
    """Tiny classifier and guard in this test session's private BentoML store."""
    import bentoml

    from tests.helpers.tiny_models import save_tiny_model_to_store

    classifier_tag = save_tiny_model_to_store("fairgate-classifier", seed=3)
    guard_tag = save_tiny_model_to_store(
        "fairgate-toxicity", task="multi_label_classification", labels=GUARD_LABELS, seed=4
    )
    return TinyStore(
        classifier_tag=classifier_tag,
        guard_tag=guard_tag,
        guard_path=Path(bentoml.models.get(guard_tag).path),
    )


@pytest.fixture(scope="session")
def test_policy(tiny_store: TinyStore, tmp_path_factory: pytest.TempPathFactory) -> SplitPolicy:
    """A policy whose toxicity block threshold splits two candidate texts of the tiny guard."""
    from fairgate.guardrails.onnx_model import OnnxTextModel

    # fp32 on both sides: int8 dynamic quantisation scales activations per batch, so an
    # item's score moves with its batch-mates (by ~5e-5 on these tiny models, as much as
    # their whole spread); fp32 scores do not depend on the batch.
    guard = OnnxTextModel.from_directory(tiny_store.guard_path, variant="fp32")
    scores = {text: float(guard.predict_proba([text])[0][0]) for text in CANDIDATES}
    toxic = max(scores, key=scores.__getitem__)
    benign = min(scores, key=scores.__getitem__)
    gap = scores[toxic] - scores[benign]
    assert gap > 1e-5, f"tiny guard scores too close to split: {scores}"
    threshold = round((scores[toxic] + scores[benign]) / 2, 6)
    policy = {
        "version": "itest-1",
        "groups": {"source": "request", "allowed": ["female", "male"]},
        "toxicity": {"categories": {"toxicity": {"block": threshold}}, "stages": ["input"]},
        "rates": {
            "monitors": [{"name": "blocked", "source": "guard", "outcome": "block", "harm": "high_rate"}],
            "window": {"size": 40},
            "min_samples": 5,
            "checks_per_window": 20,
            "confidence": 0.9,
            "action": "flag",
            "scope": "affected_group",
        },
    }
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return SplitPolicy(path=path, toxic_text=toxic, benign_text=benign, threshold=threshold, version="itest-1")


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory: start a server with extra environment; every server is stopped at module end."""
    started: list[ServiceProcess] = []

    def start(env: Mapping[str, str], *, name: str) -> ServiceProcess:
        log = tmp_path_factory.mktemp("serve") / f"{name}.log"
        server = ServiceProcess(env=env, log_path=log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


