"""Fixtures for the fleet tests: one redis-server, two ``bentoml serve`` servers with two
workers each pointed at it, tiny models, and a policy whose block threshold splits two
known texts (so every request's outcome is known in advance)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.tiny_models import TinyStore
from tests.integration.reliability._server import Server
from tests.setup.redis_server import RedisServer, require_redis

CHECK_EVERY = 50  # outcomes of the fleet between two checks (window 4000 / 80 checks)


@dataclass(frozen=True)
class FleetPolicy:
    path: Path
    data: dict
    toxic: str
    benign: str


@dataclass
class Fleet:
    redis: RedisServer
    servers: list[Server]
    policy: FleetPolicy


@pytest.fixture(scope="session")
def tiny_tags(tiny_store: TinyStore) -> tuple[str, str]:
    """The session's tiny classifier and guard (tests/integration/conftest.py)."""
    return tiny_store.classifier_tag, tiny_store.guard_tag


@pytest.fixture(scope="session")
def fleet_policy(guard_scores: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> FleetPolicy:
    scores = guard_scores
    toxic, benign = max(scores, key=scores.__getitem__), min(scores, key=scores.__getitem__)
    assert scores[toxic] - scores[benign] > 1e-5, f"tiny guard scores too close to split: {scores}"
    data = {
        "version": "fleet-itest-1",
        "groups": {"source": "request", "allowed": ["female", "male"]},
        "toxicity": {
            "categories": {"toxicity": {"block": round((scores[toxic] + scores[benign]) / 2, 7)}},
            "stages": ["input"],
        },
        "rates": {
            "monitors": [{"name": "blocked", "source": "guard", "outcome": "block", "harm": "high_rate"}],
            "window": {"size": 4000},  # larger than the test's traffic: windows hold everything sent
            "min_samples": 50,
            "checks_per_window": 4000 // CHECK_EVERY,
            "confidence": 0.95,
            "action": "flag",
            "scope": "affected_group",
            "on_error": "flag",
        },
    }
    path = tmp_path_factory.mktemp("fleet-policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return FleetPolicy(path=path, data=data, toxic=toxic, benign=benign)


@pytest.fixture(scope="module")
def fleet(
    tiny_tags: tuple[str, str], fleet_policy: FleetPolicy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """Redis and two servers of two workers each, started together; all stopped at module end."""
    with RedisServer(bin_dir=require_redis()) as redis_server:
        servers: list[Server] = []
        try:
            for name in ("east", "west"):
                env = {
                    "FAIRGATE_CLASSIFIER_TAG": tiny_tags[0],
                    "FAIRGATE_GUARD_TAG": tiny_tags[1],
                    "FAIRGATE_POLICY": str(fleet_policy.path),
                    "FAIRGATE_WORKERS": "2",
                    "FAIRGATE_REDIS_URL": redis_server.url,
                    "FAIRGATE_REDIS_BACKOFF_MAX_S": "0.5",
                    "FAIRGATE_ONNX_VARIANT": "fp32",
                    "FAIRGATE_INTRA_OP_THREADS": "1",
                    "FAIRGATE_MAX_ITEMS": "8",
                    "FAIRGATE_MAX_TEXT_CHARS": "500",
                    "FAIRGATE_AUDIT_DB": "off",
                }
                log = tmp_path_factory.mktemp(f"fleet-{name}") / "serve.log"
                servers.append(Server(env=env, log_path=log))
            for server in servers:
                server.wait_ready(timeout_s=180)
            yield Fleet(redis=redis_server, servers=servers, policy=fleet_policy)
        finally:
            for server in servers:
                server.stop()
