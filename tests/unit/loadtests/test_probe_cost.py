"""loadtests.probe_cost runs end to end on tiny models: both throughputs and the figures."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests import probe_cost
from tests.unit.guardrails.conftest import TOXICITY_LABELS, build_model_dir


def test_report_has_both_throughputs_and_the_probe_figures(tmp_path: Path) -> None:
    guard = build_model_dir(tmp_path / "guard", labels=TOXICITY_LABELS, task="multi_label_classification")
    classifier = build_model_dir(
        tmp_path / "classifier", labels=["negative", "positive"], task="single_label_classification"
    )
    out = tmp_path / "report.json"
    args = ["--guard", str(guard), "--classifier", str(classifier), "--variant", "fp32"]
    assert probe_cost.main([*args, "--limit", "20", "--rounds", "1", "--figures", "--output", str(out)]) == 0

    report = json.loads(out.read_text())
    assert report["texts"]["identity"] == 20
    assert report["throughput"]["texts_per_s_probe_on"] > 0 and report["throughput"]["ratio_on_over_off"] > 0
    identity = report["figures"]["identity"]
    assert identity and all(kind["items"] > 0 and kind["skipped"] == 0 for kind in identity)
    guard_side = [m for kind in identity for m in kind["models"] if m["model"] == "guard"]
    assert all(m["mean_gap"] == 0.0 for m in guard_side)  # the tiny guard ignores every word
