"""checkpoint: route end to end, offline: converted, parity-checked, stored, scored."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.guard import CATEGORIES
from fairgate.models.guard._build import GuardBuildConfig, build_guard
from tests.unit.guard.tiny_detoxify import UNBIASED_CLASSES, reference_logits

TEXTS = ["you are an idiot", "what a nice day", "i will hurt you", "muslim people are good"]


@pytest.fixture(scope="module")
def built(unbiased_checkpoint: Path, hf_config_dir: Path, identity_csv: Path):
    config = GuardBuildConfig(
        source=f"checkpoint:{unbiased_checkpoint}",
        hf_config=hf_config_dir,
        name="guard-ckpt-test",
        identity_data=identity_csv,
        fairness_gate=False,  # random weights: the route is under test, not the model
    )
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*args, **kwargs):
            raise AssertionError("network access attempted")

        patch.setattr(socket, "create_connection", refuse)
        return build_guard(config, progress=False)


def test_stored_guard_scores_like_the_checkpoint(built, unbiased_checkpoint, hf_config_dir):
    from fairgate.guardrails.scorers import OnnxToxicityScorer
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(built.tag)
    assert stored.tag.startswith("guard-ckpt-test:")
    manifest = json.loads((stored.path / "fairgate.json").read_text())
    assert manifest["task"] == "multi_label_classification"
    assert manifest["labels"] == list(CATEGORIES)

    full = reference_logits(unbiased_checkpoint, hf_config_dir, TEXTS)
    order = [UNBIASED_CLASSES.index(c) for c in CATEGORIES]
    expected = 1.0 / (1.0 + np.exp(-full[:, order]))
    fp32 = OnnxToxicityScorer.from_directory(stored.path, variant="fp32").score(TEXTS)
    np.testing.assert_allclose(fp32, expected, atol=1e-4)
    scorer = OnnxToxicityScorer.from_directory(stored.path)  # int8, as served
    assert list(scorer.categories) == list(CATEGORIES)
    int8 = scorer.score(TEXTS)
    assert int8.shape == (4, 6)
    assert np.max(np.abs(int8 - expected)) < 0.1


def test_metadata_records_source_parity_evaluation_and_identity_fpr(built, identity_csv):
    from fairgate.models.store import get_stored_model

    meta = get_stored_model(built.tag).metadata
    assert meta["source"].startswith("checkpoint:") and meta["source_kind"] == "checkpoint"
    assert meta["detoxify"]["num_classes"] == 16
    assert "sexual_explicit" in meta["detoxify"]["dropped_outputs"]
    assert meta["parity"]["fp32_max_abs_diff"] <= 1e-3
    assert meta["parity"]["int8_label_agreement"] >= 0.99
    assert set(meta["evaluation"]["per_category"]) <= set(CATEGORIES)
    auc = meta["evaluation"]["per_category"]["toxicity"]["roc_auc"]
    assert auc == "NaN" or 0.0 <= auc <= 1.0
    assert meta["metrics"]["roc_auc"] == auc  # where `fairgate models` reads it
    fpr = meta["identity_fpr"]
    assert set(fpr["per_group"]) == {"muslim", "christian", "jewish", "women"}
    assert fpr["per_group"]["muslim"]["count"] == 2  # the toxic row is excluded
    assert fpr["sentences"] == 7
    rates = [g["fpr"] for g in fpr["per_group"].values()]
    assert math.isclose(fpr["spread"], max(rates) - min(rates))


def test_model_card_reports_the_measured_figures(built):
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(built.tag)
    card = (stored.path / "MODEL_CARD.md").read_text()
    meta = stored.metadata
    assert "## False-positive rate per identity group" in card
    assert f"| muslim | 2 | {meta['identity_fpr']['per_group']['muslim']['false_positives']} |" in card
    assert "## ROC AUC per category" in card
    assert "only the six guard categories are kept" in card
