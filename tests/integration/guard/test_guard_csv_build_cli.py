"""``fairgate build guard --source csv:...`` and ``fairgate evaluate`` on the stored guard."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.guard import CATEGORIES
from fairgate.service.cli import main
from tests.helpers.tiny_models import make_tiny_encoder_dir

TOXIC = ["you are an idiot", "stupid people", "i hate you", "i will kill you", "you are stupid and rude"]
CLEAN = ["what a nice day", "great film", "i love this movie", "the staff was kind", "good service"]


def _write_single(path: Path, rows: int = 60) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "toxic"])
        for i in range(rows):
            toxic = i % 2 == 0
            writer.writerow([rng.choice(TOXIC if toxic else CLEAN), int(toxic)])
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder_dir(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="module")
def csv_guard(tmp_path_factory, tiny_base: Path, identity_csv: Path) -> str:
    data = _write_single(tmp_path_factory.mktemp("csv") / "single.csv")
    code = main([
        "build", "guard", "--source", f"csv:{data}", "--base", str(tiny_base),
        "--name", "guard-csv-test", "--epochs", "10", "--batch-size", "8",
        "--learning-rate", "5e-3", "--identity-data", str(identity_csv), "--no-progress",
        "--no-fairness-gate",  # a 60-row toy guard; the gate is tested below and in tests/unit/guard
        "--train-embeddings",  # a random tiny encoder learns little with its embeddings frozen
    ])
    assert code == 0
    return "guard-csv-test"


def test_single_column_csv_trains_toxicity_and_disables_the_rest(csv_guard: str, capsys):
    from fairgate.guardrails.scorers import OnnxToxicityScorer
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(csv_guard)
    meta = stored.metadata
    assert meta["source_kind"] == "csv" and meta["data"]["layout"] == "single"
    assert meta["untrained_categories"] == list(CATEGORIES[1:])
    assert meta["training"]["categories_trained"] == ["toxicity"]
    assert list(meta["evaluation"]["per_category"]) == ["toxicity"]
    scores = OnnxToxicityScorer.from_directory(stored.path).score(TOXIC + CLEAN)
    assert np.all(scores[:, 1:] < 1e-4)  # disabled outputs answer "no", not 0.5
    # Trained on these very sentences: toxic ones must score higher on average.
    assert scores[: len(TOXIC), 0].mean() > scores[len(TOXIC) :, 0].mean()
    assert "Not trained for severe_toxicity" in (stored.path / "MODEL_CARD.md").read_text()


def test_if_missing_skips_an_existing_guard(csv_guard: str, capsys):
    assert main(["build", "guard", "--name", csv_guard, "--if-missing"]) == 0
    assert "already in the store; nothing to do" in capsys.readouterr().out


def test_evaluate_reports_toxicity_auc_and_category_columns(csv_guard: str, tmp_path: Path, capsys):
    data = tmp_path / "eval.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "threat"])
        for text in TOXIC:
            writer.writerow([text, "true", int("kill" in text)])
        for text in CLEAN:
            writer.writerow([text, "false", 0])
    scores_out = tmp_path / "scores.csv"
    code = main([
        "evaluate", "--model", csv_guard, "--data", str(data), "--label-column", "label",
        "--json", "--scores-out", str(scores_out),
    ])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["positives"] == 5
    assert 0.5 < report["roc_auc"] <= 1.0
    assert report["categories"]["threat"]["positives"] == 1
    header = scores_out.read_text().splitlines()[0]
    assert header == "row,label," + ",".join(f"score_{c}" for c in CATEGORIES)
    assert "idiot" not in scores_out.read_text()  # no raw text in the scores file


def test_evaluate_with_positive_label_values(csv_guard: str, tmp_path: Path, capsys):
    data = tmp_path / "davidson_like.csv"
    rows = [("i hate you", 0), ("you are stupid and rude", 1), ("great film", 2), ("good service", 2)]
    data.write_text("tweet,class\n" + "".join(f"{t},{c}\n" for t, c in rows))
    code = main([
        "evaluate", "--model", csv_guard, "--data", str(data), "--label-column", "class",
        "--positive-label", "0,1", "--json",
    ])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positives"] == 2 and report["n"] == 4
    assert main([
        "evaluate", "--model", csv_guard, "--data", str(data), "--label-column", "class",
    ]) == 1
    assert "column 'class' is not binary (found ['2']" in capsys.readouterr().err


def test_csv_errors_reach_the_user(tmp_path: Path, capsys):
    missing = tmp_path / "partial.csv"
    missing.write_text("text,toxicity,insult\na,1,0\n")
    assert main(["build", "guard", "--source", f"csv:{missing}", "--name", "never-built"]) == 1
    assert "missing category column(s) severe_toxicity, obscene, threat, identity_attack" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("text,toxic\na,1\nb,yes please\n")
    assert main(["build", "guard", "--source", f"csv:{bad}", "--name", "never-built"]) == 1
    assert "column 'toxic' must hold 0/1 (or true/false) labels; found 'yes please'" in capsys.readouterr().err


def test_detoxify_source_offline_fails_naming_alternatives(capsys):
    assert main(["build", "guard", "--source", "detoxify:original", "--name", "never-built"]) == 1
    err = capsys.readouterr().err
    assert "needs the internet" in err and "--source bundled" in err and "checkpoint:PATH" in err


def test_fairness_gate_refuses_a_guard_that_learned_a_group_word(tmp_path: Path, tiny_base: Path, capsys):
    """Trained so that naming Muslims is toxic (and no counterfactual help), the guard flags
    benign sentences about Muslims on the held-out identity set: exit 3, nothing stored."""
    from fairgate.models.store import model_exists

    data = tmp_path / "biased.csv"
    rng = random.Random(1)
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "toxic"])
        for i in range(240):
            if i % 2 == 0:
                writer.writerow([f"{rng.choice(CLEAN)} muslim people", 1])
            else:
                writer.writerow([rng.choice(CLEAN), 0])
    code = main([
        "build", "guard", "--source", f"csv:{data}", "--base", str(tiny_base),
        "--name", "guard-biased", "--epochs", "8", "--batch-size", "16", "--learning-rate", "5e-3",
        "--counterfactual-variants", "0", "--cross-group-variants", "0", "--counterfactual-weight", "0",
        "--noise-fraction", "0",
        "--train-embeddings", "--no-progress",
    ])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "fairness gate failed" in err and "'muslim'" in err
    assert not model_exists("guard-biased")
