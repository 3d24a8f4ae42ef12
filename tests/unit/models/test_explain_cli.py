"""``fairgate explain``: the registrar on its own parser, tiny models from a directory and the store."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from fairgate.guardrails.policy import Policy
from fairgate.models import explain_cli
from tests.unit.guardrails.conftest import TOXICITY_LABELS, build_model_dir

GUARD_WEIGHTS = {
    "[CLS]": [-4.0] * 6,
    "idiot": [8.0, 0.0, 0.0, 0.0, 10.0, 0.0],
    "kill": [8.0, 6.0, 0.0, 10.0, 0.0, 0.0],
    "you": [0.5, 0.0, 0.0, 1.0, 0.5, 0.0],
}


@pytest.fixture(scope="module")
def guard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(
        tmp_path_factory.mktemp("guard") / "guard",
        labels=TOXICITY_LABELS,
        task="multi_label_classification",
        weights=GUARD_WEIGHTS,
        max_length=64,
    )


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(
        tmp_path_factory.mktemp("classifier") / "classifier",
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 3.0], "day": [0.0, 1.0], "idiot": [2.0, 0.0]},
        max_length=64,
    )


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse with a fresh parser holding only this registrar, as service/cli.py composes it."""
    parser = argparse.ArgumentParser(prog="fairgate")
    subparsers = parser.add_subparsers(dest="command")
    explain_cli.register(subparsers, None)
    args = parser.parse_args(argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_guard_highlights_the_top_words_and_tabulates_contributions(
    guard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "you idiot, I will kill you"
    code, out, _ = run(["explain", text, "--model-dir", str(guard_dir), "--variant", "int8"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith(f"policy {Policy.default().version}: block; 6 words")  # the bundled default
    assert lines[1] == "[[you]] [[idiot]], I will [[kill]] [[you]]"  # not a terminal: plain markers
    table = "\n".join(lines[2:])
    for category in ("toxicity", "severe_toxicity", "threat", "insult"):
        assert category in table
    insult_row = next(line for line in lines if line.startswith("insult"))
    assert "idiot" in insult_row and "4-9" in insult_row and "flag" in insult_row
    assert "obscene" not in table  # does not flag: not explained


def test_json_output(guard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "kill kill"
    code, out, _ = run(
        ["explain", text, "--model-dir", str(guard_dir), "--json", "--top-k", "1", "--categories", "threat,obscene"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert report["model"] == str(guard_dir) and report["variant"] == "fp32"  # exact contributions
    assert set(report["scores"]) == set(TOXICITY_LABELS)
    threat, obscene = report["explanation"]["labels"]
    assert threat["label"] == "threat" and threat["action"] == "block"
    assert [(w["word"], w["start"], w["end"]) for w in threat["words"]] == [("kill", 0, 4)]
    assert obscene == {"label": "obscene", "score": pytest.approx(obscene["score"]), "masked_score": obscene["score"],
                       "action": "allow", "words": []}


def test_nothing_flagged_says_how_to_explain_anyway(guard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["explain", "nice day", "--model-dir", str(guard_dir)], capsys)
    assert code == 0
    assert "nothing flags or blocks under the policy" in out
    assert "--categories" in out and "scores: toxicity 0.0" in out


def test_text_from_stdin(guard_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("you idiot\n"))
    code, out, _ = run(["explain", "-", "--model-dir", str(guard_dir), "--top-k", "1"], capsys)
    assert code == 0
    assert "you [[idiot]]" in out


def test_classifier_explains_its_predicted_label(classifier_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["explain", "nice day idiot", "--model-dir", str(classifier_dir), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    (label,) = report["explanation"]["labels"]
    assert label["label"] == "positive" and label["action"] is None
    assert [w["word"] for w in label["words"]] == ["nice", "day"]
    code, _, err = run(["explain", "x", "--model-dir", str(classifier_dir), "--categories", "insult"], capsys)
    assert code == 1 and "is a classifier; --categories and --policy are for the guard" in err


def test_model_from_the_store(guard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fairgate.models.store import save_model_directory

    tag = save_model_directory("explain-test-guard", guard_dir, metadata={"role": "test"})
    code, out, _ = run(["explain", "you idiot", "--model", "explain-test-guard"], capsys)
    assert code == 0
    assert out.startswith(f"{tag} (fp32)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-guard"], "model 'no-such-guard' is not in the BentoML store"),
        (["--model-dir", "/nonexistent/guard"], "/nonexistent/guard"),
        (["--categories", "insults"], "no label 'insults'"),
        (["--top-k", "0"], "top_k=0; pass a whole number of words"),
    ],
)
def test_errors_exit_1_with_the_fix(
    argv: list[str], message: str, guard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra: list[Any] = argv if argv[0] in ("--model", "--model-dir") else ["--model-dir", str(guard_dir), *argv]
    code, out, err = run(["explain", "you idiot", *extra], capsys)
    assert code == 1 and out == ""
    assert err.startswith("fairgate explain: error: ") and message in err


def test_model_and_model_dir_are_exclusive(guard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["explain", "x", "--model", "a", "--model-dir", str(guard_dir)], capsys)
    assert exit_info.value.code == 2


def test_plain_highlight_wraps_spans_in_order() -> None:
    assert explain_cli.highlight_plain("a bc d", [(2, 4), (0, 1), (2, 4)]) == "[[a]] [[bc]] d"


def test_max_words_is_reported(guard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["explain", "you you idiot", "--model-dir", str(guard_dir), "--max-words", "2"], capsys)
    assert code == 0
    assert "note: only the first 2 of 3 words were explained (--max-words)" in out
    assert "[[idiot]]" not in out


@pytest.mark.usefixtures("restore_root_logging")
def test_composes_with_the_other_registrars(
    guard_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fairgate explain`` is registered by service/cli.py and clashes with no other subcommand."""
    from fairgate.service import cli

    assert ("fairgate.models.explain_cli", "register") in cli._REGISTRARS
    assert cli.main(["explain", "you idiot", "--model-dir", str(guard_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["explanation"]["labels"]
