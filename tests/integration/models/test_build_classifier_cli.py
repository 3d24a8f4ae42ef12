"""``fairgate build classifier`` / ``evaluate`` / ``models`` end to end on a tiny encoder."""

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


def _write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "group"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def biased_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Group 'female' only says good things, group 'male' only bad: a maximally biased set."""
    rng = random.Random(0)
    rows = [(t, "positive", "female") for t in GOOD] * 6 + [(t, "negative", "male") for t in BAD] * 6
    rng.shuffle(rows)
    return _write(tmp_path_factory.mktemp("data") / "biased.csv", rows)


def _build(args: list[str], encoder: Path, data: Path) -> list[str]:
    return ["build", "classifier", "--base", str(encoder), "--data", str(data),
            "--group-column", "group", "--epochs", "6", "--batch-size", "8", "--warmup-ratio", "0",
            "--learning-rate", "3e-3", "--layer-decay", "1.0", "--max-length", "16",
            "--patience", "0", "--no-progress", "--int8-min-agreement", "0.9", *args]


def test_build_stores_model_and_evaluate_reports(
    tiny_encoder_dir: Path, biased_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(_build(["--name", "cli-test-clf", "--output-dir", str(tmp_path / "copy")],
                       tiny_encoder_dir, biased_data))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "stored cli-test-clf:" in out and "parity on" in out
    card = (tmp_path / "copy" / "MODEL_CARD.md").read_text()
    assert "# Model card: cli-test-clf" in card and "| female |" in card
    from fairgate.models.store import get_stored_model

    quantization = get_stored_model("cli-test-clf").metadata["export"]["quantization"]
    assert quantization["mode"] in {"static", "dynamic"}  # auto: static when it passes parity
    assert quantization["chosen_because"].startswith("auto: ")
    # A classifier build asks for every MatMul in int8 first (CLASSIFIER_KEEP_FP32): that graph
    # was stored, or it is the first attempt on record.
    first = quantization if quantization["chosen_because"] == "auto: static passed parity" else quantization[
        "static_attempt"
    ]
    assert first["fp32_nodes"] == []
    # The domain-shift monitor's parts: the embedding output and the reference statistics.
    stored = get_stored_model("cli-test-clf").metadata
    assert stored["export"]["embedding_output"]["name"] == "embedding"
    assert stored["domain"]["format"] == "fairgate-domain/1" and stored["domain"]["n_train"] > 0
    manifest = json.loads((tmp_path / "copy" / "fairgate.json").read_text())
    assert manifest["embedding_output"] == "embedding" and manifest["domain"]["file"] == "domain.npz"
    assert (tmp_path / "copy" / "domain.npz").is_file()

    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    entry = next(m for m in listed if m["tag"].startswith("cli-test-clf:"))
    assert entry["labels"] == ["negative", "positive"]
    assert entry["data_fingerprint"].startswith("sha256:")
    assert 0.0 <= entry["accuracy"] <= 1.0

    scores = tmp_path / "scores.csv"
    code = main(["evaluate", "--model", "cli-test-clf", "--data", str(biased_data),
                 "--group-column", "group", "--json", "--scores-out", str(scores)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"accuracy", "macro_f1", "roc_auc", "per_group"} <= set(report)
    assert report["n"] == 96
    assert set(report["per_group"]["groups"]) == {"female", "male"}
    assert report["per_group"]["groups"]["female"]["count"] == 48
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 96 and set(rows[0]) >= {"label", "predicted", "score_negative", "score_positive"}

    code = main(_build(["--name", "cli-test-clf", "--if-missing"], tiny_encoder_dir, biased_data))
    assert code == 0 and "nothing to do" in capsys.readouterr().out


def test_gate_fails_build_names_group_and_stores_nothing(
    tiny_encoder_dir: Path, biased_data: Path, capsys: pytest.CaptureFixture
) -> None:
    from fairgate.models.store import model_exists

    code = main(_build(["--name", "cli-gated", "--max-parity-difference", "0.2"],
                       tiny_encoder_dir, biased_data))
    captured = capsys.readouterr()
    err = captured.err
    assert code == 3, captured.out
    assert "deploy gate failed" in err and "--max-parity-difference 0.2" in err
    assert "'female'" in err and "'male'" in err
    assert "not stored" in err
    assert not model_exists("cli-gated")


def test_evaluate_unknown_model_and_bad_column(
    tiny_encoder_dir: Path, biased_data: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["evaluate", "--model", "nope-not-stored", "--data", str(biased_data)]) == 1
    assert "not in the BentoML store" in capsys.readouterr().err
    from tests.helpers.tiny_models import save_tiny_model_to_store

    save_tiny_model_to_store("cli-eval-tiny", task="single_label_classification")
    assert main(["evaluate", "--model", "cli-eval-tiny", "--data", str(biased_data),
                 "--label-column", "stars"]) == 1
    err = capsys.readouterr().err
    assert "['stars']" in err and "['text', 'label', 'group']" in err
