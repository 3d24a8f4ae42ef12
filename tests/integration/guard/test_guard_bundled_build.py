"""The bundled route on the real MiniLM and the real bundled data, kept short.

Slow: loads and exports the real encoder. Training is capped (64 rows, one epoch), so
this checks the route, not the model's quality (the full build is `fairgate build guard`).
"""

from __future__ import annotations

import pytest

from fairgate.models.guard import CATEGORIES
from fairgate.models.guard._build import GuardBuildConfig, build_guard

GROUPS = {
    "female", "male", "nonbinary", "christian", "muslim", "jewish", "hindu", "buddhist",
    "atheist", "black", "white", "asian", "hispanic", "arab", "indigenous", "gay", "lesbian",
    "bisexual", "straight", "transgender", "disabled", "young", "old",
}


@pytest.mark.slow
def test_bundled_guard_builds_offline_and_loads_in_the_scorer():
    from fairgate.guardrails.scorers import OnnxToxicityScorer
    from fairgate.models.store import get_stored_model

    result = build_guard(
        GuardBuildConfig(
            name="guard-bundled-test", max_train_rows=64, epochs=1, parity_texts=64,
            # Barely trained: logits sit near 0, where int8 rounding flips the most labels.
            int8_min_agreement=0.95,
            # 64 rows cannot make a fair guard; the gate's own tests are in tests/unit/guard.
            fairness_gate=False,
        ),
        progress=False,
    )
    stored = get_stored_model(result.tag)
    meta = stored.metadata
    assert meta["source"] == "bundled" and meta["data"]["layout"] == "jigsaw"
    assert meta["untrained_categories"] == []
    assert meta["data"]["sizes"]["train"] == 64
    assert list(meta["evaluation"]["per_category"]) == list(CATEGORIES)
    assert meta["evaluation"]["n"] == meta["data"]["sizes"]["test"]
    assert set(meta["identity_fpr"]["per_group"]) == GROUPS
    # The fair-guard additions ride along: normalisation in the manifest, augmentation,
    # the identity report on the template-held-out set and calibrated thresholds.
    assert meta["normalization"]["name"] == "social"
    assert stored.path.joinpath("fairgate.json").read_text().count('"social"') == 1
    augmentation = meta["training"]["augmentation"]
    assert augmentation["original_rows"] == 64 and augmentation["counterfactual_copies"] > 0
    assert set(meta["identity_report"]["per_group"]) == GROUPS
    assert meta["fairness_gate"]["status"] == "skipped (--no-fairness-gate)"
    # The guard keeps u8 int8 weights on AVX2 (its fairness figures were measured on them).
    quantization = meta["export"]["quantization"]
    assert (quantization["weights_dtype"], quantization["reduce_range"]) == ("QUInt8", False)
    assert meta["export"]["skip_layer_norm_fused"] is False
    recommended = meta["recommended_thresholds"]
    assert recommended["n"] > 1000 and 0.0 < recommended["block"]["applied"] <= 1.0
    categories = recommended["categories"]
    # The specific harms block, never below their floors; every category's flag is at most its block.
    assert {name for name, t in categories.items() if "block" in t} == {"severe_toxicity", "threat", "identity_attack"}
    assert categories["severe_toxicity"]["block"] >= 0.6 and categories["threat"]["block"] >= 0.8
    assert all(t["flag"] <= t.get("block", 1.0) for t in categories.values())
    scores = OnnxToxicityScorer.from_directory(stored.path).score(["have a nice day"])
    assert scores.shape == (1, 6) and ((scores >= 0) & (scores <= 1)).all()
