"""``fairgate evaluate`` on a multi-label model goes to the guard's evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES
from fairgate.service.cli import main

GUARD_LABELS = TOXICITY_CATEGORIES


pytestmark = pytest.mark.usefixtures("restore_root_logging")


def test_multi_label_model_is_evaluated_as_a_guard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("fairgate.models.guard.evaluation")
    from tests.helpers.tiny_models import save_tiny_model_to_store

    tag = save_tiny_model_to_store("dispatch-guard", task="multi_label_classification", labels=GUARD_LABELS)
    data = tmp_path / "tox.csv"
    data.write_text("text,label\nyou idiot,1\nhave a nice day,0\ni will kill you,1\nthe food was good,0\n",
                    encoding="utf-8")
    code = main(["evaluate", "--model", tag, "--data", str(data), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["n"] == 4 and report["positives"] == 2
    assert "roc_auc" in report
