"""One card renderer: sections from the stored metadata; NaN stays visible, never a 0."""

from __future__ import annotations

from fairgate.models.card import CLASSIFIER_CARD, render_card, render_model_card
from fairgate.models.guard._card import GUARD_CARD
from fairgate.models.store import json_safe

_PARITY = {"n": 4, "fp32_max_abs_diff": 1e-5, "fp32_tolerance": 1e-3, "int8_label_agreement": 1.0,
           "int8_min_agreement": 0.99}


def test_classifier_card_keeps_nan_visible_and_leaves_the_history_in_the_store():
    metadata = json_safe({
        "task": "single_label_classification", "labels": ["negative", "positive"], "base": "tiny",
        "data": {"source": "d.csv", "fingerprint": "sha256:1"},
        "training": {"steps": 4, "history": [{"step": 1, "loss": 0.5}]},
        "metrics": {"accuracy": 0.5, "roc_auc": float("nan")},
        "parity": _PARITY, "export": {"optimization_level": 2, "quantization_target": "avx2"},
    })
    card = render_card(name="c", metadata=metadata, sections=CLASSIFIER_CARD)
    assert "| accuracy | 0.5000 |" in card
    assert "| roc_auc | NaN (insufficient samples) |" in card
    assert '"steps": 4' in card and "history" not in card
    assert "int8 label agreement 1.0000 (minimum 0.9900)" in card


def test_render_model_card_is_the_same_card_from_figures_in_hand():
    figures = {"task": "single_label_classification", "labels": ["a", "b"], "base": "tiny",
               "data": {"source": "none"}, "training": {}, "metrics": {}, "parity": _PARITY, "export": {}}
    assert render_model_card(name="t", **figures) == render_card(name="t", metadata=figures, sections=CLASSIFIER_CARD)
    assert "Not trained (random weights)." in render_model_card(name="t", **figures)


def test_guard_card_states_the_recommended_thresholds_and_their_guarantee():
    recommended = {
        "method": "order-statistic bound on the max score over the acting categories",
        "guarantee": "P(false-block rate > 0.01) <= 0.05", "data": "benign.txt", "n": 1500,
        "block": {"applied": 0.62, "calibration_blocked": 0.004},
        "flag": {"applied": 0.31, "calibration_flagged": 0.03},
        "categories": {"toxicity": {"flag": 0.5}, "threat": {"flag": 0.5, "block": 0.8}, "insult": {"flag": 0.6}},
    }
    card = render_card(name="g", metadata={"recommended_thresholds": recommended}, sections=GUARD_CARD)
    assert "## Recommended thresholds" in card
    # The thresholds that apply (floors included), then the calibrated ones.
    assert "toxicity flag 0.5; threat flag 0.5, block 0.8; insult flag 0.6" in card
    assert "Calibrated: flag 0.31 over every category, block 0.62 over `threat`" in card
    assert "P(false-block rate > 0.01) <= 0.05" in card
    uncalibrated = render_card(name="g", metadata={"recommended_thresholds": {"status": "not calibrated: n < 299"}},
                               sections=GUARD_CARD)
    assert "None recorded: not calibrated: n < 299." in uncalibrated
