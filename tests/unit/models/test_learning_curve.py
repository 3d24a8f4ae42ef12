"""Learning curves: sizes, the negative-transfer warning, the table and card section, the linear head."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.card import render_card
from fairgate.models.datasets import LabelledData
from fairgate.models.encoder import EncoderSource
from fairgate.models.feature_extraction import fit_linear_head
from fairgate.models.finetune import FinetuneConfig
from fairgate.models.learning_curve import (
    CurveOptions,
    _Runs,
    _summarise,
    learning_curve_section,
    markdown_table,
    negative_transfer,
    parse_sizes,
    write_learning_curve,
)


def test_parse_sizes() -> None:
    assert parse_sizes("50, 100,all") == (50, 100, None)
    with pytest.raises(ValueError):
        parse_sizes("1")
    with pytest.raises(ValueError):
        parse_sizes(",")


def _data(n: int) -> LabelledData:
    return LabelledData(texts=[f"t{i}" for i in range(n)], targets=np.arange(n) % 2,
                        labels=("negative", "positive"), source="constructed")


def _result(finetune_f1: float, tfidf_f1: float) -> dict:
    """A constructed two-size result: fine-tuning's and the baseline's macro-F1 at the full size."""
    runs = _Runs()
    for seed_offset in (0.0, 0.01):
        runs.scores.setdefault(("finetune", 10), []).append({"accuracy": 0.6, "macro_f1": 0.6 + seed_offset})
        runs.scores.setdefault(("tfidf", 10), []).append({"accuracy": 0.5, "macro_f1": 0.5 + seed_offset})
        runs.scores.setdefault(("finetune", 40), []).append(
            {"accuracy": finetune_f1, "macro_f1": finetune_f1 + seed_offset})
        runs.scores.setdefault(("tfidf", 40), []).append({"accuracy": tfidf_f1, "macro_f1": tfidf_f1 + seed_offset})
    runs.epochs = {10: 3, 40: 2}
    return _summarise(
        runs, pool=_data(40), test=_data(20), encoder=EncoderSource(kind="directory", source="x", location="/x"),
        sizes=[10, 40], seeds=[0, 1], options=CurveOptions(methods=("finetune", "tfidf")),
        finetune_config=FinetuneConfig(),
    )


def test_negative_transfer_warning_fires_on_a_constructed_case(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fairgate.models.learning_curve"):
        result = _result(finetune_f1=0.70, tfidf_f1=0.80)
    assert result["warning"] and "NEGATIVE TRANSFER" in result["warning"] and "40 examples" in result["warning"]
    assert any("NEGATIVE TRANSFER" in r.getMessage() for r in caplog.records)
    card = render_card(name="c", metadata=result and {"learning_curve": result}, sections=[learning_curve_section])
    assert "**Warning:** NEGATIVE TRANSFER" in card and "learning_curve.png" in card
    # A tie is not a win either.
    assert negative_transfer(_result(finetune_f1=0.8, tfidf_f1=0.8)) is not None


def test_no_warning_when_finetuning_wins() -> None:
    result = _result(finetune_f1=0.90, tfidf_f1=0.80)
    assert result["warning"] is None
    lines = markdown_table(result)
    assert not any("Warning" in line for line in lines)
    table_rows = [line for line in lines if line.startswith("| 40 (all)")]
    assert table_rows and "0.905 ± 0.007" in table_rows[0]
    point = next(p for p in result["points"] if p["method"] == "finetune" and p["size"] == 10)
    assert point["epochs"] == 3 and point["seeds"] == 2


def test_write_learning_curve_files(tmp_path: Path) -> None:
    paths = write_learning_curve(_result(0.9, 0.8), tmp_path / "out")
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| examples |" in paths["table"].read_text()
    assert '"points"' in paths["json"].read_text()


@pytest.mark.parametrize("n_labels", [2, 3])
def test_linear_head_reproduces_the_regression(n_labels: int) -> None:
    """The folded weights give the standardised regression's probabilities on raw features."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) * np.array([1.0, 10.0, 0.1, 3.0, 1.0]) + 4.0
    y = np.arange(90) % n_labels
    x[:, 0] += y  # learnable
    head = fit_linear_head(x, y, n_labels=n_labels, cs=[1.0], standardize=True)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    reference = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit((x - mean) / scale, y)
    logits = head.logits(x)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, reference.predict_proba((x - mean) / scale), atol=1e-4)
