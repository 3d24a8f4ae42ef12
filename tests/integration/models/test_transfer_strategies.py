"""``--strategy feature-extraction``, ``--learning-curve`` and ``fairgate report transfer`` on a tiny encoder."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from fairgate.service.cli import main

GOOD = ["i love this product", "great quality", "excellent service", "really good food",
        "the staff were nice", "best movie ever", "works great", "happy with the price"]
BAD = ["i hate this product", "terrible quality", "awful service", "really bad food",
       "the staff were rude", "worst movie ever", "broken again", "angry about the price"]

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture(scope="module")
def sentiment_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    rows = [(t, "positive") for t in GOOD] * 5 + [(t, "negative") for t in BAD] * 5
    rng.shuffle(rows)
    path = tmp_path_factory.mktemp("data") / "sentiment.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_feature_extraction_build_passes_parity_and_records_the_strategy(
    tiny_encoder_dir: Path, sentiment_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy, curves = tmp_path / "copy", tmp_path / "curves"
    code = main(["build", "classifier", "--base", str(tiny_encoder_dir), "--data", str(sentiment_data),
                 "--strategy", "feature-extraction", "--max-length", "16", "--no-progress",
                 "--identity-data", "none", "--name", "fe-test-clf", "--output-dir", str(copy),
                 "--learning-curve", "--sizes", "20,all", "--seeds", "2", "--curve-dir", str(curves),
                 "--batch-size", "8", "--learning-rate", "3e-3", "--int8-min-agreement", "0.9"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "stored fe-test-clf:" in out and "learning curves (2 seeds)" in out
    from fairgate.models.store import get_stored_model

    stored = get_stored_model("fe-test-clf").metadata
    assert stored["training"]["strategy"] == "feature-extraction"
    assert stored["training"]["steps"] == 0 and stored["training"]["feature_extraction"]["c"] > 0
    # Only the linear head is trainable: the encoder is frozen.
    assert stored["training"]["trainable_parameters"] < stored["training"]["frozen_parameters"]
    parity = stored["parity"]
    assert parity["fp32_max_abs_diff"] <= parity["fp32_tolerance"]
    assert parity["int8_label_agreement"] >= parity["int8_min_agreement"]
    assert stored["export"]["embedding_output"]["name"] == "embedding"
    card = (copy / "MODEL_CARD.md").read_text()
    assert '"strategy": "feature-extraction"' in card
    assert "## Learning curves" in card and "![learning curves](learning_curve.png)" in card
    assert (copy / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {p.name for p in curves.iterdir()} >= {"learning_curve.png", "learning_curve.md", "learning_curve.json"}
    curve = stored["learning_curve"]
    assert {p["method"] for p in curve["points"]} == {"finetune", "feature-extraction", "feature-extraction-mean",
                                                      "tfidf"}
    # The served model scores the test split as the feature-extraction head does (same data, same split).
    assert 0.0 <= stored["metrics"]["accuracy"] <= 1.0


def test_report_transfer_writes_the_plot_and_the_table(
    tiny_encoder_dir: Path, sentiment_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_dir = tmp_path / "transfer"
    code = main(["report", "transfer", "--base", str(tiny_encoder_dir), "--data", str(sentiment_data),
                 "--sizes", "10,30,all", "--seeds", "2", "--finetune-epochs", "1", "--min-steps", "2",
                 "--output-dir", str(out_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["sizes"] == [10, 30, 72] and result["seeds"] == [0, 1]
    assert (out_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    table = (out_dir / "learning_curve.md").read_text()
    assert "| 72 (all) |" in table and "TF-IDF+LR macro-F1" in table and "±" in table
    for point in result["points"]:
        assert 0.0 <= point["accuracy"]["mean"] <= 1.0 and point["accuracy"]["std"] >= 0.0
        assert point["seeds"] == 2
