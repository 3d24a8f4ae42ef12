"""``fairgate calibrate`` end to end: a tiny guard in the BentoML store, texts in files,
thresholds out as a table, JSON and a policy that validates."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from fairgate.guardrails.calibration import calibrate_threshold, split_budget
from fairgate.guardrails.policy import Policy
from fairgate.service.cli import main
from tests.unit.guardrails.conftest import TOXICITY_LABELS, build_model_dir

# A bag-of-words guard: benign words carry small, unrelated weights so texts score apart.
WEIGHTS = {
    "[CLS]": [-3.0, -3.5, -3.2, -3.3, -3.1, -3.4],
    "[UNK]": [0.137, 0.071, 0.213, 0.029, 0.181, 0.097],
    "hello": [0.311, 0.173, 0.057, 0.241, 0.119, 0.283],
    "world": [0.067, 0.293, 0.149, 0.103, 0.227, 0.043],
    "you": [0.199, 0.031, 0.271, 0.157, 0.089, 0.211],
    "nice": [-0.123, -0.047, -0.089, -0.161, -0.053, -0.107],
    "day": [0.083, 0.139, 0.017, 0.191, 0.263, 0.151],
    "idiot": [8.0, 2.0, 1.0, 0.0, 9.0, 1.0],
    "kill": [8.0, 5.0, 0.0, 9.0, 0.0, 1.0],
}
# Three categories, 5% block and 10% flag: 600 texts are enough after the joint split.
TARGETS = ["--max-false-block", "0.05", "--max-false-flag", "0.1", "--categories", "toxicity,threat,insult"]


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture(scope="module")
def guard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(
        tmp_path_factory.mktemp("guard") / "guard",
        labels=TOXICITY_LABELS,
        task="multi_label_classification",
        weights=WEIGHTS,
        max_length=24,
    )


@pytest.fixture(scope="module")
def guard_tag(guard_dir: Path) -> str:
    from fairgate.models.store import save_model_directory

    return save_model_directory("calibrate-test-guard", guard_dir, metadata={"role": "test"})


def _benign_texts(count: int) -> list[str]:
    rng = random.Random(0)
    words = ["hello", "world", "you", "nice", "day", "foo"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(count)]


@pytest.fixture(scope="module")
def benign_txt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "benign.txt"
    path.write_text("\n".join(_benign_texts(600)) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toxic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "toxic.csv"
    rows = [f"you idiot {t}" if i % 2 else f"i will kill {t}" for i, t in enumerate(_benign_texts(40))]
    path.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(rows)), encoding="utf-8")
    return path


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = main(["calibrate", *argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_json_thresholds_equal_calibrate_threshold_on_the_guards_scores(guard_tag, guard_dir, benign_txt, capsys):
    from fairgate.guardrails.onnx_model import OnnxTextModel

    report = _run_json(capsys, "--model", guard_tag, "--benign", str(benign_txt), *TARGETS)
    scores = OnnxTextModel.from_directory(guard_dir, variant="int8").predict_proba(_benign_texts(600))
    block_rate, level = split_budget(max_rate=0.05, confidence=0.95, parts=3)
    expected = calibrate_threshold(scores[:, 3], max_rate=block_rate, confidence=level)  # threat
    got = report["categories"]["threat"]["block"]
    assert report["n_benign"] == 600  # the blank line is not a text
    assert (got["threshold"], got["k"], got["n"]) == (expected.threshold, expected.k, 600)
    assert report["category_false_block"] == pytest.approx(0.05 / 3)
    assert "any of the 3 calibrated categories" in report["guarantee"]


def test_out_writes_a_valid_policy_with_the_calibrated_thresholds(guard_tag, benign_txt, tmp_path, capsys):
    out = tmp_path / "policy.yaml"
    report = _run_json(capsys, "--model", guard_tag, "--benign", str(benign_txt), *TARGETS, "--out", str(out))
    policy = Policy.from_yaml(out)
    default = Policy.default()
    for name in ("toxicity", "threat", "insult"):
        bounds = policy.toxicity.categories[name]
        assert bounds.flag == report["categories"][name]["flag"]["threshold"]
    # A category keeps the actions the base policy gives it: threat blocks, while toxicity
    # and insult only flag in the default policy and still never block.
    assert policy.toxicity.categories["threat"].block == report["categories"]["threat"]["block"]["threshold"]
    assert policy.toxicity.categories["toxicity"].block is None and policy.toxicity.categories["insult"].block is None
    assert policy.toxicity.categories["severe_toxicity"] == default.toxicity.categories["severe_toxicity"]
    assert policy.rates == default.rates and policy.groups == default.groups
    assert report["uncalibrated_categories"] == ["severe_toxicity", "identity_attack", "obscene"]
    header = out.read_text(encoding="utf-8").split("\nversion:")[0]
    assert guard_tag in header and report["benign"]["fingerprint"] in header and "n=600" in header


def test_toxic_texts_get_recall_at_the_thresholds(guard_tag, benign_txt, toxic_csv, capsys):
    report = _run_json(capsys, "--model", guard_tag, "--benign", str(benign_txt), "--toxic", str(toxic_csv), *TARGETS)
    assert report["n_toxic"] == 40
    assert report["any_recall_block"] == 1.0  # every toxic text says idiot or kill
    assert report["categories"]["threat"]["recall_block"] == pytest.approx(0.5)  # the "kill" half


def test_no_joint_holds_each_category_to_the_whole_target(guard_tag, benign_txt, capsys):
    report = _run_json(capsys, "--model", guard_tag, "--benign", str(benign_txt), *TARGETS, "--no-joint")
    assert report["category_false_block"] == 0.05
    assert report["category_confidence"] == 0.95
    assert "NOT for the whole guard" in report["guarantee"]


def test_table_names_each_category_and_states_the_guarantee(guard_tag, benign_txt, capsys):
    code = main(["calibrate", "--model", guard_tag, "--benign", str(benign_txt), *TARGETS])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("threat") >= 2 and "block" in out
    assert "With 0.95 confidence, on texts drawn like the 600 benign ones, the guard blocks at most 0.05" in out


def test_too_few_benign_texts_exit_1_naming_n_and_the_minimum(guard_tag, tmp_path, capsys):
    few = tmp_path / "few.txt"
    few.write_text("\n".join(_benign_texts(50)), encoding="utf-8")
    code = main(["calibrate", "--model", guard_tag, "--benign", str(few)])
    err = capsys.readouterr().err
    assert code == 1
    assert "category toxicity, block threshold: n=50 benign scores are too few" in err
    assert "at least n=2871" in err and "--no-joint asks less" in err


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.txt", "file not found"),
        ("", "empty.txt", "no texts"),
        ("comment,label\nhello,0\n", "no_text.csv", "no column 'text' (columns: comment, label); name the text column with --text-column"),
        ("hello\n", "data.json", "unsupported file type '.json'"),
    ],
)
def test_bad_benign_files_exit_1_with_the_problem(guard_tag, tmp_path, capsys, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["calibrate", "--model", guard_tag, "--benign", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "--benign" in err


def test_a_model_missing_from_the_store_exits_1(benign_txt, capsys):
    code = main(["calibrate", "--model", "no-such-guard", "--benign", str(benign_txt)])
    assert code == 1
    assert "not in the BentoML store" in capsys.readouterr().err


def test_tsv_text_column_is_read_with_literal_quotes(tmp_path):
    from fairgate.models.calibrate import read_texts

    path = tmp_path / "b.tsv"
    path.write_text('id\tbody\n1\tsay "hello\n2\t \n3\tworld\n', encoding="utf-8")
    assert read_texts(path, text_column="body") == ['say "hello', "world"]


def test_simulate_reports_every_row_holding(capsys):
    report = _run_json(capsys, "--simulate", "--distribution", "tied,beta-like", "--n", "1000", "--seeds", "100",
                       "--no-joint")
    rows = report["rows"]
    assert [(r["distribution"], r["target"]) for r in rows] == [
        ("tied", "block"), ("tied", "flag"), ("beta-like", "block"), ("beta-like", "flag")
    ]
    # 100 seeds scatter around the bound (~96-97% here); "holds" allows for that, a broken k would not pass.
    assert all(r["holds"] for r in rows)
    assert np.isclose(rows[0]["failure_bound"], 0.0287, atol=1e-4)


def test_simulate_skips_sizes_below_the_minimum(capsys):
    report = _run_json(capsys, "--simulate", "--distribution", "tied", "--n", "100", "--seeds", "10", "--no-joint")
    assert report["rows"][0]["skipped"] == "n below the minimum 299"
