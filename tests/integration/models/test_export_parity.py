"""The ONNX export: the contract's directory, parity passes, and a corrupted graph is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.errors import ExportParityError
from fairgate.models.export import check_parity, detect_quantization_target, export_model_directory
from fairgate.models.finetune import seed_everything

TEXTS = ["the product is good", "terrible service never again", "i love this movie",
         "awful food and rude staff", "great quality fast delivery", "it works"]


@pytest.fixture(scope="module")
def exported(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    encoder = resolve_encoder(str(tiny_encoder_dir))
    tokenizer = load_tokenizer(encoder)
    seed_everything(1)
    model = load_sequence_classifier(encoder, labels=["negative", "positive"])
    model.eval()
    out = tmp_path_factory.mktemp("export") / "model"
    export = export_model_directory(
        model, tokenizer, out, task="single_label_classification",
        labels=["negative", "positive"], max_length=32,
    )
    return model, tokenizer, out, export


def test_directory_follows_the_contract(exported) -> None:
    _, _, out, export = exported
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "fairgate.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "fairgate.json").read_text())
    assert manifest["format"] == "fairgate-onnx-text/1"
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["max_length"] == 32
    assert manifest["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    # The serving fleet is AVX2-only: the AVX2 int8 config, whatever the build host supports.
    assert export["quantization_target"] == "avx2"
    # AVX2 without VNNI: signed 7-bit weights (u8 x s8 products that cannot saturate).
    assert (export["quantization"]["weights_dtype"], export["quantization"]["reduce_range"]) == ("QInt8", True)
    assert export["sizes_bytes"]["int8"] < export["sizes_bytes"]["fp32"]


def test_parity_passes_for_a_faithful_export(exported) -> None:
    model, tokenizer, out, _ = exported
    report = check_parity(torch_model=model, tokenizer=tokenizer, model_dir=out, texts=TEXTS,
                          task="single_label_classification", max_length=32, int8_min_agreement=0.5)
    assert report.passed
    assert report.fp32_max_abs_diff < 1e-4
    assert report.n == len(TEXTS)


def test_parity_catches_a_corrupted_onnx_model(exported, tmp_path: Path) -> None:
    import shutil

    import onnx
    from onnx import numpy_helper

    model, tokenizer, out, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    graph = onnx.load(str(broken / "model.onnx"))
    # Perturb the classifier weights: the graph still runs, the logits are wrong.
    target = next(i for i in graph.graph.initializer if "classifier" in i.name and "weight" in i.name)
    weights = numpy_helper.to_array(target).copy()
    target.CopyFrom(numpy_helper.from_array(weights * -3.0 + 0.5, target.name))
    onnx.save(graph, str(broken / "model.onnx"))
    with pytest.raises(ExportParityError) as error:
        check_parity(torch_model=model, tokenizer=tokenizer, model_dir=broken, texts=TEXTS,
                     task="single_label_classification", max_length=32)
    message = str(error.value)
    assert "fp32 max |logit difference|" in message and "exceeds the tolerance 0.001" in message
    assert "Nothing was stored" in message


def test_cpu_flags_choose_the_quantization_config() -> None:
    assert detect_quantization_target("flags\t: fpu sse avx avx2 avx512f avx512_vnni\n") == "avx512_vnni"
    assert detect_quantization_target("flags\t: fpu avx avx2 avx512f avx512bw\n") == "avx512"
    assert detect_quantization_target("flags\t: fpu sse4_2 avx avx2 fma\n") == "avx2"
    assert detect_quantization_target("Features\t: fp asimd evtstrm\n") == "arm64"
