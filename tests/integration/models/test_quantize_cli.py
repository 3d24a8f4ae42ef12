"""``fairgate quantize``: a stored model re-quantised statically becomes a new version; a
failed gate stores nothing (exit 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgate.service.cli import main
from tests.helpers.tiny_models import save_tiny_model_to_store

TEXTS = ["the product is good", "terrible service never again", "i love this movie",
         "awful food and rude staff", "great quality fast delivery", "it works", "no",
         "the staff were kind and the price was very good", "broken on arrival, returned it"]


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture(scope="module")
def stored() -> str:
    return save_tiny_model_to_store("quantize-cli-test", seed=5)


def _texts(path: Path) -> Path:
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def test_static_requantization_is_stored_with_its_calibration(
    stored: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from fairgate.models.store import get_stored_model

    texts = _texts(tmp_path / "texts.txt")
    code = main(["quantize", "--model", stored, "--mode", "static", "--calibration-texts", str(texts),
                 "--calibration-samples", "5", "--parity-texts", str(texts), "--int8-min-agreement", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["from"] == stored and out["tag"] != stored
    assert out["batch_dependence"] <= 1e-6
    metadata = get_stored_model(out["tag"]).metadata
    assert metadata["requantized_from"] == stored
    assert metadata["export"]["quantization"]["mode"] == "static"
    assert metadata["export"]["quantization"]["calibration"]["fingerprint"].startswith("sha256:")


def test_failed_gate_exits_4_and_stores_nothing(stored: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fairgate.models.store import list_stored_models

    before = {m.tag for m in list_stored_models()}
    texts = _texts(tmp_path / "texts.txt")
    code = main(["quantize", "--model", stored, "--mode", "static", "--calibration-texts", str(texts),
                 "--calibration-samples", "5", "--parity-texts", str(texts), "--int8-min-agreement", "1.01"])
    assert code == 4
    assert "nothing was stored" in capsys.readouterr().err
    assert {m.tag for m in list_stored_models()} == before


def test_static_without_calibration_texts_names_the_fix(stored: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    code = main(["quantize", "--model", stored, "--mode", "static", "--parity-texts",
                 str(_texts(tmp_path / "t.txt"))])
    assert code == 1
    assert "--calibration-texts FILE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "stored", "signed"),
    [
        ([], "QUInt8", False),  # a guard keeps the u8 weights its fairness figures were measured on
        ([], "QInt8", True),
        ([], None, True),  # nothing recorded: the AVX2 default
        (["--signed-weights"], "QUInt8", True),
        (["--u8-weights"], "QInt8", False),
    ],
)
def test_quantize_keeps_the_stored_weights_unless_told(flags: list[str], stored: str | None, signed: bool) -> None:
    import argparse

    from fairgate.models.quantize_cli import _signed_weights

    args = argparse.Namespace(u8_weights="--u8-weights" in flags, signed_weights="--signed-weights" in flags)
    metadata = {"export": {"quantization": {"weights_dtype": stored}}} if stored else {}
    assert _signed_weights(args, metadata) is signed


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_keep_fp32_attention_leaves_the_fused_attention_in_fp32(
    mode: str, stored: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--keep-fp32 attention,SUFFIX``: the fused Attention nodes (named Attention_N, so
    chosen by op type) stay fp32 beside the named MatMuls, in either mode."""
    import onnx

    from fairgate.models.static_int8 import KEEP_FP32_SUFFIXES

    texts = _texts(tmp_path / "texts.txt")
    out_dir = tmp_path / "model"
    code = main(["quantize", "--model", stored, "--mode", mode, "--calibration-texts", str(texts),
                 "--calibration-samples", "5", "--parity-texts", str(texts), "--int8-min-agreement", "0",
                 "--keep-fp32", f"attention,{KEEP_FP32_SUFFIXES[0]}", "--no-store", "--output-dir", str(out_dir)])
    capsys.readouterr()
    assert code == 0
    ops = [n.op_type for n in onnx.load(str(out_dir / "model.int8.onnx")).graph.node]
    assert "Attention" in ops and "QAttention" not in ops
    assert "MatMulInteger" in ops  # the rest is still int8
    fp32 = [n.op_type for n in onnx.load(str(out_dir / "model.onnx")).graph.node]
    assert fp32.count("Attention") == ops.count("Attention") > 0
