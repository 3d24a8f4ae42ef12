"""Fixtures for the service's integration tests: a policy that splits known texts.

The tiny models (``tiny_store``), their scores (``guard_scores``) and the server factory
(``start_service``) are shared with the other areas in tests/integration/conftest.py.
The tiny models predict nonsense (random weights), so the policy is derived from them:
the block threshold is put between the most and the least toxic candidate. The server
must then block exactly the one and allow the other, which checks the whole path
against an independent computation.
"""

from __future__ import annotations

import pytest
import yaml

from tests.integration.service._harness import SplitPolicy


@pytest.fixture(scope="session")
def test_policy(guard_scores: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> SplitPolicy:
    """A policy whose toxicity block threshold splits two candidate texts of the tiny guard."""
    toxic = max(guard_scores, key=guard_scores.__getitem__)
    benign = min(guard_scores, key=guard_scores.__getitem__)
    gap = guard_scores[toxic] - guard_scores[benign]
    assert gap > 1e-5, f"tiny guard scores too close to split: {guard_scores}"
    threshold = round((guard_scores[toxic] + guard_scores[benign]) / 2, 6)
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
        # Every item probed, so a few requests move the counterfactual metrics and status.
        "counterfactual": {"sample": 1.0},
    }
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return SplitPolicy(path=path, toxic_text=toxic, benign_text=benign, threshold=threshold, version="itest-1")
