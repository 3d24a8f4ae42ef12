"""The fairgate_ metrics, as the guardrails library exposes them, pass `promtool check metrics`.

A registry is filled through the real Guard (screen + review with flags, blocks and
several groups) and through the service-side helpers (inference time, model info), then
exposed in the text format exactly as /metrics serves it. The live /metrics of a running
service is checked the same way in tests/integration/deploy.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES

CATEGORIES = TOXICITY_CATEGORIES


class WordScorer:
    """Scores 0.95 in every category for texts containing 'idiot', 0.6 for 'bad', else 0.05."""

    categories: Sequence[str] = CATEGORIES

    def score(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            value = 0.95 if "idiot" in text else 0.6 if "bad" in text else 0.05
            rows.append([value] * len(CATEGORIES))
        return np.asarray(rows, dtype=np.float32)


def filled_registry() -> CollectorRegistry:
    from fairgate.guardrails import Guard, InMemoryWindowStore, Policy

    data = Policy.default().model_dump()
    data["rates"]["min_samples"] = 5
    data["counterfactual"]["sample"] = 1.0
    policy = Policy.from_mapping(data)
    registry = CollectorRegistry()
    now = [0.0]
    guard = Guard(
        policy=policy,
        scorer=WordScorer(),
        registry=registry,
        clock=lambda: now[0],
        store=InMemoryWindowStore(),
        rng=random.Random(0),
    )
    texts = ["a fine day", "bad service", "you idiot", "great food"] * 10
    groups = ["female", "male", "nonbinary", None, "martian"] * 8
    screens = guard.screen(texts, groups)
    labels = [None if s.action == "block" else ("negative" if i % 3 else "positive") for i, s in enumerate(screens)]
    guard.review(screens, labels)
    guard.check()
    # The counterfactual probe on texts naming groups (a sample of 1.0: every one).
    named = ["bad Muslims", "a fine day for women"]
    guard.probe(named, guard.screen(named), [None, None])
    guard.metrics.inference_duration.labels(model="classifier").observe(0.004)
    guard.metrics.set_model_info(role="classifier", tag="fairgate-classifier:abc", variant="int8")
    # The edge's metrics, in the same registry (the service gives them one per worker).
    from fairgate.service.edge.metrics import EdgeMetrics

    edge = EdgeMetrics(registry=registry)
    edge.shed("concurrency")
    edge.queue_items(3)
    edge.auth_failure("invalid")
    return registry


def promtool_lint(promtool: Path, exposition: bytes) -> list[str]:
    done = subprocess.run(
        [str(promtool), "check", "metrics"], input=exposition, capture_output=True, timeout=60, check=False
    )
    return [line for line in (done.stdout + done.stderr).decode().splitlines() if line.strip()]


def test_guardrails_metrics_pass_promtool_check_metrics(promtool: Path) -> None:
    exposition = generate_latest(filled_registry())
    text = exposition.decode()
    # The registry really holds what the dashboard and rules read.
    for name in (
        "fairgate_decisions_total",
        "fairgate_outcomes_total",
        "fairgate_toxicity_score_bucket",
        "fairgate_impact_ratio",
        "fairgate_alert_active",
        "fairgate_model_info",
        "fairgate_policy_info",
        "fairgate_batch_size_bucket",
        "fairgate_counterfactual_gap_bucket",
        "fairgate_counterfactual_flips_total",
        "fairgate_counterfactual_variants_total",
    ):
        assert f"\n{name}{{" in text, f"{name} missing from the exposition"
    problems = [line for line in promtool_lint(promtool, exposition) if "fairgate_" in line]
    assert problems == []


def test_promtool_lint_does_flag_a_bad_metric(promtool: Path) -> None:
    # The check above can fail: a counter without _total is reported.
    bad = b"# HELP fairgate_bad_count a counter.\n# TYPE fairgate_bad_count counter\nfairgate_bad_count 1\n"
    problems = promtool_lint(promtool, bad)
    assert any("fairgate_bad_count" in line and "_total" in line for line in problems), problems
