"""The real path: the bundled MiniLM fine-tuned on a small sample of the bundled reviews."""

from __future__ import annotations

import json

import pytest

from fairgate.service.cli import main

CONTRACT_GROUPS = {
    "female", "male", "nonbinary", "christian", "muslim", "jewish", "hindu", "buddhist", "atheist",
    "black", "white", "asian", "hispanic", "arab", "indigenous", "gay", "lesbian", "bisexual",
    "straight", "transgender", "disabled", "young", "old",
}


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bundled_minilm_builds_exports_and_stores(capsys: pytest.CaptureFixture) -> None:
    code = main(["build", "classifier", "--max-samples", "160", "--epochs", "1", "--max-length", "48",
                 "--name", "minilm-sample", "--no-progress", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    parity = result["parity"]
    assert parity["fp32_max_abs_diff"] <= 1e-3 and parity["int8_label_agreement"] >= 0.99
    per_group = result["metrics"]["per_group"]
    assert set(per_group["groups"]) == CONTRACT_GROUPS
    assert result["metrics"]["n"] == 16
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    entry = next(m for m in listed if m["tag"] == result["tag"])
    assert entry["base"].startswith("bundled:")
